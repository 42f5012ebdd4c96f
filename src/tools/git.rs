//! Git adapter (libgit2 through git2): read HEAD, sync a clone with a remote branch, commit,
//! push, and check out an exact commit.
//!
//! Credentials reach libgit2 only through its credentials callback: they are never part of a
//! URL, never written to `.git/config` (remotes are anonymous), and every message that leaves
//! this module is masked.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use git2::{Cred, CredentialType, FetchOptions, PushOptions, RemoteCallbacks, Repository};

use crate::secrets::Secrets;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{}: not inside a git repository ({message}); run stagecoach from a clone, or set the CI variables", .dir.display())]
    NotARepository { dir: PathBuf, message: String },
    #[error("{}: the repository has no commit yet; commit something first", .dir.display())]
    NoCommit { dir: PathBuf },
    #[error("{}: reading {what}: {message}", .dir.display())]
    Read { dir: PathBuf, what: &'static str, message: String },
    #[error("{url}: authentication failed; check the credentials{hint}")]
    Auth { url: String, hint: String },
    #[error("{url}: branch `{branch}` does not exist there")]
    NoBranch { url: String, branch: String },
    #[error("{url}: commit {commit} is not there (or not reachable from a branch or tag)")]
    NoCommitThere { url: String, commit: String },
    #[error("{url}: push of `{branch}` rejected: the branch moved on the remote")]
    Rejected { url: String, branch: String },
    #[error("{what} {url}: {message}")]
    Remote { what: &'static str, url: String, message: String },
    #[error("no git repository at {path} ({origin}); create one there (`git init --bare {path}`) or fix {origin}")]
    NoRepository { path: String, origin: String },
    #[error("{}: {what}: {message}", .dir.display())]
    Local { dir: PathBuf, what: &'static str, message: String },
}

impl GitError {
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }
}

/// What HEAD of a local checkout is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub commit: String,
    /// Tags pointing at HEAD (lightweight or annotated), sorted by name.
    pub tags: Vec<String>,
    /// `None` when HEAD is detached.
    pub branch: Option<String>,
    /// The working tree's top directory.
    pub workdir: PathBuf,
}

/// Reads HEAD without `git describe`, so detached HEADs and shallow clones work the same.
pub fn head(dir: &Path) -> Result<Head, GitError> {
    let repo = Repository::discover(dir)
        .map_err(|e| GitError::NotARepository { dir: dir.to_path_buf(), message: e.message().to_string() })?;
    let read =
        |what| move |e: git2::Error| GitError::Read { dir: dir.to_path_buf(), what, message: e.message().to_string() };
    let head = match repo.head() {
        Ok(head) => head,
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => {
            return Err(GitError::NoCommit { dir: dir.to_path_buf() });
        }
        Err(e) => return Err(read("HEAD")(e)),
    };
    let commit = head.peel_to_commit().map_err(read("HEAD"))?.id();
    let branch =
        if repo.head_detached().map_err(read("HEAD"))? { None } else { head.shorthand().ok().map(str::to_string) };

    let mut tags = Vec::new();
    repo.tag_foreach(|oid, name| {
        // Annotated tags point at a tag object; peel to the commit it names.
        let target = repo.find_object(oid, None).and_then(|o| o.peel(git2::ObjectType::Commit)).map(|o| o.id());
        if target.is_ok_and(|t| t == commit)
            && let Some(name) = std::str::from_utf8(name).ok().and_then(|n| n.strip_prefix("refs/tags/"))
        {
            tags.push(name.to_string());
        }
        true
    })
    .map_err(read("tags"))?;
    tags.sort();

    let workdir = repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf();
    Ok(Head { commit: commit.to_string(), tags, branch, workdir })
}

