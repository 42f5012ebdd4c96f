//! The reconciler against the in-memory API server: which calls it makes, what it leaves behind.

use std::time::Duration;

use bitcoin_operator::controller::{error_policy, reconcile};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::support::fake_api::FakeApi;
use crate::support::fixtures::*;

const GET_SECRET: &str = "GET /api/v1/namespaces/default/secrets/rpc";
const SVC: &str = "GET /api/v1/namespaces/default/services/net";
const STS: &str = "GET /apis/apps/v1/namespaces/default/statefulsets/net";
const APPLY_SVC: &str = "PATCH /api/v1/namespaces/default/services/net";
const APPLY_STS: &str = "PATCH /apis/apps/v1/namespaces/default/statefulsets/net";
const PUT_STATUS: &str = "PUT /apis/bitcoin.stagecoach.dev/v1/namespaces/default/bitcoinnetworks/net/status";
const EVENT: &str = "POST /apis/events.k8s.io/v1/namespaces/default/events";

struct Case {
    name: &'static str,
    /// Changes made to the cluster before the first reconcile.
    setup: fn(&FakeApi),
    /// Reconcile once before the step under test (and forget its calls and events).
    warm: bool,
    /// Changes made to the cluster before the reconcile under test.
    change: fn(&FakeApi),
    calls: &'static [&'static str],
    events: &'static [&'static str],
    ok: bool,
    check: fn(&FakeApi, &Versions),
}

/// resourceVersions of the Service and the StatefulSet before the reconcile under test.
struct Versions {
    service: Value,
    set: Value,
}

impl Versions {
    fn of(api: &FakeApi) -> Self {
        let version = |c: &str| api.get(c, "net").map(|o| o["metadata"]["resourceVersion"].clone()).unwrap_or_default();
        Self { service: version(SERVICES), set: version(STATEFULSETS) }
    }

    fn assert_unchanged(&self, api: &FakeApi) {
        let now = Versions::of(api);
        assert_eq!((&now.service, &now.set), (&self.service, &self.set), "no write to the Service or StatefulSet");
    }
}

fn set(api: &FakeApi) -> Value {
    api.get(STATEFULSETS, "net").unwrap()
}

fn container(api: &FakeApi) -> Value {
    set(api)["spec"]["template"]["spec"]["containers"][0].clone()
}

fn replicas(api: &FakeApi) -> i64 {
    set(api)["spec"]["replicas"].as_i64().unwrap()
}

fn status(api: &FakeApi) -> Value {
    api.get(NETWORKS, "net").unwrap()["status"].clone()
}

fn ready_condition(api: &FakeApi) -> (String, String, String) {
    let condition = &status(api)["conditions"][0];
    let text = |field: &str| condition[field].as_str().unwrap_or_default().to_owned();
    (text("status"), text("reason"), text("message"))
}

fn nothing(_: &FakeApi) {}

