//! The plans of the flow commands: which stages run in which order, with the real adapters
//! plugged in (the only place that happens). `stagecoach plan` prints the same plans, as the
//! stages describe themselves, so the plan cannot drift from the run.

use std::sync::Arc;

use crate::ci::BuildInfo;
use crate::config::Config;
use crate::credentials::{self, CredentialError};
use crate::process::Spawner;
use crate::record::StageName;
use crate::runner::{Plan, Stage};
use crate::secrets::Secrets;
use crate::stages::cluster::{Cluster, ExistingCluster, KindCluster};
use crate::stages::command::RunCommand;
use crate::stages::image::{BuildImage, PushImage, PushLatest, SignImage, VerifyImage};
use crate::stages::promote_to_qa::PromoteToQa;
use crate::stages::qa::{
    CacheSave, ChartCheck, ClusterUp, DevCheckout, Diagnostics, HelmInstall, ImageLoad, ImagePrepare, IntegrationTests,
    QaImage, Teardown,
};
use crate::stages::{Expectation, ImageKeys, SharedFacts, TestRun};
use crate::tools::docker::{DockerEngine, DockerError};
use crate::tools::git::{Author, Git2, Remote};
use crate::tools::helm::{Helm, Install};
use crate::tools::kind::Kind;
use crate::tools::kubectl::Kubectl;

/// The commands that run a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    BuildAndDeploy,
    IntegrationTest,
    Release,
}

impl Flow {
    pub const ALL: [Flow; 3] = [Flow::BuildAndDeploy, Flow::IntegrationTest, Flow::Release];

    pub fn command(self) -> &'static str {
        match self {
            Self::BuildAndDeploy => "build-and-deploy",
            Self::IntegrationTest => "integration-test",
            Self::Release => "release",
        }
    }
}

