//! The reconciler against the in-memory API server: which calls it makes, what it leaves behind.

use std::time::Duration;

use bitcoin_operator::controller::{error_policy, reconcile};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::support::fake_api::FakeApi;
use crate::support::fixtures::*;

const SVC: &str = "GET /api/v1/namespaces/default/services/net";
const STS: &str = "GET /apis/apps/v1/namespaces/default/statefulsets/net";
const LIST_PODS: &str = "GET /api/v1/namespaces/default/pods";
const PUT_STATUS: &str = "PUT /apis/bitcoin.stagecoach.dev/v1/namespaces/default/bitcoinnetworks/net/status";
const PATCH_STS: &str = "PATCH /apis/apps/v1/namespaces/default/statefulsets/net";
const EVENT: &str = "POST /apis/events.k8s.io/v1/namespaces/default/events";

struct Case {
    name: &'static str,
    /// Reconcile once before the step under test (and forget its calls and events).
    warm: bool,
    /// Changes made to the cluster before the reconcile under test.
    change: fn(&FakeApi),
    calls: &'static [&'static str],
    events: &'static [&'static str],
    ok: bool,
    check: fn(&FakeApi),
}

fn replicas(api: &FakeApi) -> i64 {
    api.get(STATEFULSETS, "net").unwrap()["spec"]["replicas"].as_i64().unwrap()
}

fn status(api: &FakeApi) -> Value {
    api.get(NETWORKS, "net").unwrap()["status"].clone()
}

fn no_change(_: &FakeApi) {}

