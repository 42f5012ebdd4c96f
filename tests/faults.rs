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

/// Every command that works in a temporary directory removes it when SIGINT or SIGTERM ends
/// it, whether it is waiting on a silent server or on a push the server holds.
#[test]
fn a_signal_in_any_stage_of_promote_or_release_leaves_no_temporary_directory() {
    let Some(server) = GitServer::start("ci", TOKEN) else { return };
    let hold = "#!/bin/sh\ntouch \"$GIT_DIR/arrived\"\nsleep 5\n";
    // (command, the repository's URL: silent or holding the push, signal, exit code)
    let mut rows = Vec::new();
    for (index, (command, holding, signal, code)) in [
        ("promote", false, "TERM", 143),
        ("promote", true, "TERM", 143),
        ("promote", true, "INT", 130),
        ("release", false, "TERM", 143),
        ("release", true, "INT", 130),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("signal{index}");
        let url = if holding {
            let url = server.create_repo(&name, &[("values.yaml", "image:\n  tag: old\n"), ("README.md", "r\n")]);
            let hook = server.bare(&name).join("hooks/pre-receive");
            std::fs::write(&hook, hold).unwrap();
            std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            url
        } else {
            format!("http://127.0.0.1:{}/{name}.git", silent_port())
        };
        rows.push((command, holding, signal, code, name, url));
    }
    for (command, holding, signal, code, name, url) in rows {
        let row = format!("{command} {} on SIGINT/SIG{signal}", if holding { "pushing" } else { "fetching" });
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let (cwd, args): (std::path::PathBuf, Vec<String>) =
            match command {
                "promote" => {
                    let pipeline = crate::support::VALID_PIPELINE
                        .replacen("https://git.example/qa.git", &url, 1)
                        .replacen("    token_env: GITHUB_TOKEN", "    username: ci\n    token_env: GITHUB_TOKEN", 1);
                    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
                    std::fs::write(dir.path().join("pipelines/stagecoach.yaml"), pipeline).unwrap();
                    let args = ["promote", "--repo", "qa", "--file", "values.yaml", "--set", "image.tag=new"];
                    (dir.path().to_path_buf(), args.iter().map(|s| s.to_string()).collect())
                }
                _ => {
                    let qa = crate::release::qa_checkout(dir.path(), &url, None);
                    (qa, ["--no-progress", "release", "--untested"].iter().map(|s| s.to_string()).collect())
                }
            };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = crate::support::command(&cwd, &args, &[("GITHUB_TOKEN", TOKEN)])
            .env("TMPDIR", &tmp)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let arrived = server.bare(&name).join("arrived");
        loop {
            let there = if holding { arrived.exists() } else { std::fs::read_dir(&tmp).unwrap().next().is_some() };
            if there {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "{row}: ended before the signal");
            assert!(Instant::now() < deadline, "{row}: never got there");
            std::thread::sleep(Duration::from_millis(20));
        }
        if !holding {
            std::thread::sleep(Duration::from_millis(300)); // into the fetch
        }
        let sent = Instant::now();
        assert!(
            Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap().success()
        );
        let out = child.wait_with_output().unwrap();
        let run = Run::from(out);
        assert_eq!(run.code, code, "{row}: {}", run.stderr);
        assert!(sent.elapsed() < Duration::from_secs(4), "{row}: took {:?} after the signal", sent.elapsed());
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{row}: left in TMPDIR: {left:?}");
    }
}

/// The network timeout counts from the start of a connection attempt: a server slow to take
/// the connection and then silent is given up when the timeout runs out, not a timeout later.
#[test]
fn a_server_slow_to_connect_and_then_silent_is_given_up_within_the_timeout() {
    // A listen backlog of 0 that a first connection fills: the kernel drops the next SYN until
    // that one is accepted (1.5 s on), and TCP tries again after 1 s and 3 s.
    let script = "import socket, time\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)\n\
        port = s.getsockname()[1]\nfiller = socket.create_connection(('127.0.0.1', port))\nprint(port, flush=True)\n\
        time.sleep(1.5)\nheld = [s.accept()[0]]\nwhile True:\n    held.append(s.accept()[0])\n";
    let mut server = Command::new("python3").args(["-c", script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    let url = format!("http://127.0.0.1:{}/qa.git", line.trim());
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let args = ["--network-timeout", "5s", "promote", "--repo", &url, "--file", "values.yaml", "--set", "a=b"];
    let run = crate::support::stagecoach(dir.path(), &args, &[]);
    let took = started.elapsed();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("timed out after 5s"), "{}", run.stderr);
    assert!(took < Duration::from_millis(5800), "gave up after {took:?}, the timeout is 5 s");
}