/// How to authenticate to a remote; secrets are held only for the length of a run.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    UserPass {
        username: String,
        password: String,
    },
    /// SSH: the agent first, then the key file.
    Ssh {
        username: String,
        key_path: Option<PathBuf>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::UserPass { username, .. } => write!(f, "UserPass({username}, ***)"),
            Self::Ssh { username, key_path } => write!(f, "Ssh({username}, {key_path:?})"),
        }
    }
}

/// A remote branch and how to reach it.
#[derive(Clone, Debug)]
pub struct Remote {
    pub url: String,
    pub branch: String,
    pub auth: Auth,
    /// Where the URL came from (`repositories.qa.url`, `--repo`), for errors about it.
    pub origin: String,
}

/// Who commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Default for Author {
    fn default() -> Self {
        Self { name: "stagecoach".into(), email: "stagecoach@localhost".into() }
    }
}

impl Author {
    /// `Name <email>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (name, rest) = text.split_once('<')?;
        let email = rest.strip_suffix('>')?;
        let name = name.trim();
        (!name.is_empty() && email.contains('@')).then(|| Self { name: name.to_string(), email: email.to_string() })
    }
}

/// The real adapter.
#[derive(Clone, Debug, Default)]
pub struct Git2 {
    secrets: Secrets,
}

impl Git2 {
    pub fn new(secrets: Secrets) -> Self {
        super::libgit2::register_stream();
        Self { secrets }
    }

    fn mask(&self, text: &str) -> String {
        self.secrets.mask(text).into_owned()
    }

    fn remote_error(&self, what: &'static str, remote: &Remote, error: &git2::Error, auth_tries: u32) -> GitError {
        let message = self.mask(error.message());
        if auth_tries > 1
            || error.code() == git2::ErrorCode::Auth
            || error.class() == git2::ErrorClass::Http && message.contains("401")
        {
            let hint = match remote.auth {
                Auth::None => {
                    "; the server asks for credentials: name them under `credentials:` in the pipeline file".to_string()
                }
                _ => String::new(),
            };
            return GitError::Auth { url: self.mask(&remote.url), hint };
        }
        GitError::Remote { what, url: self.mask(&remote.url), message }
    }

