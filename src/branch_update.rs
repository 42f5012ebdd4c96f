//! Updating a branch of another repository: clone it, change files, commit, push. The engine
//! under the QA promotion (an image into the QA chart), the release (a package into the chart
//! repository) and `stagecoach promote`.
//!
//! Safe under concurrency: when the push is rejected because the branch moved, the clone is
//! synced to the new tip and the *edit* is applied again (not a textual rebase), with jittered
//! backoff and a bounded number of attempts.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::chart::edit;
use crate::tools::git::{Author, Git2, GitError, Remote};

/// What a branch update needs of git; the real one is [`Git2`].
pub trait Repo {
    /// Makes `dir` a clean clone of the branch tip; returns the tip commit.
    fn sync(&self, remote: &Remote, dir: &Path) -> Result<String, GitError>;
    /// Commits the files; `None` when nothing changed.
    fn commit(&self, dir: &Path, files: &[PathBuf], message: &str, author: &Author)
    -> Result<Option<String>, GitError>;
    /// Pushes; [`GitError::Rejected`] when the branch moved.
    fn push(&self, remote: &Remote, dir: &Path) -> Result<(), GitError>;
}

impl Repo for Git2 {
    fn sync(&self, remote: &Remote, dir: &Path) -> Result<String, GitError> {
        Git2::sync(self, remote, dir)
    }
    fn commit(
        &self,
        dir: &Path,
        files: &[PathBuf],
        message: &str,
        author: &Author,
    ) -> Result<Option<String>, GitError> {
        Git2::commit(self, dir, files, message, author)
    }
    fn push(&self, remote: &Remote, dir: &Path) -> Result<(), GitError> {
        Git2::push(self, remote, dir)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{}: {error}", .file.display())]
    Edit { file: PathBuf, error: edit::EditError },
    #[error("{}: {source}", .file.display())]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{} is not in the repository", .0.display())]
    MissingFile(PathBuf),
    #[error("gave up after {attempts} attempts: every push was rejected because {url} kept moving; run it again")]
    GaveUp { attempts: u32, url: String },
    #[error("commit message: {0}")]
    Message(String),
    #[error("{}: {message}", .file.display())]
    Compute { file: PathBuf, message: String },
    #[error(transparent)]
    Escape(#[from] crate::files::Escape),
}

impl UpdateError {
    /// As a stage's error: a repository's content that would lead a write out of the clone is a
    /// refusal (exit 2), anything else a failure.
    pub fn into_stage_error(self, url: &str) -> crate::runner::StageError {
        match self {
            Self::Escape(escape) => Box::new(crate::runner::Refused(format!("{url}: {escape}"))),
            other => Box::new(other),
        }
    }
}

/// Assignments worked out from a file's current bytes (the next dev version depends on the
/// version that is there when the edit is applied, also after a retry).
pub type Computed = std::sync::Arc<dyn Fn(&[u8]) -> Result<Vec<(String, String)>, String> + Send + Sync>;

/// Values to set in one file of the repository.
#[derive(Clone)]
pub struct Edit {
    /// Relative to the repository root.
    pub file: PathBuf,
    pub assignments: Vec<(String, String)>,
    /// Create keys that are missing.
    pub create: bool,
    pub computed: Option<Computed>,
}

impl Edit {
    pub fn new(file: impl Into<PathBuf>, assignments: Vec<(String, String)>) -> Self {
        Self { file: file.into(), assignments, create: false, computed: None }
    }
}

#[derive(Clone, Debug)]
pub struct UpdateOptions {
    pub author: Author,
    /// The commit message, rendered once the changed files are known (see [`render_message`]).
    pub message: String,
    pub dry_run: bool,
    pub attempts: u32,
    /// First backoff; doubled each retry, capped at 2 s, jittered by ±50%.
    pub backoff: Duration,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        Self {
            author: Author::default(),
            message: DEFAULT_MESSAGE.into(),
            dry_run: false,
            attempts: 10,
            backoff: Duration::from_millis(100),
        }
    }
}

pub const DEFAULT_MESSAGE: &str = "stagecoach: set {sets} in {files}";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Pushed as this commit.
    Pushed { commit: String },
    /// The files already held the values: no commit, no push.
    Unchanged,
    /// `--dry-run`: the diff is what would have been committed.
    DryRun,
    /// The change declined itself on what the branch holds (why): nothing committed or pushed.
    Declined(String),
}

#[derive(Clone, Debug)]
pub struct Update {
    pub outcome: UpdateOutcome,
    /// Unified diff of the change (empty when unchanged).
    pub diff: String,
    pub attempts: u32,
}

/// What one application of a change did to the clone.
#[derive(Default)]
pub struct Change {
    /// Files written (relative to the repository root); empty when nothing changed.
    pub files: Vec<PathBuf>,
    pub diff: String,
    /// Why the change was not made at all, judged on the branch's current tip (re-judged after
    /// every rejected push, on the new tip).
    pub declined: Option<String>,
}

