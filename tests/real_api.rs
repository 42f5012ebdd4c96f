//! The chart and the QA stage against real Kubernetes parts, built by `.ci/kube-tools`: the
//! Helm 3 and Helm 4 CLIs install, upgrade and uninstall the QA chart as `stagecoach chart
//! package` packs it into a real API server (`control_plane.rs`), verify its provenance and pull
//! what `stagecoach chart push` pushed; and a failed `integration-test` gathers its diagnostics
//! with the real kubectl from the real API server. No pod runs here (no kubelet).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::control_plane::{ControlPlane, HOW};
use crate::support::{copy_dir, git, missing_component, stagecoach};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
const DIGEST: &str = "sha256:4f1c3b2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";
const APP_VERSION: &str = "64ed033a1b2c3d4e5f60718293a4b5c6d7e8f901";

/// A Helm CLI of `.ci/kube-tools`, with a home of its own (config, cache, data).
struct Helm {
    name: &'static str,
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    /// `$STAGECOACH_HELM3` or `$STAGECOACH_HELM4`; a loud skip (a failure in CI) without it.
    fn new(major: u8) -> Option<Self> {
        let (name, variable) = match major {
            3 => ("Helm 3", "STAGECOACH_HELM3"),
            _ => ("Helm 4", "STAGECOACH_HELM4"),
        };
        let Some(bin) = std::env::var_os(variable).map(PathBuf::from).filter(|p| p.is_file()) else {
            missing_component(&format!("the {name} CLI ({variable})"), HOW);
            return None;
        };
        Some(Self { name, bin, home: tempfile::tempdir().unwrap() })
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let home = self.home.path();
        let out = Command::new(&self.bin)
            .args(args)
            .env("HOME", home)
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{} {}: {stdout}{}", self.name, args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.run(args).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A QA repository's chart as `build-and-deploy` leaves it (image repository, tag and digest in
/// values.yaml, the dev version and the commit in Chart.yaml), packaged by `stagecoach chart
/// package`: (the chart directory, the package).
fn qa_package(dir: &Path, tag: &str) -> (PathBuf, PathBuf) {
    let chart = dir.join("qa");
    if !chart.exists() {
        copy_dir(&Path::new(WORKSPACE).join("chart-template"), &chart);
    }
    let version = format!("0.1.1-dev.{tag}");
    let set = |file: &str, assignments: &[&str]| {
        let path = chart.join(file).display().to_string();
        stagecoach(dir, &[&["chart", "set", &path][..], assignments].concat(), &[]).success();
    };
    set("values.yaml", &[&format!("image.tag={tag}"), &format!("image.digest={DIGEST}")]);
    set("Chart.yaml", &[&format!("version={version}"), &format!("appVersion={APP_VERSION}")]);
    let out = dir.join("packages").display().to_string();
    stagecoach(dir, &["chart", "package", chart.to_str().unwrap(), "--out", &out], &[]).success();
    (chart, dir.join(format!("packages/bitcoin-operator-{version}.tgz")))
}

/// The documents of a multi-document YAML text, as JSON.
fn documents(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    documents.into_iter().filter(|d| d.is_object()).collect()
}

/// Where `live` lacks or differs from what `rendered` says, as JSON paths: the API server may
/// add (defaults, metadata, status), never change or drop.
fn differences(rendered: &Value, live: &Value, path: &str, found: &mut Vec<String>) {
    match (rendered, live) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                differences(value, have.get(key).unwrap_or(&Value::Null), &format!("{path}.{key}"), found);
            }
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            for (index, (value, other)) in want.iter().zip(have).enumerate() {
                differences(value, other, &format!("{path}[{index}]"), found);
            }
        }
        (Value::Null, _) => {}
        // YAML's `50.0` is JSON's 50 once the server has it.
        (Value::Number(want), Value::Number(have)) if want.as_f64() == have.as_f64() => {}
        (want, have) if want == have => {}
        (want, have) => found.push(format!("{path}: rendered {want}, the API server holds {have}")),
    }
}

