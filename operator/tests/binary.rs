//! The operator binary itself, against the in-memory API server over HTTP: the controller's
//! watches, its reconciles of networks that exist at start, and its exits.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fake_api::FakeApi;
use crate::support::fixtures::*;

fn operator(kubeconfig: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["--log-level", "info", "--bitcoind-image", "example/bitcoind:1"])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "no {what} after 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_reconciles_what_it_lists_watches_its_objects_and_stops_on_sigterm() {
    let api = FakeApi::default();
    api.insert(network("alpha", 2, None));
    api.insert(network("beta", 0, Some("rpc")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    api.serve(listener);
    let dir = tempfile::tempdir().unwrap();
    let mut child = operator(&kubeconfig(dir.path(), port));

    let mut calls = Vec::new();
    until("statuses for both networks", || {
        calls.extend(api.take_calls());
        ["alpha", "beta"].iter().all(|n| api.get(NETWORKS, n).is_some_and(|o| !o["status"].is_null()))
    })
    .await;
    let sts = api.get(STATEFULSETS, "alpha").unwrap();
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "example/bitcoind:1");
    assert_eq!(api.get(NETWORKS, "beta").unwrap()["status"]["conditions"][0]["status"], "True");
    until("the four watches", || {
        calls.extend(api.take_calls());
        let watched = |path: &str| calls.iter().any(|c| c.starts_with("WATCH") && c.ends_with(path));
        ["/bitcoinnetworks", "/statefulsets", "/services", "/pods"].iter().all(|p| watched(p))
    })
    .await;
    // Secrets are read one by one, never listed or watched.
    assert!(!calls.iter().any(|c| c.ends_with("/secrets")), "{calls:#?}");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still running 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let output = child.wait_with_output().unwrap();
    assert!(status.success(), "{status:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_api_server_the_operator_exits_with_a_hint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let output = operator(&kubeconfig(dir.path(), port)).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot list BitcoinNetworks") && stderr.contains("is the CRD installed?"), "{stderr}");
}
