//! Carries out a [`Request`]: loads the pipeline file, works out what is being built and runs
//! the command. Errors are typed so that `main` can map them to exit codes.

use std::path::{Path, PathBuf};

mod chart;
mod demo;
mod flow;
mod init;
mod promote;

use flow::FlowCommand;

pub use crate::branch_update::DEFAULT_MESSAGE;
pub use crate::pipeline::Flow;

use crate::ci::{self, BuildInfo, CiError};
use crate::config::{self, Config, ConfigError, Env};

/// What the user asked for: the command line, parsed and free of clap.
pub struct Request {
    pub global: Global,
    pub action: Action,
}

/// Options every command shares.
#[derive(Clone, Debug, Default)]
pub struct Global {
    pub config: Option<PathBuf>,
    pub dry_run: bool,
    pub verbose: u8,
    pub quiet: bool,
    pub report: Option<PathBuf>,
    /// Where the JUnit XML report of a flow goes.
    pub junit: Option<PathBuf>,
    /// `--network-timeout`, as given.
    pub network_timeout: Option<String>,
    pub no_progress: bool,
}

#[derive(Clone, Debug)]
pub enum Action {
    Run { flow: Flow, flags: RunFlags },
    Plan { flow: Option<Flow> },
    Version,
    Promote(Promote),
    ChartSet { file: PathBuf, assignments: Vec<(String, String)>, create: bool },
    ChartPackage { dir: PathBuf, rename: Option<String>, out: PathBuf, drop: Vec<String>, sign: bool },
    ChartPush { package: PathBuf, repository: String, plain_http: bool },
    ChartIndex { repo: PathBuf, url: Option<String> },
    Init { kind: InitKind, dir: PathBuf, from: Option<PathBuf> },
    Demo { workdir: PathBuf },
}

/// Options of the flow commands.
#[derive(Clone, Debug, Default)]
pub struct RunFlags {
    pub keep_cluster: bool,
    pub no_push: bool,
    /// build-and-deploy --promote: also for a pull request or another branch.
    pub promote: bool,
    pub tested: Option<PathBuf>,
    pub untested: bool,
}

/// `stagecoach promote`: values to set in a file of a repository.
#[derive(Clone, Debug)]
pub struct Promote {
    pub repo: String,
    pub branch: Option<String>,
    pub file: PathBuf,
    pub set: Vec<(String, String)>,
    pub create: bool,
    pub message: String,
    pub credentials: Option<String>,
    pub author: String,
    pub attempts: u32,
}