/// Each rendered object, named `kind/name`, with what the API server holds of it (`None`: nothing).
fn live_objects<'a>(plane: &ControlPlane, rendered: &'a [Value]) -> Vec<(String, &'a Value, Option<Value>)> {
    rendered
        .iter()
        .map(|object| {
            let kind = object["kind"].as_str().unwrap().to_lowercase();
            let name = object["metadata"]["name"].as_str().unwrap();
            let group = object["apiVersion"].as_str().unwrap().split_once('/').map_or("", |(group, _)| group);
            let resource = if group.is_empty() { kind.clone() } else { format!("{kind}.{group}") };
            let cluster_wide =
                ["customresourcedefinition", "clusterrole", "clusterrolebinding"].contains(&kind.as_str());
            let live = plane.get(&resource, name, (!cluster_wide).then_some("bitcoin"));
            (format!("{kind}/{name}"), object, live)
        })
        .collect()
}

/// The chart's Secret keeps a generated password: only its keys are compared.
fn comparable(mut object: Value) -> Value {
    if object["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            if let Some(data) = object[field].as_object_mut() {
                data.values_mut().for_each(|v| *v = Value::Null);
            }
        }
    }
    object
}

fn install_upgrade_uninstall(major: u8) {
    let (Some(plane), Some(helm)) = (ControlPlane::start(), Helm::new(major)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (chart, package) = qa_package(dir.path(), "1a2b3c4");
    let kubeconfig = plane.kubeconfig.display().to_string();
    let on = ["--namespace", "bitcoin", "--kubeconfig", &kubeconfig];
    let package_arg = package.display().to_string();
    let rendered =
        documents(&helm.ok(&[&["template", "bitcoin-operator", &package_arg, "--include-crds"][..], &on].concat()));
    let kinds: Vec<&str> = rendered.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for kind in
        ["CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Secret"]
    {
        assert!(kinds.contains(&kind), "{}: the chart renders no {kind}: {kinds:?}", helm.name);
    }
    helm.ok(&[&["install", "bitcoin-operator", &package_arg, "--create-namespace"][..], &on].concat());

    // The API server holds what the chart rendered.
    for (name, object, live) in live_objects(&plane, &rendered) {
        let live = live.unwrap_or_else(|| panic!("{}: the API server has no {name}", helm.name));
        let mut found = Vec::new();
        differences(&comparable(object.clone()), &comparable(live), &name, &mut found);
        assert!(found.is_empty(), "{}: {found:#?}", helm.name);
    }
    // The Deployment runs repository:tag@digest, as values.yaml says.
    let values: Value = serde_saphyr::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap()).unwrap();
    let image = &values["image"];
    let pinned = format!(
        "{}:{}@{}",
        image["repository"].as_str().unwrap(),
        image["tag"].as_str().unwrap(),
        image["digest"].as_str().unwrap()
    );
    let deployment = plane.get("deployment", "bitcoin-operator", Some("bitcoin")).unwrap();
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], pinned.as_str(), "{}", helm.name);
    let crd = plane.get("crd", "bitcoinnetworks.bitcoin.stagecoach.dev", None).unwrap();
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established, "{}: {:#}", helm.name, crd["status"]);
    let password = |plane: &ControlPlane| {
        plane.get("secret", "bitcoin-rpc", Some("bitcoin")).unwrap()["data"]["BITCOIN_RPC_PASSWORD"].clone()
    };
    let generated = password(&plane);
    assert!(generated.as_str().is_some_and(|p| p.len() >= 16), "{}: {generated}", helm.name);

    // An upgrade with a changed value: the Deployment follows, the generated password stays.
    stagecoach(
        dir.path(),
        &["chart", "set", chart.join("values.yaml").to_str().unwrap(), "operator.logLevel=debug"],
        &[],
    )
    .success();
    let (_, upgraded) = qa_package(dir.path(), "5e6f7a8");
    helm.ok(&[&["upgrade", "bitcoin-operator", upgraded.to_str().unwrap()][..], &on].concat());
    let deployment = plane.get("deployment", "bitcoin-operator", Some("bitcoin")).unwrap();
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().unwrap().contains(&json!("--log-level=debug")), "{}: {args}", helm.name);
    assert_eq!(deployment["metadata"]["generation"], 2, "{}", helm.name);
    assert_eq!(password(&plane), generated, "{}: the upgrade made a new password", helm.name);
    let history: Value =
        serde_json::from_str(&helm.ok(&[&["history", "bitcoin-operator", "-o", "json"][..], &on].concat())).unwrap();
    let revisions: Vec<(&Value, &Value)> =
        history.as_array().unwrap().iter().map(|r| (&r["revision"], &r["chart"])).collect();
    assert_eq!(
        revisions,
        [
            (&json!(1), &json!("bitcoin-operator-0.1.1-dev.1a2b3c4")),
            (&json!(2), &json!("bitcoin-operator-0.1.1-dev.5e6f7a8"))
        ],
        "{}",
        helm.name
    );

    // Uninstalled: every object of the release is gone; the CRD stays, as Helm keeps crds/.
    helm.ok(&[&["uninstall", "bitcoin-operator"][..], &on].concat());
    for (name, _, live) in live_objects(&plane, &rendered) {
        let crd = name.starts_with("customresourcedefinition/");
        assert_eq!(
            live.is_some(),
            crd,
            "{}: after uninstall, {name} is {}",
            helm.name,
            if crd { "gone" } else { "still there" }
        );
    }
}

