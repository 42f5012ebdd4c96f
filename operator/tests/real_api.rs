//! The operator on a real control plane (etcd and kube-apiserver, `tests/control_plane.rs`):
//! the chart installed by the real Helm 4 CLI, then the operator binary on the host with a
//! token of the ServiceAccount the chart made, so it has exactly the chart's RBAC. The API
//! server's audit log is the witness of every call it made and of every answer. No pod runs
//! here (no kubelet): the StatefulSets stay at zero ready pods.
//!
//! And the server behaviour the in-memory API (`support/fake_api.rs`) stands in for, asked of
//! the real one with the same cases (`fake.rs`).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::control_plane::ControlPlane;
use crate::support::tools::workspace;

const NAMESPACE: &str = "bitcoin";
const RELEASE: &str = "op";
const OPERATOR_USER: &str = "system:serviceaccount:bitcoin:op";

/// `$STAGECOACH_HELM4`, built by .ci/kube-tools; a loud skip (a failure in CI) without it.
fn helm4() -> Option<PathBuf> {
    let helm = std::env::var_os("STAGECOACH_HELM4").map(PathBuf::from).filter(|p| p.is_file());
    if helm.is_none() {
        let required = std::env::var_os("STAGECOACH_REQUIRE_COMPONENTS").is_some_and(|v| v == "1");
        let how = crate::control_plane::HOW;
        assert!(!required, "the Helm 4 CLI (STAGECOACH_HELM4) is required here but missing: {how}");
        eprintln!("SKIPPED: the Helm 4 CLI (STAGECOACH_HELM4) is missing: {how}");
    }
    helm
}

/// A control plane with the chart in `chart-template/` installed as release `op` in `bitcoin`.
fn installed() -> Option<ControlPlane> {
    let (plane, helm) = (ControlPlane::start()?, helm4()?);
    let home = plane.dir().join("helm");
    let out = Command::new(helm)
        .args(["install", RELEASE])
        .arg(workspace().join("chart-template"))
        .args(["--namespace", NAMESPACE, "--create-namespace", "--kubeconfig"])
        .arg(&plane.kubeconfig)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "helm install: {}", String::from_utf8_lossy(&out.stderr));
    Some(plane)
}

