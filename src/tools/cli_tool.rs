//! An external program found on PATH or at a configured path, with what to install when it is
//! missing. kind, helm and kubectl are used this way.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("`{name}` was not found{where_}; {install}")]
pub struct MissingTool {
    pub name: &'static str,
    pub where_: String,
    pub install: &'static str,
}

/// `configured` if given (it must exist), else the first `name` on `path`.
pub fn find(
    name: &'static str,
    configured: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
    install: &'static str,
) -> Result<PathBuf, MissingTool> {
    if let Some(file) = configured {
        return if file.is_file() {
            Ok(file.to_path_buf())
        } else {
            Err(MissingTool {
                name,
                where_: format!(" at {} (tools.{name} in the pipeline file)", file.display()),
                install,
            })
        };
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or(MissingTool { name, where_: " on PATH".into(), install })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_table() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kind"), "").unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        assert_eq!(find("kind", None, Some(&path), "install kind").unwrap(), dir.path().join("kind"));
        let missing = find("helm", None, Some(&path), "install Helm from https://helm.sh").unwrap_err();
        assert_eq!(missing.to_string(), "`helm` was not found on PATH; install Helm from https://helm.sh");
        let configured = find("kind", Some(Path::new("/nope/kind")), Some(&path), "install kind").unwrap_err();
        assert_eq!(
            configured.to_string(),
            "`kind` was not found at /nope/kind (tools.kind in the pipeline file); install kind"
        );
    }
}
