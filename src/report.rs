//! What a run shows and leaves behind: progress while it runs (indicatif on a terminal, plain
//! lines in CI with `::group::` / `travis_fold` folding), the summary table, the JSON run record.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::ci::BuildInfo;
use crate::record::{RunOutcome, RunRecord, StageOutcome, StageRecord};
use crate::runner::{NoProgress, Plan, Progress};

/// How a CI log folds a stage's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Folding {
    None,
    GithubActions,
    Travis,
}

/// Which display suits where we run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    Quiet,
    Bars,
    Lines(Folding),
}

impl Display {
    /// Bars only on an interactive terminal outside CI; folding as the CI service understands it.
    pub fn choose(env: crate::config::Env<'_>, stderr_is_tty: bool, no_progress: bool, quiet: bool) -> Self {
        let is = |name| env(name).is_some_and(|v| v == "true");
        if quiet {
            Self::Quiet
        } else if is("GITHUB_ACTIONS") {
            Self::Lines(Folding::GithubActions)
        } else if is("TRAVIS") {
            Self::Lines(Folding::Travis)
        } else if stderr_is_tty && !no_progress && !is("CI") {
            Self::Bars
        } else {
            Self::Lines(Folding::None)
        }
    }

    pub fn progress(self) -> Box<dyn Progress> {
        match self {
            Self::Quiet => Box::new(NoProgress),
            Self::Bars => Box::new(Bars::new()),
            Self::Lines(folding) => Box::new(Lines::new(folding, Box::new(std::io::stderr()))),
        }
    }
}

/// Plain lines. A stage that runs alone is folded; stages of a parallel group cannot be (CI
/// folds do not nest or interleave), so their lines carry the stage name instead.
pub struct Lines {
    folding: Folding,
    out: Mutex<Box<dyn Write + Send>>,
    /// Stages whose fold is open.
    folded: Mutex<Vec<String>>,
}

impl Lines {
    pub fn new(folding: Folding, out: Box<dyn Write + Send>) -> Self {
        Self { folding, out: Mutex::new(out), folded: Mutex::new(Vec::new()) }
    }

    fn write(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A closed stderr must not fail the run.
        let _ = writeln!(out, "{text}");
    }
}

/// Travis fold names allow letters, digits, `.`, `_` and `-`.
fn fold_id(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect()
}

impl Progress for Lines {
    fn stage_started(&self, name: &str, parallel: bool) {
        let folds = !parallel && self.folding != Folding::None;
        if folds {
            self.folded.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_string());
        }
        match (self.folding, folds) {
            (Folding::GithubActions, true) => self.write(&format!("::group::{name}")),
            (Folding::Travis, true) => self.write(&format!("travis_fold:start:{}\r\x1b[0K==> {name}", fold_id(name))),
            _ => self.write(&format!("==> {name}")),
        }
    }

    fn line(&self, stage: &str, text: &str) {
        self.write(&format!("[{stage}] {text}"));
    }

    fn stage_finished(&self, record: &StageRecord) {
        if record.outcome == StageOutcome::NotRun {
            return;
        }
        let was_folded = {
            let mut folded = self.folded.lock().unwrap_or_else(|e| e.into_inner());
            folded.iter().position(|n| n == record.name.as_str()).map(|i| folded.remove(i)).is_some()
        };
        // The outcome goes after the fold so that it shows while the fold is closed.
        match (self.folding, was_folded) {
            (Folding::GithubActions, true) => self.write("::endgroup::"),
            (Folding::Travis, true) => {
                self.write(&format!("travis_fold:end:{}\r\x1b[0K", fold_id(record.name.as_str())))
            }
            _ => {}
        }
        self.write(&finished_line(record));
    }
}

fn finished_line(record: &StageRecord) -> String {
    let message = record.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
    format!("<== {} {} in {}{message}", record.name, record.outcome.as_str(), seconds(record.duration_ms))
}

/// Spinners on an interactive terminal, one per running stage; stage output prints above them.
pub struct Bars {
    multi: indicatif::MultiProgress,
    running: Mutex<Vec<(String, indicatif::ProgressBar)>>,
}

