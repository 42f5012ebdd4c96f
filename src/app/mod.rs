//! Carries out a [`Request`]: loads the pipeline file, works out what is being built and runs
//! the command. Errors are typed so that `main` can map them to exit codes.

use std::path::{Path, PathBuf};

mod chart;
mod demo;
mod init;
mod promote;

use crate::ci::{self, BuildInfo, CiError};
use crate::cli::{Action, Global, Request};
use crate::config::{self, Config, ConfigError, Env};
use crate::pipeline::{self, Flow};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot tell what is being built: {0}")]
    Ci(#[from] CiError),
    #[error("stage `{stage}` failed: {error}")]
    StageFailed { stage: String, error: String },
    #[error("interrupted; cleanup ran")]
    Interrupted,
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Credentials(String),
    /// A command failed on its input (a chart, an index): the message says what to fix.
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    /// The documented exit codes: 1 a stage failed, 2 usage or configuration, 130 interrupted.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::StageFailed { .. } | Self::Failed(_) => 1,
            Self::Interrupted => 130,
            Self::Config(_) | Self::Ci(_) | Self::Io { .. } | Self::Credentials(_) => 2,
        }
    }
}

/// Everything the process gives us from outside: environment and working directory.
pub struct Outside<'a> {
    pub env: Env<'a>,
    pub cwd: PathBuf,
}

/// Runs the request; what the command produces goes to `stdout`.
pub fn run(request: Request, outside: &Outside<'_>, stdout: &mut dyn std::io::Write) -> Result<(), AppError> {
    let Request { global, action } = request;
    let write = |out: &mut dyn std::io::Write, text: &str| {
        out.write_all(text.as_bytes()).map_err(|source| AppError::Io { what: "writing the output".into(), source })
    };
    match action {
        Action::Version => write(
            stdout,
            &format!("stagecoach {} (pipeline format {})\n", env!("CARGO_PKG_VERSION"), config::FORMAT_VERSION),
        ),
        Action::Plan { flow } => {
            let (config, build) = load(&global, outside)?;
            let flows = flow.map_or(Flow::ALL.to_vec(), |f| vec![f]);
            let flags = crate::cli::RunFlags::default();
            let text = flows
                .iter()
                .map(|f| describe(*f, &global, outside, &config, &build, &flags))
                .collect::<Result<Vec<String>, AppError>>()?;
            write(stdout, &text.join("\n"))
        }
        Action::Run { flow, flags } => {
            let (config, build) = load(&global, outside)?;
            if global.dry_run && flow == Flow::IntegrationTest {
                // A dry run of QA brings nothing up: it shows what would run.
                let text = describe(flow, &global, outside, &config, &build, &flags)?;
                return write(stdout, &format!("{text}dry run: nothing was run\n"));
            }
            execute(flow, &global, outside, &config, &build, &flags)
        }
        Action::Promote { repo, branch, file, set, create, message, credentials, author, attempts } => {
            let request = promote::Request { repo, branch, file, set, create, message, credentials, author, attempts };
            promote::run(request, &global, outside, stdout)
        }
        Action::ChartSet { file, assignments, create } => {
            chart::set(&file, &assignments, create, global.dry_run, stdout)
        }
        Action::ChartPackage { dir, rename, out, drop } => {
            chart::package(&dir, rename, &out, drop, global.dry_run, stdout)
        }
        Action::ChartIndex { repo, url } => chart::index(&repo, url.as_deref(), global.dry_run, stdout),
        Action::Demo { workdir } => demo::run(&workdir, &global, outside, stdout),
        Action::Init { kind, dir, from } => init::run(kind, &dir, from.as_deref(), &global, outside, stdout),
    }
}

fn load(global: &Global, outside: &Outside<'_>) -> Result<(Config, BuildInfo), AppError> {
    let path = config::discover(global.config.as_deref(), outside.env, &outside.cwd)?;
    tracing::debug!(path = %path.display(), "pipeline file");
    let config = config::load(&path, outside.env)?;
    let build = ci::detect(outside.env, source_dir(&config, &outside.cwd))?;
    tracing::debug!(?build, "what is being built");
    Ok((config, build))
}

/// The checkout whose HEAD is being built: the repository the pipeline file lives in.
fn source_dir<'a>(config: &'a Config, cwd: &'a Path) -> &'a Path {
    if config.root.is_dir() { &config.root } else { cwd }
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| AppError::Io { what: "starting the async runtime".into(), source })
}

/// The stages a flow would run, as they describe themselves; nothing is connected or written.
fn describe(
    flow: Flow,
    global: &Global,
    outside: &Outside<'_>,
    config: &Config,
    build: &BuildInfo,
    flags: &crate::cli::RunFlags,
) -> Result<String, AppError> {
    let settings = pipeline::RunSettings {
        dry_run: global.dry_run,
        verbose: global.verbose > 0,
        run_id: "<run id>".into(),
        env: outside.env,
        no_push: flags.no_push,
        describe_only: true,
    };
    let mut secrets = crate::credentials::known_secrets(config, outside.env);
    let plan = runtime()?.block_on(plan_of(flow, config, build, &settings, flags, &mut secrets))?;
    Ok(pipeline::render(flow, &plan, build))
}

