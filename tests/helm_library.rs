//! Charts, packages and indexes that stagecoach writes, checked by the real Helm library
//! (libhelm_sdkpy.so from PyPI helm-sdkpy, driven by tests/helm/helm_check.py).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{FileServer, copy_dir, missing_component, stagecoach};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

/// Runs the helper with its own Helm home; `None` when the library is not installed here.
struct Helm {
    lib: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn find() -> Option<Self> {
        let lib = std::env::var_os("STAGECOACH_HELM_LIB").map(PathBuf::from).unwrap_or_else(|| {
            crate::ci_cache::find("helm-sdkpy-", "helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so").unwrap_or_default()
        });
        if !lib.is_file() {
            missing_component("the Helm library", &format!("{} not found; .ci/run downloads it", lib.display()));
            return None;
        }
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("repositories.yaml"), "apiVersion: \"\"\nrepositories: []\n").unwrap();
        Some(Self { lib, home })
    }

    /// (success, stdout, stderr)
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let h = self.home.path();
        let output = Command::new("python3")
            .arg(Path::new(WORKSPACE).join("tests/helm/helm_check.py"))
            .args(args)
            .env("STAGECOACH_HELM_LIB", &self.lib)
            .env("HELM_CONFIG_HOME", h)
            .env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_DATA_HOME", h.join("data"))
            .env("HELM_REPOSITORY_CONFIG", h.join("repositories.yaml"))
            .env("HELM_REPOSITORY_CACHE", h.join("cache/repository"))
            .output()
            .expect("run python3");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "helm {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }
}

fn tar_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let bytes = std::fs::read(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut entries: Vec<(String, Vec<u8>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            (name, body)
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn chart_template_passes_helm_lint_and_our_package_matches_helms() {
    let Some(helm) = Helm::find() else { return };
    let template = Path::new(WORKSPACE).join("chart-template");
    helm.ok(&["lint", template.to_str().unwrap()]);

    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours");
    let theirs = work.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    stagecoach(work.path(), &["chart", "package", template.to_str().unwrap(), "--out", ours.to_str().unwrap()], &[])
        .success();
    let helm_path = helm.ok(&["package", template.to_str().unwrap(), theirs.to_str().unwrap()]);
    let ours_tgz = ours.join("bitcoin-operator-0.1.0.tgz");

    // Helm loads ours and reads the same metadata it reads from its own package.
    let show_ours = helm.ok(&["show", ours_tgz.to_str().unwrap()]);
    let show_theirs = helm.ok(&["show", helm_path.trim()]);
    assert_eq!(show_ours, show_theirs);
    assert!(show_ours.contains("name: bitcoin-operator") && show_ours.contains("version: 0.1.0"), "{show_ours}");

    // The same files with the same bytes; Helm re-serialises Chart.yaml, we keep it as written.
    let strip = |entries: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        entries
            .into_iter()
            .map(|(name, body)| if name.ends_with("/Chart.yaml") { (name, Vec::new()) } else { (name, body) })
            .collect()
    };
    assert_eq!(strip(tar_entries(&ours_tgz)), strip(tar_entries(Path::new(helm_path.trim()))));
    let chart_yaml = tar_entries(&ours_tgz).into_iter().find(|e| e.0 == "bitcoin-operator/Chart.yaml").unwrap().1;
    assert_eq!(chart_yaml, std::fs::read(template.join("Chart.yaml")).unwrap());
}

#[test]
fn helm_lint_refuses_broken_templates_and_values_outside_the_schema() {
    // The check above is only worth something if this library does refuse bad charts.
    let Some(helm) = Helm::find() else { return };
    let cases: &[(&str, &str, &str, &str)] = &[
        ("a broken template", "templates/broken.yaml", "", "{{ .Values.nope.deeper }\n"),
        ("an unknown pull policy", "values.yaml", "pullPolicy: IfNotPresent", "pullPolicy: Sometimes"),
        (
            "a secret name that is no Kubernetes name",
            "values.yaml",
            "readableSecrets: []",
            "readableSecrets: [Bad_Name]",
        ),
        ("an unknown key", "values.yaml", "serviceAccount:", "replicaCount: 2\nserviceAccount:"),
        ("a resync of zero", "values.yaml", "resyncSeconds: 60", "resyncSeconds: 0"),
    ];
    for (name, file, from, to) in cases {
        let work = tempfile::tempdir().unwrap();
        copy_dir(&Path::new(WORKSPACE).join("chart-template"), work.path());
        let path = work.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(text.contains(from), "{name}: {file} no longer has {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (ok, stdout, _) = helm.run(&["lint", work.path().to_str().unwrap()]);
        assert!(!ok, "{name}: Helm's lint accepted it:\n{stdout}");
    }
}

#[derive(serde::Deserialize)]
struct Index {
    entries: std::collections::BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(serde::Deserialize)]
struct IndexEntry {
    version: String,
    digest: String,
    urls: Vec<String>,
}

#[test]
fn our_index_served_over_http_is_accepted_by_helm_and_every_url_matches_its_digest() {
    let Some(helm) = Helm::find() else { return };
    let work = tempfile::tempdir().unwrap();
    let chart = work.path().join("chart");
    let repo = work.path().join("repo");
    copy_dir(&Path::new(WORKSPACE).join("chart-template"), &chart);
    let server = FileServer::start(&repo);
    let chart_arg = chart.to_str().unwrap();
    let repo_arg = repo.to_str().unwrap();

    for version in ["0.1.0", "0.2.0", "0.1.1-dev.64ed033"] {
        stagecoach(
            work.path(),
            &["chart", "set", &format!("{chart_arg}/Chart.yaml"), &format!("version={version}")],
            &[],
        )
        .success();
        stagecoach(
            work.path(),
            &["chart", "package", chart_arg, "--rename", "bitcoin-operator", "--out", repo_arg],
            &[],
        )
        .success();
        stagecoach(work.path(), &["chart", "index", "--repo", repo_arg, "--url", &server.url], &[]).success();
    }
    let text = std::fs::read_to_string(repo.join("index.yaml")).unwrap();
    let index: Index = serde_saphyr::from_str(&text).unwrap();
    let versions: Vec<&str> = index.entries["bitcoin-operator"].iter().map(|e| e.version.as_str()).collect();
    assert_eq!(versions, ["0.2.0", "0.1.1-dev.64ed033", "0.1.0"], "newest first");

    helm.ok(&["repo-add", "stagecoach-test", &server.url]);
    for entry in &index.entries["bitcoin-operator"] {
        assert_eq!(entry.urls.len(), 1);
        let served = helm.ok(&["sha256", &entry.urls[0]]);
        assert_eq!(served.trim(), entry.digest, "{}", entry.urls[0]);
    }

    // Indexing again changes nothing, not even `generated`.
    let again = stagecoach(work.path(), &["chart", "index", "--repo", repo_arg, "--url", &server.url], &[]);
    again.success();
    assert!(again.stdout.contains("index.yaml: unchanged"), "{}", again.stdout);
    assert_eq!(std::fs::read_to_string(repo.join("index.yaml")).unwrap(), text);

    // And a broken index is refused by Helm, so the acceptance above means something.
    std::fs::write(repo.join("index.yaml"), "apiVersion: v1\nentries:\n  x: [broken\n").unwrap();
    let (ok, _, stderr) = helm.run(&["repo-add", "broken", &server.url]);
    assert!(!ok && stderr.contains("failed to download index file"), "{stderr}");
}
