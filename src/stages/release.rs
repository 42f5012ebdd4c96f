//! The release: package the tested chart under its release name, merge it into the RELEASE
//! repository's index.yaml, commit and push; then, when the repository is served at a base URL,
//! check the published index there.

use std::path::{Path, PathBuf};

use crate::branch_update::{self, Change, UpdateError, UpdateOptions, UpdateOutcome};
use crate::chart::{index, package};
use crate::record::{Detail, StageName};
use crate::runner::{Completion, Stage, StageContext, StageFuture};
use crate::tools::git::{Author, Git2, Remote};
use crate::tools::oci;
use crate::version;

pub struct Release {
    pub git: Git2,
    /// The Helm chart repository (index.yaml) it merges into; none for an OCI-only release.
    pub index: Option<IndexRepository>,
    /// The chart directory of the QA checkout.
    pub chart_dir: PathBuf,
    /// How the chart is packaged: under its release name, CI files left out.
    pub package: package::Options,
    pub base_url: Option<String>,
    pub author: Author,
    pub dry_run: bool,
    pub run_id: String,
    pub spawner: crate::process::Spawner,
    pub expect: super::Expectation,
    /// How long the published index may take to show at `base_url`.
    pub serve_timeout: std::time::Duration,
    /// How long one request for the served index may go without progress.
    pub network_timeout: std::time::Duration,
    /// An OCI repository the release is pushed to as well, before the index repository.
    pub oci: Option<OciRelease>,
    /// The key releases are signed with: a `.prov` beside the package, in both places.
    pub signing_key: Option<crate::chart::provenance::SigningKey>,
    /// Whether the OCI manifest is signed with cosign, and what its provenance says.
    pub cosign: Cosign,
    /// The check of the image the package deploys, before anything is published.
    pub verification: Option<super::image::ImageVerification>,
    /// Where the package's values.yaml names that image.
    pub image_keys: super::ImageKeys,
}

/// Cosign signing of the release.
pub enum Cosign {
    /// No STAGECOACH_COSIGN_KEY.
    Off,
    /// A key, but the release goes to no OCI registry: nothing for it to sign (a plan says so).
    NoOciRegistry,
    Sign(ChartSigning),
}

/// The cosign key an OCI release's manifest is signed with, and its provenance but for the
/// image, which is read from the package.
pub struct ChartSigning {
    pub key: std::sync::Arc<crate::cosign::CosignKey>,
    pub provenance: crate::cosign::Release,
}

/// The RELEASE repository: a Helm chart repository in git.
pub struct IndexRepository {
    pub remote: Remote,
    /// Which credentials the remote's auth came from, for plans.
    pub credentials: String,
}

