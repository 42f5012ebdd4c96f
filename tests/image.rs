//! The image stages against the real Docker engine and registry: build-and-deploy through the
//! binary on a DEV fixture, then the pushed image pulled back by digest and run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::git_server::seed_bare_repo;
use crate::registry::{Registry, docker_available};
use crate::support::{Run, git, stagecoach};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
const OPERATOR: &str = "target/x86_64-unknown-linux-gnu/image/operator";
const CANARY: &str = "canary-s3cr3t-42";

/// The static operator binary of this workspace, built once if missing.
pub(crate) fn operator_binary() -> PathBuf {
    let path = Path::new(WORKSPACE).join(OPERATOR);
    if !path.is_file() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--profile",
                "image",
                "--target",
                "x86_64-unknown-linux-gnu",
                "-p",
                "bitcoin-operator",
                "--bin",
                "operator",
            ])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .current_dir(WORKSPACE)
            .status()
            .unwrap();
        assert!(status.success(), "building the static operator failed");
    }
    path
}

/// A DEV repository: the real Dockerfile, .dockerignore and operator binary, a pipeline whose
/// image goes to `repository` and whose QA repository is a local bare repo.
pub(crate) struct Dev {
    pub dir: tempfile::TempDir,
    pub qa: PathBuf,
    _qa_dir: tempfile::TempDir,
}

