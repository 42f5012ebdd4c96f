//! Writes the new image and chart version into the QA repository: values.yaml's image
//! repository, tag and (when pushed) manifest digest, Chart.yaml `version` and `appVersion`,
//! committed with trailers that tie the QA commit to its source commit, image and run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ImageKeys, SharedFacts};
use crate::branch_update::{self, Change, Edit, UpdateError, UpdateOptions, UpdateOutcome};
use crate::ci::BuildInfo;
use crate::record::{Detail, StageName};
use crate::runner::{Completion, Stage, StageContext, StageFuture};
use crate::tools::git::{Author, Git2, Remote};
use crate::version;

/// What a dry run writes where the pushed digest would go.
const DRY_RUN_DIGEST: &str = "sha256:<digest of the push>";

pub struct PromoteToQa {
    pub git: Git2,
    pub remote: Remote,
    /// Which credentials the remote's auth came from, for plans.
    pub credentials: String,
    /// Chart directory inside the QA repository.
    pub chart_path: PathBuf,
    /// Where the image goes in values.yaml, and what it is.
    pub keys: ImageKeys,
    pub repository: String,
    pub build: BuildInfo,
    pub run_id: String,
    pub author: Author,
    pub dry_run: bool,
    /// Whether the image stage pushes (false with --no-push): a dry run then shows a digest.
    pub pushes: bool,
    /// Why this build promotes nothing (a pull request, another branch), if so.
    pub held_back: Option<String>,
    /// The DEV repository and its checkout: whether QA holds a newer commit is decided there.
    pub dev: Remote,
    pub dev_dir: PathBuf,
    pub facts: SharedFacts,
}

/// The commit QA's chart names, when it descends from `commit`: QA never goes back to an
/// older build, also when two builds race (this is judged again on every new tip).
fn newer_in_qa(
    git: &Git2,
    dev: &Remote,
    dev_dir: &Path,
    chart_yaml: &Path,
    commit: &str,
) -> Result<Option<String>, UpdateError> {
    let Ok(bytes) = std::fs::read(chart_yaml) else { return Ok(None) };
    let Some(held) = chart_versions(&String::from_utf8_lossy(&bytes)).app_version else { return Ok(None) };
    if held == commit {
        return Ok(None);
    }
    Ok(git.descends_from(dev_dir, dev, &held, commit)?.filter(|newer| *newer).map(|_| held))
}

/// The digest assignment: set where the chart has the key; a pushed digest the chart cannot
/// hold is an error, since the QA repository would not say exactly which image runs.
fn digest_assignment(key: &str, digest: Option<&str>, values: &[u8]) -> Result<Vec<(String, String)>, String> {
    let path = crate::chart::yaml::parse_path(key)?;
    let present = crate::chart::yaml::get(&String::from_utf8_lossy(values), &path).map_err(|e| e.to_string())?;
    match (present, digest) {
        (Some(_), digest) => Ok(vec![(key.to_string(), digest.unwrap_or_default().to_string())]),
        (None, None) => Ok(vec![]),
        (None, Some(_)) => Err(format!(
            "no `{key}` to hold the pushed image's digest; add it (e.g. `digest: \"\"`) and render the image as \
             repository:tag@digest, or name the key with chart.image_digest_key"
        )),
    }
}

impl PromoteToQa {
    /// `digest`: the pushed manifest digest; `None` when nothing was pushed (its key is emptied).
    fn edits(&self, digest: Option<String>) -> Result<Vec<Edit>, version::VersionError> {
        let release = self.build.tag.as_deref().map(version::release_version).transpose()?;
        let short = self.build.short.clone();
        let chart_file = in_chart(&self.chart_path, "Chart.yaml");
        let computed: branch_update::Computed = Arc::new(move |current: &[u8]| {
            let version = match &release {
                Some(release) => release.clone(),
                None => {
                    let text = String::from_utf8_lossy(current);
                    let current = chart_versions(&text).version.ok_or("no `version` in Chart.yaml")?;
                    let current = version::parse_chart_version(&current).map_err(|e| e.to_string())?;
                    version::dev_version(&current, &short).map_err(|e| e.to_string())?
                }
            };
            Ok(vec![("version".to_string(), version.to_string())])
        });
        let digest_key = self.keys.digest.clone();
        let digest: branch_update::Computed =
            Arc::new(move |values: &[u8]| digest_assignment(&digest_key, digest.as_deref(), values));
        Ok(vec![
            Edit {
                computed: Some(digest),
                ..Edit::new(
                    in_chart(&self.chart_path, "values.yaml"),
                    vec![
                        (self.keys.repository.clone(), self.repository.clone()),
                        (self.keys.tag.clone(), self.build.image_tag().to_string()),
                    ],
                )
            },
            Edit {
                computed: Some(computed),
                ..Edit::new(chart_file, vec![("appVersion".to_string(), self.build.commit.clone())])
            },
        ])
    }
}