/// Where and how the release goes to an OCI registry.
pub struct OciRelease {
    /// `oci://HOST[:PORT]/PATH`
    pub url: String,
    pub client: oci::Oci,
    pub auth: oci::RegistryAuth,
    /// Which credentials `auth` came from, for plans.
    pub credentials: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Package(#[from] package::PackageError),
    #[error("the chart is not the one QA tested ({what}: tested {tested}, now {now}); not publishing")]
    NotTested { what: &'static str, tested: String, now: String },
    #[error("no chart was tested in this run; not publishing")]
    NothingTested,
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    #[error(transparent)]
    Sign(#[from] crate::chart::provenance::ProvenanceError),
    #[error(transparent)]
    Unverified(#[from] crate::cosign::Unverified),
    #[error("{0}")]
    Image(String),
    #[error(
        "published, but {url} does not list {name} {version} with digest {digest} (it says: {found}); check what serves the repository"
    )]
    NotServed { url: String, name: String, version: String, digest: String, found: String },
}

/// The package merged into the clone of the RELEASE repository: writes the .tgz and index.yaml.
fn publish_into(
    dir: &Path,
    package: &package::Package,
    provenance: Option<&str>,
    base_url: Option<&str>,
    now: &str,
) -> Result<Change, UpdateError> {
    let index_path = crate::files::inside(dir, Path::new("index.yaml"))?;
    let io = |file: &str| {
        let file = PathBuf::from(file);
        move |source| UpdateError::Io { file, source }
    };
    let existing = match std::fs::read_to_string(&index_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("index.yaml")(e)),
    };
    let url = match base_url {
        Some(base) => format!("{}/{}", base.trim_end_matches('/'), package.file_name),
        None => package.file_name.clone(),
    };
    let entry = index::NewEntry { metadata: &package.metadata, digest: &package.digest, url };
    let merged = match index::merge(existing.as_deref(), &entry, now)
        .map_err(|e| UpdateError::Compute { file: "index.yaml".into(), message: e.to_string() })?
    {
        index::Merged::AlreadyPublished => return Ok(Change::default()),
        index::Merged::Added(text) => text,
    };
    let tgz = crate::files::inside(dir, Path::new(&package.file_name))?;
    if std::fs::read(&tgz).is_ok_and(|bytes| bytes != package.bytes) {
        return Err(UpdateError::Compute {
            file: package.file_name.clone().into(),
            message: "is in the repository with other bytes but not in index.yaml; remove it or bump the version"
                .into(),
        });
    }
    std::fs::write(&tgz, &package.bytes).map_err(io(&package.file_name))?;
    let mut files = vec![PathBuf::from(&package.file_name), PathBuf::from("index.yaml")];
    if let Some(provenance) = provenance {
        let name = format!("{}.prov", package.file_name);
        let path = crate::files::inside(dir, Path::new(&name))?;
        std::fs::write(&path, provenance).map_err(io(&name))?;
        files.insert(1, PathBuf::from(name));
    }
    std::fs::write(&index_path, &merged).map_err(io("index.yaml"))?;
    let diff = crate::files::diff(existing.as_deref().unwrap_or(""), &merged, "index.yaml");
    Ok(Change { files, diff, declined: None })
}

impl Stage for Release {
    fn name(&self) -> StageName {
        StageName::Release
    }

