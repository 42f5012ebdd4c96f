//! The one place that starts external programs (kind, helm, kubectl, the user's build commands).
//!
//! Every command is echoed in verbose mode with secrets masked, runs in a process group of its
//! own under an optional timeout, and fails with a typed error that carries the exit code and
//! the last lines of stderr. A timeout, or dropping its future (a failed sibling stage, Ctrl-C,
//! SIGTERM), kills the whole group: the command and everything it started.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

/// How long output may still arrive once the command itself has exited: what is left after
/// that is held by a background process it started, which must not keep the stage running
/// (the group is ended then, and in any case when the command is over).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

use crate::secrets::Secrets;

/// How many trailing stderr lines an error keeps.
const STDERR_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("`{program}` was not found on PATH{hint}")]
    NotFound { program: String, hint: String },
    #[error("could not start `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` {status}{}", tail_suffix(.stderr_tail))]
    Failed { command: String, status: ExitStatus, stderr_tail: Vec<String> },
    #[error("`{command}` did not finish within {}; it was killed", crate::config::format_duration(*.after))]
    TimedOut { command: String, after: Duration },
    #[error("reading the output of `{command}`: {source}")]
    Io { command: String, source: std::io::Error },
}

fn tail_suffix(tail: &[String]) -> String {
    if tail.is_empty() { String::new() } else { format!("; last lines of its error output:\n  {}", tail.join("\n  ")) }
}

/// How a program ended when it did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exited with code {code}"),
            Self::Signal => f.write_str("was killed by a signal"),
        }
    }
}

impl ProcessError {
    /// The program's exit code, when it ran and exited with one.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Failed { status: ExitStatus::Code(code), .. } => Some(*code),
            _ => None,
        }
    }
}

/// The keys stagecoach signs with, and what opens them.
pub const KEY_VARIABLES: [&str; 4] =
    ["STAGECOACH_SIGNING_KEY", "STAGECOACH_SIGNING_PASSPHRASE", "STAGECOACH_COSIGN_KEY", "STAGECOACH_COSIGN_PASSWORD"];

/// A command line to run; built with the methods below, run by [`Spawner`].
#[derive(Clone, Debug)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    env: Vec<(String, OsString)>,
    env_removed: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    install_hint: Option<String>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_removed: Vec::new(),
            stdin: None,
            timeout: None,
            install_hint: None,
        }
    }

    /// A shell command line, as users write them in pipeline files.
    pub fn shell(line: &str) -> Self {
        Self::new("sh").arg("-c").arg(line)
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Leaves `key` out of the environment the program inherits.
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env_removed.push(key.into());
        self
    }

    /// Bytes written to the program's standard input (how passwords reach `--password-stdin`).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// What to tell the user when the program is not installed, e.g. "install kind from …".
    pub fn install_hint(mut self, hint: impl Into<String>) -> Self {
        self.install_hint = Some(hint.into());
        self
    }

    /// The command line as a shell would read it (unmasked; [`Spawner::display`] masks).
    fn render(&self) -> String {
        std::iter::once(&self.program).chain(&self.args).map(|word| shell_quote(word)).collect::<Vec<_>>().join(" ")
    }
}

/// Quotes a word for display only; commands are never run through this string.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// Captured output of a successful command.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Where echoed command lines and streamed output go (the progress display, or a test buffer).
pub type LineSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// Runs [`Cmd`]s with this run's secrets and verbosity.
#[derive(Clone, Debug, Default)]
pub struct Spawner {
    secrets: Secrets,
    verbose: bool,
}

impl Spawner {
    pub fn new(secrets: Secrets, verbose: bool) -> Self {
        Self { secrets, verbose }
    }

    /// The command line with secrets masked, as echoed and as named in errors.
    pub fn display(&self, cmd: &Cmd) -> String {
        self.secrets.mask(&cmd.render()).into_owned()
    }

    /// Runs to completion and returns stdout and stderr.
    pub async fn output(&self, cmd: &Cmd, echo: LineSink<'_>) -> Result<Output, ProcessError> {
        let mut out = Output::default();
        self.run(cmd, echo, &mut |stream, line| {
            let buf = match stream {
                Stream::Stdout => &mut out.stdout,
                Stream::Stderr => &mut out.stderr,
            };
            buf.push_str(line);
            buf.push('\n');
        })
        .await?;
        Ok(out)
    }

    /// Runs to completion, handing each output line (masked) to `on_line` as it arrives.
    pub async fn stream(&self, cmd: &Cmd, echo: LineSink<'_>, on_line: LineSink<'_>) -> Result<(), ProcessError> {
        let secrets = &self.secrets;
        self.run(cmd, echo, &mut |_, line| on_line(&secrets.mask(line))).await
    }