pub(crate) fn dev_repo(repository: &str, registry_credentials: bool) -> Dev {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("operator")).unwrap();
    std::fs::create_dir_all(d.join("target/image")).unwrap();
    std::fs::copy(Path::new(WORKSPACE).join("operator/Dockerfile"), d.join("operator/Dockerfile")).unwrap();
    std::fs::copy(Path::new(WORKSPACE).join(".dockerignore"), d.join(".dockerignore")).unwrap();
    // Bytes appended to the ELF binary keep it runnable and give each test its own image, so
    // that removing one test's image never removes another's (same content, same image id).
    let mut binary = std::fs::read(operator_binary()).unwrap();
    binary.extend(repository.bytes());
    std::fs::write(d.join("target/image/operator"), binary).unwrap();
    std::fs::set_permissions(d.join("target/image/operator"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    std::fs::write(d.join("target/junk.bin"), vec![0u8; 4 << 20]).unwrap();

    let qa_dir = tempfile::tempdir().unwrap();
    let qa = qa_dir.path().join("qa.git");
    let chart = Path::new(WORKSPACE).join("chart-template");
    seed_bare_repo(
        &qa,
        &[
            ("Chart.yaml", &std::fs::read_to_string(chart.join("Chart.yaml")).unwrap()),
            ("values.yaml", &std::fs::read_to_string(chart.join("values.yaml")).unwrap()),
        ],
    );
    let credentials = if registry_credentials { "  credentials: registry\n" } else { "" };
    let pipeline = format!(
        "version: 1
repositories:
  dev:
    url: https://git.example/dev.git
  qa:
    url: {qa}
  release:
    url: https://git.example/release.git
image:
  repository: {repository}
  dockerfile: operator/Dockerfile
{credentials}chart:
  name: bitcoin-operator
cluster:
  provider: kind
  node_image: kindest/node:v1.33.1
commands:
  build:
    run: test -x target/image/operator
  unit_tests:
    run: echo unit tests ran
  integration_tests:
    run: 'true'
credentials:
  registry:
    username_env: DOCKER_USER
    password_env: DOCKER_PASSWORD
",
        qa = qa.display()
    );
    std::fs::create_dir_all(d.join("pipelines")).unwrap();
    std::fs::write(d.join("pipelines/stagecoach.yaml"), pipeline).unwrap();
    std::fs::write(d.join(".gitignore"), "target/\n").unwrap();
    git(d, &["init", "-q", "-b", "main"]);
    git(d, &["add", "."]);
    git(d, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "dev"]);
    Dev { dir, qa, _qa_dir: qa_dir }
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub(crate) fn qa_commits(dev: &Dev) -> String {
    git(&dev.qa, &["rev-list", "--count", "main"])
}

#[test]
fn build_and_deploy_pushes_the_operator_image_which_pulls_back_by_digest_and_runs() {
    if !docker_available() {
        return;
    }
    let Some(registry) = Registry::start(None) else { return };
    let repository = format!("{}/bitcoin-operator", registry.host);
    let dev = dev_repo(&repository, false);
    let head = git(dev.dir.path(), &["rev-parse", "HEAD"]);
    let short = &head[..7];
    let record = dev.dir.path().join("run.json");

    let run =
        stagecoach(dev.dir.path(), &["--no-progress", "--report", record.to_str().unwrap(), "build-and-deploy"], &[]);
    run.success();
    assert!(run.stderr.contains("[unit-tests] unit tests ran"), "{}", run.stderr);

    // The digest the registry stored is in the run record.
    let record = report(&record);
    let push = record["stages"].as_array().unwrap().iter().find(|s| s["name"] == "image-push").unwrap();
    let digest = push["details"]["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    assert_eq!(record["build"]["commit"], head.as_str());
    assert_eq!(record["outcome"], "passed");

    // Pull it back by digest (after removing the local copies) and run it.
    for tag in [short, "latest"] {
        docker(&["rmi", "-f", &format!("{repository}:{tag}")]);
    }
    let by_digest = format!("{repository}@{digest}");
    let (pulled, out) = docker(&["pull", "-q", &by_digest]);
    assert!(pulled, "{out}");
    let (ran, out) = docker(&["run", "--rm", &by_digest, "--version"]);
    assert!(ran, "{out}");
    assert_eq!(out.trim(), format!("bitcoin-operator {}", env!("CARGO_PKG_VERSION")));
    let (_, size) = docker(&["image", "inspect", "--format", "{{.Size}}", &by_digest]);
    let size: u64 = size.trim().parse().unwrap();
    assert!(size <= 15 * 1024 * 1024, "the operator image is {size} bytes, over 15 MB");
    // .dockerignore kept the 4 MB junk out: only the binary went in.
    let binary = std::fs::metadata(operator_binary()).unwrap().len();
    assert!(size < binary + 1024 * 1024, "image {size} bytes vs binary {binary}");

    // The QA chart points at the image: tag, dev version, the full commit.
    let values = git(&dev.qa, &["show", "main:values.yaml"]);
    assert!(values.contains(&format!("  tag: {}\n", crate::support::yaml_tag(short))), "{values}");
    let chart = git(&dev.qa, &["show", "main:Chart.yaml"]);
    assert!(
        chart.contains(&format!("version: 0.1.1-dev.{short}\n")) && chart.contains(&format!("appVersion: \"{head}\"")),
        "{chart}"
    );
    let message = git(&dev.qa, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains(&format!("Source-Commit: {head}")) && message.contains(&format!("Image-Digest: {digest}")),
        "{message}"
    );
    docker(&["rmi", "-f", &by_digest]);
}

#[test]
fn refused_credentials_and_a_registry_that_is_down_stop_before_qa() {
    if !docker_available() {
        return;
    }
    let Some(registry) = Registry::start(Some(("ci", CANARY))) else { return };
    let repository = format!("{}/bitcoin-operator", registry.host);
    let dev = dev_repo(&repository, true);

    let cases: [(&str, &[(&str, &str)], &str); 3] = [
        (
            "wrong password",
            &[("DOCKER_USER", "ci"), ("DOCKER_PASSWORD", "wrong-password-5678")],
            "refused the credentials",
        ),
        ("no credentials set", &[], "environment variable DOCKER_PASSWORD is not set"),
        ("right password", &[("DOCKER_USER", "ci"), ("DOCKER_PASSWORD", CANARY)], ""),
    ];
    for (name, env, want) in cases {
        let run: Run = stagecoach(dev.dir.path(), &["--no-progress", "build-and-deploy"], env);
        if want.is_empty() {
            run.success();
            assert_eq!(qa_commits(&dev), "2", "case {name}");
        } else {
            assert_ne!(run.code, 0, "case {name}");
            assert!(run.stderr.contains(want), "case {name}: {}", run.stderr);
            assert_eq!(qa_commits(&dev), "1", "case {name}: the QA repository was touched");
        }
        for secret in ["wrong-password-5678", CANARY] {
            assert!(!run.stderr.contains(secret) && !run.stdout.contains(secret), "case {name}: a password leaked");
        }
    }

    // A registry that is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dev = dev_repo(&format!("127.0.0.1:{down}/bitcoin-operator"), false);
    let run = stagecoach(dev.dir.path(), &["--no-progress", "build-and-deploy"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("registry 127.0.0.1:{down} cannot be reached")), "{}", run.stderr);
    // It was tried three times, as a transient failure would be.
    assert_eq!(run.stderr.matches("trying again").count(), 2, "{}", run.stderr);
    assert!(run.stderr.lines().any(|l| l.starts_with("qa-promote ") && l.contains(" not run")), "{}", run.stderr);
    assert_eq!(qa_commits(&dev), "1");
}

#[test]
fn save_and_load_round_trip_an_image() {
    if !docker_available() {
        return;
    }
    let dev = dev_repo("stagecoach-test/save-load", false);
    let run = stagecoach(dev.dir.path(), &["--no-progress", "--dry-run", "build-and-deploy"], &[]);
    run.success();
    assert!(run.stderr.contains("dry run: would push stagecoach-test/save-load"), "{}", run.stderr);
    assert_eq!(qa_commits(&dev), "1", "a dry run pushed to QA");

    // The build's own tag: a build does not move `:latest`, only a promotion does.
    let image = format!("stagecoach-test/save-load:{}", &git(dev.dir.path(), &["rev-parse", "HEAD"])[..7]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let engine = stagecoach::tools::docker::DockerEngine::connect(Default::default()).await.unwrap();
        let tar = dev.dir.path().join("image.tar");
        engine.save(&image, &tar).await.unwrap();
        assert!(std::fs::metadata(&tar).unwrap().len() > 100_000);
        docker(&["rmi", "-f", &image]);
        assert!(!engine.exists(&image).await);
        engine.load(&tar).await.unwrap();
        assert!(engine.exists(&image).await, "the image did not come back");
    });
    docker(&["rmi", "-f", &image]);
}

#[test]
fn a_tag_that_is_not_a_release_is_refused_before_anything_is_built_or_pushed() {
    if !docker_available() {
        return;
    }
    let Some(registry) = Registry::start(None) else { return };
    for tag in ["nightly", "release-1"] {
        let repository = format!("{}/refused-{tag}", registry.host);
        let dev = dev_repo(&repository, false);
        git(dev.dir.path(), &["tag", tag]);
        let run = stagecoach(dev.dir.path(), &["--no-progress", "build-and-deploy"], &[]);
        assert_eq!(run.code, 2, "{tag}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "tag `{tag}` is not a release version; tag releases like v1.2.3, 1.2.3, 1.2 or v1.2.3-rc.1; nothing was built or pushed"
            )),
            "{tag}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("unit tests ran"), "{tag}: the build ran:\n{}", run.stderr);
        for reference in [format!("{repository}:{tag}"), format!("{repository}:latest")] {
            assert!(!docker(&["image", "inspect", &reference]).0, "{reference} was built");
        }
        let tags = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}/v2/refused-{tag}/tags/list", registry.host))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&tags.stdout), "404", "{tag}: something was pushed");
        assert_eq!(qa_commits(&dev), "1", "{tag}: QA was promoted");
    }
}

