//! What CI builds decides what is promoted: only builds of the DEV branch and release tags push
//! and promote, through the real binary, a real registry and a real QA repository.

use crate::image::{dev_repo, qa_commits};
use crate::registry::{Registry, docker_available};
use crate::support::{git, stagecoach, yaml_tag};

/// `promoted`: the image is in the registry (`:tag` and `:latest`) and QA names it; otherwise
/// neither changed and the summary says why (`why`).
struct Case {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// The local branch, for builds outside CI.
    branch: &'static str,
    args: &'static [&'static str],
    tag: Option<&'static str>,
    why: Option<&'static str>,
}

const HEAD: &str = "<head>";

#[test]
fn only_builds_of_the_dev_branch_and_release_tags_push_and_promote() {
    if !docker_available() {
        return;
    }
    let Some(registry) = Registry::start(None) else { return };
    let pr = Some("a pull-request build");
    let cases = [
        Case { name: "local main", env: &[], branch: "main", args: &[], tag: None, why: None },
        Case {
            name: "local feature branch",
            env: &[],
            branch: "feature",
            args: &[],
            tag: None,
            why: Some("a build of branch feature, not of main"),
        },
        Case {
            name: "local feature branch with --promote",
            env: &[],
            branch: "feature",
            args: &["--promote"],
            tag: None,
            why: None,
        },
        Case {
            name: "github push",
            env: &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_SHA", HEAD),
                ("GITHUB_EVENT_NAME", "push"),
                ("GITHUB_REF", "refs/heads/main"),
            ],
            branch: "main",
            args: &[],
            tag: None,
            why: None,
        },
        Case {
            name: "github push of another branch",
            env: &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_SHA", HEAD),
                ("GITHUB_EVENT_NAME", "push"),
                ("GITHUB_REF", "refs/heads/fix"),
            ],
            branch: "main",
            args: &[],
            tag: None,
            why: Some("a build of branch fix, not of main"),
        },
        Case {
            name: "github tag",
            env: &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_SHA", HEAD),
                ("GITHUB_EVENT_NAME", "push"),
                ("GITHUB_REF", "refs/tags/v0.2.0"),
                ("GITHUB_REF_TYPE", "tag"),
                ("GITHUB_REF_NAME", "v0.2.0"),
            ],
            branch: "main",
            args: &[],
            tag: Some("v0.2.0"),
            why: None,
        },
        Case {
            name: "github pull_request from a branch named main",
            env: &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_SHA", HEAD),
                ("GITHUB_EVENT_NAME", "pull_request"),
                ("GITHUB_REF", "refs/pull/7/merge"),
                ("GITHUB_HEAD_REF", "main"),
            ],
            branch: "main",
            args: &[],
            tag: None,
            why: pr,
        },
        Case {
            name: "travis push",
            env: &[
                ("TRAVIS", "true"),
                ("TRAVIS_COMMIT", HEAD),
                ("TRAVIS_BRANCH", "main"),
                ("TRAVIS_PULL_REQUEST", "false"),
            ],
            branch: "main",
            args: &[],
            tag: None,
            why: None,
        },
        Case {
            name: "travis tag",
            env: &[
                ("TRAVIS", "true"),
                ("TRAVIS_COMMIT", HEAD),
                ("TRAVIS_BRANCH", "v0.3.0"),
                ("TRAVIS_TAG", "v0.3.0"),
                ("TRAVIS_PULL_REQUEST", "false"),
            ],
            branch: "main",
            args: &[],
            tag: Some("v0.3.0"),
            why: None,
        },
        Case {
            name: "travis pull request",
            env: &[
                ("TRAVIS", "true"),
                ("TRAVIS_COMMIT", HEAD),
                ("TRAVIS_BRANCH", "main"),
                ("TRAVIS_PULL_REQUEST", "12"),
                ("TRAVIS_PULL_REQUEST_BRANCH", "fix"),
            ],
            branch: "main",
            args: &[],
            tag: None,
            why: pr,
        },
        Case {
            name: "travis pull request with --promote",
            env: &[
                ("TRAVIS", "true"),
                ("TRAVIS_COMMIT", HEAD),
                ("TRAVIS_BRANCH", "main"),
                ("TRAVIS_PULL_REQUEST", "12"),
                ("TRAVIS_PULL_REQUEST_BRANCH", "fix"),
            ],
            branch: "main",
            args: &["--promote"],
            tag: None,
            why: None,
        },
        Case {
            name: "gitlab branch",
            env: &[
                ("GITLAB_CI", "true"),
                ("CI_COMMIT_SHA", HEAD),
                ("CI_COMMIT_BRANCH", "main"),
                ("CI_PIPELINE_SOURCE", "push"),
            ],
            branch: "main",
            args: &[],
            tag: None,
            why: None,
        },
        Case {
            name: "gitlab tag",
            env: &[
                ("GITLAB_CI", "true"),
                ("CI_COMMIT_SHA", HEAD),
                ("CI_COMMIT_TAG", "v0.4.0"),
                ("CI_PIPELINE_SOURCE", "push"),
            ],
            branch: "main",
            args: &[],
            tag: Some("v0.4.0"),
            why: None,
        },
        Case {
            name: "gitlab merge request",
            env: &[
                ("GITLAB_CI", "true"),
                ("CI_COMMIT_SHA", HEAD),
                ("CI_MERGE_REQUEST_IID", "3"),
                ("CI_PIPELINE_SOURCE", "merge_request_event"),
                ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "main"),
            ],
            branch: "main",
            args: &[],
            tag: None,
            why: Some("a pull-request build (!3)"),
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        // A repository of its own per case: what one case pushed cannot pass for another's.
        let name = format!("gates-{index}");
        let dev = dev_repo(&format!("{}/{name}", registry.host), false);
        let d = dev.dir.path();
        if case.branch != "main" {
            git(d, &["checkout", "-q", "-b", case.branch]);
        }
        let head = git(d, &["rev-parse", "HEAD"]);
        let env: Vec<(&str, &str)> =
            case.env.iter().map(|&(k, v)| (k, if v == HEAD { head.as_str() } else { v })).collect();
        let mut args = vec!["--no-progress", "build-and-deploy"];
        args.extend(case.args);
        let run = stagecoach(d, &args, &env);
        run.success();
        let tag = case.tag.map_or_else(|| head[..7].to_string(), str::to_string);
        let tags = registry.tags(&name);
        match case.why {
            None => {
                let mut want = vec![tag.clone(), "latest".to_string()];
                want.sort();
                assert_eq!(tags, want, "case {}: {}", case.name, run.stderr);
                assert_eq!(qa_commits(&dev), "2", "case {}", case.name);
                let values = git(&dev.qa, &["show", "main:values.yaml"]);
                assert!(values.contains(&format!("  tag: {}\n", yaml_tag(&tag))), "case {}: {values}", case.name);
            }
            Some(why) => {
                assert!(tags.is_empty(), "case {}: pushed {tags:?}", case.name);
                assert_eq!(qa_commits(&dev), "1", "case {}: QA was changed", case.name);
                // The summary says why, on the lines of the stages that did nothing.
                for stage in ["image-push ", "qa-promote "] {
                    let line = run.stderr.lines().rev().find(|l| l.starts_with(stage)).unwrap_or_default();
                    assert!(
                        line.contains("skipped") && line.contains(why),
                        "case {}: {stage}: {}",
                        case.name,
                        run.stderr
                    );
                }
                // It built and tested all the same.
                assert!(run.stderr.contains("[unit-tests] unit tests ran"), "case {}", case.name);
            }
        }
    }
}
