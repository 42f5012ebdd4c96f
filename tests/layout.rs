//! The layout holds: dependencies point one way (DESIGN.md), clap stays in cli.rs, and the
//! tests compile no dependency that the build compiled already.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules of `src/`, from the top down: a module may use only modules further down.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["cli"],
    &["app"],
    &["pipeline", "report"],
    &["stages"],
    &["ci", "credentials", "branch_update"],
    &["tools"],
    &["chart", "cosign", "process", "runner"],
    &["config", "secrets", "version", "record", "build_context"],
    &["files"],
];

fn layer(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or_else(|| panic!("module `{module}` is in no layer"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::x` paths in `text`, also inside `use crate::{x, y}` groups.
fn used_modules(text: &str) -> Vec<String> {
    let mut used = Vec::new();
    for (index, _) in text.match_indices("crate::") {
        let rest = &text[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            used.extend(inner.split(',').map(|p| p.trim().split("::").next().unwrap_or("").to_string()));
        } else {
            used.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    used.retain(|m| !m.is_empty());
    used
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        // `main` is the binary: it reaches the library as `stagecoach::`.
        let text = text.replace("stagecoach::", "crate::");
        for used in used_modules(&text) {
            if used != module && layer(&used) <= layer(&module) {
                upward.push(format!("{}: {module} uses {used}", file.strip_prefix(&src).unwrap().display()));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(upward.is_empty(), "dependencies that do not point down:\n{}", upward.join("\n"));
}

#[test]
fn clap_stays_in_the_command_line_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let leaks: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("cli.rs") && !f.ends_with("main.rs"))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("clap::"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(leaks.is_empty(), "clap outside cli.rs: {leaks:?}");
}

#[test]
fn used_modules_table() {
    let cases = [
        ("a path", "use crate::tools::git::Remote;", vec!["tools"]),
        ("a group", "use crate::{config::Config, secrets};", vec!["config", "secrets"]),
        ("inline", "let x = crate::files::diff(a, b);", vec!["files"]),
        ("none", "use super::AppError;", vec![]),
    ];
    for (name, text, want) in cases {
        assert_eq!(used_modules(text), want, "{name}");
    }
}

/// Each package of the workspace's graph with the feature sets it is compiled with (one for the
/// target, one for build scripts and proc macros), as `cargo tree` resolves them for `edges`
/// (`normal,build` for `cargo build`, `normal,build,dev` for the tests).
fn features(edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--workspace", "--locked", "--prefix", "none", "--format", "{p}|{f}", "-e", edges])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (package, features) in text.lines().filter_map(|line| line.trim_end_matches(" (*)").split_once('|')) {
        packages.entry(package.trim().to_string()).or_default().insert(features.to_string());
    }
    packages
}

/// A dev-dependency that turns on a feature of a shared crate (tower-test turned on tokio's
/// `test-util`) makes `cargo test` compile that crate and everything built on it a second time
/// after `cargo build`: 46 s of the DEV stage's cold build on our machines.
#[test]
fn tests_compile_the_dependencies_with_the_features_the_build_did() {
    let build = features("normal,build");
    let tests = features("normal,build,dev");
    let changed: Vec<String> = build
        .iter()
        .filter_map(|(package, f)| {
            let t = tests.get(package)?;
            (t != f).then(|| format!("{package}: build {f:?}, tests {t:?}"))
        })
        .collect();
    assert!(build.len() > 100, "cargo tree listed {} packages", build.len());
    assert!(changed.is_empty(), "dev-dependencies change features:\n{}", changed.join("\n"));
}
