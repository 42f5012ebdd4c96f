//! `stagecoach chart set|package|index`: the chart engine on files and directories.

use std::path::Path;

use super::AppError;
use crate::chart::provenance::{self, SigningKey};
use crate::chart::{edit, index, package};
use crate::files::{diff, write_atomically};
use crate::tools::oci;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AppError {
    let what = what.into();
    move |source| AppError::Io { what, source }
}

fn out(stdout: &mut dyn std::io::Write, text: &str) -> Result<(), AppError> {
    stdout.write_all(text.as_bytes()).map_err(io("writing the output"))
}

pub fn set(
    file: &Path,
    assignments: &[(String, String)],
    create: bool,
    dry_run: bool,
    stdout: &mut dyn std::io::Write,
) -> Result<(), AppError> {
    let before = std::fs::read(file).map_err(io(format!("reading {}", file.display())))?;
    let after = edit::set_all(&before, assignments, create)
        .map_err(|e| AppError::Failed(format!("{}: {e}", file.display())))?;
    let name = file.display().to_string();
    let changes = diff(&String::from_utf8_lossy(&before), &String::from_utf8_lossy(&after), &name);
    if changes.is_empty() {
        return out(stdout, &format!("{name}: already set, nothing changed\n"));
    }
    out(stdout, &changes)?;
    if dry_run {
        return out(stdout, "dry run: nothing written\n");
    }
    write_atomically(file, &after).map_err(io(format!("writing {name}")))
}