    async fn run(
        &self,
        cmd: &Cmd,
        echo: LineSink<'_>,
        on_line: &mut (dyn FnMut(Stream, &str) + Send),
    ) -> Result<(), ProcessError> {
        let shown = self.display(cmd);
        if self.verbose {
            echo(&format!("$ {shown}"));
        }
        let mut command = tokio::process::Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that the group can be ended as a whole; and so that a Ctrl-C in
            // the terminal reaches stagecoach, which ends it, instead of every child at once.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        // The signing keys and what opens them are stagecoach's own: no program it starts sees them.
        for key in cmd.env_removed.iter().map(String::as_str).chain(KEY_VARIABLES) {
            command.env_remove(key);
        }
        for (key, value) in &cmd.env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound && cmd.cwd.as_ref().is_none_or(|d| d.is_dir()) {
                ProcessError::NotFound {
                    program: cmd.program.clone(),
                    hint: cmd.install_hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default(),
                }
            } else {
                ProcessError::Spawn { command: shown.clone(), source }
            }
        })?;

        // Armed until the end: however this future ends, nothing of the command outlives it.
        let group = child.id().map(GroupKill);
        let io_err = |source| ProcessError::Io { command: shown.clone(), source };
        if let (Some(bytes), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
            stdin.write_all(bytes).await.map_err(io_err)?;
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
        let work = async {
            let mut each_line = |stream, line: &str| {
                if stream == Stream::Stderr {
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(self.secrets.mask(line).into_owned());
                }
                on_line(stream, line);
            };
            let pumping = pump(stdout, stderr, &mut each_line);
            tokio::pin!(pumping);
            tokio::select! {
                pumped = &mut pumping => {
                    pumped.map_err(io_err)?;
                    child.wait().await.map_err(io_err)
                }
                status = child.wait() => {
                    let status = status.map_err(io_err)?;
                    if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut pumping).await.is_err() {
                        // A background process still holds the output: end it, keep what it wrote.
                        if let Some(group) = &group {
                            group.kill();
                        }
                        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut pumping).await;
                    }
                    Ok(status)
                }
            }
        };
        let status = match cmd.timeout {
            Some(after) => tokio::time::timeout(after, work)
                .await
                .map_err(|_| ProcessError::TimedOut { command: shown.clone(), after })??,
            None => work.await?,
        };
        if status.success() {
            return Ok(());
        }
        Err(ProcessError::Failed {
            command: shown,
            status: status.code().map_or(ExitStatus::Signal, ExitStatus::Code),
            stderr_tail: tail.into(),
        })
    }
}

/// The process group of a running command, killed (SIGKILL to every member) when dropped.
struct GroupKill(u32);

