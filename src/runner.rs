//! The stage runner: stages in order, parallel groups, timing, and cleanup that always runs.
//!
//! A run stops at the first failed stage; its running siblings in a parallel group are
//! cancelled (their futures dropped, which kills their programs), later stages are not run,
//! and the cleanup stages run in every case: success, failure and interrupt (Ctrl-C). A second
//! interrupt during cleanup abandons what is left of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::record::{Detail, RunOutcome, RunRecord, StageName, StageOutcome, StageRecord};
use crate::secrets::Secrets;

pub type StageError = Box<dyn std::error::Error + Send + Sync>;

/// A stage's refusal of its input (a repository's content that would lead a write out of its
/// checkout): the run fails as a usage error does, with exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);
pub type StageFuture<'a> = Pin<Box<dyn Future<Output = Result<Completion, StageError>> + Send + 'a>>;

/// Receives what stages do while they run; the displays in `report` implement it.
pub trait Progress: Send + Sync {
    fn stage_started(&self, name: &str, parallel: bool);
    fn line(&self, stage: &str, text: &str);
    fn stage_finished(&self, record: &StageRecord);
}

/// Shows nothing (`--quiet`, and tests).
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage_started(&self, _: &str, _: bool) {}
    fn line(&self, _: &str, _: &str) {}
    fn stage_finished(&self, _: &StageRecord) {}
}

/// One step of a pipeline. Stages get what they need (adapters, config) when they are built;
/// `run` only receives the per-run context.
pub trait Stage: Send + Sync {
    fn name(&self) -> StageName;
    /// What `run` will do, concretely, from the stage's own settings: `stagecoach plan` and a
    /// dry run print this, so the plan cannot drift from the run.
    fn describe(&self) -> Vec<String>;
    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a>;
    /// A cleanup stage that must finish even when the user interrupts again during cleanup
    /// (deleting a cluster this run created); the others are abandoned then.
    fn essential(&self) -> bool {
        false
    }
}

/// A stage as a plan shows it: its name and what it will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStage {
    pub name: StageName,
    pub actions: Vec<String>,
}

/// How a stage that did not fail ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    Done,
    Skipped(String),
}

/// What a running stage can see of the run.
pub struct StageContext {
    stage: StageName,
    progress: Arc<dyn Progress>,
    /// For cleanup stages: whether the run failed or was interrupted (diagnostics are only
    /// collected then).
    pub run_failed: bool,
    details: std::sync::Mutex<std::collections::BTreeMap<Detail, String>>,
    /// The last lines of output, for the report of a failed stage.
    tail: std::sync::Mutex<std::collections::VecDeque<String>>,
}

/// How many lines of a failed stage's output its record keeps.
const TAIL_LINES: usize = 30;

