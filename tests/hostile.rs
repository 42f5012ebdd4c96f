//! Hostile inputs and faulty environments, through the real binary.

use crate::registry::docker_available;
use crate::support::{Repo, VALID_PIPELINE, stagecoach};

#[test]
fn commands_see_only_the_credential_variables_they_list() {
    if !docker_available() {
        return;
    }
    let show = "run: echo \"token=${GITHUB_TOKEN:-unset} password=${DOCKER_PASSWORD:-unset} \
                cosign=${STAGECOACH_COSIGN_PASSWORD:-unset} gpg=${STAGECOACH_SIGNING_PASSPHRASE:-unset} home=${HOME:+set}\"";
    let env = [
        ("GITHUB_TOKEN", "canary-token-1"),
        ("DOCKER_PASSWORD", "canary-password-2"),
        ("STAGECOACH_COSIGN_PASSWORD", "canary-cosign-3"),
        ("STAGECOACH_SIGNING_PASSPHRASE", "canary-gpg-4"),
    ];
    let cases = [
        ("nothing listed", "", "token=unset password=unset cosign=unset gpg=unset home=set"),
        (
            "one listed",
            "\n    env_passthrough: [DOCKER_PASSWORD]",
            "token=unset password=*** cosign=unset gpg=unset home=set",
        ),
    ];
    for (name, passthrough, want) in cases {
        let pipeline = VALID_PIPELINE.replace("run: cargo build", &format!("{show}{passthrough}"));
        let repo = Repo::new(&pipeline);
        // The run fails later (there is no Dockerfile); the build stage is what is looked at.
        let run = stagecoach(repo.path(), &["--no-progress", "build-and-deploy"], &env);
        assert!(run.stderr.contains(&format!("[build] {want}\n")), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("canary-"), "{name}: a secret was shown: {}", run.stderr);
    }

    let typo = VALID_PIPELINE.replace("run: cargo build", "run: make\n    env_passthrough: [GITHUB_TOKN]");
    let run = stagecoach(Repo::new(&typo).path(), &["plan"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("commands.build.env_passthrough: `GITHUB_TOKN` is no variable of `credentials:`; did you mean `GITHUB_TOKEN`?"),
        "{}",
        run.stderr
    );
    let plan = stagecoach(Repo::new(VALID_PIPELINE).path(), &["plan", "build-and-deploy"], &[]);
    assert!(
        plan.stdout.contains("sh -c 'cargo build' (timeout 30m), without DOCKER_PASSWORD, GITHUB_TOKEN in "),
        "{}",
        plan.stdout
    );
}

/// A QA repository on this machine whose content tries to lead edits out of it.
fn hostile_qa(outside: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("chart")).unwrap();
    std::fs::write(work.join("chart/values.yaml"), "image:\n  tag: latest\n").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.yaml"), work.join("values.yaml")).unwrap();
    std::os::unix::fs::symlink(outside, work.join("elsewhere")).unwrap();
    crate::support::git(&work, &["init", "-q", "-b", "main"]);
    crate::support::git(&work, &["add", "."]);
    crate::support::git(&work, &["commit", "-q", "-m", "hostile"]);
    let bare = dir.path().join("qa.git");
    crate::support::git(&work, &["clone", "-q", "--bare", ".", bare.to_str().unwrap()]);
    (dir, bare)
}

#[test]
fn every_write_stays_inside_its_checkout_also_in_a_dry_run() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.yaml");
    std::fs::write(&secret, "image:\n  tag: untouched\n").unwrap();
    let (_qa, bare) = hostile_qa(outside.path());
    let repo = Repo::new(
        &VALID_PIPELINE
            .replace("https://git.example/qa.git", bare.to_str().unwrap())
            .replace("    credentials: git\n  release", "  release"),
    );
    let cases = [
        ("an absolute path", "/etc/hostname", "--file /etc/hostname: an absolute path"),
        ("`..`", "../x.yaml", "--file ../x.yaml: `..` leads out of the repository"),
        ("a link to a file outside", "values.yaml", "values.yaml: a symbolic link to"),
        ("a link to a directory outside", "elsewhere/secret.yaml", "elsewhere/secret.yaml: a symbolic link to"),
    ];
    for dry_run in [false, true] {
        for (name, file, want) in cases {
            let mut args = vec!["promote", "--repo", "qa", "--file", file, "--set", "image.tag=pwned"];
            if dry_run {
                args.insert(0, "--dry-run");
            }
            let run = stagecoach(repo.path(), &args, &[]);
            assert_eq!(run.code, 2, "{name} (dry run {dry_run}): {}", run.stderr);
            assert!(run.stderr.contains(want), "{name} (dry run {dry_run}): {}", run.stderr);
            assert_eq!(std::fs::read_to_string(&secret).unwrap(), "image:\n  tag: untouched\n", "{name}");
        }
    }
    assert_eq!(crate::support::git(&bare, &["rev-list", "--count", "main"]), "1", "something was pushed");
    // The same file inside the repository is fine.
    let run = stagecoach(
        repo.path(),
        &["promote", "--repo", "qa", "--file", "chart/values.yaml", "--set", "image.tag=v2"],
        &[],
    );
    run.success();

    let outside_chart =
        VALID_PIPELINE.replace("  name: bitcoin-operator\n", "  name: bitcoin-operator\n  path: ../charts\n");
    let run = stagecoach(Repo::new(&outside_chart).path(), &["plan"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("chart.path: `..` leads out of the repository"), "{}", run.stderr);
}