#[test]
fn helm3_installs_upgrades_and_uninstalls_the_packaged_qa_chart() {
    install_upgrade_uninstall(3);
}

#[test]
fn helm4_installs_upgrades_and_uninstalls_the_packaged_qa_chart() {
    install_upgrade_uninstall(4);
}

#[test]
fn helm3_and_helm4_verify_a_signed_package_and_refuse_it_with_one_byte_changed() {
    let (Some(helm3), Some(helm4), Some(gpg)) = (Helm::new(3), Helm::new(4), crate::provenance::Gpg::new()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    gpg.key("Signer <signer@stagecoach.dev>", "rsa3072", None);
    let key = gpg.armored_secret("Signer", None);
    let out = dir.path().join("out");
    let chart = Path::new(WORKSPACE).join("chart-template");
    let args = [
        "chart",
        "package",
        chart.to_str().unwrap(),
        "--rename",
        "bitcoin-operator",
        "--out",
        out.to_str().unwrap(),
        "--sign",
    ];
    stagecoach(dir.path(), &args, &[("STAGECOACH_SIGNING_KEY", &key)]).success();
    let package = out.join("bitcoin-operator-0.1.0.tgz");
    let keyring = gpg.keyring("public.gpg", false, None);
    let changed = dir.path().join("changed");
    std::fs::create_dir_all(&changed).unwrap();
    let mut bytes = std::fs::read(&package).unwrap();
    bytes[100] ^= 1;
    std::fs::write(changed.join("bitcoin-operator-0.1.0.tgz"), bytes).unwrap();
    std::fs::copy(out.join("bitcoin-operator-0.1.0.tgz.prov"), changed.join("bitcoin-operator-0.1.0.tgz.prov"))
        .unwrap();
    let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&package).unwrap()));
    for helm in [&helm3, &helm4] {
        let verified = helm.ok(&["verify", package.to_str().unwrap(), "--keyring", keyring.to_str().unwrap()]);
        assert!(
            verified.contains("Signed by: Signer <signer@stagecoach.dev>")
                && verified.contains(&format!("sha256:{digest}")),
            "{}: {verified}",
            helm.name
        );
        let refused = helm.run(&[
            "verify",
            changed.join("bitcoin-operator-0.1.0.tgz").to_str().unwrap(),
            "--keyring",
            keyring.to_str().unwrap(),
        ]);
        let error = refused.expect_err("a changed package verified");
        assert!(error.contains("sha256 sum does not match"), "{}: {error}", helm.name);
    }
}

