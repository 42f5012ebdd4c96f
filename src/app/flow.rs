//! The flow commands (build-and-deploy, integration-test, release) and `plan`: a flow's plan,
//! run with progress, summary and run record, or described without running.

use super::{AppError, Global, Outside, RunFlags};
use crate::ci::BuildInfo;
use crate::config::Config;
use crate::pipeline::{self, Flow};
use crate::record::{Detail, RunOutcome, StageName};
use crate::runner::Plan;
use crate::secrets::Secrets;
use crate::stages::{Expectation, TestRun, Tested};

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| AppError::Io { what: "starting the async runtime".into(), source })
}

fn settings<'a>(
    global: &Global,
    outside: &Outside<'a>,
    config: &Config,
    flags: &RunFlags,
    run_id: String,
    describe_only: bool,
) -> pipeline::RunSettings<'a> {
    pipeline::RunSettings {
        dry_run: global.dry_run,
        verbose: global.verbose > 0,
        run_id,
        env: outside.env,
        no_push: flags.no_push,
        promote: flags.promote,
        network_timeout: config.network_timeout.unwrap_or(crate::config::DEFAULT_NETWORK_TIMEOUT),
        describe_only,
    }
}

/// One flow command as asked for, with the pipeline file and what is being built.
pub(super) struct FlowCommand<'a> {
    pub flow: Flow,
    pub global: &'a Global,
    pub outside: &'a Outside<'a>,
    pub config: &'a Config,
    pub build: &'a BuildInfo,
    pub flags: &'a RunFlags,
}

/// The stages a flow would run, as they describe themselves; nothing is connected or written.
pub(super) fn describe(command: FlowCommand<'_>) -> Result<String, AppError> {
    let FlowCommand { flow, global, outside, config, build, flags } = command;
    let settings = settings(global, outside, config, flags, "<run id>".into(), true);
    let mut secrets = crate::credentials::known_secrets(config, outside.env);
    let plan = runtime()?.block_on(plan_of(flow, config, build, &settings, flags, &mut secrets))?;
    Ok(crate::report::plan_text(flow.command(), &plan, build))
}

/// The plan of a flow: the same for a run and for a description of it.
async fn plan_of(
    flow: Flow,
    config: &Config,
    build: &BuildInfo,
    settings: &pipeline::RunSettings<'_>,
    flags: &RunFlags,
    secrets: &mut Secrets,
) -> Result<Plan, AppError> {
    let plan = match flow {
        Flow::BuildAndDeploy => pipeline::build_and_deploy(config, build, settings, secrets).await,
        Flow::IntegrationTest => pipeline::integration_test(config, build, settings, flags.keep_cluster, secrets).await,
        Flow::Release => {
            let (expect, tested_by) = match (settings.describe_only, flags.tested.is_none() && !flags.untested) {
                // `plan release`: what a release with --tested checks, named.
                (true, true) => {
                    let named = "<from the --tested run record>";
                    let tested = Tested { app_version: named.into(), digest: named.into() };
                    let run = TestRun { run_id: named.into(), qa_commit: named.into(), outcome: named.into() };
                    (Expectation::Record(tested), Some(run))
                }
                _ => tested_record(flags)?,
            };
            pipeline::release(config, build, settings, expect, tested_by, secrets)
        }
    };
    plan.map_err(|e| {
        let message = secrets.mask(&e.to_string()).into_owned();
        match e {
            pipeline::SetupError::Docker(_) => AppError::Failed(message),
            pipeline::SetupError::Credentials(_) => AppError::Credentials(message),
            _ => AppError::Usage(message),
        }
    })
}

