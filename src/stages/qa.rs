//! The QA stages: the chart packaged once and its rendered images checked, a cluster (kind,
//! node image cached, or an existing one), the DEV source at the chart's appVersion, the image
//! checked by content and loaded, `helm upgrade --install` of the package, the integration
//! tests, and — always — diagnostics on failure and teardown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::config::Command;
use crate::process::{Cmd, Runner};
use crate::runner::{Outcome, Stage, StageContext, StageError, StageFuture};
use crate::tools::docker::{DockerEngine, RegistryAuth};
use crate::tools::git::{Git2, Remote};
use crate::tools::helm::{Helm, Target};
use crate::tools::kind::Kind;
use crate::tools::kubectl::Kubectl;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum QaError {
    #[error(
        "a kind cluster named `{0}` exists already and this run did not create it, so it would not delete it \
         either: delete it (`kind delete cluster --name {0}`), choose another cluster.name, or test on it with \
         cluster.provider: existing and cluster.context: kind-{0}"
    )]
    ForeignCluster(String),
    #[error(
        "`{reference}` in the local engine is now image {found}, not the prepared image {expected} (the one \
         pushed under the chart's digest); not loading another image than the one that was pushed"
    )]
    NotThePushedImage { reference: String, expected: String, found: String },
    #[error("{0}")]
    Rendered(#[from] crate::chart::rendered::RenderedError),
    #[error("writing {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// The image a QA run deploys, as the QA chart's values name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaImage {
    pub repository: String,
    pub tag: String,
    /// The pushed manifest digest; `None` for a build that was not pushed.
    pub digest: Option<String>,
}

impl QaImage {
    /// `repository:tag`, the name it is loaded into kind under.
    pub fn tagged(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// `repository:tag@digest`, or `repository:tag` without a digest: what a cluster pulls.
    pub fn pinned(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{digest}", self.tagged()),
            None => self.tagged(),
        }
    }
}

/// Writes a file only its owner can read (kubeconfigs hold credentials).
fn write_private(path: &Path, text: &str) -> Result<(), QaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        file.write_all(text.as_bytes())
    };
    write().map_err(|source| QaError::Write { path: path.to_path_buf(), source })
}

/// What the QA stages need of a cluster.
pub trait Cluster: Send + Sync {
    /// Brings the cluster up and waits for its nodes to be Ready.
    fn up<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>>;
    /// Makes `image` available to the cluster's nodes without a registry; `id`, when known, is
    /// the image ID it must have (checked right before the load).
    fn load_image<'a>(
        &'a self,
        image: &'a str,
        id: Option<&'a str>,
        ctx: &'a StageContext,
    ) -> BoxFuture<'a, Result<Outcome, StageError>>;
    /// Adds the cluster's own logs to a diagnostics bundle.
    fn export_logs<'a>(&'a self, dir: &'a Path, ctx: &'a StageContext) -> BoxFuture<'a, ()>;
    /// Keeps what makes the next `up` faster (the node image).
    fn save_cache<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>>;
    /// Deletes what this run created, and nothing else.
    fn down<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>>;
    /// `--keep-cluster`: leaves it running and says how to reach it.
    fn keep(&self) -> Result<Outcome, StageError>;
    /// Whether this run got as far as bringing it up (else there is nothing to diagnose).
    fn started(&self) -> bool;
    /// What a step will do, for plans.
    fn describe(&self, step: ClusterStep<'_>) -> Vec<String>;
    fn target(&self) -> Target;
}

/// The steps of a cluster's life, as a plan names them.
#[derive(Clone, Copy, Debug)]
pub enum ClusterStep<'a> {
    Up,
    Load(&'a str),
    Cache,
    Down,
}

/// A kind cluster whose node image is kept in a cache directory between runs.
pub struct KindCluster {
    pub kind: Kind,
    pub kubectl: Kubectl,
    pub docker: Arc<DockerEngine>,
    pub name: String,
    pub node_image: String,
    pub cache_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub kubeconfig: PathBuf,
    /// Set once this run starts creating the cluster: only then is it ours to delete.
    pub created: AtomicBool,
}