/// Which credentials a stage uses, as the plan names them (never their values).
fn credentials(config: &Config, name: Option<&str>) -> String {
    match name.and_then(|n| config.credentials.get(n).map(|c| (n, c))) {
        Some((name, credential)) => format!("credentials `{name}`: {}", credential.describe()),
        None => "no credentials".to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Tool(#[from] crate::tools::cli_tool::MissingTool),
    #[error("{0}")]
    Chart(String),
    #[error("{0}; nothing was built or pushed")]
    Version(#[from] crate::version::VersionError),
    #[error("image.verify_key: {0}")]
    VerifyKey(String),
}

/// How this run goes.
pub struct RunSettings<'a> {
    pub dry_run: bool,
    pub verbose: bool,
    pub run_id: String,
    pub env: crate::config::Env<'a>,
    /// build-and-deploy --no-push: build the image, push it nowhere.
    pub no_push: bool,
    /// build-and-deploy --promote: push and promote whatever is being built.
    pub promote: bool,
    /// How long a network operation may go without progress.
    pub network_timeout: std::time::Duration,
    /// Build the plan only to print it: nothing is connected to, resolved or created, and what
    /// is not at hand (a tool, the QA chart) is named instead.
    pub describe_only: bool,
}

/// The RELEASE repository's git credentials, and the OCI repository's when releases go there.
pub struct ReleaseAuth {
    git: crate::tools::git::Auth,
    oci: Option<crate::tools::docker::RegistryAuth>,
    /// STAGECOACH_SIGNING_KEY, unlocked with STAGECOACH_SIGNING_PASSPHRASE: releases are signed.
    signing: Option<crate::chart::provenance::SigningKey>,
    /// STAGECOACH_COSIGN_KEY, opened with STAGECOACH_COSIGN_PASSWORD: OCI releases are signed
    /// with cosign, and the image they deploy is verified with its public half unless
    /// image.verify_key names a key.
    cosign: Option<Arc<crate::cosign::CosignKey>>,
}

impl RunSettings<'_> {
    fn release_auth(&self, config: &Config, secrets: &mut Secrets) -> Result<ReleaseAuth, SetupError> {
        let git = match &config.repositories.release {
            Some(release) => self.repo_auth(config, release, secrets)?,
            None => crate::tools::git::Auth::None,
        };
        let oci = match (&config.chart.oci, self.describe_only) {
            (Some(oci), false) => {
                let host = crate::tools::oci::host(&oci.url);
                credentials::registry_auth_for(config, oci.credentials.as_deref(), host, self.env, secrets)?
            }
            _ => None,
        };
        let signing = if self.describe_only { None } else { credentials::signing_key(self.env, secrets)? };
        // A key that does not open stops the run before anything is published.
        let cosign = credentials::cosign_key(self.env, secrets)?.map(Arc::new);
        Ok(ReleaseAuth { git, oci, signing, cosign })
    }

    fn registry_auth(
        &self,
        config: &Config,
        secrets: &mut Secrets,
    ) -> Result<Option<crate::tools::docker::RegistryAuth>, SetupError> {
        if self.describe_only {
            return Ok(None);
        }
        Ok(credentials::registry_auth(config, self.env, secrets)?)
    }

    fn repo_auth(
        &self,
        config: &Config,
        repo: &crate::config::Repository,
        secrets: &mut Secrets,
    ) -> Result<crate::tools::git::Auth, SetupError> {
        if self.describe_only {
            return Ok(crate::tools::git::Auth::None);
        }
        Ok(credentials::repo_auth(config, repo, self.env, secrets)?)
    }

    async fn engine(&self, secrets: &Secrets) -> Result<Arc<DockerEngine>, SetupError> {
        Ok(Arc::new(if self.describe_only {
            DockerEngine::unconnected(secrets.clone())?
        } else {
            DockerEngine::connect(secrets.clone()).await?.with_stall_timeout(self.network_timeout)
        }))
    }

    /// `configured`, or `name` on PATH; a plan names a missing tool instead of failing.
    fn tool(
        &self,
        name: &'static str,
        configured: Option<&std::path::Path>,
        install: &'static str,
    ) -> Result<std::path::PathBuf, SetupError> {
        let path = (self.env)("PATH").map(std::ffi::OsString::from);
        match crate::tools::cli_tool::find(name, configured, path.as_deref(), install) {
            Err(_) if self.describe_only => Ok(configured.map_or_else(|| name.into(), Into::into)),
            found => Ok(found?),
        }
    }
}

/// build-and-deploy: build, unit tests, image build and push, QA promotion.
pub async fn build_and_deploy(
    config: &Config,
    build: &BuildInfo,
    settings: &RunSettings<'_>,
    secrets: &mut Secrets,
) -> Result<Plan, SetupError> {
    // The tag, credentials and the engine are checked before anything runs: a tag that cannot
    // be a chart version, or a missing token, should not cost a build, a push or `:latest`.
    if let Some(tag) = &build.tag
        && !settings.describe_only
    {
        crate::version::release_version(tag)?;
    }
    let registry_auth = settings.registry_auth(config, secrets)?;
    // A key that does not open stops the run here, before anything is built or pushed.
    let cosign_key = credentials::cosign_key(settings.env, secrets)?.map(Arc::new);
    let qa = &config.repositories.qa;
    let qa_auth = settings.repo_auth(config, qa, secrets)?;
    let images = settings.engine(secrets).await?;
    let dev = &config.repositories.dev;
    // Only needed when the checkout lacks the commit QA holds; a public DEV repository needs
    // none, and a credential that is not set here must not stop the build.
    let dev_auth = settings.repo_auth(config, dev, secrets).unwrap_or(crate::tools::git::Auth::None);
    let held_back = if settings.promote { None } else { build.held_back(&dev.branch) };
    let spawner = Spawner::new(secrets.clone(), settings.verbose);
    let facts = SharedFacts::default();
    let tag = build.image_tag().to_string();
    let command = |name, command: &crate::config::Command| RunCommand {
        name,
        command: command.clone(),
        cwd: config.root.clone(),
        withheld: config.withheld_from(command),
        spawner: spawner.clone(),
    };
    let sign = cosign_key.map(|key| SignImage {
        oci: crate::tools::oci::Oci::new(
            crate::tools::oci::on_this_machine(&config.image.repository),
            settings.network_timeout,
        ),
        repository: config.image.repository.clone(),
        auth: crate::tools::oci::Oci::auth(registry_auth.as_ref()),
        key,
        build: crate::cosign::Build {
            source: dev.url.clone(),
            commit: build.commit.clone(),
            commands: vec![
                config.commands.build.run.clone(),
                format!("docker build {}", config.image.context.display()),
            ],
            builder_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: settings.run_id.clone(),
        },
        dry_run: settings.dry_run,
        facts: Arc::clone(&facts),
    });
    let plan = Plan::new()
        .then(command(StageName::Build, &config.commands.build))
        .then(command(StageName::UnitTests, &config.commands.unit_tests))
        .then(BuildImage {
            images: Arc::clone(&images),
            context: config.resolve(&config.image.context),
            dockerfile: config.resolve(&config.image.dockerfile),
            repository: config.image.repository.clone(),
            tag: tag.clone(),
            facts: Arc::clone(&facts),
        })
        .then(PushImage {
            images: Arc::clone(&images),
            repository: config.image.repository.clone(),
            tag,
            auth: registry_auth.clone(),
            credentials: credentials(config, config.image.credentials.as_deref()),
            dry_run: settings.dry_run,
            no_push: settings.no_push,
            held_back: held_back.clone(),
            facts: Arc::clone(&facts),
        });
    let plan = match sign {
        Some(sign) => plan.then(sign),
        None => plan,
    };
    Ok(plan
        .then(PromoteToQa {
            git: Git2::new(secrets.clone()),
            remote: Remote {
                url: qa.url.clone(),
                branch: qa.branch.clone(),
                auth: qa_auth,
                origin: "repositories.qa.url".into(),
            },
            credentials: credentials(config, qa.credentials.as_deref()),
            chart_path: config.chart.path.clone(),
            keys: image_keys(config),
            repository: config.image.repository.clone(),
            build: build.clone(),
            run_id: settings.run_id.clone(),
            author: Author::default(),
            dry_run: settings.dry_run,
            pushes: !settings.no_push,
            held_back,
            dev: Remote {
                url: dev.url.clone(),
                branch: dev.branch.clone(),
                auth: dev_auth,
                origin: "repositories.dev.url".into(),
            },
            dev_dir: build.source_dir.clone().unwrap_or_else(|| config.root.clone()),
            facts: Arc::clone(&facts),
        })
        .then(PushLatest {
            images,
            repository: config.image.repository.clone(),
            auth: registry_auth,
            dry_run: settings.dry_run,
            facts,
        }))
}

/// How a release packages the chart; QA packages it the same way, so what it installs is
/// what a release publishes.
fn package_options(config: &Config) -> crate::chart::package::Options {
    crate::chart::package::Options { rename: Some(config.chart.release_name.clone()), drop: config.chart.drop.clone() }
}

fn image_keys(config: &Config) -> ImageKeys {
    ImageKeys {
        repository: config.chart.image_repository_key.clone(),
        tag: config.chart.image_tag_key.clone(),
        digest: config.chart.image_digest_key.clone(),
    }
}

/// The key images are verified with, `image.verify_key`, and where it came from: read inside
/// the repository and parsed before anything runs.
fn verify_key(config: &Config) -> Result<Option<(crate::cosign::PublicKey, String)>, SetupError> {
    let Some(file) = &config.image.verify_key else { return Ok(None) };
    let bad = |why: String| SetupError::VerifyKey(format!("{}: {why}", file.display()));
    // The refusal names the file itself.
    let path = crate::files::inside(&config.root, file).map_err(|e| SetupError::VerifyKey(e.to_string()))?;
    let pem = std::fs::read(&path).map_err(|e| bad(format!("reading {}: {e}", path.display())))?;
    let key = crate::cosign::PublicKey::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
    Ok(Some((key, file.display().to_string())))
}

/// The key a release verifies the image its package deploys with: image.verify_key, else the
/// public half of the cosign key it signs with; none without either.
fn release_verify_key(
    verify_key: Option<(crate::cosign::PublicKey, String)>,
    auth: &ReleaseAuth,
) -> Option<(crate::cosign::PublicKey, String)> {
    verify_key.or_else(|| {
        let source = "the public half of STAGECOACH_COSIGN_KEY; image.verify_key names another";
        auth.cosign.as_ref().map(|key| (key.public_key(), source.to_string()))
    })
}

/// The check of an image's signature and provenance with `key`, reading from the registry with
/// the image's credentials.
fn image_verification(
    settings: &RunSettings<'_>,
    (key, key_source): (crate::cosign::PublicKey, String),
    registry_auth: Option<&crate::tools::docker::RegistryAuth>,
) -> crate::stages::image::ImageVerification {
    crate::stages::image::ImageVerification {
        timeout: settings.network_timeout,
        auth: crate::tools::oci::Oci::auth(registry_auth),
        key,
        key_source,
    }
}

/// What a QA run reads from the QA checkout's chart before anything runs.
pub struct QaChart {
    pub dir: std::path::PathBuf,
    /// The DEV commit the chart was built from.
    pub app_version: String,
    /// The image as values.yaml names it.
    pub image: QaImage,
    /// Whether values.yaml has the digest key (an install by tag clears it).
    pub has_digest_key: bool,
}

impl QaChart {
    /// What a plan shows where the QA chart is not at hand (`plan` in the DEV repository).
    fn unread(config: &Config) -> Self {
        let keys = &config.chart;
        QaChart {
            dir: config.resolve(&keys.path),
            app_version: "<Chart.yaml appVersion>".into(),
            image: QaImage {
                repository: format!("<values {}>", keys.image_repository_key),
                tag: format!("<values {}>", keys.image_tag_key),
                digest: Some(format!("<values {}>", keys.image_digest_key)),
            },
            has_digest_key: true,
        }
    }
}

pub fn read_qa_chart(config: &Config) -> Result<QaChart, SetupError> {
    let dir = config.resolve(&config.chart.path);
    let bad = |message: String| SetupError::Chart(message);
    // The QA checkout's content decides what is read: nothing outside it.
    for file in ["Chart.yaml", "values.yaml"] {
        crate::files::inside(&config.root, &config.chart.path.join(file)).map_err(|e| bad(e.to_string()))?;
    }
    let chart_yaml = dir.join("Chart.yaml");
    let bytes = std::fs::read(&chart_yaml).map_err(|e| bad(format!("{}: {e}", chart_yaml.display())))?;
    let meta = crate::chart::meta::Metadata::parse(&bytes).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
    let app_version = meta.app_version.clone().unwrap_or_default();
    if !(app_version.len() == 40 && app_version.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(bad(format!(
            "{}: appVersion {app_version:?} is not a full commit hash; `stagecoach build-and-deploy` writes it",
            chart_yaml.display()
        )));
    }
    let values = dir.join("values.yaml");
    let text = std::fs::read_to_string(&values).map_err(|e| bad(format!("{}: {e}", values.display())))?;
    let value = |key: &str| -> Result<Option<String>, SetupError> {
        let path = crate::chart::yaml::parse_path(key).map_err(bad)?;
        crate::chart::yaml::get(&text, &path).map_err(|e| bad(format!("{}: {e}", values.display())))
    };
    let required = |key: &str| -> Result<String, SetupError> {
        value(key)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("{}: no `{key}`; `stagecoach build-and-deploy` writes it", values.display())))
    };
    let keys = &config.chart;
    let digest = value(&keys.image_digest_key)?;
    let has_digest_key = digest.is_some();
    let digest = digest.filter(|d| !d.is_empty());
    if let Some(digest) = &digest
        && !crate::config::is_sha256_digest(digest)
    {
        return Err(bad(format!(
            "{}: `{}` is {digest:?}, not a manifest digest (sha256: and 64 hex digits)",
            values.display(),
            keys.image_digest_key
        )));
    }
    let image =
        QaImage { repository: required(&keys.image_repository_key)?, tag: required(&keys.image_tag_key)?, digest };
    Ok(QaChart { app_version, image, has_digest_key, dir })
}

