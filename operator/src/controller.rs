//! The reconciler: one network at a time, level-based, so any trigger (a change to the network, its
//! StatefulSet, Service or pods, or the periodic resync) brings everything to the wanted state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::crd::BitcoinNetwork;
use crate::metrics::{Metrics, Outcome};
use crate::policy::{self, AllowedImages};
use crate::resources::{self, MANAGED_BY, NETWORK_LABEL, PodDefaults};
use crate::rpc::RpcClient;
use crate::secret::{self, Credentials};
use crate::{Error, mesh, status};

pub const REPORTER: &str = "bitcoin-operator";
/// The field manager of the operator's server-side applies: the fields it owns are the ones it
/// sets, so a field it stops setting in a new version is removed from the cluster.
pub const FIELD_MANAGER: &str = "bitcoin-operator";

/// How the operator runs, from its command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub pods: PodDefaults,
    /// Images networks may name in `spec.image`.
    pub allowed_images: AllowedImages,
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
        let pods = PodDefaults::new(resources::DEFAULT_IMAGE, "IfNotPresent");
        Self {
            allowed_images: AllowedImages::new([&pods.image]),
            pods,
            resync: Duration::from_secs(60),
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            concurrency: 8,
        }
    }
}

/// What the operator's watches have seen. The reconciler reads the objects it owns and the pods
/// here instead of asking the API server each time; the watches are filtered by the
/// `managed-by` label, as the objects the operator makes carry it.
#[derive(Clone)]
pub struct Cache {
    pub stateful_sets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub pods: Store<Pod>,
}

/// Everything a reconcile needs; tests build it around a fake API server.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub rpc: RpcClient,
    pub settings: Settings,
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    /// Failures in a row per network, for the backoff.
    failures: Mutex<HashMap<ObjectRef<BitcoinNetwork>, u32>>,
}