/// The cache file of a node image: keyed by the kind version and the image, since a kind
/// release only works with the node images made for it.
pub fn cache_file(dir: &Path, kind_version: &str, node_image: &str) -> PathBuf {
    let key: String = format!("{kind_version}-{node_image}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect();
    dir.join(format!("kind-node-{key}.tar"))
}

impl KindCluster {
    fn create_cmd(&self) -> crate::process::Cmd {
        self.kind.create_cmd(&self.name, &self.node_image, self.config.as_deref(), &self.kubeconfig)
    }

    async fn cache_path(&self, ctx: &StageContext) -> Result<Option<PathBuf>, StageError> {
        let Some(dir) = &self.cache_dir else { return Ok(None) };
        let version = self.kind.version(&|l| ctx.line(l)).await?;
        Ok(Some(cache_file(dir, &version, &self.node_image)))
    }
}

impl Cluster for KindCluster {
    fn up<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async move {
            if self.kind.clusters(&|l| ctx.line(l)).await?.contains(&self.name) {
                return Err(QaError::ForeignCluster(self.name.clone()).into());
            }
            if let Some(cache) = self.cache_path(ctx).await? {
                ctx.detail("node_image_cache", cache.display().to_string());
                if cache.is_file() && !self.docker.exists(&self.node_image).await {
                    let started = Instant::now();
                    self.docker.load(&cache).await?;
                    let size = std::fs::metadata(&cache).map_or(0, |m| m.len());
                    let message = format!(
                        "loaded the cached node image ({:.0} MB) in {:.1}s instead of pulling it",
                        size as f64 / 1e6,
                        started.elapsed().as_secs_f64()
                    );
                    ctx.line(&message);
                    ctx.detail("node_image_loaded_ms", started.elapsed().as_millis().to_string());
                }
            }
            self.created.store(true, Ordering::SeqCst);
            self.kind.create(&self.create_cmd(), &|l| ctx.line(l), &|l| ctx.line(l)).await?;
            self.kubectl.wait_nodes_ready(&self.target(), &|l| ctx.line(l)).await?;
            Ok(Outcome::Done)
        })
    }

    fn load_image<'a>(
        &'a self,
        image: &'a str,
        id: Option<&'a str>,
        ctx: &'a StageContext,
    ) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async move {
            let found = self.docker.inspect(image).await?.id;
            if let Some(expected) = id
                && found != expected
            {
                return Err(QaError::NotThePushedImage {
                    reference: image.to_string(),
                    expected: expected.to_string(),
                    found,
                }
                .into());
            }
            self.kind.load_image(&self.name, image, &|l| ctx.line(l), &|l| ctx.line(l)).await?;
            ctx.detail("loaded", image);
            ctx.detail("loaded_image_id", found);
            Ok(Outcome::Done)
        })
    }

    fn export_logs<'a>(&'a self, dir: &'a Path, ctx: &'a StageContext) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self.kind.export_logs(&self.name, &dir.join("kind-logs"), &|l| ctx.line(l)).await {
                let _ = std::fs::write(dir.join("kind-logs.txt"), format!("kind export logs failed: {error}\n"));
            }
        })
    }

    fn save_cache<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async move {
            if ctx.run_failed {
                return Ok(Outcome::Skipped("the run failed: the cache is only written after a good run".into()));
            }
            let Some(cache) = self.cache_path(ctx).await? else {
                return Ok(Outcome::Skipped("no cluster.cache_dir".into()));
            };
            if cache.is_file() {
                return Ok(Outcome::Skipped(format!("{} is there already", cache.display())));
            }
            if let Some(parent) = cache.parent() {
                std::fs::create_dir_all(parent)?;
            }
            self.docker.save(&self.node_image, &cache).await?;
            ctx.detail("node_image_saved", cache.display().to_string());
            Ok(Outcome::Done)
        })
    }

    fn down<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async move {
            if !self.created.load(Ordering::SeqCst) {
                return Ok(Outcome::Skipped(format!("this run did not create cluster `{}`", self.name)));
            }
            self.kind.delete(&self.name, &self.kubeconfig, &|l| ctx.line(l)).await?;
            Ok(Outcome::Done)
        })
    }

    fn keep(&self) -> Result<Outcome, StageError> {
        if !self.created.load(Ordering::SeqCst) {
            return Ok(Outcome::Skipped(format!("this run did not create cluster `{}`", self.name)));
        }
        // The run's own directory goes away when it ends; the kubeconfig must outlive it.
        let kept = std::env::temp_dir().join(format!("stagecoach-kind-{}.kubeconfig", self.name));
        let text = std::fs::read_to_string(&self.kubeconfig)
            .map_err(|source| QaError::Write { path: self.kubeconfig.clone(), source })?;
        write_private(&kept, &text)?;
        Ok(Outcome::Skipped(format!(
            "--keep-cluster: cluster `{0}` is still running; kubeconfig: {1}; delete it with `kind delete cluster --name {0}`",
            self.name,
            kept.display()
        )))
    }

    fn started(&self) -> bool {
        self.created.load(Ordering::SeqCst)
    }

    fn describe(&self, step: ClusterStep<'_>) -> Vec<String> {
        let cache = |what: &str| {
            self.cache_dir
                .as_ref()
                .map(|dir| format!("{what} {} in {} (keyed by the kind version)", self.node_image, dir.display()))
        };
        match step {
            ClusterStep::Up => [
                Some(format!(
                    "stop if a kind cluster named {} exists: this run deletes only what it creates",
                    self.name
                )),
                cache("load the saved node image"),
                Some(self.kind.display(&self.create_cmd())),
                Some("wait until every node is Ready".to_string()),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ClusterStep::Load(image) => vec![
                format!("check that {image} in the local engine is the prepared image (by ID)"),
                self.kind.display(&self.kind.load_image_cmd(&self.name, image)),
            ],
            ClusterStep::Cache => cache("after a good run, save the node image").into_iter().collect(),
            ClusterStep::Down => vec![format!(
                "{}, if this run created it",
                self.kind.display(&self.kind.delete_cmd(&self.name, &self.kubeconfig))
            )],
        }
    }

    fn target(&self) -> Target {
        Target { kubeconfig: self.kubeconfig.clone(), context: Some(format!("kind-{}", self.name)) }
    }
}