/// Clones `remote` into `workdir`, applies the edits, commits and pushes.
pub fn update(
    git: &dyn Repo,
    remote: &Remote,
    edits: &[Edit],
    options: &UpdateOptions,
    workdir: &Path,
) -> Result<Update, UpdateError> {
    update_with(git, remote, &|dir| apply_edits(dir, edits), options, workdir)
}

/// The update loop for any change: sync, `apply`, commit, push; on a rejected push, sync
/// again and apply again on the new tip.
pub fn update_with(
    git: &dyn Repo,
    remote: &Remote,
    apply: &dyn Fn(&Path) -> Result<Change, UpdateError>,
    options: &UpdateOptions,
    workdir: &Path,
) -> Result<Update, UpdateError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = std::time::Instant::now();
        git.sync(remote, workdir)?;
        tracing::debug!(elapsed = ?started.elapsed(), "synced");
        let Change { files, diff, declined } = apply(workdir)?;
        if let Some(reason) = declined {
            return Ok(Update { outcome: UpdateOutcome::Declined(reason), diff: String::new(), attempts: attempt });
        }
        if files.is_empty() {
            return Ok(Update { outcome: UpdateOutcome::Unchanged, diff, attempts: attempt });
        }
        if options.dry_run {
            return Ok(Update { outcome: UpdateOutcome::DryRun, diff, attempts: attempt });
        }
        let Some(commit) = git.commit(workdir, &files, &options.message, &options.author)? else {
            return Ok(Update { outcome: UpdateOutcome::Unchanged, diff: String::new(), attempts: attempt });
        };
        tracing::debug!(elapsed = ?started.elapsed(), "committed");
        let pushed = git.push(remote, workdir);
        tracing::debug!(elapsed = ?started.elapsed(), "pushed");
        match pushed {
            Ok(()) => return Ok(Update { outcome: UpdateOutcome::Pushed { commit }, diff, attempts: attempt }),
            Err(e) if e.is_rejected() && attempt < options.attempts => {
                tracing::debug!(attempt, "push rejected; syncing and editing again");
                std::thread::sleep(backoff(options.backoff, attempt));
            }
            Err(e) if e.is_rejected() => {
                return Err(UpdateError::GaveUp { attempts: attempt, url: remote.url.clone() });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Applies `edits` to the clone in `workdir`.
pub fn apply_edits(workdir: &Path, edits: &[Edit]) -> Result<Change, UpdateError> {
    let mut change = Change::default();
    for edit in edits {
        // Checked on every attempt: each is a fresh checkout of what the remote holds now.
        let path = crate::files::inside(workdir, &edit.file)?;
        let io = |source| UpdateError::Io { file: edit.file.clone(), source };
        let before = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(UpdateError::MissingFile(edit.file.clone()));
            }
            Err(e) => return Err(io(e)),
        };
        let mut assignments = edit.assignments.clone();
        if let Some(compute) = &edit.computed {
            assignments
                .extend(compute(&before).map_err(|message| UpdateError::Compute { file: edit.file.clone(), message })?);
        }
        let after = edit::set_all(&before, &assignments, edit.create)
            .map_err(|error| UpdateError::Edit { file: edit.file.clone(), error })?;
        if after != before {
            let name = edit.file.display().to_string();
            change.diff.push_str(&crate::files::diff(
                &String::from_utf8_lossy(&before),
                &String::from_utf8_lossy(&after),
                &name,
            ));
            std::fs::write(&path, &after).map_err(io)?;
            change.files.push(edit.file.clone());
        }
    }
    Ok(change)
}

/// `base · 2^(attempt-1)`, capped at 2 s, times a random factor in [0.5, 1.5).
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(1 << (attempt - 1).min(10)).min(Duration::from_secs(2));
    // A per-call random number from the standard library's hasher seed; no crate needed.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let factor = 0.5 + (random % 1000) as f64 / 1000.0;
    exponential.mul_f64(factor)
}

