//! `stagecoach demo`: the whole flow on three local repositories, run by this binary's own
//! commands, with what could not run here said plainly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AppError, Global, Outside};
use crate::process::{Cmd, Spawner};
use crate::tools::git;

/// Marks a directory as the demo's own, so that a second run may wipe it.
const MARKER: &str = ".stagecoach-demo";

/// The DEV checkout, kept between runs.
const DEV_WORK: &str = "dev-work";

/// Where the DEV pipeline compiles, inside this project and kept between runs.
const DEV_BUILD: &str = "target/demo-build";

struct Demo<'a> {
    exe: PathBuf,
    work: PathBuf,
    project: PathBuf,
    env: Vec<(String, String)>,
    spawner: Spawner,
    out: &'a mut dyn std::io::Write,
    records: Vec<PathBuf>,
}

fn fail(message: impl Into<String>) -> AppError {
    AppError::Failed(message.into())
}

pub fn run(
    workdir: &Path,
    global: &Global,
    outside: &Outside<'_>,
    stdout: &mut dyn std::io::Write,
) -> Result<(), AppError> {
    let config_path = crate::config::discover(global.config.as_deref(), outside.env, &outside.cwd)?;
    let config = crate::config::load(&config_path, outside.env)?;
    let project = config
        .root
        .canonicalize()
        .map_err(|source| AppError::Io { what: format!("reading {}", config.root.display()), source })?;
    if !project.join("operator").is_dir() || !project.join("chart-template/Chart.yaml").is_file() {
        return Err(AppError::Usage(format!(
            "{} is not the stagecoach repository: run the demo from a clone of it",
            project.display()
        )));
    }
    let work = if workdir.is_absolute() { workdir.to_path_buf() } else { outside.cwd.join(workdir) };
    if work.exists() {
        if !work.join(MARKER).is_file() {
            return Err(AppError::Usage(format!(
                "{} exists and is not a demo directory; name another with --workdir",
                work.display()
            )));
        }
        // All but the DEV checkout, which is brought up to date instead: files that did not
        // change keep their timestamps, so cargo rebuilds nothing for them.
        let entries = std::fs::read_dir(&work)
            .map_err(|source| AppError::Io { what: format!("reading {}", work.display()), source })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name() == DEV_WORK {
                continue;
            }
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|source| AppError::Io { what: format!("clearing {}", path.display()), source })?;
        }
    }
    std::fs::create_dir_all(work.join("records"))
        .map_err(|source| AppError::Io { what: format!("creating {}", work.display()), source })?;
    std::fs::write(work.join(MARKER), "made by stagecoach demo; removed by the next one\n")
        .map_err(|source| AppError::Io { what: "writing the marker".into(), source })?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| AppError::Io { what: "starting the runtime".into(), source })?;
    let exe = std::env::current_exe().map_err(|source| AppError::Io { what: "finding this program".into(), source })?;
    let mut demo = Demo {
        exe,
        work,
        project,
        env: Vec::new(),
        spawner: Spawner::new(Default::default(), false),
        out: stdout,
        records: Vec::new(),
    };
    runtime.block_on(demo.run(outside))
}

