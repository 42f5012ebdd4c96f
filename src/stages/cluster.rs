//! The clusters the QA stages run on, behind the [`Cluster`] trait the stages use: a kind
//! cluster this run creates (node image cached between runs) or an existing cluster used as it
//! is. Either way, helm, kubectl and the tests get a kubeconfig in the run's private directory.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::record::Detail;
use crate::runner::{Completion, StageContext, StageError};
use crate::tools::Target;
use crate::tools::docker::DockerEngine;
use crate::tools::kind::Kind;
use crate::tools::kubectl::Kubectl;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
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
    #[error(
        "after `kind load`, node {node} holds `{reference}` as image {found}, not the prepared image {expected}; \
         the cluster would not run the image that was pushed"
    )]
    NotLoaded { node: String, reference: String, expected: String, found: String },
    #[error("writing {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Writes a file only its owner can read (kubeconfigs hold credentials).
fn write_private(path: &Path, text: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        file.write_all(text.as_bytes())
    };
    write().map_err(|source| ClusterError::Write { path: path.to_path_buf(), source })
}

/// What the QA stages need of a cluster.
pub trait Cluster: Send + Sync + 'static {
    /// Brings the cluster up and waits for its nodes to be Ready.
    fn up(&self, ctx: &StageContext) -> impl Future<Output = Result<Completion, StageError>> + Send;
    /// Makes `image` available to the cluster's nodes without a registry; `id`, when known, is
    /// the image ID it must have (checked right before the load).
    fn load_image(
        &self,
        image: &str,
        id: Option<&str>,
        ctx: &StageContext,
    ) -> impl Future<Output = Result<Completion, StageError>> + Send;
    /// Adds the cluster's own logs to a diagnostics bundle.
    fn export_logs(&self, dir: &Path, ctx: &StageContext) -> impl Future<Output = ()> + Send;
    /// Keeps what makes the next `up` faster (the node image).
    fn save_cache(&self, ctx: &StageContext) -> impl Future<Output = Result<Completion, StageError>> + Send;
    /// Deletes what this run created, and nothing else.
    fn down(&self, ctx: &StageContext) -> impl Future<Output = Result<Completion, StageError>> + Send;
    /// `--keep-cluster`: leaves it running and says how to reach it.
    fn keep(&self) -> Result<Completion, StageError>;
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
    /// Set when kind's Docker network was not there before this run and this run's node is on
    /// it: teardown removes it too. A run whose kind made no node there (another run's kind
    /// may be about to use the network it made) leaves it alone.
    pub network_created: AtomicBool,
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
    async fn up(&self, ctx: &StageContext) -> Result<Completion, StageError> {
        if self.kind.clusters(&|l| ctx.line(l)).await?.contains(&self.name) {
            return Err(ClusterError::ForeignCluster(self.name.clone()).into());
        }
        if let Some(cache) = self.cache_path(ctx).await? {
            ctx.detail(Detail::NodeImageCache, cache.display().to_string());
            if cache.is_file() && !self.docker.exists(&self.node_image).await {
                let started = Instant::now();
                self.docker.load(&cache).await?;
                let size = std::fs::metadata(&cache).map_or(0, |m| m.len());
                let message = format!(
                    "node image {} from cache {} ({:.0} MB) in {:.1}s, instead of pulling it",
                    self.node_image,
                    cache.display(),
                    size as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                );
                ctx.line(&message);
                ctx.detail(Detail::NodeImageLoadedMs, started.elapsed().as_millis().to_string());
            }
        }
        let network = crate::tools::kind::NETWORK;
        let network_was_there = self.docker.network_exists(network).await?;
        self.created.store(true, Ordering::SeqCst);
        self.kind.create(&self.create_cmd(), &|l| ctx.line(l), &|l| ctx.line(l)).await?;
        if !network_was_there && self.docker.on_network(network, &format!("{}-control-plane", self.name)).await? {
            self.network_created.store(true, Ordering::SeqCst);
        }
        self.kubectl.wait_nodes_ready(&self.target(), &|l| ctx.line(l)).await?;
        Ok(Completion::Done)
    }

    async fn load_image(&self, image: &str, id: Option<&str>, ctx: &StageContext) -> Result<Completion, StageError> {
        let found = self.docker.inspect(image).await?.id;
        if let Some(expected) = id
            && found != expected
        {
            return Err(ClusterError::NotThePushedImage {
                reference: image.to_string(),
                expected: expected.to_string(),
                found,
            }
            .into());
        }
        self.kind.load_image(&self.name, image, &|l| ctx.line(l), &|l| ctx.line(l)).await?;
        // What each node's container runtime now holds under that name, by its own word.
        for node in self.kind.nodes(&self.name, &|l| ctx.line(l)).await? {
            let answer = self.docker.exec(&node, &["crictl", "inspecti", "--output", "json", image]).await?;
            let held = serde_json::from_str::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["status"]["id"].as_str().map(String::from))
                .unwrap_or_default();
            if held != found {
                let (reference, expected) = (image.to_string(), found.clone());
                return Err(ClusterError::NotLoaded { node, reference, expected, found: held }.into());
            }
            ctx.line(&format!("node {node} holds {image} as {held}"));
        }
        ctx.detail(Detail::Loaded, image);
        ctx.detail(Detail::LoadedImageId, found);
        Ok(Completion::Done)
    }

    async fn export_logs(&self, dir: &Path, ctx: &StageContext) {
        if let Err(error) = self.kind.export_logs(&self.name, &dir.join("kind-logs"), &|l| ctx.line(l)).await {
            let _ = std::fs::write(dir.join("kind-logs.txt"), format!("kind export logs failed: {error}\n"));
        }
    }

    async fn save_cache(&self, ctx: &StageContext) -> Result<Completion, StageError> {
        if ctx.run_failed {
            return Ok(Completion::Skipped("the run failed: the cache is only written after a good run".into()));
        }
        let Some(cache) = self.cache_path(ctx).await? else {
            return Ok(Completion::Skipped("no cluster.cache_dir".into()));
        };
        if cache.is_file() {
            return Ok(Completion::Skipped(format!("{} is there already", cache.display())));
        }
        if let Some(parent) = cache.parent() {
            std::fs::create_dir_all(parent)?;
        }
        self.docker.save(&self.node_image, &cache).await?;
        ctx.detail(Detail::NodeImageSaved, cache.display().to_string());
        Ok(Completion::Done)
    }

    async fn down(&self, ctx: &StageContext) -> Result<Completion, StageError> {
        if !self.created.load(Ordering::SeqCst) {
            return Ok(Completion::Skipped(format!("this run did not create cluster `{}`", self.name)));
        }
        self.kind.delete(&self.name, &self.kubeconfig, &|l| ctx.line(l)).await?;
        let network = crate::tools::kind::NETWORK;
        if self.network_created.load(Ordering::SeqCst) && self.docker.remove_unused_network(network).await? {
            ctx.line(&format!("removed the Docker network `{network}` this run's cluster made"));
        }
        Ok(Completion::Done)
    }

    fn keep(&self) -> Result<Completion, StageError> {
        if !self.created.load(Ordering::SeqCst) {
            return Ok(Completion::Skipped(format!("this run did not create cluster `{}`", self.name)));
        }
        // The run's own directory goes away when it ends; the kubeconfig must outlive it.
        let kept = std::env::temp_dir().join(format!("stagecoach-kind-{}.kubeconfig", self.name));
        let text = std::fs::read_to_string(&self.kubeconfig)
            .map_err(|source| ClusterError::Write { path: self.kubeconfig.clone(), source })?;
        write_private(&kept, &text)?;
        Ok(Completion::Skipped(format!(
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
                format!("check that every node's runtime holds {image} as that image (crictl inspecti)"),
            ],
            ClusterStep::Cache => cache("after a good run, save the node image").into_iter().collect(),
            ClusterStep::Down => vec![format!(
                "{}, if this run created it, and kind's Docker network `{}` if this run made it and nothing else uses it",
                self.kind.display(&self.kind.delete_cmd(&self.name, &self.kubeconfig)),
                crate::tools::kind::NETWORK
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
    async fn up(&self, ctx: &StageContext) -> Result<Completion, StageError> {
        let echo = |l: &str| ctx.line(l);
        let minified = self.kubectl.minified_kubeconfig(&self.sources, self.context.as_deref(), &echo).await?;
        write_private(&self.kubeconfig, &minified)?;
        self.kubectl.reachable(&self.target(), &echo).await?;
        Ok(Completion::Done)
    }

    async fn load_image(&self, _: &str, _: Option<&str>, _: &StageContext) -> Result<Completion, StageError> {
        Ok(Completion::Skipped("an existing cluster pulls the image from its registry".into()))
    }

    async fn export_logs(&self, _: &Path, _: &StageContext) {}

    async fn save_cache(&self, _: &StageContext) -> Result<Completion, StageError> {
        Ok(Completion::Skipped("nothing to cache for an existing cluster".into()))
    }

    async fn down(&self, _: &StageContext) -> Result<Completion, StageError> {
        Ok(Completion::Skipped("an existing cluster is left as it is".into()))
    }

    fn keep(&self) -> Result<Completion, StageError> {
        Ok(Completion::Skipped("an existing cluster is left as it is".into()))
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
