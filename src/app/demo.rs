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
        checkout_dev(&self.project, &dev_work)?;
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
        seed(&["init", "release", w.join("release-seed").to_str().unwrap_or_default()], &dev_work)?;
        git::bare_clone(&qa_seed, &w.join("qa.git")).map_err(local)?;
        git::bare_clone(&w.join("release-seed"), &w.join("release.git")).map_err(local)?;
        self.say("repositories: dev.git (this project), qa.git (seeded from chart-template), release.git (empty chart repository)")?;

        // The image: pushed to a registry if one answers, else kept in the local engine.
        let registry = registry_answers("127.0.0.1:5000").then(|| "127.0.0.1:5000".to_string());
        let image = format!("{}/bitcoin-operator", registry.as_deref().unwrap_or("stagecoach-demo"));
        let env: Vec<(String, String)> = vec![
            ("STAGECOACH_DEV_URL".into(), w.join("dev.git").display().to_string()),
            ("STAGECOACH_QA_URL".into(), w.join("qa.git").display().to_string()),
            ("STAGECOACH_RELEASE_URL".into(), w.join("release.git").display().to_string()),
            ("STAGECOACH_IMAGE".into(), image.clone()),
            ("STAGECOACH_CACHE_DIR".into(), self.project.join("target/stagecoach-cache").display().to_string()),
            // A target directory of its own, kept between demos. Not this project's, nor even
            // its build directory alone: cargo names a workspace member's files by its path
            // inside the workspace, so the DEV checkout's build of the committed version would
            // overwrite this project's, and cargo would then take them as up to date here.
            ("CARGO_TARGET_DIR".into(), self.project.join("target/demo-build").display().to_string()),
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

    /// The QA stage for real when kind, helm and kubectl are here; else said, and for the
    /// release the chart is published without integration tests.
    async fn qa(&mut self, tools: bool, w: &Path, record: &str, release: bool) -> Result<(), AppError> {
        let qa = w.join(format!("qa-{record}"));
        git2::Repository::clone(&w.join("qa.git").display().to_string(), &qa)
            .map_err(|e| fail(e.message().to_string()))?;
        if tools {
            return self.stagecoach(&qa, record, &["integration-test"]).await;
        }
        self.say("\nQA skipped: kind, helm and kubectl are not all installed here, and no kind node image can be had on this machine; the hosted CI workflow .github/workflows/integration.yml runs this stage on a real kind cluster")?;
        if release {
            self.say(
                "publishing the release without integration tests (release --untested), to show the RELEASE repository",
            )?;
            self.stagecoach(&qa, &record.replace("integration-test", "release"), &["release", "--untested"]).await?;
        }
        Ok(())
    }
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
}
