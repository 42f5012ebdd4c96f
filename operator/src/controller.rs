//! The reconciler: one network at a time, level-based, so any trigger (a change to the network, its
//! StatefulSet, Service or pods, or the periodic resync) brings everything to the wanted state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::crd::BitcoinNetwork;
use crate::resources::{self, MANAGED_BY, NETWORK_LABEL, PodDefaults};
use crate::rpc::RpcClient;
use crate::{Error, mesh, secret, status};

pub const REPORTER: &str = "bitcoin-operator";

/// How the operator runs, from its command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub pods: PodDefaults,
    /// Every network is reconciled at least this often, healing whatever events were missed.
    pub resync: Duration,
    /// First retry after a failed reconcile; doubled per failure in a row, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Networks reconciled at once (0: no limit).
    pub concurrency: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pods: PodDefaults { image: "bitcoin/bitcoin:28.1".to_owned(), pull_policy: "IfNotPresent".to_owned() },
            resync: Duration::from_secs(60),
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            concurrency: 8,
        }
    }
}

/// Everything a reconcile needs; tests build it around a fake API server.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub rpc: RpcClient,
    pub settings: Settings,
    /// Failures in a row per network, for the backoff.
    failures: Mutex<HashMap<ObjectRef<BitcoinNetwork>, u32>>,
}

impl Context {
    pub fn new(client: Client, rpc: RpcClient, settings: Settings) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter { controller: REPORTER.to_owned(), instance: None });
        Self { client, recorder, rpc, settings, failures: Mutex::default() }
    }

    async fn publish(&self, network: &BitcoinNetwork, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        // An event that cannot be written must not fail the reconcile it reports on.
        if let Err(e) = self.recorder.publish(&event, &network.object_ref(&())).await {
            warn!(network = %network.name_any(), "could not publish event {reason}: {e}");
        }
    }
}