/// Runs a flow's stages: progress on stderr, the summary table, the run record.
pub(super) fn execute(command: FlowCommand<'_>) -> Result<(), AppError> {
    let FlowCommand { flow, global, outside, config, build, flags } = command;
    // A report that cannot be written is known before anything is pushed. GitHub Actions shows
    // the step summary on the run's page.
    let summary = (outside.env)("GITHUB_ACTIONS")
        .filter(|v| v == "true")
        .and_then(|_| (outside.env)("GITHUB_STEP_SUMMARY"))
        .map(std::path::PathBuf::from);
    super::check_outputs(&[
        ("--report", global.report.as_deref()),
        ("--junit", global.junit.as_deref()),
        ("GITHUB_STEP_SUMMARY", summary.as_deref()),
    ])?;
    use std::io::IsTerminal;

    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let started = std::time::SystemTime::now();
        let started_unix_ms = started.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let run_id = format!("{started_unix_ms:x}-{:x}", std::process::id());
        let mut secrets = crate::credentials::known_secrets(config, outside.env);
        let settings = settings(global, outside, config, flags, run_id.clone(), false);
        let plan = plan_of(flow, config, build, &settings, flags, &mut secrets).await?;

        let display = crate::report::Display::choose(
            outside.env,
            std::io::stderr().is_terminal(),
            global.no_progress,
            global.quiet,
        );
        let progress: std::sync::Arc<dyn crate::runner::Progress> = display.progress().into();
        let runner = crate::runner::Runner { progress, secrets: secrets.clone() };
        let mut interrupts = crate::runner::Interrupts::from_signals()
            .map_err(|source| AppError::Io { what: "listening for Ctrl-C".into(), source })?;
        let record = runner.run(plan, &mut interrupts).await;

        if !global.quiet {
            eprint!("\n{}", crate::report::summary_table(&record));
        }
        let report = crate::report::RunReport {
            stagecoach_version: env!("CARGO_PKG_VERSION"),
            run_id: &run_id,
            command: flow.command(),
            dry_run: global.dry_run,
            started_unix_ms,
            build: Some(build),
            run: &record,
        };
        let io = |path: &std::path::Path| {
            let what = format!("writing {}", path.display());
            move |source| AppError::Io { what, source }
        };
        if let Some(path) = &global.report {
            crate::report::write_report(path, &report).map_err(io(path))?;
        }
        if let Some(path) = &global.junit {
            crate::files::write_atomically(path, crate::report::junit(&report).as_bytes()).map_err(io(path))?;
        }
        if let Some(path) = &summary {
            use std::io::Write as _;
            let markdown = crate::report::markdown_summary(flow.command(), &record);
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .and_then(|mut file| file.write_all(markdown.as_bytes()))
                .map_err(io(path))?;
        }
        match record.outcome {
            RunOutcome::Passed => Ok(()),
            RunOutcome::Failed { stage, error } if record.all_stages().any(|(s, _)| s.name == stage && s.refused) => {
                Err(AppError::Usage(format!("stage `{stage}` refused: {error}; nothing was written")))
            }
            RunOutcome::Failed { stage, error } => {
                let bundle = record.cleanup.iter().find_map(|s| s.details.get(&Detail::Bundle));
                let error = match bundle {
                    Some(dir) => format!("{error}\ndiagnostics: {dir}"),
                    None => error,
                };
                Err(AppError::StageFailed { stage: stage.to_string(), error })
            }
            RunOutcome::Interrupted => {
                let interrupt = interrupts.first().unwrap_or(crate::runner::Interrupt::Interrupt);
                let signal = match interrupt {
                    crate::runner::Interrupt::Interrupt => "SIGINT",
                    crate::runner::Interrupt::Terminate => "SIGTERM",
                };
                Err(AppError::Interrupted { signal, code: interrupt.exit_code() })
            }
        }
    });
    match result {
        // A blocking task a signal left running (a clone from a silent server) is not waited
        // for: it ends with the process, and its temporary directory is removed on the way out.
        Err(AppError::Interrupted { .. }) => runtime.shutdown_background(),
        // Otherwise a task a failed stage left running (a parallel clone) still writes into the
        // temporary directory: it is waited for (bounded by the network timeout), so removing
        // the directory on the way out does not race with it.
        _ => drop(runtime),
    }
    result
}

/// What the release must match: the chart tested by the integration-test run of `--tested`,
/// and that run.
fn tested_record(flags: &RunFlags) -> Result<(Expectation, Option<TestRun>), AppError> {
    let Some(path) = &flags.tested else { return Ok((Expectation::Untested, None)) };
    let text = std::fs::read_to_string(path)
        .map_err(|source| AppError::Io { what: format!("reading {}", path.display()), source })?;
    let record: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| AppError::Usage(format!("{}: not a run record: {e}", path.display())))?;
    let install = StageName::HelmInstall.as_str();
    let stage = record["stages"].as_array().and_then(|stages| stages.iter().find(|s| s["name"] == install));
    let field = |key: Detail| stage.and_then(|s| s["details"][key.as_str()].as_str()).map(str::to_string);
    match (record["outcome"].as_str(), field(Detail::TestedAppVersion), field(Detail::TestedChartDigest)) {
        (Some("passed"), Some(app_version), Some(digest)) => {
            let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
            let run = TestRun {
                run_id: text(&record["run_id"]),
                qa_commit: text(&record["build"]["commit"]),
                outcome: "passed".into(),
            };
            Ok((Expectation::Record(Tested { app_version, digest }), Some(run)))
        }
        _ => Err(AppError::Usage(format!(
            "{}: not the record of a passed integration-test run (no tested chart in it)",
            path.display()
        ))),
    }
}
