//! `stagecoach init qa|release DIR`: the repositories the flow needs, seeded and committed.

use std::path::Path;

use super::{AppError, Global, InitKind, Outside};
use crate::tools::git::{self, Author};

pub fn run(
    kind: InitKind,
    dir: &Path,
    from: Option<&Path>,
    global: &Global,
    outside: &Outside<'_>,
    stdout: &mut dyn std::io::Write,
) -> Result<(), AppError> {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(AppError::Usage(format!(
            "{} exists and is not empty; init makes new repositories only",
            dir.display()
        )));
    }
    let io = |what: String| move |source| AppError::Io { what, source };
    // The DEV repository's pipeline file and chart template, when run inside it (or named).
    let config = match crate::config::discover(global.config.as_deref(), outside.env, &outside.cwd) {
        Ok(path) => Some(crate::config::load(&path, outside.env)?),
        Err(_) => None,
    };
    let root = config.as_ref().map_or(outside.cwd.clone(), |c| c.root.clone());
    let message = match kind {
        InitKind::Qa => {
            // Its CI runs `stagecoach integration-test`, which reads the pipeline file: a QA
            // repository without one would not work.
            let Some(config) = &config else {
                return Err(AppError::Usage(format!(
                    "no pipeline file to put into the QA repository: its CI runs `stagecoach integration-test`, \
                     which reads pipelines/stagecoach.yaml, and none was found from {}; run this in the DEV \
                     repository, or name its pipeline file with --config FILE; nothing was written",
                    outside.cwd.display()
                )));
            };
            let template = from.map(Path::to_path_buf).unwrap_or_else(|| root.join("chart-template"));
            if !template.join("Chart.yaml").is_file() {
                return Err(AppError::Usage(format!(
                    "{} is not a chart to seed the QA repository from; pass --from CHART_DIR or run in the DEV repository",
                    template.display()
                )));
            }
            copy_dir(&template, dir).map_err(io(format!("copying {} to {}", template.display(), dir.display())))?;
            std::fs::create_dir_all(dir.join("pipelines")).map_err(io("creating pipelines/".into()))?;
            std::fs::copy(&config.file, dir.join("pipelines/stagecoach.yaml"))
                .map_err(io(format!("copying {}", config.file.display())))?;
            // The key QA verifies images with goes where the copied file names it.
            if let Some(key) = &config.image.verify_key {
                let refused = |e: crate::files::Escape| AppError::Usage(format!("image.verify_key: {e}"));
                let (from, to) = (crate::files::inside(&config.root, key).map_err(refused)?, dir.join(key));
                std::fs::create_dir_all(to.parent().unwrap_or(dir))
                    .map_err(io(format!("creating {}", to.display())))?;
                std::fs::copy(&from, &to).map_err(io(format!("copying {} (image.verify_key)", from.display())))?;
            }
            "Seed the QA repository from chart-template"
        }
        InitKind::Release => {
            std::fs::create_dir_all(dir.join(".github/workflows"))
                .map_err(io(format!("creating {}", dir.display())))?;
            let now = crate::chart::index::rfc3339(std::time::SystemTime::now());
            let files = [
                ("index.yaml", format!("apiVersion: v1\nentries: {{}}\ngenerated: \"{now}\"\n")),
                ("README.md", "# Helm chart repository\n\nReleases published by `stagecoach release`: packaged charts and `index.yaml`.\n\n    helm repo add NAME URL\n".to_string()),
                (".github/workflows/pages.yml", PAGES_WORKFLOW.to_string()),
            ];
            for (name, text) in files {
                std::fs::write(dir.join(name), text).map_err(io(format!("writing {name}")))?;
            }
            "An empty Helm chart repository"
        }
    };
    let commit =
        git::init_with_commit(dir, message, &Author::default()).map_err(|e| AppError::Failed(e.to_string()))?;
    let what = match kind {
        InitKind::Qa => "QA repository",
        InitKind::Release => "RELEASE repository (a Helm chart repository)",
    };
    writeln!(stdout, "created the {what} in {} (commit {})", dir.display(), &commit[..12])
        .map_err(io("writing the output".into()))
}

/// Serves the chart repository with GitHub Pages, as the blog series did.
const PAGES_WORKFLOW: &str = "# Publishes this chart repository (index.yaml and the packages) with GitHub Pages.
name: pages
on:
  push:
    branches: [main]
permissions:
  contents: read
  pages: write
  id-token: write
jobs:
  pages:
    runs-on: ubuntu-latest
    environment:
      name: github-pages
    steps:
      - uses: actions/checkout@v4
      - uses: actions/upload-pages-artifact@v3
        with:
          path: .
      - uses: actions/deploy-pages@v4
";

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
