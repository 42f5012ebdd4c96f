//! What reaches a cluster, checked by the real Kubernetes 1.33 schemas (`kubernetes-validate
//! --strict`) and by `checkov --framework kubernetes`: the chart rendered by the real Helm
//! engine with its defaults and a table of value sets, the CRD, and the StatefulSet and Service
//! the operator builds for a sample network. 0 failed checks; a check that does not apply is
//! skipped by an annotation that says why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::tools::{documents, helm_engine, k8s_checks, render_chart, workspace};

const SAMPLE: &str = "operator/generated/sample-network.yaml";
const CRD: &str = "chart-template/crds/bitcoinnetworks.yaml";
const NAMESPACE: &str = "bitcoin";

#[test]
fn the_committed_sample_network_is_what_the_operator_builds() {
    let committed = std::fs::read_to_string(workspace().join(SAMPLE)).unwrap_or_default();
    assert!(
        committed == bitcoin_operator::resources::sample_yaml(),
        "{SAMPLE} differs from what the operator builds; regenerate it:\n  cargo run -q -p bitcoin-operator --bin samplegen > {SAMPLE}"
    );
}

/// Value sets the chart is rendered with (as `--set-json`), besides its defaults.
const VALUE_SETS: &[(&str, &[&str])] = &[
    ("defaults", &[]),
    (
        "a pushed image: digest-pinned, always pulled",
        &[
            r#"image={"repository":"registry.example/bitcoin-operator","tag":"64ed033","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","pullPolicy":"Always"}"#,
        ],
    ),
    ("no NetworkPolicy", &["networkPolicy.enabled=false"]),
    (
        "metrics scraped from one namespace",
        &[r#"networkPolicy.metricsFrom={"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}"#],
    ),
    (
        "own secrets and service account, more images",
        &[
            r#"rpcSecret={"create":false,"name":"bitcoin-rpc","user":"bitcoin","password":""}"#,
            r#"readableSecrets=["team-a-rpc","team-b-rpc"]"#,
            r#"serviceAccount={"create":false,"name":"bitcoin-operator"}"#,
            r#"bitcoind.allowedImages=["registry.example/bitcoind","ghcr.io/example/bitcoin"]"#,
        ],
    ),
];

/// What the Kubernetes 1.33 schemas reject in the files (one run for all).
fn validate(bin: &Path, files: &[PathBuf]) -> Vec<String> {
    let run = Command::new(bin.join("kubernetes-validate"))
        .args(["-k", "1.33.0", "--strict", "--quiet"])
        .args(files)
        .output()
        .unwrap();
    match run.status.success() {
        true => Vec::new(),
        false => vec![format!("kubernetes-validate: {}", String::from_utf8_lossy(&run.stdout))],
    }
}

/// The checks checkov fails in the files of `dir` (one run for all), and those it skips
/// without a reason, each with the file's name.
fn checkov(bin: &Path, dir: &Path, files: usize) -> Vec<String> {
    let run = Command::new(bin.join("checkov"))
        .args(["--framework", "kubernetes", "--skip-download", "-o", "json", "-d"])
        .arg(dir)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov said no JSON ({e}): {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )
    });
    // One report, or one per check type.
    let reports = match report {
        Value::Array(reports) => reports,
        report => vec![report],
    };
    let mut problems = Vec::new();
    let mut passed: BTreeMap<String, usize> = BTreeMap::new();
    let file = |check: &Value| check["file_path"].as_str().unwrap_or_default().trim_start_matches('/').to_owned();
    for results in reports.iter().map(|r| &r["results"]) {
        for check in results["passed_checks"].as_array().into_iter().flatten() {
            *passed.entry(file(check)).or_default() += 1;
        }
        for failed in results["failed_checks"].as_array().into_iter().flatten() {
            let (id, name, resource) = (&failed["check_id"], &failed["check_name"], &failed["resource"]);
            problems.push(format!("{}: checkov {id}: {name} ({resource})", file(failed)));
        }
        for skipped in results["skipped_checks"].as_array().into_iter().flatten() {
            let reason = skipped["check_result"]["suppress_comment"].as_str().unwrap_or_default();
            if reason.trim().is_empty() || reason == "No comment provided" {
                problems.push(format!("{}: checkov {} skipped without a reason", file(skipped), skipped["check_id"]));
            }
        }
    }
    // A file checkov could not read would pass with nothing checked.
    assert!(passed.len() == files && passed.values().all(|n| *n > 10), "checkov's passed checks per file: {passed:?}");
    problems
}

