//! `stagecoach integration-test` on real kind clusters, as a user's QA CI runs it: the kind CLI,
//! node image, kubectl and the Helm 4 and Helm 3 CLIs of `.ci/kube-tools`, a Docker engine, a
//! registry on loopback, and git. A DEV repository made of this working tree is built and
//! deployed by `stagecoach build-and-deploy` (the image is the static operator binary .ci/run
//! builds, pushed to the registry), then its QA repository is tested on kind: the node image
//! saved and restored from the cache, the pushed image loaded and found by its ID inside the
//! node, the chart installed with `--wait` until the operator is Ready by its own probes, the
//! operator's kind tests run at the chart's appVersion against the stand-in bitcoind
//! (`.ci/bitcoind-standin`), and nothing of kind left behind. Then the failure paths.
//!
//! The tests run one at a time (`.config/nextest.toml`, and a lock for `cargo test`): they share
//! the engine's node image and a node takes most of the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::os::unix::process::ExitStatusExt as _;

use serde_json::Value;

use crate::registry::{Registry, docker_available};
use crate::support::{BIN, Run, copy_dir, git, missing_component, stagecoach};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
const HOW: &str = crate::control_plane::HOW;
const COSIGN_PASSWORD: &str = "real-kind-c0sign";

/// What .ci/kube-tools and .ci/bitcoind-standin printed, and the static operator binary.
struct Parts {
    kind: PathBuf,
    node_image: String,
    /// helm (Helm 4), kubectl and kind.
    tools: PathBuf,
    helm3: PathBuf,
    standin: String,
    operator: PathBuf,
    /// The real cosign, which makes the key pair DEV signs with and QA verifies with.
    cosign: PathBuf,
}

fn parts() -> Option<Parts> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(kind), Some(node_image), Some(tools), Some(helm3)) = (
        var("STAGECOACH_KIND"),
        var("STAGECOACH_KIND_NODE_IMAGE"),
        var("STAGECOACH_TOOLS_PATH"),
        var("STAGECOACH_HELM3"),
    ) else {
        missing_component("kind, its node image, helm and kubectl (STAGECOACH_KIND…)", HOW);
        return None;
    };
    let Some(standin) = var("STAGECOACH_BITCOIND_STANDIN") else {
        missing_component(
            "the stand-in bitcoind image (STAGECOACH_BITCOIND_STANDIN)",
            "eval \"$(.ci/bitcoind-standin)\"",
        );
        return None;
    };
    let Some(cosign) = var("STAGECOACH_COSIGN") else {
        missing_component("the cosign CLI (STAGECOACH_COSIGN)", "eval \"$(.ci/kube-tools)\"");
        return None;
    };
    let target = var("CARGO_TARGET_DIR").map_or_else(|| Path::new(WORKSPACE).join("target"), PathBuf::from);
    let operator = target.join("x86_64-unknown-linux-gnu/image/operator");
    if !operator.is_file() {
        missing_component(
            "the static operator binary",
            "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --profile image --target x86_64-unknown-linux-gnu -p bitcoin-operator --bin operator",
        );
        return None;
    }
    Some(Parts {
        kind: kind.into(),
        node_image,
        tools: tools.into(),
        helm3: helm3.into(),
        standin,
        operator,
        cosign: cosign.into(),
    })
}

/// One real_kind test at a time in this process (nextest runs them one at a time across processes).
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What kind leaves on the engine for a cluster: its node containers, the engine's volumes, and
/// whether kind's network exists.
fn kind_leftovers(cluster: &str) -> (String, Vec<String>, bool) {
    let containers = docker(&["ps", "-a", "--filter", &format!("label=io.x-k8s.kind.cluster={cluster}"), "-q"]);
    let volumes = docker(&["volume", "ls", "-q"]).lines().map(String::from).collect();
    let network = Command::new("docker").args(["network", "inspect", "kind"]).output().unwrap().status.success();
    (containers.trim().to_string(), volumes, network)
}

/// The files of this working tree that git would commit, as the one commit of a new repository.
fn dev_repository(dir: &Path, pipeline: &str) -> PathBuf {
    let source = dir.join("dev-src");
    let files = git(Path::new(WORKSPACE), &["ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let from = Path::new(WORKSPACE).join(file);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = source.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    std::fs::write(source.join("pipelines/stagecoach.yaml"), pipeline).unwrap();
    git(&source, &["init", "-q", "-b", "main"]);
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "-q", "-m", "the working tree"]);
    source
}

