//! Promotion over SSH against a real sshd on 127.0.0.1 (Debian's openssh-server): a key file,
//! and an ssh-agent, with the server's host key checked against known_hosts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::git_server::seed_bare_repo;
use crate::support::{Run, git, missing_component};

struct Sshd {
    port: u16,
    child: Child,
    agent: Option<Child>,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        for child in [Some(&mut self.child), self.agent.as_mut()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn keygen(path: &Path) {
    let ok =
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path).status().unwrap().success();
    assert!(ok, "ssh-keygen");
}

fn start(d: &Path) -> Option<Sshd> {
    if !Path::new("/usr/sbin/sshd").is_file() {
        missing_component("an SSH server (sshd)", "apt-get install openssh-server");
        return None;
    }
    std::fs::create_dir_all("/run/sshd").ok();
    keygen(&d.join("host"));
    keygen(&d.join("client"));
    keygen(&d.join("stranger"));
    std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nStrictModes no\nPermitRootLogin yes\nPidFile {d}/sshd.pid\nMaxStartups 50\n",
                d = d.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Clients check the server against known_hosts.
                let host = std::fs::read_to_string(d.join("host.pub")).unwrap();
                let key = host.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                std::fs::create_dir_all(d.join("home/.ssh")).unwrap();
                std::fs::write(d.join("home/.ssh/known_hosts"), format!("[127.0.0.1]:{port} {key}\n")).unwrap();
                return Some(Sshd { port, child, agent: None });
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("sshd did not start");
}

fn user() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string()
}

/// A pipeline whose `qa` repository is `url`, with SSH credentials from `key`.
fn pipeline(dir: &Path, url: &str, key: &Path) {
    let text = crate::support::VALID_PIPELINE.replacen("https://git.example/qa.git", url, 1).replacen(
        "    token_env: GITHUB_TOKEN",
        &format!("    username: {}\n    ssh_key_path: {}", user(), key.display()),
        1,
    );
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("pipelines/stagecoach.yaml"), text).unwrap();
}

fn promote(dir: &Path, home: &Path, agent: Option<&Path>, tag: &str) -> Run {
    promote_set(dir, home, agent, &format!("image.tag={tag}"))
}

fn promote_set(dir: &Path, home: &Path, agent: Option<&Path>, set: &str) -> Run {
    let mut cmd = crate::support::command(
        dir,
        &["promote", "--repo", "qa", "--file", "values.yaml", "--set", set, "--attempts", "30"],
        &[],
    );
    cmd.env("HOME", home);
    if let Some(socket) = agent {
        cmd.env("SSH_AUTH_SOCK", socket);
    }
    cmd.output().unwrap().into()
}

#[test]
fn promotion_over_ssh_with_a_key_file_and_with_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(mut sshd) = start(d) else { return };
    let bare = d.join("qa.git");
    seed_bare_repo(&bare, &[("values.yaml", "image:\n  tag: latest\n")]);
    let url = format!("ssh://{}@127.0.0.1:{}{}", user(), sshd.port, bare.display());
    let home = d.join("home");
    let dev = d.join("dev");

    // The key file.
    pipeline(&dev, &url, &d.join("client"));
    promote(&dev, &home, None, "by-key").success();
    assert!(git(&bare, &["show", "main:values.yaml"]).contains("tag: by-key"));

    // A key the server does not know: refused, clearly.
    pipeline(&dev, &url, &d.join("stranger"));
    let refused = promote(&dev, &home, None, "stranger");
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("authentication failed"), "{}", refused.stderr);

    // The agent holds the right key; the key file is the wrong one: the agent is asked first.
    let socket = d.join("agent.sock");
    let agent = Command::new("ssh-agent").args(["-D", "-a"]).arg(&socket).stdout(Stdio::null()).spawn().unwrap();
    sshd.agent = Some(agent);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add").arg(d.join("client")).env("SSH_AUTH_SOCK", &socket).output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    promote(&dev, &home, Some(&socket), "by-agent").success();
    assert!(git(&bare, &["show", "main:values.yaml"]).contains("tag: by-agent"));

    // An unknown host key is refused.
    std::fs::write(
        home.join(".ssh/known_hosts"),
        format!(
            "[127.0.0.1]:{} {}\n",
            sshd.port,
            std::fs::read_to_string(d.join("stranger.pub"))
                .unwrap()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .unwrap();
    pipeline(&dev, &url, &d.join("client"));
    let mismatch = promote(&dev, &home, None, "mismatch");
    assert_ne!(mismatch.code, 0, "a changed host key was accepted");
    assert!(mismatch.stderr.to_lowercase().contains("host"), "{}", mismatch.stderr);
    let _: PathBuf = home;
}

#[test]
fn ten_concurrent_promotions_over_ssh_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(sshd) = start(d) else { return };
    let bare = d.join("qa.git");
    let values: String = (0..10).map(|i| format!("t{i}: old # slot {i}\n")).collect();
    seed_bare_repo(&bare, &[("values.yaml", &values)]);
    let url = format!("ssh://{}@127.0.0.1:{}{}", user(), sshd.port, bare.display());
    let (home, dev) = (d.join("home"), d.join("dev"));
    pipeline(&dev, &url, &d.join("client"));
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (dev, home) = (&dev, &home);
                scope.spawn(move || promote_set(dev, home, None, &format!("t{i}=new{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        run.success();
    }
    assert_eq!(git(&bare, &["rev-list", "--count", "main"]), "11", "1 seed + 10 promotions");
    let want: String = (0..10).map(|i| format!("t{i}: new{i} # slot {i}\n")).collect();
    assert_eq!(git(&bare, &["show", "main:values.yaml"]), want.trim_end());
}
