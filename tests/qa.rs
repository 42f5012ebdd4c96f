//! `stagecoach integration-test` with kind, helm and kubectl replaced by tests/fake_tool.sh, which
//! records its calls and does what the machine allows for real: helm renders with the real Helm
//! engine (so the tests assert what would be deployed), kind records the ID of the image it is
//! handed, kubectl's config view is the real kubectl. Git, the Docker engine, the registry and the
//! chart engine are real.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::git_server::seed_bare_repo;
use crate::registry::docker_available;
use crate::support::{BIN, Run, copy_dir, fake_tools, git};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

pub(crate) struct Qa {
    _dir: tempfile::TempDir,
    /// Where the fakes keep their state (kind clusters, what helm deployed).
    pub(crate) state: PathBuf,
    /// The TMPDIR of every run: it must be empty after each.
    pub(crate) tmp: PathBuf,
    pub(crate) qa: PathBuf,
    fakes: PathBuf,
    fake_env: Vec<(String, String)>,
    pub(crate) log: PathBuf,
    cache: PathBuf,
    release: PathBuf,
    pub(crate) first_commit: String,
    pub(crate) image: String,
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

/// A QA checkout whose chart was promoted from the first of two DEV commits; `None` when the
/// Helm engine or kubectl is missing here.
pub(crate) fn setup(version: &str, name: &str) -> Option<Qa> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (fakes, fake_env) = fake_tools(d)?;
    // DEV: the integration test script reads a file that changes between the two commits.
    let dev = d.join("dev.git");
    seed_bare_repo(
        &dev,
        &[
            ("stamp.txt", "first\n"),
            (
                "integration.sh",
                "echo \"integration at $(cat stamp.txt) with $KUBECONFIG\" >>\"$FAKE_LOG\"\n\
                 echo \"integration cargo dirs: ${CARGO_TARGET_DIR:-none} ${CARGO_BUILD_BUILD_DIR:-none}\" >>\"$FAKE_LOG\"\n\
                 cp \"$KUBECONFIG\" \"$(dirname \"$FAKE_LOG\")/seen-kubeconfig\"\n",
            ),
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
    let values = std::fs::read_to_string(qa.join("values.yaml"))
        .unwrap()
        .replace("tag: 0.1.0", &format!("tag: {tag}"))
        .replace("repository: 127.0.0.1:5000/bitcoin-operator", "repository: stagecoach-test/qa-op");
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

    tiny_image(&format!("stagecoach-test/node:{name}"), d);
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    Some(Qa {
        log: d.join("calls.log"),
        state: d.to_path_buf(),
        tmp,
        _dir: dir,
        qa,
        fakes,
        fake_env,
        cache,
        release,
        first_commit,
        image,
    })
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
            .env("TMPDIR", &self.tmp)
            .env("STAGECOACH_ARTIFACTS", self.state.join("artifacts"))
            .env("FAKE_LOG", &self.log)
            .envs(self.fake_env.iter().map(|(k, v)| (k, v)));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    pub(crate) fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self.command(args, env).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// The calls, as "tool args" lines in the order they started.
    pub(crate) fn calls(&self) -> Vec<String> {
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

    /// What the last `helm upgrade --install` would have applied, rendered by the real engine.
    fn deployed(&self) -> String {
        std::fs::read_to_string(self.state.join("deployed-bitcoin-operator.yaml")).unwrap_or_default()
    }

    /// The IDs of the images kind was asked to load, by reference.
    pub(crate) fn loaded(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("loaded "))
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect()
    }

    /// Nothing a run wrote may be left in its TMPDIR.
    #[track_caller]
    pub(crate) fn assert_no_temporary_files(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    }

    pub(crate) fn report(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.qa.parent().unwrap().join("run.json")).unwrap()).unwrap()
    }
}