    fn describe(&self) -> Vec<String> {
        let name = self.package.rename.as_deref().unwrap_or("<chart name>");
        let mut actions = vec![
            match &self.expect {
                super::Expectation::SameRun(_) => "the package helm-install installed".to_string(),
                _ => format!(
                    "package {} as {name} (leaving out {})",
                    self.chart_dir.display(),
                    self.package.drop.join(", ")
                ),
            },
            "only a release version (no pre-release part) is published".to_string(),
            match &self.expect {
                super::Expectation::SameRun(_) => "it is the chart tested in this run".to_string(),
                super::Expectation::Record(tested) => format!(
                    "it must be the chart of the --tested record: appVersion {}, digest sha256:{}",
                    tested.app_version, tested.digest
                ),
                super::Expectation::Untested => "--untested: not compared with a tested chart".to_string(),
            },
        ];
        if let Some(index) = &self.index {
            let remote = &index.remote;
            actions.push(format!("clone {} (branch {}, {})", remote.url, remote.branch, index.credentials));
            actions.push(format!("merge {name}-<version>.tgz into index.yaml"));
            actions.push(format!("commit and push to {}, again on the new tip if the branch moved", remote.branch));
        }
        if let Some(key) = &self.signing_key {
            actions.insert(3, format!("sign it with {} (NAME-VERSION.tgz.prov, beside the package)", key.owner()));
        }
        if let Some(target) = &self.oci {
            // Before the index repository: its commit names the manifest.
            actions.insert(
                3 + usize::from(self.signing_key.is_some()),
                format!(
                    "push {}/{name}:<version> ({}), unless that very manifest is there; read it back",
                    target.url.trim_end_matches('/'),
                    target.credentials
                ),
            );
        }
        if let Some(verification) = &self.verification {
            let image = format!(
                "the image the package's values.yaml names ({}, {})",
                self.image_keys.repository, self.image_keys.digest
            );
            actions.insert(
                2,
                format!(
                    "{} (appVersion), before anything is published",
                    verification.describe(&image, "the chart's appVersion")
                ),
            );
        }
        match (&self.cosign, &self.oci) {
            (Cosign::Sign(signing), Some(target)) => {
                let tested = match &signing.provenance.tested {
                    Some((run, outcome)) => format!("integration-test run {run}, {outcome}"),
                    None => "no integration-test run (--untested)".into(),
                };
                let at = actions.iter().position(|a| a.starts_with("push ")).map_or(actions.len(), |i| i + 1);
                actions.insert(
                    at,
                    format!(
                        "sign {}/{name}@<manifest digest> with cosign key {} (tag sha256-<hex>.sig) and attest its SLSA \
                         provenance v1: QA {} at {}, {tested}, the image digest from values.yaml (tag sha256-<hex>.att)",
                        target.url.trim_end_matches('/'),
                        signing.key.public_key().fingerprint(),
                        signing.provenance.source,
                        signing.provenance.commit,
                    ),
                );
            }
            (Cosign::NoOciRegistry, _) | (Cosign::Sign(_), None) => actions.push(
                "STAGECOACH_COSIGN_KEY is set, but releases go to no OCI registry (chart.oci): nothing is signed with it"
                    .into(),
            ),
            (Cosign::Off, _) => {}
        }
        if let Some(base) = self.base_url.as_ref().filter(|_| self.index.is_some()) {
            actions.push(format!(
                "check that {}/index.yaml serves it (up to {}s)",
                base.trim_end_matches('/'),
                self.serve_timeout.as_secs()
            ));
        }
        actions
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let package = self.package()?;
            let version = package.metadata.semver();
            if !version::is_release(&version) {
                return Ok(Completion::Skipped(format!(
                    "not a release: {version} has a pre-release part; nothing to publish"
                )));
            }
            self.check_tested(&package)?;
            let image = self.packaged_image(&package)?;
            if let Some(verification) = &self.verification {
                let Some(digest) = &image.digest else {
                    return Err(ReleaseError::Image(format!(
                        "the package's values.yaml names {} without a digest ({}): an image is verified by its manifest \
                         digest; not publishing",
                        image.tagged(),
                        self.image_keys.digest
                    ))
                    .into());
                };
                let app_version = package.metadata.app_version.clone().unwrap_or_default();
                verification.verify(&image.repository, digest, &app_version, ctx).await?;
            }
            ctx.detail(Detail::Package, &package.file_name);
            ctx.detail(Detail::Digest, format!("sha256:{}", package.digest));
            let provenance = match &self.signing_key {
                Some(key) => {
                    let message =
                        crate::chart::provenance::message(&package.metadata, &package.file_name, &package.digest);
                    ctx.line(&format!("signing {} with {}", package.file_name, key.owner()));
                    Some(crate::chart::provenance::sign(key, &message)?)
                }
                None => None,
            };
            // The OCI registry first: a re-run finds it there and goes on to the index.
            let pushed_oci = match &self.oci {
                Some(target) => Some(self.push_oci(target, &package, provenance.as_deref(), ctx).await?),
                None => None,
            };
            let signed = match (&self.cosign, &self.oci, &pushed_oci) {
                (Cosign::Sign(signing), Some(target), Some((reference, digest))) => {
                    self.sign_oci(signing, target, reference, digest, &image, ctx).await?
                }
                _ => None,
            };
            let mut message = format!(
                "Release {} {}\n\nApp-Version: {}\nChart-Digest: sha256:{}\n",
                package.metadata.name,
                version,
                package.metadata.app_version.as_deref().unwrap_or("-"),
                package.digest,
            );
            if let Some((reference, digest)) = &pushed_oci {
                message.push_str(&format!("Chart-OCI: {reference}@{digest}\n"));
            }
            if let Some(signed) = &signed {
                message.push_str(&format!(
                    "Chart-Signature: {}\nChart-Attestation: {}\n",
                    signed.signature, signed.attestation
                ));
            }
            message.push_str(&format!("Stagecoach-Run: {}\n", self.run_id));
            let Some(index_repository) = &self.index else {
                return Ok(if self.dry_run {
                    Completion::Skipped("dry run: nothing was pushed".into())
                } else {
                    Completion::Done
                });
            };
            let options = UpdateOptions {
                author: self.author.clone(),
                message,
                dry_run: self.dry_run,
                ..UpdateOptions::default()
            };
            let (git, remote, base_url) = (self.git.clone(), index_repository.remote.clone(), self.base_url.clone());
            let to_publish = package.clone();
            let signed = provenance.clone();
            let promotion = tokio::task::spawn_blocking(move || {
                let workdir = crate::files::scratch_dir("stagecoach-release-")?;
                let now = index::rfc3339(std::time::SystemTime::now());
                branch_update::update_with(
                    &git,
                    &remote,
                    &|dir| publish_into(dir, &to_publish, signed.as_deref(), base_url.as_deref(), &now),
                    &options,
                    workdir.path(),
                )
                .map_err(|e| e.into_stage_error(&remote.url))
            })
            .await??;
            for line in promotion.diff.lines() {
                ctx.line(line);
            }
            match promotion.outcome {
                UpdateOutcome::Unchanged => {
                    return Ok(Completion::Skipped(format!(
                        "{} {version} is already published with this digest",
                        package.metadata.name
                    )));
                }
                UpdateOutcome::DryRun => {
                    return Ok(Completion::Skipped("dry run: the index change above was not pushed".into()));
                }
                UpdateOutcome::Pushed { commit } => ctx.detail(Detail::ReleaseCommit, commit),
                UpdateOutcome::Declined(why) => return Ok(Completion::Skipped(why)),
            }
            if let Some(base) = &self.base_url {
                self.check_served(base, &package, ctx).await?;
            }
            Ok(Completion::Done)
        })
    }
}

