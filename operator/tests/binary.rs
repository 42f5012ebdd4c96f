//! The operator binary itself, against the in-memory API server over HTTP: the controller's
//! watches, its reconciles of networks that exist at start, health and metrics, and its exits.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::fake_api::FakeApi;
use crate::support::fixtures::*;

fn operator(kubeconfig: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["--log-level", "info", "--bitcoind-image", "example/bitcoind:1", "--metrics-port", "0"])
        .args(["--allowed-images", "other.example/bitcoind,third.example/bitcoind"])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The address of /metrics the operator logs at start; its log goes on into `log`.
fn metrics_address(child: &mut Child, log: Arc<Mutex<String>>) -> String {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.lock().unwrap_or_else(|e| e.into_inner()).push_str(&format!("{line}\n"));
        if let Some(address) = line.split_whitespace().find_map(|w| w.strip_prefix("metrics=")) {
            let port = address.rsplit_once(':').unwrap().1.to_owned();
            std::thread::spawn(move || {
                lines.for_each(|l| {
                    log.lock().unwrap_or_else(|e| e.into_inner()).push_str(&format!("{}\n", l.unwrap_or_default()))
                })
            });
            return format!("127.0.0.1:{port}");
        }
    }
    panic!("the operator logged no metrics address: {}", log.lock().unwrap());
}

/// Status and body of GET `path` on `address`.
async fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let (address, path) = (address.to_owned(), path.to_owned());
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Waits for `done`; on a timeout, the operator's log and the calls the API got say why.
async fn until(what: &str, log: &Mutex<String>, api: &FakeApi, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > Duration::from_secs(20) {
            let log = log.lock().map(|l| l.clone()).unwrap_or_default();
            panic!("no {what} after 20 s; the operator logged:\n{log}\nthe API got:\n{:#?}", api.calls());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn serve(api: &FakeApi) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    api.serve(listener);
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_reconciles_what_it_lists_watches_its_objects_serves_health_and_metrics_and_stops_on_sigterm() {
    let api = FakeApi::default();
    api.insert(network("alpha", 2, None));
    api.insert(network("beta", 0, Some("rpc")));
    api.insert(secret("rpc", "u", "p"));
    // Images: another tag of --bitcoind-image's repository, one of --allowed-images, another.
    for (name, image) in
        [("tagged", "example/bitcoind:2"), ("listed", "other.example/bitcoind:5"), ("foreign", "evil.example/x:1")]
    {
        let mut network = network(name, 1, None);
        network["spec"]["image"] = serde_json::json!(image);
        api.insert(network);
    }
    let port = serve(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = operator(&kubeconfig(dir.path(), port));
    let log = Arc::default();
    let metrics = metrics_address(&mut child, Arc::clone(&log));

    until("statuses for all networks", &log, &api, || {
        let names = ["alpha", "beta", "tagged", "listed", "foreign"];
        names.iter().all(|n| api.get(NETWORKS, n).is_some_and(|o| !o["status"].is_null()))
    })
    .await;
    let image = |name: &str| {
        api.get(STATEFULSETS, name).map(|s| s["spec"]["template"]["spec"]["containers"][0]["image"].clone())
    };
    assert_eq!(image("tagged"), Some(serde_json::json!("example/bitcoind:2")));
    assert_eq!(image("listed"), Some(serde_json::json!("other.example/bitcoind:5")));
    assert_eq!(image("foreign"), None, "a refused network gets no StatefulSet");
    assert_eq!(api.get(NETWORKS, "foreign").unwrap()["status"]["conditions"][0]["reason"], "ImageNotAllowed");
    let sts = api.get(STATEFULSETS, "alpha").unwrap();
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "example/bitcoind:1");
    assert_eq!(api.get(NETWORKS, "beta").unwrap()["status"]["conditions"][0]["status"], "True");
    until("the four watches", &log, &api, || {
        let calls = api.calls();
        let watched = |path: &str| calls.iter().any(|c| c.starts_with("WATCH") && c.ends_with(path));
        ["/bitcoinnetworks", "/statefulsets", "/services", "/pods"].iter().all(|p| watched(p))
    })
    .await;
    // Secrets are read one by one, never listed or watched.
    let calls = api.calls();
    assert!(!calls.iter().any(|c| c.ends_with("/secrets")), "{calls:#?}");

    assert_eq!(http_get(&metrics, "/healthz").await, (200, "ok\n".to_owned()));
    // Ready once every watch has listed, which may come just after the first reconciles.
    let start = Instant::now();
    loop {
        match http_get(&metrics, "/readyz").await {
            (200, body) => break assert_eq!(body, "ok\n"),
            (503, body) if start.elapsed() < Duration::from_secs(20) => assert_eq!(body, "watches not synced yet\n"),
            other => panic!("/readyz: {other:?}; the API got:\n{:#?}", api.calls()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, text) = http_get(&metrics, "/metrics").await;
    assert_eq!(status, 200);
    let reconciles = |outcome: &str| {
        let prefix = format!("bitcoin_operator_reconciles_total{{outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
    };
    assert!(reconciles("applied") >= 4 && reconciles("refused") >= 1, "{text}");
    for family in ["bitcoin_operator_reconcile_duration_seconds_bucket", "bitcoin_operator_mesh_rpc_failures_total"] {
        assert!(text.contains(family), "{family} in {text}");
    }
    assert_eq!(http_get(&metrics, "/nothing").await.0, 404);

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
async fn start_up_errors_say_what_they_are() {
    let cases: [(&str, fn(&FakeApi), &str); 3] = [
        ("no API server", |_| {}, "cannot reach the Kubernetes API"),
        ("no CRD", FakeApi::without_crd, "the BitcoinNetwork CRD is not installed"),
        (
            "no permission",
            |api| api.forbid("list", "bitcoinnetworks"),
            "the operator may not list BitcoinNetworks (403 Forbidden: bitcoinnetworks.bitcoin.stagecoach.dev is forbidden",
        ),
    ];
    for (name, setup, expected) in cases {
        let port = if name == "no API server" {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        } else {
            let api = FakeApi::default();
            setup(&api);
            serve(&api).await
        };
        let dir = tempfile::tempdir().unwrap();
        let output = operator(&kubeconfig(dir.path(), port)).wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {text}");
        assert!(text.contains(expected), "{name}: {text}");
    }
}
