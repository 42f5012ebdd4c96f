//! A small in-memory Kubernetes API server that does what the real one does for the calls the
//! operator makes, and records every call.
//!
//! - GET, LIST (label selectors), POST, PUT of the status subresource, merge PATCH, and
//!   server-side apply (`application/apply-patch+yaml` with `fieldManager`, `force`): an apply
//!   creates a missing object, removes fields its manager set before and no longer sets, and
//!   answers 409 for a field another manager set to another value unless forced (which takes
//!   the field over). An apply or patch that changes nothing writes nothing: resourceVersion
//!   and generation stay.
//! - What the server adds: resourceVersion on every write, uid, creationTimestamp, generation
//!   (bumped when the spec changes), the defaults of Services and StatefulSets the operator does
//!   not set, and canonical resource quantities (`0.5` → `500m`, `1024Mi` → `1Gi`).
//! - Errors as `Status` bodies: 404, 409 (AlreadyExists, Conflict), 400, 403 for calls made
//!   forbidden with [`FakeApi::forbid`], 404 for the BitcoinNetwork API with
//!   [`FakeApi::without_crd`].
//!
//! Limits, none of which the operator's calls reach: lists are atomic (the real server merges
//! lists of named items such as containers item by item, per manager); quantities in exponent
//! form (`1e3`) are canonicalised as decimal SI; no managedFields in answers; no admission, no
//! validation against schemas (the schema checks in `manifests.rs` cover what the operator
//! sends); a watch over HTTP ([`FakeApi::serve`]) sends no events, it stays open as an idle
//! one does, so the operator's caches hold what it listed at start.
//!
//! It stands in for a real API server behind the same `kube::Client` the operator uses,
//! in-process as a tower service ([`FakeApi::client`]) or over HTTP ([`FakeApi::serve`], for the
//! operator binary), where a test needs what a real one cannot be made to show cheaply: pods
//! that are ready with IPs (no kubelet runs on a bare control plane), a 403 on one call, a
//! record of every call. `fake.rs` asks the real API server (`real_api.rs`) the same cases.
//!
//! With `BITCOIN_OPERATOR_API_CALLS=FILE` set, every call is also appended to FILE as the RBAC
//! request it is (`verb group resource subresource name`), for the test that derives the
//! operator's ClusterRole from its calls.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Map, Value, json};

pub const CALLS_FILE: &str = "BITCOIN_OPERATOR_API_CALLS";
const APPLY: &str = "application/apply-patch+yaml";
/// The manager of merge patches that name none, as kubectl's would be.
const PATCH_MANAGER: &str = "kubectl-patch";

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Objects by "<collection path>/<name>".
    objects: BTreeMap<String, Value>,
    /// Per object, per field manager: the fields (JSON pointers to scalars and lists) it owns.
    owners: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    calls: Vec<String>,
    version: u64,
    /// (verb, resource) pairs answered with 403.
    forbidden: BTreeSet<(String, String)>,
    no_crd: bool,
}

/// What a request path names.
struct Target {
    /// e.g. `/apis/apps/v1/namespaces/default/statefulsets`, or `.../statefulsets` for all namespaces.
    collection: String,
    group: String,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl FakeApi {
    /// A client talking to this server in-process.
    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let api = api.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.unwrap_or_default();
                let content_type = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                let (status, answer) = api.handle(&parts.method, &parts.uri, content_type, &body);
                Response::builder().status(status).body(Body::from(answer))
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
            loop {
                // A failed accept (a client gone before it was accepted, no file descriptor
                // left) must not end the server, or every later request hangs.
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let api = api.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let api = api.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let content_type =
                                parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                            let (status, answer) = api.handle(&parts.method, &parts.uri, content_type, &body);
                            let body: BoxBody<Bytes, std::convert::Infallible> =
                                if is_watch(&parts.uri) && status == StatusCode::OK {
                                    StreamBody::new(futures::stream::pending()).boxed()
                                } else {
                                    Full::new(answer).boxed()
                                };
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(body)
                                    .unwrap(),
                            )
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
    }