#[test]
fn the_chart_the_crd_and_the_operators_objects_pass_the_schemas_and_checkov() {
    let (Some(python), Some(bin)) = (helm_engine(), k8s_checks()) else { return };
    // Not `.tmp…`: checkov leaves out directories whose names start with a dot.
    let dir = tempfile::Builder::new().prefix("manifests-").tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let mut files = Vec::new();
    for (name, sets) in VALUE_SETS {
        let rendered = render_chart(&python, NAMESPACE, sets);
        // Every namespaced object says where it goes.
        for object in documents(&rendered) {
            let kind = object["kind"].as_str().unwrap_or_default();
            if !["ClusterRole", "ClusterRoleBinding"].contains(&kind) {
                assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{name}: {kind} has no metadata.namespace");
            }
        }
        let file =
            manifests.join(format!("chart, {name}.yaml").replace(|c: char| !c.is_alphanumeric() && c != '.', "-"));
        std::fs::write(&file, rendered).unwrap();
        files.push(file);
    }
    let sample = manifests.join("sample-network.yaml");
    std::fs::copy(workspace().join(SAMPLE), &sample).unwrap();
    files.push(sample);
    let checked_by_checkov = files.len();
    // checkov has no checks for a CRD; the schemas see it.
    let crd = dir.path().join("crd.yaml");
    std::fs::copy(workspace().join(CRD), &crd).unwrap();
    files.push(crd);
    let problems = [validate(&bin, &files), checkov(&bin, &manifests, checked_by_checkov)].concat();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

#[test]
fn the_chart_wires_probes_to_the_metrics_port_labels_its_secret_and_passes_the_allowed_images() {
    let Some(python) = helm_engine() else { return };
    let cases: [(&str, &[&str], &str, &str, bool); 3] = [
        ("defaults", &[], "8080", "bitcoin/bitcoin", true),
        (
            "another port, a bitcoind from a registry with a port, more images, no NetworkPolicy",
            &[
                "operator.metricsPort=9090",
                r#"bitcoind.image="127.0.0.1:5000/bitcoind:28.1@sha256:abc""#,
                r#"bitcoind.allowedImages=["ghcr.io/example/bitcoin"]"#,
                "networkPolicy.enabled=false",
            ],
            "9090",
            "127.0.0.1:5000/bitcoind,ghcr.io/example/bitcoin",
            false,
        ),
        (
            "the default image listed again",
            &[r#"bitcoind.allowedImages=["bitcoin/bitcoin"]"#],
            "8080",
            "bitcoin/bitcoin",
            true,
        ),
    ];
    for (name, sets, port, allowed, policy) in cases {
        let objects = documents(&render_chart(&python, NAMESPACE, sets));
        let deployment = find(&objects, "Deployment").expect("a Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.contains(&format!("--metrics-port={port}").as_str()), "{name}: {args:?}");
        assert!(args.contains(&format!("--allowed-images={allowed}").as_str()), "{name}: {args:?}");
        assert_eq!(container["ports"][0]["containerPort"].to_string(), port, "{name}");
        assert_eq!(
            (&container["livenessProbe"]["httpGet"], &container["readinessProbe"]["httpGet"]),
            (
                &serde_json::json!({"path": "/healthz", "port": "metrics"}),
                &serde_json::json!({"path": "/readyz", "port": "metrics"})
            ),
            "{name}"
        );
        let secret = find(&objects, "Secret").expect("the rpcSecret");
        assert_eq!(secret["metadata"]["labels"]["bitcoin.stagecoach.dev/rpc-credentials"], "true", "{name}");
        let network_policy = find(&objects, "NetworkPolicy");
        assert_eq!(network_policy.is_some(), policy, "{name}");
        if let Some(network_policy) = network_policy {
            assert_eq!(
                network_policy["spec"]["ingress"][0]["ports"],
                serde_json::json!([{"port": "metrics", "protocol": "TCP"}])
            );
        }
    }
}
