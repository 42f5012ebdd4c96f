//! The tar that `docker build` sends to the engine: the context directory less what
//! `.dockerignore` leaves out, with Docker's rules: patterns in order, the last match wins, `!`
//! brings paths back, a pattern matches a path or any of its parents, `**` spans directories.
//! The Dockerfile and `.dockerignore` are always sent. Entries are sorted and carry no
//! timestamps, so the same files give the same tar.
//!
//! A Dockerfile that only copies files into `scratch` and sets metadata needs no builder at all:
//! [`scratch_image`] gives the one layer and the metadata that `docker import` makes the same
//! image from, without the builder's container per instruction.

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
    /// The context's `.dockerignore`; none is no rule.
    pub fn of(context: &Path) -> Result<Self, ContextError> {
        let path = context.join(".dockerignore");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ContextError::Io { path, source }),
        }
    }

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
    let ignore = DockerIgnore::of(context)?;
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

/// What `docker import` needs to make the image a plain `FROM scratch` Dockerfile describes.
#[derive(Debug, PartialEq, Eq)]
pub struct ScratchImage {
    /// The one layer: each copied file (owned by root, its mode kept, no timestamp) and the
    /// directories above it.
    pub rootfs: Vec<u8>,
    /// The metadata instructions, as the engine's `changes` take them.
    pub changes: Vec<String>,
}

/// The PATH the builder gives an image made `FROM scratch`.
const SCRATCH_PATH: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Instructions that only set image metadata, which the engine applies the same way to an
/// import as to a build.
const METADATA: [&str; 7] = ["CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER"];

/// `Some` when `dockerfile` is `FROM scratch` followed only by `COPY <file> <absolute path>`
/// (no flags, wildcards or variables; a file the context sends) and metadata instructions;
/// `None` for anything else, which the builder runs.
pub fn scratch_image(context: &Path, dockerfile: &Path) -> Result<Option<ScratchImage>, ContextError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Io { path, source }
    };
    let text = std::fs::read_to_string(dockerfile).map_err(io(dockerfile))?;
    let ignore = DockerIgnore::of(context)?;
    let mut from_scratch = false;
    let mut copies: Vec<(String, String)> = Vec::new();
    let mut changes = vec![SCRATCH_PATH.to_string()];
    // Parser directives (`# syntax=…`, `# escape=…`) can only open the file.
    let mut directives = true;
    for line in text.lines() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            let directive = comment.split_once('=').is_some_and(|(name, _)| {
                let name = name.trim();
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric())
            });
            if directives && directive {
                return Ok(None);
            }
            directives &= directive;
            continue;
        }
        directives = false;
        if line.is_empty() {
            continue;
        }
        // Continuations, heredocs and variables are the builder's to read.
        if line.ends_with('\\') || line.contains("<<") || line.contains('$') {
            return Ok(None);
        }
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let (instruction, rest) = (instruction.to_ascii_uppercase(), rest.trim());
        match instruction.as_str() {
            "FROM" if !from_scratch && rest.eq_ignore_ascii_case("scratch") => from_scratch = true,
            "COPY" if from_scratch => {
                let [source, target] = rest.split_whitespace().collect::<Vec<_>>()[..] else { return Ok(None) };
                let plain = |p: &str| !p.starts_with("--") && !p.starts_with('[') && !p.contains(['*', '?']);
                let relative = Path::new(source).components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if !plain(source) || !plain(target) || !relative || !target.starts_with('/') || source.contains('[') {
                    return Ok(None);
                }
                let sent = std::fs::symlink_metadata(context.join(source)).is_ok_and(|m| m.is_file());
                if !sent || ignore.excludes(source) {
                    return Ok(None);
                }
                let name = source.rsplit('/').next().unwrap_or(source);
                let target = if target.ends_with('/') { format!("{target}{name}") } else { target.to_string() };
                let target = target.trim_start_matches('/').to_string();
                if target.is_empty() || target.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
                    return Ok(None);
                }
                if copies.iter().any(|(_, t)| *t == target) {
                    return Ok(None);
                }
                copies.push((source.to_string(), target));
            }
            name if from_scratch && METADATA.contains(&name) => changes.push(line.to_string()),
            _ => return Ok(None),
        }
    }
    if !from_scratch {
        return Ok(None);
    }
    let mut archive = tar::Builder::new(Vec::new());
    let mut directories: Vec<String> = Vec::new();
    for (source, target) in &copies {
        let mut parent = String::new();
        for part in target.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, dirs)| dirs) {
            parent = if parent.is_empty() { format!("{part}/") } else { format!("{parent}{part}/") };
            if directories.contains(&parent) {
                continue;
            }
            let mut header = root_owned(tar::EntryType::Directory, 0o755, 0);
            archive.append_data(&mut header, &parent, std::io::empty()).map_err(io(context))?;
            directories.push(parent.clone());
        }
        let path = context.join(source);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).map_err(io(&path))?.permissions());
        let mut header = root_owned(tar::EntryType::Regular, mode & 0o7777, bytes.len() as u64);
        archive.append_data(&mut header, target, bytes.as_slice()).map_err(io(&path))?;
    }
    let rootfs = archive.into_inner().map_err(io(context))?;
    Ok(Some(ScratchImage { rootfs, changes }))
}