    /// Makes `dir` a clone of the remote branch's tip (shallow), fetching again if it is one
    /// already; local changes are discarded. Returns the tip commit.
    pub fn sync(&self, remote: &Remote, dir: &Path) -> Result<String, GitError> {
        let repo = open_or_init(dir)?;
        let tracking = format!("refs/remotes/origin/{}", remote.branch);
        let refspec = format!("+refs/heads/{}:{tracking}", remote.branch);
        self.fetch(&repo, remote, &[&refspec], Some(1), "fetch")?;
        let tip = repo
            .find_reference(&tracking)
            .and_then(|r| r.peel_to_commit())
            .map_err(|_| GitError::NoBranch { url: self.mask(&remote.url), branch: remote.branch.clone() })?;
        let local = format!("refs/heads/{}", remote.branch);
        let local_err = |what| {
            move |e: git2::Error| GitError::Local { dir: dir.to_path_buf(), what, message: e.message().to_string() }
        };
        repo.reference(&local, tip.id(), true, "stagecoach: sync").map_err(local_err("updating the branch"))?;
        repo.set_head(&local).map_err(local_err("setting HEAD"))?;
        repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force().remove_untracked(true)))
            .map_err(local_err("checking out"))?;
        Ok(tip.id().to_string())
    }

    fn fetch(
        &self,
        repo: &Repository,
        remote: &Remote,
        refspecs: &[&str],
        depth: Option<i32>,
        what: &'static str,
    ) -> Result<(), GitError> {
        if is_local(&remote.url) {
            let path = remote.url.strip_prefix("file://").unwrap_or(&remote.url);
            if Repository::open_bare(path).is_err() && Repository::open(path).is_err() {
                let origin =
                    if remote.origin.is_empty() { "the repository's URL".into() } else { remote.origin.clone() };
                return Err(GitError::NoRepository { path: path.to_string(), origin });
            }
        }
        let tries = Cell::new(0);
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(&remote.auth, &tries));
        if let Some(depth) = depth.filter(|_| !is_local(&remote.url)) {
            options.depth(depth);
        }
        let mut anonymous = repo.remote_anonymous(&remote.url).map_err(|e| self.remote_error(what, remote, &e, 0))?;
        anonymous
            .fetch(refspecs, Some(&mut options), None)
            .map_err(|e| self.remote_error(what, remote, &e, tries.get()))
    }

    /// Commits the given files (relative to the work tree) on the current branch; `None` when
    /// they hold no change.
    pub fn commit(
        &self,
        dir: &Path,
        files: &[PathBuf],
        message: &str,
        author: &Author,
    ) -> Result<Option<String>, GitError> {
        let local = |what| {
            move |e: git2::Error| GitError::Local { dir: dir.to_path_buf(), what, message: e.message().to_string() }
        };
        let repo = Repository::open(dir).map_err(local("opening the clone"))?;
        let mut index = repo.index().map_err(local("reading the index"))?;
        for file in files {
            index.add_path(file).map_err(local("adding a file"))?;
        }
        index.write().map_err(local("writing the index"))?;
        let tree_id = index.write_tree().map_err(local("writing the tree"))?;
        let parent = repo.head().and_then(|h| h.peel_to_commit()).map_err(local("reading HEAD"))?;
        if parent.tree_id() == tree_id {
            return Ok(None);
        }
        let tree = repo.find_tree(tree_id).map_err(local("reading the tree"))?;
        let signature = git2::Signature::now(&author.name, &author.email).map_err(local("the author"))?;
        let id = repo
            .commit(Some("HEAD"), &signature, &signature, message, &tree, &[&parent])
            .map_err(local("committing"))?;
        Ok(Some(id.to_string()))
    }

    /// Pushes the current branch; a remote that moved meanwhile is [`GitError::Rejected`]. Only
    /// once the remote branch is seen to contain the commit is the push done: a transport that
    /// lost it (a concurrent push replaced it) is [`GitError::Rejected`] as well.
    pub fn push(&self, remote: &Remote, dir: &Path) -> Result<(), GitError> {
        let repo = Repository::open(dir).map_err(|e| GitError::Local {
            dir: dir.to_path_buf(),
            what: "opening the clone",
            message: e.message().to_string(),
        })?;
        let local = |what| {
            move |e: git2::Error| GitError::Local { dir: dir.to_path_buf(), what, message: e.message().to_string() }
        };
        let pushed = repo.head().and_then(|h| h.peel_to_commit()).map_err(local("reading HEAD"))?.id();
        if is_local(&remote.url) {
            self.push_local(&repo, remote, pushed)?;
        } else {
            self.push_remote(&repo, remote)?;
        }
        self.confirm(&repo, remote, pushed)
    }

    /// A push into a repository on this machine, as one compare-and-swap of the branch under its
    /// lock: libgit2's local transport replaces the branch whatever it holds, so of two
    /// concurrent pushes one was lost.
    fn push_local(&self, repo: &Repository, remote: &Remote, pushed: git2::Oid) -> Result<(), GitError> {
        let path = remote.url.strip_prefix("file://").unwrap_or(&remote.url);
        let url = self.mask(&remote.url);
        let failed = |what: &'static str| {
            let url = url.clone();
            move |e: git2::Error| GitError::Remote { what, url, message: e.message().to_string() }
        };
        let target = Repository::open(path).map_err(failed("open"))?;
        // What this clone was made from: the push must find the branch still there.
        let tracking = format!("refs/remotes/origin/{}", remote.branch);
        let base = repo.refname_to_id(&tracking).map_err(failed("push to"))?;
        let mut walk = repo.revwalk().map_err(failed("push to"))?;
        walk.push(pushed).map_err(failed("push to"))?;
        walk.hide(base).map_err(failed("push to"))?;
        let mut pack = repo.packbuilder().map_err(failed("push to"))?;
        pack.insert_walk(&mut walk).map_err(failed("push to"))?;
        let odb = target.odb().map_err(failed("push to"))?;
        let mut writer = odb.packwriter().map_err(failed("push to"))?;
        let mut written = Ok(());
        pack.foreach(|chunk| {
            written = std::io::Write::write_all(&mut writer, chunk);
            written.is_ok()
        })
        .map_err(failed("push to"))?;
        written.map_err(|e| GitError::Remote { what: "push to", url: url.clone(), message: e.to_string() })?;
        writer.commit().map_err(failed("push to"))?;
        let branch = format!("refs/heads/{}", remote.branch);
        match target.reference_matching(&branch, pushed, true, base, "stagecoach: push") {
            Ok(_) => Ok(()),
            // Another push moved the branch (or holds its lock) meanwhile.
            Err(e) if matches!(e.code(), git2::ErrorCode::Modified | git2::ErrorCode::Locked) => {
                Err(GitError::Rejected { url, branch: remote.branch.clone() })
            }
            Err(e) => Err(failed("push to")(e)),
        }
    }

    /// Whether the remote branch contains `pushed`, seen from the remote itself.
    fn confirm(&self, repo: &Repository, remote: &Remote, pushed: git2::Oid) -> Result<(), GitError> {
        let tracking = format!("refs/remotes/origin/{}", remote.branch);
        let refspec = format!("+refs/heads/{}:{tracking}", remote.branch);
        self.fetch(repo, remote, &[&refspec], None, "fetch")?;
        let tip = repo.refname_to_id(&tracking).map_err(|e| GitError::Remote {
            what: "fetch",
            url: self.mask(&remote.url),
            message: e.message().to_string(),
        })?;
        let contained = tip == pushed || repo.graph_descendant_of(tip, pushed).unwrap_or(false);
        if contained {
            return Ok(());
        }
        tracing::warn!(url = %self.mask(&remote.url), "the push was lost: the branch does not hold it");
        Err(GitError::Rejected { url: self.mask(&remote.url), branch: remote.branch.clone() })
    }

    /// A push through libgit2's network transports (smart HTTP, SSH).
    fn push_remote(&self, repo: &Repository, remote: &Remote) -> Result<(), GitError> {
        let tries = Cell::new(0);
        let refused: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
        // What the server's hooks print ("remote: …"): the reason a policy refused the push.
        let said = std::cell::RefCell::new(Vec::<u8>::new());
        let mut callbacks = callbacks(&remote.auth, &tries);
        callbacks.push_update_reference(|_, status| {
            if let Some(status) = status {
                *refused.borrow_mut() = Some(status.to_string());
            }
            Ok(())
        });
        callbacks.sideband_progress(|bytes| {
            said.borrow_mut().extend_from_slice(bytes);
            true
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let refspec = format!("refs/heads/{0}:refs/heads/{0}", remote.branch);
        let mut anonymous =
            repo.remote_anonymous(&remote.url).map_err(|e| self.remote_error("push to", remote, &e, 0))?;
        let rejected = || GitError::Rejected { url: self.mask(&remote.url), branch: remote.branch.clone() };
        let pushed = anonymous.push(&[&refspec], Some(&mut options));
        drop(options);
        match pushed {
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => return Err(rejected()),
            Err(e) if RACE_LOST.iter().any(|s| e.message().contains(s)) => return Err(rejected()),
            Err(e) => return Err(self.remote_error("push to", remote, &e, tries.get())),
            Ok(()) => {}
        }
        match refused.into_inner() {
            // What servers answer when another push won the race for the ref.
            Some(status) if RACE_LOST.iter().any(|s| status.contains(s)) => Err(rejected()),
            Some(status) => {
                let said = String::from_utf8_lossy(&said.into_inner()).into_owned();
                let lines: Vec<&str> = said.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect();
                let message = match lines.is_empty() {
                    true => status,
                    false => format!("{status}; the server said: {}", lines.join(" / ")),
                };
                Err(GitError::Remote { what: "push to", url: self.mask(&remote.url), message: self.mask(&message) })
            }
            None => Ok(()),
        }
    }

    /// Checks out exactly `commit` (detached) in `dir`: fetched by hash (shallow) where the
    /// server allows it, else by fetching branches and tags.
    pub fn checkout_commit(&self, remote: &Remote, dir: &Path, commit: &str) -> Result<(), GitError> {
        let repo = open_or_init(dir)?;
        let oid = git2::Oid::from_str(commit)
            .map_err(|_| GitError::NoCommitThere { url: self.mask(&remote.url), commit: commit.to_string() })?;
        if repo.find_commit(oid).is_err() && self.fetch(&repo, remote, &[commit], Some(1), "fetch").is_err() {
            self.fetch(
                &repo,
                remote,
                &["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
                None,
                "fetch",
            )?;
        }
        let found = repo
            .find_commit(oid)
            .map_err(|_| GitError::NoCommitThere { url: self.mask(&remote.url), commit: commit.to_string() })?;
        let local = |what| {
            move |e: git2::Error| GitError::Local { dir: dir.to_path_buf(), what, message: e.message().to_string() }
        };
        repo.set_head_detached(found.id()).map_err(local("setting HEAD"))?;
        repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force().remove_untracked(true)))
            .map_err(local("checking out"))
    }
}

