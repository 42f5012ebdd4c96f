//! Reconcile throughput for 1,000 networks against the in-memory API server, and the operator
//! binary's resident memory, idle and with 1,000 networks.
//!
//!     cargo bench -p bitcoin-operator --bench reconcile
//!
//! Figures are ratios against baselines measured in the same run: a reconcile against the cost
//! of one GET through the same client and server; the operator's RSS against `sleep`'s.

#[path = "../tests/support/fake_api.rs"]
mod fake_api;
#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin_operator::controller::{FIELD_MANAGER, reconcile};
use bitcoin_operator::crd::BitcoinNetwork;
use bitcoin_operator::resources;
use fake_api::FakeApi;
use fixtures::{NETWORKS, Operator, current, network};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams};

const NETWORK_COUNT: usize = 1000;
/// As many reconciles at once as the operator's default `--concurrency`.
const CONCURRENCY: usize = 8;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        throughput().await;
        memory().await;
    });
}

fn names() -> Vec<String> {
    (0..NETWORK_COUNT).map(|i| format!("net{i:04}")).collect()
}

async fn timed<F: std::future::Future<Output = ()>>(names: &[String], work: impl Fn(String) -> F) -> Duration {
    let start = Instant::now();
    futures::stream::iter(names.iter().cloned()).map(&work).buffer_unordered(CONCURRENCY).collect::<Vec<()>>().await;
    start.elapsed()
}

async fn throughput() {
    let api = FakeApi::default();
    for name in names() {
        api.insert(network(&name, 3, None));
    }
    let operator = Operator::new(&api, 1);
    let ctx = operator.ctx.clone();
    let networks: Api<BitcoinNetwork> = Api::namespaced(api.client(), "default");
    let names = names();

    let get = timed(&names, |name| {
        let networks = networks.clone();
        async move {
            networks.get(&name).await.unwrap();
        }
    })
    .await;
    api.take_calls();
    // The controller hands the reconciler networks from its cache, and its watches keep the
    // caches of StatefulSets, Services and pods: both are brought up to date before the clock runs.
    let reconcile_all = || async {
        operator.sync();
        let networks: HashMap<String, Arc<BitcoinNetwork>> =
            names.iter().map(|name| (name.clone(), current(&api, name))).collect();
        timed(&names, |name| {
            let (network, ctx) = (networks[&name].clone(), ctx.clone());
            async move {
                reconcile(network, ctx).await.unwrap();
            }
        })
        .await
    };
    let cold = reconcile_all().await;
    let cold_calls = api.take_calls().len();
    // Second baseline: the two applies of a steady-state reconcile, without the reconciler.
    let services: Api<Service> = Api::namespaced(api.client(), "default");
    let sets: Api<StatefulSet> = Api::namespaced(api.client(), "default");
    let built: HashMap<String, (Service, StatefulSet)> = names
        .iter()
        .map(|name| {
            let network = current(&api, name);
            (name.clone(), (resources::service(&network), resources::stateful_set(&network, &ctx.settings.pods)))
        })
        .collect();
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let reads = timed(&names, |name| {
        let (services, sets, apply) = (services.clone(), sets.clone(), apply.clone());
        let (service, set) = built[&name].clone();
        async move {
            services.patch(&name, &apply, &Patch::Apply(service)).await.unwrap();
            sets.patch(&name, &apply, &Patch::Apply(set)).await.unwrap();
        }
    })
    .await;
    api.take_calls();
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(reconcile_all().await);
    }
    warm.sort();
    let warm = warm[2];
    let warm_calls = api.take_calls().len() / 5;
    assert!(api.get(NETWORKS, "net0999").unwrap()["status"]["readyNodes"] == 0, "every network got a status");

    let rate = |d: Duration| NETWORK_COUNT as f64 / d.as_secs_f64();
    println!("reconcile throughput, {NETWORK_COUNT} networks, {CONCURRENCY} at once, in-process fake API:");
    println!("  baseline: one GET per network      {:>8.1} ms  {:>8.0} /s", ms(get), rate(get));
    println!("  baseline: its 2 applies, no reconciler {:>6.1} ms  {:>8.0} /s", ms(reads), rate(reads));
    println!(
        "  first reconcile (creates)          {:>8.1} ms  {:>8.0} /s  {:>5.2} calls each  {:>5.2}x a GET",
        ms(cold),
        rate(cold),
        cold_calls as f64 / NETWORK_COUNT as f64,
        cold.as_secs_f64() / get.as_secs_f64()
    );
    println!(
        "  steady state (median of 5)         {:>8.1} ms  {:>8.0} /s  {:>5.2} calls each  {:>5.2}x a GET  {:>5.2}x its applies",
        ms(warm),
        rate(warm),
        warm_calls as f64 / NETWORK_COUNT as f64,
        warm.as_secs_f64() / get.as_secs_f64(),
        warm.as_secs_f64() / reads.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (VmRSS, VmHWM) in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "no {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// The operator binary against the fake API over HTTP.
async fn run_operator(api: &FakeApi, dir: &std::path::Path) -> std::process::Child {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    api.serve(listener);
    let kubeconfig = fixtures::kubeconfig(dir, port);
    std::process::Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["--log-level", "warn", "--metrics-port", "0"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .spawn()
        .expect("start the operator")
}

async fn memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut baseline = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (sleep_rss, _) = rss(baseline.id());

    // Idle: no networks; the four watches (networks, StatefulSets, Services, pods) are open.
    let idle_api = FakeApi::default();
    let mut idle = run_operator(&idle_api, dir.path()).await;
    let watches = || idle_api.take_calls().iter().filter(|c| c.starts_with("WATCH")).count();
    let mut seen = 0;
    wait_for("four open watches", Duration::from_secs(20), || {
        seen += watches();
        seen >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_rss, idle_hwm) = rss(idle.id());

    // Busy: 1,000 networks listed at start, each reconciled once through real HTTP.
    let busy_api = FakeApi::default();
    for name in names() {
        busy_api.insert(network(&name, 3, None));
    }
    let mut busy = run_operator(&busy_api, dir.path()).await;
    let mut statuses = 0;
    let took = wait_for("1000 statuses", Duration::from_secs(120), || {
        statuses += busy_api.take_calls().iter().filter(|c| c.starts_with("PUT") && c.ends_with("/status")).count();
        statuses >= NETWORK_COUNT
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (busy_rss, busy_hwm) = rss(busy.id());

    for child in [&mut idle, &mut busy, &mut baseline] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("operator binary, over HTTP to the fake API:");
    println!("  baseline: sleep                    RSS {:>6.1} MiB", mib(sleep_rss));
    println!(
        "  idle, 4 watches open               RSS {:>6.1} MiB (peak {:>5.1})  {:>5.1}x sleep",
        mib(idle_rss),
        mib(idle_hwm),
        idle_rss as f64 / sleep_rss as f64
    );
    println!(
        "  {NETWORK_COUNT} networks created + statused   {:>6.0} ms ({:.0}/s)  RSS {:>6.1} MiB (peak {:>5.1})  {:>5.1}x sleep",
        ms(took),
        NETWORK_COUNT as f64 / took.as_secs_f64(),
        mib(busy_rss),
        mib(busy_hwm),
        busy_rss as f64 / sleep_rss as f64
    );
}
