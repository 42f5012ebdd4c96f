//! The JSON-RPC client and the mesh against JSON-RPC servers on 127.0.0.x, and the reconciler
//! driving them for ready pods.

use std::time::Duration;

use bitcoin_operator::mesh;
use bitcoin_operator::rpc::{RpcClient, RpcError};
use bitcoin_operator::secret::Credentials;

use crate::support::bitcoind::{self, Behaviour, PASSWORD, USER};
use crate::support::fake_api::FakeApi;
use crate::support::fixtures::*;

fn credentials() -> Credentials {
    Credentials { user: USER.to_owned(), password: PASSWORD.to_owned() }
}

struct Case {
    name: &'static str,
    /// Each node's addnode list before the sync (by index; IPs written as `{n}` for node n).
    before: &'static [&'static [&'static str]],
    behaviour: &'static [(usize, fn() -> Behaviour)],
    /// Nodes (by index) that take part: the ready ones.
    ready: &'static [usize],
    /// Calls each node gets, `{n}` standing for node n's IP.
    calls: &'static [&'static [&'static str]],
    after: &'static [&'static [&'static str]],
    failures: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "three fresh nodes each learn the two others",
        before: &[&[], &[], &[]],
        behaviour: &[],
        ready: &[0, 1, 2],
        calls: &[
            &["getaddednodeinfo", "addnode {1} add", "addnode {2} add"],
            &["getaddednodeinfo", "addnode {0} add", "addnode {2} add"],
            &["getaddednodeinfo", "addnode {0} add", "addnode {1} add"],
        ],
        after: &[&["{1}", "{2}"], &["{0}", "{2}"], &["{0}", "{1}"]],
        failures: 0,
    },
    Case {
        name: "a meshed network needs one read per node and no change",
        before: &[&["{1}", "{2}"], &["{0}", "{2}"], &["{0}", "{1}"]],
        behaviour: &[],
        ready: &[0, 1, 2],
        calls: &[&["getaddednodeinfo"], &["getaddednodeinfo"], &["getaddednodeinfo"]],
        after: &[&["{1}", "{2}"], &["{0}", "{2}"], &["{0}", "{1}"]],
        failures: 0,
    },
    Case {
        name: "a node that is gone or not ready is removed; its own list is left alone",
        before: &[&["{1}", "{2}", "10.9.9.9"], &["{0}", "{2}"], &["{0}", "{1}"]],
        behaviour: &[],
        ready: &[0, 1],
        calls: &[
            &["getaddednodeinfo", "addnode 10.9.9.9 remove", "addnode {2} remove"],
            &["getaddednodeinfo", "addnode {2} remove"],
            &[],
        ],
        after: &[&["{1}"], &["{0}"], &["{0}", "{1}"]],
        failures: 0,
    },
    Case {
        name: "a node's own IP in its list is taken out",
        before: &[&["{0}", "{1}"], &["{0}"]],
        behaviour: &[],
        ready: &[0, 1],
        calls: &[&["getaddednodeinfo", "addnode {0} remove"], &["getaddednodeinfo"]],
        after: &[&["{1}"], &["{0}"]],
        failures: 0,
    },
    Case {
        name: "\"already added\" and \"not added\" answers are not failures",
        before: &[&["{1}", "10.9.9.9"], &[]],
        behaviour: &[
            (0, || Behaviour { addnode_error: Some(-24), ..Behaviour::default() }),
            (1, || Behaviour { addnode_error: Some(-23), ..Behaviour::default() }),
        ],
        ready: &[0, 1],
        calls: &[&["getaddednodeinfo", "addnode 10.9.9.9 remove"], &["getaddednodeinfo", "addnode {0} add"]],
        after: &[&["{1}", "10.9.9.9"], &[]],
        failures: 0,
    },
    Case {
        name: "another RPC error stops that node only",
        before: &[&[], &[]],
        behaviour: &[(0, || Behaviour { addnode_error: Some(-1), ..Behaviour::default() })],
        ready: &[0, 1],
        calls: &[&["getaddednodeinfo", "addnode {1} add"], &["getaddednodeinfo", "addnode {0} add"]],
        after: &[&[], &["{0}"]],
        failures: 1,
    },
    Case {
        name: "a node that does not answer in time fails; the others are synced",
        before: &[&[], &[], &[]],
        behaviour: &[(2, || Behaviour { delay: Some(Duration::from_secs(3)), ..Behaviour::default() })],
        ready: &[0, 1, 2],
        calls: &[
            &["getaddednodeinfo", "addnode {1} add", "addnode {2} add"],
            &["getaddednodeinfo", "addnode {0} add", "addnode {2} add"],
            &["getaddednodeinfo"],
        ],
        after: &[&["{1}", "{2}"], &["{0}", "{2}"], &[]],
        failures: 1,
    },
];

fn expand(text: &str, nodes: &[bitcoind::Bitcoind]) -> String {
    nodes.iter().enumerate().fold(text.to_owned(), |t, (i, n)| t.replace(&format!("{{{i}}}"), &n.ip))
}

#[tokio::test]
async fn mesh_cases() {
    let mut failures = Vec::new();
    for case in CASES {
        let (port, nodes) = bitcoind::start(case.before.len() as u8).await;
        for (node, before) in nodes.iter().zip(case.before) {
            node.set_added(
                &before
                    .iter()
                    .map(|b| expand(b, &nodes))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            );
        }
        for (i, behaviour) in case.behaviour {
            nodes[*i].set_behaviour(behaviour());
        }
        let rpc = RpcClient::new(port, Duration::from_millis(500));
        let ready: Vec<String> = case.ready.iter().map(|i| nodes[*i].ip.clone()).collect();
        let report = mesh::sync(&rpc, &credentials(), &ready).await;
        let expand_all = |lists: &[&[&str]]| -> Vec<Vec<String>> {
            lists.iter().map(|l| l.iter().map(|t| expand(t, &nodes)).collect()).collect()
        };
        let calls: Vec<Vec<String>> = nodes.iter().map(|n| n.take_calls()).collect();
        let mut after: Vec<Vec<String>> = nodes.iter().map(|n| n.added()).collect();
        let mut expected_after = expand_all(case.after);
        for list in after.iter_mut().chain(expected_after.iter_mut()) {
            list.sort();
        }
        let mut expected_calls = expand_all(case.calls);
        let mut sorted_calls = calls.clone();
        // Within a node, adds go in IP order and removals in IP order; compare as sets per kind.
        for list in sorted_calls.iter_mut().chain(expected_calls.iter_mut()) {
            list.sort();
        }
        if sorted_calls != expected_calls || after != expected_after || report.failures.len() != case.failures {
            failures.push(format!(
                "{}:\n  calls {calls:?}\n  want  {expected_calls:?}\n  after {after:?}\n  want  {expected_after:?}\n  failures {:?}",
                case.name, report.failures
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn rpc_errors_say_what_happened_and_never_show_the_password() {
    let (port, nodes) = bitcoind::start(1).await;
    let node = &nodes[0].ip;
    let wrong = Credentials { user: USER.to_owned(), password: "wrong-password-xyz".to_owned() };
    let quick = RpcClient::new(port, Duration::from_millis(300));
    let cases: Vec<(&str, Result<_, RpcError>, &str)> = vec![
        ("wrong password", quick.added_nodes(node, &wrong).await, "credentials were refused (HTTP 401)"),
        (
            "nothing listening",
            quick.added_nodes("127.0.0.250", &credentials()).await,
            "127.0.0.250: getaddednodeinfo: client error (Connect)",
        ),
        ("not an IP", quick.added_nodes("net-0.net", &credentials()).await, "net-0.net is not an IP address"),
    ];
    nodes[0].set_behaviour(Behaviour { delay: Some(Duration::from_secs(2)), ..Behaviour::default() });
    let slow = quick.network_info(node, &credentials()).await.map(|_| Vec::new());
    for (name, result, expected) in
        cases.into_iter().chain([("no answer in time", slow, "getnetworkinfo got no answer within 300ms")])
    {
        let message = result.expect_err(name).to_string();
        assert!(message.contains(expected), "{name}: {message}");
        assert!(!message.contains("wrong-password-xyz") && !message.contains(PASSWORD), "{name}: {message}");
    }
}

#[tokio::test]
async fn network_info_is_read() {
    let (port, nodes) = bitcoind::start(1).await;
    nodes[0].set_added(&["10.0.0.1", "10.0.0.2"]);
    let info = RpcClient::new(port, Duration::from_secs(1)).network_info(&nodes[0].ip, &credentials()).await.unwrap();
    assert_eq!((info.version, info.subversion.as_str(), info.connections), (280100, "/Satoshi:28.1.0/", 2));
}

#[tokio::test]
async fn reconcile_meshes_the_ready_pods_with_the_secrets_credentials() {
    let (port, nodes) = bitcoind::start(3).await;
    let api = FakeApi::default();
    api.insert(network("net", 3, Some("rpc")));
    api.insert(secret("rpc", USER, PASSWORD));
    for (i, node) in nodes.iter().enumerate() {
        api.insert(pod("net", i as i32, i < 2, Some(&node.ip)));
    }
    // Node 2 is not ready: it is left out, and node 0 forgets it.
    nodes[0].set_added(&[&nodes[2].ip]);
    let operator = Operator::new(&api, port);
    operator.reconcile("net").await.unwrap();
    assert_eq!(nodes[0].added(), [nodes[1].ip.clone()]);
    assert_eq!(nodes[1].added(), [nodes[0].ip.clone()]);
    assert!(nodes[2].take_calls().is_empty());
    let calls = api.take_calls();
    assert_eq!(
        calls.iter().filter(|c| c.contains("/secrets")).collect::<Vec<_>>(),
        ["GET /api/v1/namespaces/default/secrets/rpc"],
        "one GET, no list or watch"
    );
    assert_eq!(event_reasons(&api), ["Created", "NodesAdded", "NodesRemoved"]);
    let status = api.get(NETWORKS, "net").unwrap()["status"].clone();
    assert_eq!(status["readyNodes"], 2);
    assert_eq!(status["conditions"][0]["message"], "2 of 3 nodes ready");

    // Node 2 becomes ready: everyone learns it.
    api.insert(pod("net", 2, true, Some(&nodes[2].ip)));
    operator.reconcile("net").await.unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let mut others: Vec<String> = nodes.iter().filter(|n| n.ip != node.ip).map(|n| n.ip.clone()).collect();
        others.sort();
        assert_eq!(node.added(), others, "node {i}");
    }
    assert_eq!(api.get(NETWORKS, "net").unwrap()["status"]["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn a_missing_or_incomplete_secret_fails_the_reconcile_but_the_status_is_written() {
    let (port, nodes) = bitcoind::start(1).await;
    let cases: [(&str, Option<serde_json::Value>, &str); 3] = [
        ("missing", None, "secret rpc does not exist in the network's namespace"),
        (
            "no password",
            Some(
                serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rpc", "namespace": "default",
                    "labels": {"bitcoin.stagecoach.dev/rpc-credentials": "true"}}, "data": {"BITCOIN_RPC_USER": "YWxpY2U="}}),
            ),
            "secret rpc has no key BITCOIN_RPC_PASSWORD",
        ),
        ("wrong password", Some(secret("rpc", USER, "not-the-password")), "the RPC credentials were refused"),
    ];
    for (name, secret, expected) in cases {
        let api = FakeApi::default();
        api.insert(network("net", 1, Some("rpc")));
        api.insert(pod("net", 0, true, Some(&nodes[0].ip)));
        if let Some(secret) = secret {
            api.insert(secret);
        }
        let error = Operator::new(&api, port).reconcile("net").await.unwrap_err().to_string();
        assert!(error.contains(expected), "{name}: {error}");
        assert!(!error.contains("not-the-password"), "{name}: {error}");
        assert_eq!(api.get(NETWORKS, "net").unwrap()["status"]["readyNodes"], 1, "{name}");
        let warning = api.list(EVENTS).into_iter().find(|e| e["reason"] == "ReconcileFailed").expect(name);
        assert_eq!(warning["type"], "Warning");
        assert!(warning["note"].as_str().unwrap().contains(expected), "{name}");
    }
}
