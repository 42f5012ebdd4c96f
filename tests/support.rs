//! Running the real binary, and making real git repositories for it to look at.

use std::path::Path;
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_stagecoach");

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

impl From<std::process::Output> for Run {
    fn from(output: std::process::Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The stagecoach command in `dir` with a clean environment: PATH and HOME (`dir`), plus `env`.
/// No CI variables leak in from the machine running the tests.
pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .envs(env.iter().copied());
    cmd
}

/// Runs stagecoach as [`command`] makes it, to the end.
pub fn stagecoach(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    command(dir, args, env).output().expect("run stagecoach").into()
}

/// Runs git (the real CLI) in `dir`; panics with its stderr when it fails.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A valid pipeline file; the cases in `config_errors` each change one thing in it.
/// Line numbers matter to those cases.
pub const VALID_PIPELINE: &str = "\
version: 1
repositories:
  dev:
    url: https://git.example/dev.git
  qa:
    url: https://git.example/qa.git
    branch: main
    credentials: git
  release:
    url: https://git.example/release.git
    credentials: git
image:
  repository: 127.0.0.1:5000/bitcoin-operator
  credentials: registry
chart:
  name: bitcoin-operator
cluster:
  provider: kind
  node_image: kindest/node:v1.33.1
commands:
  build:
    run: cargo build
  unit_tests:
    run: cargo test
    timeout: 20m
  integration_tests:
    run: cargo test -- --ignored
credentials:
  git:
    token_env: GITHUB_TOKEN
  registry:
    username: bot
    password_env: DOCKER_PASSWORD
";

/// A temporary git repository holding `pipelines/stagecoach.yaml`, with one commit.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("pipelines")).unwrap();
        std::fs::write(dir.path().join("pipelines/stagecoach.yaml"), pipeline).unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "first"]);
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn head(&self) -> String {
        git(self.path(), &["rev-parse", "HEAD"])
    }

    pub fn commit(&self, message: &str) -> String {
        git(self.path(), &["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }
}

pub fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Whether tests that need a real component must fail instead of skipping (set by .ci/run).
pub fn components_required() -> bool {
    std::env::var_os("STAGECOACH_REQUIRE_COMPONENTS").is_some_and(|v| v == "1")
}

/// Skips a test whose component is missing, loudly; in CI the same situation fails.
#[track_caller]
pub fn missing_component(what: &str, how: &str) {
    assert!(!components_required(), "{what} is required here (STAGECOACH_REQUIRE_COMPONENTS=1) but missing: {how}");
    eprintln!("SKIPPED: {what} is missing ({how})");
}

/// The Python that has the real Helm engine (PyPI helm-python-sdk), for the tests' `helm`:
/// $STAGECOACH_HELM_PYTHON, else the venv .ci/run makes. A failure in CI, a loud skip elsewhere.
pub fn helm_engine() -> Option<std::path::PathBuf> {
    let python = std::env::var_os("STAGECOACH_HELM_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::ci_cache::find("helm-python-sdk-", "bin/python").unwrap_or_default());
    let works = Command::new(&python).args(["-c", "import helm_python"]).output().is_ok_and(|o| o.status.success());
    if !works {
        missing_component(
            "the Helm engine (PyPI helm-python-sdk)",
            &format!("{} cannot import helm_python; .ci/run installs it", python.display()),
        );
        return None;
    }
    Some(python)
}

/// The real kubectl (its `config view` needs no cluster), for the tests' fake kubectl.
pub fn real_kubectl() -> Option<std::path::PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        missing_component("kubectl", "install kubectl");
    }
    found
}

/// A directory of stand-ins for kind, helm and kubectl (tests/fake_tool.sh), and the
/// environment they need: (fakes dir, env pairs).
pub fn fake_tools(dir: &Path) -> Option<(std::path::PathBuf, Vec<(String, String)>)> {
    let python = helm_engine()?;
    let kubectl = real_kubectl()?;
    let fakes = dir.join("fakes");
    std::fs::create_dir_all(&fakes).unwrap();
    for tool in ["kind", "helm", "kubectl"] {
        std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_tool.sh"), fakes.join(tool))
            .unwrap();
    }
    let env = vec![
        ("FAKE_HELM_PYTHON".to_string(), python.display().to_string()),
        ("FAKE_REAL_KUBECTL".to_string(), kubectl.display().to_string()),
    ];
    Some((fakes, env))
}

/// A static HTTP server on 127.0.0.1 serving the files of a directory; stops when dropped.
pub struct FileServer {
    pub url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    address: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    pub fn start(root: &Path) -> Self {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let address = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (root, flag) = (root.to_path_buf(), std::sync::Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut request = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // Drain the headers.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/');
                let file = root.join(path);
                let response = match std::fs::read(&file) {
                    Ok(body) if !path.contains("..") => {
                        let mut head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                                .into_bytes();
                        head.extend(body);
                        head
                    }
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = stream.write_all(&response);
            }
        });
        Self { url: format!("http://{address}"), stop, address, thread: Some(thread) }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies a directory tree (a chart, a fixture).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A short commit hash as stagecoach writes it into values.yaml: quoted where YAML would read
/// a number (`2599194`, `12e4567`), so that it stays the image tag.
pub fn yaml_tag(short: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let number = match short.split_once('e') {
        Some((mantissa, exponent)) => digits(mantissa) && digits(exponent),
        None => digits(short),
    };
    if number { format!("\"{short}\"") } else { short.to_string() }
}

/// A port on 127.0.0.1 that accepts connections and never answers (a hung server).
pub fn silent_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// A port on 127.0.0.1 where nothing listens (a server that is down).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