impl Release {
    /// Pushes the package to the OCI repository, unless the same manifest is there already;
    /// another one under the version is refused. Returns the reference and manifest digest.
    async fn push_oci(
        &self,
        target: &OciRelease,
        package: &package::Package,
        provenance: Option<&str>,
        ctx: &StageContext,
    ) -> Result<(String, String), ReleaseError> {
        let reference = oci::reference(&target.url, &package.metadata.name, &package.metadata.version)?;
        let provenance = provenance.map(str::as_bytes);
        let chart = oci::Chart { metadata: &package.metadata, package: &package.bytes, provenance };
        let digest = oci::digest(&oci::manifest(&chart).0);
        ctx.detail(Detail::OciReference, &reference);
        ctx.detail(Detail::OciDigest, &digest);
        if self.dry_run {
            ctx.line(&format!("dry run: would push {reference} (manifest {digest})"));
            return Ok((reference, digest));
        }
        match target.client.publish(&reference, &chart, &target.auth).await? {
            oci::Published::AlreadyThere(_) => ctx.line(&format!("{reference}: already there (manifest {digest})")),
            oci::Published::Pushed(_) => ctx.line(&format!("pushed {reference} (manifest {digest}, read back)")),
        }
        Ok((reference, digest))
    }

    /// The operator image the package's values.yaml names.
    fn packaged_image(&self, package: &package::Package) -> Result<super::qa::QaImage, ReleaseError> {
        let bad = |why: String| ReleaseError::Image(format!("{}: values.yaml: {why}", package.file_name));
        let values = package::read_file(&package.bytes, "values.yaml").map_err(bad)?.unwrap_or_default();
        let values = String::from_utf8(values).map_err(|_| bad("not UTF-8".into()))?;
        let value = |key: &str| -> Result<Option<String>, ReleaseError> {
            let path = crate::chart::yaml::parse_path(key).map_err(bad)?;
            crate::chart::yaml::get(&values, &path).map_err(|e| bad(e.to_string()))
        };
        let keys = &self.image_keys;
        Ok(super::qa::QaImage {
            repository: value(&keys.repository)?.unwrap_or_default(),
            tag: value(&keys.tag)?.unwrap_or_default(),
            digest: value(&keys.digest)?.filter(|d| !d.is_empty()),
        })
    }