pub fn package(
    dir: &Path,
    rename: Option<String>,
    out_dir: &Path,
    drop: Vec<String>,
    sign: Option<&SigningKey>,
    dry_run: bool,
    stdout: &mut dyn std::io::Write,
) -> Result<(), AppError> {
    let drop =
        if drop.is_empty() { crate::config::DEFAULT_DROP.iter().map(ToString::to_string).collect() } else { drop };
    let package =
        package::package(dir, &package::Options { rename, drop }).map_err(|e| AppError::Failed(e.to_string()))?;
    let target = out_dir.join(&package.file_name);
    let summary = format!("{} ({} files, sha256 {})\n", target.display(), package.files.len(), package.digest);
    // Signed before anything is written, so that a key that cannot sign leaves no package.
    let prov = match sign {
        Some(key) => {
            let message = provenance::message(&package.metadata, &package.file_name, &package.digest);
            Some((provenance::sign(key, &message).map_err(|e| AppError::Failed(e.to_string()))?, key.owner()))
        }
        None => None,
    };
    let prov_path = out_dir.join(format!("{}.prov", package.file_name));
    if dry_run {
        out(stdout, &format!("dry run: would write {summary}"))?;
        if let Some((_, owner)) = &prov {
            out(stdout, &format!("dry run: would write {}, signed by {owner}\n", prov_path.display()))?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(out_dir).map_err(io(format!("creating {}", out_dir.display())))?;
    write_atomically(&target, &package.bytes).map_err(io(format!("writing {}", target.display())))?;
    out(stdout, &format!("wrote {summary}"))?;
    if let Some((text, owner)) = prov {
        write_atomically(&prov_path, text.as_bytes()).map_err(io(format!("writing {}", prov_path.display())))?;
        out(stdout, &format!("wrote {}, signed by {owner}\n", prov_path.display()))?;
    }
    Ok(())
}

pub fn index(repo: &Path, url: Option<&str>, dry_run: bool, stdout: &mut dyn std::io::Write) -> Result<(), AppError> {
    let index_path = repo.join("index.yaml");
    let before = match std::fs::read_to_string(&index_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(format!("reading {}", index_path.display()))(e)),
    };
    let mut packages: Vec<_> = std::fs::read_dir(repo)
        .map_err(io(format!("reading {}", repo.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tgz"))
        .collect();
    packages.sort();
    if packages.is_empty() {
        return Err(AppError::Failed(format!("{}: no .tgz packages to index", repo.display())));
    }
    let now = index::rfc3339(std::time::SystemTime::now());
    let mut text = before.clone();
    for path in &packages {
        let bytes = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
        let metadata =
            package::read_metadata(&bytes).map_err(|e| AppError::Failed(format!("{}: {e}", path.display())))?;
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let digest = package::hex(&sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes)));
        let entry_url = match url {
            Some(base) => format!("{}/{file_name}", base.trim_end_matches('/')),
            None => file_name.clone(),
        };
        let entry = index::NewEntry { metadata: &metadata, digest: &digest, url: entry_url };
        let merged = index::merge(text.as_deref(), &entry, &now)
            .map_err(|e| AppError::Failed(format!("{}: {e}", index_path.display())))?;
        let what = match merged {
            index::Merged::Added(merged) => {
                text = Some(merged);
                "added"
            }
            index::Merged::AlreadyPublished => "already published",
        };
        out(stdout, &format!("{what}: {} {} ({file_name})\n", metadata.name, metadata.version))?;
    }
    let after = text.unwrap_or_default();
    if before.as_deref() == Some(after.as_str()) {
        return out(stdout, &format!("{}: unchanged\n", index_path.display()));
    }
    if dry_run {
        out(stdout, &diff(before.as_deref().unwrap_or(""), &after, "index.yaml"))?;
        return out(stdout, "dry run: nothing written\n");
    }
    write_atomically(&index_path, after.as_bytes()).map_err(io(format!("writing {}", index_path.display())))
}

/// What `chart push` pushes where.
pub struct Push<'a> {
    pub package: &'a Path,
    /// `oci://HOST[:PORT]/PATH`
    pub repository: &'a str,
    pub plain_http: bool,
    pub timeout: std::time::Duration,
}

/// `chart push`: the package (with `PACKAGE.prov` beside it, if there is one) to an OCI
/// repository, as `helm push` does; the version already there with the same manifest is left
/// as it is, with another one refused. Credentials: the pipeline file's `chart.oci_credentials`
/// when `chart.oci` is on the same registry, else what `docker login` stored.
pub fn push(
    push: &Push<'_>,
    config: Option<&crate::config::Config>,
    env: crate::config::Env<'_>,
    dry_run: bool,
    stdout: &mut dyn std::io::Write,
) -> Result<(), AppError> {
    let package_path = push.package;
    let bytes = std::fs::read(package_path).map_err(io(format!("reading {}", package_path.display())))?;
    let metadata =
        package::read_metadata(&bytes).map_err(|e| AppError::Failed(format!("{}: {e}", package_path.display())))?;
    let prov_path = package_path.with_file_name(format!(
        "{}.prov",
        package_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let provenance = match std::fs::read(&prov_path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(format!("reading {}", prov_path.display()))(e)),
    };
    let reference = oci::reference(push.repository, &metadata.name, &metadata.version)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let chart = oci::Chart { metadata: &metadata, package: &bytes, provenance: provenance.as_deref() };
    let digest = oci::digest(&oci::manifest(&chart).0);
    let signed = if provenance.is_some() { format!(" with {}", prov_path.display()) } else { String::new() };
    if dry_run {
        return out(stdout, &format!("dry run: would push {reference}{signed} (manifest {digest})\n"));
    }
    let host = reference.split('/').next().unwrap_or_default().to_string();
    let login = match config {
        Some(config) => {
            let named =
                config.chart.oci.as_ref().filter(|o| oci::host(&o.url) == host).and_then(|o| o.credentials.as_deref());
            crate::credentials::registry_auth_for(config, named, &host, env, &mut crate::secrets::Secrets::new())
                .map_err(|e| AppError::Credentials(e.0))?
        }
        None => crate::tools::docker::docker_config(env)
            .and_then(|text| crate::tools::docker::auth_from_docker_config(&text, &host)),
    };
    let auth = oci::Oci::auth(login.as_ref());
    let client = oci::Oci::new(push.plain_http, push.timeout);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| AppError::Io { what: "starting the runtime".into(), source })?;
    let failed = |e: oci::OciError| AppError::Failed(e.to_string());
    match runtime.block_on(client.publish(&reference, &chart, &auth)).map_err(failed)? {
        oci::Published::AlreadyThere(digest) => {
            out(stdout, &format!("{reference}: already there (manifest {digest})\n"))
        }
        oci::Published::Pushed(digest) => out(stdout, &format!("pushed {reference}{signed}\ndigest: {digest}\n")),
    }
}
