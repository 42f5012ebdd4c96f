//! A small in-memory Kubernetes API server: it keeps objects by path, answers GET, LIST (with
//! label selectors), POST, merge PATCH and PUT of the status subresource the way the real one
//! does (404/409 `Status` bodies, resourceVersions, generations), and records every call.
//!
//! A Kubernetes control plane cannot run on our machines; this stands in for it behind the
//! same `kube::Client` the operator uses, served in-process through tower-test's mock service
//! (`FakeApi::client`) or over HTTP (`FakeApi::serve`, for the operator binary).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Objects by "<collection path>/<name>".
    objects: BTreeMap<String, Value>,
    calls: Vec<String>,
    version: u64,
}

/// What a request path names.
struct Target {
    /// e.g. `/apis/apps/v1/namespaces/default/statefulsets`, or `.../statefulsets` for all namespaces.
    collection: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl FakeApi {
    /// A client talking to this server in-process, and the task answering it.
    pub fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = self.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.unwrap_or_default();
                let (status, answer) = api.handle(&parts.method, &parts.uri, &body);
                respond.send_response(Response::builder().status(status).body(Body::from(answer)).unwrap());
            }
        });
        Client::new(service, "default")
    }

    /// Serves the API over plain HTTP on `listener`, for a real operator process. A watch
    /// (`?watch=true`) gets an answer whose body never ends, as an idle API server's does.
    pub fn serve(&self, listener: tokio::net::TcpListener) {
        use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
        let api = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = api.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let api = api.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let watch = parts
                                .uri
                                .query()
                                .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
                            let body: BoxBody<Bytes, std::convert::Infallible> = if watch {
                                api.state.lock().unwrap().calls.push(format!("WATCH {}", parts.uri.path()));
                                StreamBody::new(futures::stream::pending()).boxed()
                            } else {
                                let (status, answer) = api.handle(&parts.method, &parts.uri, &body);
                                return Ok::<_, std::convert::Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(answer).boxed())
                                        .unwrap(),
                                );
                            };
                            Ok(Response::builder().header("content-type", "application/json").body(body).unwrap())
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
    }

    /// Adds or replaces an object (with its status) as if it had been created earlier.
    pub fn insert(&self, object: Value) {
        let mut state = self.state.lock().unwrap();
        let collection = collection_of(&object);
        let name = object["metadata"]["name"].as_str().expect("fixtures have names").to_owned();
        let object = state.stamp(object, None);
        state.objects.insert(format!("{collection}/{name}"), object);
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(&format!("{collection}/{name}")).cloned()
    }

    /// A merge patch, as `kubectl patch --type merge` would send it.
    pub fn patch(&self, collection: &str, name: &str, patch: Value) {
        let uri: http::Uri = format!("{collection}/{name}").parse().unwrap();
        let (status, body) = self.handle(&Method::PATCH, &uri, patch.to_string().as_bytes());
        assert_eq!(status, StatusCode::OK, "patch {collection}/{name}: {}", String::from_utf8_lossy(&body));
        self.take_calls();
    }

    pub fn remove(&self, collection: &str, name: &str) {
        self.state.lock().unwrap().objects.remove(&format!("{collection}/{name}"));
    }

    /// Every object in a collection, e.g. the events.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        let prefix = format!("{collection}/");
        state.objects.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| v.clone()).collect()
    }

    /// The calls so far as "METHOD path" (query strings left out), and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    pub fn handle(&self, method: &Method, uri: &http::Uri, body: &[u8]) -> (StatusCode, Bytes) {
        let mut state = self.state.lock().unwrap();
        state.calls.push(format!("{method} {}", uri.path()));
        let target = parse(uri.path());
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
        let key = |name: &str| format!("{}/{name}", target.collection);
        let (status, answer) = match (method.clone(), target.name.as_deref(), target.subresource.as_deref()) {
            (Method::GET, None, None) => (StatusCode::OK, state.list(&target.collection, query.get("labelSelector"))),
            (Method::GET, Some(name), None) => match state.objects.get(&key(name)) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => not_found(name),
            },
            (Method::POST, None, None) => {
                let object: Value = serde_json::from_slice(body).expect("POST bodies are JSON");
                let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                if state.objects.contains_key(&key(&name)) {
                    status(StatusCode::CONFLICT, "AlreadyExists", &format!("{name} already exists"))
                } else {
                    let object = state.stamp(object, None);
                    state.objects.insert(key(&name), object.clone());
                    (StatusCode::CREATED, object)
                }
            }
            (Method::PATCH, Some(name), None) => match state.objects.get(&key(name)).cloned() {
                Some(mut object) => {
                    let patch: Value = serde_json::from_slice(body).expect("merge patches are JSON");
                    let spec_before = object.get("spec").cloned();
                    merge(&mut object, &patch);
                    let spec_changed = object.get("spec") != spec_before.as_ref();
                    let object = state.stamp(object, Some(spec_changed));
                    state.objects.insert(key(name), object.clone());
                    (StatusCode::OK, object)
                }
                None => not_found(name),
            },
            (Method::PUT, Some(name), Some("status")) => match state.objects.get(&key(name)).cloned() {
                Some(mut object) => {
                    let sent: Value = serde_json::from_slice(body).expect("PUT bodies are JSON");
                    let sent_version = &sent["metadata"]["resourceVersion"];
                    if !sent_version.is_null() && *sent_version != object["metadata"]["resourceVersion"] {
                        status(StatusCode::CONFLICT, "Conflict", "the object has been modified")
                    } else {
                        // Like the real status subresource: only the status is taken from the body.
                        object["status"] = sent["status"].clone();
                        let object = state.stamp(object, Some(false));
                        state.objects.insert(key(name), object.clone());
                        (StatusCode::OK, object)
                    }
                }
                None => not_found(name),
            },
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not supported by the fake API"),
        };
        (status, Bytes::from(answer.to_string()))
    }
}