#[test]
fn a_build_that_is_not_pushed_writes_the_image_but_no_digest() {
    if !docker_available() {
        return;
    }
    let repository = "stagecoach-test/not-pushed";
    let dev = dev_repo(repository, false);
    // QA still holds the digest of an earlier pushed build: it must not survive a new tag.
    let work = dev.dir.path().join("qa-work");
    git(dev.dir.path(), &["clone", "-q", dev.qa.to_str().unwrap(), work.to_str().unwrap()]);
    let values = std::fs::read_to_string(work.join("values.yaml")).unwrap();
    let stale = format!("sha256:{}", "a".repeat(64));
    std::fs::write(work.join("values.yaml"), values.replace("digest: \"\"", &format!("digest: \"{stale}\""))).unwrap();
    git(&work, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "pushed earlier"]);
    git(&work, &["push", "-q", "origin", "main"]);

    let head = git(dev.dir.path(), &["rev-parse", "HEAD"]);
    stagecoach(dev.dir.path(), &["--no-progress", "build-and-deploy", "--no-push"], &[]).success();
    let values = git(&dev.qa, &["show", "main:values.yaml"]);
    assert!(
        values.contains(&format!(
            "  repository: {repository}\n  tag: {}\n  digest: \"\"\n",
            crate::support::yaml_tag(&head[..7])
        )),
        "{values}"
    );
    let message = git(&dev.qa, &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains(&format!("Image: {repository}:{}\n", &head[..7])) && !message.contains("Image-Digest"));
    docker(&["rmi", "-f", &format!("{repository}:{}", &head[..7]), &format!("{repository}:latest")]);
}

