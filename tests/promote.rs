//! `stagecoach promote` against a real git smart-HTTP server with basic auth, and file:// repos.

use std::path::Path;

use crate::git_server::{GitServer, seed_bare_repo};
use crate::support::{git, stagecoach};

const CANARY: &str = "canary-s3cr3t-42";

const VALUES: &str =
    "# QA chart values\nimage:\n  repository: 127.0.0.1:5000/op # pushed by CI\n  tag: latest # set by stagecoach\n";

/// A pipeline file whose `qa` repository is `url`, with token credentials in QA_TOKEN.
fn pipeline(dir: &Path, url: &str) {
    let text = crate::support::VALID_PIPELINE.replacen("https://git.example/qa.git", url, 1).replacen(
        "    token_env: GITHUB_TOKEN",
        "    username: ci\n    token_env: QA_TOKEN",
        1,
    );
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("pipelines/stagecoach.yaml"), text).unwrap();
}

fn show(bare: &Path, path: &str) -> String {
    git(bare, &["show", &format!("main:{path}")])
}

fn everything_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(everything_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            all.extend(bytes);
        }
    }
    all
}

#[test]
fn promote_over_http_with_a_token_commits_pushes_and_prints_the_diff() {
    let Some(server) = GitServer::start("ci", CANARY) else { return };
    let url = server
        .create_repo("qa", &[("values.yaml", VALUES), ("Chart.yaml", "apiVersion: v2\nname: op\nversion: 0.1.0\n")]);
    let dev = tempfile::tempdir().unwrap();
    pipeline(dev.path(), &url);
    let env = [("QA_TOKEN", CANARY)];

    let report = dev.path().join("run.json");
    let run = stagecoach(
        dev.path(),
        &[
            "-v",
            "--report",
            report.to_str().unwrap(),
            "promote",
            "--repo",
            "qa",
            "--file",
            "values.yaml",
            "--set",
            "image.tag=64ed033",
            "--message",
            "Deploy {tag} to {files}",
        ],
        &env,
    );
    run.success();
    assert!(
        run.stdout.contains("-  tag: latest # set by stagecoach\n+  tag: 64ed033 # set by stagecoach\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!("to {url} (main)")), "{}", run.stdout);

    let bare = server.bare("qa");
    assert_eq!(show(&bare, "values.yaml"), VALUES.replace("latest", "64ed033").trim_end());
    let log = git(&bare, &["log", "--format=%an <%ae>|%s", "main"]);
    assert_eq!(log.lines().next().unwrap(), "stagecoach <stagecoach@localhost>|Deploy 64ed033 to values.yaml");

    // The secret is nowhere: output, errors, the run record, and (below) what git wrote.
    let record = std::fs::read_to_string(&report).unwrap();
    assert!(record.contains("\"outcome\": \"pushed\""), "{record}");
    for text in [&run.stdout, &run.stderr, &record] {
        assert!(!text.contains(CANARY), "the token leaked:\n{text}");
    }

    // Running it again changes nothing and says so.
    let again = stagecoach(
        dev.path(),
        &["promote", "--repo", "qa", "--file", "values.yaml", "--set", "image.tag=64ed033"],
        &env,
    );
    again.success();
    assert!(again.stdout.contains("already holds these values: nothing to commit"), "{}", again.stdout);
    assert_eq!(git(&bare, &["rev-list", "--count", "main"]), "2");
}

#[test]
fn wrong_credentials_fail_clearly_without_the_secret() {
    let Some(server) = GitServer::start("ci", CANARY) else { return };
    let url = server.create_repo("qa", &[("values.yaml", VALUES)]);
    let dev = tempfile::tempdir().unwrap();
    pipeline(dev.path(), &url);

    let wrong = "wrong-password-1234";
    let run = stagecoach(
        dev.path(),
        &["promote", "--repo", "qa", "--file", "values.yaml", "--set", "image.tag=x"],
        &[("QA_TOKEN", wrong)],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("{url}: authentication failed; check the credentials")), "{}", run.stderr);
    assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong));

    let unset =
        stagecoach(dev.path(), &["promote", "--repo", "qa", "--file", "values.yaml", "--set", "image.tag=x"], &[]);
    assert_eq!(unset.code, 2);
    assert!(unset.stderr.contains("credentials `git`: environment variable QA_TOKEN is not set"), "{}", unset.stderr);

    let none = stagecoach(
        dev.path(),
        &["--config", "/dev/null/none", "promote", "--repo", &url, "--file", "values.yaml", "--set", "image.tag=x"],
        &[],
    );
    assert_ne!(none.code, 0);
    assert_eq!(git(&server.bare("qa"), &["rev-list", "--count", "main"]), "1", "nothing may have been pushed");
}