#[test]
fn chart_set_on_a_link_edits_the_file_it_points_to_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("values.yaml"), "image:\n  tag: latest # CI\n").unwrap();
    std::os::unix::fs::symlink("values.yaml", d.join("current.yaml")).unwrap();
    stagecoach(d, &["chart", "set", "current.yaml", "image.tag=v2"], &[]).success();
    assert!(std::fs::symlink_metadata(d.join("current.yaml")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(d.join("values.yaml")).unwrap(), "image:\n  tag: v2 # CI\n");
}

#[test]
fn a_silent_server_is_given_up_within_the_network_timeout_naming_it() {
    let url = format!("http://127.0.0.1:{}/qa.git", crate::support::silent_port());
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = stagecoach(
        dir.path(),
        &["--network-timeout", "2s", "promote", "--repo", &url, "--file", "values.yaml", "--set", "a=b"],
        &[],
    );
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(&url), "the remote is not named: {}", run.stderr);
    assert!(run.stderr.to_lowercase().contains("timed out"), "{}", run.stderr);
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");

    // The same from the variable, and a bad value is refused before anything runs.
    let run = stagecoach(
        dir.path(),
        &["promote", "--repo", &url, "--file", "values.yaml", "--set", "a=b"],
        &[("STAGECOACH_NETWORK_TIMEOUT", "1s")],
    );
    assert!(run.stderr.to_lowercase().contains("timed out"), "{}", run.stderr);
    let bad = stagecoach(
        dir.path(),
        &["--network-timeout", "soon", "promote", "--repo", &url, "--file", "v.yaml", "--set", "a=b"],
        &[],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--network-timeout soon:"), "{}", bad.stderr);
}

#[test]
fn a_registry_that_does_not_answer_is_given_up_within_the_network_timeout() {
    if !docker_available() {
        return;
    }
    let port = crate::support::silent_port();
    let dev = crate::image::dev_repo(&format!("127.0.0.1:{port}/silent-operator"), false);
    let started = std::time::Instant::now();
    let run = stagecoach(dev.dir.path(), &["--no-progress", "--network-timeout", "3s", "build-and-deploy"], &[]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("registry 127.0.0.1:{port} did not answer for 3s while pushing")),
        "{}",
        run.stderr
    );
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    assert_eq!(crate::image::qa_commits(&dev), "1", "QA was changed");
}

#[test]
fn a_relative_config_works_for_every_stage() {
    if !docker_available() {
        return;
    }
    let dev = crate::image::dev_repo("stagecoach-test/relative-config", false);
    let d = dev.dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    let cases: [(&str, &std::path::Path, &[&str], &[(&str, &str)]); 2] = [
        ("--config from the root", d, &["--config", "pipelines/stagecoach.yaml"], &[]),
        (
            "STAGECOACH_CONFIG from a subdirectory",
            &d.join("sub"),
            &[],
            &[("STAGECOACH_CONFIG", "../pipelines/stagecoach.yaml")],
        ),
    ];
    for (name, cwd, flags, env) in cases {
        let mut args = flags.to_vec();
        args.extend(["--no-progress", "build-and-deploy", "--no-push"]);
        let run = stagecoach(cwd, &args, env);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        assert_eq!(crate::image::qa_commits(&dev), "2", "{name}: QA holds the build");
    }
}

#[test]
fn a_qa_chart_that_links_out_of_its_checkout_is_not_read() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("Chart.yaml"), "apiVersion: v2\nname: elsewhere\nversion: 1.0.0\n").unwrap();
    let repo = Repo::new(VALID_PIPELINE);
    std::fs::write(repo.path().join("values.yaml"), "image:\n  tag: x\n").unwrap();
    std::os::unix::fs::symlink(outside.path().join("Chart.yaml"), repo.path().join("Chart.yaml")).unwrap();
    let run = stagecoach(repo.path(), &["--no-progress", "integration-test"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("Chart.yaml: a symbolic link to"), "{}", run.stderr);
}

#[test]
fn build_and_deploy_refuses_a_qa_repository_that_links_out_also_in_a_dry_run() {
    if !docker_available() {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.yaml");
    std::fs::write(&secret, "image:\n  tag: untouched\n").unwrap();
    let (_qa, bare) = hostile_qa(outside.path());
    let dev = crate::image::dev_repo("stagecoach-test/hostile-qa", false);
    let pipeline = dev.dir.path().join("pipelines/stagecoach.yaml");
    let text =
        std::fs::read_to_string(&pipeline).unwrap().replace(&dev.qa.display().to_string(), bare.to_str().unwrap());
    std::fs::write(&pipeline, text).unwrap();
    for args in
        [&["--no-progress", "build-and-deploy", "--no-push"][..], &["--no-progress", "--dry-run", "build-and-deploy"]]
    {
        let run = stagecoach(dev.dir.path(), args, &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("stage `qa-promote` refused:")
                && run.stderr.contains("values.yaml: a symbolic link to"),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "image:\n  tag: untouched\n", "{args:?}");
    }
    assert_eq!(crate::support::git(&bare, &["rev-list", "--count", "main"]), "1");
}
