//! The tar that `docker build` sends to the engine: the context directory less what
//! `.dockerignore` leaves out, with Docker's rules: patterns in order, the last match wins, `!`
//! brings paths back, a pattern matches a path or any of its parents, `**` spans directories.
//! The Dockerfile and `.dockerignore` are always sent. Entries are sorted and carry no
//! timestamps, so the same files give the same tar.

use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};

const OPTIONS: MatchOptions =
    MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(".dockerignore line {line}: {message}")]
    Pattern { line: usize, message: String },
    #[error("{}: not a file name that can be sent to Docker", .0.display())]
    BadName(PathBuf),
    #[error("the Dockerfile {} is not in the build context {}", .dockerfile.display(), .context.display())]
    NoDockerfile { dockerfile: PathBuf, context: PathBuf },
}

struct Rule {
    pattern: Pattern,
    /// The text before the first wildcard: where an exception can bring files back.
    literal_prefix: String,
    exception: bool,
}

#[derive(Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

impl DockerIgnore {
    pub fn parse(text: &str) -> Result<Self, ContextError> {
        let mut rules = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            let literal_prefix = pattern.split(['*', '?', '[', '\\']).next().unwrap_or("").to_string();
            let compiled = Pattern::new(&pattern)
                .map_err(|e| ContextError::Pattern { line: index + 1, message: format!("{pattern:?}: {}", e.msg) })?;
            rules.push(Rule { pattern: compiled, literal_prefix, exception });
        }
        Ok(Self { rules })
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            if matches_or_parent_matches(&rule.pattern, path) {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// Whether an exception could bring back something inside the excluded directory `dir`.
    fn may_include_below(&self, dir: &str) -> bool {
        self.rules.iter().any(|r| {
            r.exception && (r.literal_prefix.starts_with(&format!("{dir}/")) || dir.starts_with(&r.literal_prefix))
        })
    }
}

fn matches_or_parent_matches(pattern: &Pattern, path: &str) -> bool {
    let mut candidate = path;
    loop {
        if pattern.matches_with(candidate, OPTIONS) {
            return true;
        }
        match candidate.rfind('/') {
            Some(slash) => candidate = &candidate[..slash],
            None => return false,
        }
    }
}

/// Docker cleans patterns like Go's filepath.Clean and drops a leading `/`.
fn clean(pattern: &str) -> String {
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    parts.join("/")
}

/// The tar of `context` for a build with `dockerfile` (a path inside the context).
pub fn tar(context: &Path, dockerfile: &Path) -> Result<Vec<u8>, ContextError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Io { path, source }
    };
    let ignore_path = context.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(text) => DockerIgnore::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(io(&ignore_path)(e)),
    };
    let dockerfile_rel = dockerfile.strip_prefix(context).unwrap_or(dockerfile).to_string_lossy().replace('\\', "/");
    if !context.join(&dockerfile_rel).is_file() {
        return Err(ContextError::NoDockerfile {
            dockerfile: dockerfile.to_path_buf(),
            context: context.to_path_buf(),
        });
    }
    let always = [dockerfile_rel.as_str(), ".dockerignore"];
    let mut files = Vec::new();
    walk(context, "", &ignore, &always, &mut files)?;
    files.sort();

    let mut archive = tar::Builder::new(Vec::new());
    for relative in files {
        let path = context.join(&relative);
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            archive.append_link(&mut header, &relative, &target).map_err(io(&path))?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            header.set_mode(meta.permissions().mode() & 0o7777);
            archive.append_data(&mut header, &relative, bytes.as_slice()).map_err(io(&path))?;
        }
    }
    archive.into_inner().map_err(io(context))
}

fn walk(
    dir: &Path,
    prefix: &str,
    ignore: &DockerIgnore,
    always: &[&str],
    out: &mut Vec<String>,
) -> Result<(), ContextError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().into_string().map_err(|_| ContextError::BadName(entry.path()))?;
        let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        if kind.is_dir() {
            if !ignore.excludes(&relative)
                || ignore.may_include_below(&relative)
                || always.iter().any(|a| a.starts_with(&format!("{relative}/")))
            {
                walk(&entry.path(), &relative, ignore, always, out)?;
            }
        } else if always.contains(&relative.as_str()) || !ignore.excludes(&relative) {
            out.push(relative);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_table() {
        let ignore = DockerIgnore::parse(
            "# comment\n*\n!operator/Dockerfile\n!target/release/operator\ndocs/**/*.md\n!docs/keep.md\n/tmp\n",
        )
        .unwrap();
        let cases = [
            ("README.md", true),
            ("operator/Dockerfile", false),
            ("operator/src/main.rs", true),
            ("target/release/operator", false),
            ("target/release/other", true),
            ("docs/keep.md", false),
            ("tmp/x", true),
        ];
        for (path, excluded) in cases {
            assert_eq!(ignore.excludes(path), excluded, "{path}");
        }
        let deep = DockerIgnore::parse("**/*.log\nnode_modules\n").unwrap();
        for (path, excluded) in
            [("a.log", true), ("x/y/z.log", true), ("node_modules/a/b.js", true), ("src/node_modules.rs", false)]
        {
            assert_eq!(deep.excludes(path), excluded, "{path}");
        }
        assert!(!deep.may_include_below("node_modules"));
        assert!(ignore.may_include_below("target"));
        assert!(!ignore.may_include_below("target/debug"));
    }

    #[test]
    fn the_context_tar_holds_what_docker_would_send() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            (".dockerignore", "*\n!bin/app\n"),
            ("Dockerfile", "FROM scratch\n"),
            ("bin/app", "binary"),
            ("bin/other", "left out"),
            ("src/main.rs", "left out"),
        ];
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let bytes = tar(dir.path(), &dir.path().join("Dockerfile")).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, [".dockerignore", "Dockerfile", "bin/app"]);
        assert_eq!(bytes, tar(dir.path(), &dir.path().join("Dockerfile")).unwrap(), "not reproducible");
        let missing = tar(dir.path(), Path::new("nope/Dockerfile")).unwrap_err();
        assert!(
            missing.to_string().starts_with("the Dockerfile nope/Dockerfile is not in the build context"),
            "{missing}"
        );
    }
}