impl Demo<'_> {
    fn say(&mut self, text: &str) -> Result<(), AppError> {
        writeln!(self.out, "{text}").map_err(|source| AppError::Io { what: "writing the output".into(), source })
    }

    /// Runs `stagecoach ARGS` in `dir`, its output shown as it comes, its run record kept.
    async fn stagecoach(&mut self, dir: &Path, record: &str, args: &[&str]) -> Result<(), AppError> {
        let path = self.work.join("records").join(format!("{record}.json"));
        let mut cmd = Cmd::new(self.exe.display().to_string())
            .args(["--no-progress", "--report"])
            .arg(path.display().to_string())
            .args(args.iter().copied())
            .cwd(dir)
            .timeout(Duration::from_secs(3600));
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        self.say(&format!("\n$ stagecoach {}   (in {})", args.join(" "), dir.display()))?;
        let result = self.spawner.stream(&cmd, &|_| {}, &|line| eprintln!("  {line}")).await;
        self.records.push(path);
        result.map_err(|e| fail(format!("`stagecoach {}` failed: {e}", args.join(" "))))
    }

    async fn run(&mut self, outside: &Outside<'_>) -> Result<(), AppError> {
        let w = self.work.clone();
        let local = |e: git::GitError| fail(e.to_string());
        self.say(&format!("stagecoach demo in {}", w.display()))?;

        // DEV: this project as committed; QA: seeded from its chart; RELEASE: empty.
        let dev_work = w.join(DEV_WORK);
        match prepare_dev(&self.project, &dev_work, &self.project.join(DEV_BUILD))? {
            Some(0) => self.say(&format!("DEV build: {DEV_BUILD} starts empty (nothing compiled in target/ yet)"))?,
            Some(bytes) => self.say(&format!(
                "DEV build: {DEV_BUILD} starts from this project's compiled dependencies ({:.1} GB copied from target/, as a CI job restores its cache); the DEV checkout's own crates compile from its sources",
                bytes as f64 / 1e9
            ))?,
            None => {}
        }
        git::bare_clone(&dev_work, &w.join("dev.git")).map_err(local)?;
        let qa_seed = w.join("qa-seed");
        let exe = self.exe.clone();
        let seed = |args: &[&str], dir: &Path| {
            let out = std::process::Command::new(&exe).args(args).current_dir(dir).output();
            out.map_err(|e| fail(e.to_string())).and_then(|o| {
                if o.status.success() { Ok(()) } else { Err(fail(String::from_utf8_lossy(&o.stderr).into_owned())) }
            })
        };
        seed(&["init", "qa", qa_seed.to_str().unwrap_or_default()], &dev_work)?;
        // Where no bitcoind image can be pulled, the networks the operator makes in QA run the
        // stand-in (.ci/bitcoind-standin), and the integration tests skip what needs blocks.
        let standin = (outside.env)("STAGECOACH_BITCOIND_STANDIN").filter(|s| !s.is_empty());
        if let Some(standin) = &standin {
            let values = qa_seed.join("values.yaml");
            seed(
                &["chart", "set", values.to_str().unwrap_or_default(), &format!("bitcoind.image={standin}")],
                &dev_work,
            )?;
            git::Git2::new(Default::default())
                .commit(&qa_seed, &["values.yaml".into()], "bitcoind.image: the stand-in bitcoind", &Default::default())
                .map_err(local)?;
        }
        seed(&["init", "release", w.join("release-seed").to_str().unwrap_or_default()], &dev_work)?;
        git::bare_clone(&qa_seed, &w.join("qa.git")).map_err(local)?;
        git::bare_clone(&w.join("release-seed"), &w.join("release.git")).map_err(local)?;
        self.say("repositories: dev.git (this project), qa.git (seeded from chart-template), release.git (empty chart repository)")?;
        if let Some(standin) = &standin {
            self.say(&format!("QA's bitcoind networks run the stand-in {standin} (STAGECOACH_BITCOIND_STANDIN)"))?;
        }

        // The image: pushed to a registry if one answers, else kept in the local engine.
        let registry = registry_answers("127.0.0.1:5000").then(|| "127.0.0.1:5000".to_string());
        let image = format!("{}/bitcoin-operator", registry.as_deref().unwrap_or("stagecoach-demo"));
        let env: Vec<(String, String)> = vec![
            ("STAGECOACH_DEV_URL".into(), w.join("dev.git").display().to_string()),
            ("STAGECOACH_QA_URL".into(), w.join("qa.git").display().to_string()),
            ("STAGECOACH_RELEASE_URL".into(), w.join("release.git").display().to_string()),
            ("STAGECOACH_IMAGE".into(), image.clone()),
            ("STAGECOACH_CACHE_DIR".into(), self.project.join("target/stagecoach-cache").display().to_string()),
            // A target directory of its own (see prepare_dev), kept between demos.
            ("CARGO_TARGET_DIR".into(), self.project.join(DEV_BUILD).display().to_string()),
        ];
        self.env = env;
        let push: &[&str] = if registry.is_some() { &[] } else { &["--no-push"] };
        match &registry {
            Some(r) => self.say(&format!("registry: {r} answers; images go to {image}"))?,
            None => self.say("registry: none answers on 127.0.0.1:5000; the image is built but not pushed (--no-push), QA uses it from the local engine")?,
        }

        let tools = ["kind", "helm", "kubectl"].iter().all(|t| which(t, outside));
        // 1. A dev commit.
        self.stagecoach(&dev_work, "1-build-and-deploy-dev", &[&["build-and-deploy"], push].concat()).await?;
        self.qa(tools, &w, "2-integration-test-dev", false).await?;

        // 2. The release: tag v0.1.0 and go again.
        let repo = git2::Repository::open(&dev_work).map_err(|e| fail(e.message().to_string()))?;
        let head = repo.head().and_then(|h| h.peel_to_commit()).map_err(|e| fail(e.message().to_string()))?;
        repo.tag_lightweight("v0.1.0", head.as_object(), true).map_err(|e| fail(e.message().to_string()))?;
        self.say("\ntagged v0.1.0 in DEV")?;
        self.stagecoach(&dev_work, "3-build-and-deploy-v0.1.0", &[&["build-and-deploy"], push].concat()).await?;
        self.qa(tools, &w, "4-integration-test-v0.1.0", true).await?;

        // What came out.
        let release = git2::Repository::open_bare(w.join("release.git")).map_err(|e| fail(e.message().to_string()))?;
        let index = release
            .revparse_single("main:index.yaml")
            .and_then(|o| o.peel_to_blob())
            .map(|b| String::from_utf8_lossy(b.content()).into_owned())
            .map_err(|e| fail(e.message().to_string()))?;
        self.say("\nrelease.git index.yaml:")?;
        self.say(&index)?;
        self.say("run records:")?;
        for record in self.records.clone() {
            self.say(&format!("  {}", record.display()))?;
        }
        self.say(&format!("repositories: {0}/dev.git, {0}/qa.git, {0}/release.git", w.display()))?;
        Ok(())
    }

    /// The QA stage for real when kind, helm and kubectl are on PATH (kind pulls its node image,
    /// or finds it in the engine); else said, and for the release the chart is published
    /// without integration tests.
    async fn qa(&mut self, tools: bool, w: &Path, record: &str, release: bool) -> Result<(), AppError> {
        let qa = w.join(format!("qa-{record}"));
        git2::Repository::clone(&w.join("qa.git").display().to_string(), &qa)
            .map_err(|e| fail(e.message().to_string()))?;
        if tools {
            return self.stagecoach(&qa, record, &["integration-test"]).await;
        }
        self.say("\nQA skipped: kind, helm and kubectl are not all on PATH (where no image can be pulled, `eval \"$(.ci/kube-tools)\"` builds them and a kind node image: put $STAGECOACH_TOOLS_PATH first on PATH)")?;
        if release {
            self.say(
                "publishing the release without integration tests (release --untested), to show the RELEASE repository",
            )?;
            self.stagecoach(&qa, &record.replace("integration-test", "release"), &["release", "--untested"]).await?;
        }
        Ok(())
    }
}

