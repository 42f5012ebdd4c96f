//! The operator in a real cluster. Ignored by default: they need a kind cluster (KUBECONFIG,
//! KUBE_CONTEXT) with the chart installed, as the QA stage brings it up and runs them:
//!
//!     cargo test -p bitcoin-operator --test operator -- --ignored kind::
//!
//! With STAGECOACH_BITCOIND_STANDIN naming the stand-in bitcoind image (`.ci/bitcoind-standin`,
//! for machines that cannot pull one), the networks run it (`spec.image`; the chart must allow
//! it, as `bitcoind.image` or in `bitcoind.allowedImages`), it is loaded into the kind cluster
//! first, and the tests under `kind::real_bitcoind`, which need blocks, refuse to run: the
//! pipeline skips them then, and hosted CI, which pulls bitcoind, runs them.
//!
//! Each test makes its own namespace, Secret and network, and deletes the namespace at the end.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(300);

/// The stand-in bitcoind image, loaded into the kind cluster once, when one is named.
fn standin() -> Option<&'static str> {
    static LOADED: OnceLock<Option<String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let image = std::env::var("STAGECOACH_BITCOIND_STANDIN").ok().filter(|i| !i.is_empty())?;
            let context = std::env::var("KUBE_CONTEXT").unwrap_or_default();
            let cluster = context.strip_prefix("kind-").unwrap_or_else(|| {
                panic!("STAGECOACH_BITCOIND_STANDIN is loaded into a kind cluster; KUBE_CONTEXT is {context:?}")
            });
            let out = Command::new("kind").args(["load", "docker-image", &image, "--name", cluster]).output();
            let out = out.expect("kind on PATH");
            assert!(out.status.success(), "kind load {image}: {}", String::from_utf8_lossy(&out.stderr));
            Some(image)
        })
        .as_deref()
}

struct Namespace(String);

impl Namespace {
    /// A fresh namespace with an RPC secret, and a network of `nodes` named `net` in it.
    fn with_network(test: &str, nodes: u32) -> Self {
        let ns = Namespace(format!("btc-{test}-{}", std::process::id()));
        kubectl(&["create", "namespace", &ns.0]);
        kubectl(&[
            "create",
            "secret",
            "generic",
            "bitcoin-rpc",
            "-n",
            &ns.0,
            "--from-literal=BITCOIN_RPC_USER=kind",
            "--from-literal=BITCOIN_RPC_PASSWORD=kind-test-password",
        ]);
        // Without it the operator refuses the secret.
        kubectl(&["label", "secret", "bitcoin-rpc", "-n", &ns.0, "bitcoin.stagecoach.dev/rpc-credentials=true"]);
        let image = standin().map(|image| format!("  image: {image}\n")).unwrap_or_default();
        let network = format!(
            "apiVersion: bitcoin.stagecoach.dev/v1\nkind: BitcoinNetwork\nmetadata:\n  name: net\n  namespace: {}\nspec:\n  nodes: {nodes}\n  secret: bitcoin-rpc\n{image}",
            ns.0
        );
        kubectl_stdin(&["apply", "-f", "-"], &network);
        ns
    }

    fn network(&self) -> Value {
        serde_json::from_str(&kubectl(&["get", "bitcoinnetwork", "net", "-n", &self.0, "-o", "json"])).unwrap()
    }