#[test]
fn the_token_is_written_to_no_file_of_the_clone() {
    let Some(server) = GitServer::start("ci", CANARY) else { return };
    let url = server.create_repo("qa", &[("values.yaml", VALUES)]);
    let dev = tempfile::tempdir().unwrap();
    pipeline(dev.path(), &url);
    // Keep the clone to look into it: promote in a known work directory through the library.
    let clone = tempfile::tempdir().unwrap();
    let mut secrets = stagecoach::secrets::Secrets::new();
    secrets.add(CANARY);
    let remote = stagecoach::tools::git::Remote {
        url: url.clone(),
        branch: "main".into(),
        auth: stagecoach::tools::git::Auth::UserPass { username: "ci".into(), password: CANARY.into() },
        origin: String::new(),
    };
    let edits = [stagecoach::branch_update::Edit::new("values.yaml", vec![("image.tag".into(), "v1".into())])];
    let git2 = stagecoach::tools::git::Git2::new(secrets);
    let promotion =
        stagecoach::branch_update::update(&git2, &remote, &edits, &Default::default(), clone.path()).unwrap();
    assert!(matches!(promotion.outcome, stagecoach::branch_update::UpdateOutcome::Pushed { .. }));
    let bytes = everything_under(clone.path());
    assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "the token is in a file of the clone");
    let config = std::fs::read_to_string(clone.path().join(".git/config")).unwrap();
    assert!(!config.contains("ci:") && !config.contains(CANARY), "{config}");
}

#[test]
fn ten_concurrent_promotions_all_land_over_http_file_urls_and_paths() {
    let Some(server) = GitServer::start("ci", CANARY) else { return };
    let values: String = (0..10).map(|i| format!("t{i}: old # slot {i}\n")).collect();
    let local = tempfile::tempdir().unwrap();
    let file_bare = local.path().join("qa-file.git");
    seed_bare_repo(&file_bare, &[("values.yaml", &values)]);
    let path_bare = local.path().join("qa-path.git");
    seed_bare_repo(&path_bare, &[("values.yaml", &values)]);
    let cases = [
        ("smart HTTP", server.create_repo("qa", &[("values.yaml", &values)]), server.bare("qa")),
        ("file://", format!("file://{}", file_bare.display()), file_bare.clone()),
        ("a path", path_bare.display().to_string(), path_bare.clone()),
    ];
    for (name, url, bare) in cases {
        let dev = tempfile::tempdir().unwrap();
        pipeline(dev.path(), &url);
        let runs: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..10)
                .map(|i| {
                    let dir = dev.path().to_path_buf();
                    scope.spawn(move || {
                        let set = format!("t{i}=new{i}");
                        stagecoach(
                            &dir,
                            &["promote", "--repo", "qa", "--file", "values.yaml", "--set", &set, "--attempts", "30"],
                            &[("QA_TOKEN", CANARY)],
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for run in &runs {
            run.success();
        }
        assert_eq!(git(&bare, &["rev-list", "--count", "main"]), "11", "{name}: 1 seed + 10 promotions");
        let want: String = (0..10).map(|i| format!("t{i}: new{i} # slot {i}\n")).collect();
        assert_eq!(show(&bare, "values.yaml"), want.trim_end(), "{name}");
        let retried = runs.iter().filter(|r| r.stdout.contains("attempts")).count();
        eprintln!("{name}: {retried} of 10 promotions were rejected at least once and retried");
    }
}

#[test]
fn dry_run_prints_the_diff_and_pushes_nothing_and_file_urls_work() {
    let remote = tempfile::tempdir().unwrap();
    let bare = remote.path().join("qa.git");
    seed_bare_repo(&bare, &[("values.yaml", VALUES)]);
    let url = format!("file://{}", bare.display());
    let dir = tempfile::tempdir().unwrap();

    let dry = stagecoach(
        dir.path(),
        &["--dry-run", "promote", "--repo", &url, "--file", "values.yaml", "--set", "image.tag=v2"],
        &[],
    );
    dry.success();
    assert!(dry.stdout.contains("+  tag: v2 # set by stagecoach"), "{}", dry.stdout);
    assert!(dry.stdout.ends_with("dry run: nothing committed or pushed\n"));
    assert_eq!(git(&bare, &["rev-list", "--count", "main"]), "1");

    // A plain path works too.
    stagecoach(
        dir.path(),
        &["promote", "--repo", bare.to_str().unwrap(), "--file", "values.yaml", "--set", "image.tag=v2"],
        &[],
    )
    .success();
    assert_eq!(git(&bare, &["rev-list", "--count", "main"]), "2");

    let missing = stagecoach(dir.path(), &["promote", "--repo", &url, "--file", "nope.yaml", "--set", "a=1"], &[]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("nope.yaml is not in the repository"), "{}", missing.stderr);
    let branch = stagecoach(
        dir.path(),
        &["promote", "--repo", &url, "--branch", "gone", "--file", "values.yaml", "--set", "a=1"],
        &[],
    );
    assert!(branch.stderr.contains("branch `gone` does not exist there"), "{}", branch.stderr);
}

#[test]
fn an_exact_commit_is_checked_out_also_shallow_and_also_where_the_server_refuses_fetch_by_hash() {
    let Some(server) = GitServer::start("ci", CANARY) else { return };
    let url = server.create_repo("dev", &[("src.txt", "one\n")]);
    let bare = server.bare("dev");
    // Two more commits on main: the one we want is in the middle.
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "w"]);
    let w = work.path().join("w");
    std::fs::write(w.join("src.txt"), "two\n").unwrap();
    git(&w, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two"]);
    let wanted = git(&w, &["rev-parse", "HEAD"]);
    std::fs::write(w.join("src.txt"), "three\n").unwrap();
    git(&w, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "three"]);
    git(&w, &["push", "-q", "origin", "main"]);

    let mut secrets = stagecoach::secrets::Secrets::new();
    secrets.add(CANARY);
    let git2 = stagecoach::tools::git::Git2::new(secrets);
    let remote = stagecoach::tools::git::Remote {
        url,
        branch: "main".into(),
        auth: stagecoach::tools::git::Auth::UserPass { username: "ci".into(), password: CANARY.into() },
        origin: String::new(),
    };
    for allow_by_hash in ["true", "false"] {
        git(&bare, &["config", "uploadpack.allowReachableSHA1InWant", allow_by_hash]);
        let dir = tempfile::tempdir().unwrap();
        git2.checkout_commit(&remote, dir.path(), &wanted).unwrap_or_else(|e| panic!("allow={allow_by_hash}: {e}"));
        assert_eq!(std::fs::read_to_string(dir.path().join("src.txt")).unwrap(), "two\n", "allow={allow_by_hash}");
        assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]), wanted);
        if allow_by_hash == "true" {
            assert_eq!(git(dir.path(), &["rev-parse", "--is-shallow-repository"]), "true", "fetched by hash, shallow");
        }
    }
    let missing = tempfile::tempdir().unwrap();
    let error = git2.checkout_commit(&remote, missing.path(), &"1".repeat(40)).unwrap_err().to_string();
    assert!(
        error.ends_with(&format!("commit {} is not there (or not reachable from a branch or tag)", "1".repeat(40))),
        "{error}"
    );
}