/// A cluster someone else runs: used as it is, never created or deleted. Everything that talks
/// to it gets a kubeconfig holding only the configured context.
pub struct ExistingCluster {
    pub kubectl: Kubectl,
    /// The kubeconfig to take the context from: a file or a `KUBECONFIG` list `a:b`.
    pub sources: std::ffi::OsString,
    /// The context; `None` for the current context of `sources`.
    pub context: Option<String>,
    /// Where the minified kubeconfig is written, in the run's private directory.
    pub kubeconfig: PathBuf,
}

impl Cluster for ExistingCluster {
    fn up<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async move {
            let echo = |l: &str| ctx.line(l);
            let minified = self.kubectl.minified_kubeconfig(&self.sources, self.context.as_deref(), &echo).await?;
            write_private(&self.kubeconfig, &minified)?;
            self.kubectl.reachable(&self.target(), &echo).await?;
            Ok(Outcome::Done)
        })
    }

    fn load_image<'a>(
        &'a self,
        _: &'a str,
        _: Option<&'a str>,
        _: &'a StageContext,
    ) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async { Ok(Outcome::Skipped("an existing cluster pulls the image from its registry".into())) })
    }

    fn export_logs<'a>(&'a self, _: &'a Path, _: &'a StageContext) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn save_cache<'a>(&'a self, _: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async { Ok(Outcome::Skipped("nothing to cache for an existing cluster".into())) })
    }

    fn down<'a>(&'a self, _: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async { Ok(Outcome::Skipped("an existing cluster is left as it is".into())) })
    }

    fn keep(&self) -> Result<Outcome, StageError> {
        Ok(Outcome::Skipped("an existing cluster is left as it is".into()))
    }

    fn started(&self) -> bool {
        self.kubeconfig.is_file()
    }

    fn describe(&self, step: ClusterStep<'_>) -> Vec<String> {
        match step {
            ClusterStep::Up => vec![
                format!(
                    "KUBECONFIG={} {} > {} (only this context, for helm, kubectl and the tests)",
                    self.sources.to_string_lossy(),
                    self.kubectl.display(&self.kubectl.minified_kubeconfig_cmd(&self.sources, self.context.as_deref())),
                    self.kubeconfig.display()
                ),
                self.kubectl.display(&self.kubectl.reachable_cmd(&self.target())),
            ],
            ClusterStep::Load(_) => vec!["the cluster pulls the image from its registry".into()],
            ClusterStep::Cache => vec![],
            ClusterStep::Down => vec!["nothing: an existing cluster is left as it is".into()],
        }
    }

    fn target(&self) -> Target {
        Target { kubeconfig: self.kubeconfig.clone(), context: None }
    }
}

