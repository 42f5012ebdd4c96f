//! `stagecoach release` on its own: only the chart QA tested is published, and where the
//! repository is served the published index is checked over HTTP.

use std::path::Path;

use crate::git_server::{GitServer, seed_bare_repo};
use crate::support::{FileServer, copy_dir, git, stagecoach};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
pub(crate) const APP: &str = "0123456789abcdef0123456789abcdef01234567";

/// A QA checkout at version 0.2.0 whose pipeline releases into `release` (served at `base_url`).
pub(crate) fn qa_checkout(
    dir: &Path,
    release: impl AsRef<std::ffi::OsStr>,
    base_url: Option<&str>,
) -> std::path::PathBuf {
    let release = release.as_ref().to_string_lossy().into_owned();
    let release = if release.contains("://") { release } else { format!("file://{release}") };
    let qa = dir.join("qa");
    copy_dir(&Path::new(WORKSPACE).join("chart-template"), &qa);
    let chart = std::fs::read_to_string(qa.join("Chart.yaml"))
        .unwrap()
        .replace("version: 0.1.0", "version: 0.2.0")
        .replace("appVersion: \"0.1.0\"", &format!("appVersion: \"{APP}\""));
    std::fs::write(qa.join("Chart.yaml"), chart).unwrap();
    let base = base_url.map(|u| format!("  base_url: {u}\n")).unwrap_or_default();
    let pipeline = crate::support::VALID_PIPELINE
        .replacen("https://git.example/release.git", &release, 1)
        .replacen("    credentials: git\n", "", if release.starts_with("file://") { 2 } else { 1 })
        .replacen("    token_env: GITHUB_TOKEN", "    username: ci\n    token_env: GITHUB_TOKEN", 1)
        .replacen("  name: bitcoin-operator\n", &format!("  name: bitcoin-operator\n{base}"), 1);
    std::fs::create_dir_all(qa.join("pipelines")).unwrap();
    std::fs::write(qa.join("pipelines/stagecoach.yaml"), pipeline).unwrap();
    git(&qa, &["init", "-q", "-b", "main"]);
    git(&qa, &["add", "."]);
    git(&qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "qa"]);
    qa
}

/// `qa`'s pipeline file with releases pushed to `oci://HOST/charts` too, over plain HTTP.
pub(crate) fn release_to_oci(qa: &Path, host: &str) {
    let file = qa.join("pipelines/stagecoach.yaml");
    let pipeline = std::fs::read_to_string(&file).unwrap().replacen(
        "  name: bitcoin-operator\n",
        &format!("  name: bitcoin-operator\n  oci: oci://{host}/charts\n  oci_plain_http: true\n"),
        1,
    );
    std::fs::write(file, pipeline).unwrap();
}