#[test]
fn helm3_and_helm4_pull_back_the_bytes_chart_push_pushed() {
    let (Some(helm3), Some(helm4), Some(registry)) =
        (Helm::new(3), Helm::new(4), crate::registry::Registry::start(None))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, package) = qa_package(dir.path(), "9c8b7a6");
    let repository = format!("oci://{}/charts", registry.host);
    stagecoach(dir.path(), &["chart", "push", package.to_str().unwrap(), &repository, "--plain-http"], &[]).success();
    let pushed = std::fs::read(&package).unwrap();
    for helm in [&helm3, &helm4] {
        let out = dir.path().join(format!("pulled-{}", helm.name.replace(' ', "")));
        std::fs::create_dir_all(&out).unwrap();
        helm.ok(&[
            "pull",
            &format!("{repository}/bitcoin-operator"),
            "--version",
            "0.1.1-dev.9c8b7a6",
            "--plain-http",
            "-d",
            out.to_str().unwrap(),
        ]);
        let pulled = std::fs::read(out.join(package.file_name().unwrap())).unwrap();
        assert!(pulled == pushed, "{}: pulled {} bytes, pushed {}", helm.name, pulled.len(), pushed.len());
    }
}

/// A QA repository on a cluster that exists (the control plane), with a DEV repository whose
/// commit is the chart's appVersion; `install_timeout` bounds `helm --wait`.
fn qa_repository(dir: &Path, kubeconfig: &Path, install_timeout: &str) -> PathBuf {
    let dev = dir.join("dev.git");
    crate::git_server::seed_bare_repo(&dev, &[("README.md", "dev\n")]);
    let commit = git(&dev, &["rev-parse", "main"]);
    let (chart, _) = qa_package(dir, "1a2b3c4");
    stagecoach(
        dir,
        &["chart", "set", chart.join("Chart.yaml").to_str().unwrap(), &format!("appVersion={commit}")],
        &[],
    )
    .success();
    let release = dir.join("release.git");
    crate::git_server::seed_bare_repo(&release, &[("README.md", "charts\n")]);
    std::fs::create_dir_all(chart.join("pipelines")).unwrap();
    std::fs::write(
        chart.join("pipelines/stagecoach.yaml"),
        format!(
            "version: 1\nrepositories:\n  dev:\n    url: file://{dev}\n  qa:\n    url: https://git.example/qa.git\n  release:\n    url: file://{release}\nimage:\n  repository: 127.0.0.1:5000/bitcoin-operator\nchart:\n  name: bitcoin-operator\ncluster:\n  provider: existing\n  kubeconfig: {kubeconfig}\n  install_timeout: {install_timeout}\ncommands:\n  build:\n    run: 'true'\n  unit_tests:\n    run: 'true'\n  integration_tests:\n    run: 'true'\n",
            dev = dev.display(),
            release = release.display(),
            kubeconfig = kubeconfig.display(),
        ),
    )
    .unwrap();
    git(&chart, &["init", "-q", "-b", "main"]);
    git(&chart, &["add", "."]);
    git(&chart, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "qa"]);
    chart
}

/// The directory of `helm` (Helm 4) and `kubectl` that .ci/kube-tools prints.
fn tools_path() -> Option<String> {
    let Some(tools) = std::env::var_os("STAGECOACH_TOOLS_PATH").filter(|p| Path::new(p).join("helm").is_file()) else {
        missing_component("helm and kubectl (STAGECOACH_TOOLS_PATH)", HOW);
        return None;
    };
    Some(format!("{}:{}", tools.to_string_lossy(), std::env::var("PATH").unwrap_or_default()))
}