/// Reconciles one network. Networks being deleted are left to garbage collection.
pub async fn reconcile(network: Arc<BitcoinNetwork>, ctx: Arc<Context>) -> Result<Action, Error> {
    if network.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    match apply(&network, &ctx).await {
        Ok(()) => {
            ctx.failures.lock().expect("not poisoned").remove(&ObjectRef::from_obj(network.as_ref()));
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err(e) => {
            ctx.publish(&network, EventType::Warning, "ReconcileFailed", e.to_string()).await;
            Err(e)
        }
    }
}

/// Retries a failed network after `backoff × 2^(failures in a row - 1)`, capped.
pub fn error_policy(network: Arc<BitcoinNetwork>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let count = failures.entry(ObjectRef::from_obj(network.as_ref())).or_default();
    *count = count.saturating_add(1);
    let delay = ctx.settings.backoff.saturating_mul(1 << (*count - 1).min(16)).min(ctx.settings.max_backoff);
    warn!(network = %network.name_any(), retry_in = ?delay, "reconcile failed: {error}");
    Action::requeue(delay)
}

async fn apply(network: &BitcoinNetwork, ctx: &Context) -> Result<(), Error> {
    let name = network.name_any();
    if name.len() > resources::MAX_NAME_LEN {
        return Err(Error::NameTooLong { name, max: resources::MAX_NAME_LEN });
    }
    let namespace = network.namespace().ok_or(Error::NoNamespace)?;
    let client = ctx.client.clone();

    ensure_service(network, &Api::namespaced(client.clone(), &namespace)).await?;
    ensure_stateful_set(network, ctx, &Api::namespaced(client.clone(), &namespace)).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selector = resources::selector(network).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let pods = pods.list(&ListParams::default().labels(&selector)).await.map_err(Error::kube("list the pods"))?;
    let wanted = status::status(network, &pods.items, Time(jiff::Timestamp::now()));
    if network.status.as_ref() != Some(&wanted) {
        write_status(network, &wanted, &Api::namespaced(client.clone(), &namespace)).await?;
    }

    let ready = status::ready_ips(&wanted);
    if ready.is_empty() {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let credentials = secret::credentials(&secrets, network.spec.secret.as_deref()).await?;
    let report = mesh::sync(&ctx.rpc, &credentials, &ready).await;
    if !report.added.is_empty() {
        let peers = mesh::MeshReport::peers(&report.added).join(", ");
        let note = format!("added {} addnode entries (peers {peers})", report.added.len());
        ctx.publish(network, EventType::Normal, "NodesAdded", note).await;
    }
    if !report.removed.is_empty() {
        let peers = mesh::MeshReport::peers(&report.removed).join(", ");
        let note = format!("removed {} addnode entries (peers {peers})", report.removed.len());
        ctx.publish(network, EventType::Normal, "NodesRemoved", note).await;
    }
    match report.failures.len() {
        0 => Ok(()),
        n => Err(Error::Mesh { failed: n, of: ready.len(), first: report.failures.into_iter().next().expect("n > 0") }),
    }
}

async fn ensure_service(network: &BitcoinNetwork, api: &Api<Service>) -> Result<(), Error> {
    match api.get_opt(&network.name_any()).await.map_err(Error::kube("read the Service"))? {
        Some(found) if !resources::controlled_by(&found, network) => {
            Err(Error::NotOwned { kind: "Service", name: found.name_any() })
        }
        Some(_) => Ok(()),
        None => {
            let wanted = resources::service(network);
            api.create(&PostParams::default(), &wanted).await.map_err(Error::kube("create the Service"))?;
            info!(network = %network.name_any(), "created Service");
            Ok(())
        }
    }
}

async fn ensure_stateful_set(network: &BitcoinNetwork, ctx: &Context, api: &Api<StatefulSet>) -> Result<(), Error> {
    let name = network.name_any();
    let wanted = resources::stateful_set(network, &ctx.settings.pods);
    let Some(found) = api.get_opt(&name).await.map_err(Error::kube("read the StatefulSet"))? else {
        api.create(&PostParams::default(), &wanted).await.map_err(Error::kube("create the StatefulSet"))?;
        info!(network = %name, nodes = network.spec.nodes, "created StatefulSet");
        let note = format!("created StatefulSet and headless Service {name} for {} nodes", network.spec.nodes);
        ctx.publish(network, EventType::Normal, "Created", note).await;
        return Ok(());
    };
    if !resources::controlled_by(&found, network) {
        return Err(Error::NotOwned { kind: "StatefulSet", name });
    }
    let drift = resources::drift(&found, &wanted);
    if drift.is_empty() {
        return Ok(());
    }
    // A merge patch of the parts the operator owns: the replica count and the pod template
    // (whose container list it replaces whole).
    let spec = wanted.spec.expect("built with a spec");
    let patch = json!({"spec": {"replicas": spec.replicas, "template": spec.template}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("update the StatefulSet"))?;
    let had = found.spec.and_then(|s| s.replicas).unwrap_or(1);
    if drift.contains(&"replicas") {
        info!(network = %name, from = had, to = network.spec.nodes, "scaled StatefulSet");
        let note = format!("scaled from {had} to {} nodes", network.spec.nodes);
        ctx.publish(network, EventType::Normal, "Scaled", note).await;
    }
    let others: Vec<&str> = drift.into_iter().filter(|f| *f != "replicas").collect();
    if !others.is_empty() {
        let note = format!("updated the pod template ({})", others.join(", "));
        ctx.publish(network, EventType::Normal, "Updated", note).await;
    }
    Ok(())
}

/// Through the status subresource, with the resourceVersion the reconcile started from: a
/// conflict means the network changed meanwhile, and that change brings another reconcile.
async fn write_status(
    network: &BitcoinNetwork,
    wanted: &crate::crd::BitcoinNetworkStatus,
    api: &Api<BitcoinNetwork>,
) -> Result<(), Error> {
    let mut next = network.clone();
    next.status = Some(wanted.clone());
    match api.replace_status(&network.name_any(), &PostParams::default(), &next).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            info!(network = %network.name_any(), "status not written: the network changed meanwhile");
            Ok(())
        }
        Err(e) => Err(Error::kube("write the status")(e)),
    }
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(client: Client, settings: Settings, rpc: RpcClient) -> Result<(), Error> {
    let networks: Api<BitcoinNetwork> = Api::all(client.clone());
    // Fail at once, with a hint, when the CRD is missing, instead of a watcher retrying forever.
    networks.list(&ListParams::default().limit(1)).await.map_err(|e| Error::CrdMissing(Box::new(e)))?;
    let managed = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let concurrency = settings.concurrency;
    let ctx = Arc::new(Context::new(client.clone(), rpc, settings));
    Controller::new(networks, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .owns(Api::<StatefulSet>::all(client.clone()), managed.clone())
        .owns(Api::<Service>::all(client.clone()), managed.clone())
        // Pods are owned by the StatefulSet, not the network: their label leads back to it.
        .watches(Api::<Pod>::all(client), managed, |pod: Pod| {
            let network = pod.labels().get(NETWORK_LABEL)?.clone();
            Some(ObjectRef::new(&network).within(&pod.namespace()?))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Ok((network, _)) = result {
                tracing::debug!(network = %network.name, "reconciled");
            }
        })
        .await;
    Ok(())
}