    /// Signs the chart's OCI manifest with cosign and attests its provenance: what QA tested
    /// and the image it deploys. A dry run says what it would sign.
    async fn sign_oci(
        &self,
        signing: &ChartSigning,
        target: &OciRelease,
        reference: &str,
        digest: &str,
        image: &super::qa::QaImage,
        ctx: &StageContext,
    ) -> Result<Option<super::Signed>, crate::runner::StageError> {
        // HOST/PATH/NAME:TAG: the tag's `:` is the last one (a port's comes before a `/`).
        let repository = reference.rsplit_once(':').map_or(reference, |(repository, _)| repository);
        let key = signing.key.public_key().fingerprint();
        if self.dry_run {
            ctx.line(&format!(
                "dry run: would sign {repository}@{digest} with cosign key {key} and attest its provenance"
            ));
            return Ok(None);
        }
        let provenance = crate::cosign::Release {
            image: image.tagged(),
            image_digest: image.digest.clone(),
            ..signing.provenance.clone()
        };
        let statement = crate::cosign::release_statement(repository, digest, &provenance);
        let signed =
            super::image::sign_and_attest(&target.client, &target.auth, &signing.key, repository, digest, &statement)
                .await?;
        ctx.line(&format!("signed {repository}@{digest} with {key}: signature manifest {}", signed.signature));
        ctx.line(&format!(
            "attested its provenance (QA commit {}, image {}): manifest {}",
            provenance.commit,
            provenance.image_digest.as_deref().unwrap_or("without a digest"),
            signed.attestation
        ));
        ctx.detail(Detail::Signature, &signed.signature);
        ctx.detail(Detail::Attestation, &signed.attestation);
        Ok(Some(signed))
    }

    /// In the run that tested it, the very package QA installed; else the QA chart packaged
    /// the same way (reproducible, so a tested chart gives the tested digest).
    fn package(&self) -> Result<package::Package, ReleaseError> {
        if let super::Expectation::SameRun(facts) = &self.expect
            && let Some(package) = facts.lock().unwrap_or_else(|e| e.into_inner()).package.clone()
        {
            return Ok(package);
        }
        Ok(package::package(&self.chart_dir, &self.package)?)
    }

    /// The package must be the chart QA tested: same appVersion, same package digest.
    fn check_tested(&self, package: &package::Package) -> Result<(), ReleaseError> {
        let tested = match &self.expect {
            super::Expectation::Untested => return Ok(()),
            super::Expectation::Record(tested) => tested.clone(),
            super::Expectation::SameRun(facts) => {
                facts.lock().unwrap_or_else(|e| e.into_inner()).tested.clone().ok_or(ReleaseError::NothingTested)?
            }
        };
        let app_version = package.metadata.app_version.clone().unwrap_or_default();
        if tested.app_version != app_version {
            return Err(ReleaseError::NotTested { what: "appVersion", tested: tested.app_version, now: app_version });
        }
        if tested.digest != package.digest {
            return Err(ReleaseError::NotTested {
                what: "package digest",
                tested: tested.digest,
                now: package.digest.clone(),
            });
        }
        Ok(())
    }

    /// Downloads index.yaml from where the repository is served and finds our digest there;
    /// pages services publish with a delay, so it asks again until `serve_timeout` is over.
    async fn check_served(
        &self,
        base: &str,
        package: &package::Package,
        ctx: &StageContext,
    ) -> Result<(), crate::runner::StageError> {
        let url = format!("{}/index.yaml", base.trim_end_matches('/'));
        let secs = self.network_timeout.as_secs().max(1).to_string();
        let cmd = crate::process::Cmd::new("curl")
            .args(["-fsSL", "--connect-timeout", &secs, "--speed-limit", "1", "--speed-time", &secs, &url])
            .timeout(self.network_timeout * 2)
            .install_hint("install curl, or leave chart.base_url out to skip the check");
        let digest = package.digest.as_str();
        let deadline = std::time::Instant::now() + self.serve_timeout;
        loop {
            let served = match self.spawner.output(&cmd, &|l| ctx.line(l)).await {
                Ok(out) => out.stdout,
                Err(crate::process::ProcessError::NotFound { program, hint }) => {
                    return Err(Box::new(crate::process::ProcessError::NotFound { program, hint }));
                }
                Err(error) => format!("(not served: {error})"),
            };
            if served.contains(digest) {
                ctx.detail(Detail::Served, &url);
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                let found = if served.starts_with("(not served") {
                    served
                } else if served.contains(&package.metadata.version) {
                    "the version with another digest".into()
                } else {
                    "no such version".into()
                };
                return Err(Box::new(ReleaseError::NotServed {
                    url,
                    name: package.metadata.name.clone(),
                    version: package.metadata.version.clone(),
                    digest: digest.into(),
                    found,
                }));
            }
            ctx.line(&format!("{url} does not list it yet; asking again in 5s"));
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    }
}