pub struct ClusterUp(pub Arc<dyn Cluster>);

impl Stage for ClusterUp {
    fn name(&self) -> &str {
        "cluster-up"
    }
    fn describe(&self) -> Vec<String> {
        self.0.describe(ClusterStep::Up)
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        self.0.up(ctx)
    }
}

/// The DEV repository at exactly the commit the chart was built from.
pub struct DevCheckout {
    pub git: Git2,
    pub remote: Remote,
    pub commit: String,
    pub dir: PathBuf,
    /// The run's directory `dir` lies in (none in a plan). The clone holds it: a cancelled
    /// stage does not stop a blocking clone, which would otherwise write into a directory
    /// already removed.
    pub work: Option<Arc<tempfile::TempDir>>,
}

impl Stage for DevCheckout {
    fn name(&self) -> &str {
        "dev-checkout"
    }
    fn describe(&self) -> Vec<String> {
        vec![format!(
            "fetch {} at commit {} (the QA chart's appVersion) into {}",
            self.remote.url,
            self.commit,
            self.dir.display()
        )]
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let (git, remote, commit, dir) =
                (self.git.clone(), self.remote.clone(), self.commit.clone(), self.dir.clone());
            let work = self.work.clone();
            tokio::task::spawn_blocking(move || {
                let checkout = git.checkout_commit(&remote, &dir, &commit);
                drop(work);
                checkout
            })
            .await??;
            ctx.detail("commit", &self.commit);
            ctx.detail("dir", self.dir.display().to_string());
            Ok(Outcome::Done)
        })
    }
}

/// The QA chart packaged once (the bytes a release publishes), rendered by `helm template` with
/// the overrides of the install, and every container image in it checked, before any cluster
/// is created: it must be the image prepared for this run or one the cluster pulls itself.
pub struct ChartCheck {
    pub helm: Helm,
    pub chart_dir: PathBuf,
    pub package: crate::chart::package::Options,
    /// Where the package is written (`install.chart`) and how it will be installed.
    pub install: crate::tools::helm::Install,
    /// The reference the rendered chart must run.
    pub prepared: String,
    pub pulled: Vec<String>,
    /// The values keys behind `prepared`, for the error.
    pub keys: String,
    pub facts: super::SharedFacts,
}

