//! Writing files safely and showing how they changed: shared by the commands that edit files
//! in place and by the stages that edit clones. A path that comes from a flag, the pipeline file
//! or a repository's content resolves inside the checkout it belongs to, or is refused.

use std::path::{Component, Path, PathBuf};

/// The scratch directories alive in this process, for [`remove_scratch_dirs`].
static SCRATCH: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A private temporary directory, removed when dropped — or, however the command ends (a
/// signal while a blocking task still holds it), by [`remove_scratch_dirs`] on the way out.
pub struct ScratchDir(Option<tempfile::TempDir>);

/// A new [`ScratchDir`] in TMPDIR, named `PREFIX…`.
pub fn scratch_dir(prefix: &str) -> std::io::Result<ScratchDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).push(dir.path().to_path_buf());
    Ok(ScratchDir(Some(dir)))
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new(""), |dir| dir.path())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let path = self.path().to_path_buf();
        SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != path);
        drop(self.0.take());
    }
}

/// Removes every scratch directory still alive: called on the way out of the process, when
/// a signal ended the command and a thread that holds one will never drop it.
pub fn remove_scratch_dirs() {
    for path in std::mem::take(&mut *SCRATCH.lock().unwrap_or_else(|e| e.into_inner())) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Text that is not UTF-8: where its first bad byte is, for the error that names the place.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}, column {column}: byte 0x{byte:02x} is not UTF-8; save the file as UTF-8 text")]
pub struct NotUtf8 {
    pub line: usize,
    pub column: usize,
    pub byte: u8,
}

/// `bytes` as text, or where the first byte that is not UTF-8 is (columns count characters).
pub fn utf8_text(bytes: &[u8]) -> Result<&str, NotUtf8> {
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default();
        let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
        NotUtf8 {
            line: valid.matches('\n').count() + 1,
            column: valid[line_start..].chars().count() + 1,
            byte: bytes[error.valid_up_to()],
        }
    })
}

/// Why a path was refused: it would lead out of the checkout it must stay in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Escape {
    #[error("{}: an absolute path; name a file inside the repository, relative to its root", .0.display())]
    Absolute(PathBuf),
    #[error("{}: `..` leads out of the repository; name a file inside it", .0.display())]
    Parent(PathBuf),
    #[error("{}: a symbolic link to {}, outside the repository; refusing to follow it", .path.display(), .target.display())]
    Symlink { path: PathBuf, target: PathBuf },
}

/// `relative` inside `root`, checked before anything is read or written there: not absolute,
/// no `..`, and no symbolic link on the way (the file itself included) that resolves outside
/// `root`. Links that stay inside are fine (they are followed when the file is written).
pub fn inside(root: &Path, relative: &Path) -> Result<PathBuf, Escape> {
    relative_path(relative)?;
    let canonical_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mut path = root.to_path_buf();
    for component in relative.components() {
        path.push(component);
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            continue;
        }
        // A dangling link is judged by where it points, not by whether that exists yet.
        let target = match path.canonicalize() {
            Ok(target) => target,
            Err(_) => {
                let link = std::fs::read_link(&path).unwrap_or_default();
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                normalize(&base.join(link))
            }
        };
        if !target.starts_with(&canonical_root) {
            return Err(Escape::Symlink { path: relative.to_path_buf(), target });
        }
    }
    Ok(root.join(relative))
}

/// The part of [`inside`] that needs no file system: not absolute, no `..`. Checked before a
/// repository is even cloned.
pub fn relative_path(relative: &Path) -> Result<(), Escape> {
    if relative.is_absolute() || relative.has_root() {
        return Err(Escape::Absolute(relative.to_path_buf()));
    }
    if relative.components().any(|c| c == Component::ParentDir) {
        return Err(Escape::Parent(relative.to_path_buf()));
    }
    Ok(())
}

/// `..` and `.` folded away lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Replaces `path` with `bytes` through a temporary file beside it, so that readers see the old
/// or the new file and never half of one; the file keeps its permissions. A symbolic link stays
/// a link: the file it points to is replaced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            resolved = path.canonicalize()?;
            resolved.as_path()
        }
        _ => path,
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.stagecoach-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A unified diff of two texts, or an empty string when they are equal.
pub fn diff(old: &str, new: &str, name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_table() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(r.join("chart/templates")).unwrap();
        std::fs::write(r.join("chart/values.yaml"), "a: 1\n").unwrap();
        let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, r.join(name)).unwrap();
        link(&outside.path().join("passwd"), "out-file");
        link(outside.path(), "out-dir");
        link(Path::new("chart/values.yaml"), "in-file");
        link(Path::new("../../etc"), "chart/up");
        let escape = |path: &str, target: PathBuf| Err(Escape::Symlink { path: path.into(), target });
        let out = outside.path().canonicalize().unwrap();
        let cases: Vec<(&str, Result<PathBuf, Escape>)> = vec![
            ("chart/values.yaml", Ok(r.join("chart/values.yaml"))),
            ("chart/new.yaml", Ok(r.join("chart/new.yaml"))),
            ("./chart/values.yaml", Ok(r.join("./chart/values.yaml"))),
            ("in-file", Ok(r.join("in-file"))),
            ("/etc/passwd", Err(Escape::Absolute("/etc/passwd".into()))),
            ("chart/../../x", Err(Escape::Parent("chart/../../x".into()))),
            ("out-file", escape("out-file", out.join("passwd"))),
            ("out-dir/values.yaml", escape("out-dir/values.yaml", out.clone())),
            ("chart/up/passwd", escape("chart/up/passwd", normalize(&r.join("chart/../../etc")))),
        ];
        for (path, want) in cases {
            assert_eq!(inside(r, Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn writing_through_a_link_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("target.yaml"), "a: 1\n").unwrap();
        std::os::unix::fs::symlink("target.yaml", d.join("link.yaml")).unwrap();
        write_atomically(&d.join("link.yaml"), b"a: 2\n").unwrap();
        assert!(std::fs::symlink_metadata(d.join("link.yaml")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(d.join("target.yaml")).unwrap(), "a: 2\n");
    }

    #[test]
    fn the_first_byte_that_is_not_utf8_is_named_by_line_and_column() {
        let cases: [(&str, &[u8], Option<(usize, usize, u8)>); 4] = [
            ("text", b"a: 1\nb: 2\n", None),
            ("on the first line", b"a: \xff\n", Some((1, 4, 0xff))),
            ("after characters of several bytes", "x\nk: \u{e9}\u{e9}".as_bytes(), None),
            ("latin-1 on the third line", b"a: 1\nb: 2\nc: caf\xe9\n", Some((3, 7, 0xe9))),
        ];
        for (name, bytes, want) in cases {
            let got = utf8_text(bytes).err().map(|e| (e.line, e.column, e.byte));
            assert_eq!(got, want, "{name}");
        }
        let bytes: Vec<u8> = "\u{e9}\u{e9}".bytes().chain([0xff]).collect();
        let column = utf8_text(&bytes);
        assert_eq!(column.err().map(|e| e.column), Some(3), "columns count characters, not bytes");
    }
}