/// The DEV checkout and its target directory, before the DEV pipeline compiles there. Returns
/// the bytes copied into `build_dir` when it was made (cold), `None` when kept from a former run.
///
/// The DEV build cannot share this project's target directory: cargo names a workspace
/// member's files by its path inside the workspace and takes them as up to date while no
/// source file is newer, so one checkout's build would pass for the other's. A cold DEV build
/// starts instead from a copy of this project's (see [`seed_build_dir`]) made before the DEV
/// checkout is cloned: every file of the checkout is then newer than every copied file, so
/// cargo compiles the members from the committed sources and keeps the dependencies, which it
/// names by their version and settings.
fn prepare_dev(project: &Path, dev_work: &Path, build_dir: &Path) -> Result<Option<u64>, AppError> {
    let seeded = if build_dir.exists() {
        None
    } else {
        if dev_work.exists() {
            std::fs::remove_dir_all(dev_work)
                .map_err(|source| AppError::Io { what: format!("clearing {}", dev_work.display()), source })?;
        }
        Some(seed_build_dir(&project.join("target"), build_dir)?)
    };
    checkout_dev(project, dev_work)?;
    Ok(seeded)
}

/// Copies each cargo profile directory of `target` (one holding `.fingerprint`: `debug`,
/// `<triple>/image`, …) into `build_dir`, with the files' timestamps, which cargo compares.
/// What only the workspace's own crates have, and cargo makes again, stays behind: the
/// profile's top-level files (programs and libraries uplifted from `deps`), `incremental`, and
/// the programs in `deps` (tests and binaries; dependencies compile to libraries) — more than
/// half of the bytes. Copied under another name and renamed when complete, so that an
/// interrupted copy is never taken for a build directory.
fn seed_build_dir(target: &Path, build_dir: &Path) -> Result<u64, AppError> {
    let partial = build_dir.with_extension("seeding");
    let skip = [build_dir.file_name(), partial.file_name()];
    let io = |what: String| move |source| AppError::Io { what, source };
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(format!("clearing {}", partial.display())))?;
    }
    let mut profiles = Vec::new();
    for entry in std::fs::read_dir(target).into_iter().flatten().flatten() {
        let path = entry.path();
        if !path.is_dir() || path.is_symlink() || skip.contains(&Some(entry.file_name().as_os_str())) {
            continue;
        }
        if path.join(".fingerprint").is_dir() {
            profiles.push(path);
        } else {
            let nested = std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path());
            profiles.extend(nested.filter(|p| p.join(".fingerprint").is_dir() && !p.is_symlink()));
        }
    }
    let mut bytes = 0;
    for profile in &profiles {
        let relative = profile.strip_prefix(target).expect("found under target");
        copy_tree(profile, &partial.join(relative), Leave::WorkspaceOutputs, &mut bytes).map_err(io(format!(
            "copying {} to {}",
            profile.display(),
            partial.display()
        )))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(format!("creating {}", partial.display())))?;
    std::fs::rename(&partial, build_dir).map_err(io(format!("renaming {}", partial.display())))?;
    Ok(bytes)
}