/// What `stagecoach init` creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitKind {
    Qa,
    Release,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot tell what is being built: {0}")]
    Ci(#[from] CiError),
    #[error("stage `{stage}` failed: {error}")]
    StageFailed { stage: String, error: String },
    #[error("interrupted by {signal}; cleanup ran")]
    Interrupted { signal: &'static str, code: u8 },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A credential named in the pipeline file cannot be read.
    #[error("{0}")]
    Credentials(String),
    /// A flag, a file or a repository that cannot be used as given: the message says which and
    /// what to do.
    #[error("{0}")]
    Usage(String),
    /// A command failed on its input (a chart, an index): the message says what to fix.
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    /// The documented exit codes: 1 a stage failed, 2 usage or configuration, 130 interrupted
    /// by SIGINT (Ctrl-C), 143 by SIGTERM.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::StageFailed { .. } | Self::Failed(_) => 1,
            Self::Interrupted { code, .. } => *code,
            Self::Config(_) | Self::Ci(_) | Self::Io { .. } | Self::Credentials(_) | Self::Usage(_) => 2,
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
    match action {
        Action::Version => write(
            stdout,
            &format!("stagecoach {} (pipeline format {})\n", env!("CARGO_PKG_VERSION"), config::FORMAT_VERSION),
        ),
        Action::Plan { flow } => {
            let (config, build) = load(&global, outside)?;
            let flows = flow.map_or(Flow::ALL.to_vec(), |f| vec![f]);
            let flags = RunFlags::default();
            let text = flows
                .iter()
                .map(|&flow| {
                    let (global, config, build, flags) = (&global, &config, &build, &flags);
                    flow::describe(FlowCommand { flow, global, outside, config, build, flags })
                })
                .collect::<Result<Vec<String>, AppError>>()?;
            write(stdout, &text.join("\n"))
        }
        Action::Run { flow, flags } => {
            let (config, build) = load(&global, outside)?;
            let command = FlowCommand { flow, global: &global, outside, config: &config, build: &build, flags: &flags };
            if global.dry_run && flow == Flow::IntegrationTest {
                // A dry run of QA brings nothing up: it shows what would run.
                let text = flow::describe(command)?;
                return write(stdout, &format!("{text}dry run: nothing was run\n"));
            }
            flow::execute(command)
        }
        Action::Promote(request) => promote::run(request, &global, outside, stdout),
        Action::ChartSet { file, assignments, create } => {
            chart::set(&file, &assignments, create, global.dry_run, stdout)
        }
        Action::ChartPackage { dir, rename, out, drop, sign } => {
            let key = if sign { Some(signing_key(outside)?) } else { None };
            chart::package(&dir, rename, &out, drop, key.as_ref(), global.dry_run, stdout)
        }
        Action::ChartIndex { repo, url } => chart::index(&repo, url.as_deref(), global.dry_run, stdout),
        Action::ChartPush { package, repository, plain_http } => {
            let config = load_config(&global, outside, false)?;
            let timeout = network_timeout(&global, outside, config.as_ref())?;
            let push = chart::Push { package: &package, repository: &repository, plain_http, timeout };
            chart::push(&push, config.as_ref(), outside.env, global.dry_run, stdout)
        }
        Action::Demo { workdir } => demo::run(&workdir, &global, outside, stdout),
        Action::Init { kind, dir, from } => init::run(kind, &dir, from.as_deref(), &global, outside, stdout),
    }
}

/// The pipeline file, when there is one (or when `required`, an error without).
pub(super) fn load_config(global: &Global, outside: &Outside<'_>, required: bool) -> Result<Option<Config>, AppError> {
    match config::discover(global.config.as_deref(), outside.env, &outside.cwd) {
        Ok(path) => Ok(Some(config::load(&path, outside.env)?)),
        Err(ConfigError::NotFound { .. }) if !required => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The key `--sign` signs with; without one, an error that says how to give it.
fn signing_key(outside: &Outside<'_>) -> Result<crate::chart::provenance::SigningKey, AppError> {
    crate::credentials::signing_key(outside.env, &mut crate::secrets::Secrets::new())
        .map_err(|e| AppError::Credentials(e.0))?
        .ok_or_else(|| {
            AppError::Credentials(
                "--sign needs STAGECOACH_SIGNING_KEY: an ASCII-armored OpenPGP private key \
                 (gpg --armor --export-secret-keys KEY-ID); its passphrase, if any, in STAGECOACH_SIGNING_PASSPHRASE"
                    .into(),
            )
        })
}

fn write(out: &mut dyn std::io::Write, text: &str) -> Result<(), AppError> {
    out.write_all(text.as_bytes()).map_err(|source| AppError::Io { what: "writing the output".into(), source })
}

fn load(global: &Global, outside: &Outside<'_>) -> Result<(Config, BuildInfo), AppError> {
    let path = config::discover(global.config.as_deref(), outside.env, &outside.cwd)?;
    tracing::debug!(path = %path.display(), "pipeline file");
    let mut config = config::load(&path, outside.env)?;
    config.network_timeout = Some(network_timeout(global, outside, Some(&config))?);
    let build = ci::detect(outside.env, source_dir(&config, &outside.cwd))?;
    tracing::debug!(?build, "what is being built");
    Ok((config, build))
}

/// The checkout whose HEAD is being built: the repository the pipeline file lives in.
fn source_dir<'a>(config: &'a Config, cwd: &'a Path) -> &'a Path {
    if config.root.is_dir() { &config.root } else { cwd }
}

/// How long a network operation may go without progress: `--network-timeout`, else
/// `STAGECOACH_NETWORK_TIMEOUT`, else the pipeline file's `network.timeout`, else 60s. Applied to
/// libgit2 here, before any thread starts.
pub(super) fn network_timeout(
    global: &Global,
    outside: &Outside<'_>,
    config: Option<&Config>,
) -> Result<std::time::Duration, AppError> {
    let given = match (&global.network_timeout, (outside.env)("STAGECOACH_NETWORK_TIMEOUT")) {
        (Some(flag), _) => Some(("--network-timeout", flag.clone())),
        (None, Some(env)) => Some(("STAGECOACH_NETWORK_TIMEOUT", env)),
        (None, None) => None,
    };
    let timeout = match given {
        Some((source, text)) => match config::parse_duration(&text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => return Err(AppError::Usage(format!("{source} {text}: must be longer than 0s"))),
            Err(message) => return Err(AppError::Usage(format!("{source} {text}: {message}"))),
        },
        None => config.and_then(|c| c.network_timeout).unwrap_or(config::DEFAULT_NETWORK_TIMEOUT),
    };
    if !crate::tools::libgit2::set_network_timeout(timeout) {
        tracing::debug!("libgit2's network timeout was not set: other threads run already");
    }
    Ok(timeout)
}

/// Files a command writes when it ends (`--report`, `--junit`, the step summary), checked before
/// it starts: each must be a file (or not yet exist) in a directory that exists and takes a new
/// file. A file is made there and removed again to know.
fn check_outputs(outputs: &[(&str, Option<&Path>)]) -> Result<(), AppError> {
    for (flag, path) in outputs {
        let Some(path) = path else { continue };
        let refuse = |why: String| Err(AppError::Usage(format!("{flag} {}: {why}; nothing was run", path.display())));
        if path.is_dir() {
            return refuse("a directory, not a file".into());
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return refuse(format!("directory {} does not exist", dir.display()));
        }
        if let Err(error) = tempfile::Builder::new().prefix(".stagecoach-check-").tempfile_in(dir) {
            return refuse(format!("cannot write in {}: {error}", dir.display()));
        }
    }
    Ok(())
}

/// Runs blocking `work` until it is done or SIGINT or SIGTERM comes, which ends the command
/// (its temporary directories are removed on the way out, whatever `work` still holds).
fn until_interrupted<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = flow::runtime()?;
    let listening = |source| AppError::Io { what: "listening for Ctrl-C".into(), source };
    let result = runtime.block_on(async {
        let (mut int, mut term) =
            (signal(SignalKind::interrupt()).map_err(listening)?, signal(SignalKind::terminate()).map_err(listening)?);
        let task = tokio::task::spawn_blocking(work);
        tokio::select! {
            done = task => done.map_err(|e| AppError::Failed(format!("the work stopped: {e}"))),
            _ = int.recv() => Err(AppError::Interrupted { signal: "SIGINT", code: 130 }),
            _ = term.recv() => Err(AppError::Interrupted { signal: "SIGTERM", code: 143 }),
        }
    });
    // The blocking work is not waited for: it ends with the process.
    runtime.shutdown_background();
    result
}
