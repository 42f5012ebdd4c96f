//! A real git smart-HTTP server on 127.0.0.1 for the tests: nginx with basic auth in front of
//! git's own `git http-backend` through fcgiwrap (Debian packages nginx-light and fcgiwrap).

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{git, missing_component};

pub struct GitServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    children: Vec<Child>,
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

impl GitServer {
    /// Starts the server with one user; `None` (or a failure in CI) when nginx or fcgiwrap is missing.
    pub fn start(user: &str, password: &str) -> Option<Self> {
        let (Some(nginx), Some(fcgiwrap)) = (which("nginx"), which("fcgiwrap")) else {
            missing_component("the git HTTP server (nginx, fcgiwrap)", "apt-get install nginx-light fcgiwrap");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let root = d.join("repos");
        std::fs::create_dir_all(root.clone()).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        // nginx reads {PLAIN} entries itself, so no htpasswd tool is needed.
        std::fs::write(d.join("htpasswd"), format!("{user}:{{PLAIN}}{password}\n")).unwrap();
        let socket = d.join("fcgi.sock");
        let backend = PathBuf::from(git(Path::new("/"), &["--exec-path"])).join("git-http-backend");

        // Several workers: a push held in a hook must not block the pushes racing it.
        // A group of its own: its workers are ended with it (see Drop).
        let fcgi = Command::new(fcgiwrap)
            .args(["-c", "4", "-s", &format!("unix:{}", socket.display())])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fcgiwrap");
        let mut children = vec![fcgi];

        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let conf = d.join("nginx.conf");
            std::fs::write(
                &conf,
                format!(
                    r#"daemon off;
# One process: killing it leaves no orphaned workers behind.
master_process off;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  fastcgi_temp_path {d}/tmp/fastcgi;
  proxy_temp_path {d}/tmp/proxy;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/(.*\.git/.*)$ {{
      auth_basic "git";
      auth_basic_user_file {d}/htpasswd;
      client_max_body_size 0;
      fastcgi_pass unix:{socket};
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO /$1;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
    }}
  }}
}}
"#,
                    d = d.display(),
                    socket = socket.display(),
                    backend = backend.display(),
                    root = root.display(),
                ),
            )
            .unwrap();
            let mut nginx = Command::new(&nginx)
                .args([
                    "-e",
                    &format!("{}/error.log", d.display()),
                    "-p",
                    &d.display().to_string(),
                    "-c",
                    &conf.display().to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx");
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut up = false;
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() && socket.exists() {
                    up = true;
                    break;
                }
                if nginx.try_wait().ok().flatten().is_some() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                children.push(nginx);
                return Some(Self { base: format!("http://127.0.0.1:{port}"), root, _dir: dir, children });
            }
            let _ = nginx.kill();
            let _ = nginx.wait();
        }
        panic!("nginx did not start; see its error.log");
    }

    /// A bare repository on the server holding `files` in one commit on `main`; returns its URL.
    pub fn create_repo(&self, name: &str, files: &[(&str, &str)]) -> String {
        let bare = self.root.join(format!("{name}.git"));
        seed_bare_repo(&bare, files);
        git(&bare, &["config", "http.receivepack", "true"]);
        git(&bare, &["config", "uploadpack.allowReachableSHA1InWant", "true"]);
        format!("{}/{name}.git", self.base)
    }

    pub fn bare(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.git"))
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        for child in &mut self.children {
            // fcgiwrap's preforked workers outlive their parent: end the whole group.
            let _ =
                Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).stderr(Stdio::null()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A bare repository at `bare` with `files` committed on `main`.
pub fn seed_bare_repo(bare: &Path, files: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    for (path, text) in files {
        let path = work.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(work.path(), &["add", "."]);
    git(work.path(), &["commit", "-q", "-m", "seed"]);
    git(Path::new("/"), &["clone", "-q", "--bare", work.path().to_str().unwrap(), bare.to_str().unwrap()]);
}