fn root_owned(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
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
    fn scratch_image_table() {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in [(".dockerignore", "secret\n"), ("bin/app", "binary"), ("secret", "s"), ("notes.txt", "n")]
        {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        }
        std::os::unix::fs::symlink("bin/app", dir.path().join("link")).unwrap();
        let ours = "FROM scratch\nCOPY bin/app /app\nUSER 65532:65532\nENTRYPOINT [\"/app\"]\n";
        // (case, Dockerfile, the changes of an import, or None for the builder)
        let path = SCRATCH_PATH;
        let cases: [(&str, &str, Option<&[&str]>); 19] = [
            ("ours", ours, Some(&[path, "USER 65532:65532", "ENTRYPOINT [\"/app\"]"])),
            (
                "comments, case and every metadata instruction",
                "# built by CI\nfrom SCRATCH\n\ncopy bin/app /usr/local/bin/\n# a note\nENV A=1 B=2\nLABEL a=b\nEXPOSE 8080\nSTOPSIGNAL SIGTERM\nCMD [\"x\"]\n",
                Some(&[path, "ENV A=1 B=2", "LABEL a=b", "EXPOSE 8080", "STOPSIGNAL SIGTERM", "CMD [\"x\"]"]),
            ),
            ("only FROM", "FROM scratch\n", Some(&[path])),
            ("another base", "FROM alpine\nCOPY bin/app /app\n", None),
            ("a stage name", "FROM scratch AS out\nCOPY bin/app /app\n", None),
            ("a parser directive", "# syntax=docker/dockerfile:1\nFROM scratch\n", None),
            ("a comment, then what is no directive", "# built with\n# escape=`\nFROM scratch\n", Some(&[path])),
            ("RUN", "FROM scratch\nRUN true\n", None),
            ("WORKDIR makes a directory", "FROM scratch\nWORKDIR /w\n", None),
            ("a flag", "FROM scratch\nCOPY --chown=1:1 bin/app /app\n", None),
            ("a wildcard", "FROM scratch\nCOPY bin/* /app\n", None),
            ("a relative target", "FROM scratch\nCOPY bin/app app\n", None),
            ("a directory", "FROM scratch\nCOPY bin /bin\n", None),
            ("a symlink", "FROM scratch\nCOPY link /app\n", None),
            ("an ignored file", "FROM scratch\nCOPY secret /secret\n", None),
            ("out of the context", "FROM scratch\nCOPY ../etc/passwd /p\n", None),
            ("a variable", "FROM scratch\nENV A=$B\n", None),
            ("a continuation", "FROM scratch\nENTRYPOINT [\"/app\", \\\n \"x\"]\n", None),
            ("no FROM", "COPY bin/app /app\n", None),
        ];
        for (name, text, want) in cases {
            std::fs::write(dir.path().join("Dockerfile"), text).unwrap();
            let got = scratch_image(dir.path(), &dir.path().join("Dockerfile")).unwrap();
            let want = want.map(|w| w.iter().map(|c| c.to_string()).collect::<Vec<_>>());
            assert_eq!(got.as_ref().map(|g| g.changes.clone()), want, "case {name}");
        }

        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY bin/app /usr/local/bin/\nCOPY notes.txt /usr/notes\n",
        )
        .unwrap();
        std::fs::set_permissions(dir.path().join("bin/app"), std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        let image = scratch_image(dir.path(), &dir.path().join("Dockerfile")).unwrap().unwrap();
        let mut archive = tar::Archive::new(image.rootfs.as_slice());
        let entries: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.uid().unwrap(), h.size().unwrap())
            })
            .collect();
        let want = [
            ("usr/", 0o755, 0, 0),
            ("usr/local/", 0o755, 0, 0),
            ("usr/local/bin/", 0o755, 0, 0),
            ("usr/local/bin/app", 0o750, 0, 6),
            ("usr/notes", 0o644, 0, 1),
        ];
        assert_eq!(entries, want.map(|(p, m, u, s)| (p.to_string(), m, u, s)));
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