impl Git2 {
    /// Whether `descendant` has `ancestor` in its history, as the DEV checkout in `dir` (or, if
    /// that is no repository, a temporary one) knows it after fetching `remote`'s branch where
    /// it lacks either commit (objects only: no ref but FETCH_HEAD is written). `None` when
    /// `descendant` is nowhere to be found, or is not a commit hash.
    pub fn descends_from(
        &self,
        dir: &Path,
        remote: &Remote,
        descendant: &str,
        ancestor: &str,
    ) -> Result<Option<bool>, GitError> {
        let (Ok(descendant), Ok(ancestor)) = (git2::Oid::from_str(descendant), git2::Oid::from_str(ancestor)) else {
            return Ok(None);
        };
        let scratch;
        let repo = match Repository::open(dir) {
            Ok(repo) => repo,
            Err(_) => {
                scratch = crate::files::scratch_dir("stagecoach-dev-").map_err(|e| GitError::Local {
                    dir: dir.to_path_buf(),
                    what: "creating a scratch repository",
                    message: e.to_string(),
                })?;
                open_or_init(scratch.path())?
            }
        };
        let known = |repo: &Repository| repo.find_commit(descendant).is_ok() && repo.find_commit(ancestor).is_ok();
        if !known(&repo) {
            // The branch's whole history, unless the repository is shallow (then what is new).
            self.fetch(&repo, remote, &[&format!("refs/heads/{}", remote.branch)], None, "fetch")?;
        }
        if !known(&repo) {
            return Ok(None);
        }
        let local = |e: git2::Error| GitError::Local {
            dir: dir.to_path_buf(),
            what: "walking the history",
            message: e.message().to_string(),
        };
        repo.graph_descendant_of(descendant, ancestor).map(Some).map_err(local)
    }
}