const CASES: &[Case] = &[
    Case {
        name: "a new network gets a headless Service and a StatefulSet it controls, and a status",
        warm: false,
        change: no_change,
        calls: &[
            SVC,
            "POST /api/v1/namespaces/default/services",
            STS,
            "POST /apis/apps/v1/namespaces/default/statefulsets",
            EVENT,
            LIST_PODS,
            PUT_STATUS,
        ],
        events: &["Created"],
        ok: true,
        check: |api| {
            let uid = api.get(NETWORKS, "net").unwrap()["metadata"]["uid"].clone();
            for object in [api.get(SERVICES, "net").unwrap(), api.get(STATEFULSETS, "net").unwrap()] {
                let owner = &object["metadata"]["ownerReferences"][0];
                assert_eq!(
                    (&owner["kind"], &owner["uid"], &owner["controller"]),
                    (&json!("BitcoinNetwork"), &uid, &json!(true))
                );
            }
            assert_eq!(api.get(SERVICES, "net").unwrap()["spec"]["clusterIP"], "None");
            let sts = api.get(STATEFULSETS, "net").unwrap();
            assert_eq!(sts["spec"]["replicas"], 3);
            assert_eq!(sts["spec"]["serviceName"], "net");
            let container = &sts["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(container["envFrom"][0]["secretRef"]["name"], "rpc");
            assert_eq!(container["image"], "bitcoin/bitcoin:28.1");
            let probe = container["readinessProbe"]["exec"]["command"][2].as_str().unwrap();
            assert!(probe.contains("bitcoin-cli -regtest") && probe.contains("getnetworkinfo"), "{probe}");
            assert!(container["args"].as_array().unwrap().contains(&json!("-regtest")));
            let status = status(api);
            assert_eq!(status["nodes"], json!([]));
            assert_eq!(status["readyNodes"], 0);
            assert_eq!(status["observedGeneration"], 1);
            assert_eq!(
                (&status["conditions"][0]["type"], &status["conditions"][0]["status"]),
                (&json!("Ready"), &json!("False"))
            );
            assert_eq!(status["conditions"][0]["message"], "0 of 3 nodes ready");
        },
    },
    Case {
        name: "an unchanged network is only read: no write, no event",
        warm: true,
        change: no_change,
        calls: &[SVC, STS, LIST_PODS],
        events: &[],
        ok: true,
        check: |api| assert_eq!(replicas(api), 3),
    },
    Case {
        name: "scaling the network scales the StatefulSet",
        warm: true,
        change: |api| api.patch(NETWORKS, "net", json!({"spec": {"nodes": 4}})),
        calls: &[SVC, STS, PATCH_STS, EVENT, LIST_PODS, PUT_STATUS],
        events: &["Scaled"],
        ok: true,
        check: |api| {
            assert_eq!(replicas(api), 4);
            assert_eq!(status(api)["observedGeneration"], 2);
            assert_eq!(status(api)["conditions"][0]["message"], "0 of 4 nodes ready");
        },
    },
    Case {
        name: "replicas changed behind the operator's back are set back",
        warm: true,
        change: |api| api.patch(STATEFULSETS, "net", json!({"spec": {"replicas": 5}})),
        calls: &[SVC, STS, PATCH_STS, EVENT, LIST_PODS],
        events: &["Scaled"],
        ok: true,
        check: |api| assert_eq!(replicas(api), 3),
    },
    Case {
        name: "a new default image updates the pod template",
        warm: true,
        change: |api| {
            api.patch(
                STATEFULSETS,
                "net",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "bitcoind", "image": "old:1"}]}}}}),
            )
        },
        calls: &[SVC, STS, PATCH_STS, EVENT, LIST_PODS],
        events: &["Updated"],
        ok: true,
        check: |api| {
            let sts = api.get(STATEFULSETS, "net").unwrap();
            assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "bitcoin/bitcoin:28.1");
        },
    },
    Case {
        name: "a network being deleted is left to garbage collection: no call at all",
        warm: true,
        change: |api| api.patch(NETWORKS, "net", json!({"metadata": {"deletionTimestamp": "2026-11-22T00:00:00Z"}})),
        calls: &[],
        events: &[],
        ok: true,
        check: |api| assert_eq!(replicas(api), 3),
    },
    Case {
        name: "pods that appear change the status: node list, IPs, DNS names, readiness",
        warm: true,
        change: |api| {
            api.insert(pod("net", 1, false, Some("10.244.0.7")));
            api.insert(pod("net", 0, false, None));
        },
        calls: &[SVC, STS, LIST_PODS, PUT_STATUS],
        events: &[],
        ok: true,
        check: |api| {
            let status = status(api);
            assert_eq!(
                status["nodes"],
                json!([
                    {"ordinal": 0, "ready": false, "nodeName": "kind-worker", "dnsName": "net-0.net.default.svc.cluster.local"},
                    {"ordinal": 1, "ready": false, "ip": "10.244.0.7", "nodeName": "kind-worker", "dnsName": "net-1.net.default.svc.cluster.local"}
                ])
            );
            assert_eq!(status["conditions"][0]["message"], "0 of 3 nodes ready");
        },
    },
    Case {
        name: "a StatefulSet of the same name that the network does not control is not taken over",
        warm: false,
        change: |api| {
            api.insert(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "net", "namespace": "default"}, "spec": {"replicas": 1}}))
        },
        calls: &[SVC, "POST /api/v1/namespaces/default/services", STS, EVENT],
        events: &["ReconcileFailed"],
        ok: false,
        check: |api| {
            assert_eq!(replicas(api), 1);
            assert!(api.get(STATEFULSETS, "net").unwrap()["metadata"]["ownerReferences"].is_null());
        },
    },
];

