//! `stagecoach integration-test` with kind, helm and kubectl replaced by a script that records
//! its calls (tests/fake_tool.sh), and the real git, Docker engine and chart engine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::git_server::seed_bare_repo;
use crate::registry::docker_available;
use crate::support::{BIN, Run, copy_dir, git};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

struct Qa {
    _dir: tempfile::TempDir,
    qa: PathBuf,
    fakes: PathBuf,
    log: PathBuf,
    cache: PathBuf,
    release: PathBuf,
    first_commit: String,
    image: String,
}

fn docker(args: &[&str]) -> bool {
    Command::new("docker").args(args).output().is_ok_and(|o| o.status.success())
}

/// A tiny one-file image tagged `reference`. Imported from a tarball rather than built: the
/// engine's legacy builder once failed one of several concurrent builds, and these images only
/// need to exist and differ from each other.
pub(crate) fn tiny_image(reference: &str, dir: &Path) {
    let tarball = dir.join(format!("rootfs-{}.tar", reference.replace(['/', ':'], "_")));
    let mut rootfs = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(reference.len() as u64);
    header.set_mode(0o644);
    rootfs.append_data(&mut header, "file", reference.as_bytes()).unwrap();
    rootfs.finish().unwrap();
    let out = Command::new("docker").args(["import", tarball.to_str().unwrap(), reference]).output().unwrap();
    assert!(out.status.success(), "docker import {reference}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A QA checkout whose chart was promoted from the first of two DEV commits.
fn setup(version: &str, name: &str) -> Qa {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // DEV: the integration test script reads a file that changes between the two commits.
    let dev = d.join("dev.git");
    seed_bare_repo(
        &dev,
        &[
            ("stamp.txt", "first\n"),
            ("integration.sh", "echo \"integration at $(cat stamp.txt) with $KUBECONFIG\" >>\"$FAKE_LOG\"\n"),
        ],
    );
    let first_commit = git(&dev, &["rev-parse", "main"]);
    let work = d.join("dev-work");
    git(d, &["clone", "-q", dev.to_str().unwrap(), work.to_str().unwrap()]);
    std::fs::write(work.join("stamp.txt"), "second\n").unwrap();
    git(&work, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "second"]);
    git(&work, &["push", "-q", "origin", "main"]);

    let release = d.join("release.git");
    seed_bare_repo(&release, &[("README.md", "charts\n")]);

    let tag = format!("qa-{name}");
    let image = format!("stagecoach-test/qa-op:{tag}");
    tiny_image(&image, d);
    let cache = d.join("cache");
    let qa = d.join("qa");
    let template = Path::new(WORKSPACE).join("chart-template");
    copy_dir(&template, &qa);
    let chart = std::fs::read_to_string(qa.join("Chart.yaml")).unwrap();
    let chart = chart
        .replace("version: 0.1.0", &format!("version: {version}"))
        .replace("appVersion: \"0.1.0\"", &format!("appVersion: \"{first_commit}\""));
    std::fs::write(qa.join("Chart.yaml"), chart).unwrap();
    let values =
        std::fs::read_to_string(qa.join("values.yaml")).unwrap().replace("tag: latest", &format!("tag: {tag}"));
    std::fs::write(qa.join("values.yaml"), values).unwrap();
    std::fs::create_dir_all(qa.join("pipelines")).unwrap();
    std::fs::write(
        qa.join("pipelines/stagecoach.yaml"),
        format!(
            "version: 1
repositories:
  dev:
    url: file://{dev}
  qa:
    url: https://git.example/qa.git
  release:
    url: {release}
image:
  repository: stagecoach-test/qa-op
chart:
  name: bitcoin-operator
cluster:
  provider: kind
  node_image: stagecoach-test/node:{name}
  cache_dir: {cache}
commands:
  build:
    run: 'true'
  unit_tests:
    run: 'true'
  integration_tests:
    run: sh integration.sh
    timeout: 1m
",
            dev = dev.display(),
            release = release.display(),
            cache = cache.display()
        ),
    )
    .unwrap();
    git(&qa, &["init", "-q", "-b", "main"]);
    git(&qa, &["add", "."]);
    git(&qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "qa"]);

    let fakes = d.join("fakes");
    std::fs::create_dir_all(&fakes).unwrap();
    for tool in ["kind", "helm", "kubectl"] {
        std::os::unix::fs::symlink(Path::new(WORKSPACE).join("tests/fake_tool.sh"), fakes.join(tool)).unwrap();
    }
    tiny_image(&format!("stagecoach-test/node:{name}"), d);
    Qa { log: d.join("calls.log"), _dir: dir, qa, fakes, cache, release, first_commit, image }
}