    /// Waits until the status shows `nodes` ready nodes and the Ready condition.
    fn wait_ready(&self, nodes: i64) -> Value {
        wait(&format!("{nodes} ready nodes"), || {
            let network = self.network();
            let ready = network["status"]["readyNodes"] == nodes
                && network["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            ready.then_some(network)
        })
    }

    /// bitcoin-cli on pod `net-<ordinal>` with the secret's credentials.
    fn cli(&self, ordinal: u32, command: &str) -> Result<String, String> {
        let script = format!(
            "bitcoin-cli -regtest -rpcuser=\"$BITCOIN_RPC_USER\" -rpcpassword=\"$BITCOIN_RPC_PASSWORD\" {command}"
        );
        self.exec(ordinal, &script)
    }

    fn block_count(&self, ordinal: u32) -> u64 {
        self.cli(ordinal, "getblockcount").ok().and_then(|c| c.trim().parse().ok()).unwrap_or(0)
    }

    fn mine(&self, ordinal: u32, blocks: u32) {
        self.cli(ordinal, "-named createwallet wallet_name=miner load_on_startup=false").unwrap();
        let address = self.cli(ordinal, "-rpcwallet=miner getnewaddress").unwrap();
        self.cli(ordinal, &format!("generatetoaddress {blocks} {}", address.trim())).unwrap();
    }

    /// Whether every node's addnode list holds exactly the other nodes' IPs.
    fn meshed(&self) -> bool {
        let network = self.network();
        let ips: Vec<String> = network["status"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["ip"].as_str().map(str::to_owned))
            .collect();
        ips.iter().enumerate().all(|(ordinal, ip)| {
            let mut others: Vec<&str> = ips.iter().filter(|o| *o != ip).map(String::as_str).collect();
            others.sort();
            let Ok(answer) = self.cli(ordinal as u32, "getaddednodeinfo") else { return false };
            let added: Value = serde_json::from_str(&answer).unwrap_or_default();
            let mut added: Vec<&str> =
                added.as_array().into_iter().flatten().filter_map(|a| a["addednode"].as_str()).collect();
            added.sort();
            added == others
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("kubectl").args(["delete", "namespace", &self.0, "--wait=false"]).output();
    }
}

fn kubectl(args: &[&str]) -> String {
    kubectl_stdin(args, "")
}

fn kubectl_stdin(args: &[&str], stdin: &str) -> String {
    try_kubectl(args, stdin).unwrap_or_else(|e| panic!("{e}"))
}

fn try_kubectl(args: &[&str], stdin: &str) -> Result<String, String> {
    use std::io::Write as _;
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(format!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < TIMEOUT, "no {what} after {TIMEOUT:?}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The IP a pod of the network has, by its DNS name, as the pod `from` resolves it.
fn resolved(ns: &Namespace, from: u32, name: &str) -> String {
    let lookup = format!("getent hosts {name} 2>/dev/null || busybox nslookup {name}");
    ns.exec(from, &lookup).unwrap_or_else(|e| e)
}

impl Namespace {
    fn exec(&self, ordinal: u32, script: &str) -> Result<String, String> {
        try_kubectl(&["exec", "-n", &self.0, &format!("net-{ordinal}"), "-c", "bitcoind", "--", "sh", "-c", script], "")
    }
}

#[test]
#[ignore = "needs a kind cluster"]
fn a_network_of_three_becomes_ready_and_meshed_and_its_nodes_have_dns_names() {
    let ns = Namespace::with_network("ready", 3);
    let network = ns.wait_ready(3);
    let nodes = network["status"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for (i, node) in nodes.iter().enumerate() {
        let name = format!("net-{i}.net.{}.svc.cluster.local", ns.0);
        assert_eq!(node["dnsName"], name.as_str());
        assert!(node["ip"].is_string() && node["nodeName"].is_string());
        // The headless Service names each pod for its peers, through the cluster's DNS.
        let ip = node["ip"].as_str().unwrap();
        wait(&format!("{name} resolving to {ip}"), || {
            resolved(&ns, (i as u32 + 1) % 3, &name).contains(ip).then_some(())
        });
    }
    wait("a full mesh", || ns.meshed().then_some(()));
}

#[test]
#[ignore = "needs a kind cluster"]
fn a_deleted_pod_comes_back_and_rejoins_the_mesh() {
    let ns = Namespace::with_network("rejoin", 3);
    let before = ns.wait_ready(3);
    wait("a full mesh", || ns.meshed().then_some(()));
    let old_uid = kubectl(&["get", "pod", "net-1", "-n", &ns.0, "-o", "jsonpath={.metadata.uid}"]);
    kubectl(&["delete", "pod", "net-1", "-n", &ns.0, "--wait=true"]);
    let after = wait("net-1 back, ready", || {
        let uid =
            kubectl(&["get", "pod", "net-1", "-n", &ns.0, "-o", "jsonpath={.metadata.uid}", "--ignore-not-found"]);
        let network = ns.network();
        let ready = network["status"]["readyNodes"] == 3 && !uid.is_empty() && uid != old_uid;
        ready.then_some(network)
    });
    eprintln!("net-1 was {}, is now {}", before["status"]["nodes"][1]["ip"], after["status"]["nodes"][1]["ip"]);
    wait("a full mesh with the new net-1", || ns.meshed().then_some(()));
}

#[test]
#[ignore = "needs a kind cluster"]
fn scaling_to_four_joins_the_new_node_to_the_mesh() {
    let ns = Namespace::with_network("scale", 3);
    ns.wait_ready(3);
    kubectl(&["patch", "bitcoinnetwork", "net", "-n", &ns.0, "--type=merge", "-p", r#"{"spec":{"nodes":4}}"#]);
    ns.wait_ready(4);
    wait("a full mesh of four", || ns.meshed().then_some(()));
    let replicas = kubectl(&["get", "statefulset", "net", "-n", &ns.0, "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "4");
}

/// What only a real bitcoind does: a chain that grows and travels to the peers.
mod real_bitcoind {
    use super::*;

    #[track_caller]
    fn refuse_the_standin() {
        if let Some(image) = standin() {
            panic!(
                "needs a real bitcoind, and STAGECOACH_BITCOIND_STANDIN names the stand-in {image}: skip kind::real_bitcoind"
            );
        }
    }

    #[test]
    #[ignore = "needs a kind cluster and a real bitcoind (hosted CI)"]
    fn blocks_mined_on_node_0_reach_every_node() {
        refuse_the_standin();
        let ns = Namespace::with_network("blocks", 3);
        ns.wait_ready(3);
        wait("a full mesh", || ns.meshed().then_some(()));
        ns.mine(0, 101);
        for ordinal in 0..3 {
            wait(&format!("101 blocks on node {ordinal}"), || (ns.block_count(ordinal) >= 101).then_some(()));
        }
    }

    #[test]
    #[ignore = "needs a kind cluster and a real bitcoind (hosted CI)"]
    fn a_node_that_came_back_and_a_new_node_catch_up_on_the_chain() {
        refuse_the_standin();
        let ns = Namespace::with_network("catchup", 3);
        ns.wait_ready(3);
        ns.mine(0, 101);
        kubectl(&["delete", "pod", "net-1", "-n", &ns.0, "--wait=true"]);
        kubectl(&["patch", "bitcoinnetwork", "net", "-n", &ns.0, "--type=merge", "-p", r#"{"spec":{"nodes":4}}"#]);
        ns.wait_ready(4);
        wait("a full mesh of four", || ns.meshed().then_some(()));
        for ordinal in [1, 3] {
            wait(&format!("101 blocks on net-{ordinal}"), || (ns.block_count(ordinal) >= 101).then_some(()));
        }
    }
}