impl Stage for ChartCheck {
    fn name(&self) -> &str {
        "chart-check"
    }
    fn describe(&self) -> Vec<String> {
        let mut pulled = String::new();
        if !self.pulled.is_empty() {
            pulled = format!(" or one of cluster.pulled_images ({})", self.pulled.join(", "));
        }
        vec![
            format!(
                "package {} as {} (leaving out {}) into {}",
                self.chart_dir.display(),
                self.package.rename.as_deref().unwrap_or("its name"),
                self.package.drop.join(", "),
                self.install.chart.display()
            ),
            self.helm.display(&self.helm.template_cmd(&self.install)),
            format!("every container image must be {} (values {}){pulled}", self.prepared, self.keys),
        ]
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let package = crate::chart::package::package(&self.chart_dir, &self.package)?;
            std::fs::write(&self.install.chart, &package.bytes)
                .map_err(|source| QaError::Write { path: self.install.chart.clone(), source })?;
            let manifests = self.helm.template(&self.install, &|l| ctx.line(l)).await?;
            let containers = crate::chart::rendered::containers(&manifests).map_err(QaError::from)?;
            crate::chart::rendered::check(&containers, &self.prepared, &self.pulled, &self.keys)
                .map_err(QaError::from)?;
            for container in &containers {
                ctx.line(&format!("{} {}: {}", container.object, container.name, container.image));
            }
            ctx.detail("package", &package.file_name);
            ctx.detail("chart_digest", format!("sha256:{}", package.digest));
            ctx.detail("image", &self.prepared);
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).package = Some(package);
            Ok(Outcome::Done)
        })
    }
}

/// The image the chart names, in the local engine for kind to load. With a digest, the image
/// is the one the registry holds under that digest (pulled if the engine lacks it), and the
/// chart's tag is made to point at it: identity by content, not by name.
pub struct ImagePrepare {
    pub docker: Arc<DockerEngine>,
    pub image: QaImage,
    pub auth: Option<RegistryAuth>,
    pub facts: super::SharedFacts,
}

impl Stage for ImagePrepare {
    fn name(&self) -> &str {
        "image-prepare"
    }
    fn describe(&self) -> Vec<String> {
        match &self.image.digest {
            Some(digest) => vec![format!(
                "{}@{digest} from the local engine (pulled if absent); {} made to name that image",
                self.image.repository,
                self.image.tagged()
            )],
            None => vec![format!(
                "{} from the local engine (pulled if absent); no digest: a build that was not pushed",
                self.image.tagged()
            )],
        }
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let tagged = self.image.tagged();
            let wanted = match &self.image.digest {
                Some(digest) => format!("{}@{digest}", self.image.repository),
                None => {
                    ctx.line(&format!("no digest in the chart (a build that was not pushed): using {tagged} as it is"));
                    tagged.clone()
                }
            };
            if !self.docker.exists(&wanted).await {
                ctx.line(&format!("pulling {wanted}"));
                self.docker.pull(&wanted, self.auth.as_ref()).await?;
            }
            let id = self.docker.inspect(&wanted).await?.id;
            if wanted != tagged && self.docker.inspect(&tagged).await.map(|f| f.id).ok().as_ref() != Some(&id) {
                ctx.line(&format!("{tagged} now names {wanted} ({id})"));
                self.docker.tag(&id, &self.image.repository, &self.image.tag).await?;
            }
            ctx.detail("image", &wanted);
            ctx.detail("image_id", &id);
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).image_id = Some(id);
            Ok(Outcome::Done)
        })
    }
}

pub struct ImageLoad {
    pub cluster: Arc<dyn Cluster>,
    /// `repository:tag`, the name the chart is installed with.
    pub image: String,
    pub facts: super::SharedFacts,
}

impl Stage for ImageLoad {
    fn name(&self) -> &str {
        "image-load"
    }
    fn describe(&self) -> Vec<String> {
        self.cluster.describe(ClusterStep::Load(&self.image))
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let id = self.facts.lock().unwrap_or_else(|e| e.into_inner()).image_id.clone();
            self.cluster.load_image(&self.image, id.as_deref(), ctx).await
        })
    }
}

/// `helm upgrade --install` of the package `chart-check` wrote and checked.
pub struct HelmInstall {
    pub helm: Helm,
    pub install: crate::tools::helm::Install,
    pub cluster: Arc<dyn Cluster>,
    pub facts: super::SharedFacts,
}

