//! A fault table: build-and-deploy through the real binary against real servers on loopback
//! that are down, silent, refusing, or killed under. Each row: the exit code, what the message
//! names, no partial promotion (QA and `:latest` unchanged), nothing left in TMPDIR.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::git_server::GitServer;
use crate::image::dev_repo;
use crate::registry::{Registry, docker_available};
use crate::support::{BIN, Run, closed_port, git, silent_port};

const TOKEN: &str = "fault-token-5";

enum Fault {
    RegistryDown,
    RegistryHangs,
    GitDown,
    GitHangs,
    GitRefuses,
    /// SIGTERM while the QA push is held by the server.
    KilledMidPush,
}

#[test]
fn faults_of_the_registry_and_the_git_server_table() {
    if !docker_available() {
        return;
    }
    let (Some(registry), Some(server)) = (Registry::start(None), GitServer::start("ci", TOKEN)) else { return };
    let seed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("chart-template/values.yaml")).unwrap();
    let chart =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("chart-template/Chart.yaml")).unwrap();
    // (row, fault, exit code, what stderr must say)
    let rows = [
        ("registry down", Fault::RegistryDown, 1, "cannot be reached"),
        ("registry hangs", Fault::RegistryHangs, 1, "did not answer for 2s while pushing"),
        ("git server down", Fault::GitDown, 1, "/qa.git: failed to connect to 127.0.0.1:"),
        ("git server hangs", Fault::GitHangs, 1, "/qa.git: reading from the git server: timed out after 2s"),
        ("git server refuses", Fault::GitRefuses, 1, "the server said: frozen: no deploys today"),
        ("SIGTERM mid-push", Fault::KilledMidPush, 143, "interrupted by SIGTERM; cleanup ran"),
    ];
    for (index, (row, fault, code, want)) in rows.into_iter().enumerate() {
        let name = format!("fault{index}");
        let image_host = match fault {
            Fault::RegistryDown => format!("127.0.0.1:{}", closed_port()),
            Fault::RegistryHangs => format!("127.0.0.1:{}", silent_port()),
            _ => registry.host.clone(),
        };
        let qa_url = server.create_repo(&name, &[("Chart.yaml", &chart), ("values.yaml", &seed)]);
        let bare = server.bare(&name);
        let qa_url = match fault {
            Fault::GitDown => format!("http://127.0.0.1:{}/qa.git", closed_port()),
            Fault::GitHangs => format!("http://127.0.0.1:{}/qa.git", silent_port()),
            _ => qa_url,
        };
        let hook = match fault {
            Fault::GitRefuses => Some("#!/bin/sh\necho 'frozen: no deploys today' >&2\nexit 1\n"),
            Fault::KilledMidPush => Some("#!/bin/sh\ntouch \"$GIT_DIR/arrived\"\nsleep 3\n"),
            _ => None,
        };
        if let Some(hook) = hook {
            std::fs::write(bare.join("hooks/pre-receive"), hook).unwrap();
            std::fs::set_permissions(
                bare.join("hooks/pre-receive"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
        let dev = dev_repo(&format!("{image_host}/{name}"), false);
        let d = dev.dir.path();
        let pipeline = d.join("pipelines/stagecoach.yaml");
        let text = std::fs::read_to_string(&pipeline).unwrap();
        let text = text.replace(&format!("url: {}", dev.qa.display()), &format!("url: {qa_url}\n    credentials: git"));
        let text = text.replace(
            "credentials:\n  registry:",
            "credentials:\n  git:\n    username: ci\n    token_env: QA_TOKEN\n  registry:",
        );
        std::fs::write(&pipeline, text).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let args = ["--no-progress", "--network-timeout", "2s", "build-and-deploy"];
        let mut child = crate::support::command(d, &args, &[("QA_TOKEN", TOKEN)])
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Fault::KilledMidPush = fault {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !bare.join("arrived").exists() {
                assert!(Instant::now() < deadline, "{row}: the push never arrived");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        }
        let started = Instant::now();
        let out = loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            assert!(started.elapsed() < Duration::from_secs(90), "{row}: still running after 90s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let run = Run::from(out);
        assert_eq!(run.code, code, "{row}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{row}: {}", run.stderr);
        assert!(!run.stderr.contains(TOKEN), "{row}: the token leaked");
        // No partial promotion: QA holds the seed, or (a push that was already on its way when
        // the signal came) the whole promotion; `:latest` did not move either way.
        let commits = git(&bare, &["rev-list", "--count", "main"]);
        match fault {
            Fault::KilledMidPush => assert!(["1", "2"].contains(&commits.as_str()), "{row}: {commits}"),
            _ => assert_eq!(commits, "1", "{row}: QA was changed"),
        }
        if commits == "2" {
            let values = git(&bare, &["show", "main:values.yaml"]);
            let head = git(d, &["rev-parse", "--short=7", "HEAD"]);
            assert!(values.contains(&format!("  tag: {}\n", crate::support::yaml_tag(&head))), "{row}: {values}");
        }
        if !matches!(fault, Fault::RegistryDown | Fault::RegistryHangs) {
            assert_eq!(registry.digest(&name, "latest"), None, "{row}: :latest moved");
        }
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{row}: left in TMPDIR: {left:?}");
        let _ = Command::new("docker")
            .args(["rmi", "-f", &format!("{image_host}/{name}:{}", &git(d, &["rev-parse", "--short=7", "HEAD"]))])
            .output();
    }
}

#[test]
fn a_full_disk_under_the_work_dir_fails_cleanly() {
    // A 64 KiB tmpfs as TMPDIR, in a mount namespace of its own (no root needed where user
    // namespaces are allowed). Where they are not, this row cannot be made: said, not hidden.
    let unshare = Command::new("unshare").args(["-rm", "true"]).status().is_ok_and(|s| s.success());
    if !unshare {
        eprintln!("SKIPPED: a full disk needs `unshare -rm` (user and mount namespaces), which this machine refuses");
        return;
    }
    let Some(server) = GitServer::start("ci", TOKEN) else { return };
    let big: String = (0..4000).map(|i| format!("line{i}: {}\n", "x".repeat(60))).collect();
    let url = server.create_repo("full", &[("values.yaml", "image:\n  tag: old\n"), ("big.yaml", &big)]);
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {tmp} && {bin} promote --repo {url} --file values.yaml --set image.tag=new; \
         code=$?; ls -A {tmp} > {dir}/left; exit $code",
        tmp = tmp.display(),
        bin = BIN,
        dir = dir.path().display()
    );
    let out = Command::new("unshare").args(["-rm", "sh", "-c", &script]).env("TMPDIR", &tmp).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device") || stderr.contains("no space"), "{stderr}");
    assert_eq!(git(&server.bare("full"), &["rev-list", "--count", "main"]), "1", "something was pushed");
    let left = std::fs::read_to_string(dir.path().join("left")).unwrap();
    assert!(left.trim().is_empty(), "left in TMPDIR: {left}");
}
