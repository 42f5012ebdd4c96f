//! The command surface: help, version, plan, exit codes.

use crate::support::{Repo, VALID_PIPELINE, stagecoach};

const SUBCOMMANDS: &[&[&str]] = &[
    &["build-and-deploy"],
    &["integration-test"],
    &["release"],
    &["promote"],
    &["chart"],
    &["chart", "set"],
    &["chart", "package"],
    &["chart", "index"],
    &["chart", "push"],
    &["plan"],
    &["demo"],
    &["init"],
    &["version"],
];

#[test]
fn every_help_says_what_it_changes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    for words in SUBCOMMANDS {
        let mut args = words.to_vec();
        args.push("--help");
        let run = stagecoach(dir.path(), &args, &[]);
        run.success();
        for needle in ["Changes:", "Reads:", "--dry-run", "--config"] {
            assert!(run.stdout.contains(needle), "`stagecoach {}` lacks {needle:?}:\n{}", words.join(" "), run.stdout);
        }
    }
    let top = stagecoach(dir.path(), &["--help"], &[]);
    for needle in ["Exit codes:", "130", "STAGECOACH_CONFIG", "GITHUB_ACTIONS"] {
        assert!(top.stdout.contains(needle), "top-level help lacks {needle:?}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let dir = tempfile::tempdir().unwrap();
    let run = stagecoach(dir.path(), &["version"], &[]);
    run.success();
    assert_eq!(run.stdout, format!("stagecoach {} (pipeline format 1)\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in
        [&["no-such-command"][..], &["plan", "--no-such-flag"], &["plan", "deploy"], &["-q", "-v", "version"], &[]]
    {
        let run = stagecoach(dir.path(), args, &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
}

#[test]
fn init_makes_the_qa_and_release_repositories_and_never_overwrites() {
    let repo = Repo::new(VALID_PIPELINE);
    let chart = repo.path().join("chart-template");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: op\nversion: 0.1.0\n").unwrap();
    std::fs::write(chart.join(".travis.yml"), "script: stagecoach integration-test\n").unwrap();
    std::fs::write(chart.join("templates/a.yaml"), "kind: ConfigMap\n").unwrap();

    let qa = stagecoach(repo.path(), &["init", "qa", "qa"], &[]);
    qa.success();
    assert!(qa.stdout.starts_with("created the QA repository in qa (commit "), "{}", qa.stdout);
    let files = crate::support::git(&repo.path().join("qa"), &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [".travis.yml", "Chart.yaml", "pipelines/stagecoach.yaml", "templates/a.yaml"]
    );

    stagecoach(repo.path(), &["init", "release", "charts"], &[]).success();
    let index = std::fs::read_to_string(repo.path().join("charts/index.yaml")).unwrap();
    assert!(index.starts_with("apiVersion: v1\nentries: {}\ngenerated: \""), "{index}");
    assert!(repo.path().join("charts/.github/workflows/pages.yml").is_file());

    let again = stagecoach(repo.path(), &["init", "qa", "qa"], &[]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("qa exists and is not empty"), "{}", again.stderr);
    let no_chart = stagecoach(repo.path(), &["init", "qa", "qa2", "--from", "nowhere"], &[]);
    assert_eq!(no_chart.code, 2);
    assert!(no_chart.stderr.contains("nowhere is not a chart to seed the QA repository from"), "{}", no_chart.stderr);

    // Outside the DEV repository there is no pipeline file to copy: refused, nothing written;
    // with --config naming the DEV repository's, the QA repository works with its CI.
    let outside = tempfile::tempdir().unwrap();
    let from = chart.display().to_string();
    let refused = stagecoach(outside.path(), &["init", "qa", "qa", "--from", &from], &[]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("no pipeline file to put into the QA repository")
            && refused.stderr.contains("--config FILE"),
        "{}",
        refused.stderr
    );
    assert!(!outside.path().join("qa").exists(), "something was written");
    let config = repo.path().join("pipelines/stagecoach.yaml").display().to_string();
    stagecoach(outside.path(), &["--config", &config, "init", "qa", "qa", "--from", &from], &[]).success();
    let plan = stagecoach(&outside.path().join("qa"), &["plan", "integration-test"], &[]);
    plan.success();
}

#[test]
fn plan_prints_every_flow_in_order_with_concrete_actions() {
    let repo = Repo::new(VALID_PIPELINE);
    let head = repo.head();
    let short = &head[..7];
    let dir = repo.path().display().to_string();
    let run = stagecoach(repo.path(), &["plan"], &[("GITHUB_TOKEN", "canary-s3cr3t-42")]);
    run.success();
    let out = &run.stdout;
    let order = [
        "build-and-deploy",
        "1.  build",
        "2.  unit-tests",
        "3.  image-build",
        "4.  image-push",
        "5.  qa-promote",
        "6.  image-latest",
        "integration-test",
        "cluster-up (parallel)",
        "dev-checkout (parallel)",
        "image-prepare (parallel)",
        "helm-install",
        "always, also on failure or Ctrl-C:",
        "cluster-teardown",
        "release",
        "1.  release",
    ];
    let mut at = 0;
    for step in order {
        let found = out[at..].find(step).unwrap_or_else(|| panic!("{step:?} missing or out of order in:\n{out}"));
        at += found + step.len();
    }
    for action in [
        format!("commit {head} (branch main, local git), image tag {short}"),
        "sh -c 'cargo build' (timeout 30m)".to_string(),
        "sh -c 'cargo test' (timeout 20m)".to_string(),
        format!(
            "docker build -f {}/Dockerfile {} as 127.0.0.1:5000/bitcoin-operator:{short} (a Dockerfile that only copies files into scratch: imported as one layer, no builder)",
            dir, dir
        ),
        format!("push 127.0.0.1:5000/bitcoin-operator:{short} (credentials"),
        "push 127.0.0.1:5000/bitcoin-operator:latest, once QA holds this build".to_string(),
        format!("unless QA's appVersion is a newer DEV commit (one {short} is an ancestor of)"),
        "credentials `registry`: user bot, password $DOCKER_PASSWORD".to_string(),
        "clone https://git.example/qa.git (branch main, credentials `git`: token $GITHUB_TOKEN)".to_string(),
        "set values.yaml image.repository = 127.0.0.1:5000/bitcoin-operator".to_string(),
        format!("set values.yaml image.tag = {short}"),
        format!("set Chart.yaml appVersion = {head}"),
        "kind create cluster --name stagecoach --image kindest/node:v1.33.1 --wait".to_string(),
        "kind delete cluster --name stagecoach".to_string(),
    ] {
        assert!(out.contains(&action), "missing {action:?} in:\n{out}");
    }
    assert!(!out.contains("canary-s3cr3t-42") && !run.stderr.contains("canary-s3cr3t-42"));

    let only = stagecoach(repo.path(), &["plan", "release"], &[]);
    only.success();
    assert!(only.stdout.starts_with("release\n") && !only.stdout.contains("build-and-deploy"), "{}", only.stdout);
}

#[test]
fn plan_reads_the_config_flag_and_variable() {
    let repo = Repo::new(VALID_PIPELINE);
    let other = VALID_PIPELINE.replace("https://git.example/qa.git", "${QA_URL:-https://default.example/qa.git}");
    std::fs::write(repo.path().join("other.yaml"), other).unwrap();

    let run = stagecoach(repo.path(), &["--config", "other.yaml", "plan", "build-and-deploy"], &[]);
    run.success();
    assert!(run.stdout.contains("clone https://default.example/qa.git"), "{}", run.stdout);

    let run = stagecoach(
        repo.path(),
        &["plan", "build-and-deploy"],
        &[("STAGECOACH_CONFIG", "other.yaml"), ("QA_URL", "file:///srv/qa.git")],
    );
    run.success();
    assert!(run.stdout.contains("clone file:///srv/qa.git"), "{}", run.stdout);
}

#[test]
fn relative_repository_paths_are_relative_to_the_repository_root() {
    let repo = Repo::new(&VALID_PIPELINE.replace("https://git.example/qa.git", "demo/qa.git"));
    std::fs::create_dir(repo.path().join("sub")).unwrap();
    let run = stagecoach(&repo.path().join("sub"), &["plan", "build-and-deploy"], &[]);
    run.success();
    let want = format!("clone {}", repo.path().join("demo/qa.git").display());
    assert!(run.stdout.contains(&want), "want {want:?} in:\n{}", run.stdout);
}

#[test]
fn this_repositorys_own_pipeline_file_is_valid() {
    // The file CI and the demo use: a YAML slip in it (an unquoted `kind::`) once broke the demo.
    let pipeline = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/stagecoach.yaml")).unwrap();
    let repo = Repo::new(&pipeline);
    let run = stagecoach(repo.path(), &["plan"], &[]);
    run.success();
    assert!(run.stdout.contains("--test operator -- --ignored kind::"), "{}", run.stdout);
}

/// The DEV stage's debug compiles of this repository's pipeline select the whole workspace:
/// cargo resolves features for the packages selected, so a `cargo test -p bitcoin-operator`
/// after `cargo build --workspace` compiled tokio, hyper, kube… a second time (the operator
/// alone turns on fewer of tokio's features). The image's own profile is apart.
#[test]
fn the_pipelines_debug_compiles_select_the_whole_workspace() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/stagecoach.yaml");
    let config = stagecoach::config::load(&file, &|_| None).unwrap();
    let commands = [config.commands.build.run, config.commands.unit_tests.run];
    let compiles: Vec<&str> = commands
        .iter()
        .flat_map(|run| run.split("&&"))
        .filter(|c| (c.contains("cargo build") || c.contains("cargo test")) && !c.contains("--profile image"))
        .collect();
    assert!(compiles.len() >= 3, "{compiles:?}");
    for compile in compiles {
        assert!(compile.contains("--workspace") && !compile.contains(" -p "), "{compile}");
    }
}

#[test]
fn init_qa_copies_the_verify_key_and_plan_names_it_by_its_fingerprint() {
    let pipeline = VALID_PIPELINE
        .replace("  credentials: registry\nchart:", "  credentials: registry\n  verify_key: keys/cosign.pub\nchart:");
    let repo = Repo::new(&pipeline);
    let chart = repo.path().join("chart-template");
    std::fs::create_dir_all(&chart).unwrap();
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: op\nversion: 0.1.0\n").unwrap();
    // A P-256 key made by openssl; its fingerprint is the SHA-256 of its DER, by openssl too.
    std::fs::create_dir_all(repo.path().join("keys")).unwrap();
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").args(["-c", script]).current_dir(repo.path()).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sh("openssl ecparam -name prime256v1 -genkey -noout | openssl ec -pubout -out keys/cosign.pub 2>/dev/null");
    let fingerprint = sh("openssl pkey -pubin -in keys/cosign.pub -outform DER | sha256sum");
    let fingerprint = format!("SHA256:{}", fingerprint.split_whitespace().next().unwrap());

    stagecoach(repo.path(), &["init", "qa", "qa"], &[]).success();
    let qa = repo.path().join("qa");
    assert_eq!(
        std::fs::read(qa.join("keys/cosign.pub")).unwrap(),
        std::fs::read(repo.path().join("keys/cosign.pub")).unwrap()
    );
    let plan = stagecoach(&qa, &["plan", "integration-test"], &[]);
    plan.success();
    let first = plan.stdout.lines().find(|l| l.contains("image-verify")).unwrap_or_default();
    assert!(
        plan.stdout.contains(&format!("is signed by cosign key {fingerprint} (keys/cosign.pub)")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.find("image-verify") < plan.stdout.find("chart-check") && !first.is_empty(),
        "image-verify is not first: {}",
        plan.stdout
    );

    // A key leading out of the checkout, or what is not a public key, is refused before
    // anything runs, naming the key and the file.
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(qa.join("keys/cosign.pub"), outside.path().join("cosign.pub")).unwrap();
    std::fs::remove_file(qa.join("keys/cosign.pub")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("cosign.pub"), qa.join("keys/cosign.pub")).unwrap();
    let cases = [
        ("a symbolic link out of the checkout", None, "image.verify_key: keys/cosign.pub: "),
        ("not a key", Some("not a key\n"), "image.verify_key: keys/cosign.pub: not a public key"),
    ];
    for (name, text, part) in cases {
        if let Some(text) = text {
            std::fs::remove_file(qa.join("keys/cosign.pub")).unwrap();
            std::fs::write(qa.join("keys/cosign.pub"), text).unwrap();
        }
        let refused = stagecoach(&qa, &["plan", "integration-test"], &[]);
        assert_eq!(refused.code, 2, "{name}: {}", refused.stderr);
        assert!(refused.stderr.contains(part), "{name}: {}", refused.stderr);
        assert!(text.is_some() || refused.stderr.contains("a symbolic link to"), "{name}: {}", refused.stderr);
        assert!(!refused.stderr.contains("keys/cosign.pub: keys/cosign.pub"), "{name}: {}", refused.stderr);
    }
}