#[tokio::test]
async fn reconcile_cases() {
    let mut failures = Vec::new();
    for case in CASES {
        let api = FakeApi::default();
        api.insert(network("net", 3, Some("rpc")));
        let ctx = context(&api, 1);
        if case.warm {
            reconcile(current(&api, "net"), ctx.clone()).await.expect("the first reconcile");
            api.take_calls();
            for event in api.list(EVENTS) {
                api.remove(EVENTS, event["metadata"]["name"].as_str().unwrap());
            }
        }
        (case.change)(&api);
        let result = reconcile(current(&api, "net"), ctx).await;
        let calls = api.take_calls();
        if result.is_ok() != case.ok || calls != case.calls || event_reasons(&api) != case.events {
            failures.push(format!(
                "{}:\n  result {result:?}\n  calls  {calls:#?}\n  events {:?}",
                case.name,
                event_reasons(&api)
            ));
            continue;
        }
        (case.check)(&api);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_deleted_network_is_not_requeued_and_a_healthy_one_is_resynced() {
    let api = FakeApi::default();
    api.insert(network("net", 1, None));
    let ctx = context(&api, 1);
    assert_eq!(reconcile(current(&api, "net"), ctx.clone()).await.unwrap(), Action::requeue(Duration::from_secs(60)));
    api.patch(NETWORKS, "net", json!({"metadata": {"deletionTimestamp": "2026-11-22T00:00:00Z"}}));
    assert_eq!(reconcile(current(&api, "net"), ctx).await.unwrap(), Action::await_change());
}

#[tokio::test]
async fn failures_in_a_row_back_off_exponentially_up_to_the_cap_and_success_resets() {
    let api = FakeApi::default();
    // A name too long for pod names fails every time without touching the API.
    let long = "n".repeat(60);
    api.insert(network(&long, 1, None));
    api.insert(network("net", 1, None));
    let ctx = context(&api, 1);
    let (bad, good) = (current(&api, &long), current(&api, "net"));
    let mut delays = Vec::new();
    for _ in 0..10 {
        let error = reconcile(bad.clone(), ctx.clone()).await.unwrap_err();
        assert!(error.to_string().contains("at most 52 characters"), "{error}");
        delays.push(error_policy(bad.clone(), &error, ctx.clone()));
    }
    let secs = |s: u64| Action::requeue(Duration::from_secs(s));
    assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300].map(secs));
    // Another network's failure count is its own.
    let error = reconcile(bad.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(error_policy(good.clone(), &error, ctx.clone()), secs(2));
    reconcile(good.clone(), ctx.clone()).await.unwrap();
    assert_eq!(error_policy(good, &error, ctx), secs(2), "a success resets the count");
    // The recorder folds repeats into one event with a count (a PATCH), as kubectl shows them.
    let events = api.list(EVENTS);
    let failed: Vec<_> = events.iter().filter(|e| e["reason"] == "ReconcileFailed").collect();
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0]["series"]["count"], 11);
}

#[tokio::test]
async fn a_network_without_secret_runs_with_the_default_credentials() {
    let api = FakeApi::default();
    api.insert(network("net", 2, None));
    reconcile(current(&api, "net"), context(&api, 1)).await.unwrap();
    let sts = api.get(STATEFULSETS, "net").unwrap();
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    assert!(container["envFrom"].is_null());
    assert_eq!(
        container["env"],
        json!([{"name": "BITCOIN_RPC_USER", "value": "bitcoin"}, {"name": "BITCOIN_RPC_PASSWORD", "value": "regtest"}])
    );
    // The credentials reach bitcoind through `$(VAR)` expansion, never as literals in args.
    let args = container["args"].to_string();
    assert!(args.contains("-rpcuser=$(BITCOIN_RPC_USER)") && !args.contains("=regtest"), "{args}");
}

#[tokio::test]
async fn concurrent_reconciles_of_many_networks_do_not_interfere() {
    let api = FakeApi::default();
    for i in 0..20 {
        api.insert(network(&format!("net{i}"), i % 5, None));
    }
    let ctx = context(&api, 1);
    let runs = (0..20).map(|i| reconcile(current(&api, &format!("net{i}")), ctx.clone()));
    for result in futures::future::join_all(runs).await {
        result.unwrap();
    }
    for i in 0..20 {
        let sts = api.get(STATEFULSETS, &format!("net{i}")).unwrap();
        assert_eq!(sts["spec"]["replicas"], i % 5);
        assert_eq!(
            api.get(NETWORKS, &format!("net{i}")).unwrap()["status"]["conditions"][0]["status"],
            if i % 5 == 0 { "True" } else { "False" }
        );
    }
}
