//! The real programs the chart and manifest checks run: the Helm engine (PyPI helm-python-sdk)
//! through `tests/helm/render.py`, `kubernetes-validate` and `checkov` (PyPI), all installed by
//! `.ci/run`. A missing one fails the test in CI (STAGECOACH_REQUIRE_COMPONENTS=1) and skips it,
//! loudly, elsewhere.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn missing(what: &str, how: &str) {
    let required = std::env::var_os("STAGECOACH_REQUIRE_COMPONENTS").is_some_and(|v| v == "1");
    assert!(!required, "{what} is required here (STAGECOACH_REQUIRE_COMPONENTS=1) but missing: {how}");
    eprintln!("SKIPPED: {what} is missing ({how})");
}

/// $STAGECOACH_HELM_PYTHON, else the venv .ci/run makes.
pub fn helm_engine() -> Option<PathBuf> {
    let python = std::env::var_os("STAGECOACH_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::ci_cache::find("helm-python-sdk-", "bin/python").unwrap_or_default());
    let works = Command::new(&python).args(["-c", "import helm_python"]).output().is_ok_and(|o| o.status.success());
    if !works {
        missing("the Helm engine (PyPI helm-python-sdk)", &format!("{} cannot import helm_python", python.display()));
        return None;
    }
    Some(python)
}

/// The directory with `kubernetes-validate` and `checkov`: $STAGECOACH_K8S_CHECKS, else the venv
/// .ci/run makes.
pub fn k8s_checks() -> Option<PathBuf> {
    let bin = std::env::var_os("STAGECOACH_K8S_CHECKS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::ci_cache::find("kubernetes-validate-", "bin").unwrap_or_default());
    let works = ["kubernetes-validate", "checkov"]
        .iter()
        .all(|tool| Command::new(bin.join(tool)).arg("--version").output().is_ok_and(|o| o.status.success()));
    if !works {
        missing("kubernetes-validate and checkov (PyPI)", &format!("not runnable from {}", bin.display()));
        return None;
    }
    Some(bin)
}

/// The chart in `chart-template/` rendered by the real Helm engine as release `op` in
/// `namespace`, with `--set-json` expressions.
pub fn render_chart(python: &Path, namespace: &str, sets: &[&str]) -> String {
    let mut command = Command::new(python);
    command
        .arg(workspace().join("tests/helm/render.py"))
        .args(["template", "op"])
        .arg(workspace().join("chart-template"));
    command.args(["--namespace", namespace]);
    for set in sets {
        command.args(["--set-json", set]);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "render {sets:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The documents of a multi-document YAML text.
pub fn documents(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    documents.into_iter().filter(|d| !d.is_null()).collect()
}