#[test]
fn a_failed_install_leaves_the_diagnostics_the_real_kubectl_gathered_from_the_api_server() {
    let (Some(plane), Some(path)) = (ControlPlane::start(), tools_path()) else { return };
    // A pod of the release that never starts (no scheduler here), and two events about it
    // written out of order.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bitcoin-operator-stuck", "namespace": "default",
        "labels": {"app.kubernetes.io/instance": "bitcoin-operator"}}, "spec": {"containers": [{"name": "operator", "image": "example/operator:1"}]}});
    plane.kubectl(&["create", "serviceaccount", "default", "-n", "default"]).unwrap();
    plane.kubectl_stdin(&["create", "-f", "-"], &pod.to_string()).unwrap();
    for (name, reason, time) in
        [("later", "SecondThing", "2026-12-02T10:00:00Z"), ("earlier", "FirstThing", "2026-12-01T10:00:00Z")]
    {
        let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "bitcoin-operator-stuck", "namespace": "default"},
            "reason": reason, "message": format!("{reason} happened"), "type": "Warning", "count": 1,
            "firstTimestamp": time, "lastTimestamp": time, "source": {"component": "test"}});
        plane.kubectl_stdin(&["create", "-f", "-"], &event.to_string()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let qa = qa_repository(dir.path(), &plane.kubeconfig, "15s");
    let artifacts = dir.path().join("artifacts");
    let started = std::time::Instant::now();
    let run = stagecoach(
        &qa,
        &["--no-progress", "integration-test"],
        &[("PATH", &path), ("STAGECOACH_ARTIFACTS", artifacts.to_str().unwrap())],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "took {:?}", started.elapsed());
    assert!(run.stderr.contains("error: stage `helm-install` failed:"), "{}", run.stderr);
    let bundle = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("diagnostics: "))
        .unwrap_or_else(|| panic!("no bundle:\n{}", run.stderr));
    let read =
        |name: &str| std::fs::read_to_string(Path::new(bundle).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let status = read("helm-status.txt");
    assert!(status.contains("NAME: bitcoin-operator") && status.contains("STATUS: failed"), "{status}");
    let all = read("get-all.txt");
    assert!(all.contains("deployment.apps/bitcoin-operator") && all.contains("pod/bitcoin-operator-stuck"), "{all}");
    // kubectl events orders by time, whatever the order they were written in.
    let events = read("events.txt");
    let (first, second) = (events.find("FirstThing"), events.find("SecondThing"));
    assert!(first.is_some() && second.is_some() && first < second, "{events}");
    let described = read("pod-default-bitcoin-operator-stuck.describe.txt");
    let field = |name: &str| described.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    assert_eq!((field("Name:"), field("Status:")), (Some("bitcoin-operator-stuck"), Some("Pending")), "{described}");
    let networks = read("bitcoinnetworks.bitcoin.stagecoach.dev.yaml");
    assert!(networks.contains("kind: List"), "{networks}");
    assert!(Path::new(bundle).join("release-default-bitcoin-operator-stuck.log").is_file());
}

