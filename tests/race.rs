//! QA never goes backwards: an older and a newer DEV commit built at the same time, in every
//! order their pushes can be forced into, against the real git HTTP server. The QA repository's
//! pre-receive hook holds each push until the test lets it through.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::git_server::GitServer;
use crate::image::operator_binary;
use crate::registry::{Registry, docker_available};
use crate::support::git;

const TOKEN: &str = "race-token-77";
const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

/// Holds a push until `go-<appVersion>` exists in the control directory; notes its arrival.
const HOOK: &str = r#"#!/bin/sh
while read old new ref; do
  app=$(git show "$new:Chart.yaml" | sed -n 's/^appVersion: *"*\([0-9a-f]*\)"*.*/\1/p')
  touch "CONTROL/arrived-$app"
  while [ ! -e "CONTROL/go-$app" ]; do sleep 0.05; done
done
"#;

fn pipeline(dev_url: &str, image: &str) -> String {
    format!(
        "version: 1
repositories:
  dev:
    url: {dev_url}
    credentials: git
  qa:
    url: ${{QA_URL}}
    credentials: git
  release:
    url: https://git.example/release.git
image:
  repository: {image}
  dockerfile: operator/Dockerfile
chart:
  name: bitcoin-operator
cluster:
  provider: kind
  node_image: kindest/node:v1.33.1
commands:
  build:
    run: 'true'
  unit_tests:
    run: 'true'
  integration_tests:
    run: 'true'
credentials:
  git:
    username: ci
    token_env: GIT_TOKEN
"
    )
}