impl Stage for HelmInstall {
    fn name(&self) -> &str {
        "helm-install"
    }
    fn describe(&self) -> Vec<String> {
        vec![self.helm.display(&self.helm.upgrade_install_cmd(&self.install, &self.cluster.target()))]
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            self.helm
                .upgrade_install(&self.install, &self.cluster.target(), &|l| ctx.line(l), &|l| ctx.line(l))
                .await?;
            // What was installed is what a release may publish.
            let mut facts = self.facts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(package) = &facts.package {
                let app_version = package.metadata.app_version.clone().unwrap_or_default();
                let tested = super::Tested { app_version, digest: package.digest.clone() };
                ctx.detail("tested_app_version", &tested.app_version);
                ctx.detail("tested_chart_digest", &tested.digest);
                facts.tested = Some(tested);
            }
            Ok(Outcome::Done)
        })
    }
}

/// The integration test command, in the DEV checkout, pointed at the cluster.
pub struct IntegrationTests {
    pub command: Command,
    pub dir: PathBuf,
    pub cluster: Arc<dyn Cluster>,
    pub process: Runner,
}

impl Stage for IntegrationTests {
    fn name(&self) -> &str {
        "integration-tests"
    }
    fn describe(&self) -> Vec<String> {
        let target = self.cluster.target();
        let mut env = format!("KUBECONFIG={}", target.kubeconfig.display());
        if let Some(context) = &target.context {
            env.push_str(&format!(" KUBE_CONTEXT={context}"));
        }
        vec![format!("{} in {}, with {env}", super::command::describe(&self.command), self.dir.display())]
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let target = self.cluster.target();
            let mut cmd = Cmd::shell(&self.command.run)
                .cwd(&self.dir)
                .timeout(self.command.timeout)
                .env("KUBECONFIG", &target.kubeconfig);
            if let Some(context) = &target.context {
                cmd = cmd.env("KUBE_CONTEXT", context);
            }
            self.process.stream(&cmd, &|l| ctx.line(l), &|l| ctx.line(l)).await?;
            Ok(Outcome::Done)
        })
    }
}

/// On failure: what was going on in the cluster, into a directory named in the error.
pub struct Diagnostics {
    pub dir: PathBuf,
    pub helm: Helm,
    pub kubectl: Kubectl,
    pub release: String,
    /// The chart's custom resource definitions (`bitcoinnetworks.bitcoin.stagecoach.dev`):
    /// their objects are what the operator works on.
    pub custom_resources: Vec<String>,
    pub cluster: Arc<dyn Cluster>,
}

