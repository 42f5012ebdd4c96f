//! The operator in a real cluster, as the seeds test it by hand. Ignored by default: they need a
//! kind cluster (KUBECONFIG) with the chart installed and the bitcoind image loaded, which our
//! machines cannot run. `.github/workflows/integration.yml` runs them:
//!
//!     cargo test -p bitcoin-operator --test operator -- --ignored kind::
//!
//! Each test makes its own namespace, Secret and network, and deletes the namespace at the end.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(300);

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
        let network = format!(
            "apiVersion: bitcoin.stagecoach.dev/v1\nkind: BitcoinNetwork\nmetadata:\n  name: net\n  namespace: {}\nspec:\n  nodes: {nodes}\n  secret: bitcoin-rpc\n",
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
        try_kubectl(
            &["exec", "-n", &self.0, &format!("net-{ordinal}"), "-c", "bitcoind", "--", "sh", "-c", &script],
            "",
        )
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

#[test]
#[ignore = "needs a kind cluster"]
fn a_network_of_three_becomes_ready_and_meshed() {
    let ns = Namespace::with_network("ready", 3);
    let network = ns.wait_ready(3);
    let nodes = network["status"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["dnsName"], format!("net-{i}.net.{}.svc.cluster.local", ns.0));
        assert!(node["ip"].is_string() && node["nodeName"].is_string());
    }
    wait("a full mesh", || ns.meshed().then_some(()));
}

#[test]
#[ignore = "needs a kind cluster"]
fn blocks_mined_on_node_0_reach_every_node() {
    let ns = Namespace::with_network("blocks", 3);
    ns.wait_ready(3);
    wait("a full mesh", || ns.meshed().then_some(()));
    ns.mine(0, 101);
    for ordinal in 0..3 {
        wait(&format!("101 blocks on node {ordinal}"), || (ns.block_count(ordinal) >= 101).then_some(()));
    }
}

#[test]
#[ignore = "needs a kind cluster"]
fn a_deleted_pod_comes_back_and_rejoins_the_mesh() {
    let ns = Namespace::with_network("rejoin", 3);
    let before = ns.wait_ready(3);
    ns.mine(0, 101);
    let old_ip = before["status"]["nodes"][1]["ip"].clone();
    kubectl(&["delete", "pod", "net-1", "-n", &ns.0, "--wait=true"]);
    let after = wait("net-1 back with its ready status", || {
        let network = ns.wait_ready(3);
        let back = network["status"]["nodes"][1]["ip"].is_string();
        back.then_some(network)
    });
    eprintln!("net-1 was {old_ip}, is now {}", after["status"]["nodes"][1]["ip"]);
    wait("a full mesh", || ns.meshed().then_some(()));
    wait("101 blocks on the new net-1", || (ns.block_count(1) >= 101).then_some(()));
}

#[test]
#[ignore = "needs a kind cluster"]
fn scaling_to_four_joins_the_new_node_to_the_mesh() {
    let ns = Namespace::with_network("scale", 3);
    ns.wait_ready(3);
    ns.mine(0, 101);
    kubectl(&["patch", "bitcoinnetwork", "net", "-n", &ns.0, "--type=merge", "-p", r#"{"spec":{"nodes":4}}"#]);
    ns.wait_ready(4);
    wait("a full mesh of four", || ns.meshed().then_some(()));
    wait("101 blocks on net-3", || (ns.block_count(3) >= 101).then_some(()));
    let replicas = kubectl(&["get", "statefulset", "net", "-n", &ns.0, "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "4");
}
