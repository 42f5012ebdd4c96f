//! The stages of each command, in order, with the concrete actions each will take: what
//! `stagecoach plan` prints and what the commands run.

use std::fmt::Write as _;

use crate::ci::BuildInfo;
use crate::config::{Cluster, Command, Config, Repository, format_duration};
use crate::process::shell_quote;

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

/// A stage as the plan shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStage {
    pub name: &'static str,
    pub actions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outline {
    pub flow: Flow,
    /// Groups run in order; the stages of a group run at the same time.
    pub groups: Vec<Vec<PlannedStage>>,
    pub cleanup: Vec<PlannedStage>,
}

fn stage(name: &'static str, actions: Vec<String>) -> PlannedStage {
    PlannedStage { name, actions }
}

fn shell(command: &Command) -> String {
    format!("sh -c {} (timeout {})", shell_quote(&command.run), format_duration(command.timeout))
}

fn credentials(config: &Config, name: Option<&str>) -> String {
    match name.and_then(|n| config.credentials.get(n).map(|c| (n, c))) {
        Some((name, credential)) => format!("credentials `{name}`: {}", credential.describe()),
        None => "no credentials".to_string(),
    }
}

fn clone(config: &Config, repo: &Repository) -> String {
    format!("clone {} (branch {}, {})", repo.url, repo.branch, credentials(config, repo.credentials.as_deref()))
}

/// A file of the chart, relative to the QA repository root.
fn chart_file(config: &Config, name: &str) -> String {
    if config.chart.path == std::path::Path::new(".") {
        name.to_string()
    } else {
        config.chart.path.join(name).display().to_string()
    }
}

