//! The QA stages: a cluster (kind, node image cached, or an existing one), the DEV source at the
//! chart's appVersion, the image loaded into the cluster, `helm upgrade --install`, the
//! integration tests, and — always — diagnostics on failure and teardown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
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

/// What the QA stages need of a cluster.
pub trait Cluster: Send + Sync {
    /// Brings the cluster up and waits for its nodes to be Ready.
    fn up<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>>;
    /// Makes `image` available to the cluster's nodes without a registry.
    fn load_image<'a>(&'a self, image: &'a str, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>>;
    /// Adds the cluster's own logs to a diagnostics bundle.
    fn export_logs<'a>(&'a self, dir: &'a Path, ctx: &'a StageContext) -> BoxFuture<'a, ()>;
    /// Keeps what makes the next `up` faster (the node image).
    fn save_cache<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>>;
    fn down<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>>;
    fn target(&self) -> Target;
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
    async fn cache_path(&self, ctx: &StageContext) -> Result<Option<PathBuf>, StageError> {
        let Some(dir) = &self.cache_dir else { return Ok(None) };
        let version = self.kind.version(&|l| ctx.line(l)).await?;
        Ok(Some(cache_file(dir, &version, &self.node_image)))
    }
}

impl Cluster for KindCluster {
    fn up<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async move {
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
            self.kind
                .create(
                    &self.name,
                    &self.node_image,
                    self.config.as_deref(),
                    &self.kubeconfig,
                    &|l| ctx.line(l),
                    &|l| ctx.line(l),
                )
                .await?;
            self.kubectl.wait_nodes_ready(&self.target(), &|l| ctx.line(l)).await?;
            Ok(Outcome::Done)
        })
    }

    fn load_image<'a>(&'a self, image: &'a str, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async move {
            self.kind.load_image(&self.name, image, &|l| ctx.line(l), &|l| ctx.line(l)).await?;
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
            self.kind.delete(&self.name, &self.kubeconfig, &|l| ctx.line(l)).await?;
            Ok(Outcome::Done)
        })
    }

    fn target(&self) -> Target {
        Target { kubeconfig: self.kubeconfig.clone(), context: Some(format!("kind-{}", self.name)) }
    }
}

/// A cluster someone else runs: used as it is, never created or deleted.
pub struct ExistingCluster {
    pub kubectl: Kubectl,
    pub target: Target,
}

impl Cluster for ExistingCluster {
    fn up<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
        Box::pin(async move {
            self.kubectl.wait_nodes_ready(&self.target, &|l| ctx.line(l)).await?;
            Ok(Outcome::Done)
        })
    }

    fn load_image<'a>(&'a self, _: &'a str, _: &'a StageContext) -> BoxFuture<'a, Result<Outcome, StageError>> {
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

    fn target(&self) -> Target {
        self.target.clone()
    }
}

pub struct ClusterUp(pub Arc<dyn Cluster>);

impl Stage for ClusterUp {
    fn name(&self) -> &str {
        "cluster-up"
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
}

impl Stage for DevCheckout {
    fn name(&self) -> &str {
        "dev-checkout"
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let (git, remote, commit, dir) =
                (self.git.clone(), self.remote.clone(), self.commit.clone(), self.dir.clone());
            tokio::task::spawn_blocking(move || git.checkout_commit(&remote, &dir, &commit)).await??;
            ctx.detail("commit", &self.commit);
            ctx.detail("dir", self.dir.display().to_string());
            Ok(Outcome::Done)
        })
    }
}

/// The image the chart names, present in the local engine (pulled if it is not).
pub struct ImagePrepare {
    pub docker: Arc<DockerEngine>,
    pub image: String,
    pub auth: Option<RegistryAuth>,
}

impl Stage for ImagePrepare {
    fn name(&self) -> &str {
        "image-prepare"
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            if self.docker.exists(&self.image).await {
                return Ok(Outcome::Skipped(format!("{} is in the local engine", self.image)));
            }
            ctx.line(&format!("pulling {}", self.image));
            self.docker.pull(&self.image, self.auth.as_ref()).await?;
            Ok(Outcome::Done)
        })
    }
}

pub struct ImageLoad {
    pub cluster: Arc<dyn Cluster>,
    pub image: String,
}

impl Stage for ImageLoad {
    fn name(&self) -> &str {
        "image-load"
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        self.cluster.load_image(&self.image, ctx)
    }
}

pub struct HelmInstall {
    pub helm: Helm,
    pub install: crate::tools::helm::Install,
    pub cluster: Arc<dyn Cluster>,
    /// How the release packages the chart: the tested package digest is computed the same way.
    pub package: crate::chart::package::Options,
    pub facts: super::SharedFacts,
}

impl Stage for HelmInstall {
    fn name(&self) -> &str {
        "helm-install"
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            // What is installed is what the release may publish: note its package digest.
            let package = crate::chart::package::package(&self.install.chart, &self.package)?;
            let app_version = package.metadata.app_version.clone().unwrap_or_default();
            let tested = super::Tested { app_version, digest: package.digest.clone() };
            self.helm
                .upgrade_install(&self.install, &self.cluster.target(), &|l| ctx.line(l), &|l| ctx.line(l))
                .await?;
            ctx.detail("tested_app_version", &tested.app_version);
            ctx.detail("tested_chart_digest", &tested.digest);
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).tested = Some(tested);
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
    pub cluster: Arc<dyn Cluster>,
}

impl Stage for Diagnostics {
    fn name(&self) -> &str {
        "diagnostics"
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            if !ctx.run_failed {
                return Ok(Outcome::Skipped("the run passed".into()));
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
            write(
                "events.txt",
                &self.kubectl.capture(&target, &["get", "events", "-A", "--sort-by=.lastTimestamp"], &echo).await,
            )?;
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
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            if self.keep {
                return Ok(Outcome::Skipped("--keep-cluster: the cluster is still running".into()));
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