fn record(dir: &Path, name: &str, app_version: &str, digest: &str, outcome: &str) -> String {
    let path = dir.join(name);
    let json = serde_json::json!({
        "outcome": outcome,
        "stages": [{"name": "helm-install", "details": {"tested_app_version": app_version, "tested_chart_digest": digest}}],
    });
    std::fs::write(&path, json.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn only_the_tested_chart_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release.git");
    seed_bare_repo(&release, &[("README.md", "charts\n")]);
    let qa = qa_checkout(dir.path(), &release, None);

    // The digest the release would publish, from a dry run.
    let report = dir.path().join("dry.json");
    let dry = stagecoach(&qa, &["--dry-run", "--report", report.to_str().unwrap(), "release", "--untested"], &[]);
    dry.success();
    let dry: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let digest = dry["stages"][0]["details"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    assert_eq!(git(&release, &["rev-list", "--count", "main"]), "1", "a dry run published");

    let cases = [
        (
            "another appVersion",
            record(dir.path(), "a.json", &"f".repeat(40), &digest, "passed"),
            "appVersion: tested ffff",
        ),
        ("another chart", record(dir.path(), "b.json", APP, &"0".repeat(64), "passed"), "package digest: tested 0000"),
    ];
    for (name, path, want) in cases {
        let run = stagecoach(&qa, &["--no-progress", "release", "--tested", &path], &[]);
        assert_eq!(run.code, 1, "case {name}: {}", run.stderr);
        assert!(
            run.stderr.contains("the chart is not the one QA tested") && run.stderr.contains(want),
            "case {name}: {}",
            run.stderr
        );
        assert_eq!(git(&release, &["rev-list", "--count", "main"]), "1", "case {name}: published");
    }
    let failed = record(dir.path(), "c.json", APP, &digest, "failed");
    let run = stagecoach(&qa, &["release", "--tested", &failed], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not the record of a passed integration-test run"), "{}", run.stderr);
    let neither = stagecoach(&qa, &["release"], &[]);
    assert_eq!(neither.code, 2, "release without --tested or --untested must be refused");

    let good = record(dir.path(), "d.json", APP, &digest, "passed");
    stagecoach(&qa, &["--no-progress", "release", "--tested", &good], &[]).success();
    let index = git(&release, &["show", "main:index.yaml"]);
    assert!(index.contains(&format!("digest: {digest}")) && index.contains("version: 0.2.0"), "{index}");
}

#[test]
fn a_served_repository_is_checked_after_the_push() {
    // The RELEASE repository on the git HTTP server, where receive-pack runs its hooks: a
    // post-receive hook keeps a served checkout up to date, as pages services do.
    let Some(server) = GitServer::start("ci", "canary-s3cr3t-42") else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = server.create_repo("release", &[("README.md", "charts\n")]);
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let hook = server.bare("release").join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\nunset GIT_DIR\ngit --git-dir=\"$PWD\" --work-tree={} checkout -f main\n", site.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let files = FileServer::start(&site);
    let qa = qa_checkout(dir.path(), &url, Some(&files.url));
    let env = [("GITHUB_TOKEN", "canary-s3cr3t-42")];

    let run = stagecoach(&qa, &["--no-progress", "--report", "../served.json", "release", "--untested"], &env);
    run.success();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("served.json")).unwrap()).unwrap();
    assert_eq!(report["stages"][0]["details"]["served"], format!("{}/index.yaml", files.url).as_str());
    let index = std::fs::read_to_string(site.join("index.yaml")).unwrap();
    assert!(index.contains(&format!("- {}/bitcoin-operator-0.2.0.tgz", files.url)), "{index}");

    // A server that does not show what was pushed: the release says so.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let stale = FileServer::start(&empty);
    let other = server.create_repo("other", &[("README.md", "charts\n")]);
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let qa2 = qa_checkout(&second, &other, Some(&stale.url));
    let run =
        stagecoach(&qa2, &["--no-progress", "release", "--untested"], &[env[0], ("STAGECOACH_SERVE_TIMEOUT", "0")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("published, but")
            && run.stderr.contains("/index.yaml does not list bitcoin-operator 0.2.0"),
        "{}",
        run.stderr
    );
    // A server that never answers: each request gives up within the network timeout, and the
    // release says what it could not read.
    let silent_url = format!("http://127.0.0.1:{}", crate::support::silent_port());
    let third = dir.path().join("third");
    std::fs::create_dir_all(&third).unwrap();
    let qa3 = qa_checkout(&third, server.create_repo("third", &[("README.md", "charts\n")]), Some(&silent_url));
    let started = std::time::Instant::now();
    let run = stagecoach(
        &qa3,
        &["--no-progress", "--network-timeout", "1s", "release", "--untested"],
        &[env[0], ("STAGECOACH_SERVE_TIMEOUT", "0")],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("{silent_url}/index.yaml")), "{}", run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}

/// With `chart.oci`, the release is pushed to the OCI registry as well, before the index
/// repository, whose commit names the manifest; the same release again changes nothing, and a
/// dry run pushes nothing.
#[test]
fn a_release_goes_to_the_oci_registry_too() {
    let Some(registry) = crate::registry::Registry::start(None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release.git");
    seed_bare_repo(&release, &[("README.md", "charts\n")]);
    let qa = qa_checkout(dir.path(), &release, None);
    release_to_oci(&qa, &registry.host);
    git(&qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "oci"]);
    let name = "charts/bitcoin-operator";
    let details = |report: &Path| -> serde_json::Value {
        let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
        run["stages"][0]["details"].clone()
    };

    let report = dir.path().join("dry.json");
    let dry = stagecoach(&qa, &["--dry-run", "--report", report.to_str().unwrap(), "release", "--untested"], &[]);
    dry.success();
    let reference = format!("{}/{name}:0.2.0", registry.host);
    let digest = details(&report)["oci_digest"].as_str().unwrap().to_string();
    assert!(dry.stderr.contains(&format!("dry run: would push {reference} (manifest {digest})")), "{}", dry.stderr);
    assert_eq!(registry.digest(name, "0.2.0"), None, "the dry run pushed");

    let report = dir.path().join("run.json");
    let run = stagecoach(&qa, &["--no-progress", "--report", report.to_str().unwrap(), "release", "--untested"], &[]);
    run.success();
    assert_eq!(registry.digest(name, "0.2.0"), Some(digest.clone()));
    assert_eq!(details(&report)["oci_reference"], reference.as_str());
    let message = git(&release, &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains(&format!("Chart-OCI: {reference}@{digest}\n")), "{message}");
    // The registry holds the package the index repository does.
    let manifest = registry.manifest(name, "0.2.0").unwrap();
    let tgz = git(&release, &["show", "main:index.yaml"]);
    let index_digest = tgz.lines().find_map(|l| l.trim().strip_prefix("digest: ")).unwrap().to_string();
    assert_eq!(manifest["layers"][0]["digest"], format!("sha256:{index_digest}").as_str());

    let again = stagecoach(&qa, &["--no-progress", "release", "--untested"], &[]);
    again.success();
    assert!(again.stderr.contains("already there"), "{}", again.stderr);
    assert_eq!(git(&release, &["rev-list", "--count", "main"]), "2");
    assert_eq!(registry.digest(name, "0.2.0"), Some(digest.clone()));

    // Another chart under 0.2.0: refused before the index repository is touched.
    let chart = std::fs::read_to_string(qa.join("Chart.yaml")).unwrap();
    std::fs::write(qa.join("Chart.yaml"), chart.replacen("description: ", "description: Changed. ", 1)).unwrap();
    git(&qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "changed"]);
    let refused = stagecoach(&qa, &["--no-progress", "release", "--untested"], &[]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("a published chart is never replaced"), "{}", refused.stderr);
    assert_eq!(git(&release, &["rev-list", "--count", "main"]), "2");
    assert_eq!(registry.digest(name, "0.2.0"), Some(digest));
}

/// Without a RELEASE repository, a release goes to `chart.oci` alone.
#[test]
fn a_release_can_go_to_the_oci_registry_alone() {
    let Some(registry) = crate::registry::Registry::start(None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let qa = qa_checkout(dir.path(), dir.path().join("unused.git"), None);
    let pipeline = std::fs::read_to_string(qa.join("pipelines/stagecoach.yaml")).unwrap();
    let start = pipeline.find("  release:\n").unwrap();
    let end = start + pipeline[start..].find("image:\n").unwrap();
    let pipeline = format!("{}{}", &pipeline[..start], &pipeline[end..]).replacen(
        "  name: bitcoin-operator\n",
        &format!("  name: bitcoin-operator\n  oci: oci://{}/charts\n  oci_plain_http: true\n", registry.host),
        1,
    );
    std::fs::write(qa.join("pipelines/stagecoach.yaml"), &pipeline).unwrap();
    git(&qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "oci only"]);

    let plan = stagecoach(&qa, &["plan", "release"], &[]);
    plan.success();
    assert!(plan.stdout.contains("push oci://") && !plan.stdout.contains("clone "), "{}", plan.stdout);
    let report = dir.path().join("run.json");
    let run = stagecoach(&qa, &["--no-progress", "--report", report.to_str().unwrap(), "release", "--untested"], &[]);
    run.success();
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let digest = record["stages"][0]["details"]["oci_digest"].as_str().unwrap().to_string();
    assert_eq!(registry.digest("charts/bitcoin-operator", "0.2.0"), Some(digest));
    assert!(record["stages"][0]["details"].get("release_commit").is_none());

    // Neither a RELEASE repository nor chart.oci: refused before anything runs.
    let without = pipeline.replace(&format!("  oci: oci://{}/charts\n  oci_plain_http: true\n", registry.host), "");
    std::fs::write(qa.join("pipelines/stagecoach.yaml"), without).unwrap();
    let refused = stagecoach(&qa, &["release", "--untested"], &[]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("`repositories.release` (a Helm chart repository) or `chart.oci`"),
        "{}",
        refused.stderr
    );
}