/// The import a plain FROM scratch Dockerfile gets makes the image the builder makes: the same
/// configuration and the same files. A line only the builder reads (`ARG`, changing neither)
/// sends the second build to the builder.
#[test]
fn an_imported_scratch_image_is_the_image_the_builder_makes() {
    if !docker_available() {
        return;
    }
    let repository = "stagecoach-test/scratch-import";
    let mut seen = Vec::new();
    for (name, first_line, said) in [
        ("imported", "", "only copies files into scratch: imported as one layer"),
        ("built", "ARG UNUSED=1\n", "build context:"),
    ] {
        let dev = dev_repo(repository, false);
        let d = dev.dir.path();
        let dockerfile = std::fs::read_to_string(d.join("operator/Dockerfile")).unwrap();
        std::fs::write(d.join("operator/Dockerfile"), format!("{first_line}{dockerfile}")).unwrap();
        git(d, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-am", name]);
        let run = stagecoach(d, &["--no-progress", "build-and-deploy", "--no-push"], &[]);
        run.success();
        assert!(run.stderr.contains(said), "{name}: {}", run.stderr);
        let image = format!("{repository}:{}", &git(d, &["rev-parse", "HEAD"])[..7]);
        let (ok, config) =
            docker(&["image", "inspect", "--format", "{{json .Config}} {{.Os}}/{{.Architecture}}", &image]);
        assert!(ok, "{config}");
        let (ok, container) = docker(&["create", &image]);
        assert!(ok, "{container}");
        let exported = Command::new("docker").args(["export", container.trim()]).output().unwrap();
        docker(&["rm", container.trim()]);
        docker(&["rmi", "-f", &image, &format!("{repository}:latest")]);
        let mut files = Vec::new();
        for entry in tar::Archive::new(exported.stdout.as_slice()).entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            let path = entry.path().unwrap().display().to_string();
            let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
            files.push((path, header.mode().unwrap(), header.uid().unwrap(), header.gid().unwrap(), digest));
        }
        files.sort();
        assert!(files.iter().any(|f| f.0 == "operator" && f.1 & 0o7777 == 0o755), "{name}: {files:?}");
        seen.push((config, files));
    }
    assert_eq!(seen[0], seen[1], "the imported image differs from the built one");
}