/// The operator binary, as the chart's ServiceAccount; what it logs goes into `log`.
struct Operator {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Operator {
    fn start(kubeconfig: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_operator"))
            .args(["--metrics-port", "0", "--resync-seconds", "1", "--log-level", "info"])
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().unwrap_or_else(|e| e.into_inner()).push_str(&format!("{line}\n"));
                }
            });
        }
        Self { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `bitcoin_operator_reconciles_total` of every outcome, from /metrics.
    fn reconciles(&self) -> u64 {
        let Some(address) = self.log().split_whitespace().find_map(|w| w.strip_prefix("metrics=")).map(String::from)
        else {
            return 0;
        };
        let port = address.rsplit_once(':').map_or("", |(_, port)| port).to_owned();
        let Ok(text) = http_get(&format!("127.0.0.1:{port}"), "/metrics") else { return 0 };
        text.lines()
            .filter(|l| l.starts_with("bitcoin_operator_reconciles_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(address: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// Waits for `check` to give a value; on a timeout, the operator's log and what the API
/// server holds say why.
fn until<T>(what: &str, plane: &ControlPlane, operator: &Operator, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let networks = plane.kubectl(&["get", "bitcoinnetworks", "-A", "-o", "yaml"]).unwrap_or_else(|e| e);
            panic!("no {what} after 60 s\noperator log:\n{}\nnetworks:\n{networks}", operator.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn create_network(plane: &ControlPlane) -> Value {
    let network = json!({"apiVersion": "bitcoin.stagecoach.dev/v1", "kind": "BitcoinNetwork",
        "metadata": {"name": "net", "namespace": NAMESPACE}, "spec": {"nodes": 3, "secret": "bitcoin-rpc"}});
    plane.kubectl_stdin(&["create", "-f", "-"], &network.to_string()).unwrap();
    plane.get("bitcoinnetwork", "net", Some(NAMESPACE)).unwrap()
}

/// The audit log's entries for requests the operator made.
fn operator_requests(plane: &ControlPlane) -> Vec<Value> {
    plane.audit().into_iter().filter(|e| e["user"]["username"] == OPERATOR_USER).collect()
}

fn describe(entry: &Value) -> String {
    let object = &entry["objectRef"];
    format!(
        "{} {}/{} {} → {}",
        entry["verb"].as_str().unwrap_or_default(),
        object["apiGroup"].as_str().unwrap_or_default(),
        object["resource"].as_str().unwrap_or_default(),
        object["subresource"].as_str().unwrap_or_default(),
        entry["responseStatus"]["code"]
    )
}

#[test]
fn the_operator_with_the_charts_rbac_reconciles_a_network_without_one_denied_call() {
    let Some(plane) = installed() else { return };
    let operator = Operator::start(&plane.service_account_kubeconfig(NAMESPACE, RELEASE));
    let network = create_network(&plane);
    let uid = network["metadata"]["uid"].clone();

    // Its StatefulSet and Service, applied by the operator's field manager, owned by the network.
    let objects = until("StatefulSet and Service", &plane, &operator, || {
        Some((plane.get("statefulset", "net", Some(NAMESPACE))?, plane.get("service", "net", Some(NAMESPACE))?))
    });
    for object in [&objects.0, &objects.1] {
        let kind = object["kind"].as_str().unwrap();
        let owners = object["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(owners.len(), 1, "{kind}: {owners:?}");
        assert_eq!(
            (&owners[0]["kind"], &owners[0]["name"], &owners[0]["uid"], &owners[0]["controller"]),
            (&json!("BitcoinNetwork"), &json!("net"), &uid, &json!(true)),
            "{kind}"
        );
        let managers: Vec<(&Value, &Value)> = object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (&m["manager"], &m["operation"]))
            .collect();
        assert_eq!(managers, [(&json!("bitcoin-operator"), &json!("Apply"))], "{kind}");
    }
    assert_eq!(objects.0["spec"]["replicas"], 3);
    assert_eq!(objects.1["spec"]["clusterIP"], "None", "a headless Service");

    // Its status, through the status subresource; its events.
    let status = until("a status", &plane, &operator, || {
        let network = plane.get("bitcoinnetwork", "net", Some(NAMESPACE))?;
        (network["status"]["observedGeneration"] == 1).then(|| network["status"].clone())
    });
    assert_eq!(status["readyNodes"], 0);
    let condition = &status["conditions"][0];
    assert_eq!((&condition["type"], &condition["status"]), (&json!("Ready"), &json!("False")), "{status}");
    assert_eq!(condition["message"], "0 of 3 nodes ready");
    let events = until("a Created event", &plane, &operator, || {
        let events: Value =
            serde_json::from_str(&plane.kubectl(&["get", "events.events.k8s.io", "-n", NAMESPACE, "-o", "json"]).ok()?)
                .ok()?;
        let created =
            events["items"].as_array()?.iter().any(|e| e["reason"] == "Created" && e["regarding"]["uid"] == uid);
        created.then_some(events)
    });
    assert!(
        events["items"].as_array().unwrap().iter().all(|e| e["reportingController"] == "bitcoin-operator"),
        "{events:#}"
    );

    // Later reconciles (every second) write nothing.
    let versions = || {
        ["bitcoinnetwork", "statefulset", "service"]
            .map(|kind| plane.get(kind, "net", Some(NAMESPACE)).unwrap()["metadata"]["resourceVersion"].clone())
    };
    let before = versions();
    let reconciled = operator.reconciles();
    until("two more reconciles", &plane, &operator, || (operator.reconciles() >= reconciled + 2).then_some(()));
    assert_eq!(versions(), before, "a reconcile of an unchanged network wrote something");

    // The API server's own record: the operator made its calls, and none was denied.
    let requests = operator_requests(&plane);
    let made: Vec<String> = requests.iter().map(describe).collect();
    for call in [
        "patch apps/statefulsets",
        "patch /services",
        "update bitcoin.stagecoach.dev/bitcoinnetworks status",
        "get /secrets",
        "watch /pods",
        "create events.k8s.io/events",
    ] {
        assert!(made.iter().any(|m| m.starts_with(call)), "no {call} in the audit log: {made:#?}");
    }
    let denied: Vec<&String> = made.iter().filter(|m| m.ends_with("→ 403")).collect();
    assert!(denied.is_empty(), "denied: {denied:#?}");
    let log = operator.log();
    assert!(!log.contains("forbidden") && !log.contains("WARN"), "{log}");
}

#[test]
fn a_verb_taken_out_of_the_clusterrole_is_reported_with_the_verb_and_resource() {
    let Some(plane) = installed() else { return };
    // The chart's ClusterRole without `patch` on StatefulSets: the apply of one is refused.
    let mut role = plane.get("clusterrole", RELEASE, None).unwrap();
    let rule = role["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["resources"] == json!(["statefulsets"]))
        .expect("a rule for StatefulSets");
    rule["verbs"].as_array_mut().unwrap().retain(|v| v != "patch");
    plane.kubectl_stdin(&["replace", "-f", "-"], &role.to_string()).unwrap();

    let operator = Operator::start(&plane.service_account_kubeconfig(NAMESPACE, RELEASE));
    create_network(&plane);
    let denial = r#"cannot patch resource "statefulsets" in API group "apps""#;
    let condition = until("the denial in the status", &plane, &operator, || {
        let network = plane.get("bitcoinnetwork", "net", Some(NAMESPACE))?;
        let condition = network["status"]["conditions"][0].clone();
        condition["message"].as_str()?.contains(denial).then_some(condition)
    });
    assert_eq!((&condition["status"], &condition["reason"]), (&json!("False"), &json!("ReconcileFailed")));
    until("the denial in the log", &plane, &operator, || operator.log().contains(denial).then_some(()));
    // What was refused is what the API server says it refused, and nothing else.
    let denied: Vec<String> = operator_requests(&plane).iter().map(describe).filter(|m| m.ends_with("→ 403")).collect();
    assert!(!denied.is_empty() && denied.iter().all(|m| m.starts_with("patch apps/statefulsets")), "{denied:#?}");
    assert!(plane.get("statefulset", "net", Some(NAMESPACE)).is_none());
    assert!(plane.get("service", "net", Some(NAMESPACE)).is_some(), "the Service is still the operator's to apply");
}

async fn admin_client(plane: &ControlPlane) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&plane.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn the_real_server_writes_quantities_back_as_the_fake_does() {
    let Some(plane) = ControlPlane::start() else { return };
    let stored = crate::fake::written_back(&admin_client(&plane).await, "default").await;
    assert_eq!(stored, crate::fake::QUANTITIES.map(|(_, _, expected)| expected));
}

#[tokio::test]
async fn the_real_server_applies_as_the_fake_does() {
    let Some(plane) = ControlPlane::start() else { return };
    crate::fake::apply_as_the_operator_relies_on_it(&admin_client(&plane).await, "default").await;
}