impl Bars {
    pub fn new() -> Self {
        Self { multi: indicatif::MultiProgress::new(), running: Mutex::new(Vec::new()) }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bars {
    fn stage_started(&self, name: &str, _parallel: bool) {
        let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_prefix(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.running.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), bar));
    }

    fn line(&self, stage: &str, text: &str) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bar)) = running.iter().find(|(name, _)| name == stage) {
            bar.set_message(text.to_string());
        }
        let _ = self.multi.println(format!("[{stage}] {text}"));
    }

    fn stage_finished(&self, record: &StageRecord) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = running.iter().position(|(name, _)| name == record.name.as_str()) {
            let (_, bar) = running.remove(index);
            bar.finish_and_clear();
        }
        if record.outcome != StageOutcome::NotRun {
            let _ = self.multi.println(finished_line(record));
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", Duration::from_millis(ms).as_secs_f64())
}

/// A plan as `stagecoach plan` and a dry run print it, from the stages' own descriptions.
pub fn plan_text(command: &str, plan: &Plan, build: &BuildInfo) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let branch = build.branch.as_deref().map(|b| format!("branch {b}, ")).unwrap_or_default();
    let _ = writeln!(out, "{command}");
    let _ = writeln!(out, "  commit {} ({branch}{}), image tag {}", build.commit, build.provider, build.image_tag());
    let (groups, cleanup) = plan.describe();
    for (index, group) in groups.iter().enumerate() {
        for (member, planned) in group.iter().enumerate() {
            let number = if member == 0 { format!("{}.", index + 1) } else { String::new() };
            let parallel = if group.len() > 1 { " (parallel)" } else { "" };
            let _ = writeln!(out, "  {number:<3} {}{parallel}", planned.name);
            for action in &planned.actions {
                let _ = writeln!(out, "        {action}");
            }
        }
    }
    if !cleanup.is_empty() {
        let _ = writeln!(out, "  always, also on failure or Ctrl-C:");
        for planned in &cleanup {
            let _ = writeln!(out, "      {}", planned.name);
            for action in &planned.actions {
                let _ = writeln!(out, "        {action}");
            }
        }
    }
    out
}

/// The table printed at the end of a run.
pub fn summary_table(record: &RunRecord) -> String {
    let rows: Vec<(&StageRecord, &str)> =
        record.all_stages().map(|(r, cleanup)| (r, if cleanup { " (cleanup)" } else { "" })).collect();
    let width = rows.iter().map(|(r, suffix)| r.name.as_str().len() + suffix.len()).chain([5]).max().unwrap_or(5);
    let mut out = format!("{:<width$}  {:<11}  {:>8}\n", "stage", "outcome", "duration");
    for (r, suffix) in rows {
        let name = format!("{}{suffix}", r.name);
        let duration = if r.outcome == StageOutcome::NotRun { "-".to_string() } else { seconds(r.duration_ms) };
        // Why a stage was skipped belongs in the summary: "nothing was pushed" needs its reason.
        let why = match (&r.outcome, &r.message) {
            (StageOutcome::Skipped, Some(message)) => format!("  {message}"),
            _ => String::new(),
        };
        out.push_str(&format!("{name:<width$}  {:<11}  {duration:>8}{why}\n", r.outcome.as_str()));
    }
    let total = match &record.outcome {
        RunOutcome::Passed => "passed",
        RunOutcome::Failed { .. } => "failed",
        RunOutcome::Interrupted => "interrupted",
    };
    out.push_str(&format!("{:<width$}  {total:<11}  {:>8}\n", "total", seconds(record.duration_ms)));
    out
}

/// The JSON document written by `--report`.
#[derive(Serialize)]
pub struct RunReport<'a> {
    pub stagecoach_version: &'static str,
    pub run_id: &'a str,
    pub command: &'a str,
    pub dry_run: bool,
    pub started_unix_ms: u64,
    pub build: Option<&'a BuildInfo>,
    #[serde(flatten)]
    pub run: &'a RunRecord,
}

/// Writes the record next to its final name first, so a reader never sees half a file.
pub fn write_report(path: &Path, report: &RunReport<'_>) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    crate::files::write_atomically(path, &json)
}

