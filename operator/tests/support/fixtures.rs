//! Objects as the API server would hold them, and a reconcile context around a fake API.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use bitcoin_operator::Error;
use bitcoin_operator::controller::{Cache, Context, Settings, reconcile};
use bitcoin_operator::crd::BitcoinNetwork;
use bitcoin_operator::rpc::RpcClient;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::fake_api::FakeApi;

pub const NETWORKS: &str = "/apis/bitcoin.stagecoach.dev/v1/namespaces/default/bitcoinnetworks";
pub const STATEFULSETS: &str = "/apis/apps/v1/namespaces/default/statefulsets";
pub const SERVICES: &str = "/api/v1/namespaces/default/services";
pub const PODS: &str = "/api/v1/namespaces/default/pods";
pub const SECRETS: &str = "/api/v1/namespaces/default/secrets";
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

pub fn network(name: &str, nodes: i32, secret: Option<&str>) -> Value {
    let mut spec = json!({"nodes": nodes});
    if let Some(secret) = secret {
        spec["secret"] = json!(secret);
    }
    json!({"apiVersion": "bitcoin.stagecoach.dev/v1", "kind": "BitcoinNetwork",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// A pod of the network's StatefulSet as the StatefulSet controller and kubelet would leave it.
pub fn pod(network: &str, ordinal: i32, ready: bool, ip: Option<&str>) -> Value {
    let mut status = json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]});
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{network}-{ordinal}"), "namespace": "default",
            "labels": {"app.kubernetes.io/name": "bitcoind", "bitcoin.stagecoach.dev/network": network,
                "app.kubernetes.io/instance": network, "app.kubernetes.io/managed-by": "bitcoin-operator"}},
        "spec": {"nodeName": "kind-worker", "containers": [{"name": "bitcoind"}]},
        "status": status})
}

/// An RPC secret networks may use: it carries the label that says so.
pub fn secret(name: &str, user: &str, password: &str) -> Value {
    let mut secret = unlabelled_secret(name, user, password);
    secret["metadata"]["labels"] = json!({"bitcoin.stagecoach.dev/rpc-credentials": "true"});
    secret
}

pub fn unlabelled_secret(name: &str, user: &str, password: &str) -> Value {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
        "data": {"BITCOIN_RPC_USER": b64(user), "BITCOIN_RPC_PASSWORD": b64(password)}})
}

/// The reconciler around a fake API, with the caches the operator's watches would fill.
pub struct Operator {
    pub ctx: Arc<Context>,
    api: FakeApi,
    writers: Mutex<(Writer<StatefulSet>, Writer<Service>, Writer<Pod>)>,
}

impl Operator {
    /// JSON-RPC calls go to `rpc_port` with a short deadline.
    pub fn new(api: &FakeApi, rpc_port: u16) -> Self {
        let (stateful_sets, sets) = reflector::store();
        let (services, svcs) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let cache = Cache { stateful_sets, services, pods };
        let rpc = RpcClient::new(rpc_port, Duration::from_millis(500));
        let settings = Settings { backoff: Duration::from_secs(2), ..Settings::default() };
        let ctx = Arc::new(Context::new(api.client(), rpc, settings, cache));
        Self { ctx, api: api.clone(), writers: Mutex::new((sets, svcs, pod_writer)) }
    }

    /// Brings the caches to what the server holds, as a relist of each watch does (the watches
    /// see only objects labelled as the operator's).
    pub fn sync(&self) {
        let mut writers = self.writers.lock().unwrap();
        relist(&mut writers.0, self.api.watched("/apis/apps/v1/statefulsets", MANAGED));
        relist(&mut writers.1, self.api.watched("/api/v1/services", MANAGED));
        relist(&mut writers.2, self.api.watched("/api/v1/pods", MANAGED));
    }

    /// One reconcile of the network as the controller would start it: from the watch's copy,
    /// with the caches in sync.
    pub async fn reconcile(&self, name: &str) -> Result<Action, Error> {
        self.sync();
        reconcile(current(&self.api, name), self.ctx.clone()).await
    }
}

const MANAGED: &str = "app.kubernetes.io/managed-by=bitcoin-operator";

fn relist<K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned>(
    writer: &mut Writer<K>,
    objects: Vec<Value>,
) {
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(serde_json::from_value(object).unwrap()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// The network as the reconciler would get it from the watch: the fake server's current copy.
pub fn current(api: &FakeApi, name: &str) -> Arc<BitcoinNetwork> {
    Arc::new(serde_json::from_value(api.get(NETWORKS, name).expect("the network exists")).unwrap())
}

/// The reasons of the events recorded so far, oldest first.
pub fn event_reasons(api: &FakeApi) -> Vec<String> {
    let mut events = api.list(EVENTS);
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_owned());
    events.iter().map(|e| e["reason"].as_str().unwrap_or_default().to_owned()).collect()
}

/// A kubeconfig for a plain-HTTP API server on 127.0.0.1:`port`, written into `dir`.
pub fn kubeconfig(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join(format!("kubeconfig-{port}"));
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
         current-context: fake\n"
    );
    std::fs::write(&path, config).unwrap();
    path
}
