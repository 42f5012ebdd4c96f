//! Least privilege, derived: every other test of this binary runs once more with the fake API
//! writing down each call the operator makes as the RBAC request it is, and the set of
//! (verb, API group, resource) those make must equal what the chart's ClusterRole grants, as
//! the real Helm engine renders it: no verb granted that no scenario uses, none missing.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::support::fake_api::CALLS_FILE;
use crate::support::tools::{documents, helm_engine, render_chart};

/// (verb, group, resource or resource/subresource); the core group is "core".
type Grant = (String, String, String);

/// What the operator called, and the names of the Secrets it read.
fn called(calls: &str) -> (BTreeSet<Grant>, BTreeSet<String>) {
    let (mut grants, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    for line in calls.lines() {
        let [verb, group, resource, subresource, name] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("a call line: {line}")
        };
        let resource = if subresource == "-" { resource.to_owned() } else { format!("{resource}/{subresource}") };
        if resource == "secrets" {
            assert_eq!(verb, "get", "Secrets are only read one by one: {line}");
            secrets.insert(name.to_owned());
        }
        grants.insert((verb.to_owned(), group.to_owned(), resource));
    }
    (grants, secrets)
}

/// What the ClusterRole's rules grant; the Secret rule must name its Secrets.
fn granted(role: &Value) -> (BTreeSet<Grant>, Vec<String>) {
    let (mut grants, mut secret_names) = (BTreeSet::new(), Vec::new());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap().to_owned()).collect()
    };
    for rule in role["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                if resource == "secrets" {
                    assert_eq!(strings(&rule["verbs"]), ["get"], "Secrets: get only");
                    secret_names = strings(&rule["resourceNames"]);
                    assert!(!secret_names.is_empty(), "a Secret rule without resourceNames grants every Secret");
                }
                for verb in strings(&rule["verbs"]) {
                    assert!(verb != "*" && resource != "*" && group != "*", "no wildcards: {rule}");
                    let group = if group.is_empty() { "core".to_owned() } else { group.clone() };
                    grants.insert((verb, group, resource.clone()));
                }
            }
        }
    }
    (grants, secret_names)
}

#[test]
fn the_cluster_role_grants_exactly_what_the_operator_calls() {
    let Some(python) = helm_engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let calls_file = dir.path().join("calls");
    let run = Command::new(std::env::current_exe().unwrap())
        // All but this test, the schema checks, which call no API, and the real API server's
        // tests, which do not use the fake (they check the same grants with the real authorizer).
        .args(["--skip", "rbac::", "--skip", "manifests::", "--skip", "real_api::", "--test-threads", "2", "--quiet"])
        .env(CALLS_FILE, &calls_file)
        .output()
        .unwrap();
    assert!(run.status.success(), "the scenarios: {}", String::from_utf8_lossy(&run.stdout));
    let (used, secrets_read) = called(&std::fs::read_to_string(&calls_file).unwrap());

    let rendered = render_chart(&python, "bitcoin", &[]);
    let role = documents(&rendered).into_iter().find(|d| d["kind"] == "ClusterRole").expect("a ClusterRole");
    let (grants, secret_names) = granted(&role);

    let unused: Vec<_> = grants.difference(&used).collect();
    let missing: Vec<_> = used.difference(&grants).collect();
    assert!(
        unused.is_empty() && missing.is_empty(),
        "granted but never called: {unused:#?}\ncalled but not granted: {missing:#?}"
    );
    // The scenarios read their own Secrets; the chart names its rpcSecret.
    assert!(!secrets_read.is_empty());
    assert_eq!(secret_names, ["bitcoin-rpc"]);
    // Scenarios that must be among those run, or the set above proves little.
    for needed in [("watch", "bitcoinnetworks"), ("create", "statefulsets"), ("update", "bitcoinnetworks/status")] {
        assert!(used.iter().any(|(v, _, r)| (v.as_str(), r.as_str()) == needed), "no scenario made {needed:?}");
    }
}