/// The run as a JUnit XML report (the `testsuite` document of Jenkins' and GitLab's readers):
/// one test case per stage with its duration; a failed stage's message and last lines of
/// output; skipped and not-run stages as skipped, with why.
pub fn junit(report: &RunReport<'_>) -> String {
    use std::fmt::Write as _;
    let run = report.run;
    let cases: Vec<(&StageRecord, &str)> =
        run.all_stages().map(|(r, cleanup)| (r, if cleanup { ".cleanup" } else { "" })).collect();
    let count = |outcomes: &[StageOutcome]| cases.iter().filter(|(r, _)| outcomes.contains(&r.outcome)).count();
    let started = std::time::UNIX_EPOCH + Duration::from_millis(report.started_unix_ms);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"stagecoach {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
        xml(report.command),
        cases.len(),
        count(&[StageOutcome::Failed]),
        count(&[StageOutcome::Interrupted]),
        count(&[StageOutcome::Skipped, StageOutcome::NotRun, StageOutcome::Cancelled]),
        junit_seconds(run.duration_ms),
        crate::chart::index::rfc3339(started).trim_end_matches('Z'),
    );
    out.push_str("  <properties>\n");
    let mut properties = vec![("run_id", report.run_id.to_string()), ("dry_run", report.dry_run.to_string())];
    if let Some(build) = report.build {
        properties.push(("commit", build.commit.clone()));
        properties.push(("image_tag", build.image_tag().to_string()));
    }
    for (name, value) in properties {
        let _ = writeln!(out, "    <property name=\"{name}\" value=\"{}\"/>", xml(&value));
    }
    out.push_str("  </properties>\n");
    for (record, suffix) in cases {
        let _ = write!(
            out,
            "  <testcase name=\"{}\" classname=\"stagecoach.{}{suffix}\" time=\"{}\"",
            record.name,
            xml(report.command),
            junit_seconds(record.duration_ms)
        );
        let message = record.message.as_deref().unwrap_or_default();
        let element = match record.outcome {
            StageOutcome::Passed => None,
            StageOutcome::Failed => Some(("failure", "stage-failed", message.to_string())),
            StageOutcome::Interrupted => Some(("error", "interrupted", "interrupted (Ctrl-C or SIGTERM)".to_string())),
            StageOutcome::Skipped => Some(("skipped", "skipped", message.to_string())),
            StageOutcome::Cancelled => {
                Some(("skipped", "cancelled", "cancelled: a stage beside it failed".to_string()))
            }
            StageOutcome::NotRun => Some(("skipped", "not-run", "not run: an earlier stage failed".to_string())),
        };
        match element {
            None => out.push_str("/>\n"),
            Some((tag, kind, message)) => {
                let _ = write!(out, ">\n    <{tag} type=\"{kind}\" message=\"{}\"", xml(&message));
                if record.tail.is_empty() {
                    out.push_str("/>\n");
                } else {
                    let _ = writeln!(out, ">{}</{tag}>", escape(&record.tail.join("\n"), false));
                }
                out.push_str("  </testcase>\n");
            }
        }
    }
    out.push_str("</testsuite>\n");
    out
}

/// Seconds with three decimals, as JUnit readers parse them.
fn junit_seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Text as an XML attribute value; characters XML 1.0 cannot hold become U+FFFD.
fn xml(text: &str) -> String {
    escape(text, true)
}

/// Text as XML character data (line breaks kept), or as an attribute value (line breaks as
/// character references, which attribute normalisation would otherwise turn into spaces).
fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' if !attribute => out.push('\n'),
            '\n' | '\t' | '\r' => out.push_str(&format!("&#{};", c as u32)),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The summary table as Markdown, for `$GITHUB_STEP_SUMMARY`.