    /// Answers `verb` on `resource` (e.g. `list`, `bitcoinnetworks`) with 403, as a server whose
    /// RBAC does not grant it.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.state.lock().unwrap().forbidden.insert((verb.to_owned(), resource.to_owned()));
    }

    /// Answers the BitcoinNetwork API with 404, as a server without the CRD.
    pub fn without_crd(&self) {
        self.state.lock().unwrap().no_crd = true;
    }

    /// Adds or replaces an object (with its status) as if it had been created earlier, by a
    /// manager that is not the operator.
    pub fn insert(&self, object: Value) {
        let mut state = self.state.lock().unwrap();
        let collection = collection_of(&object);
        let name = object["metadata"]["name"].as_str().expect("fixtures have names").to_owned();
        let key = format!("{collection}/{name}");
        let mut fields = BTreeSet::new();
        leaves(&object, "", &mut fields);
        state.owners.insert(key.clone(), BTreeMap::from([("kubectl-create".to_owned(), fields)]));
        let object = state.stamp(canonical(object), None);
        state.objects.insert(key, object);
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(&format!("{collection}/{name}")).cloned()
    }

    /// A merge patch, as `kubectl patch --type merge` would send it.
    pub fn patch(&self, collection: &str, name: &str, patch: Value) {
        let uri: http::Uri = format!("{collection}/{name}").parse().unwrap();
        let (status, body) = self.answer(
            &Method::PATCH,
            &uri,
            Some("application/merge-patch+json"),
            patch.to_string().as_bytes(),
            false,
        );
        assert_eq!(status, StatusCode::OK, "patch {collection}/{name}: {}", String::from_utf8_lossy(&body));
        self.take_calls();
    }

    /// A server-side apply by `manager`, forced, as another controller (or an earlier version of
    /// the operator) would send it.
    pub fn apply(&self, collection: &str, name: &str, manager: &str, config: Value) {
        let uri: http::Uri = format!("{collection}/{name}?fieldManager={manager}&force=true").parse().unwrap();
        let (status, body) = self.answer(&Method::PATCH, &uri, Some(APPLY), config.to_string().as_bytes(), false);
        assert!(status.is_success(), "apply {collection}/{name}: {}", String::from_utf8_lossy(&body));
        self.take_calls();
    }

    pub fn remove(&self, collection: &str, name: &str) {
        let key = format!("{collection}/{name}");
        let mut state = self.state.lock().unwrap();
        state.objects.remove(&key);
        state.owners.remove(&key);
    }

    /// What a watch of `collection` (all namespaces, e.g. `/apis/apps/v1/statefulsets`) with
    /// the label selector `selector` has seen by now; not a call.
    pub fn watched(&self, collection: &str, selector: &str) -> Vec<Value> {
        let list = self.state.lock().unwrap().list(collection, Some(&selector.to_owned()));
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Every object in a collection, e.g. the events.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        let prefix = format!("{collection}/");
        state
            .objects
            .iter()
            .filter(|(k, _)| k.strip_prefix(&prefix).is_some_and(|name| !name.contains('/')))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The calls so far, kept.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The calls so far as "METHOD path" (query strings left out; a watch is "WATCH path"), and
    /// forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    /// Answers a request of the operator's client.
    pub fn handle(
        &self,
        method: &Method,
        uri: &http::Uri,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (StatusCode, Bytes) {
        self.answer(method, uri, content_type, body, true)
    }

    /// `by_operator`: a call of the operator's (recorded for the RBAC check), not of a test's.
    fn answer(
        &self,
        method: &Method,
        uri: &http::Uri,
        content_type: Option<&str>,
        body: &[u8],
        by_operator: bool,
    ) -> (StatusCode, Bytes) {
        let mut state = self.state.lock().unwrap();
        let watch = is_watch(uri);
        state.calls.push(format!("{} {}", if watch { "WATCH" } else { method.as_str() }, uri.path()));
        let target = parse(uri.path());
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
        let verb = match (method.clone(), &target.name) {
            (Method::GET, Some(_)) => "get",
            (Method::GET, None) if watch => "watch",
            (Method::GET, None) => "list",
            (Method::POST, _) => "create",
            (Method::PUT, _) => "update",
            (Method::PATCH, _) => "patch",
            (Method::DELETE, _) => "delete",
            _ => "unknown",
        };
        let (status, answer) = if state.no_crd && target.group == bitcoin_operator::crd::GROUP {
            status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource")
        } else if state.forbidden.contains(&(verb.to_owned(), target.resource.clone())) {
            let message = format!(
                "{}{} is forbidden: User \"system:serviceaccount:default:op\" cannot {verb} resource \"{}\"",
                target.resource,
                if target.group.is_empty() { String::new() } else { format!(".{}", target.group) },
                target.resource
            );
            status(StatusCode::FORBIDDEN, "Forbidden", &message)
        } else {
            state.answer(method, &target, &query, content_type, body)
        };
        // An apply that creates is authorized as a create too.
        let created = verb == "patch" && status == StatusCode::CREATED;
        if by_operator {
            record(&target, verb, created);
        }
        (status, Bytes::from(answer.to_string()))
    }
}

fn is_watch(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

/// Appends the call, as RBAC sees it, to the file named by `BITCOIN_OPERATOR_API_CALLS`.
fn record(target: &Target, verb: &str, created: bool) {
    let Some(path) = std::env::var_os(CALLS_FILE) else { return };
    let mut lines = String::new();
    for verb in std::iter::once(verb).chain(created.then_some("create")) {
        lines.push_str(&format!(
            "{verb} {} {} {} {}\n",
            if target.group.is_empty() { "core" } else { &target.group },
            target.resource,
            target.subresource.as_deref().unwrap_or("-"),
            target.name.as_deref().unwrap_or("-"),
        ));
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("the calls file");
    file.write_all(lines.as_bytes()).expect("a write to the calls file");
}

impl State {
    fn answer(
        &mut self,
        method: &Method,
        target: &Target,
        query: &BTreeMap<String, String>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let key = |name: &str| format!("{}/{name}", target.collection);
        match (method.clone(), target.name.as_deref(), target.subresource.as_deref()) {
            (Method::GET, None, None) => (StatusCode::OK, self.list(&target.collection, query.get("labelSelector"))),
            (Method::GET, Some(name), None) => match self.objects.get(&key(name)) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => not_found(name),
            },
            (Method::POST, None, None) => {
                let object: Value = serde_json::from_slice(body).expect("POST bodies are JSON");
                let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                if self.objects.contains_key(&key(&name)) {
                    status(StatusCode::CONFLICT, "AlreadyExists", &format!("{name} already exists"))
                } else {
                    let manager = query.get("fieldManager").cloned().unwrap_or_else(|| "unknown".to_owned());
                    let mut fields = BTreeSet::new();
                    leaves(&object, "", &mut fields);
                    self.owners.insert(key(&name), BTreeMap::from([(manager, fields)]));
                    let object = self.stamp(defaulted(canonical(object)), None);
                    self.objects.insert(key(&name), object.clone());
                    (StatusCode::CREATED, object)
                }
            }
            (Method::PATCH, Some(name), None) if content_type == Some(APPLY) => {
                let Some(manager) = query.get("fieldManager") else {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "fieldManager is required for apply requests",
                    );
                };
                let Ok(config) = serde_json::from_slice::<Value>(body) else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "the apply body is not JSON or YAML");
                };
                if config["metadata"]["name"].as_str() != Some(name)
                    || !config["apiVersion"].is_string()
                    || !config["kind"].is_string()
                {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "apply needs apiVersion, kind and the name of the URL",
                    );
                }
                let force = query.get("force").is_some_and(|f| f == "true");
                self.apply(key(name), manager, canonical(config), force)
            }
            (Method::PATCH, Some(name), None) => match self.objects.get(&key(name)).cloned() {
                Some(existing) => {
                    let patch: Value = serde_json::from_slice(body).expect("merge patches are JSON");
                    let manager = query.get("fieldManager").map_or(PATCH_MANAGER, String::as_str).to_owned();
                    let mut fields = BTreeSet::new();
                    leaves(&patch, "", &mut fields);
                    let owners = self.owners.entry(key(name)).or_default();
                    for set in owners.values_mut() {
                        set.retain(|f| !fields.contains(f));
                    }
                    owners.entry(manager).or_default().extend(fields);
                    let mut object = existing.clone();
                    merge(&mut object, &patch);
                    (StatusCode::OK, self.write(key(name), &existing, defaulted(canonical(object))))
                }
                None => not_found(name),
            },
            (Method::PUT, Some(name), Some("status")) => match self.objects.get(&key(name)).cloned() {
                Some(existing) => {
                    let sent: Value = serde_json::from_slice(body).expect("PUT bodies are JSON");
                    let sent_version = &sent["metadata"]["resourceVersion"];
                    if !sent_version.is_null() && *sent_version != existing["metadata"]["resourceVersion"] {
                        status(StatusCode::CONFLICT, "Conflict", "the object has been modified")
                    } else {
                        // Like the real status subresource: only the status is taken from the body.
                        let mut object = existing.clone();
                        object["status"] = sent["status"].clone();
                        (StatusCode::OK, self.write(key(name), &existing, object))
                    }
                }
                None => not_found(name),
            },
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not supported by the fake API"),
        }
    }

    /// Server-side apply of `config` (quantities canonical) by `manager`.
    fn apply(&mut self, key: String, manager: &str, config: Value, force: bool) -> (StatusCode, Value) {
        let mut applied = BTreeSet::new();
        leaves(&config, "", &mut applied);
        let Some(existing) = self.objects.get(&key).cloned() else {
            self.owners.insert(key.clone(), BTreeMap::from([(manager.to_owned(), applied)]));
            let object = self.stamp(defaulted(config), None);
            self.objects.insert(key, object.clone());
            return (StatusCode::CREATED, object);
        };
        let owners = self.owners.entry(key.clone()).or_default();
        let conflicts: Vec<String> = owners
            .iter()
            .filter(|(other, _)| other.as_str() != manager)
            .flat_map(|(other, fields)| {
                fields
                    .iter()
                    .filter(|f| applied.contains(*f) && existing.pointer(f) != config.pointer(f))
                    .map(move |f| format!("conflict with \"{other}\": {f}"))
            })
            .collect();
        if !conflicts.is_empty() && !force {
            let message = format!("Apply failed with {} conflicts: {}", conflicts.len(), conflicts.join(", "));
            return status(StatusCode::CONFLICT, "Conflict", &message);
        }
        // Forced: the fields change hands.
        for (other, fields) in owners.iter_mut() {
            if other != manager {
                fields.retain(|f| !applied.contains(f));
            }
        }
        let before = owners.insert(manager.to_owned(), applied.clone()).unwrap_or_default();
        let kept_by_others: BTreeSet<&String> = owners.values().flatten().collect();
        let mut object = existing.clone();
        // Fields this manager set before and sets no more go, unless another manager has them.
        for field in before.iter().filter(|f| !applied.contains(*f) && !kept_by_others.contains(f)) {
            remove(&mut object, field);
        }
        merge_config(&mut object, &config);
        (StatusCode::OK, self.write(key, &existing, defaulted(object)))
    }

    /// Stores `object` unless it equals `existing`: a write that changes nothing is no write.
    fn write(&mut self, key: String, existing: &Value, object: Value) -> Value {
        if object == *existing {
            return object;
        }
        let spec_changed = object.get("spec") != existing.get("spec");
        let object = self.stamp(object, Some(spec_changed));
        self.objects.insert(key, object.clone());
        object
    }

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
    let (base, group) = if parts[0] == "api" { (2, "") } else { (3, parts[1]) };
    let rest = &parts[base..];
    let (scope, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (format!("/namespaces/{ns}"), rest),
        _ => (String::new(), rest),
    };
    let collection = format!("/{}{scope}/{}", parts[..base].join("/"), rest[0]);
    Target {
        collection,
        group: group.to_owned(),
        resource: rest[0].to_owned(),
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    }
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

