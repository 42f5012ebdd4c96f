//! `helm package`, natively and reproducibly: the same chart always gives the same bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::edit;
use super::ignore::{IgnoreError, Rules};
use super::meta::{MetaError, Metadata};

/// Helm refuses charts holding a file larger than this when it loads them.
pub const MAX_FILE_BYTES: u64 = 5 * 1024 * 1024;
/// And charts larger than this in all.
pub const MAX_CHART_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{}: not a chart directory (no Chart.yaml)", .0.display())]
    NotAChart(PathBuf),
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}/{error}", .dir.display())]
    Meta { error: MetaError, dir: PathBuf },
    #[error("{}/.helmignore: {error}", .dir.display())]
    Ignore { error: IgnoreError, dir: PathBuf },
    #[error("{}: renaming the chart: {error}", .file.display())]
    Rename { error: edit::EditError, file: PathBuf },
    #[error("{}: a symbolic link to {}, outside the chart; copy the file into the chart instead", .path.display(), .target.display())]
    LinkOutside { path: PathBuf, target: PathBuf },
    #[error("{}: {size} bytes, more than Helm loads ({MAX_FILE_BYTES}); leave it out with .helmignore", .path.display())]
    FileTooLarge { path: PathBuf, size: u64 },
    #[error("{}: the chart holds {size} bytes, more than Helm loads ({MAX_CHART_BYTES})", .dir.display())]
    ChartTooLarge { dir: PathBuf, size: u64 },
    #[error("{}: a symbolic link to a directory; links to directories are not packaged", .0.display())]
    LinkedDirectory(PathBuf),
    #[error("{}: not a file name that can be packaged", .0.display())]
    BadName(PathBuf),
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Publish under this name: Chart.yaml `name` and the directory inside the archive.
    pub rename: Option<String>,
    /// Paths relative to the chart root left out besides `.helmignore` (CI files).
    pub drop: Vec<String>,
}

