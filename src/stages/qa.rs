//! The QA stages: the chart packaged once and its rendered images checked, a cluster (kind,
//! node image cached, or an existing one), the DEV source at the chart's appVersion, the image
//! checked by content and loaded, `helm upgrade --install` of the package, the integration
//! tests, and — always — diagnostics on failure and teardown.

use std::path::PathBuf;
use std::sync::Arc;

use super::cluster::{Cluster, ClusterStep};
use crate::config::Command;
use crate::process::Spawner;
use crate::record::{Detail, StageName};
use crate::runner::{Completion, Stage, StageContext, StageFuture};
use crate::tools::docker::{DockerEngine, RegistryAuth};
use crate::tools::git::{Git2, Remote};
use crate::tools::helm::Helm;
use crate::tools::kubectl::Kubectl;

#[derive(Debug, thiserror::Error)]
pub enum QaError {
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

pub struct ClusterUp<C>(pub Arc<C>);

impl<C: Cluster> Stage for ClusterUp<C> {
    fn name(&self) -> StageName {
        StageName::ClusterUp
    }
    fn describe(&self) -> Vec<String> {
        self.0.describe(ClusterStep::Up)
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(self.0.up(ctx))
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
    pub work: Option<Arc<crate::files::ScratchDir>>,
}

impl Stage for DevCheckout {
    fn name(&self) -> StageName {
        StageName::DevCheckout
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
            ctx.detail(Detail::Commit, &self.commit);
            ctx.detail(Detail::Dir, self.dir.display().to_string());
            Ok(Completion::Done)
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
    fn name(&self) -> StageName {
        StageName::ChartCheck
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
            ctx.detail(Detail::Package, &package.file_name);
            ctx.detail(Detail::ChartDigest, format!("sha256:{}", package.digest));
            ctx.detail(Detail::Image, &self.prepared);
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).package = Some(package);
            Ok(Completion::Done)
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
    fn name(&self) -> StageName {
        StageName::ImagePrepare
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
            ctx.detail(Detail::Image, &wanted);
            ctx.detail(Detail::ImageId, &id);
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).image_id = Some(id);
            Ok(Completion::Done)
        })
    }
}

pub struct ImageLoad<C> {
    pub cluster: Arc<C>,
    /// `repository:tag`, the name the chart is installed with.
    pub image: String,
    pub facts: super::SharedFacts,
}

impl<C: Cluster> Stage for ImageLoad<C> {
    fn name(&self) -> StageName {
        StageName::ImageLoad
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
pub struct HelmInstall<C> {
    pub helm: Helm,
    pub install: crate::tools::helm::Install,
    pub cluster: Arc<C>,
    pub facts: super::SharedFacts,
}

impl<C: Cluster> Stage for HelmInstall<C> {
    fn name(&self) -> StageName {
        StageName::HelmInstall
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
                ctx.detail(Detail::TestedAppVersion, &tested.app_version);
                ctx.detail(Detail::TestedChartDigest, &tested.digest);
                facts.tested = Some(tested);
            }
            Ok(Completion::Done)
        })
    }
}

/// The integration test command, in the DEV checkout, pointed at the cluster.
pub struct IntegrationTests<C> {
    pub command: Command,
    /// The credential variables it must not see.
    pub withheld: Vec<String>,
    pub dir: PathBuf,
    pub cluster: Arc<C>,
    pub spawner: Spawner,
}

impl<C: Cluster> Stage for IntegrationTests<C> {
    fn name(&self) -> StageName {
        StageName::IntegrationTests
    }
    fn describe(&self) -> Vec<String> {
        let target = self.cluster.target();
        let mut env = format!("KUBECONFIG={}", target.kubeconfig.display());
        if let Some(context) = &target.context {
            env.push_str(&format!(" KUBE_CONTEXT={context}"));
        }
        vec![format!(
            "{} in {}, with {env}, without CARGO_TARGET_DIR and CARGO_BUILD_BUILD_DIR",
            super::command::describe(&self.command, &self.withheld),
            self.dir.display()
        )]
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let target = self.cluster.target();
            // Its builds stay in the checkout, which goes with the run: in a target directory
            // shared with other builds of this workspace, cargo would take the files of one
            // checkout's members for another's (it names them by their path in the workspace).
            let mut cmd = super::command::cmd(&self.command, &self.dir, &self.withheld)
                .env("KUBECONFIG", &target.kubeconfig)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_BUILD_DIR");
            if let Some(context) = &target.context {
                cmd = cmd.env("KUBE_CONTEXT", context);
            }
            self.spawner.stream(&cmd, &|l| ctx.line(l), &|l| ctx.line(l)).await?;
            Ok(Completion::Done)
        })
    }
}

/// On failure: what was going on in the cluster, into a directory named in the error.
pub struct Diagnostics<C> {
    pub dir: PathBuf,
    pub helm: Helm,
    pub kubectl: Kubectl,
    pub release: String,
    /// The chart's custom resource definitions (`bitcoinnetworks.bitcoin.stagecoach.dev`):
    /// their objects are what the operator works on.
    pub custom_resources: Vec<String>,
    pub cluster: Arc<C>,
}

impl<C: Cluster> Stage for Diagnostics<C> {
    fn name(&self) -> StageName {
        StageName::Diagnostics
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
                return Ok(Completion::Skipped("the run passed".into()));
            }
            if !self.cluster.started() {
                return Ok(Completion::Skipped("no cluster was brought up".into()));
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
            ctx.detail(Detail::Bundle, self.dir.display().to_string());
            Ok(Completion::Done)
        })
    }
}

pub struct CacheSave<C>(pub Arc<C>);

impl<C: Cluster> Stage for CacheSave<C> {
    fn name(&self) -> StageName {
        StageName::NodeImageCache
    }
    fn describe(&self) -> Vec<String> {
        self.0.describe(ClusterStep::Cache)
    }
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(self.0.save_cache(ctx))
    }
}

pub struct Teardown<C> {
    pub cluster: Arc<C>,
    pub keep: bool,
}

impl<C: Cluster> Stage for Teardown<C> {
    fn name(&self) -> StageName {
        StageName::ClusterTeardown
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
    fn essential(&self) -> bool {
        true
    }
}