pub fn outline(flow: Flow, config: &Config, build: &BuildInfo) -> Outline {
    let image = &config.image;
    let chart = &config.chart;
    let tag = build.image_tag();
    let version = match &build.tag {
        Some(tag) => format!("the release version of tag {tag}"),
        None => format!("the next patch of the QA chart's version, pre-release dev.{}", build.short),
    };
    match flow {
        Flow::BuildAndDeploy => Outline {
            flow,
            groups: vec![
                vec![stage("build", vec![shell(&config.commands.build)])],
                vec![stage("unit-tests", vec![shell(&config.commands.unit_tests)])],
                vec![stage(
                    "image-build",
                    vec![format!(
                        "docker build -f {} {} as {}:{tag} and {}:latest",
                        image.dockerfile.display(),
                        image.context.display(),
                        image.repository,
                        image.repository
                    )],
                )],
                vec![stage(
                    "image-push",
                    vec![format!(
                        "push {}:{tag} and {}:latest ({})",
                        image.repository,
                        image.repository,
                        credentials(config, image.credentials.as_deref())
                    )],
                )],
                vec![stage(
                    "qa-promote",
                    vec![
                        clone(config, &config.repositories.qa),
                        format!(
                            "set {} {} = {}",
                            chart_file(config, "values.yaml"),
                            chart.image_repository_key,
                            image.repository
                        ),
                        format!("set {} {} = {tag}", chart_file(config, "values.yaml"), chart.image_tag_key),
                        format!(
                            "set {} {} = the pushed manifest digest (empty when not pushed)",
                            chart_file(config, "values.yaml"),
                            chart.image_digest_key
                        ),
                        format!("set {} version = {version}", chart_file(config, "Chart.yaml")),
                        format!("set {} appVersion = {}", chart_file(config, "Chart.yaml"), build.commit),
                        format!("commit and push to {}", config.repositories.qa.branch),
                    ],
                )],
            ],
            cleanup: vec![],
        },
        Flow::IntegrationTest => {
            let (cluster_up, teardown) = match &config.cluster {
                Cluster::Kind { name, node_image, cache_dir, config: kind_config } => {
                    let mut up = vec![format!(
                        "stop if a kind cluster named {name} exists (this run deletes only what it creates)"
                    )];
                    if let Some(dir) = cache_dir {
                        up.push(format!("load the cached node image from {} if present", dir.display()));
                    }
                    let mut create = format!("kind create cluster --name {name} --image {node_image} --wait");
                    if let Some(file) = kind_config {
                        let _ = write!(create, " --config {}", file.display());
                    }
                    up.push(create);
                    (
                        up,
                        vec![stage(
                            "cluster-teardown",
                            vec![format!("kind delete cluster --name {name}, if this run created it")],
                        )],
                    )
                }
                Cluster::Existing { kubeconfig, context } => {
                    let kubeconfig = kubeconfig.as_ref().map_or("$KUBECONFIG".to_string(), |p| p.display().to_string());
                    let context = context.as_deref().unwrap_or("its current context");
                    (
                        vec![
                            format!(
                                "kubectl config view --minify --flatten: only {context} of {kubeconfig}, for helm, kubectl and the tests"
                            ),
                            "kubectl version (no node access needed)".to_string(),
                        ],
                        vec![],
                    )
                }
            };
            let keys = format!("{}, {}, {}", chart.image_repository_key, chart.image_tag_key, chart.image_digest_key);
            let (load, install_sets) = match &config.cluster {
                Cluster::Kind { name, .. } => (
                    format!(
                        "check its ID, then kind load docker-image <values {}>:<values {}> --name {name}",
                        chart.image_repository_key, chart.image_tag_key
                    ),
                    format!(" --set-string {}= (kind runs the loaded image by tag)", chart.image_digest_key),
                ),
                Cluster::Existing { .. } => {
                    ("the cluster pulls repository:tag@digest from the registry".to_string(), String::new())
                }
            };
            let mut cleanup = vec![stage(
                "diagnostics",
                vec!["on failure: helm status, kubectl get all -A, kubectl events -A, the chart's custom resources, the release's pod logs, unready pods, into the artifacts dir".into()],
            )];
            if let Cluster::Kind { cache_dir: Some(dir), .. } = &config.cluster {
                cleanup.push(stage(
                    "node-image-cache",
                    vec![format!("after a good run: save the node image into {} if absent", dir.display())],
                ));
            }
            cleanup.extend(teardown);
            let mut prepare = vec![
                stage("cluster-up", cluster_up),
                stage(
                    "dev-checkout",
                    vec![format!("fetch {} at the QA chart's appVersion commit", config.repositories.dev.url)],
                ),
            ];
            if matches!(config.cluster, Cluster::Kind { .. }) {
                prepare.push(stage(
                    "image-prepare",
                    vec![format!("the image pushed under <values {}> in the local engine (pulled if absent), tagged as the chart names it", chart.image_digest_key)],
                ));
            }
            Outline {
                flow,
                groups: vec![
                    vec![stage(
                        "chart-check",
                        vec![
                            format!(
                                "package {} as {} (leaving out {}) into a private temporary directory",
                                chart.path.display(),
                                chart.release_name,
                                chart.drop.join(", ")
                            ),
                            format!("helm template {} <package>{install_sets}", chart.name),
                            format!(
                                "every container image must be the one values {keys} name, or in cluster.pulled_images"
                            ),
                        ],
                    )],
                    prepare,
                    vec![stage("image-load", vec![load])],
                    vec![stage(
                        "helm-install",
                        vec![format!(
                            "helm upgrade --install {} <package> --wait --timeout 300s{install_sets}",
                            chart.name
                        )],
                    )],
                    vec![stage(
                        "integration-tests",
                        vec![format!("{} with KUBECONFIG of the cluster", shell(&config.commands.integration_tests))],
                    )],
                    vec![stage(
                        "release",
                        vec!["when the chart version has no pre-release part: publish the installed package".into()],
                    )],
                ],
                cleanup,
            }
        }
        Flow::Release => Outline {
            flow,
            groups: vec![
                vec![stage(
                    "package",
                    vec![format!(
                        "package {} as {} (leaving out {})",
                        chart.path.display(),
                        chart.release_name,
                        chart.drop.join(", ")
                    )],
                )],
                vec![stage(
                    "publish",
                    vec![
                        clone(config, &config.repositories.release),
                        format!("merge {}-<version>.tgz into index.yaml", chart.release_name),
                        format!("commit and push to {}", config.repositories.release.branch),
                    ],
                )],
            ],
            cleanup: vec![],
        },
    }
}