/// `chart/values.yaml`, or `values.yaml` for a chart at the repository root (git wants no `./`).
fn in_chart(chart: &std::path::Path, name: &str) -> PathBuf {
    chart.join(name).components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

/// `version` and `appVersion` of a Chart.yaml, read leniently: typed reading would refuse a
/// legacy version (`0.9-dev64ed033`) that must still be read.
#[derive(Default, serde::Deserialize)]
struct ChartVersions {
    version: Option<String>,
    #[serde(rename = "appVersion")]
    app_version: Option<String>,
}

fn chart_versions(text: &str) -> ChartVersions {
    serde_saphyr::from_str(text).unwrap_or_default()
}

impl Stage for PromoteToQa {
    fn name(&self) -> StageName {
        StageName::QaPromote
    }

    fn describe(&self) -> Vec<String> {
        let (values, chart) = (in_chart(&self.chart_path, "values.yaml"), in_chart(&self.chart_path, "Chart.yaml"));
        let (values, chart) = (values.display(), chart.display());
        let version = match &self.build.tag {
            Some(tag) => format!("the release version of tag {tag}"),
            None => format!("the next patch of the QA chart's version, pre-release dev.{}", self.build.short),
        };
        if let Some(why) = &self.held_back {
            return vec![format!("nothing: {why} (--promote overrides)")];
        }
        let digest = if self.pushes { "the pushed manifest digest" } else { "empty (nothing pushed)" };
        vec![
            format!("clone {} (branch {}, {})", self.remote.url, self.remote.branch, self.credentials),
            format!("set {values} {} = {}", self.keys.repository, self.repository),
            format!("set {values} {} = {}", self.keys.tag, self.build.image_tag()),
            format!("set {values} {} = {digest}", self.keys.digest),
            format!("set {chart} version = {version}"),
            format!("set {chart} appVersion = {}", self.build.commit),
            format!("unless QA's appVersion is a newer DEV commit (one {} is an ancestor of)", self.build.short),
            format!("commit and push to {}, again on the new tip if the branch moved", self.remote.branch),
        ]
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            if let Some(why) = &self.held_back {
                return Ok(Completion::Skipped(format!("{why}: QA is not changed (--promote overrides)")));
            }
            let (pushed, signed) = {
                let facts = self.facts.lock().unwrap_or_else(|e| e.into_inner());
                (facts.digest.clone(), facts.signed.clone())
            };
            // A dry run pushed nothing; its diff shows where the digest would go.
            let digest = match (&pushed, self.dry_run && self.pushes) {
                (None, true) => Some(DRY_RUN_DIGEST.to_string()),
                _ => pushed.clone(),
            };
            let edits = self.edits(digest)?;
            let mut message = format!("Deploy {} ({})\n\n", self.build.image_tag(), self.build.short);
            message.push_str(&format!("Source-Commit: {}\n", self.build.commit));
            let image = format!("{}:{}", self.repository, self.build.image_tag());
            match &pushed {
                Some(digest) => message.push_str(&format!("Image: {image}@{digest}\nImage-Digest: {digest}\n")),
                None => message.push_str(&format!("Image: {image}\n")),
            }
            if let Some(signed) = &signed {
                message.push_str(&format!(
                    "Image-Signature: {}\nImage-Attestation: {}\n",
                    signed.signature, signed.attestation
                ));
            }
            message.push_str(&format!("Stagecoach-Run: {}\n", self.run_id));
            let options = UpdateOptions {
                author: self.author.clone(),
                message,
                dry_run: self.dry_run,
                ..UpdateOptions::default()
            };
            let (git, remote, dev, dev_dir) =
                (self.git.clone(), self.remote.clone(), self.dev.clone(), self.dev_dir.clone());
            let (chart_yaml, commit) = (in_chart(&self.chart_path, "Chart.yaml"), self.build.commit.clone());
            let promotion = tokio::task::spawn_blocking(move || {
                let workdir = crate::files::scratch_dir("stagecoach-qa-")?;
                let apply = |dir: &Path| -> Result<Change, UpdateError> {
                    if let Some(newer) = newer_in_qa(&git, &dev, &dev_dir, &dir.join(&chart_yaml), &commit)? {
                        let short = &commit[..commit.len().min(7)];
                        return Ok(Change {
                            declined: Some(format!(
                                "QA already holds newer commit {newer}, a descendant of {short}: an older build is not promoted"
                            )),
                            ..Change::default()
                        });
                    }
                    branch_update::apply_edits(dir, &edits)
                };
                branch_update::update_with(&git, &remote, &apply, &options, workdir.path())
                    .map_err(|e| e.into_stage_error(&remote.url))
            })
            .await??;
            for line in promotion.diff.lines() {
                ctx.line(line);
            }
            let holds = matches!(promotion.outcome, UpdateOutcome::Pushed { .. } | UpdateOutcome::Unchanged);
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).promoted = holds;
            Ok(match promotion.outcome {
                UpdateOutcome::Pushed { commit } => {
                    ctx.detail(Detail::QaCommit, &commit);
                    Completion::Done
                }
                UpdateOutcome::Unchanged => Completion::Skipped("the QA chart already holds this build".into()),
                UpdateOutcome::DryRun => Completion::Skipped("dry run: the diff above was not pushed".into()),
                UpdateOutcome::Declined(why) => Completion::Skipped(why),
            })
        })
    }
}
