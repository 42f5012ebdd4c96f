//! What reaches a cluster, checked by the real Kubernetes 1.33 schemas (`kubernetes-validate
//! --strict`) and by `checkov --framework kubernetes`: the chart rendered by the real Helm
//! engine with its defaults and a table of value sets, the CRD, and the StatefulSet and Service
//! the operator builds for a sample network. 0 failed checks; a check that does not apply is
//! skipped by an annotation that says why.

use std::path::Path;
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

fn run(bin: &Path, tool: &str, args: &[&str], file: &Path) -> std::process::Output {
    Command::new(bin.join(tool)).args(args).arg(file).current_dir(file.parent().unwrap()).output().unwrap()
}

/// What the Kubernetes 1.33 schemas reject in a file.
fn validate(bin: &Path, file: &Path) -> Vec<String> {
    let validate = run(bin, "kubernetes-validate", &["-k", "1.33.0", "--strict", "--quiet"], file);
    match validate.status.success() {
        true => Vec::new(),
        false => vec![format!("kubernetes-validate: {}", String::from_utf8_lossy(&validate.stdout))],
    }
}

/// The checks checkov fails in a file, and those it skips without a reason.
fn checkov(bin: &Path, file: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let checkov = run(bin, "checkov", &["--framework", "kubernetes", "--skip-download", "-o", "json", "-f"], file);
    let report: Value = serde_json::from_slice(&checkov.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov said no JSON ({e}): {}{}",
            String::from_utf8_lossy(&checkov.stdout),
            String::from_utf8_lossy(&checkov.stderr)
        )
    });
    // One report, or one per check type.
    let reports = match report {
        Value::Array(reports) => reports,
        report => vec![report],
    };
    let mut passed = 0;
    for report in &reports {
        let results = &report["results"];
        passed += report["summary"]["passed"].as_u64().unwrap_or(0);
        for failed in results["failed_checks"].as_array().into_iter().flatten() {
            problems.push(format!("checkov {}: {} ({})", failed["check_id"], failed["check_name"], failed["resource"]));
        }
        for skipped in results["skipped_checks"].as_array().into_iter().flatten() {
            let reason = skipped["check_result"]["suppress_comment"].as_str().unwrap_or_default();
            if reason.trim().is_empty() || reason == "No comment provided" {
                problems.push(format!("checkov {} skipped without a reason", skipped["check_id"]));
            }
        }
    }
    // A file checkov could not read would pass with nothing checked.
    assert!(passed > 10, "checkov passed only {passed} checks on {}: {reports:?}", file.display());
    problems
}

#[test]
fn the_chart_the_crd_and_the_operators_objects_pass_the_schemas_and_checkov() {
    let (Some(python), Some(bin)) = (helm_engine(), k8s_checks()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (name, sets) in VALUE_SETS {
        let rendered = render_chart(&python, NAMESPACE, sets);
        // Every namespaced object says where it goes.
        for object in documents(&rendered) {
            let kind = object["kind"].as_str().unwrap_or_default();
            if !["ClusterRole", "ClusterRoleBinding"].contains(&kind) {
                assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{name}: {kind} has no metadata.namespace");
            }
        }
        let file = dir.path().join(format!("{}.yaml", name.replace(|c: char| !c.is_alphanumeric(), "-")));
        std::fs::write(&file, rendered).unwrap();
        let found = [validate(&bin, &file), checkov(&bin, &file)].concat();
        problems.extend(found.into_iter().map(|p| format!("chart, {name}: {p}")));
    }
    for committed in [SAMPLE, CRD] {
        let file = dir.path().join(Path::new(committed).file_name().unwrap());
        std::fs::copy(workspace().join(committed), &file).unwrap();
        // checkov has no checks for a CRD; the schemas still see it.
        let found = if committed == CRD {
            validate(&bin, &file)
        } else {
            [validate(&bin, &file), checkov(&bin, &file)].concat()
        };
        problems.extend(found.into_iter().map(|p| format!("{committed}: {p}")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