/// What [`copy_tree`] leaves behind in a directory.
#[derive(Clone, Copy, PartialEq)]
enum Leave {
    Nothing,
    /// A profile directory's own files and `incremental`, and [`Leave::Programs`] in `deps`.
    WorkspaceOutputs,
    /// Files without an extension that may be run: tests and binaries.
    Programs,
}

/// Copies `from` into `to`, keeping files' modification times and symbolic links as they are.
fn copy_tree(from: &Path, to: &Path, leave: Leave, bytes: &mut u64) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let inside = match (leave, entry.file_name().to_str()) {
                (Leave::WorkspaceOutputs, Some("incremental")) => continue,
                (Leave::WorkspaceOutputs, Some("deps")) => Leave::Programs,
                _ => Leave::Nothing,
            };
            copy_tree(&source, &dest, inside, bytes)?;
        } else if leave == Leave::WorkspaceOutputs {
            continue;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &dest)?;
        } else {
            let metadata = entry.metadata()?;
            let program = metadata.permissions().mode() & 0o111 != 0 && source.extension().is_none();
            if leave == Leave::Programs && program {
                continue;
            }
            *bytes += std::fs::copy(&source, &dest)?;
            std::fs::File::options().write(true).open(&dest)?.set_modified(metadata.modified()?)?;
        }
    }
    Ok(())
}

/// `dir` holding the project's HEAD: cloned, or when a former demo left it, fetched and reset
/// (its tags gone), so that unchanged files keep their timestamps.
fn checkout_dev(project: &Path, dir: &Path) -> Result<(), AppError> {
    let git =
        |e: git2::Error| fail(format!("checking out {} in {}: {}", project.display(), dir.display(), e.message()));
    let Ok(repo) = git2::Repository::open(dir) else {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|source| AppError::Io { what: format!("clearing {}", dir.display()), source })?;
        }
        return git2::Repository::clone(&project.display().to_string(), dir).map(drop).map_err(git);
    };
    let mut remote = repo.remote_anonymous(&project.display().to_string()).map_err(git)?;
    remote.fetch(&["HEAD"], None, None).map_err(git)?;
    let head = repo.find_reference("FETCH_HEAD").and_then(|r| r.peel_to_commit()).map_err(git)?;
    repo.reset(head.as_object(), git2::ResetType::Hard, None).map_err(git)?;
    let names = repo.tag_names(None).map_err(git)?;
    let tags: Vec<String> = names.iter().filter_map(|t| t.ok().flatten()).map(String::from).collect();
    for tag in tags {
        repo.tag_delete(&tag).map_err(git)?;
    }
    Ok(())
}