#[test]
fn what_the_server_does_with_a_push_is_what_stagecoach_reports() {
    let Some(server) = GitServer::start("ci", CANARY) else { return };
    let work = tempfile::tempdir().unwrap();
    // (hook, script, exit code, QA commits afterwards, what the output must say)
    let lose_once = format!(
        "#!/bin/sh\nwhile read old new ref; do\n  if [ ! -e {m} ]; then touch {m}; git update-ref \"$ref\" \"$old\"; fi\ndone\n",
        m = work.path().join("lost-once").display()
    );
    let decline = "#!/bin/sh\necho 'policy: pushes to main need a review (see CONTRIBUTING)' >&2\nexit 1\n".to_string();
    let cases = [
        ("a push the server loses is pushed again", "post-receive", lose_once, 0, "2", "attempts"),
        (
            "a hook's refusal is shown",
            "pre-receive",
            decline,
            1,
            "1",
            "pre-receive hook declined; the server said: policy: pushes to main need a review (see CONTRIBUTING)",
        ),
    ];
    for (index, (name, hook, script, code, commits, want)) in cases.into_iter().enumerate() {
        let url = server.create_repo(&format!("hooked{index}"), &[("values.yaml", VALUES)]);
        let bare = server.bare(&format!("hooked{index}"));
        std::fs::write(bare.join("hooks").join(hook), script).unwrap();
        std::fs::set_permissions(bare.join("hooks").join(hook), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let dev = tempfile::tempdir().unwrap();
        pipeline(dev.path(), &url);
        let run = stagecoach(
            dev.path(),
            &["promote", "--repo", "qa", "--file", "values.yaml", "--set", "image.tag=v2"],
            &[("QA_TOKEN", CANARY)],
        );
        assert_eq!(run.code, code, "{name}: {}{}", run.stdout, run.stderr);
        assert_eq!(git(&bare, &["rev-list", "--count", "main"]), commits, "{name}");
        assert!(format!("{}{}", run.stdout, run.stderr).contains(want), "{name}: {}{}", run.stdout, run.stderr);
    }
}

#[test]
fn a_local_repository_that_is_not_there_is_named_with_the_key_or_flag_that_gave_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = |name: &str| dir.path().join(format!("no-such-{name}.git")).display().to_string();
    let text = crate::support::VALID_PIPELINE
        .replacen("https://git.example/dev.git", &missing("dev"), 1)
        .replacen("https://git.example/qa.git", &missing("qa"), 1)
        .replacen("https://git.example/release.git", &missing("release"), 1)
        .replace("    credentials: git\n", "");
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/stagecoach.yaml"), text).unwrap();
    // (--repo, the repository missing, where its URL came from)
    let cases = [
        ("dev", missing("dev"), "repositories.dev.url, from --repo dev".to_string()),
        ("qa", missing("qa"), "repositories.qa.url, from --repo qa".to_string()),
        ("release", missing("release"), "repositories.release.url, from --repo release".to_string()),
        ("elsewhere", missing("elsewhere"), "--repo".to_string()),
    ];
    for (repo, path, origin) in cases {
        let repo = if repo == "elsewhere" { path.clone() } else { repo.to_string() };
        let run = stagecoach(dir.path(), &["promote", "--repo", &repo, "--file", "values.yaml", "--set", "a=b"], &[]);
        let want = format!("no git repository at {path} ({origin})");
        assert!(run.code != 0 && run.stderr.contains(&want), "--repo {repo}: want {want:?}\n{}", run.stderr);
        assert!(!run.stderr.contains("unsupported URL protocol"), "{}", run.stderr);
    }
    // The flows say it too: a release into a RELEASE repository that is not there.
    let qa = crate::release::qa_checkout(dir.path(), missing("release"), None);
    let run = stagecoach(&qa, &["--no-progress", "release", "--untested"], &[]);
    assert!(
        run.stderr.contains(&format!("no git repository at {} (repositories.release.url)", missing("release"))),
        "{}",
        run.stderr
    );
}