/// Fills `{name}` placeholders; `{{` and `}}` are literal braces. Unknown names are an error.
pub fn render_message(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let end = after.find('}').ok_or_else(|| format!("`{{` without `}}` in {template:?}"))?;
            let name = &after[..end];
            let known: Vec<&str> = vars.keys().copied().collect();
            let value = vars.get(name).ok_or_else(|| {
                format!(
                    "unknown placeholder {{{name}}}; known: {}",
                    known.iter().map(|k| format!("{{{k}}}")).collect::<Vec<_>>().join(", ")
                )
            })?;
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            return Err(format!("a lone `}}` in {template:?}; write `}}}}` for a brace"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn message_table() {
        let vars: BTreeMap<&str, String> =
            [("tag", "64ed033".to_string()), ("files", "values.yaml".to_string())].into_iter().collect();
        let cases: [(&str, Result<&str, &str>); 5] = [
            ("Deploy {tag}", Ok("Deploy 64ed033")),
            ("{tag} in {files}", Ok("64ed033 in values.yaml")),
            ("literal {{braces}}", Ok("literal {braces}")),
            ("Deploy {version}", Err("unknown placeholder {version}; known: {files}, {tag}")),
            ("oops }", Err("a lone `}`")),
        ];
        for (template, want) in cases {
            let got = render_message(template, &vars);
            match want {
                Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{template}"),
                Err(want) => assert!(got.as_ref().is_err_and(|e| e.starts_with(want)), "{template}: {got:?}"),
            }
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        for attempt in 1..=12 {
            let nominal = base.saturating_mul(1 << (attempt - 1).min(10)).min(Duration::from_secs(2));
            let got = backoff(base, attempt);
            assert!(got >= nominal.mul_f64(0.5) && got < nominal.mul_f64(1.5), "attempt {attempt}: {got:?}");
        }
        let samples: std::collections::HashSet<Duration> = (0..20).map(|_| backoff(base, 3)).collect();
        assert!(samples.len() > 1, "no jitter");
    }

    /// A repository that rejects the first `reject` pushes, and moves its file each time, as a
    /// concurrent writer would.
    struct Racing {
        reject: RefCell<u32>,
        syncs: RefCell<u32>,
        pushed: RefCell<Vec<String>>,
    }

    impl Repo for Racing {
        fn sync(&self, _: &Remote, dir: &Path) -> Result<String, GitError> {
            *self.syncs.borrow_mut() += 1;
            let n = *self.syncs.borrow();
            std::fs::write(
                dir.join("values.yaml"),
                format!("other: {n} # moved by someone else\nimage:\n  tag: old\n"),
            )
            .unwrap();
            Ok(format!("tip{n}"))
        }
        fn commit(&self, dir: &Path, _: &[PathBuf], _: &str, _: &Author) -> Result<Option<String>, GitError> {
            Ok(Some(std::fs::read_to_string(dir.join("values.yaml")).unwrap()))
        }
        fn push(&self, remote: &Remote, dir: &Path) -> Result<(), GitError> {
            if *self.reject.borrow() > 0 {
                *self.reject.borrow_mut() -= 1;
                return Err(GitError::Rejected { url: remote.url.clone(), branch: remote.branch.clone() });
            }
            self.pushed.borrow_mut().push(std::fs::read_to_string(dir.join("values.yaml")).unwrap());
            Ok(())
        }
    }

    fn setup(reject: u32) -> (Racing, Remote, Vec<Edit>, UpdateOptions) {
        let git = Racing { reject: RefCell::new(reject), syncs: RefCell::new(0), pushed: RefCell::new(Vec::new()) };
        let remote = Remote {
            url: "https://git.example/qa.git".into(),
            branch: "main".into(),
            auth: Default::default(),
            origin: String::new(),
        };
        let edits = vec![Edit::new("values.yaml", vec![("image.tag".into(), "new".into())])];
        let options = UpdateOptions { attempts: 3, backoff: Duration::from_millis(1), ..UpdateOptions::default() };
        (git, remote, edits, options)
    }

    #[test]
    fn a_rejected_push_re_applies_the_edit_on_the_new_tip() {
        let (git, remote, edits, options) = setup(2);
        let dir = tempfile::tempdir().unwrap();
        let update = update(&git, &remote, &edits, &options, dir.path()).unwrap();
        assert_eq!(update.attempts, 3);
        // The pushed file is the third tip's, with our edit: nothing of the others' lost.
        assert_eq!(*git.pushed.borrow(), ["other: 3 # moved by someone else\nimage:\n  tag: new\n"]);
    }

    #[test]
    fn it_gives_up_after_the_last_attempt() {
        let (git, remote, edits, options) = setup(3);
        let dir = tempfile::tempdir().unwrap();
        let error = update(&git, &remote, &edits, &options, dir.path()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "gave up after 3 attempts: every push was rejected because https://git.example/qa.git kept moving; run it again"
        );
        assert!(git.pushed.borrow().is_empty());
    }

    #[test]
    fn dry_run_and_no_change_push_nothing() {
        let (git, remote, edits, options) = setup(0);
        let dir = tempfile::tempdir().unwrap();
        let dry =
            update(&git, &remote, &edits, &UpdateOptions { dry_run: true, ..options.clone() }, dir.path()).unwrap();
        assert_eq!(dry.outcome, UpdateOutcome::DryRun);
        assert!(dry.diff.contains("-  tag: old\n+  tag: new\n"), "{}", dry.diff);
        let same = vec![Edit { assignments: vec![("image.tag".into(), "old".into())], ..edits[0].clone() }];
        let unchanged = update(&git, &remote, &same, &options, dir.path()).unwrap();
        assert_eq!(unchanged.outcome, UpdateOutcome::Unchanged);
        assert!(git.pushed.borrow().is_empty());
    }
}