/// The plan as `stagecoach plan` prints it.
pub fn render(outline: &Outline, build: &BuildInfo) -> String {
    let mut out = String::new();
    let branch = build.branch.as_deref().map(|b| format!("branch {b}, ")).unwrap_or_default();
    let _ = writeln!(out, "{}", outline.flow.command());
    let _ = writeln!(out, "  commit {} ({branch}{}), image tag {}", build.commit, build.provider, build.image_tag());
    for (index, group) in outline.groups.iter().enumerate() {
        for (member, planned) in group.iter().enumerate() {
            let number = if member == 0 { format!("{}.", index + 1) } else { String::new() };
            let parallel = if group.len() > 1 { " (parallel)" } else { "" };
            let _ = writeln!(out, "  {number:<3} {}{parallel}", planned.name);
            for action in &planned.actions {
                let _ = writeln!(out, "        {action}");
            }
        }
    }
    if !outline.cleanup.is_empty() {
        let _ = writeln!(out, "  always, also on failure or Ctrl-C:");
        for planned in &outline.cleanup {
            let _ = writeln!(out, "      {}", planned.name);
            for action in &planned.actions {
                let _ = writeln!(out, "        {action}");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The runnable plans: the only place where real adapters are plugged in.

use std::sync::Arc;

use crate::credentials::{self, CredentialError};
use crate::runner::Plan;
use crate::secrets::Secrets;
use crate::stages::command::RunCommand;
use crate::stages::image::{BuildImage, PushImage};
use crate::stages::qa_promote::PromoteToQa;
use crate::tools::docker::{DockerEngine, DockerError};
use crate::tools::git::{Author, Git2, Remote};

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
}

/// How this run goes.
pub struct RunSettings<'a> {
    pub dry_run: bool,
    pub verbose: bool,
    pub run_id: String,
    pub env: crate::config::Env<'a>,
    /// build-and-deploy --no-push: build the image, push it nowhere.
    pub no_push: bool,
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
    if let Some(tag) = &build.tag {
        crate::version::release_version(tag)?;
    }
    let registry_auth = credentials::registry_auth(config, settings.env, secrets)?;
    let qa = &config.repositories.qa;
    let qa_auth = credentials::repo_auth(config, qa, settings.env, secrets)?;
    let images = Arc::new(DockerEngine::connect(secrets.clone()).await?);
    let process = crate::process::Runner::new(secrets.clone(), settings.verbose);
    let facts = crate::stages::SharedFacts::default();
    let tag = build.image_tag().to_string();
    let command = |name, command: &crate::config::Command| RunCommand {
        name,
        command: command.clone(),
        cwd: config.root.clone(),
        env: vec![],
        process: process.clone(),
    };
    Ok(Plan::new()
        .then(command("build", &config.commands.build))
        .then(command("unit-tests", &config.commands.unit_tests))
        .then(BuildImage {
            images: Arc::clone(&images),
            context: config.resolve(&config.image.context),
            dockerfile: config.resolve(&config.image.dockerfile),
            repository: config.image.repository.clone(),
            tag: tag.clone(),
            facts: Arc::clone(&facts),
        })
        .then(PushImage {
            images,
            repository: config.image.repository.clone(),
            tag,
            auth: registry_auth,
            dry_run: settings.dry_run,
            no_push: settings.no_push,
            facts: Arc::clone(&facts),
        })
        .then(PromoteToQa {
            git: Git2::new(secrets.clone()),
            remote: Remote { url: qa.url.clone(), branch: qa.branch.clone(), auth: qa_auth },
            chart_path: config.chart.path.clone(),
            keys: image_keys(config),
            repository: config.image.repository.clone(),
            build: build.clone(),
            run_id: settings.run_id.clone(),
            author: Author::default(),
            dry_run: settings.dry_run,
            pushes: !settings.no_push,
            facts,
        }))
}

/// How a release packages the chart; QA packages it the same way, so what it installs is
/// what a release publishes.
fn package_options(config: &Config) -> crate::chart::package::Options {
    crate::chart::package::Options { rename: Some(config.chart.release_name.clone()), drop: config.chart.drop.clone() }
}

fn image_keys(config: &Config) -> crate::stages::ImageKeys {
    crate::stages::ImageKeys {
        repository: config.chart.image_repository_key.clone(),
        tag: config.chart.image_tag_key.clone(),
        digest: config.chart.image_digest_key.clone(),
    }
}

/// What a QA run reads from the QA checkout's chart before anything runs.
pub struct QaChart {
    pub dir: std::path::PathBuf,
    /// The DEV commit the chart was built from.
    pub app_version: String,
    /// The image as values.yaml names it.
    pub image: crate::stages::qa::QaImage,
    /// Whether values.yaml has the digest key (an install by tag clears it).
    pub has_digest_key: bool,
}

pub fn read_qa_chart(config: &Config) -> Result<QaChart, SetupError> {
    let dir = config.resolve(&config.chart.path);
    let bad = |message: String| SetupError::Chart(message);
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
    let image = crate::stages::qa::QaImage {
        repository: required(&keys.image_repository_key)?,
        tag: required(&keys.image_tag_key)?,
        digest,
    };
    Ok(QaChart { app_version, image, has_digest_key, dir })
}

fn tool(
    name: &'static str,
    configured: Option<&std::path::Path>,
    env: crate::config::Env<'_>,
    install: &'static str,
) -> Result<std::path::PathBuf, SetupError> {
    let path = env("PATH").map(std::ffi::OsString::from);
    Ok(crate::tools::cli_tool::find(name, configured, path.as_deref(), install)?)
}

/// integration-test: the chart checked, then cluster ∥ DEV checkout ∥ image, image load, helm
/// install of the checked package, tests, release; diagnostics, node image cache and teardown
/// as cleanup. Everything the run writes lives in a private directory removed when it ends.
pub async fn integration_test(
    config: &Config,
    settings: &RunSettings<'_>,
    keep_cluster: bool,
    secrets: &mut Secrets,
) -> Result<Plan, SetupError> {
    use crate::config::Cluster as Provider;
    use crate::stages::qa::*;
    use crate::tools::helm::Helm;
    use crate::tools::kind::{self, Kind};
    use crate::tools::kubectl::{self, Kubectl};

    let chart = read_qa_chart(config)?;
    let process = crate::process::Runner::new(secrets.clone(), settings.verbose);
    let kind_bin = match &config.cluster {
        Provider::Kind { .. } => Some(tool("kind", config.tools.kind.as_deref(), settings.env, kind::INSTALL)?),
        Provider::Existing { .. } => None,
    };
    let helm = Helm {
        bin: tool("helm", config.tools.helm.as_deref(), settings.env, crate::tools::helm::INSTALL)?,
        runner: process.clone(),
    };
    let kubectl = Kubectl {
        bin: tool("kubectl", config.tools.kubectl.as_deref(), settings.env, kubectl::INSTALL)?,
        runner: process.clone(),
    };
    let registry_auth = credentials::registry_auth(config, settings.env, secrets)?;
    let dev = &config.repositories.dev;
    let dev_auth = credentials::repo_auth(config, dev, settings.env, secrets)?;
    let release = &config.repositories.release;
    let release_auth = credentials::repo_auth(config, release, settings.env, secrets)?;
    // Private (0700) and outside the QA checkout: its root is often the chart itself, and
    // whatever lay inside would be installed and packaged with it.
    let work = Arc::new(
        tempfile::Builder::new()
            .prefix("stagecoach-qa-")
            .tempdir()
            .map_err(|e| SetupError::Chart(format!("creating a temporary directory: {e}")))?,
    );
    let artifacts = (settings.env)("STAGECOACH_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("stagecoach-artifacts"))
        .join(&settings.run_id);

    // A kind cluster runs the image loaded into it, by tag: kind's load drops the registry's
    // manifest digest, so a digest reference would make the kubelet pull. An existing cluster
    // pulls the image itself, pinned by digest.
    let (cluster, docker): (Arc<dyn Cluster>, _) = match &config.cluster {
        Provider::Kind { name, node_image, cache_dir, config: kind_config } => {
            let docker = Arc::new(DockerEngine::connect(secrets.clone()).await?);
            let cluster = KindCluster {
                kind: Kind { bin: kind_bin.clone().unwrap_or_default(), runner: process.clone() },
                kubectl: kubectl.clone(),
                docker: Arc::clone(&docker),
                name: name.clone(),
                node_image: node_image.clone(),
                cache_dir: cache_dir.clone(),
                config: kind_config.as_ref().map(|c| config.resolve(c)),
                kubeconfig: work.path().join("kubeconfig"),
                created: Default::default(),
            };
            (Arc::new(cluster), Some(docker))
        }
        Provider::Existing { kubeconfig, context } => {
            let sources = kubeconfig
                .as_ref()
                .map(|p| p.as_os_str().to_owned())
                .or_else(|| (settings.env)("KUBECONFIG").map(Into::into))
                .or_else(|| (settings.env)("HOME").map(|h| std::path::Path::new(&h).join(".kube/config").into()))
                .unwrap_or_else(|| "kubeconfig".into());
            let cluster = ExistingCluster {
                kubectl: kubectl.clone(),
                sources,
                context: context.clone(),
                kubeconfig: work.path().join("kubeconfig"),
            };
            (Arc::new(cluster), None)
        }
    };
    let keys = image_keys(config);
    let (prepared, sets) = match docker {
        Some(_) if chart.has_digest_key => (chart.image.tagged(), vec![(keys.digest.clone(), String::new())]),
        Some(_) => (chart.image.tagged(), vec![]),
        None => (chart.image.pinned(), vec![]),
    };
    let facts = crate::stages::SharedFacts::default();
    let install = crate::tools::helm::Install {
        release: config.chart.name.clone(),
        chart: work.path().join("chart.tgz"),
        sets,
        timeout: std::time::Duration::from_secs(300),
    };
    let dev_dir = work.path().join("dev");
    let mut prepare: Vec<Box<dyn crate::runner::Stage>> = vec![
        Box::new(ClusterUp(Arc::clone(&cluster))),
        Box::new(DevCheckout {
            git: Git2::new(secrets.clone()),
            remote: Remote { url: dev.url.clone(), branch: dev.branch.clone(), auth: dev_auth },
            commit: chart.app_version.clone(),
            dir: dev_dir.clone(),
            work: Arc::clone(&work),
        }),
    ];
    if let Some(docker) = docker {
        prepare.push(Box::new(ImagePrepare {
            docker,
            image: chart.image.clone(),
            auth: registry_auth,
            facts: Arc::clone(&facts),
        }));
    }
    let plan = Plan::new()
        .then(ChartCheck {
            helm: helm.clone(),
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
        .then(HelmInstall { helm: helm.clone(), install, cluster: Arc::clone(&cluster), facts: Arc::clone(&facts) })
        .then(IntegrationTests {
            command: config.commands.integration_tests.clone(),
            dir: dev_dir,
            cluster: Arc::clone(&cluster),
            process: process.clone(),
        })
        .then(release_stage(config, settings, release_auth, crate::stages::Expectation::SameRun(facts), secrets))
        .cleanup(Diagnostics {
            dir: artifacts,
            helm,
            kubectl,
            release: config.chart.name.clone(),
            custom_resources: custom_resources(&chart.dir),
            cluster: Arc::clone(&cluster),
        })
        .cleanup(CacheSave(Arc::clone(&cluster)))
        .cleanup(Teardown { cluster, keep: keep_cluster })
        .keep_until_done(work);
    Ok(plan)
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
    settings: &RunSettings<'_>,
    expect: crate::stages::Expectation,
    secrets: &mut Secrets,
) -> Result<Plan, SetupError> {
    let auth = credentials::repo_auth(config, &config.repositories.release, settings.env, secrets)?;
    Ok(Plan::new().then(release_stage(config, settings, auth, expect, secrets)))
}

/// The release of the QA checkout's chart into the RELEASE repository.
fn release_stage(
    config: &Config,
    settings: &RunSettings<'_>,
    auth: crate::tools::git::Auth,
    expect: crate::stages::Expectation,
    secrets: &Secrets,
) -> crate::stages::release::Release {
    let release = &config.repositories.release;
    crate::stages::release::Release {
        git: Git2::new(secrets.clone()),
        remote: Remote { url: release.url.clone(), branch: release.branch.clone(), auth },
        chart_dir: config.resolve(&config.chart.path),
        package: package_options(config),
        base_url: config.chart.base_url.clone(),
        author: Author::default(),
        dry_run: settings.dry_run,
        run_id: settings.run_id.clone(),
        process: crate::process::Runner::new(secrets.clone(), settings.verbose),
        expect,
        serve_timeout: serve_timeout(settings.env),
    }
}

/// STAGECOACH_SERVE_TIMEOUT (seconds, default 300): how long a published index may take to be
/// served at chart.base_url.
fn serve_timeout(env: crate::config::Env<'_>) -> std::time::Duration {
    std::time::Duration::from_secs(env("STAGECOACH_SERVE_TIMEOUT").and_then(|v| v.parse().ok()).unwrap_or(300))
}
