//! A real image registry on 127.0.0.1 (Debian's docker-registry), with or without htpasswd
//! auth, and a check that a Docker engine answers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::missing_component;

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub host: String,
    _dir: tempfile::TempDir,
    child: Child,
}

/// Whether a Docker engine answers; a failure in CI, a loud skip elsewhere.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing_component("a Docker engine", "start dockerd (.ci/run does)");
    }
    ok
}

impl Registry {
    /// `METHOD path` over HTTP/1.0 with an Accept header; the whole response.
    fn request(&self, method: &str, path: &str, accept: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.host).unwrap();
        write!(stream, "{method} {path} HTTP/1.0\r\nHost: {}\r\nAccept: {accept}\r\n\r\n", self.host).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// The manifest digest `name:tag` names, if any.
    pub fn digest(&self, name: &str, tag: &str) -> Option<String> {
        let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
        let response = self.request("HEAD", &format!("/v2/{name}/manifests/{tag}"), accept);
        response.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case("docker-content-digest").then(|| value.trim().to_string())
        })
    }

    /// The manifest `name:tag` names, as JSON, if any.
    pub fn manifest(&self, name: &str, tag: &str) -> Option<serde_json::Value> {
        let response =
            self.request("GET", &format!("/v2/{name}/manifests/{tag}"), "application/vnd.oci.image.manifest.v1+json");
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.lines().next()?.contains(" 200 ").then(|| serde_json::from_str(body).unwrap())
    }

    /// The tags the registry holds for `name` (none for a name never pushed).
    pub fn tags(&self, name: &str) -> Vec<String> {
        let response = self.request("GET", &format!("/v2/{name}/tags/list"), "application/json");
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let mut tags: Vec<String> =
            json["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect();
        tags.sort();
        tags
    }

    /// Starts a registry; with `user`, only that user with `password` may push.
    pub fn start(user: Option<(&str, &str)>) -> Option<Self> {
        let binary = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let Some(binary) = binary else {
            missing_component("an image registry (docker-registry)", "apt-get install docker-registry");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut auth = String::new();
        if let Some((user, password)) = user {
            // The registry only takes bcrypt hashes.
            let out =
                Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (apache2-utils)");
            assert!(out.status.success());
            std::fs::write(d.join("htpasswd"), out.stdout).unwrap();
            auth = format!("auth:\n  htpasswd:\n    realm: test\n    path: {}/htpasswd\n", d.display());
        }
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let config = d.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                    d.display()
                ),
            )
            .unwrap();
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Self { host: format!("127.0.0.1:{port}"), _dir: dir, child });
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