/// integration-test: the chart checked, then cluster ∥ DEV checkout ∥ image, image load, helm
/// install of the checked package, tests, release; diagnostics, node image cache and teardown
/// as cleanup. Everything the run writes lives in a private directory removed when it ends.
pub async fn integration_test(
    config: &Config,
    build: &BuildInfo,
    settings: &RunSettings<'_>,
    keep_cluster: bool,
    secrets: &mut Secrets,
) -> Result<Plan, SetupError> {
    use crate::config::Cluster as Provider;

    let chart = match read_qa_chart(config) {
        Err(_) if settings.describe_only => QaChart::unread(config),
        chart => chart?,
    };
    let spawner = Spawner::new(secrets.clone(), settings.verbose);
    let kind_bin = match &config.cluster {
        Provider::Kind { .. } => {
            Some(settings.tool("kind", config.tools.kind.as_deref(), crate::tools::kind::INSTALL)?)
        }
        Provider::Existing { .. } => None,
    };
    let helm = Helm {
        bin: settings.tool("helm", config.tools.helm.as_deref(), crate::tools::helm::INSTALL)?,
        spawner: spawner.clone(),
    };
    let kubectl = Kubectl {
        bin: settings.tool("kubectl", config.tools.kubectl.as_deref(), crate::tools::kubectl::INSTALL)?,
        spawner: spawner.clone(),
    };
    let registry_auth = settings.registry_auth(config, secrets)?;
    let verify_key = verify_key(config)?;
    let verification = verify_key.clone().map(|key| image_verification(settings, key, registry_auth.as_ref()));
    let dev_auth = settings.repo_auth(config, &config.repositories.dev, secrets)?;
    let release_auth = settings.release_auth(config, secrets)?;
    let release_verification = release_verify_key(verify_key, &release_auth)
        .map(|key| image_verification(settings, key, registry_auth.as_ref()));
    // The release at the end of this run publishes what this run tested, on this QA commit.
    let tested_by =
        TestRun { run_id: settings.run_id.clone(), qa_commit: build.commit.clone(), outcome: "passed".into() };
    // Private (0700) and outside the QA checkout: its root is often the chart itself, and
    // whatever lay inside would be installed and packaged with it. A plan creates none.
    let work = match settings.describe_only {
        true => None,
        false => Some(Arc::new(
            crate::files::scratch_dir("stagecoach-qa-")
                .map_err(|e| SetupError::Chart(format!("creating a temporary directory: {e}")))?,
        )),
    };
    let work_dir =
        work.as_ref().map_or_else(|| std::env::temp_dir().join("stagecoach-qa-XXXXXX"), |w| w.path().to_path_buf());
    let qa = Qa {
        config,
        settings,
        chart,
        helm,
        kubectl,
        spawner,
        registry_auth,
        verification,
        dev_auth,
        release: ReleaseInputs {
            auth: release_auth,
            verification: release_verification,
            tested_by: Some(tested_by),
            qa_commit: build.commit.clone(),
        },
        work,
        work_dir,
        keep_cluster,
    };

    // A kind cluster runs the image loaded into it, by tag: kind's load drops the registry's
    // manifest digest, so a digest reference would make the kubelet pull. An existing cluster
    // pulls the image itself, pinned by digest.
    match &config.cluster {
        Provider::Kind { name, node_image, cache_dir, config: kind_config } => {
            let docker = settings.engine(secrets).await?;
            let cluster = KindCluster {
                kind: Kind { bin: kind_bin.unwrap_or_default(), spawner: qa.spawner.clone() },
                kubectl: qa.kubectl.clone(),
                docker: Arc::clone(&docker),
                name: name.clone(),
                node_image: node_image.clone(),
                cache_dir: cache_dir.clone(),
                config: kind_config.as_ref().map(|c| config.resolve(c)),
                kubeconfig: qa.work_dir.join("kubeconfig"),
                created: Default::default(),
                network_created: Default::default(),
            };
            Ok(qa.plan(Arc::new(cluster), Some(docker), secrets))
        }
        Provider::Existing { kubeconfig, context } => {
            let sources = kubeconfig
                .as_ref()
                .map(|p| p.as_os_str().to_owned())
                .or_else(|| (settings.env)("KUBECONFIG").map(Into::into))
                .or_else(|| (settings.env)("HOME").map(|h| std::path::Path::new(&h).join(".kube/config").into()))
                .unwrap_or_else(|| "kubeconfig".into());
            let cluster = ExistingCluster {
                kubectl: qa.kubectl.clone(),
                sources,
                context: context.clone(),
                kubeconfig: qa.work_dir.join("kubeconfig"),
            };
            Ok(qa.plan(Arc::new(cluster), None, secrets))
        }
    }
}