fn which(tool: &str, outside: &Outside<'_>) -> bool {
    (outside.env)("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// Whether a registry answers `GET /v2/` at `host`.
fn registry_answers(host: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) =
        std::net::TcpStream::connect_timeout(&host.parse().expect("a socket address"), Duration::from_millis(300))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
        && (head.ends_with(b"200") || head.ends_with(b"401"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(repo: &git2::Repository, file: &str, text: &str) -> git2::Oid {
        let root = repo.workdir().unwrap();
        std::fs::write(root.join(file), text).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new(file)).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        index.write().unwrap();
        let who = git2::Signature::now("t", "t@t").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &who, &who, file, &tree, &parents).unwrap()
    }

    #[test]
    fn the_dev_checkout_is_brought_up_to_date_keeping_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        let source = git2::Repository::init(&project).unwrap();
        commit(&source, "kept.rs", "fn kept() {}\n");
        commit(&source, "changed.rs", "1\n");
        let work = dir.path().join("dev-work");
        checkout_dev(&project, &work).unwrap();
        let dev = git2::Repository::open(&work).unwrap();
        dev.tag_lightweight("v0.1.0", &dev.head().unwrap().peel(git2::ObjectType::Commit).unwrap(), false).unwrap();
        std::fs::write(work.join("changed.rs"), "edited by a former run\n").unwrap();
        let kept = std::fs::metadata(work.join("kept.rs")).unwrap().modified().unwrap();

        std::thread::sleep(std::time::Duration::from_millis(20));
        let head = commit(&source, "changed.rs", "2\n");
        checkout_dev(&project, &work).unwrap();
        assert_eq!(dev.head().unwrap().target(), Some(head));
        assert_eq!(std::fs::read_to_string(work.join("changed.rs")).unwrap(), "2\n");
        assert_eq!(std::fs::metadata(work.join("kept.rs")).unwrap().modified().unwrap(), kept, "kept.rs was rewritten");
        assert!(dev.tag_names(None).unwrap().is_empty(), "the former run's tag is still there");

        // Something that is no repository is cloned over.
        std::fs::remove_dir_all(work.join(".git")).unwrap();
        checkout_dev(&project, &work).unwrap();
        assert_eq!(git2::Repository::open(&work).unwrap().head().unwrap().target(), Some(head));
    }

    /// `cargo build` in `dir` into `target_dir`; what cargo said.
    fn cargo_build(dir: &Path, target_dir: &Path) -> String {
        let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--offline"])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", target_dir)
            .env_remove("CARGO_BUILD_BUILD_DIR")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "cargo build in {}: {said}", dir.display());
        said
    }

    #[test]
    fn a_cold_dev_build_keeps_the_compiled_dependencies_and_compiles_the_committed_members() {
        let dir = tempfile::tempdir().unwrap();
        let dep = dir.path().join("dep");
        std::fs::create_dir_all(dep.join("src")).unwrap();
        std::fs::write(dep.join("Cargo.toml"), "[package]\nname = \"dep\"\nversion = \"0.1.0\"\nedition = \"2021\"\n")
            .unwrap();
        std::fs::write(dep.join("src/lib.rs"), "pub const WORD: &str = \"from\";\n").unwrap();
        let project = dir.path().join("project");
        let repo = git2::Repository::init(&project).unwrap();
        let manifest = "[package]\nname = \"m\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ndep = { path = \"../dep\" }\n\n[workspace]\n";
        commit(&repo, "Cargo.toml", manifest);
        std::fs::create_dir(project.join("src")).unwrap();
        commit(&repo, "src/main.rs", "fn main() { println!(\"{} the commit\", dep::WORD); }\n");
        // A DEV checkout a former demo left, older than anything compiled below.
        let dev_work = dir.path().join("dev-work");
        checkout_dev(&project, &dev_work).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // This project's build, of an edit not committed.
        std::fs::write(project.join("src/main.rs"), "fn main() { println!(\"{} the working tree\", dep::WORD); }\n")
            .unwrap();
        cargo_build(&project, &project.join("target"));

        let build_dir = project.join(DEV_BUILD);
        let copied = prepare_dev(&project, &dev_work, &build_dir).unwrap();
        assert!(copied.is_some_and(|bytes| bytes > 0), "{copied:?}");
        // Left behind: what only the workspace's crates have (here, the program m).
        assert!(project.join("target/debug/incremental").is_dir() && !build_dir.join("debug/incremental").exists());
        assert!(project.join("target/debug/m").is_file() && !build_dir.join("debug/m").exists());
        let programs = |root: &Path| {
            let deps = std::fs::read_dir(root.join("debug/deps")).unwrap().map(|e| e.unwrap().path());
            deps.filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("m-") && p.extension().is_none())
                .count()
        };
        assert_eq!((programs(&project.join("target")), programs(&build_dir)), (1, 0));
        // Timestamps kept: cargo compiles a crate again when a dependency's files are newer.
        let deps = std::fs::read_dir(project.join("target/debug/deps")).unwrap().map(|e| e.unwrap().file_name());
        let rlib = deps.into_iter().find(|n| n.to_string_lossy().starts_with("libdep-")).unwrap();
        let modified =
            |root: &Path| std::fs::metadata(root.join("debug/deps").join(&rlib)).unwrap().modified().unwrap();
        assert_eq!(modified(&build_dir), modified(&project.join("target")));
        let said = cargo_build(&dev_work, &build_dir);
        assert!(said.contains("Compiling m v0.1.0"), "{said}");
        assert!(!said.contains("Compiling dep"), "the dependency was compiled again:\n{said}");
        let out = std::process::Command::new(build_dir.join("debug/m")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from the commit\n");

        // Kept for the next run, which copies nothing and compiles nothing.
        assert_eq!(prepare_dev(&project, &dev_work, &build_dir).unwrap(), None);
        let said = cargo_build(&dev_work, &build_dir);
        assert!(!said.contains("Compiling"), "{said}");
    }
}
