//! What is being built, as `plan` reports it: local git in its awkward shapes, and CI services.

use crate::support::{Repo, VALID_PIPELINE, file_url, git, stagecoach};

fn build_line(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let run = stagecoach(dir, &["plan", "release"], env);
    run.success();
    run.stdout.lines().nth(1).unwrap_or_default().trim().to_string()
}

#[test]
fn local_git_shapes() {
    let repo = Repo::new(VALID_PIPELINE);
    let first = repo.head();
    git(repo.path(), &["tag", "v0.1.0"]);
    let second = repo.commit("second");
    git(repo.path(), &["tag", "-a", "-m", "annotated", "1.2"]);
    git(repo.path(), &["tag", "not-a-version"]);
    let third = repo.commit("third");

    // Shallow clone of the untagged tip: `git describe` fails there, detection must not.
    let shallow = tempfile::tempdir().unwrap();
    git(shallow.path(), &["clone", "-q", "--depth", "1", &file_url(repo.path()), "c"]);
    let shallow_dir = shallow.path().join("c");
    assert_eq!(git(&shallow_dir, &["rev-parse", "--is-shallow-repository"]), "true");
    let describe =
        std::process::Command::new("git").args(["describe", "--tags"]).current_dir(&shallow_dir).output().unwrap();
    assert!(!describe.status.success(), "the shallow clone was meant to defeat git describe");

    // Shallow clone of a tag: detached HEAD, tag present.
    let tagged = tempfile::tempdir().unwrap();
    git(tagged.path(), &["clone", "-q", "--depth", "1", "--branch", "v0.1.0", &file_url(repo.path()), "c"]);

    struct Case {
        name: &'static str,
        dir: std::path::PathBuf,
        setup: &'static [&'static str],
        want: String,
    }
    let cases = [
        Case {
            name: "branch tip",
            dir: repo.path().into(),
            setup: &[],
            want: format!("commit {third} (branch main, local git), image tag {}", &third[..7]),
        },
        Case {
            name: "detached on a lightweight tag",
            dir: repo.path().into(),
            setup: &["checkout", "-q", "--detach", "v0.1.0"],
            want: format!("commit {first} (local git), image tag v0.1.0"),
        },
        Case {
            name: "annotated version tag beats a non-version tag",
            dir: repo.path().into(),
            setup: &["checkout", "-q", "--detach", "1.2"],
            want: format!("commit {second} (local git), image tag 1.2"),
        },
        Case {
            name: "shallow clone of an untagged commit",
            dir: shallow_dir.clone(),
            setup: &[],
            want: format!("commit {third} (branch main, local git), image tag {}", &third[..7]),
        },
        Case {
            name: "shallow clone of a tag",
            dir: tagged.path().join("c"),
            setup: &[],
            want: format!("commit {first} (local git), image tag v0.1.0"),
        },
    ];
    for case in cases {
        if !case.setup.is_empty() {
            git(&case.dir, case.setup);
        }
        assert_eq!(build_line(&case.dir, &[]), case.want, "case {}", case.name);
    }
}

#[test]
fn ci_variables_win_over_local_git() {
    let repo = Repo::new(VALID_PIPELINE);
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let cases: [(&str, &[(&str, &str)], String); 3] = [
        (
            "travis tag build",
            &[("TRAVIS", "true"), ("TRAVIS_COMMIT", sha), ("TRAVIS_TAG", "v1.2.3"), ("TRAVIS_BRANCH", "v1.2.3")],
            format!("commit {sha} (Travis CI), image tag v1.2.3"),
        ),
        (
            "github branch push",
            &[("GITHUB_ACTIONS", "true"), ("GITHUB_SHA", sha), ("GITHUB_REF", "refs/heads/main")],
            format!("commit {sha} (branch main, GitHub Actions), image tag 0123456"),
        ),
        (
            "gitlab tag pipeline",
            &[("GITLAB_CI", "true"), ("CI_COMMIT_SHA", sha), ("CI_COMMIT_TAG", "v2.0.0")],
            format!("commit {sha} (GitLab CI), image tag v2.0.0"),
        ),
    ];
    for (name, env, want) in cases {
        assert_eq!(build_line(repo.path(), env), want, "case {name}");
    }
    let broken = stagecoach(repo.path(), &["plan"], &[("TRAVIS", "true")]);
    assert_eq!(broken.code, 2);
    assert!(broken.stderr.contains("Travis CI build without TRAVIS_COMMIT"), "{}", broken.stderr);
}

#[test]
fn a_repository_without_commits_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/stagecoach.yaml"), VALID_PIPELINE).unwrap();
    let run = stagecoach(dir.path(), &["plan"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("the repository has no commit yet; commit something first"), "{}", run.stderr);
}