/// The fields of `value` as JSON pointers to its scalars and lists (lists count whole).
fn leaves(value: &Value, at: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                let key = key.replace('~', "~0").replace('/', "~1");
                leaves(value, &format!("{at}/{key}"), out);
            }
        }
        _ if at.starts_with("/metadata/")
            && !at.starts_with("/metadata/labels")
            && !at.starts_with("/metadata/annotations")
            && !at.starts_with("/metadata/ownerReferences") => {}
        _ => {
            out.insert(at.to_owned());
        }
    }
}

/// Removes the field at `pointer` and the objects it leaves empty.
fn remove(object: &mut Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else { return };
    let key = key.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(fields)) = object.pointer_mut(parent) {
        fields.remove(&key);
        if fields.is_empty() && !parent.is_empty() {
            remove(object, parent);
        }
    }
}

/// An applied configuration merged into the object: objects field by field, lists and scalars
/// replaced.
fn merge_config(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(target), Value::Object(fields)) => {
            for (key, value) in fields {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => merge_config(existing, value),
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, config) => *target = config.clone(),
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

/// The defaults the API server fills into the objects the operator makes, where they are unset.
fn defaulted(mut object: Value) -> Value {
    fn default(object: &mut Value, field: &str, value: Value) {
        if let Some(fields) = object.as_object_mut() {
            fields.entry(field.to_owned()).or_insert(value);
        }
    }
    match object["kind"].as_str() {
        Some("Service") => {
            let spec = &mut object["spec"];
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            default(spec, "internalTrafficPolicy", json!("Cluster"));
            default(spec, "ipFamilyPolicy", json!("SingleStack"));
            default(spec, "ipFamilies", json!(["IPv4"]));
            let cluster_ip = spec["clusterIP"].clone();
            if !cluster_ip.is_null() {
                default(spec, "clusterIPs", json!([cluster_ip]));
            }
            for port in spec["ports"].as_array_mut().into_iter().flatten() {
                default(port, "protocol", json!("TCP"));
                let number = port["port"].clone();
                default(port, "targetPort", number);
            }
        }
        Some("StatefulSet") => {
            let spec = &mut object["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            let pod = &mut spec["template"]["spec"];
            default(pod, "restartPolicy", json!("Always"));
            default(pod, "dnsPolicy", json!("ClusterFirst"));
            default(pod, "schedulerName", json!("default-scheduler"));
            default(pod, "terminationGracePeriodSeconds", json!(30));
            for container in pod["containers"].as_array_mut().into_iter().flatten() {
                default(container, "terminationMessagePath", json!("/dev/termination-log"));
                default(container, "terminationMessagePolicy", json!("File"));
                for port in container["ports"].as_array_mut().into_iter().flatten() {
                    default(port, "protocol", json!("TCP"));
                }
                for probe in ["readinessProbe", "livenessProbe"] {
                    if container[probe].is_object() {
                        default(&mut container[probe], "successThreshold", json!(1));
                    }
                }
            }
        }
        _ => {}
    }
    object
}

/// Resource quantities in their canonical form, wherever `limits` or `requests` hold them.
fn canonical(mut object: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(fields) => {
                for (key, value) in fields.iter_mut() {
                    match (key.as_str(), value) {
                        ("limits" | "requests", Value::Object(quantities)) => canonical_map(quantities),
                        (_, value) => walk(value),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    fn canonical_map(quantities: &mut Map<String, Value>) {
        for value in quantities.values_mut() {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if let Some(canonical) = quantity(&text) {
                *value = json!(canonical);
            }
        }
    }
    walk(&mut object);
    object
}

/// A quantity as the API server writes it back: `0.5` → `500m`, `1024Mi` → `1Gi`,
/// `1.5Gi` → `1536Mi`, `2000` → `2k`. None for text that is not a quantity.
pub fn quantity(text: &str) -> Option<String> {
    const NANO: i128 = 1_000_000_000;
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > 9 || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    let negative = whole.starts_with('-');
    let whole: i128 = match whole.trim_start_matches(['+', '-']) {
        "" => 0,
        digits => digits.parse().ok()?,
    };
    let fraction: i128 = format!("{fraction:0<9}").parse().ok()?;
    let nanos = whole * NANO + fraction;
    let binary = |power: u32| Some((nanos * 1024i128.pow(power), true));
    let decimal = |exponent: i32| {
        if exponent >= 0 {
            Some((nanos * 10i128.pow(exponent as u32), false))
        } else {
            // Rounded up to a whole nano, as the server rounds.
            let divisor = 10i128.pow((-exponent) as u32);
            Some(((nanos + divisor - 1) / divisor, false))
        }
    };
    let (nanos, is_binary) = match suffix {
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        exponent => decimal(exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
    }?;
    let sign = if negative && nanos != 0 { "-" } else { "" };
    // Binary values of 1024 or more that are whole stay binary; others are written decimal.
    if is_binary && nanos % NANO == 0 && nanos / NANO >= 1024 {
        let mut value = nanos / NANO;
        let mut power = 0;
        while power < 6 && value % 1024 == 0 {
            value /= 1024;
            power += 1;
        }
        return Some(format!("{sign}{value}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power]));
    }
    if nanos % NANO == 0 {
        let mut value = nanos / NANO;
        let mut power = 0;
        while power < 6 && value != 0 && value % 1000 == 0 {
            value /= 1000;
            power += 1;
        }
        return Some(format!("{sign}{value}{}", ["", "k", "M", "G", "T", "P", "E"][power]));
    }
    let (value, suffix) = match nanos {
        n if n % 1_000_000 == 0 => (n / 1_000_000, "m"),
        n if n % 1_000 == 0 => (n / 1_000, "u"),
        n => (n, "n"),
    };
    Some(format!("{sign}{value}{suffix}"))
}

fn not_found(name: &str) -> (StatusCode, Value) {
    status(StatusCode::NOT_FOUND, "NotFound", &format!("{name} not found"))
}

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, body)
}