/// What the integration-test plan is made of, whichever the cluster.
struct Qa<'a> {
    config: &'a Config,
    settings: &'a RunSettings<'a>,
    chart: QaChart,
    helm: Helm,
    kubectl: Kubectl,
    spawner: Spawner,
    registry_auth: Option<crate::tools::docker::RegistryAuth>,
    verification: Option<crate::stages::image::ImageVerification>,
    dev_auth: crate::tools::git::Auth,
    release: ReleaseInputs,
    work: Option<Arc<crate::files::ScratchDir>>,
    work_dir: std::path::PathBuf,
    keep_cluster: bool,
}

impl Qa<'_> {
    /// The stages on `cluster`; `docker` is the engine a kind cluster loads the image from.
    fn plan<C: Cluster>(self, cluster: Arc<C>, docker: Option<Arc<DockerEngine>>, secrets: &Secrets) -> Plan {
        let (config, settings, chart, work_dir) = (self.config, self.settings, &self.chart, &self.work_dir);
        let dev = &config.repositories.dev;
        let artifacts = (settings.env)("STAGECOACH_ARTIFACTS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("stagecoach-artifacts"))
            .join(&settings.run_id);
        let keys = image_keys(config);
        let (prepared, sets) = match docker {
            Some(_) if chart.has_digest_key => (chart.image.tagged(), vec![(keys.digest.clone(), String::new())]),
            Some(_) => (chart.image.tagged(), vec![]),
            None => (chart.image.pinned(), vec![]),
        };
        let facts = SharedFacts::default();
        let install = Install {
            release: config.chart.name.clone(),
            chart: work_dir.join("chart.tgz"),
            sets,
            timeout: config.install_timeout,
        };
        let dev_dir = work_dir.join("dev");
        let mut prepare: Vec<Box<dyn Stage>> = vec![
            Box::new(ClusterUp(Arc::clone(&cluster))),
            Box::new(DevCheckout {
                git: Git2::new(secrets.clone()),
                remote: Remote {
                    url: dev.url.clone(),
                    branch: dev.branch.clone(),
                    auth: self.dev_auth,
                    origin: "repositories.dev.url".into(),
                },
                commit: chart.app_version.clone(),
                dir: dev_dir.clone(),
                work: self.work.clone(),
            }),
        ];
        if let Some(docker) = docker {
            prepare.push(Box::new(ImagePrepare {
                docker,
                image: chart.image.clone(),
                auth: self.registry_auth,
                facts: Arc::clone(&facts),
            }));
        }
        let plan = match self.verification {
            // Before the chart is even packaged: an image that is not the one DEV signed stops
            // the run with nothing created.
            Some(verification) => Plan::new().then(VerifyImage {
                verification,
                image: chart.image.clone(),
                commit: chart.app_version.clone(),
            }),
            None => Plan::new(),
        };
        plan.then(ChartCheck {
            helm: self.helm.clone(),
            chart_dir: chart.dir.clone(),
            package: package_options(config),
            install: install.clone(),
            prepared,
            pulled: config.pulled_images.clone(),
            keys: keys.to_string(),
            facts: Arc::clone(&facts),
        })
        .parallel(prepare)
        .then(ImageLoad { cluster: Arc::clone(&cluster), image: chart.image.tagged(), facts: Arc::clone(&facts) })
        .then(HelmInstall {
            helm: self.helm.clone(),
            install,
            cluster: Arc::clone(&cluster),
            facts: Arc::clone(&facts),
        })
        .then(IntegrationTests {
            command: config.commands.integration_tests.clone(),
            withheld: config.withheld_from(&config.commands.integration_tests),
            dir: dev_dir,
            cluster: Arc::clone(&cluster),
            spawner: self.spawner,
        })
        .then(release_stage(config, settings, self.release, Expectation::SameRun(facts), secrets))
        .cleanup(Diagnostics {
            dir: artifacts,
            helm: self.helm,
            kubectl: self.kubectl,
            release: config.chart.name.clone(),
            custom_resources: custom_resources(&chart.dir),
            cluster: Arc::clone(&cluster),
        })
        .cleanup(CacheSave(Arc::clone(&cluster)))
        .cleanup(Teardown { cluster, keep: self.keep_cluster })
        .keep_until_done(self.work)
    }
}