impl StageContext {
    /// A line of output shown under this stage.
    pub fn line(&self, text: &str) {
        self.progress.line(self.stage.as_str(), text);
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text.to_string());
    }

    /// A fact for the run record (an image digest, a commit), shown under the stage.
    pub fn detail(&self, key: Detail, value: impl Into<String>) {
        self.details.lock().unwrap_or_else(|e| e.into_inner()).insert(key, value.into());
    }

    fn take_details(&self) -> std::collections::BTreeMap<Detail, String> {
        std::mem::take(&mut *self.details.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The stages of one command: groups run in order, the stages of a group at the same time.
#[derive(Default)]
pub struct Plan {
    groups: Vec<Vec<Box<dyn Stage>>>,
    cleanup: Vec<Box<dyn Stage>>,
    /// Dropped when the run is over, after cleanup, however it ended (a private temporary
    /// directory the stages work in).
    resources: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Plan {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn then(mut self, stage: impl Stage + 'static) -> Self {
        self.groups.push(vec![Box::new(stage)]);
        self
    }

    pub fn parallel(mut self, stages: Vec<Box<dyn Stage>>) -> Self {
        self.groups.push(stages);
        self
    }

    pub fn cleanup(mut self, stage: impl Stage + 'static) -> Self {
        self.cleanup.push(Box::new(stage));
        self
    }

    pub fn keep_until_done(mut self, resource: impl std::any::Any + Send + Sync) -> Self {
        self.resources.push(Box::new(resource));
        self
    }

    /// The groups in order (stages of a group run at the same time) and the cleanup stages, as
    /// the stages describe themselves.
    pub fn describe(&self) -> (Vec<Vec<PlannedStage>>, Vec<PlannedStage>) {
        let planned = |stage: &dyn Stage| PlannedStage { name: stage.name(), actions: stage.describe() };
        (
            self.groups.iter().map(|group| group.iter().map(|s| planned(s.as_ref())).collect()).collect(),
            self.cleanup.iter().map(|s| planned(s.as_ref())).collect(),
        )
    }
}

/// What stopped a run from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: what CI services send on cancel, and `kill`.
    Terminate,
}

impl Interrupt {
    /// The exit code a shell gives a program ended by this signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

/// Interrupt requests. A closed channel never interrupts.
pub struct Interrupts {
    receiver: tokio::sync::mpsc::UnboundedReceiver<Interrupt>,
    first: Option<Interrupt>,
}

impl Interrupts {
    pub fn new(receiver: tokio::sync::mpsc::UnboundedReceiver<Interrupt>) -> Self {
        Self { receiver, first: None }
    }

    /// Interrupts from SIGINT (Ctrl-C) and SIGTERM.
    pub fn from_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            loop {
                let interrupt = tokio::select! {
                    Some(()) = int.recv() => Interrupt::Interrupt,
                    Some(()) = term.recv() => Interrupt::Terminate,
                    else => break,
                };
                if tx.send(interrupt).is_err() {
                    break;
                }
            }
        });
        Ok(Self::new(rx))
    }

    /// The first signal received, which decides the exit code.
    pub fn first(&self) -> Option<Interrupt> {
        self.first
    }

    async fn next(&mut self) {
        match self.receiver.recv().await {
            Some(interrupt) => {
                self.first.get_or_insert(interrupt);
            }
            None => std::future::pending::<()>().await,
        }
    }
}

pub struct Runner {
    pub progress: Arc<dyn Progress>,
    pub secrets: Secrets,
}

impl Runner {
    pub async fn run(&self, plan: Plan, interrupts: &mut Interrupts) -> RunRecord {
        let start = Instant::now();
        let mut outcome = RunOutcome::Passed;
        let mut stages = Vec::new();
        for (group, members) in plan.groups.iter().enumerate() {
            if outcome != RunOutcome::Passed {
                stages.extend(members.iter().map(|s| self.unstarted(s.name(), group, StageOutcome::NotRun)));
                continue;
            }
            let (records, group_outcome) = self.run_group(group, members, start, interrupts).await;
            stages.extend(records);
            outcome = group_outcome;
        }

        let run_failed = outcome != RunOutcome::Passed;
        let mut cleanup = Vec::new();
        let mut abandoned = false;
        for (index, stage) in plan.cleanup.iter().enumerate() {
            let group = plan.groups.len() + index;
            if abandoned && !stage.essential() {
                cleanup.push(self.unstarted(stage.name(), group, StageOutcome::Interrupted));
                continue;
            }
            let ctx = self.context(stage.name(), run_failed);
            self.progress.stage_started(stage.name().as_str(), false);
            let begun = Instant::now();
            let result = if stage.essential() {
                // More signals now change nothing: what this run created goes away.
                Some(stage.run(&ctx).await)
            } else {
                tokio::select! {
                    result = stage.run(&ctx) => Some(result),
                    () = interrupts.next() => None,
                }
            };
            let record = match result {
                Some(result) => self.finished(stage.name(), group, start, begun, result, &ctx),
                None => {
                    abandoned = true;
                    self.record(
                        stage.name(),
                        group,
                        start,
                        begun,
                        StageOutcome::Interrupted,
                        Some("abandoned on a second interrupt; essential cleanup still runs".into()),
                    )
                }
            };
            self.progress.stage_finished(&record);
            if record.outcome == StageOutcome::Failed && outcome == RunOutcome::Passed {
                outcome = RunOutcome::Failed { stage: record.name, error: record.message.clone().unwrap_or_default() };
            }
            cleanup.push(record);
        }
        RunRecord { outcome, duration_ms: millis(start.elapsed()), stages, cleanup }
    }

