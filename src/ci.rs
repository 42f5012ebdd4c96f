//! What is being built: the commit, its short hash, the tag if any and the branch, read from the
//! CI service's environment or, outside CI, from the local checkout.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Env;
use crate::tools::git::{self, GitError};

/// Length of the short hash used as the image tag of untagged builds.
pub const SHORT_HASH_LEN: usize = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Travis,
    GithubActions,
    Gitlab,
    LocalGit,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Travis => "Travis CI",
            Self::GithubActions => "GitHub Actions",
            Self::Gitlab => "GitLab CI",
            Self::LocalGit => "local git",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    pub provider: Provider,
    /// Full commit hash.
    pub commit: String,
    pub short: String,
    pub tag: Option<String>,
    pub branch: Option<String>,
    /// A pull-request (merge-request) build: its number, or what says it is one.
    pub pull_request: Option<String>,
    /// The checkout being built, when known (TRAVIS_BUILD_DIR, GITHUB_WORKSPACE, CI_PROJECT_DIR, git).
    pub source_dir: Option<PathBuf>,
}

impl BuildInfo {
    /// The image tag: the git tag on tagged builds, the short hash otherwise.
    pub fn image_tag(&self) -> &str {
        self.tag.as_deref().unwrap_or(&self.short)
    }

    /// Why this build must not push or promote anything, if so: only release tags and builds of
    /// the DEV branch reach the registry and QA. A pull request is never one of them, even
    /// when its source branch has the DEV branch's name (a fork's `main`).
    pub fn held_back(&self, dev_branch: &str) -> Option<String> {
        if let Some(pull_request) = &self.pull_request {
            return Some(format!("a pull-request build ({pull_request})"));
        }
        if self.tag.is_some() {
            return None;
        }
        match &self.branch {
            Some(branch) if branch == dev_branch => None,
            Some(branch) => Some(format!("a build of branch {branch}, not of {dev_branch}")),
            None => Some(format!("a build of no branch (detached HEAD), not of {dev_branch}")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error("{provider} build without {variable}; is this running inside a {provider} job?")]
    Missing { provider: Provider, variable: &'static str },
    #[error("{variable}={value:?} is not a full commit hash")]
    BadCommit { variable: &'static str, value: String },
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Reads the CI environment; outside a known CI service, asks git about `dir`.
pub fn detect(env: Env<'_>, dir: &Path) -> Result<BuildInfo, CiError> {
    match from_env(env)? {
        Some(info) => Ok(info),
        None => from_git(dir),
    }
}

fn set(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// `Ok(None)` when no CI service is recognised.
pub fn from_env(env: Env<'_>) -> Result<Option<BuildInfo>, CiError> {
    let is = |name| set(env, name).is_some_and(|v| v == "true");
    let (provider, commit_var) = if is("TRAVIS") {
        (Provider::Travis, "TRAVIS_COMMIT")
    } else if is("GITHUB_ACTIONS") {
        (Provider::GithubActions, "GITHUB_SHA")
    } else if is("GITLAB_CI") {
        (Provider::Gitlab, "CI_COMMIT_SHA")
    } else {
        return Ok(None);
    };
    let commit = set(env, commit_var).ok_or(CiError::Missing { provider, variable: commit_var })?;
    if !is_full_hash(&commit) {
        return Err(CiError::BadCommit { variable: commit_var, value: commit });
    }
    let (tag, branch, pull_request, source_dir) = match provider {
        Provider::Travis => {
            let tag = set(env, "TRAVIS_TAG");
            // On tag builds Travis puts the tag name in TRAVIS_BRANCH too.
            let branch = set(env, "TRAVIS_PULL_REQUEST_BRANCH")
                .or_else(|| set(env, "TRAVIS_BRANCH"))
                .filter(|b| Some(b) != tag.as_ref());
            let pull_request = set(env, "TRAVIS_PULL_REQUEST").filter(|n| n != "false").map(|n| format!("#{n}"));
            (tag, branch, pull_request, set(env, "TRAVIS_BUILD_DIR"))
        }
        Provider::GithubActions => {
            let git_ref = set(env, "GITHUB_REF").unwrap_or_default();
            let ref_type = set(env, "GITHUB_REF_TYPE");
            let name = set(env, "GITHUB_REF_NAME");
            let tag = match git_ref.strip_prefix("refs/tags/") {
                Some(tag) => Some(tag.to_string()),
                None if ref_type.as_deref() == Some("tag") => name.clone(),
                None => None,
            };
            let branch = set(env, "GITHUB_HEAD_REF").or_else(|| match git_ref.strip_prefix("refs/heads/") {
                Some(branch) => Some(branch.to_string()),
                None if ref_type.as_deref() == Some("branch") => name,
                None => None,
            });
            // pull_request, pull_request_target, pull_request_review…; refs/pull/N/merge.
            let event = set(env, "GITHUB_EVENT_NAME").filter(|e| e.starts_with("pull_request"));
            let number = git_ref.strip_prefix("refs/pull/").and_then(|r| r.split('/').next()).map(|n| format!("#{n}"));
            let pull_request = number.or(event);
            (tag, branch, pull_request, set(env, "GITHUB_WORKSPACE"))
        }
        Provider::Gitlab => {
            let merge_request = set(env, "CI_MERGE_REQUEST_IID").map(|n| format!("!{n}")).or_else(|| {
                set(env, "CI_PIPELINE_SOURCE").filter(|s| s == "merge_request_event").map(|_| "merge request".into())
            });
            (
                set(env, "CI_COMMIT_TAG"),
                set(env, "CI_COMMIT_BRANCH").or_else(|| set(env, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")),
                merge_request,
                set(env, "CI_PROJECT_DIR"),
            )
        }
        Provider::LocalGit => unreachable!("not an environment provider"),
    };
    Ok(Some(BuildInfo {
        provider,
        short: commit[..SHORT_HASH_LEN].to_string(),
        commit,
        tag,
        branch,
        pull_request,
        source_dir: source_dir.map(PathBuf::from),
    }))
}

pub fn from_git(dir: &Path) -> Result<BuildInfo, CiError> {
    let head = git::head(dir)?;
    Ok(BuildInfo {
        provider: Provider::LocalGit,
        short: head.commit[..SHORT_HASH_LEN].to_string(),
        tag: pick_tag(head.tags),
        commit: head.commit,
        branch: head.branch,
        pull_request: None,
        source_dir: Some(head.workdir),
    })
}

/// Of several tags on one commit, the highest version wins; tags that are not versions lose.
fn pick_tag(tags: Vec<String>) -> Option<String> {
    let version = |t: &String| crate::version::release_version(t).ok();
    tags.into_iter().max_by(|a, b| version(a).cmp(&version(b)).then_with(|| a.cmp(b)))
}

fn is_full_hash(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SHA: &str = "64ed033a1f3c9b2e8d7f6a5b4c3d2e1f0a9b8c7d";

    struct Case {
        name: &'static str,
        env: &'static [(&'static str, &'static str)],
        want: Result<Option<(Provider, Option<&'static str>, Option<&'static str>)>, &'static str>,
    }

    #[test]
    fn ci_environment_table() {
        let cases = [
            Case { name: "no CI", env: &[("CI", "true")], want: Ok(None) },
            Case {
                name: "travis branch build",
                env: &[("TRAVIS", "true"), ("TRAVIS_COMMIT", SHA), ("TRAVIS_BRANCH", "main"), ("TRAVIS_TAG", "")],
                want: Ok(Some((Provider::Travis, None, Some("main")))),
            },
            Case {
                name: "travis tag build drops the tag from the branch",
                env: &[
                    ("TRAVIS", "true"),
                    ("TRAVIS_COMMIT", SHA),
                    ("TRAVIS_BRANCH", "v1.2.3"),
                    ("TRAVIS_TAG", "v1.2.3"),
                ],
                want: Ok(Some((Provider::Travis, Some("v1.2.3"), None))),
            },
            Case {
                name: "travis pull request uses the source branch",
                env: &[
                    ("TRAVIS", "true"),
                    ("TRAVIS_COMMIT", SHA),
                    ("TRAVIS_BRANCH", "main"),
                    ("TRAVIS_PULL_REQUEST_BRANCH", "fix"),
                ],
                want: Ok(Some((Provider::Travis, None, Some("fix")))),
            },
            Case {
                name: "travis without commit",
                env: &[("TRAVIS", "true")],
                want: Err("Travis CI build without TRAVIS_COMMIT"),
            },
            Case {
                name: "github branch push",
                env: &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_SHA", SHA),
                    ("GITHUB_REF", "refs/heads/main"),
                    ("GITHUB_REF_TYPE", "branch"),
                ],
                want: Ok(Some((Provider::GithubActions, None, Some("main")))),
            },
            Case {
                name: "github tag push",
                env: &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_SHA", SHA),
                    ("GITHUB_REF", "refs/tags/v0.1.0"),
                    ("GITHUB_REF_TYPE", "tag"),
                    ("GITHUB_REF_NAME", "v0.1.0"),
                ],
                want: Ok(Some((Provider::GithubActions, Some("v0.1.0"), None))),
            },
            Case {
                name: "github tag from ref type only",
                env: &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_SHA", SHA),
                    ("GITHUB_REF_TYPE", "tag"),
                    ("GITHUB_REF_NAME", "1.2"),
                ],
                want: Ok(Some((Provider::GithubActions, Some("1.2"), None))),
            },
            Case {
                name: "github pull request",
                env: &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_SHA", SHA),
                    ("GITHUB_REF", "refs/pull/7/merge"),
                    ("GITHUB_HEAD_REF", "feature"),
                ],
                want: Ok(Some((Provider::GithubActions, None, Some("feature")))),
            },
            Case {
                name: "github short sha refused",
                env: &[("GITHUB_ACTIONS", "true"), ("GITHUB_SHA", "64ed033")],
                want: Err("GITHUB_SHA=\"64ed033\" is not a full commit hash"),
            },
            Case {
                name: "gitlab tag pipeline",
                env: &[("GITLAB_CI", "true"), ("CI_COMMIT_SHA", SHA), ("CI_COMMIT_TAG", "v2.0.0")],
                want: Ok(Some((Provider::Gitlab, Some("v2.0.0"), None))),
            },
            Case {
                name: "gitlab branch pipeline",
                env: &[("GITLAB_CI", "true"), ("CI_COMMIT_SHA", SHA), ("CI_COMMIT_BRANCH", "main")],
                want: Ok(Some((Provider::Gitlab, None, Some("main")))),
            },
            Case {
                name: "gitlab merge request",
                env: &[("GITLAB_CI", "true"), ("CI_COMMIT_SHA", SHA), ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "mr")],
                want: Ok(Some((Provider::Gitlab, None, Some("mr")))),
            },
        ];
        for case in cases {
            let map: HashMap<&str, &str> = case.env.iter().copied().collect();
            let env = |name: &str| map.get(name).map(|v| v.to_string());
            let got = from_env(&env);
            match (&case.want, got) {
                (Ok(None), Ok(None)) => {}
                (Ok(Some((provider, tag, branch))), Ok(Some(info))) => {
                    assert_eq!(info.provider, *provider, "case {}", case.name);
                    assert_eq!(info.commit, SHA, "case {}", case.name);
                    assert_eq!(info.short, "64ed033", "case {}", case.name);
                    assert_eq!(info.tag.as_deref(), *tag, "case {}", case.name);
                    assert_eq!(info.branch.as_deref(), *branch, "case {}", case.name);
                    assert_eq!(info.image_tag(), tag.unwrap_or("64ed033"), "case {}", case.name);
                }
                (Err(want), Err(got)) => {
                    assert_eq!(got.to_string().split(';').next().unwrap(), *want, "case {}", case.name)
                }
                (want, got) => panic!("case {}: want {want:?}, got {got:?}", case.name),
            }
        }
    }

    #[test]
    fn held_back_table() {
        let build = |tag: Option<&str>, branch: Option<&str>, pull_request: Option<&str>| BuildInfo {
            provider: Provider::GithubActions,
            commit: SHA.into(),
            short: SHA[..7].into(),
            tag: tag.map(Into::into),
            branch: branch.map(Into::into),
            pull_request: pull_request.map(Into::into),
            source_dir: None,
        };
        let cases = [
            ("the DEV branch", build(None, Some("main"), None), None),
            ("a release tag", build(Some("v1.2.3"), None, None), None),
            ("another branch", build(None, Some("feature"), None), Some("a build of branch feature, not of main")),
            ("detached", build(None, None, None), Some("a build of no branch (detached HEAD), not of main")),
            ("a pull request from main", build(None, Some("main"), Some("#7")), Some("a pull-request build (#7)")),
        ];
        for (name, build, want) in cases {
            assert_eq!(build.held_back("main").as_deref(), want, "{name}");
        }
    }

    #[test]
    fn pull_request_table() {
        let cases: [(&str, &[(&str, &str)], Option<&str>); 9] = [
            (
                "github push",
                &[("GITHUB_ACTIONS", "true"), ("GITHUB_REF", "refs/heads/main"), ("GITHUB_EVENT_NAME", "push")],
                None,
            ),
            (
                "github pull_request",
                &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_REF", "refs/pull/7/merge"),
                    ("GITHUB_EVENT_NAME", "pull_request"),
                ],
                Some("#7"),
            ),
            (
                "github pull_request_target",
                &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_REF", "refs/heads/main"),
                    ("GITHUB_EVENT_NAME", "pull_request_target"),
                ],
                Some("pull_request_target"),
            ),
            ("travis push", &[("TRAVIS", "true"), ("TRAVIS_BRANCH", "main"), ("TRAVIS_PULL_REQUEST", "false")], None),
            (
                "travis pull request",
                &[("TRAVIS", "true"), ("TRAVIS_BRANCH", "main"), ("TRAVIS_PULL_REQUEST", "12")],
                Some("#12"),
            ),
            (
                "gitlab branch",
                &[("GITLAB_CI", "true"), ("CI_COMMIT_BRANCH", "main"), ("CI_PIPELINE_SOURCE", "push")],
                None,
            ),
            (
                "gitlab merge request",
                &[("GITLAB_CI", "true"), ("CI_MERGE_REQUEST_IID", "3"), ("CI_PIPELINE_SOURCE", "merge_request_event")],
                Some("!3"),
            ),
            (
                "gitlab merge request event only",
                &[("GITLAB_CI", "true"), ("CI_PIPELINE_SOURCE", "merge_request_event")],
                Some("merge request"),
            ),
            ("gitlab tag", &[("GITLAB_CI", "true"), ("CI_COMMIT_TAG", "v1.0.0")], None),
        ];
        for (name, vars, want) in cases {
            let mut map: HashMap<&str, &str> = vars.iter().copied().collect();
            map.extend([("TRAVIS_COMMIT", SHA), ("GITHUB_SHA", SHA), ("CI_COMMIT_SHA", SHA)]);
            let env = |name: &str| map.get(name).map(|v| v.to_string());
            let info = from_env(&env).unwrap().unwrap();
            assert_eq!(info.pull_request.as_deref(), want, "{name}");
        }
    }

    #[test]
    fn tag_choice_table() {
        let cases: [(&[&str], Option<&str>); 5] = [
            (&[], None),
            (&["v1.2.3"], Some("v1.2.3")),
            (&["v1.9.0", "v1.10.0"], Some("v1.10.0")),
            (&["latest-green", "v0.1.0"], Some("v0.1.0")),
            (&["a", "b"], Some("b")),
        ];
        for (tags, want) in cases {
            assert_eq!(pick_tag(tags.iter().map(|t| t.to_string()).collect()).as_deref(), want, "{tags:?}");
        }
    }
}