/// A QA flow: DEV (this working tree), QA (seeded from chart-template) and RELEASE repositories,
/// the registry, and the directory each run's TMPDIR, artifacts and evidence go into.
struct Flow {
    dir: tempfile::TempDir,
    registry: Registry,
    parts: Parts,
    qa: PathBuf,
    tmp: PathBuf,
    /// The pipeline files' repositories, image, chart and cluster sections.
    repositories: String,
}

impl Flow {
    /// `integration` is the QA pipeline's integration_tests command; `timeout` its install_timeout.
    fn new(parts: Parts, cluster: &str, integration: &str, timeout: &str) -> Option<Self> {
        let registry = Registry::start(None)?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (dev, qa, release) = (d.join("dev.git"), d.join("qa.git"), d.join("release.git"));
        // DEV signs the image with a key pair cosign made; QA verifies it with the public key.
        std::fs::create_dir_all(d.join("keys")).unwrap();
        let made = Command::new(&parts.cosign)
            .arg("generate-key-pair")
            .current_dir(d.join("keys"))
            .env("COSIGN_PASSWORD", COSIGN_PASSWORD)
            .output()
            .unwrap();
        assert!(made.status.success(), "cosign generate-key-pair: {}", String::from_utf8_lossy(&made.stderr));
        let repositories = format!(
            "repositories:\n  dev:\n    url: file://{}\n  qa:\n    url: file://{}\n  release:\n    url: file://{}\nimage:\n  repository: {}/bitcoin-operator\n  dockerfile: operator/Dockerfile\n  verify_key: cosign.pub\nchart:\n  name: bitcoin-operator\ncluster:\n  provider: kind\n  name: {cluster}\n  node_image: {}\n  cache_dir: {}\n  install_timeout: {timeout}\n",
            dev.display(),
            qa.display(),
            release.display(),
            registry.host,
            parts.node_image,
            d.join("cache").display()
        );
        let dev_pipeline = format!(
            "version: 1\n{repositories}commands:\n  build:\n    run: mkdir -p target/image && cp \"$STAGECOACH_TEST_OPERATOR\" target/image/operator\n  unit_tests:\n    run: 'true'\n  integration_tests:\n    run: 'true'\n"
        );
        let source = dev_repository(d, &dev_pipeline);
        git(d, &["clone", "-q", "--bare", source.to_str().unwrap(), dev.to_str().unwrap()]);
        crate::git_server::seed_bare_repo(&release, &[("README.md", "charts\n")]);
        let seed = d.join("qa-seed");
        copy_dir(&Path::new(WORKSPACE).join("chart-template"), &seed);
        std::fs::create_dir_all(seed.join("pipelines")).unwrap();
        std::fs::write(seed.join("pipelines/stagecoach.yaml"), qa_pipeline(&repositories, integration)).unwrap();
        std::fs::copy(d.join("keys/cosign.pub"), seed.join("cosign.pub")).unwrap();
        // The networks the operator makes run the stand-in: no bitcoind image can be pulled here.
        let values = seed.join("values.yaml").display().to_string();
        stagecoach(d, &["chart", "set", &values, &format!("bitcoind.image={}", parts.standin)], &[]).success();
        git(&seed, &["init", "-q", "-b", "main"]);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "qa"]);
        git(d, &["clone", "-q", "--bare", seed.to_str().unwrap(), qa.to_str().unwrap()]);
        let tmp = d.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(d.join("evidence")).unwrap();
        let flow = Flow { qa: d.join("qa-work"), dir, registry, parts, tmp, repositories };
        Some(flow)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The environment of a run: the tools first on PATH (`helm` first of all, when given), the
    /// cargo and rustup of the tests, a TMPDIR that must be empty after every run.
    fn env(&self, helm: Option<&Path>) -> Vec<(String, String)> {
        let mut path = vec![self.parts.tools.display().to_string()];
        if let Some(helm) = helm {
            let dir = self.path().join("helm3");
            std::fs::create_dir_all(&dir).unwrap();
            let link = dir.join("helm");
            if !link.exists() {
                std::os::unix::fs::symlink(helm, link).unwrap();
            }
            path.insert(0, dir.display().to_string());
        }
        path.push(std::env::var("PATH").unwrap_or_default());
        let home = std::env::var("HOME").unwrap_or_default();
        let keep = |name: &str, default: String| (name.to_string(), std::env::var(name).unwrap_or(default));
        vec![
            ("PATH".into(), path.join(":")),
            ("TMPDIR".into(), self.tmp.display().to_string()),
            ("STAGECOACH_ARTIFACTS".into(), self.path().join("artifacts").display().to_string()),
            ("STAGECOACH_TEST_OPERATOR".into(), self.parts.operator.display().to_string()),
            ("STAGECOACH_BITCOIND_STANDIN".into(), self.parts.standin.clone()),
            ("EVIDENCE".into(), self.path().join("evidence").display().to_string()),
            ("STAGECOACH_TEST_CARGO_TARGET".into(), format!("{}/stagecoach-tests/real-kind-target", cache_home())),
            keep("CARGO_HOME", format!("{home}/.cargo")),
            keep("RUSTUP_HOME", format!("{home}/.rustup")),
        ]
    }

    fn command(&self, dir: &Path, args: &[&str], helm: Option<&Path>) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(dir).env_clear().env("HOME", self.path()).envs(self.env(helm));
        cmd
    }

    fn run(&self, dir: &Path, args: &[&str], helm: Option<&Path>) -> Run {
        self.command(dir, args, helm).output().unwrap().into()
    }

    /// build-and-deploy in a DEV checkout, its image of the static `operator` program: the image
    /// pushed, QA promoted.
    fn build_and_deploy(&self, operator: &Path) {
        let work = self.path().join("dev-work");
        git(self.path(), &["clone", "-q", self.path().join("dev.git").to_str().unwrap(), work.to_str().unwrap()]);
        let mut cmd = self.command(&work, &["--no-progress", "build-and-deploy"], None);
        let key = self.path().join("keys/cosign.key");
        let run: Run = cmd
            .env("STAGECOACH_TEST_OPERATOR", operator)
            .env("STAGECOACH_COSIGN_KEY", key)
            .env("STAGECOACH_COSIGN_PASSWORD", COSIGN_PASSWORD)
            .output()
            .unwrap()
            .into();
        run.success();
    }

    /// A fresh clone of the QA repository, as a QA CI job starts.
    fn qa_checkout(&self) -> &Path {
        if self.qa.exists() {
            std::fs::remove_dir_all(&self.qa).unwrap();
        }
        git(self.path(), &["clone", "-q", self.path().join("qa.git").to_str().unwrap(), self.qa.to_str().unwrap()]);
        &self.qa
    }

    fn integration_test(&self, report: &str, helm: Option<&Path>) -> Run {
        let report = self.path().join(report).display().to_string();
        self.run(&self.qa, &["--no-progress", "--report", &report, "integration-test"], helm)
    }

    fn report(&self, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path().join(name)).unwrap()).unwrap()
    }

    fn evidence(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join("evidence").join(name))
            .unwrap_or_else(|e| panic!("evidence {name}: {e}"))
    }

    #[track_caller]
    fn assert_no_temporary_files(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    }

    fn values(&self) -> Value {
        serde_saphyr::from_str(&std::fs::read_to_string(self.qa.join("values.yaml")).unwrap()).unwrap()
    }
}