    async fn run_group(
        &self,
        group: usize,
        members: &[Box<dyn Stage>],
        start: Instant,
        interrupts: &mut Interrupts,
    ) -> (Vec<StageRecord>, RunOutcome) {
        let parallel = members.len() > 1;
        let contexts: Vec<StageContext> = members.iter().map(|s| self.context(s.name(), false)).collect();
        let mut running: FuturesUnordered<_> = members
            .iter()
            .zip(&contexts)
            .enumerate()
            .map(|(index, (stage, ctx))| {
                self.progress.stage_started(stage.name().as_str(), parallel);
                let begun = Instant::now();
                async move { (index, begun, stage.run(ctx).await) }
            })
            .collect();

        let mut records: Vec<Option<StageRecord>> = vec![None; members.len()];
        let mut outcome = RunOutcome::Passed;
        let group_begun = Instant::now();
        loop {
            tokio::select! {
                next = running.next() => match next {
                    None => break,
                    Some((index, begun, result)) => {
                        let record = self.finished(members[index].name(), group, start, begun, result, &contexts[index]);
                        self.progress.stage_finished(&record);
                        if record.outcome == StageOutcome::Failed {
                            outcome = RunOutcome::Failed { stage: record.name, error: record.message.clone().unwrap_or_default() };
                        }
                        records[index] = Some(record);
                        if outcome != RunOutcome::Passed {
                            break;
                        }
                    }
                },
                () = interrupts.next() => {
                    outcome = RunOutcome::Interrupted;
                    break;
                }
            }
        }
        // Dropping the futures that are still running cancels them.
        drop(running);
        let stopped =
            if outcome == RunOutcome::Interrupted { StageOutcome::Interrupted } else { StageOutcome::Cancelled };
        let records = records
            .into_iter()
            .zip(members)
            .map(|(record, stage)| {
                record.unwrap_or_else(|| {
                    let record = self.record(stage.name(), group, start, group_begun, stopped, None);
                    self.progress.stage_finished(&record);
                    record
                })
            })
            .collect();
        (records, outcome)
    }

    fn context(&self, stage: StageName, run_failed: bool) -> StageContext {
        StageContext {
            stage,
            progress: Arc::clone(&self.progress),
            run_failed,
            details: Default::default(),
            tail: Default::default(),
        }
    }

    fn finished(
        &self,
        name: StageName,
        group: usize,
        start: Instant,
        begun: Instant,
        result: Result<Completion, StageError>,
        ctx: &StageContext,
    ) -> StageRecord {
        let refused = result.as_ref().err().is_some_and(|e| e.downcast_ref::<Refused>().is_some());
        let (outcome, message) = match result {
            Ok(Completion::Done) => (StageOutcome::Passed, None),
            Ok(Completion::Skipped(why)) => (StageOutcome::Skipped, Some(why)),
            Err(error) => (StageOutcome::Failed, Some(error_chain(&*error))),
        };
        let mut record = self.record(name, group, start, begun, outcome, message);
        record.refused = refused;
        record.details = ctx.take_details().into_iter().map(|(k, v)| (k, self.secrets.mask(&v).into_owned())).collect();
        if record.outcome == StageOutcome::Failed {
            let tail = std::mem::take(&mut *ctx.tail.lock().unwrap_or_else(|e| e.into_inner()));
            record.tail = tail.into_iter().map(|line| self.secrets.mask(&line).into_owned()).collect();
        }
        record
    }

