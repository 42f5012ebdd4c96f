//! The whole flow end to end: DEV build-and-deploy to a QA repository on the git HTTP server,
//! QA integration-test (kind, helm, kubectl faked; git, Docker engine and registry real), a tag,
//! and the release into a file:// RELEASE repository. Then all of it again: nothing changes.

use std::path::Path;
use std::process::Command;

use crate::git_server::{GitServer, seed_bare_repo};
use crate::image::operator_binary;
use crate::qa::tiny_image;
use crate::registry::{Registry, docker_available};
use crate::support::{BIN, Run, fake_tools, git};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
const TOKEN: &str = "canary-s3cr3t-42";

fn run_in(dir: &Path, (fakes, fake_env): &(std::path::PathBuf, Vec<(String, String)>), args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap_or_default()))
        .env("HOME", dir)
        .env("QA_TOKEN", TOKEN)
        .env("FAKE_LOG", dir.join("../calls.log"))
        .envs(fake_env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN), "the token leaked");
    run
}

#[test]
fn dev_commit_to_qa_to_tag_to_release_and_again_changes_nothing() {
    if !docker_available() {
        return;
    }
    let (Some(registry), Some(server)) = (Registry::start(None), GitServer::start("ci", TOKEN)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let release = d.join("release.git");
    seed_bare_repo(&release, &[("index.yaml", "apiVersion: v1\nentries: {}\ngenerated: \"2026-01-01T00:00:00Z\"\n")]);
    let node = "stagecoach-test/node:flow";
    tiny_image(node, d);
    let pipeline = |qa_url: &str, dev_url: &str| {
        format!(
            "version: 1
repositories:
  dev:
    url: {dev_url}
  qa:
    url: {qa_url}
    credentials: git
  release:
    url: file://{release}
image:
  repository: {registry}/flow-operator
  dockerfile: operator/Dockerfile
chart:
  name: bitcoin-operator
cluster:
  provider: kind
  node_image: {node}
  cache_dir: {cache}
commands:
  build:
    run: test -x target/image/operator
  unit_tests:
    run: 'true'
  integration_tests:
    run: sh integration.sh
credentials:
  git:
    username: ci
    token_env: QA_TOKEN
",
            release = release.display(),
            registry = registry.host,
            cache = d.join("cache").display()
        )
    };

    // QA on the HTTP server, seeded from chart-template; DEV a local repository.
    let dev = d.join("dev");
    let dev_bare = d.join("dev.git");
    let qa_url = format!("{}/qa.git", server.base);
    let qa_pipeline = pipeline(&qa_url, &format!("file://{}", dev_bare.display()));
    let mut qa_files: Vec<(String, String)> = Vec::new();
    for name in [
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        ".helmignore",
        "crds/bitcoinnetworks.yaml",
        "templates/deployment.yaml",
        "templates/_helpers.tpl",
        "templates/rbac.yaml",
        "templates/secret.yaml",
        "templates/serviceaccount.yaml",
        "templates/networkpolicy.yaml",
        "templates/NOTES.txt",
    ] {
        qa_files.push((
            name.into(),
            std::fs::read_to_string(Path::new(WORKSPACE).join("chart-template").join(name)).unwrap(),
        ));
    }
    qa_files.push(("pipelines/stagecoach.yaml".into(), qa_pipeline.clone()));
    let refs: Vec<(&str, &str)> = qa_files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    server.create_repo("qa", &refs);

    std::fs::create_dir_all(dev.join("operator")).unwrap();
    std::fs::create_dir_all(dev.join("target/image")).unwrap();
    std::fs::create_dir_all(dev.join("pipelines")).unwrap();
    std::fs::copy(Path::new(WORKSPACE).join("operator/Dockerfile"), dev.join("operator/Dockerfile")).unwrap();
    std::fs::copy(Path::new(WORKSPACE).join(".dockerignore"), dev.join(".dockerignore")).unwrap();
    // Its own image content (see tests/image.rs): appended bytes leave the binary runnable.
    let mut binary = std::fs::read(operator_binary()).unwrap();
    binary.extend(b"flow test");
    std::fs::write(dev.join("target/image/operator"), binary).unwrap();
    std::fs::set_permissions(dev.join("target/image/operator"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    std::fs::write(dev.join("pipelines/stagecoach.yaml"), &qa_pipeline).unwrap();
    std::fs::write(dev.join("integration.sh"), "echo \"integration tests at $(git rev-parse HEAD)\" >>\"$FAKE_LOG\"\n")
        .unwrap();
    std::fs::write(dev.join(".gitignore"), "target/\n").unwrap();
    git(&dev, &["init", "-q", "-b", "main"]);
    git(&dev, &["add", "."]);
    git(&dev, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dev"]);
    git(d, &["clone", "-q", "--bare", dev.to_str().unwrap(), dev_bare.to_str().unwrap()]);
    let commit = git(&dev, &["rev-parse", "HEAD"]);
    let short = &commit[..7];

    let Some(fakes) = fake_tools(d) else { return };
    let qa_bare = server.bare("qa");
    let qa_checkout = |name: &str| {
        let path = d.join(name);
        git(d, &["clone", "-q", qa_bare.to_str().unwrap(), path.to_str().unwrap()]);
        path
    };

    // 1. A dev commit: the QA chart changes in exactly these lines, the whole image reference
    // among them: repository, tag and the digest that was pushed.
    let built = d.join("built.json");
    run_in(&dev, &fakes, &["--no-progress", "--report", built.to_str().unwrap(), "build-and-deploy"]).success();
    let built: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&built).unwrap()).unwrap();
    let pushed = built["stages"].as_array().unwrap().iter().find(|s| s["name"] == "image-push").unwrap();
    let digest = pushed["details"]["digest"].as_str().unwrap().to_string();
    let repository = format!("{}/flow-operator", registry.host);
    let diff = git(&qa_bare, &["diff", "-U0", "main~1", "main"]);
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---"))
        .collect();
    assert_eq!(
        changed,
        [
            "-version: 0.1.0".to_string(),
            "-appVersion: \"0.1.0\"".to_string(),
            format!("+version: 0.1.1-dev.{short}"),
            format!("+appVersion: \"{commit}\""),
            "-  repository: 127.0.0.1:5000/bitcoin-operator".to_string(),
            "-  tag: 0.1.0".to_string(),
            "-  digest: \"\"".to_string(),
            format!("+  repository: {repository}"),
            format!("+  tag: {}", crate::support::yaml_tag(short)),
            format!("+  digest: \"{digest}\""),
        ]
    );
    // The QA repository alone, rendered by the real Helm engine with no overrides, runs exactly
    // the pushed image.
    let qa_alone = d.join("qa-alone");
    git(d, &["clone", "-q", server.bare("qa").to_str().unwrap(), qa_alone.to_str().unwrap()]);
    let python = crate::support::helm_engine().unwrap();
    let rendered = Command::new(&python)
        .arg(Path::new(WORKSPACE).join("tests/helm/render.py"))
        .args(["template", "bitcoin-operator", qa_alone.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let rendered = String::from_utf8_lossy(&rendered.stdout).to_string();
    assert!(rendered.contains(&format!("image: \"{repository}:{short}@{digest}\"")), "{rendered}");
    // The registry's manifest under that digest names the config kind must be handed.
    let manifest = Command::new("curl")
        .args(["-fsS", "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json"])
        .arg(format!("http://{}/v2/flow-operator/manifests/{digest}", registry.host))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();

    // 2. QA of the dev build: tests at the DEV commit; not a release.
    let qa1 = qa_checkout("qa1");
    let qa_run = run_in(&qa1, &fakes, &["--no-progress", "integration-test"]);
    qa_run.success();
    assert!(qa_run.stderr.contains("not a release"), "{}", qa_run.stderr);
    let calls = std::fs::read_to_string(d.join("calls.log")).unwrap();
    assert!(calls.contains(&format!("integration tests at {commit}")), "{calls}");
    // kind got the pushed bytes, and the chart installed runs them (by tag: kind's load drops
    // the registry digest).
    assert!(calls.contains(&format!("loaded {repository}:{short} {config_digest}\n")), "{calls}");
    let deployed = std::fs::read_to_string(d.join("deployed-bitcoin-operator.yaml")).unwrap();
    assert!(deployed.contains(&format!("image: \"{repository}:{short}\"")), "{deployed}");
    assert_eq!(git(&release, &["rev-list", "--count", "main"]), "1");

    // 3. Tag v0.1.0, build and deploy it, QA it: it is released.
    git(&dev, &["tag", "v0.1.0"]);
    git(&dev, &["push", "-q", dev_bare.to_str().unwrap(), "v0.1.0"]);
    run_in(&dev, &fakes, &["--no-progress", "build-and-deploy"]).success();
    let chart = git(&qa_bare, &["show", "main:Chart.yaml"]);
    assert!(chart.contains("\nversion: 0.1.0\n"), "{chart}");
    // The tag keeps the style the value had: quoted when the dev build's short hash was digits.
    let values = git(&qa_bare, &["show", "main:values.yaml"]);
    assert!(values.contains("  tag: v0.1.0\n") || values.contains("  tag: \"v0.1.0\"\n"), "{values}");
    let qa2 = qa_checkout("qa2");
    let report = d.join("qa2.json");
    run_in(&qa2, &fakes, &["--no-progress", "--report", report.to_str().unwrap(), "integration-test"]).success();
    let index = git(&release, &["show", "main:index.yaml"]);
    let tgz_digest = {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("git -C {} show main:bitcoin-operator-0.1.0.tgz | sha256sum", release.display()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
    };
    assert!(index.contains("version: 0.1.0") && index.contains(&format!("digest: {tgz_digest}")), "{index}");
    assert!(index.contains(&format!("appVersion: {commit}")), "{index}");
    // The package helm installed is the package published.
    let installed = std::fs::read_to_string(d.join("deployed-bitcoin-operator.chart")).unwrap();
    assert_eq!(installed.trim(), tgz_digest);
    let record_text = std::fs::read_to_string(&report).unwrap();
    assert!(!record_text.contains(TOKEN), "the token is in the run record");
    let record: serde_json::Value = serde_json::from_str(&record_text).unwrap();
    let release_stage = record["stages"].as_array().unwrap().iter().find(|s| s["name"] == "release").unwrap();
    assert_eq!(release_stage["details"]["digest"], format!("sha256:{tgz_digest}").as_str());
    let qa_log = git(&qa_bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        qa_log.contains(&format!("Source-Commit: {commit}")) && qa_log.contains("Image-Digest: sha256:"),
        "{qa_log}"
    );

    // 4. All of it again: no new commits anywhere.
    let (qa_count, release_count) =
        (git(&qa_bare, &["rev-list", "--count", "main"]), git(&release, &["rev-list", "--count", "main"]));
    run_in(&dev, &fakes, &["--no-progress", "build-and-deploy"]).success();
    let qa3 = qa_checkout("qa3");
    run_in(&qa3, &fakes, &["--no-progress", "integration-test"]).success();
    assert_eq!(git(&qa_bare, &["rev-list", "--count", "main"]), qa_count);
    assert_eq!(git(&release, &["rev-list", "--count", "main"]), release_count);
    let _ = Command::new("docker").args(["rmi", "-f", node]).output();
}