impl State {
    /// Sets what the server owns: resourceVersion, uid, generation (bumped on spec changes).
    fn stamp(&mut self, mut object: Value, spec_changed: Option<bool>) -> Value {
        self.version += 1;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(self.version.to_string());
        if meta["uid"].is_null() {
            meta["uid"] = json!(format!("uid-{}", self.version));
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = json!("2026-11-22T00:00:00Z");
        }
        match (spec_changed, meta["generation"].as_i64()) {
            (None, None) => meta["generation"] = json!(1),
            (Some(true), Some(generation)) => meta["generation"] = json!(generation + 1),
            _ => {}
        }
        object
    }

    fn list(&self, collection: &str, selector: Option<&String>) -> Value {
        let wanted: Vec<(&str, &str)> =
            selector.map(|s| s.split(',').filter_map(|kv| kv.split_once('=')).collect()).unwrap_or_default();
        // A collection path without a namespace lists every namespace.
        let (all_namespaces, plural) = match collection.rsplit_once('/') {
            Some((prefix, plural)) if !prefix.contains("/namespaces/") => (Some(prefix), plural),
            _ => (None, ""),
        };
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(key, _)| match all_namespaces {
                Some(prefix) => {
                    key.starts_with(&format!("{prefix}/namespaces/")) && key.rsplit('/').nth(1) == Some(plural)
                }
                None => key.rsplit_once('/').map(|(c, _)| c) == Some(collection),
            })
            .map(|(_, object)| object)
            .filter(|object| wanted.iter().all(|(k, v)| object["metadata"]["labels"][*k].as_str() == Some(*v)))
            .cloned()
            .collect();
        json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": self.version.to_string()}, "items": items})
    }
}

fn parse(path: &str) -> Target {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // api/v1/... or apis/<group>/<version>/...
    let base = if parts[0] == "api" { 2 } else { 3 };
    let rest = &parts[base..];
    let (scope, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (format!("/namespaces/{ns}"), rest),
        _ => (String::new(), rest),
    };
    let collection = format!("/{}{scope}/{}", parts[..base].join("/"), rest[0]);
    Target { collection, name: rest.get(1).map(|s| s.to_string()), subresource: rest.get(2).map(|s| s.to_string()) }
}

/// The collection path an object lives in, from its apiVersion, kind and namespace.
fn collection_of(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().expect("fixtures have an apiVersion");
    let kind = object["kind"].as_str().expect("fixtures have a kind");
    let plural = format!("{}s", kind.to_lowercase());
    let base = if api_version.contains('/') { format!("/apis/{api_version}") } else { format!("/api/{api_version}") };
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{base}/namespaces/{ns}/{plural}"),
        None => format!("{base}/{plural}"),
    }
}

/// RFC 7396 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    target.as_object_mut().unwrap().remove(key);
                } else {
                    merge(target.as_object_mut().unwrap().entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn not_found(name: &str) -> (StatusCode, Value) {
    status(StatusCode::NOT_FOUND, "NotFound", &format!("{name} not found"))
}

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, body)
}
