//! The fake API server does what the real one does for the calls the operator makes: these
//! pin the parts the operator's tests rely on. The same cases are asked of a real API server in
//! `real_api.rs`; where the two disagreed, the fake was made to follow.

use http::{Method, Request, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use crate::support::fake_api::{FakeApi, quantity};

/// (case, a quantity as given, as the server writes it back)
pub const QUANTITIES: [(&str, &str, &str); 12] = [
    ("a half CPU", "0.5", "500m"),
    ("whole millicores", "1000m", "1"),
    ("millicores", "250m", "250m"),
    ("a tenth", "0.1", "100m"),
    ("1024 mebibytes", "1024Mi", "1Gi"),
    ("one and a half gibibytes", "1.5Gi", "1536Mi"),
    ("mebibytes", "512Mi", "512Mi"),
    ("kibibytes below a mebibyte", "1000Ki", "1000Ki"),
    ("thousands", "2000", "2k"),
    ("decimal megabytes", "128M", "128M"),
    ("a plain number", "3", "3"),
    ("binary below 1024 becomes decimal", "0.5Ki", "512"),
];

/// `METHOD path` with a JSON body through `client`: the status and the answer.
async fn send(
    client: &kube::Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_string().into_bytes()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

const APPLY: &str = "application/apply-patch+yaml";

/// A StatefulSet `name` the API server accepts, with `containers`.
fn stateful_set(namespace: &str, name: &str, replicas: i32, containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "minReadySeconds": 5, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}})
}

/// The quantities of [`QUANTITIES`] as the server behind `client` writes them back: the CPU
/// limits of one container each, applied and read.
pub async fn written_back(client: &kube::Client, namespace: &str) -> Vec<String> {
    let containers: Vec<Value> = QUANTITIES
        .iter()
        .enumerate()
        .map(|(i, (_, given, _))| json!({"name": format!("c{i}"), "image": "i", "resources": {"limits": {"cpu": given}}}))
        .collect();
    let path = format!("/apis/apps/v1/namespaces/{namespace}/statefulsets/quantities?fieldManager=test");
    let (status, stored) =
        send(client, Method::PATCH, &path, APPLY, &stateful_set(namespace, "quantities", 0, json!(containers))).await;
    assert!(status.is_success(), "{status}: {stored}");
    let containers = stored["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    containers.iter().map(|c| c["resources"]["limits"]["cpu"].as_str().unwrap().to_owned()).collect()
}

/// Server-side apply as the operator relies on it, asked of the server behind `client`: an apply
/// creates, the same apply again writes nothing, a field another manager set conflicts unless
/// forced, and a field the manager no longer applies goes while the server's defaults stay.
pub async fn apply_as_the_operator_relies_on_it(client: &kube::Client, namespace: &str) {
    let collection = format!("/apis/apps/v1/namespaces/{namespace}/statefulsets");
    let set = |replicas| stateful_set(namespace, "s", replicas, json!([{"name": "c", "image": "i"}]));
    let apply = |force: bool, body: Value| {
        let path = format!("{collection}/s?fieldManager=op&force={force}");
        async move { send(client, Method::PATCH, &path, APPLY, &body).await }
    };
    let version = |stored: &Value| stored["metadata"]["resourceVersion"].clone();
    let (status, first) = apply(false, set(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = apply(false, set(1)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version(&again), version(&first), "the same apply again writes nothing");

    let path = format!("{collection}/s?fieldManager=someone-else");
    let (status, _) =
        send(client, Method::PATCH, &path, "application/merge-patch+json", &json!({"spec": {"replicas": 5}})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, conflict) = apply(false, set(1)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["reason"], "Conflict");
    let (status, forced) = apply(true, set(1)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(forced["spec"]["replicas"], 1);

    let mut without = set(1);
    without["spec"].as_object_mut().unwrap().remove("minReadySeconds");
    let (status, stored) = apply(true, without).await;
    assert_eq!(status, StatusCode::OK);
    assert!(stored["spec"]["minReadySeconds"].is_null(), "{stored:#}");
    assert_eq!(stored["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(stored["spec"]["podManagementPolicy"], "OrderedReady");
}

#[tokio::test]
async fn quantities_are_written_back_in_the_servers_canonical_form() {
    for (name, given, expected) in QUANTITIES {
        assert_eq!(quantity(given).as_deref(), Some(expected), "{name}: {given}");
    }
    assert_eq!(quantity("lots"), None);
    let stored = written_back(&FakeApi::default().client(), "default").await;
    assert_eq!(stored, QUANTITIES.map(|(_, _, expected)| expected));
}

#[tokio::test]
async fn an_apply_conflicts_with_another_managers_field_unless_forced_and_a_no_op_writes_nothing() {
    apply_as_the_operator_relies_on_it(&FakeApi::default().client(), "default").await;
}