impl GroupKill {
    fn kill(&self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            // ESRCH: the group is gone already.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Reads both pipes line by line until both close, keeping their interleaving. Output that is
/// not UTF-8 is shown with U+FFFD in place of what cannot be read; it never fails the command.
async fn pump(
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    on_line: &mut (dyn FnMut(Stream, &str) + Send),
) -> std::io::Result<()> {
    let mut out = BufReader::new(stdout).split(b'\n');
    let mut err = BufReader::new(stderr).split(b'\n');
    let (mut out_open, mut err_open) = (true, true);
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(bytes.strip_suffix(b"\r").unwrap_or(&bytes)).into_owned();
    while out_open || err_open {
        tokio::select! {
            line = out.next_segment(), if out_open => match line? {
                Some(line) => on_line(Stream::Stdout, &text(line)),
                None => out_open = false,
            },
            line = err.next_segment(), if err_open => match line? {
                Some(line) => on_line(Stream::Stderr, &text(line)),
                None => err_open = false,
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn spawner() -> Spawner {
        let mut secrets = Secrets::new();
        secrets.add("canary-s3cr3t-42");
        Spawner::new(secrets, true)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn captures_stdout_and_stderr() {
        let out = rt().block_on(spawner().output(&Cmd::shell("echo out; echo err >&2"), &|_| {})).unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn failure_carries_code_and_masked_stderr_tail() {
        let cmd = Cmd::shell("for i in $(seq 1 30); do echo line$i >&2; done; echo canary-s3cr3t-42 >&2; exit 3");
        let err = rt().block_on(spawner().output(&cmd, &|_| {})).unwrap_err();
        assert_eq!(err.exit_code(), Some(3));
        let ProcessError::Failed { stderr_tail, .. } = &err else { panic!("{err:?}") };
        assert_eq!(stderr_tail.len(), STDERR_TAIL_LINES);
        assert_eq!(stderr_tail.last().unwrap(), "***");
        assert_eq!(stderr_tail.first().unwrap(), "line12");
        assert!(!err.to_string().contains("canary-s3cr3t-42"), "{err}");
    }

    #[test]
    fn echo_masks_secrets_in_arguments() {
        let echoed = Mutex::new(Vec::new());
        let cmd = Cmd::new("true").arg("--password=canary-s3cr3t-42").arg("two words");
        rt().block_on(spawner().output(&cmd, &|line| echoed.lock().unwrap().push(line.to_string()))).unwrap();
        assert_eq!(*echoed.lock().unwrap(), ["$ true --password=*** 'two words'"]);
    }

    #[test]
    fn streamed_lines_are_masked() {
        let lines = Mutex::new(Vec::new());
        let cmd = Cmd::shell("echo using canary-s3cr3t-42; echo done");
        rt().block_on(spawner().stream(&cmd, &|_| {}, &|l| lines.lock().unwrap().push(l.to_string()))).unwrap();
        assert_eq!(*lines.lock().unwrap(), ["using ***", "done"]);
    }

    #[test]
    fn missing_program_names_it_and_the_hint() {
        let cmd = Cmd::new("stagecoach-no-such-program").install_hint("install it from your package manager");
        let err = rt().block_on(spawner().output(&cmd, &|_| {})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`stagecoach-no-such-program` was not found on PATH; install it from your package manager"
        );
    }

    #[test]
    fn timeout_kills_the_program() {
        let cmd = Cmd::shell("sleep 5").timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = rt().block_on(spawner().output(&cmd, &|_| {})).unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    /// Whether a process whose command line holds `marker` is still alive.
    fn alive(marker: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains(marker) && !String::from_utf8_lossy(&c).contains("sh\0-c")
            })
        })
    }

    #[test]
    fn the_whole_process_tree_ends_table() {
        // `sleep 31.5N` names each case's grandchildren, to look for them afterwards. Nothing a
        // command started outlives it: stagecoach leaves nothing running that was not asked for.
        let cases: [(&str, &str, Option<Duration>, bool); 3] = [
            (
                "a timeout ends the grandchildren too",
                "sleep 31.51 & sleep 31.51; wait",
                Some(Duration::from_millis(300)),
                false,
            ),
            (
                "a background grandchild holding the output does not hold up the stage",
                "sleep 31.52 & echo started",
                None,
                true,
            ),
            (
                "a background grandchild that let go of the output ends with the command",
                "sleep 31.53 >/dev/null 2>&1 & echo started",
                None,
                true,
            ),
        ];
        for (name, line, timeout, ok) in cases {
            let mut cmd = Cmd::shell(line);
            if let Some(after) = timeout {
                cmd = cmd.timeout(after);
            }
            let started = std::time::Instant::now();
            let result = rt().block_on(spawner().output(&cmd, &|_| {}));
            assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
            assert!(started.elapsed() < Duration::from_secs(5), "{name}: took {:?}", started.elapsed());
            std::thread::sleep(Duration::from_millis(100));
            assert!(!alive(line.split_whitespace().nth(1).unwrap()), "{name}");
        }
    }

    #[test]
    fn dropping_the_future_ends_the_whole_process_tree() {
        let cmd = Cmd::shell("sleep 31.54 & sleep 31.54; wait");
        rt().block_on(async {
            let _ = tokio::time::timeout(Duration::from_millis(300), spawner().output(&cmd, &|_| {})).await;
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!alive("31.54"));
    }

    #[test]
    fn output_that_is_not_utf8_is_shown_lossily() {
        let out = rt()
            .block_on(spawner().output(&Cmd::shell("printf 'caf\\351 ok\\r\\n'; printf 'x\\377\\n' >&2"), &|_| {}))
            .unwrap();
        assert_eq!(out.stdout, "caf\u{FFFD} ok\n");
        assert_eq!(out.stderr, "x\u{FFFD}\n");
    }

    #[test]
    fn stdin_is_written() {
        let out = rt().block_on(spawner().output(&Cmd::new("cat").stdin("from stdin"), &|_| {})).unwrap();
        assert_eq!(out.stdout, "from stdin\n");
    }

    #[test]
    fn quoting_table() {
        for (word, want) in [("plain-1.0", "plain-1.0"), ("", "''"), ("a b", "'a b'"), ("it's", r"'it'\''s'")] {
            assert_eq!(shell_quote(word), want, "{word:?}");
        }
    }
}
