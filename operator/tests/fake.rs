//! The fake API server does what the real one does for the calls the operator makes: these
//! pin the parts the operator's tests rely on.

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::fake_api::{FakeApi, quantity};
use crate::support::fixtures::STATEFULSETS;

#[test]
fn quantities_are_written_back_in_the_servers_canonical_form() {
    let cases = [
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
    for (name, given, expected) in cases {
        assert_eq!(quantity(given).as_deref(), Some(expected), "{name}: {given}");
    }
    assert_eq!(quantity("lots"), None);
}

#[tokio::test]
async fn an_apply_conflicts_with_another_managers_field_unless_forced_and_a_no_op_writes_nothing() {
    let api = FakeApi::default();
    let set = |replicas: i32| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "namespace": "default"},
            "spec": {"replicas": replicas, "minReadySeconds": 5,
                "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    };
    let apply = |manager: &str, force: bool, body: serde_json::Value| {
        let uri = format!("{STATEFULSETS}/s?fieldManager={manager}&force={force}").parse().unwrap();
        api.handle(&Method::PATCH, &uri, Some("application/apply-patch+yaml"), body.to_string().as_bytes()).0
    };
    assert_eq!(apply("op", false, set(1)), StatusCode::CREATED);
    let version = || api.get(STATEFULSETS, "s").unwrap()["metadata"]["resourceVersion"].clone();
    let first = version();
    assert_eq!(apply("op", false, set(1)), StatusCode::OK);
    assert_eq!(version(), first, "the same apply again writes nothing");
    api.patch(STATEFULSETS, "s", json!({"spec": {"replicas": 5}}));
    assert_eq!(apply("op", false, set(1)), StatusCode::CONFLICT);
    assert_eq!(apply("op", true, set(1)), StatusCode::OK);
    assert_eq!(api.get(STATEFULSETS, "s").unwrap()["spec"]["replicas"], 1);
    // A field the manager no longer applies goes; what the server defaulted stays.
    let mut without = set(1);
    without["spec"].as_object_mut().unwrap().remove("minReadySeconds");
    assert_eq!(apply("op", true, without), StatusCode::OK);
    let stored = api.get(STATEFULSETS, "s").unwrap();
    assert!(stored["spec"]["minReadySeconds"].is_null(), "{stored:#}");
    assert_eq!(stored["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
}