/// The QA repository's pipeline file, with `integration` (a shell script) as its integration tests.
fn qa_pipeline(repositories: &str, integration: &str) -> String {
    let script: String = integration.lines().map(|line| format!("      {line}\n")).collect();
    format!(
        "version: 1\n{repositories}commands:\n  build:\n    run: 'true'\n  unit_tests:\n    run: 'true'\n  integration_tests:\n    run: |\n{script}    timeout: 20m\n"
    )
}

/// `$XDG_CACHE_HOME`, else `~/.cache`.
fn cache_home() -> String {
    std::env::var("XDG_CACHE_HOME")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()))
}

fn stage<'a>(report: &'a Value, name: &str) -> &'a Value {
    let stages = report["stages"].as_array().unwrap().iter().chain(report["cleanup"].as_array().unwrap());
    stages.clone().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no stage {name} in {report:#}"))
}

/// The operator's kind tests, compiled in the DEV checkout at appVersion. The dependencies'
/// builds are kept between runs outside the checkout (the stage gives the command no target
/// directory); the checkout's own crates are removed from it first, so they always compile from
/// the checkout's sources and the directory does not grow run by run.
const OPERATOR_KIND_TESTS: &str = r#"target=$STAGECOACH_TEST_CARGO_TARGET
rm -rf "$target"/debug/deps/*bitcoin_operator* "$target"/debug/deps/operator-* "$target"/debug/.fingerprint/bitcoin-operator-* "$target"/debug/incremental
CARGO_TARGET_DIR=$target cargo test -p bitcoin-operator --locked --test operator -- --ignored kind:: --skip kind::real_bitcoind
"#;

/// What the integration tests write about the cluster they run against, before they run.
const EVIDENCE: &str = r#"set -e
image=$(kubectl get deployment bitcoin-operator -o jsonpath='{.spec.template.spec.containers[0].image}')
docker exec "$CLUSTER-control-plane" crictl inspecti --output json "$image" > "$EVIDENCE/inspecti.json"
kubectl get deployment bitcoin-operator -o json > "$EVIDENCE/deployment.json"
kubectl get pods -l app.kubernetes.io/instance=bitcoin-operator -o json > "$EVIDENCE/pods.json"
git rev-parse HEAD > "$EVIDENCE/commit"
helm version --short > "$EVIDENCE/helm-version"
"#;

#[test]
fn integration_test_on_kind_deploys_the_pushed_image_runs_the_operator_tests_and_restores_the_node_image_from_cache() {
    let _one = exclusive();
    if !docker_available() {
        return;
    }
    let Some(parts) = parts() else { return };
    let cluster = "sc-happy";
    let integration = format!("CLUSTER={cluster}\n{EVIDENCE}{OPERATOR_KIND_TESTS}");
    let Some(flow) = Flow::new(parts, cluster, &integration, "3m") else { return };
    let before = kind_leftovers(cluster);
    assert!(before.0.is_empty(), "a cluster {cluster} exists already");
    flow.build_and_deploy(&flow.parts.operator);
    let qa = flow.qa_checkout();
    let values = flow.values();
    let (repository, tag, digest) = (
        values["image"]["repository"].as_str().unwrap(),
        values["image"]["tag"].as_str().unwrap(),
        values["image"]["digest"].as_str().unwrap(),
    );
    assert_eq!(repository, format!("{}/bitcoin-operator", flow.registry.host));
    // What the registry holds under that digest: the config is the image's ID.
    let name = "bitcoin-operator";
    assert_eq!(flow.registry.digest(name, tag).as_deref(), Some(digest));
    let manifest = flow.registry.manifest(name, digest).expect("the pushed manifest");
    let pushed_id = manifest["config"]["digest"].as_str().unwrap().to_string();
    let app_version = std::fs::read_to_string(qa.join("Chart.yaml")).unwrap();
    let app_version =
        app_version.lines().find_map(|l| l.strip_prefix("appVersion: ")).unwrap().trim_matches('"').to_string();

    // The first run: Helm 4, no node image in the cache yet.
    let started = Instant::now();
    let run = flow.integration_test("run1.json", None);
    let took = started.elapsed();
    run.success();
    eprintln!("integration-test on kind, cold node image cache: {:.0}s", took.as_secs_f64());
    flow.assert_no_temporary_files();
    let report = flow.report("run1.json");
    // Verified before anything was deployed: the image DEV signed, by the key QA holds.
    let verified = stage(&report, "image-verify");
    assert_eq!(verified["details"]["image"], format!("{repository}@{digest}").as_str(), "{verified:#}");
    assert!(verified["details"]["verified_with"].as_str().is_some_and(|k| k.starts_with("SHA256:")), "{verified:#}");
    eprintln!("image-verify on the pushed operator image: {} ms", verified["duration_ms"]);
    assert_eq!(stage(&report, "image-prepare")["details"]["image_id"], pushed_id.as_str());
    assert_eq!(stage(&report, "image-load")["details"]["loaded_image_id"], pushed_id.as_str());
    assert!(
        run.stderr.contains(&format!("node {cluster}-control-plane holds {repository}:{tag} as {pushed_id}")),
        "{}",
        run.stderr
    );
    let saved = stage(&report, "node-image-cache")["details"]["node_image_saved"]
        .as_str()
        .expect("the node image saved")
        .to_string();
    assert!(Path::new(&saved).is_file());
    // Inside the node, by the node's own runtime: the pushed image, by its ID.
    let inspecti: Value = serde_json::from_str(&flow.evidence("inspecti.json")).unwrap();
    assert_eq!(inspecti["status"]["id"], pushed_id.as_str(), "{inspecti:#}");
    let deployment: Value = serde_json::from_str(&flow.evidence("deployment.json")).unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{repository}:{tag}").as_str()
    );
    assert_eq!(deployment["status"]["readyReplicas"], 1, "{:#}", deployment["status"]);
    let pods: Value = serde_json::from_str(&flow.evidence("pods.json")).unwrap();
    let pod = &pods["items"][0];
    assert_eq!(pod["status"]["containerStatuses"][0]["ready"], true, "{:#}", pod["status"]);
    assert_eq!(
        flow.evidence("commit").trim(),
        app_version,
        "the tests ran at another commit than the chart's appVersion"
    );
    assert!(flow.evidence("helm-version").starts_with("v4."), "not Helm 4: {}", flow.evidence("helm-version"));
    assert!(
        run.stderr.contains("kind::a_network_of_three_becomes_ready_and_meshed_and_its_nodes_have_dns_names ... ok"),
        "{}",
        run.stderr
    );
    // Nothing of kind is left: no node, no volume, and its network only if it was there before.
    let after = kind_leftovers(cluster);
    assert!(after.0.is_empty(), "kind containers left: {}", after.0);
    assert_eq!(after.1, before.1, "volumes left");
    assert_eq!(after.2, before.2, "kind's network: before {}, after {}", before.2, after.2);

    // The second run, with Helm 3: the node image comes from the cache, not from a rebuild.
    docker(&["rmi", &flow.parts.node_image]);
    let evidence_only = qa_pipeline(&flow.repositories, &format!("CLUSTER={cluster}\n{EVIDENCE}"));
    std::fs::write(flow.qa.join("pipelines/stagecoach.yaml"), evidence_only).unwrap();
    std::fs::remove_file(flow.path().join("evidence/inspecti.json")).unwrap();
    let started = Instant::now();
    let run = flow.integration_test("run2.json", Some(&flow.parts.helm3));
    let took = started.elapsed();
    run.success();
    eprintln!("integration-test on kind, warm node image cache, Helm 3: {:.0}s", took.as_secs_f64());
    assert!(run.stderr.contains(&format!("node image {} from cache {saved}", flow.parts.node_image)), "{}", run.stderr);
    assert!(docker(&["image", "inspect", &flow.parts.node_image]).contains("Id"));
    assert!(flow.evidence("helm-version").starts_with("v3."), "not Helm 3: {}", flow.evidence("helm-version"));
    let inspecti: Value = serde_json::from_str(&flow.evidence("inspecti.json")).unwrap();
    assert_eq!(inspecti["status"]["id"], pushed_id.as_str());
    assert_eq!(stage(&flow.report("run2.json"), "node-image-cache")["outcome"], "skipped");
    flow.assert_no_temporary_files();
    assert!(kind_leftovers(cluster).0.is_empty());
}

/// The chart's readiness probe asks a path the operator never answers with 200.
fn never_ready(qa: &Path) {
    let template = qa.join("templates/deployment.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    assert!(text.contains("path: /readyz"));
    std::fs::write(&template, text.replace("path: /readyz", "path: /never-ready")).unwrap();
}

#[test]
fn an_image_that_crashes_and_a_deployment_never_ready_fail_within_the_install_timeout_with_diagnostics() {
    let _one = exclusive();
    if !docker_available() {
        return;
    }
    // (case, the program the image runs, how the QA chart is changed, an event reason the
    // bundle must hold, what the pod's log must say)
    let cases: [(&str, &str, fn(&Path), &str, &str); 2] = [
        // busybox run as /operator knows no such applet and exits at once.
        ("an image that crashes at start", "/bin/busybox", |_| {}, "BackOff", "applet not found"),
        ("a Deployment whose readiness probe never passes", "", never_ready, "Unhealthy", "bitcoin-operator starting"),
    ];
    for (index, (case, program, change, reason, logged)) in cases.into_iter().enumerate() {
        let Some(parts) = parts() else { return };
        let cluster = format!("sc-fail{index}");
        let Some(flow) = Flow::new(parts, &cluster, "echo the tests must not run >\"$EVIDENCE/tests-ran\"", "25s")
        else {
            return;
        };
        let program = if program.is_empty() { flow.parts.operator.clone() } else { PathBuf::from(program) };
        flow.build_and_deploy(&program);
        let qa = flow.qa_checkout().to_path_buf();
        change(&qa);
        let started = Instant::now();
        let run = flow.integration_test("run.json", None);
        let took = started.elapsed();
        eprintln!("{case}: failed after {:.0}s", took.as_secs_f64());
        assert_eq!(run.code, 1, "{case}: {}", run.stderr);
        // 25 s of install_timeout, the cluster before it and the diagnostics and teardown after.
        assert!(took < Duration::from_secs(25 + 150), "{case}: took {took:?}");
        assert!(run.stderr.contains("error: stage `helm-install` failed"), "{case}: {}", run.stderr);
        let report = flow.report("run.json");
        assert_eq!(stage(&report, "helm-install")["outcome"], "failed", "{case}");
        assert_eq!(stage(&report, "integration-tests")["outcome"], "not-run", "{case}");
        assert_eq!(stage(&report, "cluster-teardown")["outcome"], "passed", "{case}");
        assert!(!flow.path().join("evidence/tests-ran").exists(), "{case}: the tests ran");
        let bundle = PathBuf::from(stage(&report, "diagnostics")["details"]["bundle"].as_str().expect("a bundle"));
        let files: Vec<String> = std::fs::read_dir(&bundle)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let read = |name: &str| std::fs::read_to_string(bundle.join(name)).unwrap_or_default();
        assert!(read("events.txt").contains(reason), "{case}: no {reason} in events.txt:\n{}", read("events.txt"));
        let pod = files.iter().find(|f| f.starts_with("pod-default-bitcoin-operator-") && f.ends_with(".describe.txt"));
        let pod = pod
            .unwrap_or_else(|| panic!("{case}: no unready pod described in {files:?}"))
            .trim_end_matches(".describe.txt")
            .to_string();
        assert!(read(&format!("{pod}.describe.txt")).contains("Events:"), "{case}");
        let logs = read(&format!("{pod}.log")) + &read(&format!("{pod}.previous.log"));
        assert!(logs.contains(logged), "{case}: the pod's logs lack {logged:?}:\n{logs}");
        let node_logs = bundle.join("kind-logs").join(format!("{cluster}-control-plane"));
        assert!(node_logs.join("kubelet.log").is_file(), "{case}: no kind export logs in {}", bundle.display());
        assert!(run.stderr.contains("helm-install") && run.stderr.contains("failed"), "{case}: the summary");
        flow.assert_no_temporary_files();
        assert!(kind_leftovers(&cluster).0.is_empty(), "{case}: the cluster was not deleted");
    }
}

#[test]
fn ctrl_c_during_helm_install_exits_130_and_deletes_the_cluster() {
    let _one = exclusive();
    if !docker_available() {
        return;
    }
    let Some(parts) = parts() else { return };
    let cluster = "sc-interrupted";
    let Some(flow) = Flow::new(parts, cluster, "true", "5m") else { return };
    flow.build_and_deploy(&flow.parts.operator);
    never_ready(flow.qa_checkout());
    let report = flow.path().join("run.json").display().to_string();
    let mut child =
        flow.command(&flow.qa, &["--no-progress", "--report", &report, "integration-test"], None).spawn().unwrap();
    // helm is installing once the release's Deployment is in the cluster.
    let kubeconfig = flow.path().join("watch.kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(Instant::now() < deadline, "no Deployment after 240 s");
        assert!(child.try_wait().unwrap().is_none(), "integration-test ended before helm installed");
        let config = Command::new(&flow.parts.kind).args(["get", "kubeconfig", "--name", cluster]).output().unwrap();
        if config.status.success() {
            std::fs::write(&kubeconfig, &config.stdout).unwrap();
            let kubectl = flow.parts.tools.join("kubectl");
            let found = Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["get", "deployment", "bitcoin-operator"])
                .output()
                .unwrap();
            if found.status.success() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    eprintln!("stopped {:.1}s after Ctrl-C", sent.elapsed().as_secs_f64());
    assert_eq!(status.code(), Some(130), "{status:?} (signal {:?})", status.signal());
    assert!(sent.elapsed() < Duration::from_secs(60), "took {:?}", sent.elapsed());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(stage(&report, "helm-install")["outcome"], "interrupted");
    assert_eq!(stage(&report, "cluster-teardown")["outcome"], "passed");
    assert!(kind_leftovers(cluster).0.is_empty(), "the cluster is still there");
    let clusters = Command::new(&flow.parts.kind).args(["get", "clusters"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&clusters.stdout).lines().any(|l| l == cluster));
    flow.assert_no_temporary_files();
}