/// The plan of a flow: the same for a run and for a description of it.
async fn plan_of(
    flow: Flow,
    config: &Config,
    build: &BuildInfo,
    settings: &pipeline::RunSettings<'_>,
    flags: &crate::cli::RunFlags,
    secrets: &mut crate::secrets::Secrets,
) -> Result<crate::runner::Plan, AppError> {
    let plan = match flow {
        Flow::BuildAndDeploy => pipeline::build_and_deploy(config, build, settings, secrets).await,
        Flow::IntegrationTest => pipeline::integration_test(config, settings, flags.keep_cluster, secrets).await,
        Flow::Release => {
            let expect = match (settings.describe_only, flags.tested.is_none() && !flags.untested) {
                // `plan release`: what a release with --tested checks, named.
                (true, true) => crate::stages::Expectation::Record(crate::stages::Tested {
                    app_version: "<from the --tested run record>".into(),
                    digest: "<from the --tested run record>".into(),
                }),
                _ => tested_record(flags)?,
            };
            pipeline::release(config, settings, expect, secrets)
        }
    };
    plan.map_err(|e| match e {
        pipeline::SetupError::Docker(e) => AppError::Failed(secrets.mask(&e.to_string()).into_owned()),
        other => AppError::Credentials(secrets.mask(&other.to_string()).into_owned()),
    })
}

/// Runs a flow's stages: progress on stderr, the summary table, the run record.
fn execute(
    flow: Flow,
    global: &Global,
    outside: &Outside<'_>,
    config: &Config,
    build: &BuildInfo,
    flags: &crate::cli::RunFlags,
) -> Result<(), AppError> {
    use std::io::IsTerminal;

    runtime()?.block_on(async {
        let started = std::time::SystemTime::now();
        let started_unix_ms = started.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let run_id = format!("{started_unix_ms:x}-{:x}", std::process::id());
        let mut secrets = crate::credentials::known_secrets(config, outside.env);
        let settings = pipeline::RunSettings {
            dry_run: global.dry_run,
            verbose: global.verbose > 0,
            run_id: run_id.clone(),
            env: outside.env,
            no_push: flags.no_push,
            describe_only: false,
        };
        let plan = plan_of(flow, config, build, &settings, flags, &mut secrets).await?;

        let display = crate::report::Display::choose(
            outside.env,
            std::io::stderr().is_terminal(),
            global.no_progress,
            global.quiet,
        );
        let progress: std::sync::Arc<dyn crate::report::Progress> = display.progress().into();
        let runner = crate::runner::Runner { progress, secrets: secrets.clone() };
        let mut interrupts = crate::runner::Interrupts::from_signals()
            .map_err(|source| AppError::Io { what: "listening for Ctrl-C".into(), source })?;
        let record = runner.run(plan, &mut interrupts).await;

        if !global.quiet {
            eprint!("\n{}", crate::report::summary_table(&record));
        }
        if let Some(path) = &global.report {
            let report = crate::report::RunReport {
                stagecoach_version: env!("CARGO_PKG_VERSION"),
                run_id: &run_id,
                command: flow.command(),
                dry_run: global.dry_run,
                started_unix_ms,
                build: Some(build),
                run: &record,
            };
            crate::report::write_report(path, &report)
                .map_err(|source| AppError::Io { what: format!("writing {}", path.display()), source })?;
        }
        match record.outcome {
            crate::runner::RunOutcome::Passed => Ok(()),
            crate::runner::RunOutcome::Failed { stage, error } => {
                let bundle = record.cleanup.iter().find_map(|s| s.details.get("bundle"));
                let error = match bundle {
                    Some(dir) => format!("{error}\ndiagnostics: {dir}"),
                    None => error,
                };
                Err(AppError::StageFailed { stage, error })
            }
            crate::runner::RunOutcome::Interrupted => Err(AppError::Interrupted),
        }
    })
}

/// What the release must match: the chart tested by the integration-test run of `--tested`.
fn tested_record(flags: &crate::cli::RunFlags) -> Result<crate::stages::Expectation, AppError> {
    use crate::stages::{Expectation, Tested};
    let Some(path) = &flags.tested else { return Ok(Expectation::Untested) };
    let text = std::fs::read_to_string(path)
        .map_err(|source| AppError::Io { what: format!("reading {}", path.display()), source })?;
    let record: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| AppError::Credentials(format!("{}: not a run record: {e}", path.display())))?;
    let stage = record["stages"].as_array().and_then(|stages| stages.iter().find(|s| s["name"] == "helm-install"));
    let field = |key: &str| stage.and_then(|s| s["details"][key].as_str()).map(str::to_string);
    match (record["outcome"].as_str(), field("tested_app_version"), field("tested_chart_digest")) {
        (Some("passed"), Some(app_version), Some(digest)) => Ok(Expectation::Record(Tested { app_version, digest })),
        _ => Err(AppError::Credentials(format!(
            "{}: not the record of a passed integration-test run (no tested chart in it)",
            path.display()
        ))),
    }
}

/// Replaces `path` with `bytes` through a temporary file beside it, so that readers see the old
/// or the new file and never half of one; the file keeps its permissions.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.stagecoach-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A unified diff of two texts, or an empty string when they are equal.
pub(crate) fn diff(old: &str, new: &str, name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}