/// A shallow CI-style checkout of `branch` (depth 1) as local branch main, with the operator
/// binary the image is built from.
fn checkout(bare: &Path, branch: &str, into: &Path) {
    let url = format!("file://{}", bare.display());
    git(Path::new("/"), &["clone", "-q", "--depth", "1", "--branch", branch, &url, into.to_str().unwrap()]);
    git(into, &["checkout", "-q", "-B", "main"]);
    std::fs::create_dir_all(into.join("target/image")).unwrap();
    // Each commit its own image, so that whose image :latest names can be told.
    let mut binary = std::fs::read(operator_binary()).unwrap();
    binary.extend(git(into, &["rev-parse", "HEAD"]).bytes());
    std::fs::write(into.join("target/image/operator"), binary).unwrap();
    std::fs::set_permissions(into.join("target/image/operator"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
}

fn build_and_deploy(dir: &Path, qa_url: &str) -> Child {
    let image = qa_url.rsplit('/').next().unwrap().trim_end_matches(".git");
    let env = [("GIT_TOKEN", TOKEN), ("QA_URL", qa_url), ("IMAGE_NAME", image)];
    crate::support::command(dir, &["--no-progress", "build-and-deploy"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, name: &str) -> String {
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{name} failed:\n{stderr}");
    stderr
}

/// Waits until the hook notes the arrival of `path`'s push; a run that ends first fails the
/// test with its output.
fn wait_for(path: &Path, runs: &mut [Child]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        for run in runs.iter_mut() {
            if run.try_wait().unwrap().is_some() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                panic!("a run ended before {} appeared:\n{stderr}", path.display());
            }
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn app_version(bare: &Path) -> String {
    let chart = git(bare, &["show", "main:Chart.yaml"]);
    chart.lines().find_map(|l| l.strip_prefix("appVersion: ")).unwrap_or_default().trim_matches('"').to_string()
}

#[derive(Clone, Copy, Debug)]
enum Order {
    /// One run after the other.
    Sequential,
    /// Both runs have synced and are pushing; the first push lands, the second is rejected
    /// and goes round the retry loop on the new tip.
    Racing,
}

#[test]
fn of_an_older_and_a_newer_build_the_newer_ends_in_qa_in_every_order() {
    if !docker_available() {
        return;
    }
    let Some(server) = GitServer::start("ci", TOKEN) else { return };
    let Some(registry) = Registry::start(None) else { return };
    let dev_url = format!("{}/dev.git", server.base);
    let chart = Path::new(WORKSPACE).join("chart-template");
    let read = |name: &str| std::fs::read_to_string(chart.join(name)).unwrap();
    let dockerfile = std::fs::read_to_string(Path::new(WORKSPACE).join("operator/Dockerfile")).unwrap();
    let text = pipeline(&dev_url, &format!("{}/${{IMAGE_NAME}}", registry.host));
    server.create_repo(
        "dev",
        &[
            ("operator/Dockerfile", dockerfile.as_str()),
            (".gitignore", "target/\n"),
            ("pipelines/stagecoach.yaml", text.as_str()),
        ],
    );
    // older: the seed commit, kept as branch `old`; newer: its child on main.
    let dev_bare = server.bare("dev");
    let older = git(&dev_bare, &["rev-parse", "main"]);
    git(&dev_bare, &["branch", "old", "main"]);
    let work = tempfile::tempdir().unwrap();
    git(Path::new("/"), &["clone", "-q", dev_bare.to_str().unwrap(), work.path().join("w").to_str().unwrap()]);
    let w = work.path().join("w");
    std::fs::write(w.join("README.md"), "newer\n").unwrap();
    git(&w, &["add", "README.md"]);
    git(&w, &["commit", "-q", "-m", "newer"]);
    git(&w, &["push", "-q", "origin", "main"]);
    let newer = git(&w, &["rev-parse", "HEAD"]);

    let cases = [
        ("older, then newer", Order::Sequential, [&older, &newer]),
        ("newer, then older", Order::Sequential, [&newer, &older]),
        ("racing: the older push lands first", Order::Racing, [&older, &newer]),
        ("racing: the newer push lands first", Order::Racing, [&newer, &older]),
    ];
    for (index, (name, order, [first, second])) in cases.into_iter().enumerate() {
        let qa_url = server.create_repo(
            &format!("qa{index}"),
            &[("Chart.yaml", &read("Chart.yaml")), ("values.yaml", &read("values.yaml"))],
        );
        let qa_bare = server.bare(&format!("qa{index}"));
        let control = work.path().join(format!("control{index}"));
        std::fs::create_dir_all(&control).unwrap();
        let hook = qa_bare.join("hooks/pre-receive");
        std::fs::write(&hook, HOOK.replace("CONTROL", control.to_str().unwrap())).unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

        let dirs: Vec<PathBuf> = [first, second]
            .iter()
            .map(|commit| {
                let dir = work.path().join(format!("case{index}-{}", &commit[..7]));
                checkout(&dev_bare, if *commit == &older { "old" } else { "main" }, &dir);
                dir
            })
            .collect();
        let go = |commit: &str| std::fs::write(control.join(format!("go-{commit}")), "").unwrap();
        let outputs = match order {
            Order::Sequential => {
                go(first);
                go(second);
                let a = finish(build_and_deploy(&dirs[0], &qa_url), first);
                let b = finish(build_and_deploy(&dirs[1], &qa_url), second);
                [a, b]
            }
            Order::Racing => {
                let mut runs = [build_and_deploy(&dirs[0], &qa_url), build_and_deploy(&dirs[1], &qa_url)];
                // Both have synced QA and built their commit: both pushes wait in the hook.
                wait_for(&control.join(format!("arrived-{first}")), &mut runs);
                wait_for(&control.join(format!("arrived-{second}")), &mut runs);
                let [a, b] = runs;
                go(first);
                let a = finish(a, first);
                go(second);
                [a, finish(b, second)]
            }
        };
        assert_eq!(app_version(&qa_bare), newer, "case {name}: QA went backwards");
        // :latest names what QA holds: the newer build's image.
        let values = git(&qa_bare, &["show", "main:values.yaml"]);
        let digest = values.lines().find_map(|l| l.trim().strip_prefix("digest: ")).unwrap().trim_matches('"');
        assert_eq!(registry.digest(&format!("qa{index}"), "latest").as_deref(), Some(digest), "case {name}");
        let older_output = if first == &older { &outputs[0] } else { &outputs[1] };
        let newer_first = first == &newer;
        if newer_first {
            assert!(
                older_output.contains(&format!("QA already holds newer commit {newer}")),
                "case {name}: {older_output}"
            );
            assert_eq!(git(&qa_bare, &["rev-list", "--count", "main"]), "2", "case {name}");
        } else {
            assert_eq!(git(&qa_bare, &["rev-list", "--count", "main"]), "3", "case {name}");
        }
    }
    for index in 0..4 {
        let image = format!("{}/qa{index}", registry.host);
        for tag in ["latest".to_string(), older[..7].to_string(), newer[..7].to_string()] {
            let _ = Command::new("docker").args(["rmi", "-f", &format!("{image}:{tag}")]).output();
        }
    }
}

/// Issue seen once in eight runs of an acceptance flow: a release tag put on a commit whose
/// build had been refused for a CI tag that is not a version (after a dev build of the same
/// commit) exited 0 with QA still at the dev version. Nothing in that sequence depends on
/// timing: the tag comes from the checkout's tags or the CI's variables, both read once before
/// the build; QA holding the same commit is not "newer". Run many times, both ways a tag
/// reaches stagecoach, it promotes the release every time. (QA does stay at a dev version, by
/// design, when the tag is on an older commit than the one QA holds.)
#[test]
fn a_release_tag_after_a_refused_ci_tag_on_the_same_commit_is_promoted_every_time() {
    if !docker_available() {
        return;
    }
    let Some(registry) = Registry::start(None) else { return };
    let binary = operator_binary();
    for round in 0..12 {
        for github in [false, true] {
            let name = format!("tagrace{round}{}", if github { "gh" } else { "local" });
            let dev = crate::image::dev_repo(&format!("{}/{name}", registry.host), false);
            let d = dev.dir.path();
            std::fs::copy(&binary, d.join("target/image/operator")).unwrap();
            let head = git(d, &["rev-parse", "HEAD"]);
            let env = |tag: Option<&str>| -> Vec<(String, String)> {
                match (github, tag) {
                    (false, _) => vec![],
                    (true, tag) => vec![
                        ("GITHUB_ACTIONS".into(), "true".into()),
                        ("GITHUB_SHA".into(), head.clone()),
                        ("GITHUB_REF".into(), tag.map_or("refs/heads/main".into(), |t| format!("refs/tags/{t}"))),
                    ],
                }
            };
            let build = |tag: Option<&str>| {
                if let (Some(tag), false) = (tag, github) {
                    git(d, &["tag", tag]);
                }
                let env = env(tag);
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                crate::support::stagecoach(d, &["--no-progress", "build-and-deploy"], &env)
            };
            build(None).success();
            let refused = build(Some("nightly-1"));
            assert_eq!(refused.code, 2, "{name}: {}", refused.stderr);
            assert!(refused.stderr.contains("tag `nightly-1` is not a release version"), "{name}: {}", refused.stderr);
            let release = build(Some("v0.3.0"));
            release.success();
            let read = |file: &str| -> serde_json::Value {
                serde_saphyr::from_str(&git(&dev.qa, &["show", &format!("main:{file}")])).unwrap()
            };
            let (chart, values) = (read("Chart.yaml"), read("values.yaml"));
            assert_eq!(
                (&chart["version"], &chart["appVersion"]),
                (&"0.3.0".into(), &head.as_str().into()),
                "{name}: {}",
                release.stderr
            );
            assert_eq!(values["image"]["tag"], "v0.3.0", "{name}");
        }
    }
}