impl Stage for Diagnostics {
    fn name(&self) -> &str {
        "diagnostics"
    }
    fn describe(&self) -> Vec<String> {
        let mut what = "helm status, kubectl get all -A, kubectl events -A".to_string();
        for resource in &self.custom_resources {
            what.push_str(&format!(", kubectl get {resource} -A"));
        }
        vec![format!(
            "on failure: {what}, the logs of the release's pods, unready pods described with their logs, the cluster's own logs; into {}",
            self.dir.display()
        )]
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            if !ctx.run_failed {
                return Ok(Outcome::Skipped("the run passed".into()));
            }
            if !self.cluster.started() {
                return Ok(Outcome::Skipped("no cluster was brought up".into()));
            }
            std::fs::create_dir_all(&self.dir)?;
            let target = self.cluster.target();
            let echo = |l: &str| ctx.line(l);
            let write = |name: &str, text: &str| std::fs::write(self.dir.join(name), text);
            let status = match self.helm.status(&self.release, &target, &echo).await {
                Ok(text) => text,
                Err(error) => format!("helm status failed: {error}\n"),
            };
            write("helm-status.txt", &status)?;
            write("get-all.txt", &self.kubectl.capture(&target, &["get", "all", "-A", "-o", "wide"], &echo).await)?;
            // `kubectl events` orders core and events.k8s.io events alike; sorting by
            // .lastTimestamp breaks on the latter, which leave it empty.
            write("events.txt", &self.kubectl.capture(&target, &["events", "-A"], &echo).await)?;
            for resource in &self.custom_resources {
                write(
                    &format!("{resource}.yaml"),
                    &self.kubectl.capture(&target, &["get", resource, "-A", "-o", "yaml"], &echo).await,
                )?;
            }
            let selector = format!("app.kubernetes.io/instance={}", self.release);
            let released = self
                .kubectl
                .capture(
                    &target,
                    &[
                        "get",
                        "pods",
                        "-A",
                        "-l",
                        &selector,
                        "--no-headers",
                        "-o",
                        "custom-columns=NS:.metadata.namespace,NAME:.metadata.name",
                    ],
                    &echo,
                )
                .await;
            for line in released.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [namespace, pod, ..] = fields[..] else { continue };
                write(
                    &format!("release-{namespace}-{pod}.log"),
                    &self.kubectl.capture(&target, &["logs", "-n", namespace, pod, "--all-containers"], &echo).await,
                )?;
            }
            let pods = self
                .kubectl
                .capture(
                    &target,
                    &["get", "pods", "-A", "--no-headers", "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name,READY:.status.containerStatuses[*].ready"],
                    &echo,
                )
                .await;
            for line in pods.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [namespace, pod, ready] = fields[..] else { continue };
                if ready.split(',').all(|r| r == "true") {
                    continue;
                }
                let base = format!("pod-{namespace}-{pod}");
                write(
                    &format!("{base}.describe.txt"),
                    &self.kubectl.capture(&target, &["describe", "pod", "-n", namespace, pod], &echo).await,
                )?;
                write(
                    &format!("{base}.log"),
                    &self.kubectl.capture(&target, &["logs", "-n", namespace, pod, "--all-containers"], &echo).await,
                )?;
                write(
                    &format!("{base}.previous.log"),
                    &self
                        .kubectl
                        .capture(&target, &["logs", "-n", namespace, pod, "--all-containers", "--previous"], &echo)
                        .await,
                )?;
            }
            self.cluster.export_logs(&self.dir, ctx).await;
            ctx.detail("bundle", self.dir.display().to_string());
            Ok(Outcome::Done)
        })
    }
}

pub struct CacheSave(pub Arc<dyn Cluster>);

impl Stage for CacheSave {
    fn name(&self) -> &str {
        "node-image-cache"
    }
    fn describe(&self) -> Vec<String> {
        self.0.describe(ClusterStep::Cache)
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        self.0.save_cache(ctx)
    }
}

pub struct Teardown {
    pub cluster: Arc<dyn Cluster>,
    pub keep: bool,
}

impl Stage for Teardown {
    fn name(&self) -> &str {
        "cluster-teardown"
    }
    fn describe(&self) -> Vec<String> {
        if self.keep {
            return vec!["--keep-cluster: leave it running and say where its kubeconfig is".into()];
        }
        self.cluster.describe(ClusterStep::Down)
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            if self.keep {
                return self.cluster.keep();
            }
            self.cluster.down(ctx).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_table() {
        let dir = Path::new("/cache");
        let cases = [
            ("v0.27.0", "kindest/node:v1.33.1", "/cache/kind-node-v0.27.0-kindest_node_v1.33.1.tar"),
            (
                "v0.27.0",
                "kindest/node:v1.33.1@sha256:abc",
                "/cache/kind-node-v0.27.0-kindest_node_v1.33.1_sha256_abc.tar",
            ),
            ("v0.26.0", "kindest/node:v1.33.1", "/cache/kind-node-v0.26.0-kindest_node_v1.33.1.tar"),
        ];
        for (version, image, want) in cases {
            assert_eq!(cache_file(dir, version, image), Path::new(want), "{version} {image}");
        }
    }
}