    fn record(
        &self,
        name: StageName,
        group: usize,
        start: Instant,
        begun: Instant,
        outcome: StageOutcome,
        message: Option<String>,
    ) -> StageRecord {
        StageRecord {
            name,
            group,
            outcome,
            started_ms: millis(begun.duration_since(start)),
            duration_ms: millis(begun.elapsed()),
            message: message.map(|m| self.secrets.mask(&m).into_owned()),
            details: Default::default(),
            tail: Vec::new(),
            refused: false,
        }
    }

    fn unstarted(&self, name: StageName, group: usize, outcome: StageOutcome) -> StageRecord {
        StageRecord {
            name,
            group,
            outcome,
            started_ms: 0,
            duration_ms: 0,
            message: None,
            details: Default::default(),
            tail: Vec::new(),
            refused: false,
        }
    }
}

/// An error and its sources, as one line each joined by ": ".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::{Barrier, Notify};

    use super::*;

    /// A stage that logs its start and end, optionally waits, then ends as told.
    struct Step {
        name: StageName,
        log: Arc<Mutex<Vec<String>>>,
        wait: Wait,
        result: Result<Completion, &'static str>,
        essential: bool,
    }

    enum Wait {
        None,
        /// Both stages of a parallel pair must be running for either to pass this.
        Barrier(Arc<Barrier>),
        /// Signals that it started, then never finishes on its own.
        Forever(Arc<Notify>),
        /// Signals that it started, then finishes after a while.
        Slow(Arc<Notify>, Duration),
    }

    impl Stage for Step {
        fn name(&self) -> StageName {
            self.name
        }
        fn describe(&self) -> Vec<String> {
            vec![format!("step {}", self.name)]
        }
        fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
            Box::pin(async move {
                self.log.lock().unwrap().push(format!("start {} failed={}", self.name, ctx.run_failed));
                match &self.wait {
                    Wait::None => {}
                    Wait::Barrier(barrier) => {
                        barrier.wait().await;
                    }
                    Wait::Forever(started) => {
                        started.notify_one();
                        std::future::pending::<()>().await;
                    }
                    Wait::Slow(started, after) => {
                        started.notify_one();
                        tokio::time::sleep(*after).await;
                    }
                }
                self.log.lock().unwrap().push(format!("end {}", self.name));
                self.result.clone().map_err(|e| e.into())
            })
        }
        fn essential(&self) -> bool {
            self.essential
        }
    }

    struct Fixture {
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Fixture {
        fn new() -> Self {
            Self { log: Arc::default() }
        }
        fn step(&self, name: StageName, result: Result<Completion, &'static str>) -> Step {
            Step { name, log: Arc::clone(&self.log), wait: Wait::None, result, essential: false }
        }
        fn waiting(&self, name: StageName, wait: Wait) -> Step {
            Step { wait, ..self.step(name, Ok(Completion::Done)) }
        }
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    fn runner() -> Runner {
        let mut secrets = Secrets::new();
        secrets.add("canary-s3cr3t-42");
        Runner { progress: Arc::new(NoProgress), secrets }
    }

    fn no_interrupts() -> Interrupts {
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Interrupts::new(rx)
    }

    fn outcomes(records: &[StageRecord]) -> Vec<(&str, StageOutcome)> {
        records.iter().map(|r| (r.name.as_str(), r.outcome)).collect()
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn stages_run_in_order_then_cleanup() {
        let f = Fixture::new();
        let plan = Plan::new()
            .then(f.step(StageName::Build, Ok(Completion::Done)))
            .then(f.step(StageName::ImageBuild, Ok(Completion::Skipped("no docker".into()))))
            .then(f.step(StageName::QaPromote, Ok(Completion::Done)))
            .cleanup(f.step(StageName::ClusterTeardown, Ok(Completion::Done)));
        let record = block_on(runner().run(plan, &mut no_interrupts()));
        assert_eq!(record.outcome, RunOutcome::Passed);
        assert_eq!(
            f.log(),
            [
                "start build failed=false",
                "end build",
                "start image-build failed=false",
                "end image-build",
                "start qa-promote failed=false",
                "end qa-promote",
                "start cluster-teardown failed=false",
                "end cluster-teardown"
            ]
        );
        assert_eq!(
            outcomes(&record.stages),
            [
                ("build", StageOutcome::Passed),
                ("image-build", StageOutcome::Skipped),
                ("qa-promote", StageOutcome::Passed)
            ]
        );
        assert_eq!(record.stages[1].message.as_deref(), Some("no docker"));
        assert_eq!(outcomes(&record.cleanup), [("cluster-teardown", StageOutcome::Passed)]);
    }

    #[test]
    fn first_failure_stops_the_run_names_the_stage_and_cleanup_still_runs() {
        let f = Fixture::new();
        let plan = Plan::new()
            .then(f.step(StageName::Build, Ok(Completion::Done)))
            .then(f.step(StageName::ImagePush, Err("registry refused token canary-s3cr3t-42")))
            .then(f.step(StageName::QaPromote, Ok(Completion::Done)))
            .cleanup(f.step(StageName::ClusterTeardown, Ok(Completion::Done)));
        let record = block_on(runner().run(plan, &mut no_interrupts()));
        assert_eq!(
            record.outcome,
            RunOutcome::Failed { stage: StageName::ImagePush, error: "registry refused token ***".into() }
        );
        assert_eq!(
            outcomes(&record.stages),
            [
                ("build", StageOutcome::Passed),
                ("image-push", StageOutcome::Failed),
                ("qa-promote", StageOutcome::NotRun)
            ]
        );
        assert!(!f.log().iter().any(|l| l.contains("qa-promote")));
        assert_eq!(f.log().last().unwrap(), "end cluster-teardown");
        assert!(f.log().contains(&"start cluster-teardown failed=true".to_string()));
    }

    #[test]
    fn a_parallel_group_runs_its_stages_at_the_same_time() {
        let f = Fixture::new();
        let barrier = Arc::new(Barrier::new(2));
        let plan = Plan::new()
            .parallel(vec![
                Box::new(f.waiting(StageName::ClusterUp, Wait::Barrier(Arc::clone(&barrier)))),
                Box::new(f.waiting(StageName::DevCheckout, Wait::Barrier(barrier))),
            ])
            .then(f.step(StageName::HelmInstall, Ok(Completion::Done)));
        // Run one after the other, neither stage could pass the barrier: the timeout would fire.
        let record = block_on(async {
            tokio::time::timeout(Duration::from_secs(10), runner().run(plan, &mut no_interrupts())).await
        })
        .expect("the parallel stages did not run at the same time");
        assert_eq!(record.outcome, RunOutcome::Passed);
        assert_eq!(record.stages[0].group, record.stages[1].group);
        assert_eq!(f.log().last().unwrap(), "end helm-install");
    }

    #[test]
    fn a_failure_in_a_group_cancels_its_siblings() {
        let f = Fixture::new();
        let plan = Plan::new()
            .parallel(vec![
                Box::new(f.waiting(StageName::ClusterUp, Wait::Forever(Arc::new(Notify::new())))),
                Box::new(f.step(StageName::DevCheckout, Err("no such commit"))),
            ])
            .then(f.step(StageName::HelmInstall, Ok(Completion::Done)))
            .cleanup(f.step(StageName::ClusterTeardown, Ok(Completion::Done)));
        let record = block_on(runner().run(plan, &mut no_interrupts()));
        assert_eq!(
            record.outcome,
            RunOutcome::Failed { stage: StageName::DevCheckout, error: "no such commit".into() }
        );
        assert_eq!(
            outcomes(&record.stages),
            [
                ("cluster-up", StageOutcome::Cancelled),
                ("dev-checkout", StageOutcome::Failed),
                ("helm-install", StageOutcome::NotRun)
            ]
        );
        assert_eq!(outcomes(&record.cleanup), [("cluster-teardown", StageOutcome::Passed)]);
    }

    #[test]
    fn an_interrupt_stops_the_stage_and_runs_cleanup() {
        let f = Fixture::new();
        let started = Arc::new(Notify::new());
        let plan = Plan::new()
            .then(f.waiting(StageName::IntegrationTests, Wait::Forever(Arc::clone(&started))))
            .then(f.step(StageName::Release, Ok(Completion::Done)))
            .cleanup(f.step(StageName::ClusterTeardown, Ok(Completion::Done)));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let record = block_on(async move {
            let ctrl_c = async move {
                started.notified().await;
                tx.send(Interrupt::Interrupt).unwrap();
                std::future::pending::<()>().await;
            };
            let (runner, mut interrupts) = (runner(), Interrupts::new(rx));
            tokio::select! {
                record = runner.run(plan, &mut interrupts) => record,
                () = ctrl_c => unreachable!(),
            }
        });
        assert_eq!(record.outcome, RunOutcome::Interrupted);
        assert_eq!(
            outcomes(&record.stages),
            [("integration-tests", StageOutcome::Interrupted), ("release", StageOutcome::NotRun)]
        );
        assert_eq!(outcomes(&record.cleanup), [("cluster-teardown", StageOutcome::Passed)]);
        assert!(f.log().contains(&"start cluster-teardown failed=true".to_string()));
    }

    #[test]
    fn a_failing_cleanup_fails_a_passing_run() {
        let f = Fixture::new();
        let plan = Plan::new()
            .then(f.step(StageName::Build, Ok(Completion::Done)))
            .cleanup(f.step(StageName::ClusterTeardown, Err("kind delete failed")))
            .cleanup(f.step(StageName::NodeImageCache, Ok(Completion::Done)));
        let record = block_on(runner().run(plan, &mut no_interrupts()));
        assert_eq!(
            record.outcome,
            RunOutcome::Failed { stage: StageName::ClusterTeardown, error: "kind delete failed".into() }
        );
        assert_eq!(
            outcomes(&record.cleanup),
            [("cluster-teardown", StageOutcome::Failed), ("node-image-cache", StageOutcome::Passed)]
        );
    }

    #[test]
    fn a_second_interrupt_abandons_diagnostics_but_teardown_finishes() {
        let f = Fixture::new();
        let (tests_started, diagnostics_started, teardown_started) =
            (Arc::new(Notify::new()), Arc::new(Notify::new()), Arc::new(Notify::new()));
        let plan = Plan::new()
            .then(f.waiting(StageName::IntegrationTests, Wait::Forever(Arc::clone(&tests_started))))
            .cleanup(f.waiting(StageName::Diagnostics, Wait::Forever(Arc::clone(&diagnostics_started))))
            .cleanup(f.waiting(StageName::NodeImageCache, Wait::None))
            .cleanup(Step {
                essential: true,
                ..f.waiting(
                    StageName::ClusterTeardown,
                    Wait::Slow(Arc::clone(&teardown_started), Duration::from_millis(200)),
                )
            });
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (record, first) = block_on(async move {
            let signals = async move {
                tests_started.notified().await;
                tx.send(Interrupt::Terminate).unwrap();
                diagnostics_started.notified().await;
                tx.send(Interrupt::Interrupt).unwrap();
                // Impatient: more while the cluster is being deleted.
                teardown_started.notified().await;
                tx.send(Interrupt::Interrupt).unwrap();
                std::future::pending::<()>().await;
            };
            let (runner, mut interrupts) = (runner(), Interrupts::new(rx));
            tokio::select! {
                record = runner.run(plan, &mut interrupts) => (record, interrupts.first()),
                () = signals => unreachable!(),
            }
        });
        assert_eq!(record.outcome, RunOutcome::Interrupted);
        assert_eq!(first, Some(Interrupt::Terminate), "the first signal decides the exit code");
        assert_eq!(
            outcomes(&record.cleanup),
            [
                ("diagnostics", StageOutcome::Interrupted),
                ("node-image-cache", StageOutcome::Interrupted),
                ("cluster-teardown", StageOutcome::Passed)
            ]
        );
        assert_eq!(f.log().last().unwrap(), "end cluster-teardown");
    }
}