const CASES: &[Case] = &[
    Case {
        name: "a new network gets a headless Service and a StatefulSet it controls, and a status",
        setup: nothing,
        warm: false,
        change: nothing,
        calls: &[GET_SECRET, SVC, STS, APPLY_SVC, APPLY_STS, EVENT, PUT_STATUS],
        events: &["Created"],
        ok: true,
        check: |api, _| {
            let uid = api.get(NETWORKS, "net").unwrap()["metadata"]["uid"].clone();
            for object in [api.get(SERVICES, "net").unwrap(), set(api)] {
                let owner = &object["metadata"]["ownerReferences"][0];
                assert_eq!(
                    (&owner["kind"], &owner["uid"], &owner["controller"]),
                    (&json!("BitcoinNetwork"), &uid, &json!(true))
                );
            }
            assert_eq!(api.get(SERVICES, "net").unwrap()["spec"]["clusterIP"], "None");
            let sts = set(api);
            assert_eq!(sts["spec"]["replicas"], 3);
            assert_eq!(sts["spec"]["serviceName"], "net");
            let container = container(api);
            assert_eq!(container["envFrom"][0]["secretRef"]["name"], "rpc");
            assert_eq!(container["image"], "bitcoin/bitcoin:28.1");
            for probe in ["readinessProbe", "livenessProbe"] {
                let command = container[probe]["exec"]["command"][2].as_str().unwrap();
                assert!(command.contains("bitcoin-cli -regtest") && command.contains("getnetworkinfo"), "{command}");
            }
            // The operator's defaults, in the form the server keeps them.
            assert_eq!(
                container["resources"],
                json!({"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            );
            assert!(container["args"].as_array().unwrap().contains(&json!("-regtest")));
            let status = status(api);
            assert_eq!(status["nodes"], json!([]));
            assert_eq!(status["readyNodes"], 0);
            assert_eq!(status["observedGeneration"], 1);
            assert_eq!(ready_condition(api), ("False".into(), "NodesNotReady".into(), "0 of 3 nodes ready".into()));
        },
    },
    Case {
        name: "an unchanged network writes nothing: the applies change nothing, no event, at most 3 calls",
        setup: nothing,
        warm: true,
        change: nothing,
        calls: &[GET_SECRET, APPLY_SVC, APPLY_STS],
        events: &[],
        ok: true,
        check: |api, before| before.assert_unchanged(api),
    },
    Case {
        name: "quantities the server canonicalises (0.5, 1024Mi) cause no write and no event on the next reconcile",
        setup: |api| {
            let resources =
                json!({"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"cpu": 2, "memory": "1.5Gi"}});
            api.patch(NETWORKS, "net", json!({"spec": {"resources": resources}}));
        },
        warm: true,
        change: nothing,
        calls: &[GET_SECRET, APPLY_SVC, APPLY_STS],
        events: &[],
        ok: true,
        check: |api, before| {
            before.assert_unchanged(api);
            assert_eq!(
                container(api)["resources"],
                json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1536Mi"}})
            );
        },
    },
    Case {
        name: "scaling the network scales the StatefulSet",
        setup: nothing,
        warm: true,
        change: |api| api.patch(NETWORKS, "net", json!({"spec": {"nodes": 4}})),
        calls: &[GET_SECRET, APPLY_SVC, APPLY_STS, EVENT, PUT_STATUS],
        events: &["Scaled"],
        ok: true,
        check: |api, _| {
            assert_eq!(replicas(api), 4);
            assert_eq!(status(api)["observedGeneration"], 2);
            assert_eq!(status(api)["conditions"][0]["message"], "0 of 4 nodes ready");
        },
    },
    Case {
        name: "replicas changed behind the operator's back are taken back (a forced apply)",
        setup: nothing,
        warm: true,
        change: |api| api.patch(STATEFULSETS, "net", json!({"spec": {"replicas": 5}})),
        calls: &[GET_SECRET, APPLY_SVC, APPLY_STS, EVENT],
        events: &["Scaled"],
        ok: true,
        check: |api, _| assert_eq!(replicas(api), 3),
    },
    Case {
        name: "a pod template from an earlier operator version rolls out: changed fields set, dropped fields removed",
        setup: nothing,
        warm: true,
        change: |api| {
            // What an older version applied: another default image, and an annotation and a
            // pod field this version no longer sets.
            let mut old = set(api);
            old["metadata"]["annotations"]["bitcoin.stagecoach.dev/old"] = json!("yes");
            old["spec"]["template"]["spec"]["containers"][0]["image"] = json!("bitcoin/bitcoin:27.0");
            old["spec"]["template"]["spec"]["hostNetwork"] = json!(false);
            for field in ["resourceVersion", "uid", "generation", "creationTimestamp"] {
                old["metadata"].as_object_mut().unwrap().remove(field);
            }
            api.apply(STATEFULSETS, "net", "bitcoin-operator", old);
        },
        calls: &[GET_SECRET, APPLY_SVC, APPLY_STS, EVENT],
        events: &["Updated"],
        ok: true,
        check: |api, _| {
            let sts = set(api);
            assert_eq!(container(api)["image"], "bitcoin/bitcoin:28.1");
            assert!(sts["metadata"]["annotations"]["bitcoin.stagecoach.dev/old"].is_null(), "{sts:#}");
            assert!(sts["spec"]["template"]["spec"]["hostNetwork"].is_null(), "{sts:#}");
            // What the server defaulted stays.
            assert_eq!(sts["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        },
    },
    Case {
        name: "an image of an allowed repository rolls out",
        setup: nothing,
        warm: true,
        change: |api| api.patch(NETWORKS, "net", json!({"spec": {"image": "bitcoin/bitcoin:29.0@sha256:abc"}})),
        calls: &[GET_SECRET, APPLY_SVC, APPLY_STS, EVENT, PUT_STATUS],
        events: &["Updated"],
        ok: true,
        check: |api, _| assert_eq!(container(api)["image"], "bitcoin/bitcoin:29.0@sha256:abc"),
    },
    Case {
        name: "an image of another repository is refused: Warning event, status says why, StatefulSet untouched",
        setup: nothing,
        warm: true,
        change: |api| api.patch(NETWORKS, "net", json!({"spec": {"image": "evil.example/miner:1"}})),
        calls: &[GET_SECRET, EVENT, PUT_STATUS],
        events: &["ImageNotAllowed"],
        ok: true,
        check: |api, before| {
            before.assert_unchanged(api);
            assert_eq!(container(api)["image"], "bitcoin/bitcoin:28.1");
            let (status, reason, message) = ready_condition(api);
            assert_eq!((status.as_str(), reason.as_str()), ("False", "ImageNotAllowed"));
            assert!(message.contains("evil.example/miner:1") && message.contains("bitcoin/bitcoin"), "{message}");
        },
    },
    Case {
        name: "a secret without the rpc-credentials label is refused: nothing is built from it",
        setup: |api| api.insert(unlabelled_secret("rpc", "u", "p")),
        warm: false,
        change: nothing,
        calls: &[GET_SECRET, EVENT, PUT_STATUS],
        events: &["SecretNotLabelled"],
        ok: true,
        check: |api, _| {
            assert!(api.get(STATEFULSETS, "net").is_none() && api.get(SERVICES, "net").is_none());
            let (status, reason, message) = ready_condition(api);
            assert_eq!((status.as_str(), reason.as_str()), ("False", "SecretNotLabelled"));
            assert!(message.contains("bitcoin.stagecoach.dev/rpc-credentials=\"true\""), "{message}");
        },
    },
    Case {
        name: "a refusal is told once: the next reconcile reads the secret and writes nothing",
        setup: |api| api.insert(unlabelled_secret("rpc", "u", "p")),
        warm: true,
        change: nothing,
        calls: &[GET_SECRET],
        events: &[],
        ok: true,
        check: |api, _| assert!(api.get(STATEFULSETS, "net").is_none()),
    },
    Case {
        name: "a network being deleted is left to garbage collection: no call at all",
        setup: nothing,
        warm: true,
        change: |api| api.patch(NETWORKS, "net", json!({"metadata": {"deletionTimestamp": "2026-11-22T00:00:00Z"}})),
        calls: &[],
        events: &[],
        ok: true,
        check: |api, _| assert_eq!(replicas(api), 3),
    },
    Case {
        name: "pods that appear change the status: node list, IPs, DNS names, readiness",
        setup: nothing,
        warm: true,
        change: |api| {
            api.insert(pod("net", 1, false, Some("10.244.0.7")));
            api.insert(pod("net", 0, false, None));
        },
        calls: &[GET_SECRET, APPLY_SVC, APPLY_STS, PUT_STATUS],
        events: &[],
        ok: true,
        check: |api, _| {
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
        name: "a StatefulSet of the same name that the network does not control is not taken over, nor is anything created",
        setup: |api| {
            api.insert(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "net", "namespace": "default"}, "spec": {"replicas": 1}}))
        },
        warm: false,
        change: nothing,
        calls: &[GET_SECRET, SVC, STS, EVENT, PUT_STATUS],
        events: &["ReconcileFailed"],
        ok: false,
        check: |api, _| {
            assert_eq!(replicas(api), 1);
            assert!(set(api)["metadata"]["ownerReferences"].is_null());
            assert!(api.get(SERVICES, "net").is_none());
            // The status says why, as the event does.
            let condition = &api.get(NETWORKS, "net").unwrap()["status"]["conditions"][0];
            assert_eq!((&condition["status"], &condition["reason"]), (&json!("False"), &json!("ReconcileFailed")));
            let message = condition["message"].as_str().unwrap();
            assert!(
                message.starts_with("StatefulSet net exists but is not controlled by this BitcoinNetwork"),
                "{message}"
            );
        },
    },
];

#[tokio::test]
async fn reconcile_cases() {
    let mut failures = Vec::new();
    for case in CASES {
        let api = FakeApi::default();
        api.insert(network("net", 3, Some("rpc")));
        api.insert(secret("rpc", "u", "p"));
        (case.setup)(&api);
        let operator = Operator::new(&api, 1);
        if case.warm {
            operator.reconcile("net").await.expect("the first reconcile");
            api.take_calls();
            for event in api.list(EVENTS) {
                api.remove(EVENTS, event["metadata"]["name"].as_str().unwrap());
            }
        }
        (case.change)(&api);
        let before = Versions::of(&api);
        let result = operator.reconcile("net").await;
        let calls = api.take_calls();
        if result.is_ok() != case.ok || calls != case.calls || event_reasons(&api) != case.events {
            failures.push(format!(
                "{}:\n  result {result:?}\n  calls  {calls:#?}\n  events {:?}",
                case.name,
                event_reasons(&api)
            ));
            continue;
        }
        (case.check)(&api, &before);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_deleted_network_is_not_requeued_and_a_healthy_one_is_resynced() {
    let api = FakeApi::default();
    api.insert(network("net", 1, None));
    let operator = Operator::new(&api, 1);
    assert_eq!(operator.reconcile("net").await.unwrap(), Action::requeue(Duration::from_secs(60)));
    api.patch(NETWORKS, "net", json!({"metadata": {"deletionTimestamp": "2026-11-22T00:00:00Z"}}));
    assert_eq!(operator.reconcile("net").await.unwrap(), Action::await_change());
}

#[tokio::test]
async fn failures_in_a_row_back_off_exponentially_up_to_the_cap_and_success_resets() {
    let api = FakeApi::default();
    // A name too long for pod names fails every time without touching the API.
    let long = "n".repeat(60);
    api.insert(network(&long, 1, None));
    api.insert(network("net", 1, None));
    let operator = Operator::new(&api, 1);
    let ctx = operator.ctx.clone();
    let (bad, good) = (current(&api, &long), current(&api, "net"));
    let mut delays = Vec::new();
    for _ in 0..10 {
        let error = operator.reconcile(&long).await.unwrap_err();
        assert!(error.to_string().contains("at most 52 characters"), "{error}");
        delays.push(error_policy(bad.clone(), &error, ctx.clone()));
    }
    let secs = |s: u64| Action::requeue(Duration::from_secs(s));
    assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300].map(secs));
    // Another network's failure count is its own.
    let error = operator.reconcile(&long).await.unwrap_err();
    assert_eq!(error_policy(good.clone(), &error, ctx.clone()), secs(2));
    operator.reconcile("net").await.unwrap();
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
    Operator::new(&api, 1).reconcile("net").await.unwrap();
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
    let operator = Operator::new(&api, 1);
    operator.sync();
    let runs = (0..20).map(|i| reconcile(current(&api, &format!("net{i}")), operator.ctx.clone()));
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