/// Push statuses that mean "the branch moved meanwhile": fetch, edit again, retry.
const RACE_LOST: [&str; 6] =
    ["fast-forward", "fetch first", "stale info", "failed to update ref", "failed to lock", "cannot lock ref"];

/// Makes `dir` a new repository on `main` holding everything in it, in one commit.
pub fn init_with_commit(dir: &Path, message: &str, author: &Author) -> Result<String, GitError> {
    let local =
        |what| move |e: git2::Error| GitError::Local { dir: dir.to_path_buf(), what, message: e.message().to_string() };
    let mut options = git2::RepositoryInitOptions::new();
    options.initial_head("main");
    let repo = Repository::init_opts(dir, &options).map_err(local("creating the repository"))?;
    let mut index = repo.index().map_err(local("reading the index"))?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).map_err(local("adding files"))?;
    index.write().map_err(local("writing the index"))?;
    let tree =
        repo.find_tree(index.write_tree().map_err(local("writing the tree"))?).map_err(local("reading the tree"))?;
    let signature = git2::Signature::now(&author.name, &author.email).map_err(local("the author"))?;
    let id = repo.commit(Some("HEAD"), &signature, &signature, message, &tree, &[]).map_err(local("committing"))?;
    Ok(id.to_string())
}

/// A bare copy of the repository at `source` (all branches and tags), for local remotes.
pub fn bare_clone(source: &Path, target: &Path) -> Result<(), GitError> {
    git2::build::RepoBuilder::new()
        .bare(true)
        .clone(&source.display().to_string(), target)
        .map(|_| ())
        .map_err(|e| GitError::Local { dir: target.to_path_buf(), what: "cloning", message: e.message().to_string() })
}