impl Qa {
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let path = format!("{}:{}", self.fakes.display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.qa)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.qa.parent().unwrap())
            .env("FAKE_LOG", &self.log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self.command(args, env).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// The calls, as "tool args" lines in the order they started.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("start ")
                    .map(|rest| rest.split_once(' ').map_or("", |x| x.1).to_string())
                    .or_else(|| l.starts_with("integration").then(|| l.to_string()))
            })
            .collect()
    }

    fn report(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.qa.parent().unwrap().join("run.json")).unwrap()).unwrap()
    }
}

fn stage<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["cleanup"].as_array().unwrap())
        .find(|s| s["name"] == name)
        .unwrap()
}

fn position(calls: &[String], prefix: &str) -> usize {
    calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no call {prefix:?} in {calls:#?}"))
}

#[test]
fn a_dev_build_runs_in_order_in_parallel_where_declared_and_caches_the_node_image() {
    if !docker_available() {
        return;
    }
    let qa = setup("0.1.1-dev.abcdef0", "order");
    let run =
        qa.run(&["--no-progress", "--report", "../run.json", "integration-test"], &[("FAKE_SLEEP", "kind create:2")]);
    run.success();
    let calls = qa.calls();
    let chart = qa.qa.display().to_string();
    let order = [
        "kind create cluster --name stagecoach --image stagecoach-test/node:order --wait 120s --kubeconfig".to_string(),
        "kubectl --kubeconfig".to_string(),
        format!("kind load docker-image {} --name stagecoach", qa.image),
        format!("helm upgrade --install bitcoin-operator {chart} --wait --timeout 300s --kubeconfig"),
        "integration at first with ".to_string(),
        "kind delete cluster --name stagecoach".to_string(),
    ];
    let positions: Vec<usize> = order.iter().map(|p| position(&calls, p)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "out of order: {calls:#?}");
    let helm = &calls[positions[3]];
    assert!(
        helm.contains("--kube-context kind-stagecoach")
            && helm.ends_with(&format!("--set-string image.tag={}", qa.image.rsplit(':').next().unwrap())),
        "{helm}"
    );
    // The tests ran at the chart's appVersion, with the cluster's kubeconfig.
    assert!(
        calls[positions[4]].contains("integration at first with ") && calls[positions[4]].ends_with("/kubeconfig"),
        "{calls:#?}"
    );

    // cluster-up (2 s) and the DEV checkout ran at the same time.
    let report = qa.report();
    let (up, checkout) = (stage(&report, "cluster-up"), stage(&report, "dev-checkout"));
    let up_end = up["started_ms"].as_u64().unwrap() + up["duration_ms"].as_u64().unwrap();
    assert!(up["duration_ms"].as_u64().unwrap() >= 2000, "{up}");
    assert_eq!(up["group"], checkout["group"]);
    assert!(
        checkout["started_ms"].as_u64().unwrap() < up_end
            && checkout["started_ms"].as_u64().unwrap() + checkout["duration_ms"].as_u64().unwrap() < up_end,
        "not overlapped: {up} {checkout}"
    );
    assert!(
        report["duration_ms"].as_u64().unwrap() < up["duration_ms"].as_u64().unwrap() + 2000,
        "the critical path is not the longest stage: {report}"
    );
    assert_eq!(stage(&report, "dev-checkout")["details"]["commit"], qa.first_commit.as_str());

    // Not a release: nothing published.
    assert_eq!(stage(&report, "release")["outcome"], "skipped");
    assert!(stage(&report, "release")["message"].as_str().unwrap().starts_with("not a release"), "{report}");
    assert!(!run.stderr.contains("diagnostics:"));

    // The node image was saved under its key; the next run loads it before kind starts.
    let cached = qa.cache.join("kind-node-v0.27.0-stagecoach-test_node_order.tar");
    assert!(cached.is_file(), "no cache file; report: {report}");
    assert!(docker(&["rmi", "-f", "stagecoach-test/node:order"]));
    qa.run(&["--no-progress", "--report", "../run.json", "integration-test"], &[]).success();
    let report = qa.report();
    assert!(stage(&report, "cluster-up")["details"]["node_image_loaded_ms"].is_string(), "{report}");
    assert!(docker(&["image", "inspect", "stagecoach-test/node:order"]), "the cached node image was not loaded");
    assert_eq!(stage(&report, "node-image-cache")["outcome"], "skipped");
    docker(&["rmi", "-f", "stagecoach-test/node:order", &qa.image]);
}

#[test]
fn a_failure_leaves_a_diagnostics_bundle_and_still_deletes_the_cluster() {
    if !docker_available() {
        return;
    }
    let qa = setup("0.2.0", "fail");
    let run = qa.run(&["--no-progress", "integration-test"], &[("FAKE_FAIL", "helm upgrade")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("error: stage `helm-install` failed:"), "{}", run.stderr);
    let bundle = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("diagnostics: "))
        .unwrap_or_else(|| panic!("no bundle named:\n{}", run.stderr));
    let bundle = Path::new(bundle);
    for file in [
        "helm-status.txt",
        "get-all.txt",
        "events.txt",
        "pod-bitcoin-bitcoin-operator-7d9f.describe.txt",
        "pod-bitcoin-bitcoin-operator-7d9f.log",
        "pod-bitcoin-bitcoin-operator-7d9f.previous.log",
        "kind-logs/docker-info.txt",
    ] {
        assert!(bundle.join(file).is_file(), "{file} missing from {}", bundle.display());
    }
    assert!(!bundle.join("pod-kube-system-coredns-1.log").exists(), "a ready pod was described");
    let events = std::fs::read_to_string(bundle.join("events.txt")).unwrap();
    assert!(events.contains("get events -A --sort-by=.lastTimestamp"), "{events}");
    let calls = qa.calls();
    assert!(calls.iter().any(|c| c.starts_with("kind delete cluster")), "{calls:#?}");
    assert!(!calls.iter().any(|c| c.starts_with("integration")), "tests ran after a failed install");
    assert_eq!(git(&qa.release, &["rev-list", "--count", "main"]), "1", "a failed run released");

    // --keep-cluster leaves it running.
    std::fs::remove_file(&qa.log).unwrap();
    let kept = qa.run(&["--no-progress", "integration-test", "--keep-cluster"], &[("FAKE_FAIL", "helm upgrade")]);
    assert_eq!(kept.code, 1);
    assert!(!qa.calls().iter().any(|c| c.starts_with("kind delete")), "{:#?}", qa.calls());
    docker(&["rmi", "-f", "stagecoach-test/node:fail", &qa.image]);
}

#[test]
fn ctrl_c_stops_the_run_and_the_cluster_is_deleted() {
    if !docker_available() {
        return;
    }
    let qa = setup("0.2.0", "sigint");
    let mut child =
        qa.command(&["--no-progress", "integration-test"], &[("FAKE_SLEEP", "helm upgrade:30")]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !qa.calls().iter().any(|c| c.starts_with("helm upgrade")) {
        assert!(Instant::now() < deadline, "helm was never called: {:#?}", qa.calls());
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(sent.elapsed() < Duration::from_secs(20), "took {:?} to stop", sent.elapsed());
    let calls = qa.calls();
    assert!(calls.iter().any(|c| c.starts_with("kind delete cluster --name stagecoach")), "{calls:#?}");
    assert!(!calls.iter().any(|c| c.starts_with("integration")));
    docker(&["rmi", "-f", "stagecoach-test/node:sigint", &qa.image]);
}

#[test]
fn a_release_version_that_passes_is_published() {
    if !docker_available() {
        return;
    }
    let qa = setup("0.2.0", "release");
    qa.run(&["--no-progress", "--report", "../run.json", "integration-test"], &[]).success();
    let index = git(&qa.release, &["show", "main:index.yaml"]);
    let report = qa.report();
    let digest =
        stage(&report, "release")["details"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    assert!(index.contains("version: 0.2.0") && index.contains(&format!("digest: {digest}")), "{index}");
    let files = git(&qa.release, &["ls-tree", "--name-only", "main"]);
    assert!(files.contains("bitcoin-operator-0.2.0.tgz"), "{files}");
    // Run again: the chart is published already, nothing changes.
    qa.run(&["--no-progress", "integration-test"], &[]).success();
    assert_eq!(git(&qa.release, &["rev-list", "--count", "main"]), "2");
    docker(&["rmi", "-f", "stagecoach-test/node:release", &qa.image]);
}

#[test]
fn dry_run_and_missing_tools() {
    let qa_dir;
    let qa = {
        // Needs no Docker: nothing is run.
        let dir = tempfile::tempdir().unwrap();
        let fakes = dir.path().join("fakes");
        std::fs::create_dir_all(&fakes).unwrap();
        for tool in ["helm", "kubectl"] {
            std::os::unix::fs::symlink(Path::new(WORKSPACE).join("tests/fake_tool.sh"), fakes.join(tool)).unwrap();
        }
        let qa = dir.path().join("qa");
        copy_dir(&Path::new(WORKSPACE).join("chart-template"), &qa);
        let chart = std::fs::read_to_string(qa.join("Chart.yaml"))
            .unwrap()
            .replace("appVersion: \"0.1.0\"", &format!("appVersion: \"{}\"", "a".repeat(40)));
        std::fs::write(qa.join("Chart.yaml"), chart).unwrap();
        std::fs::create_dir_all(qa.join("pipelines")).unwrap();
        std::fs::write(qa.join("pipelines/stagecoach.yaml"), crate::support::VALID_PIPELINE).unwrap();
        git(&qa, &["init", "-q", "-b", "main"]);
        git(&qa, &["add", "."]);
        git(&qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "qa"]);
        qa_dir = dir;
        (qa, fakes)
    };
    let (qa, fakes) = qa;
    let log = qa_dir.path().join("calls.log");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(&qa)
            .env_clear()
            .env("PATH", format!("{}:/usr/local/bin:/bin", fakes.display()))
            .env("FAKE_LOG", &log)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = run(&["--dry-run", "integration-test"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("kind create cluster --name stagecoach") && stdout.ends_with("dry run: nothing was run\n"),
        "{stdout}"
    );
    assert!(!log.exists(), "a dry run called a tool");

    let (code, _, stderr) = run(&["integration-test"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`kind` was not found on PATH; install kind"), "{stderr}");
    assert!(!log.exists());
}

#[test]
fn an_existing_cluster_is_used_as_it_is() {
    if !docker_available() {
        return;
    }
    let qa = setup("0.1.1-dev.abcdef0", "existing");
    let file = qa.qa.join("pipelines/stagecoach.yaml");
    let kubeconfig = qa.qa.parent().unwrap().join("their-kubeconfig");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("cluster:").unwrap();
    let end = text.find("commands:").unwrap();
    let text = format!(
        "{}cluster:\n  provider: existing\n  kubeconfig: {}\n  context: staging\n{}",
        &text[..start],
        kubeconfig.display(),
        &text[end..]
    );
    std::fs::write(&file, text).unwrap();
    git(&qa.qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "existing cluster"]);

    qa.run(&["--no-progress", "--report", "../run.json", "integration-test"], &[]).success();
    let calls = qa.calls();
    assert!(!calls.iter().any(|c| c.starts_with("kind")), "kind was called: {calls:#?}");
    let target = format!("--kubeconfig {}", kubeconfig.display());
    let wait = &calls[position(&calls, "kubectl")];
    assert!(
        wait.starts_with(&format!("kubectl {target} --context staging wait --for=condition=Ready nodes")),
        "{wait}"
    );
    let helm = &calls[position(&calls, "helm upgrade --install")];
    assert!(helm.contains(&format!("{target} --kube-context staging")), "{helm}");
    assert!(calls[position(&calls, "integration at first with ")].ends_with("their-kubeconfig"), "{calls:#?}");
    let report = qa.report();
    for skipped in ["image-load", "cluster-teardown", "node-image-cache"] {
        assert_eq!(stage(&report, skipped)["outcome"], "skipped", "{skipped}");
    }
    docker(&["rmi", "-f", "stagecoach-test/node:existing", &qa.image]);
}