/// The names of the custom resource definitions in the chart's crds/ directory.
fn custom_resources(chart: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(chart.join("crds"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .flat_map(|text| crate::chart::rendered::crd_names(&text))
        .collect();
    names.sort();
    names
}

/// release: package the QA chart and publish it into the RELEASE repository.
pub fn release(
    config: &Config,
    build: &BuildInfo,
    settings: &RunSettings<'_>,
    expect: Expectation,
    tested_by: Option<TestRun>,
    secrets: &mut Secrets,
) -> Result<Plan, SetupError> {
    let auth = settings.release_auth(config, secrets)?;
    // The registry's credentials only when there is an image to verify.
    let verification = match release_verify_key(verify_key(config)?, &auth) {
        Some(key) => Some(image_verification(settings, key, settings.registry_auth(config, secrets)?.as_ref())),
        None => None,
    };
    let inputs = ReleaseInputs { auth, verification, tested_by, qa_commit: build.commit.clone() };
    Ok(Plan::new().then(release_stage(config, settings, inputs, expect, secrets)))
}

/// What a release is given besides the pipeline file: credentials and keys, the check of the
/// image, and what tested the chart.
struct ReleaseInputs {
    auth: ReleaseAuth,
    verification: Option<crate::stages::image::ImageVerification>,
    tested_by: Option<TestRun>,
    /// The QA checkout's commit, which a provenance names when no test run does.
    qa_commit: String,
}

/// The release of the QA checkout's chart into the RELEASE repository and/or `chart.oci`.
fn release_stage(
    config: &Config,
    settings: &RunSettings<'_>,
    inputs: ReleaseInputs,
    expect: Expectation,
    secrets: &Secrets,
) -> crate::stages::release::Release {
    let ReleaseInputs { auth, verification, tested_by, qa_commit } = inputs;
    let cosign = match (&config.chart.oci, auth.cosign) {
        (Some(_), Some(key)) => crate::stages::release::Cosign::Sign(crate::stages::release::ChartSigning {
            key,
            provenance: crate::cosign::Release {
                source: config.repositories.qa.url.clone(),
                commit: tested_by.as_ref().map_or(qa_commit, |run| run.qa_commit.clone()),
                tested: tested_by.map(|run| (run.run_id, run.outcome)),
                image: String::new(),
                image_digest: None,
                builder_version: env!("CARGO_PKG_VERSION").to_string(),
                run_id: settings.run_id.clone(),
            },
        }),
        (None, Some(_)) => crate::stages::release::Cosign::NoOciRegistry,
        (_, None) => crate::stages::release::Cosign::Off,
    };
    let index = config.repositories.release.as_ref().map(|release| crate::stages::release::IndexRepository {
        remote: Remote {
            url: release.url.clone(),
            branch: release.branch.clone(),
            auth: auth.git,
            origin: "repositories.release.url".into(),
        },
        credentials: credentials(config, release.credentials.as_deref()),
    });
    let oci = config.chart.oci.as_ref().map(|oci| crate::stages::release::OciRelease {
        url: oci.url.clone(),
        client: crate::tools::oci::Oci::new(oci.plain_http, settings.network_timeout),
        auth: crate::tools::oci::Oci::auth(auth.oci.as_ref()),
        credentials: match &oci.credentials {
            Some(name) => credentials(config, Some(name)),
            None => "credentials from docker login, if any".into(),
        },
    });
    crate::stages::release::Release {
        git: Git2::new(secrets.clone()),
        index,
        chart_dir: config.resolve(&config.chart.path),
        package: package_options(config),
        base_url: config.chart.base_url.clone(),
        author: Author::default(),
        dry_run: settings.dry_run,
        run_id: settings.run_id.clone(),
        spawner: Spawner::new(secrets.clone(), settings.verbose),
        expect,
        serve_timeout: serve_timeout(settings.env),
        network_timeout: settings.network_timeout,
        oci,
        signing_key: auth.signing,
        cosign,
        verification,
        image_keys: image_keys(config),
    }
}

/// STAGECOACH_SERVE_TIMEOUT (seconds, default 300): how long a published index may take to be
/// served at chart.base_url.
fn serve_timeout(env: crate::config::Env<'_>) -> std::time::Duration {
    std::time::Duration::from_secs(env("STAGECOACH_SERVE_TIMEOUT").and_then(|v| v.parse().ok()).unwrap_or(300))
}