#[test]
fn an_output_path_that_cannot_be_written_stops_the_command_before_anything_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let qa = dir.path().join("qa.git");
    seed_bare_repo(&qa, &[("values.yaml", VALUES)]);
    let release = dir.path().join("release.git");
    seed_bare_repo(&release, &[("README.md", "charts\n")]);
    let checkout = crate::release::qa_checkout(dir.path(), &release, None);
    let missing = dir.path().join("no-such-dir/record.json").display().to_string();
    let directory = dir.path().display().to_string();
    let qa_url = qa.display().to_string();
    let promote = ["promote", "--repo", qa_url.as_str(), "--file", "values.yaml", "--set", "image.tag=new"];
    // (case, where it runs, its arguments, its environment, what the error says)
    let cases: [(&str, &Path, Vec<&str>, Vec<(&str, &str)>, String); 5] = [
        (
            "promote --report in a missing directory",
            dir.path(),
            [&["--report", &missing][..], &promote].concat(),
            vec![],
            format!(
                "--report {missing}: directory {} does not exist; nothing was run",
                dir.path().join("no-such-dir").display()
            ),
        ),
        (
            "promote --report naming a directory",
            dir.path(),
            [&["--report", &directory][..], &promote].concat(),
            vec![],
            format!("--report {directory}: a directory, not a file"),
        ),
        (
            "release --report in a missing directory",
            &checkout,
            vec!["--report", &missing, "release", "--untested"],
            vec![],
            format!("--report {missing}: directory"),
        ),
        (
            "release --junit in a missing directory",
            &checkout,
            vec!["--junit", &missing, "release", "--untested"],
            vec![],
            format!("--junit {missing}: directory"),
        ),
        (
            "release with GitHub's step summary in a missing directory",
            &checkout,
            vec!["release", "--untested"],
            vec![
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_SHA", crate::release::APP),
                ("GITHUB_REF", "refs/heads/main"),
                ("GITHUB_STEP_SUMMARY", &missing),
            ],
            format!("GITHUB_STEP_SUMMARY {missing}: directory"),
        ),
    ];
    for (case, cwd, args, env, want) in cases {
        let run = stagecoach(cwd, &args, &env);
        assert_eq!(run.code, 2, "{case}: {}", run.stderr);
        assert!(run.stderr.contains(&want), "{case}: want {want:?}\n{}", run.stderr);
        assert_eq!(git(&qa, &["rev-list", "--count", "main"]), "1", "{case}: QA was pushed to");
        assert_eq!(git(&release, &["rev-list", "--count", "main"]), "1", "{case}: RELEASE was pushed to");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!leftovers.iter().any(|n| n.to_string_lossy().starts_with(".stagecoach-check-")), "{leftovers:?}");
}
