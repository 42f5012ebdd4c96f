//! Where `.ci/run` keeps the PyPI parts the tests use, outside the checkout: the tests find them
//! there when the variables `.ci/run` exports are not set (a run of the test command by hand).
//! Shared by the CLI tests and the operator's tests (`#[path]`).

#![allow(dead_code)]

use std::path::PathBuf;

/// The first entry of `.ci/run`'s cache whose name starts with `prefix` (they are named by
/// version), joined with `inside` unless it is empty.
pub fn find(prefix: &str, inside: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cache = std::env::var_os("STAGECOACH_CI_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache"))
            .join("stagecoach-ci")
    });
    let mut names: Vec<_> = std::fs::read_dir(&cache).ok()?.flatten().map(|e| e.file_name()).collect();
    names.sort();
    let name = names.into_iter().find(|n| n.to_string_lossy().starts_with(prefix))?;
    let entry = cache.join(name);
    Some(if inside.is_empty() { entry } else { entry.join(inside) })
}