pub(crate) fn stage<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
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
    let Some(qa) = setup("0.1.1-dev.abcdef0", "order") else { return };
    // A target directory shared by all builds on this machine would take the DEV checkout's
    // build for its own workspace's (cargo names members' files by their path in the workspace).
    let shared = [("CARGO_TARGET_DIR", "/tmp/shared-target"), ("CARGO_BUILD_BUILD_DIR", "/tmp/shared-build")];
    let run = qa.run(
        &["--no-progress", "--report", "../run.json", "integration-test"],
        &[&[("FAKE_SLEEP", "kind create:2")][..], &shared].concat(),
    );
    run.success();
    qa.assert_no_temporary_files();
    let calls = qa.calls();
    assert!(calls.iter().any(|c| c == "integration cargo dirs: none none"), "{calls:#?}");
    let work = format!("{}/stagecoach-qa-", qa.tmp.display());
    let order = [
        "helm template bitcoin-operator ".to_string(),
        "kind get clusters".to_string(),
        "kind create cluster --name stagecoach --image stagecoach-test/node:order --wait 120s --kubeconfig".to_string(),
        "kubectl --kubeconfig".to_string(),
        format!("kind load docker-image {} --name stagecoach", qa.image),
        format!("helm upgrade --install bitcoin-operator {work}"),
        "integration at first with ".to_string(),
        "kind delete cluster --name stagecoach".to_string(),
    ];
    let positions: Vec<usize> = order.iter().map(|p| position(&calls, p)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "out of order: {calls:#?}");
    // The package chart-check rendered is the one installed, with the same overrides.
    let (template, helm) = (&calls[positions[0]], &calls[positions[5]]);
    let package = helm.split_whitespace().nth(4).unwrap();
    assert!(package.ends_with("/chart.tgz") && template.contains(package), "{template}\n{helm}");
    assert!(
        helm.contains("--wait --timeout 300s --kubeconfig")
            && helm.contains("--kube-context kind-stagecoach")
            && helm.ends_with("--set-string image.digest=")
            && template.ends_with("--set-string image.digest="),
        "{helm}"
    );
    // What would be deployed (rendered by the real engine) runs the image kind loaded.
    assert!(qa.deployed().contains(&format!("image: \"{}\"", qa.image)), "{}", qa.deployed());
    let local_id =
        Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &qa.image]).output().unwrap();
    assert_eq!(qa.loaded(), [(qa.image.clone(), String::from_utf8_lossy(&local_id.stdout).trim().to_string())]);
    // The tests ran at the chart's appVersion, with the cluster's kubeconfig.
    assert!(
        calls[positions[6]].contains("integration at first with ") && calls[positions[6]].ends_with("/kubeconfig"),
        "{calls:#?}"
    );

    // The plan is the run's own account: a dry run names the same stages, in the same groups,
    // and the very command lines the run started (but for the temporary directory's name).
    let report = qa.report();
    let plan = qa.run(&["--dry-run", "integration-test"], &[]);
    plan.success();
    let work = helm.split_whitespace().nth(4).unwrap().trim_end_matches("/chart.tgz").rsplit('/').next().unwrap();
    let planned = plan.stdout.replace("stagecoach-qa-XXXXXX", work);
    for call in [template, helm, &calls[positions[2]], &calls[positions[4]], &calls[positions[7]]] {
        assert!(planned.contains(call.as_str()), "the plan lacks {call:?}:\n{planned}");
    }
    let names = |key: &str| -> Vec<String> {
        report[key].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
    };
    let stages: Vec<String> = names("stages").into_iter().chain(names("cleanup")).collect();
    let listed: Vec<String> = plan
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("  ") && !l.starts_with("        ") && !l.contains("commit ") && !l.contains("always,")
        })
        .map(|l| {
            l.trim()
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
                .trim()
                .trim_end_matches(" (parallel)")
                .to_string()
        })
        .collect();
    assert_eq!(listed, stages, "{}", plan.stdout);
    assert_eq!(qa.calls().len(), calls.len(), "the dry run started a tool");

    // cluster-up (2 s) and the DEV checkout ran at the same time.
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
    let Some(qa) = setup("0.2.0", "fail") else { return };
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
        // The operator's custom resources, and the logs of every pod of the release.
        "bitcoinnetworks.bitcoin.stagecoach.dev.yaml",
        "release-bitcoin-bitcoin-operator-7d9f.log",
    ] {
        assert!(bundle.join(file).is_file(), "{file} missing from {}", bundle.display());
    }
    assert!(!bundle.join("pod-kube-system-coredns-1.log").exists(), "a ready pod was described");
    let events = std::fs::read_to_string(bundle.join("events.txt")).unwrap();
    assert!(events.starts_with("kubectl output for: --kubeconfig") && events.ends_with(" events -A\n"), "{events}");
    let resources = std::fs::read_to_string(bundle.join("bitcoinnetworks.bitcoin.stagecoach.dev.yaml")).unwrap();
    assert!(resources.ends_with("get bitcoinnetworks.bitcoin.stagecoach.dev -A -o yaml\n"), "{resources}");
    let logs = std::fs::read_to_string(bundle.join("release-bitcoin-bitcoin-operator-7d9f.log")).unwrap();
    assert!(logs.ends_with("logs -n bitcoin bitcoin-operator-7d9f --all-containers\n"), "{logs}");
    qa.assert_no_temporary_files();
    let calls = qa.calls();
    assert!(calls.iter().any(|c| c.starts_with("kind delete cluster")), "{calls:#?}");
    assert!(!calls.iter().any(|c| c.starts_with("integration")), "tests ran after a failed install");
    assert_eq!(git(&qa.release, &["rev-list", "--count", "main"]), "1", "a failed run released");

    // --keep-cluster leaves it running.
    std::fs::remove_file(&qa.log).unwrap();
    let kept = qa.run(&["--no-progress", "integration-test", "--keep-cluster"], &[("FAKE_FAIL", "helm upgrade")]);
    assert_eq!(kept.code, 1);
    assert!(!qa.calls().iter().any(|c| c.starts_with("kind delete")), "{:#?}", qa.calls());
    // It says where its kubeconfig is; that file (only the owner may read it) is all it leaves.
    let kubeconfig = kept
        .stderr
        .split("kubeconfig: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no kubeconfig named:\n{}", kept.stderr));
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    assert!(text.contains("current-context: kind-stagecoach"), "{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(kubeconfig).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    std::fs::remove_file(kubeconfig).unwrap();
    qa.assert_no_temporary_files();
    docker(&["rmi", "-f", "stagecoach-test/node:fail", &qa.image]);
}

