//! `chart push` against Debian's docker-registry on 127.0.0.1, without auth and with htpasswd
//! auth (credentials from a docker config.json); the real Helm engine (PyPI helm-python-sdk)
//! pulls back the bytes that were pushed.

use std::path::Path;
use std::process::Command;

use crate::registry::Registry;
use crate::support::{helm_engine, stagecoach};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
const NAME: &str = "charts/bitcoin-operator";

/// The chart-template packaged into `dir/out`, with a provenance file beside it.
fn packaged(dir: &Path, chart: &Path) -> std::path::PathBuf {
    let out = dir.join("out");
    let args = ["chart", "package", chart.to_str().unwrap(), "--rename", "bitcoin-operator", "--out", "out"];
    stagecoach(dir, &args, &[]).success();
    let tgz = out.join("bitcoin-operator-0.1.0.tgz");
    std::fs::write(out.join("bitcoin-operator-0.1.0.tgz.prov"), "a provenance file\n").unwrap();
    tgz
}

#[test]
fn a_pushed_chart_pulls_back_byte_for_byte_and_is_never_replaced() {
    let (Some(registry), Some(python)) = (Registry::start(None), helm_engine()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tgz = packaged(d, &Path::new(WORKSPACE).join("chart-template"));
    let repository = format!("oci://{}/charts", registry.host);
    let push = |extra: &[&str]| {
        let args = [extra, &["chart", "push", tgz.to_str().unwrap(), &repository, "--plain-http"]].concat();
        stagecoach(d, &args, &[])
    };

    let dry = push(&["--dry-run"]);
    dry.success();
    let reference = format!("{}/{NAME}:0.1.0", registry.host);
    assert!(dry.stdout.starts_with(&format!("dry run: would push {reference} with ")), "{}", dry.stdout);
    let digest = dry.stdout.split("(manifest ").nth(1).unwrap().trim_end().trim_end_matches(')').to_string();
    assert_eq!(registry.digest(NAME, "0.1.0"), None, "the dry run pushed");

    let run = push(&[]);
    run.success();
    assert_eq!(run.stdout, format!("pushed {reference} with {}.prov\ndigest: {digest}\n", tgz.display()));
    assert_eq!(registry.digest(NAME, "0.1.0"), Some(digest.clone()));
    let manifest = registry.manifest(NAME, "0.1.0").unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.cncf.helm.config.v1+json");
    let layers: Vec<&str> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
    assert_eq!(
        layers,
        ["application/vnd.cncf.helm.chart.content.v1.tar+gzip", "application/vnd.cncf.helm.chart.provenance.v1.prov"]
    );

    // Helm pulls back the very bytes.
    let pulled = d.join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    let out = Command::new(&python)
        .args(["-c", "import sys, helm_python as h; h.pull(sys.argv[1], destination=sys.argv[2], version='0.1.0', plain_http=True)"])
        .arg(format!("oci://{}/{NAME}", registry.host))
        .arg(&pulled)
        .output()
        .unwrap();
    assert!(out.status.success(), "helm pull: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(pulled.join("bitcoin-operator-0.1.0.tgz")).unwrap(), std::fs::read(&tgz).unwrap());

    // Again: nothing to do. Other bytes under the same version: refused, the manifest stays.
    let again = push(&[]);
    again.success();
    assert!(again.stdout.contains(&format!("already there (manifest {digest})")), "{}", again.stdout);
    let chart = d.join("chart");
    crate::support::copy_dir(&Path::new(WORKSPACE).join("chart-template"), &chart);
    std::fs::write(chart.join("templates/NOTES.txt"), "changed\n").unwrap();
    let other = d.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let tgz_other = packaged(&other, &chart);
    let args = ["chart", "push", tgz_other.to_str().unwrap(), &repository, "--plain-http"];
    let refused = stagecoach(d, &args, &[]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("a published chart is never replaced"), "{}", refused.stderr);
    assert_eq!(registry.digest(NAME, "0.1.0"), Some(digest));
}

#[test]
fn credentials_come_from_the_pipeline_file_or_docker_login() {
    let Some(registry) = Registry::start(Some(("ci", "registry-pass-5k2"))) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tgz = packaged(d, &Path::new(WORKSPACE).join("chart-template"));
    let repository = format!("oci://{}/charts", registry.host);
    let args = ["chart", "push", tgz.to_str().unwrap(), &repository, "--plain-http"];

    let anonymous = stagecoach(d, &args, &[]);
    assert_eq!(anonymous.code, 1, "{}", anonymous.stderr);
    assert!(anonymous.stderr.contains(&format!("`docker login {}`", registry.host)), "{}", anonymous.stderr);

    let config = d.join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let auth = base64_of("ci:registry-pass-5k2");
    std::fs::write(
        config.join("config.json"),
        format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}", registry.host),
    )
    .unwrap();
    let run = stagecoach(d, &args, &[("DOCKER_CONFIG", config.to_str().unwrap())]);
    run.success();
    assert!(run.stdout.contains("digest: sha256:"), "{}", run.stdout);
    assert!(!run.stdout.contains("registry-pass-5k2") && !run.stderr.contains("registry-pass-5k2"));

    // In a repository whose pipeline file sends releases to that registry, its credentials
    // entry is used (here the docker config would be wrong).
    let repo = crate::support::Repo::new(
        &crate::support::VALID_PIPELINE
            .replacen(
                "  name: bitcoin-operator\n",
                &format!("  name: bitcoin-operator\n  oci: {repository}\n  oci_credentials: charts\n"),
                1,
            )
            .replacen(
                "credentials:\n",
                "credentials:\n  charts:\n    username: ci\n    password_env: CHARTS_PASSWORD\n",
                1,
            ),
    );
    std::fs::write(
        config.join("config.json"),
        format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{}\"}}}}}}", registry.host, base64_of("ci:wrong")),
    )
    .unwrap();
    let run = stagecoach(
        repo.path(),
        &args,
        &[("DOCKER_CONFIG", config.to_str().unwrap()), ("CHARTS_PASSWORD", "registry-pass-5k2")],
    );
    run.success();
    assert!(run.stdout.contains("already there"), "{}", run.stdout);
    let wrong =
        stagecoach(repo.path(), &args, &[("DOCKER_CONFIG", config.to_str().unwrap()), ("CHARTS_PASSWORD", "nope")]);
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
}

fn base64_of(text: &str) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    out.stdin.as_ref().unwrap().write_all(text.as_bytes()).unwrap();
    String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
}
