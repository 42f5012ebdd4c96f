//! The CI configurations stagecoach ships work on real CI: the QA repository installs the
//! stagecoach of the commit it tests and pushes to RELEASE with a token of its own; the DEV
//! repository's workflow runs .ci/run. The install script runs here with a fake `cargo` on PATH.

use std::path::Path;
use std::process::Command;

use crate::support::stagecoach;

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
const COMMIT: &str = "64ed033a1f3c9b2e8d7f6a5b4c3d2e1f0a9b8c7d";
const TOKEN: &str = "dev-token-s3cr3t-31";

/// Runs ci/install-stagecoach.sh in a QA checkout whose Chart.yaml has `app_version`; returns
/// (exit code, what the fake cargo was given and what GIT_ASKPASS answered, the script's output).
fn install(app_version: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("Chart.yaml"),
        format!("apiVersion: v2\nname: op\nversion: 0.1.0\nappVersion: \"{app_version}\"\n"),
    )
    .unwrap();
    std::fs::create_dir(d.join("bin")).unwrap();
    let log = d.join("cargo.log");
    let fake = format!(
        "#!/bin/sh\nfor a in \"$@\"; do echo \"arg $a\" >> {log}; done\n\
         if [ -n \"$GIT_ASKPASS\" ]; then echo \"askpass $(\"$GIT_ASKPASS\" Password)\" >> {log}; fi\n\
         echo \"fetch-with-cli ${{CARGO_NET_GIT_FETCH_WITH_CLI:-}}\" >> {log}\n",
        log = log.display()
    );
    std::fs::write(d.join("bin/cargo"), fake).unwrap();
    std::fs::set_permissions(d.join("bin/cargo"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = Path::new(WORKSPACE).join("chart-template/ci/install-stagecoach.sh");
    let output = Command::new("sh")
        .arg(&script)
        .current_dir(d)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", d.join("bin").display()))
        .env("STAGECOACH_DEV_URL", "https://github.example/org/dev.git")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), std::fs::read_to_string(&log).unwrap_or_default(), out)
}

#[test]
fn the_qa_repository_installs_the_stagecoach_of_the_commit_it_tests() {
    let args = |url: &str, rev: &str| {
        format!("arg install\narg --locked\narg --git\narg {url}\narg --rev\narg {rev}\narg stagecoach\n")
    };
    let plain = "https://github.example/org/dev.git";
    let cases: [(&str, &str, &[(&str, &str)], i32, String); 4] = [
        ("appVersion", COMMIT, &[], 0, format!("{}fetch-with-cli \n", args(plain, COMMIT))),
        (
            "STAGECOACH_REV wins",
            COMMIT,
            &[("STAGECOACH_REV", "v1.2.3")],
            0,
            format!("{}fetch-with-cli \n", args(plain, "v1.2.3")),
        ),
        (
            "a private DEV repository",
            COMMIT,
            &[("DEV_TOKEN", TOKEN)],
            0,
            format!(
                "{}askpass {TOKEN}\nfetch-with-cli true\n",
                args("https://x-access-token@github.example/org/dev.git", COMMIT)
            ),
        ),
        ("no commit to pin to", "0.1.0", &[], 1, String::new()),
    ];
    for (name, app_version, env, code, want) in cases {
        let (got_code, log, out) = install(app_version, env);
        assert_eq!(got_code, code, "{name}: {out}");
        assert_eq!(log, want, "{name}");
        assert!(!out.contains(TOKEN), "{name}: the token was printed: {out}");
        if code != 0 {
            assert!(out.contains("set STAGECOACH_REV"), "{name}: {out}");
        }
    }
}

#[test]
fn qa_ci_pushes_to_release_with_its_own_token_and_installs_the_pinned_stagecoach() {
    let read = |path: &str| std::fs::read_to_string(Path::new(WORKSPACE).join(path)).unwrap();
    let workflow: serde_json::Value =
        serde_saphyr::from_str(&read("chart-template/.github/workflows/integration-test.yml")).unwrap();
    let steps = workflow["jobs"]["qa"]["steps"].as_array().unwrap();
    let run_of = |step: &serde_json::Value| step["run"].as_str().unwrap_or_default().to_string();
    let install = steps.iter().find(|s| run_of(s).contains("ci/install-stagecoach.sh")).expect("an install step");
    assert_eq!(install["env"]["DEV_TOKEN"], "${{ secrets.DEV_TOKEN }}");
    let test = steps.iter().find(|s| run_of(s).contains("integration-test")).expect("a stagecoach step");
    assert_eq!(test["env"]["RELEASE_TOKEN"], "${{ secrets.RELEASE_TOKEN }}");
    assert!(run_of(test).contains("--junit"), "{test}");
    // Steps that run no stagecoach get no credentials; GITHUB_TOKEN cannot push elsewhere.
    let text = read("chart-template/.github/workflows/integration-test.yml");
    assert!(!text.contains("secrets.GITHUB_TOKEN"), "{text}");
    let travis = read("chart-template/.travis.yml");
    assert!(travis.contains("sh ci/install-stagecoach.sh") && travis.contains("RELEASE_TOKEN"), "{travis}");
    assert!(!travis.contains("GITHUB_TOKEN"), "{travis}");
    // The DEV repository's own workflow runs what CI runs here.
    assert!(read(".github/workflows/ci.yml").contains("run: bash .ci/run"));
    // The pipeline file pushes each repository with its own token.
    let plan = stagecoach(Path::new(WORKSPACE), &["plan"], &[]);
    plan.success();
    for want in [
        "credentials `qa_push`: user x-access-token, token $QA_TOKEN",
        "credentials `release_push`: user x-access-token, token $RELEASE_TOKEN",
    ] {
        assert!(plan.stdout.contains(want), "{want}\n{}", plan.stdout);
    }
}