impl Context {
    pub fn new(client: Client, rpc: RpcClient, settings: Settings, cache: Cache) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter { controller: REPORTER.to_owned(), instance: None });
        let metrics = Arc::default();
        Self { client, recorder, rpc, settings, cache, metrics, failures: Mutex::default() }
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
    let started = Instant::now();
    let result = apply(&network, &ctx).await;
    let outcome = match &result {
        Ok(outcome) => *outcome,
        Err(_) => Outcome::Failed,
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    match result {
        Ok(_) => {
            ctx.failures.lock().expect("not poisoned").remove(&ObjectRef::from_obj(network.as_ref()));
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err(e) => {
            ctx.publish(&network, EventType::Warning, "ReconcileFailed", e.to_string()).await;
            // The status says it too, where `kubectl get` and `helm --wait` users look.
            if let Some(namespace) = network.namespace() {
                let wanted = status::status(&network, &pods(&network, &ctx), now(), Some(&(&e).into()));
                if let Err(write) =
                    write_status(&network, &wanted, &Api::namespaced(ctx.client.clone(), &namespace)).await
                {
                    warn!(network = %network.name_any(), "could not write the failure into the status: {write}");
                }
            }
            Err(e)
        }
    }
}

/// The network's pods, from the watch's cache.
fn pods(network: &BitcoinNetwork, ctx: &Context) -> Vec<Arc<Pod>> {
    let namespace = network.namespace();
    let selector = resources::selector(network);
    ctx.cache.pods.state_filter(|pod| {
        pod.namespace() == namespace && selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
    })
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
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

async fn apply(network: &BitcoinNetwork, ctx: &Context) -> Result<Outcome, Error> {
    let name = network.name_any();
    if name.len() > resources::MAX_NAME_LEN {
        return Err(Error::NameTooLong { name, max: resources::MAX_NAME_LEN });
    }
    let namespace = network.namespace().ok_or(Error::NoNamespace)?;
    let client = ctx.client.clone();
    let pods = pods(network, ctx);

    // What the network asks for is checked before anything is built from it. A secret that
    // cannot be read fails the reconcile, and the status says so.
    let secret = match &network.spec.secret {
        Some(secret) => Some(secret::read(&Api::namespaced(client.clone(), &namespace), secret).await?),
        None => None,
    };
    let refusal = policy::refusal(network, secret.as_ref(), &ctx.settings.allowed_images);
    let wanted = status::status(network, &pods, now(), refusal.as_ref().map(Into::into).as_ref());
    if let Some(refusal) = refusal {
        // Told once, when the status first says so, not on every resync.
        if network.status.as_ref() != Some(&wanted) {
            warn!(network = %name, "{refusal}");
            ctx.publish(network, EventType::Warning, refusal.reason(), refusal.to_string()).await;
            write_status(network, &wanted, &Api::namespaced(client, &namespace)).await?;
        }
        return Ok(Outcome::Refused);
    }

    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    // Both are checked before either is written: the operator does not take over objects of
    // the same name that it did not make.
    let had_service = observed(&ctx.cache.services, &services, network, ("Service", "read the Service")).await?;
    let had_set = observed(&ctx.cache.stateful_sets, &sets, network, ("StatefulSet", "read the StatefulSet")).await?;
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    services
        .patch(&name, &apply, &Patch::Apply(resources::service(network)))
        .await
        .map_err(Error::kube("apply the Service"))?;
    let set = sets
        .patch(&name, &apply, &Patch::Apply(resources::stateful_set(network, &ctx.settings.pods)))
        .await
        .map_err(Error::kube("apply the StatefulSet"))?;
    report_changes(network, ctx, had_service.is_none(), had_set.as_deref(), &set).await;

    write_status(network, &wanted, &Api::namespaced(client.clone(), &namespace)).await?;

    let ready = status::ready_ips(&wanted);
    if ready.is_empty() {
        return Ok(Outcome::Applied);
    }
    let credentials = match &secret {
        Some(secret) => secret::from_secret(&secret.name_any(), secret)?,
        None => Credentials::defaults(),
    };
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
    ctx.metrics.mesh_failures(report.failures.len());
    match report.failures.len() {
        0 => Ok(Outcome::Applied),
        n => Err(Error::Mesh { failed: n, of: ready.len(), first: report.failures.into_iter().next().expect("n > 0") }),
    }
}

/// The network's object of this kind as it is now: from the cache, or, when the cache has none
/// (a new network, an object of someone else, a watch that lags), from the API server. An
/// object the network does not control is an error.
async fn observed<K>(
    cache: &Store<K>,
    api: &Api<K>,
    network: &BitcoinNetwork,
    (kind, read): (&'static str, &'static str),
) -> Result<Option<Arc<K>>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = network.name_any();
    let key = ObjectRef::new(&name).within(&network.namespace().unwrap_or_default());
    let found = match cache.get(&key) {
        Some(found) => Some(found),
        None => api.get_opt(&name).await.map_err(Error::kube(read))?.map(Arc::new),
    };
    match found {
        Some(found) if !resources::controlled_by(found.as_ref(), network) => Err(Error::NotOwned { kind, name }),
        found => Ok(found),
    }
}

/// Events for what the apply changed, judged by the server's objects before and after it.
async fn report_changes(
    network: &BitcoinNetwork,
    ctx: &Context,
    new_service: bool,
    before: Option<&StatefulSet>,
    after: &StatefulSet,
) {
    let name = network.name_any();
    let Some(before) = before else {
        info!(network = %name, nodes = network.spec.nodes, "created StatefulSet");
        let what = if new_service { "StatefulSet and headless Service" } else { "StatefulSet" };
        let note = format!("created {what} {name} for {} nodes", network.spec.nodes);
        ctx.publish(network, EventType::Normal, "Created", note).await;
        return;
    };
    let (was, is) = (before.spec.as_ref(), after.spec.as_ref());
    let replicas = |spec: Option<&StatefulSetSpec>| spec.and_then(|s| s.replicas).unwrap_or(1);
    if replicas(was) != replicas(is) {
        info!(network = %name, from = replicas(was), to = replicas(is), "scaled StatefulSet");
        let note = format!("scaled from {} to {} nodes", replicas(was), replicas(is));
        ctx.publish(network, EventType::Normal, "Scaled", note).await;
    }
    if was.map(|s| &s.template) != is.map(|s| &s.template) {
        let generation = after.metadata.generation.unwrap_or_default();
        info!(network = %name, generation, "updated the pod template");
        let note = format!("updated the pod template (StatefulSet generation {generation})");
        ctx.publish(network, EventType::Normal, "Updated", note).await;
    }
}

/// Through the status subresource, only when it changed, with the resourceVersion the reconcile
/// started from: a conflict means the network changed meanwhile, and that change brings another
/// reconcile.
async fn write_status(
    network: &BitcoinNetwork,
    wanted: &crate::crd::BitcoinNetworkStatus,
    api: &Api<BitcoinNetwork>,
) -> Result<(), Error> {
    if network.status.as_ref() == Some(wanted) {
        return Ok(());
    }
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

/// Runs the controller until SIGTERM or Ctrl-C, with health and metrics on `metrics`.
pub async fn run(
    client: Client,
    settings: Settings,
    rpc: RpcClient,
    metrics: tokio::net::TcpListener,
) -> Result<(), Error> {
    let networks: Api<BitcoinNetwork> = Api::all(client.clone());
    // Fail at once, saying why, instead of a watcher retrying forever.
    networks.list(&ListParams::default().limit(1)).await.map_err(Error::at_start)?;
    let managed = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let (networks_store, networks_writer) = reflector::store();
    let (stateful_sets, sets_writer) = reflector::store();
    let (services, services_writer) = reflector::store();
    let (pods, pods_writer) = reflector::store();
    let cache = Cache { stateful_sets, services, pods };
    let concurrency = settings.concurrency;
    let ctx = Arc::new(Context::new(client.clone(), rpc, settings, cache));

    // Ready once each of the four watches has listed. Told by the watch streams themselves: a
    // second task awaiting `Store::wait_until_ready` beside the controller's runner can take the
    // runner's wake-up (kube-runtime's DelayedInit keeps one waker), and no reconcile would run.
    let synced: [Arc<AtomicBool>; 4] = Default::default();
    let ready = {
        let synced = synced.clone();
        move || synced.iter().all(|watch| watch.load(Ordering::Acquire))
    };
    let server = tokio::spawn(crate::metrics::serve(metrics, ctx.metrics.clone(), ready));
    let watch = |i: usize| synced[i].clone();
    Controller::for_stream(reflected(networks_writer, networks, &watcher::Config::default(), watch(0)), networks_store)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .owns_stream(reflected(sets_writer, Api::<StatefulSet>::all(client.clone()), &managed, watch(1)))
        .owns_stream(reflected(services_writer, Api::<Service>::all(client.clone()), &managed, watch(2)))
        // Pods are owned by the StatefulSet, not the network: their label leads back to it.
        .watches_stream(reflected(pods_writer, Api::<Pod>::all(client), &managed, watch(3)), |pod: Pod| {
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
    server.abort();
    Ok(())
}

/// A watch whose objects also go into the cache behind `writer`; `synced` is set once it has
/// listed.
fn reflected<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    config: &watcher::Config,
    synced: Arc<AtomicBool>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    watcher(api, config.clone())
        .default_backoff()
        .reflect(writer)
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                synced.store(true, Ordering::Release);
            }
        })
        .touched_objects()
}