fn open_or_init(dir: &Path) -> Result<Repository, GitError> {
    let local =
        |what| move |e: git2::Error| GitError::Local { dir: dir.to_path_buf(), what, message: e.message().to_string() };
    if dir.join(".git").exists() {
        Repository::open(dir).map_err(local("opening the clone"))
    } else {
        std::fs::create_dir_all(dir).map_err(|e| GitError::Local {
            dir: dir.to_path_buf(),
            what: "creating the directory",
            message: e.to_string(),
        })?;
        Repository::init(dir).map_err(local("creating the clone"))
    }
}

/// libgit2 does not do shallow fetches over its local transport.
fn is_local(url: &str) -> bool {
    url.starts_with("file://") || !url.contains("://") && !url.split('/').next().unwrap_or("").contains(':')
}

/// Answers libgit2's credential requests once; a second request means the first was refused
/// (libgit2 would otherwise ask forever).
fn callbacks<'a>(auth: &'a Auth, tries: &'a Cell<u32>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |_url, username_from_url, allowed| {
        tries.set(tries.get() + 1);
        let attempt = tries.get();
        match auth {
            Auth::UserPass { username, password }
                if attempt == 1 && allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(username, password)
            }
            Auth::Ssh { username, key_path } if allowed.contains(CredentialType::SSH_KEY) => {
                let user = username_from_url.unwrap_or(username);
                match (attempt, key_path) {
                    (1, _) => Cred::ssh_key_from_agent(user),
                    (2, Some(key)) => Cred::ssh_key(user, None, key, None),
                    _ => Err(git2::Error::new(git2::ErrorCode::Auth, git2::ErrorClass::Ssh, "the SSH key was refused")),
                }
            }
            Auth::Ssh { username, .. } if allowed.contains(CredentialType::USERNAME) => Cred::username(username),
            _ => Err(git2::Error::new(git2::ErrorCode::Auth, git2::ErrorClass::Http, "authentication refused")),
        }
    });
    callbacks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn author_table() {
        let cases = [
            ("stagecoach <stagecoach@localhost>", Some(("stagecoach", "stagecoach@localhost"))),
            ("CI Bot <ci@example.com>", Some(("CI Bot", "ci@example.com"))),
            ("no email", None),
            ("<a@b>", None),
            ("x <not-an-email>", None),
        ];
        for (text, want) in cases {
            let got = Author::parse(text).map(|a| (a.name, a.email));
            assert_eq!(got, want.map(|(n, e)| (n.to_string(), e.to_string())), "{text:?}");
        }
    }

    #[test]
    fn auth_debug_hides_the_password() {
        let auth = Auth::UserPass { username: "bot".into(), password: "canary-s3cr3t-42".into() };
        assert_eq!(format!("{auth:?}"), "UserPass(bot, ***)");
    }
}