/// The names in a .tgz, without the chart's directory.
fn packed(tgz: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(tgz).unwrap()));
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().split_once('/').unwrap().1.to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn helm4_and_stagecoach_pack_the_same_files_but_the_charts_own_earlier_packages() {
    let Some(helm) = Helm::new(4) else { return };
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart");
    copy_dir(&Path::new(WORKSPACE).join("chart-template"), &chart);
    // Files Helm packs that look like what stagecoach writes, and names .helmignore escapes.
    for file in ["fixture.tgz", "other-chart-1.0.0.tgz", "!bang.txt", "#hash.txt", "keep.txt"] {
        std::fs::write(chart.join(file), file).unwrap();
    }
    let earlier = ["bitcoin-operator-0.0.9.tgz", "bitcoin-operator-0.0.9.tgz.prov"];
    for file in earlier {
        std::fs::write(chart.join(file), file).unwrap();
    }
    let mut ignore = std::fs::read_to_string(chart.join(".helmignore")).unwrap();
    ignore.push_str("\\!bang.txt\n\\#hash.txt\n");
    std::fs::write(chart.join(".helmignore"), ignore).unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    std::fs::create_dir_all(&theirs).unwrap();
    stagecoach(dir.path(), &["chart", "package", chart.to_str().unwrap(), "--out", ours.to_str().unwrap()], &[])
        .success();
    helm.ok(&["package", chart.to_str().unwrap(), "-d", theirs.to_str().unwrap()]);
    let name = "bitcoin-operator-0.1.0.tgz";
    let (ours, theirs) = (packed(&ours.join(name)), packed(&theirs.join(name)));
    let helms_without_earlier: Vec<String> =
        theirs.iter().filter(|f| !earlier.contains(&f.as_str())).cloned().collect();
    assert_eq!(ours, helms_without_earlier);
    for file in ["fixture.tgz", "other-chart-1.0.0.tgz", "keep.txt"] {
        assert!(ours.iter().any(|f| f == file), "{file} not packed: {ours:?}");
    }
    for file in ["!bang.txt", "#hash.txt"] {
        assert!(!ours.iter().any(|f| f == file), "{file} packed: {ours:?}");
    }
    assert!(earlier.iter().all(|f| theirs.iter().any(|t| t == f)), "Helm packs them: {theirs:?}");
}

/// A Chart.yaml with every field Helm reads.
const EVERY_FIELD: &str = r#"apiVersion: v2
name: every-field
version: 1.2.3
kubeVersion: ">=1.30.0-0"
description: A chart using every Chart.yaml field
type: application
keywords: [bitcoin, operator]
home: https://stagecoach.example
sources: [https://git.example/dev.git]
dependencies:
  - name: dep
    version: 1.0.0
    repository: https://charts.example
    condition: dep.enabled
    tags: [backend, db]
    enabled: true
    import-values:
      - data
      - child: exports.settings
        parent: settings
    alias: database
  - name: plain
    version: 2.0.0
maintainers:
  - name: Ops
    email: ops@stagecoach.example
    url: https://stagecoach.example/ops
icon: https://stagecoach.example/icon.png
appVersion: "64ed033a1b2c3d4e5f60718293a4b5c6d7e8f901"
deprecated: true
annotations:
  example.com/owner: ops
  category: Blockchain
"#;

#[test]
fn stagecoach_chart_index_writes_the_entry_helm4_repo_index_writes_for_every_chart_yaml_field() {
    let Some(helm) = Helm::new(4) else { return };
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("every-field");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), EVERY_FIELD).unwrap();
    std::fs::write(chart.join("values.yaml"), "{}\n").unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    stagecoach(dir.path(), &["chart", "package", chart.to_str().unwrap(), "--out", ours.to_str().unwrap()], &[])
        .success();
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::copy(ours.join("every-field-1.2.3.tgz"), theirs.join("every-field-1.2.3.tgz")).unwrap();
    let url = "https://charts.example/repo";
    stagecoach(dir.path(), &["chart", "index", "--repo", ours.to_str().unwrap(), "--url", url], &[]).success();
    helm.ok(&["repo", "index", theirs.to_str().unwrap(), "--url", url]);
    let entry = |repo: &Path| -> Value {
        let index: Value = serde_saphyr::from_str(&std::fs::read_to_string(repo.join("index.yaml")).unwrap()).unwrap();
        let mut entry = index["entries"]["every-field"][0].clone();
        entry.as_object_mut().unwrap().remove("created");
        entry
    };
    assert_eq!(entry(&ours), entry(&theirs));
    assert_eq!(entry(&ours)["dependencies"][0]["import-values"][1]["parent"], "settings");
}
