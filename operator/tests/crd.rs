//! The CRD the chart ships is the one the Rust types generate.

use std::path::Path;

use bitcoin_operator::crd::{BitcoinNetwork, crd_yaml};
use kube::CustomResourceExt;

const CHART_CRD: &str = "chart-template/crds/bitcoinnetworks.yaml";

#[test]
fn the_committed_crd_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(CHART_CRD);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == crd_yaml(),
        "{CHART_CRD} differs from the Rust types; regenerate it:\n  cargo run -q -p bitcoin-operator --bin crdgen > {CHART_CRD}"
    );
}

#[test]
fn the_crd_has_the_shape_kubectl_users_see() {
    let crd = serde_json::to_value(BitcoinNetwork::crd()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(version["name"], "v1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> =
        version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Desired", "Ready", "Age"]);
    let nodes = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["nodes"];
    assert_eq!((nodes["minimum"].as_f64(), nodes["maximum"].as_f64()), (Some(0.0), Some(50.0)));
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    for field in ["nodes", "readyNodes", "conditions", "observedGeneration"] {
        assert!(!status[field].is_null(), "status.{field}");
    }
    let node = &status["nodes"]["items"]["properties"];
    for field in ["ordinal", "ready", "ip", "nodeName", "dnsName"] {
        assert!(!node[field].is_null(), "status.nodes[].{field}");
    }
}
