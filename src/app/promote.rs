//! `stagecoach promote`: one promotion from the command line.

use std::collections::BTreeMap;

use super::{AppError, Global, Outside, Promote};
use crate::branch_update::{self, Edit, UpdateOptions, UpdateOutcome};
use crate::secrets::Secrets;
use crate::tools::git::{Auth, Author, Git2, Remote};

pub fn run(
    request: Promote,
    global: &Global,
    outside: &Outside<'_>,
    stdout: &mut dyn std::io::Write,
) -> Result<(), AppError> {
    // Before anything is cloned: the file is named relative to the repository's root.
    crate::files::relative_path(&request.file).map_err(|e| AppError::Usage(format!("--file {e}")))?;
    let named = ["dev", "qa", "release"].contains(&request.repo.as_str());
    let config = super::load_config(global, outside, named || request.credentials.is_some())?;
    super::network_timeout(global, outside, config.as_ref())?;
    let configured = config.as_ref().and_then(|c| {
        let repos = &c.repositories;
        [("dev", Some(&repos.dev)), ("qa", Some(&repos.qa)), ("release", repos.release.as_ref())]
            .into_iter()
            .filter_map(|(name, repo)| Some((name, repo?)))
            .find(|(name, repo)| *name == request.repo || repo.url == request.repo)
            .map(|(name, repo)| (name, repo.clone()))
    });
    let origin = match &configured {
        Some((name, _)) => format!("repositories.{name}.url, from --repo {}", request.repo),
        None => "--repo".to_string(),
    };
    let configured = configured.map(|(_, repo)| repo);
    let url = configured.as_ref().map_or(request.repo.clone(), |r| r.url.clone());
    let branch = request
        .branch
        .clone()
        .or_else(|| configured.as_ref().map(|r| r.branch.clone()))
        .unwrap_or_else(|| "main".into());
    let credentials = request.credentials.clone().or_else(|| configured.as_ref().and_then(|r| r.credentials.clone()));

    let mut secrets = Secrets::new();
    let auth = match (&credentials, &config) {
        (Some(name), Some(config)) => crate::credentials::git_auth(config, name, outside.env, &mut secrets)
            .map_err(|e| AppError::Credentials(e.0))?,
        _ => Auth::None,
    };
    let author = Author::parse(&request.author)
        .ok_or_else(|| AppError::Usage(format!("--author {:?} is not `Name <email>`", request.author)))?;

    let files = request.file.display().to_string();
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("files", files.clone());
    vars.insert("repo", secrets.mask(&url).into_owned());
    vars.insert("sets", request.set.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "));
    if let Some((_, tag)) = request.set.iter().find(|(k, _)| k.ends_with("tag")) {
        vars.insert("tag", tag.clone());
    }
    if let Some((_, version)) = request.set.iter().find(|(k, _)| k == "version") {
        vars.insert("version", version.clone());
    }
    if let Ok(build) = crate::ci::detect(outside.env, &outside.cwd) {
        vars.insert("commit", build.commit);
    }
    let message = branch_update::render_message(&request.message, &vars)
        .map_err(|e| AppError::Usage(format!("--message: {e}")))?;

    let remote = Remote { url: url.clone(), branch: branch.clone(), auth, origin };
    let edits = [Edit { create: request.create, ..Edit::new(request.file.clone(), request.set.clone()) }];
    let options = UpdateOptions {
        author,
        message,
        dry_run: global.dry_run,
        attempts: request.attempts,
        ..UpdateOptions::default()
    };
    // Where the run record goes is known to be writable before anything is pushed.
    super::check_outputs(&[("--report", global.report.as_deref())])?;
    let workdir = crate::files::scratch_dir("stagecoach-promote-")
        .map_err(|source| AppError::Io { what: "creating a work directory".into(), source })?;
    let git = Git2::new(secrets.clone());
    let update = {
        let (remote, dir) = (remote.clone(), workdir.path().to_path_buf());
        move || branch_update::update(&git, &remote, &edits, &options, &dir)
    };
    let promotion = super::until_interrupted(update)?.map_err(|e| {
        let message = secrets.mask(&e.to_string()).into_owned();
        match e {
            // The repository's content would lead the edit out of it.
            branch_update::UpdateError::Escape(_) => {
                AppError::Usage(format!("{url}: {message}", url = secrets.mask(&url)))
            }
            _ => AppError::Failed(message),
        }
    })?;

    let shown_url = secrets.mask(&url).into_owned();
    let summary = match &promotion.outcome {
        UpdateOutcome::Pushed { commit } => format!(
            "pushed {} to {shown_url} ({branch}){}\n",
            &commit[..commit.len().min(12)],
            if promotion.attempts > 1 { format!(" after {} attempts", promotion.attempts) } else { String::new() }
        ),
        UpdateOutcome::Unchanged => {
            format!("{files} in {shown_url} ({branch}) already holds these values: nothing to commit\n")
        }
        UpdateOutcome::DryRun => "dry run: nothing committed or pushed\n".to_string(),
        UpdateOutcome::Declined(why) => format!("{why}: nothing committed or pushed\n"),
    };
    // What was pushed is shown first, whatever happens to the record.
    let text = format!("{}{summary}", secrets.mask(&promotion.diff));
    stdout.write_all(text.as_bytes()).map_err(|source| AppError::Io { what: "writing the output".into(), source })?;
    if let Some(path) = &global.report {
        let (outcome, commit) = match &promotion.outcome {
            UpdateOutcome::Pushed { commit } => ("pushed", Some(commit.as_str())),
            UpdateOutcome::Unchanged => ("unchanged", None),
            UpdateOutcome::DryRun => ("dry-run", None),
            UpdateOutcome::Declined(_) => ("declined", None),
        };
        let record = serde_json::json!({
            "stagecoach_version": env!("CARGO_PKG_VERSION"),
            "command": "promote",
            "outcome": outcome,
            "repository": shown_url,
            "branch": branch,
            "commit": commit,
            "attempts": promotion.attempts,
            "diff": secrets.mask(&promotion.diff),
        });
        let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        crate::files::write_atomically(path, &bytes)
            .map_err(|source| AppError::Io { what: format!("writing {}", path.display()), source })?;
    }
    Ok(())
}