pub fn markdown_summary(command: &str, record: &RunRecord) -> String {
    let outcome = match &record.outcome {
        RunOutcome::Passed => "passed".to_string(),
        RunOutcome::Failed { stage, .. } => format!("failed at {stage}"),
        RunOutcome::Interrupted => "interrupted".to_string(),
    };
    let cell = |text: &str| text.replace('|', "\\|").replace('\n', " ");
    let mut out = format!(
        "### stagecoach {command}: {outcome}\n\n| stage | outcome | duration | note |\n| --- | --- | ---: | --- |\n"
    );
    for (r, cleanup) in record.all_stages() {
        let suffix = if cleanup { " (cleanup)" } else { "" };
        let duration = if r.outcome == StageOutcome::NotRun { "-".to_string() } else { seconds(r.duration_ms) };
        let note = r.message.as_deref().map(cell).unwrap_or_default();
        out.push_str(&format!("| {}{suffix} | {} | {duration} | {note} |\n", r.name, r.outcome.as_str()));
    }
    out.push_str(&format!("| total | {} | {} | |\n\n", outcome, seconds(record.duration_ms)));
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::StageName;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(name: StageName, outcome: StageOutcome, ms: u64) -> StageRecord {
        StageRecord {
            name,
            group: 0,
            outcome,
            started_ms: 0,
            duration_ms: ms,
            message: None,
            details: Default::default(),
            tail: Vec::new(),
            refused: false,
        }
    }

    #[test]
    fn folding_table() {
        let cases = [
            (Folding::None, false, "==> build\n[build] compiling\n<== build passed in 1.5s\n"),
            (
                Folding::GithubActions,
                false,
                "::group::build\n[build] compiling\n::endgroup::\n<== build passed in 1.5s\n",
            ),
            (Folding::GithubActions, true, "==> build\n[build] compiling\n<== build passed in 1.5s\n"),
            (
                Folding::Travis,
                false,
                "travis_fold:start:build\r\x1b[0K==> build\n[build] compiling\ntravis_fold:end:build\r\x1b[0K\n<== build passed in 1.5s\n",
            ),
        ];
        for (folding, parallel, want) in cases {
            let buffer = Buffer::default();
            let lines = Lines::new(folding, Box::new(buffer.clone()));
            lines.stage_started("build", parallel);
            lines.line("build", "compiling");
            lines.stage_finished(&record(StageName::Build, StageOutcome::Passed, 1500));
            let got = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            assert_eq!(got, want, "{folding:?}");
        }
    }

    #[test]
    fn display_choice_table() {
        let cases: [(&[(&str, &str)], bool, bool, bool, Display); 6] = [
            (&[], true, false, false, Display::Bars),
            (&[], false, false, false, Display::Lines(Folding::None)),
            (&[], true, true, false, Display::Lines(Folding::None)),
            (&[("CI", "true")], true, false, false, Display::Lines(Folding::None)),
            (
                &[("CI", "true"), ("GITHUB_ACTIONS", "true")],
                false,
                false,
                false,
                Display::Lines(Folding::GithubActions),
            ),
            (&[("TRAVIS", "true")], false, false, true, Display::Quiet),
        ];
        for (vars, tty, no_progress, quiet, want) in cases {
            let env = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
            assert_eq!(Display::choose(&env, tty, no_progress, quiet), want, "{vars:?} tty={tty}");
        }
    }

    #[test]
    fn summary_lists_every_stage_and_cleanup() {
        let run = RunRecord {
            outcome: RunOutcome::Failed { stage: StageName::ImagePush, error: "denied".into() },
            duration_ms: 4200,
            stages: vec![
                record(StageName::Build, StageOutcome::Passed, 3000),
                record(StageName::ImagePush, StageOutcome::Failed, 1200),
                record(StageName::QaPromote, StageOutcome::NotRun, 0),
                StageRecord {
                    message: Some("QA does not hold this build".into()),
                    ..record(StageName::ImageLatest, StageOutcome::Skipped, 0)
                },
            ],
            cleanup: vec![record(StageName::ClusterTeardown, StageOutcome::Passed, 0)],
        };
        let want = "\
stage                       outcome      duration
build                       passed           3.0s
image-push                  failed           1.2s
qa-promote                  not run             -
image-latest                skipped          0.0s  QA does not hold this build
cluster-teardown (cleanup)  passed           0.0s
total                       failed           4.2s
";
        assert_eq!(summary_table(&run), want);
    }
}
