//! Reports CI systems read: `--junit` validated against the JUnit schema Jenkins' and GitLab's
//! readers use (junit-10.xsd, from the pytest sdist on PyPI, which .ci/run fetches), and the
//! Markdown summary appended to `$GITHUB_STEP_SUMMARY`.

use std::path::PathBuf;
use std::process::Command;

use crate::image::dev_repo;
use crate::registry::docker_available;
use crate::support::{git, missing_component, stagecoach};

/// The schema and xmllint, or a loud skip (a failure in CI).
fn schema() -> Option<PathBuf> {
    let xsd = std::env::var_os("STAGECOACH_JUNIT_XSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::ci_cache::find("pytest-", "").unwrap_or_default());
    let xmllint = Command::new("xmllint").arg("--version").output().is_ok_and(|o| o.status.success());
    if !xsd.is_file() || !xmllint {
        missing_component("the JUnit schema and xmllint", ".ci/run fetches junit-10.xsd and installs libxml2-utils");
        return None;
    }
    Some(xsd)
}

fn validate(xsd: &std::path::Path, report: &std::path::Path) {
    let out = Command::new("xmllint").args(["--noout", "--schema"]).arg(xsd).arg(report).output().unwrap();
    assert!(
        out.status.success(),
        "{} does not validate: {}{}",
        report.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(report).unwrap()
    );
}

#[test]
fn a_failed_run_is_a_junit_report_with_the_failure_and_its_last_lines_and_a_step_summary() {
    let Some(xsd) = schema() else { return };
    if !docker_available() {
        return;
    }
    let dev = dev_repo("127.0.0.1:5000/junit-operator", false);
    let d = dev.dir.path();
    let pipeline = d.join("pipelines/stagecoach.yaml");
    let failing = "run: 'for i in $(seq 1 40); do echo \"line $i <&> \\\"quoted\\\"\"; done; exit 3'";
    let text = std::fs::read_to_string(&pipeline).unwrap().replace("run: echo unit tests ran", failing);
    std::fs::write(&pipeline, text).unwrap();
    let head = git(d, &["rev-parse", "HEAD"]);
    let summary = d.join("step-summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let junit = d.join("junit.xml");

    let run = stagecoach(
        d,
        &["--no-progress", "--junit", junit.to_str().unwrap(), "build-and-deploy"],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SHA", &head),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    validate(&xsd, &junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let cases = [
        ("a suite for the command", "<testsuite name=\"stagecoach build-and-deploy\" tests=\"6\" failures=\"1\""),
        ("a passed stage", "<testcase name=\"build\" classname=\"stagecoach.build-and-deploy\" time=\""),
        (
            "the failure and its message",
            "<failure type=\"stage-failed\" message=\"`sh -c &apos;for i in $(seq 1 40); do echo &quot;line $i",
        ),
        ("how it ended", "exit 3&apos;` exited with code 3\">line 11 &lt;&amp;&gt; &quot;quoted&quot;\nline 12 "),
        ("the last line, escaped", "line 40 &lt;&amp;&gt; &quot;quoted&quot;</failure>"),
        ("stages after it", "<testcase name=\"image-build\""),
        ("as not run", "<skipped type=\"not-run\" message=\"not run: an earlier stage failed\"/>"),
        ("what was built", &format!("<property name=\"commit\" value=\"{head}\"/>")),
    ];
    for (name, want) in cases {
        assert!(xml.contains(want), "{name}: {want}\n{xml}");
    }
    // The last lines only.
    assert!(xml.contains("line 11 ") && !xml.contains("line 10 "), "{xml}");

    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(
        markdown.starts_with("earlier step\n### stagecoach build-and-deploy: failed at unit-tests\n"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| build | passed |") && markdown.contains("| image-build | not run | - |"),
        "{markdown}"
    );
}

#[test]
fn a_passed_run_validates_and_names_its_skipped_stages() {
    let Some(xsd) = schema() else { return };
    if !docker_available() {
        return;
    }
    let dev = dev_repo("127.0.0.1:5000/junit-passed", false);
    let d = dev.dir.path();
    let junit = d.join("junit.xml");
    // A branch that is not the DEV branch: built and tested, nothing pushed or promoted.
    git(d, &["checkout", "-q", "-b", "topic"]);
    let run = stagecoach(d, &["--no-progress", "--junit", junit.to_str().unwrap(), "build-and-deploy"], &[]);
    run.success();
    validate(&xsd, &junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"0\" errors=\"0\" skipped=\"3\""), "{xml}");
    assert!(
        xml.contains("<skipped type=\"skipped\" message=\"a build of branch topic, not of main: nothing is pushed"),
        "{xml}"
    );
    let _ = Command::new("docker").args(["rmi", "-f", "127.0.0.1:5000/junit-passed:latest"]).output();
}

#[test]
fn a_report_that_cannot_be_written_stops_the_run_before_anything_runs() {
    let repo = crate::support::Repo::new(crate::support::VALID_PIPELINE);
    for flag in ["--report", "--junit"] {
        let run = stagecoach(repo.path(), &[flag, "no/such/dir/out", "build-and-deploy"], &[]);
        assert_eq!(run.code, 2, "{flag}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("{flag} no/such/dir/out: directory no/such/dir does not exist; nothing was run")),
            "{flag}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("==> build"), "{flag}: {}", run.stderr);
    }
}