#[test]
fn ctrl_c_or_sigterm_stops_the_run_ends_its_programs_and_the_cluster_is_deleted() {
    if !docker_available() {
        return;
    }
    // (signal, exit code, how long the fake helm sleeps: a number that names its process)
    let cases = [("INT", 130, "30.61"), ("TERM", 143, "30.62")];
    for (signal, code, sleep) in cases {
        let Some(qa) = setup("0.2.0", &format!("sig{}", signal.to_lowercase())) else { return };
        let mut child = qa
            .command(&["--no-progress", "integration-test"], &[("FAKE_SLEEP", &format!("helm upgrade:{sleep}"))])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !qa.calls().iter().any(|c| c.starts_with("helm upgrade")) {
            assert!(Instant::now() < deadline, "{signal}: helm was never called: {:#?}", qa.calls());
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent = Instant::now();
        assert!(
            Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap().success()
        );
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        assert!(sent.elapsed() < Duration::from_secs(20), "{signal}: took {:?} to stop", sent.elapsed());
        let calls = qa.calls();
        assert!(calls.iter().any(|c| c.starts_with("kind delete cluster --name stagecoach")), "{signal}: {calls:#?}");
        assert!(!calls.iter().any(|c| c.starts_with("integration")), "{signal}");
        // The helm it was running, and the sleep that helm started, are gone with it.
        let running = Command::new("pgrep").args(["-f", &format!("sleep {sleep}")]).output().unwrap();
        assert!(running.stdout.is_empty(), "{signal}: still running: {}", String::from_utf8_lossy(&running.stdout));
        qa.assert_no_temporary_files();
        docker(&["rmi", "-f", &format!("stagecoach-test/node:sig{}", signal.to_lowercase()), &qa.image]);
    }
}

#[test]
fn a_release_version_that_passes_is_published() {
    if !docker_available() {
        return;
    }
    let Some(qa) = setup("0.2.0", "release") else { return };
    qa.run(&["--no-progress", "--report", "../run.json", "integration-test"], &[]).success();
    let index = git(&qa.release, &["show", "main:index.yaml"]);
    let report = qa.report();
    let digest =
        stage(&report, "release")["details"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    assert!(index.contains("version: 0.2.0") && index.contains(&format!("digest: {digest}")), "{index}");
    let files = git(&qa.release, &["ls-tree", "--name-only", "main"]);
    assert!(files.contains("bitcoin-operator-0.2.0.tgz"), "{files}");
    // The package helm installed is the one published, and the one the run record names.
    let installed = std::fs::read_to_string(qa.state.join("deployed-bitcoin-operator.chart")).unwrap();
    assert_eq!(installed.trim(), digest);
    assert_eq!(stage(&report, "helm-install")["details"]["tested_chart_digest"], digest.as_str());
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
fn an_existing_cluster_is_used_as_it_is_through_only_its_context() {
    if !docker_available() {
        return;
    }
    let Some(qa) = setup("0.1.1-dev.abcdef0", "existing") else { return };
    let file = qa.qa.join("pipelines/stagecoach.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("cluster:").unwrap();
    let end = text.find("commands:").unwrap();
    let text = format!("{}cluster:\n  provider: existing\n  context: staging\n{}", &text[..start], &text[end..]);
    std::fs::write(&file, text).unwrap();
    git(&qa.qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "existing cluster"]);
    // A KUBECONFIG list: the context and cluster in one file, its user in the other, and a
    // production context beside them that nothing of the run may see.
    let (a, b) = (qa.state.join("a.yaml"), qa.state.join("b.yaml"));
    std::fs::write(
        &a,
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\nclusters:\n- name: prod\n  cluster: {server: https://prod.example:6443}\n- name: staging\n  cluster: {server: https://staging.example:6443}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: admin}\n- name: staging\n  context: {cluster: staging, user: ci, namespace: qa}\nusers:\n- name: admin\n  user: {token: prod-secret}\n",
    )
    .unwrap();
    std::fs::write(&b, "apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user: {token: ci-token}\n").unwrap();
    let list = format!("{}:{}", a.display(), b.display());

    // No local Docker engine is needed when the cluster pulls the image itself.
    let run = qa.run(
        &["--no-progress", "--report", "../run.json", "integration-test"],
        &[("KUBECONFIG", &list), ("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    run.success();
    qa.assert_no_temporary_files();
    let calls = qa.calls();
    assert!(!calls.iter().any(|c| c.starts_with("kind")), "kind was called: {calls:#?}");
    assert!(!calls.iter().any(|c| c.contains(" nodes")), "needed access to nodes: {calls:#?}");
    assert_eq!(
        calls[position(&calls, "kubectl config view")],
        "kubectl config view --minify --flatten --raw --context staging"
    );
    // helm, kubectl and the tests all got the minified kubeconfig, and no context flag.
    let minified = format!("--kubeconfig {}/stagecoach-qa-", qa.tmp.display());
    let helm = &calls[position(&calls, "helm upgrade --install")];
    assert!(helm.contains(&minified) && !helm.contains("--kube-context"), "{helm}");
    let version = &calls[position(&calls, "kubectl --kubeconfig")];
    assert!(
        version.starts_with(&format!("kubectl {minified}"))
            && version.ends_with("version --output=json --request-timeout=30s"),
        "{version}"
    );
    let tests = &calls[position(&calls, "integration at first with ")];
    assert!(
        tests.contains(&format!("{}/stagecoach-qa-", qa.tmp.display())) && tests.ends_with("/kubeconfig"),
        "{tests}"
    );
    let seen = std::fs::read_to_string(qa.state.join("seen-kubeconfig")).unwrap();
    assert!(seen.contains("current-context: staging") && seen.contains("token: ci-token"), "{seen}");
    assert!(!seen.contains("prod"), "the test command could reach another context:\n{seen}");
    // The cluster pulls the image as the chart names it; nothing is loaded.
    assert!(qa.deployed().contains(&format!("image: \"{}\"", qa.image)), "{}", qa.deployed());
    let report = qa.report();
    for skipped in ["image-load", "cluster-teardown", "node-image-cache"] {
        assert_eq!(stage(&report, skipped)["outcome"], "skipped", "{skipped}");
    }
    docker(&["rmi", "-f", "stagecoach-test/node:existing", &qa.image]);
}

/// Replaces `from` with `to` in a file of the QA checkout and commits it.
pub(crate) fn edit_qa(qa: &Qa, file: &str, from: &str, to: &str) {
    let path = qa.qa.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    git(&qa.qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "edit"]);
}

#[test]
fn the_image_qa_deploys_is_the_image_that_was_pushed() {
    if !docker_available() {
        return;
    }
    let Some(registry) = crate::registry::Registry::start(None) else { return };
    let Some(qa) = setup("0.1.1-dev.abcdef0", "pushed") else { return };
    // The pushed image, at a repository that is not the chart's default.
    let repository = format!("{}/qa-pushed", registry.host);
    let tagged = format!("{repository}:qa-pushed");
    tiny_image(&tagged, &qa.state);
    assert!(docker(&["push", "-q", &tagged]));
    let inspect = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}} {{json .RepoDigests}}", &tagged])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout).to_string();
    let pushed_id = inspect.split_whitespace().next().unwrap().to_string();
    let digest = inspect.split(&format!("{repository}@")).nth(1).unwrap()[..71].to_string();
    // The registry's own word: the manifest under that digest and the config it names.
    let manifest = Command::new("curl")
        .args([
            "-fsS",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!("http://{}/v2/qa-pushed/manifests/{digest}", registry.host))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    assert_eq!(config_digest, pushed_id);

    edit_qa(&qa, "values.yaml", "repository: stagecoach-test/qa-op", &format!("repository: {repository}"));
    edit_qa(&qa, "values.yaml", "digest: \"\"", &format!("digest: \"{digest}\""));
    // The QA repository alone, rendered with no overrides, pins the pushed image.
    let python = crate::support::helm_engine().unwrap();
    let alone = Command::new(&python)
        .arg(Path::new(WORKSPACE).join("tests/helm/render.py"))
        .args(["template", "bitcoin-operator", qa.qa.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(alone.status.success(), "{}", String::from_utf8_lossy(&alone.stderr));
    assert!(String::from_utf8_lossy(&alone.stdout).contains(&format!("image: \"{tagged}@{digest}\"")));

    // The local engine's tag now names other bytes (a local rebuild): QA must still load the
    // pushed image, found by digest.
    tiny_image("stagecoach-test/rebuilt:pushed", &qa.state);
    assert!(docker(&["tag", "stagecoach-test/rebuilt:pushed", &tagged]));
    qa.run(&["--no-progress", "--report", "../run.json", "integration-test"], &[]).success();
    qa.assert_no_temporary_files();
    // pushed digest = values digest, and what kind loaded is the pushed config, by content.
    assert_eq!(qa.loaded(), [(tagged.clone(), config_digest.clone())]);
    // kind runs the loaded image by tag: a digest reference would make the kubelet pull.
    let deployed = qa.deployed();
    assert!(deployed.contains(&format!("image: \"{tagged}\"")), "{deployed}");
    let report = qa.report();
    assert_eq!(stage(&report, "image-prepare")["details"]["image_id"], pushed_id.as_str());
    assert_eq!(stage(&report, "image-load")["details"]["loaded_image_id"], pushed_id.as_str());
    docker(&["rmi", "-f", &tagged, "stagecoach-test/rebuilt:pushed", "stagecoach-test/node:pushed", &qa.image]);
}

#[test]
fn a_chart_that_deploys_another_image_stops_before_any_cluster_exists() {
    if !docker_available() {
        return;
    }
    let Some(qa) = setup("0.1.1-dev.abcdef0", "elsewhere") else { return };
    // The template ignores the repository value: it would deploy an image nobody built.
    edit_qa(&qa, "templates/deployment.yaml", "{{ .Values.image.repository }}:", "127.0.0.1:5000/bitcoin-operator:");
    let run = qa.run(&["--no-progress", "integration-test"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the chart would deploy `127.0.0.1:5000/bitcoin-operator:qa-elsewhere` (Deployment/bitcoin-operator, container operator, from bitcoin-operator/templates/deployment.yaml), but this run prepared `{}` (values image.repository, image.tag, image.digest)",
            qa.image
        )),
        "{}",
        run.stderr
    );
    let calls = qa.calls();
    assert!(!calls.iter().any(|c| c.starts_with("kind") || c.starts_with("helm upgrade")), "{calls:#?}");
    qa.assert_no_temporary_files();
    docker(&["rmi", "-f", "stagecoach-test/node:elsewhere", &qa.image]);
}

#[test]
fn a_cluster_this_run_did_not_create_survives() {
    if !docker_available() {
        return;
    }
    let Some(qa) = setup("0.1.1-dev.abcdef0", "foreign") else { return };
    std::fs::write(qa.state.join("kind-clusters"), "stagecoach\n").unwrap();
    let run = qa.run(&["--no-progress", "integration-test"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("a kind cluster named `stagecoach` exists already and this run did not create it")
            && run.stderr.contains("kind delete cluster --name stagecoach")
            && run.stderr.contains("cluster.provider: existing"),
        "{}",
        run.stderr
    );
    let calls = qa.calls();
    assert!(!calls.iter().any(|c| c.starts_with("kind create") || c.starts_with("kind delete")), "{calls:#?}");
    assert_eq!(std::fs::read_to_string(qa.state.join("kind-clusters")).unwrap(), "stagecoach\n");
    qa.assert_no_temporary_files();
    docker(&["rmi", "-f", "stagecoach-test/node:foreign", &qa.image]);
}

#[test]
fn faults_on_the_qa_side_table() {
    if !docker_available() {
        return;
    }
    // (row, what fails and how, what the error says)
    let rows: [(&str, &[(&str, &str)], &str); 2] = [
        (
            "kind cannot create the cluster",
            &[
                ("FAKE_FAIL", "kind create"),
                ("FAKE_FAIL_MESSAGE", "ERROR: failed to create cluster: node(s) already exist"),
            ],
            "ERROR: failed to create cluster: node(s) already exist",
        ),
        (
            "helm times out",
            &[("FAKE_FAIL", "helm upgrade"), ("FAKE_FAIL_MESSAGE", "Error: UPGRADE FAILED: context deadline exceeded")],
            "Error: UPGRADE FAILED: context deadline exceeded",
        ),
    ];
    for (index, (row, env, want)) in rows.into_iter().enumerate() {
        let Some(qa) = setup("0.2.0", &format!("fault{index}")) else { return };
        let run = qa.run(&["--no-progress", "integration-test"], env);
        assert_eq!(run.code, 1, "{row}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{row}: {}", run.stderr);
        let calls = qa.calls();
        assert!(!calls.iter().any(|c| c.starts_with("integration")), "{row}: tests ran");
        assert_eq!(git(&qa.release, &["rev-list", "--count", "main"]), "1", "{row}: a failed run released");
        // What kind may have made of the cluster before it failed is deleted all the same.
        assert!(calls.iter().any(|c| c.starts_with("kind delete cluster")), "{row}: {calls:#?}");
        qa.assert_no_temporary_files();
        docker(&["rmi", "-f", &format!("stagecoach-test/node:fault{index}"), &qa.image]);
    }
}

#[test]
fn more_signals_during_cleanup_do_not_stop_the_cluster_from_being_deleted() {
    if !docker_available() {
        return;
    }
    let Some(qa) = setup("0.2.0", "impatient") else { return };
    let mut child = qa
        .command(&["--no-progress", "integration-test"], &[("FAKE_SLEEP", "helm upgrade:30.81;kind delete:2")])
        .spawn()
        .unwrap();
    let wait_for_call = |prefix: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !qa.calls().iter().any(|c| c.starts_with(prefix)) {
            assert!(Instant::now() < deadline, "{prefix} was never called: {:#?}", qa.calls());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let signal = |name: &str| {
        assert!(Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap().success());
    };
    wait_for_call("helm upgrade");
    signal("TERM");
    // Diagnostics first (abandoned by the next signal), then the deletion, which runs on.
    wait_for_call("kind delete cluster");
    signal("INT");
    signal("INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "the first signal decides the exit code");
    let log = std::fs::read_to_string(&qa.log).unwrap();
    assert!(
        log.lines().any(|l| l.starts_with("end ")
            && l.contains("kind delete cluster --name stagecoach")
            && !l.ends_with("(failed)")),
        "the deletion did not finish:\n{log}"
    );
    assert!(!std::fs::read_to_string(qa.state.join("kind-clusters")).unwrap_or_default().contains("stagecoach"));
    qa.assert_no_temporary_files();
    docker(&["rmi", "-f", "stagecoach-test/node:impatient", &qa.image]);
}