/// A packaged chart.
#[derive(Clone, Debug)]
pub struct Package {
    pub metadata: Metadata,
    /// `<name>-<version>.tgz`
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`, hex, as index.yaml carries it.
    pub digest: String,
    /// The files packed, relative to the chart root.
    pub files: Vec<String>,
}

pub fn package(dir: &Path, options: &Options) -> Result<Package, PackageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    let chart_yaml = dir.join("Chart.yaml");
    if !chart_yaml.is_file() {
        return Err(PackageError::NotAChart(dir.to_path_buf()));
    }
    let mut chart_bytes = std::fs::read(&chart_yaml).map_err(io(&chart_yaml))?;
    let meta_error = |error| PackageError::Meta { error, dir: dir.to_path_buf() };
    // Read, not checked: a rename may be what makes the chart valid.
    let original_name = std::str::from_utf8(&chart_bytes)
        .ok()
        .and_then(|text| super::yaml::get(text, &[super::yaml::Seg::Key("name".into())]).ok().flatten())
        .unwrap_or_default();
    if let Some(name) = &options.rename {
        chart_bytes = edit::set_all(&chart_bytes, &[("name".into(), name.clone())], false)
            .map_err(|error| PackageError::Rename { error, file: chart_yaml.clone() })?;
    }
    let metadata = Metadata::parse(&chart_bytes).map_err(meta_error)?;
    // Packages of this chart that stagecoach may have written beside it (`--out .`).
    let own = [original_name.as_str(), metadata.name.as_str()];

    let ignore_file = dir.join(".helmignore");
    let rules = match std::fs::read_to_string(&ignore_file) {
        Ok(text) => Rules::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Rules::parse(""),
        Err(e) => return Err(io(&ignore_file)(e)),
    }
    .map_err(|error| PackageError::Ignore { error, dir: dir.to_path_buf() })?;

    let root = dir.canonicalize().map_err(io(dir))?;
    let mut files = Vec::new();
    collect(&root, &root, "", &Leave { rules: &rules, drop: &options.drop, own: &own }, &mut files)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let total: u64 = files.iter().map(|f| f.2).sum();
    if total > MAX_CHART_BYTES {
        return Err(PackageError::ChartTooLarge { dir: dir.to_path_buf(), size: total });
    }

    let mut archive = tar::Builder::new(Vec::new());
    for (relative, path, _, executable) in &files {
        let bytes =
            if relative == "Chart.yaml" { chart_bytes.clone() } else { std::fs::read(path).map_err(io(path))? };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(if *executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        archive
            .append_data(&mut header, format!("{}/{relative}", metadata.name), bytes.as_slice())
            .map_err(io(path))?;
    }
    let tar = archive.into_inner().map_err(io(dir))?;
    // No file name and a zero mtime in the gzip header keep the bytes reproducible.
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).map_err(io(dir))?;
    let bytes = gz.finish().map_err(io(dir))?;
    let digest = hex(&Sha256::digest(&bytes));
    Ok(Package {
        file_name: format!("{}-{}.tgz", metadata.name, metadata.version),
        metadata,
        bytes,
        digest,
        files: files.into_iter().map(|f| f.0).collect(),
    })
}

/// (relative path, real path, size, executable)
type Entry = (String, PathBuf, u64, bool);

/// What a package leaves out: `.helmignore`'s rules, the files dropped from releases, and this
/// chart's own earlier packages at its top level (its names before and after a rename).
struct Leave<'a> {
    rules: &'a Rules,
    drop: &'a [String],
    own: &'a [&'a str],
}

/// Whether `file` is `<name>-<version>.tgz` or its `.prov` for one of `names`.
fn own_package(file: &str, names: &[&str]) -> bool {
    let Some(stem) = file.strip_suffix(".tgz.prov").or_else(|| file.strip_suffix(".tgz")) else { return false };
    names.iter().any(|name| {
        stem.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|v| semver::Version::parse(v).is_ok())
    })
}

fn collect(root: &Path, dir: &Path, prefix: &str, leave: &Leave<'_>, out: &mut Vec<Entry>) -> Result<(), PackageError> {
    let (rules, drop) = (leave.rules, leave.drop);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|_| PackageError::BadName(path.clone()))?;
        let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let link = entry.file_type().map_err(io(&path))?.is_symlink();
        // A link is followed, but only to somewhere inside the chart.
        let real = if link {
            let target = path.canonicalize().map_err(io(&path))?;
            if !target.starts_with(root) {
                return Err(PackageError::LinkOutside { path, target });
            }
            target
        } else {
            path.clone()
        };
        let meta = std::fs::metadata(&real).map_err(io(&path))?;
        if drop.iter().any(|d| d.trim_end_matches('/') == relative) || rules.ignores(&relative, meta.is_dir()) {
            continue;
        }
        // This chart's earlier packages written into its directory (`--out .`) are not part of
        // it; any other file Helm packs, so do we.
        if prefix.is_empty() && meta.is_file() && own_package(&relative, leave.own) {
            continue;
        }
        if meta.is_dir() {
            if link {
                return Err(PackageError::LinkedDirectory(path));
            }
            collect(root, &real, &relative, leave, out)?;
        } else if meta.is_file() {
            if meta.len() > MAX_FILE_BYTES {
                return Err(PackageError::FileTooLarge { path, size: meta.len() });
            }
            use std::os::unix::fs::PermissionsExt;
            out.push((relative, real, meta.len(), meta.permissions().mode() & 0o111 != 0));
        }
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads Chart.yaml out of a packaged chart (`<name>/Chart.yaml`).
pub fn read_metadata(bytes: &[u8]) -> Result<Metadata, String> {
    let chart_yaml = read_file(bytes, "Chart.yaml")?
        .ok_or_else(|| "no <name>/Chart.yaml inside; not a Helm chart package".to_string())?;
    Metadata::parse(&chart_yaml).map_err(|e| e.to_string())
}

/// The file `name` at the top of a packaged chart (`<chart>/name`), if it holds one.
pub fn read_file(bytes: &[u8], name: &str) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let parts: Vec<_> = path.components().collect();
        if parts.len() == 2 && path.ends_with(name) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn chart(dir: &Path) {
        let files: [(&str, &str); 8] = [
            ("Chart.yaml", "apiVersion: v2\n# the name\nname: op-qa\nversion: 0.1.0\nappVersion: \"abc\"\n"),
            ("values.yaml", "image:\n  tag: latest\n"),
            ("templates/deployment.yaml", "kind: Deployment\n"),
            ("templates/.hidden", "left out by Helm's default rule\n"),
            (".helmignore", "*.swp\nnotes/\n"),
            ("editor.swp", "swap\n"),
            ("notes/todo.txt", "ignored directory\n"),
            (".travis.yml", "script: stagecoach integration-test\n"),
        ];
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    fn entries(bytes: &[u8]) -> Vec<(String, String, u32)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let mode = e.header().mode().unwrap();
                let mut text = String::new();
                e.read_to_string(&mut text).unwrap();
                (path, text, mode)
            })
            .collect()
    }

    fn options() -> Options {
        Options { rename: None, drop: vec![".travis.yml".into(), ".github".into()] }
    }

    #[test]
    fn packs_what_helm_would_under_the_chart_name() {
        let dir = tempfile::tempdir().unwrap();
        chart(dir.path());
        let package = package(dir.path(), &options()).unwrap();
        assert_eq!(package.file_name, "op-qa-0.1.0.tgz");
        assert_eq!(package.files, [".helmignore", "Chart.yaml", "templates/deployment.yaml", "values.yaml"]);
        let names: Vec<String> = entries(&package.bytes).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            ["op-qa/.helmignore", "op-qa/Chart.yaml", "op-qa/templates/deployment.yaml", "op-qa/values.yaml"]
        );
        assert_eq!(package.digest, hex(&Sha256::digest(&package.bytes)));
    }

    #[test]
    fn the_same_chart_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        chart(dir.path());
        let first = package(dir.path(), &options()).unwrap();
        // New modification times and a new directory listing order change nothing.
        let file = std::fs::File::options().write(true).open(dir.path().join("values.yaml")).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
        let copy = tempfile::tempdir().unwrap();
        chart(copy.path());
        let second = package(dir.path(), &options()).unwrap();
        let third = package(copy.path(), &options()).unwrap();
        assert_eq!(first.bytes, second.bytes);
        assert_eq!(first.bytes, third.bytes);
    }

    #[test]
    fn rename_changes_the_name_and_the_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        chart(dir.path());
        let package = package(dir.path(), &Options { rename: Some("bitcoin-operator".into()), ..options() }).unwrap();
        assert_eq!(package.file_name, "bitcoin-operator-0.1.0.tgz");
        let entries = entries(&package.bytes);
        assert!(entries.iter().all(|e| e.0.starts_with("bitcoin-operator/")), "{entries:?}");
        let chart_yaml = &entries.iter().find(|e| e.0 == "bitcoin-operator/Chart.yaml").unwrap().1;
        assert_eq!(
            chart_yaml,
            "apiVersion: v2\n# the name\nname: bitcoin-operator\nversion: 0.1.0\nappVersion: \"abc\"\n"
        );
    }

    #[test]
    fn executables_keep_their_bit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        chart(dir.path());
        let script = dir.path().join("templates/run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let modes: Vec<u32> =
            entries(&package(dir.path(), &options()).unwrap().bytes).into_iter().map(|e| e.2).collect();
        assert_eq!(modes, [0o644, 0o644, 0o644, 0o755, 0o644]);
    }

    #[test]
    fn refusals() {
        type Setup = fn(&Path);
        let cases: [(&str, Setup, &str); 7] = [
            (
                "a name Helm refuses",
                |d| std::fs::write(d.join("Chart.yaml"), "apiVersion: v2\nname: ..\nversion: 1.0.0\n").unwrap(),
                "Chart.yaml: name: \"..\" names a directory",
            ),
            (
                "link outside the chart",
                |d| std::os::unix::fs::symlink("/etc/hostname", d.join("host")).unwrap(),
                "outside the chart",
            ),
            (
                "link to a directory",
                |d| std::os::unix::fs::symlink(d.join("templates"), d.join("t2")).unwrap(),
                "links to directories are not packaged",
            ),
            (
                "file too large",
                |d| std::fs::File::create(d.join("big.bin")).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap(),
                "more than Helm loads",
            ),
            (
                "apiVersion v1",
                |d| std::fs::write(d.join("Chart.yaml"), "apiVersion: v1\nname: op\nversion: 1.0.0\n").unwrap(),
                "Chart.yaml: apiVersion",
            ),
            (
                "no SemVer",
                |d| std::fs::write(d.join("Chart.yaml"), "apiVersion: v2\nname: op\nversion: one\n").unwrap(),
                "Chart.yaml: version: \"one\" is not a SemVer",
            ),
            (
                "** in .helmignore",
                |d| std::fs::write(d.join(".helmignore"), "a/**/b\n").unwrap(),
                ".helmignore: .helmignore line 1",
            ),
        ];
        for (name, setup, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            chart(dir.path());
            setup(dir.path());
            let error = package(dir.path(), &options()).unwrap_err().to_string();
            assert!(error.contains(want), "case {name}: {error}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(
            package(dir.path(), &options()).unwrap_err().to_string().ends_with("not a chart directory (no Chart.yaml)")
        );
    }

    #[test]
    fn a_link_inside_the_chart_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        chart(dir.path());
        std::os::unix::fs::symlink(dir.path().join("values.yaml"), dir.path().join("templates/values-copy.yaml"))
            .unwrap();
        let entries = entries(&package(dir.path(), &options()).unwrap().bytes);
        let copy = entries.iter().find(|e| e.0 == "op-qa/templates/values-copy.yaml").unwrap();
        assert_eq!(copy.1, "image:\n  tag: latest\n");
    }

    use std::time::SystemTime;

    #[test]
    fn only_this_charts_earlier_packages_are_left_out_every_other_file_helm_packs() {
        // (a file at the chart's top level, packed with --rename released?)
        let cases = [
            ("op-qa-0.1.0.tgz", false),
            ("op-qa-0.1.0.tgz.prov", false),
            ("op-qa-1.2.3-dev.64ed033.tgz", false),
            ("released-0.1.0.tgz", false),
            ("released-0.1.0.tgz.prov", false),
            ("fixture.tgz", true),
            ("other-chart-0.1.0.tgz", true),
            ("op-qa-latest.tgz", true),
            ("op-qa-0.1.0.tgz.bak", true),
        ];
        let dir = tempfile::tempdir().unwrap();
        chart(dir.path());
        for (file, _) in cases {
            std::fs::write(dir.path().join(file), b"bytes").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("charts")).unwrap();
        std::fs::write(dir.path().join("charts/dep-0.1.0.tgz"), b"a dependency").unwrap();
        let renamed = Options { rename: Some("released".into()), ..options() };
        let packed = package(dir.path(), &renamed).unwrap().files;
        for (file, want) in cases {
            assert_eq!(packed.iter().any(|f| f == file), want, "{file}: {packed:?}");
        }
        assert!(packed.iter().any(|f| f == "charts/dep-0.1.0.tgz"), "{packed:?}");
    }
}
