//! Building and pushing the image: `<repository>:<tag>` and `<repository>:latest`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use super::SharedFacts;
use crate::build_context::{ContextError, ScratchImage};
use crate::record::{Detail, StageName};
use crate::runner::{Completion, Stage, StageContext, StageFuture};
use crate::tools::docker::{DockerEngine, DockerError, RegistryAuth};

/// What the image stages need of an engine; the real one is [`DockerEngine`].
pub trait Images: Send + Sync {
    fn build(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> impl Future<Output = Result<String, DockerError>> + Send;
    fn import(
        &self,
        rootfs: Vec<u8>,
        changes: &[String],
        tag: &str,
    ) -> impl Future<Output = Result<String, DockerError>> + Send;
    fn tag(&self, image: &str, repository: &str, tag: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn push(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> impl Future<Output = Result<String, DockerError>> + Send;
}

impl Images for DockerEngine {
    fn build(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> impl Future<Output = Result<String, DockerError>> + Send {
        DockerEngine::build(self, context, dockerfile, tag, on_line)
    }
    fn import(
        &self,
        rootfs: Vec<u8>,
        changes: &[String],
        tag: &str,
    ) -> impl Future<Output = Result<String, DockerError>> + Send {
        DockerEngine::import(self, rootfs, changes, tag)
    }
    fn tag(&self, image: &str, repository: &str, tag: &str) -> impl Future<Output = Result<(), DockerError>> + Send {
        DockerEngine::tag(self, image, repository, tag)
    }
    fn push(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> impl Future<Output = Result<String, DockerError>> + Send {
        DockerEngine::push(self, repository, tag, auth, on_line)
    }
}

/// How an image is made: imported, or built from the context's tar.
enum Recipe {
    Import(ScratchImage),
    Build(Vec<u8>),
}

pub struct BuildImage<I> {
    pub images: Arc<I>,
    /// The build context directory and the Dockerfile (a path inside it).
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub repository: String,
    pub tag: String,
    pub facts: SharedFacts,
}

impl<I: Images> Stage for BuildImage<I> {
    fn name(&self) -> StageName {
        StageName::ImageBuild
    }

    fn describe(&self) -> Vec<String> {
        let (dockerfile, context) = (self.dockerfile.display(), self.context.display());
        vec![format!(
            "docker build -f {dockerfile} {context} as {}:{} (a Dockerfile that only copies files into scratch: \
             imported as one layer, no builder)",
            self.repository, self.tag
        )]
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let (context, dockerfile) = (self.context.clone(), self.dockerfile.clone());
            let reference = format!("{}:{}", self.repository, self.tag);
            // The builder runs a container for each metadata instruction; a Dockerfile that
            // only copies files into scratch is the same image imported as one layer.
            let recipe = tokio::task::spawn_blocking(move || {
                Ok::<_, ContextError>(match crate::build_context::scratch_image(&context, &dockerfile)? {
                    Some(image) => Recipe::Import(image),
                    None => Recipe::Build(crate::build_context::tar(&context, &dockerfile)?),
                })
            })
            .await??;
            let id = match recipe {
                Recipe::Import(image) => {
                    ctx.line(&format!(
                        "{} only copies files into scratch: imported as one layer of {} KiB with {}",
                        self.dockerfile.display(),
                        image.rootfs.len() / 1024,
                        image.changes.join("; ")
                    ));
                    self.images.import(image.rootfs, &image.changes, &reference).await?
                }
                Recipe::Build(tar) => {
                    ctx.line(&format!("build context: {} KiB", tar.len() / 1024));
                    let inside = self.dockerfile.strip_prefix(&self.context).unwrap_or(&self.dockerfile);
                    let inside = inside.to_string_lossy().into_owned();
                    self.images.build(tar, &inside, &reference, &|l| ctx.line(l)).await?
                }
            };
            ctx.detail(Detail::Image, &reference);
            ctx.detail(Detail::ImageId, &id);
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).image_id = Some(id);
            Ok(Completion::Done)
        })
    }
}

pub struct PushImage<I> {
    pub images: Arc<I>,
    pub repository: String,
    pub tag: String,
    pub auth: Option<RegistryAuth>,
    /// Which credentials `auth` came from, for plans.
    pub credentials: String,
    pub dry_run: bool,
    pub no_push: bool,
    /// Why this build pushes nothing (a pull request, another branch), if so.
    pub held_back: Option<String>,
    pub facts: SharedFacts,
}

impl<I: Images> Stage for PushImage<I> {
    fn name(&self) -> StageName {
        StageName::ImagePush
    }

    fn describe(&self) -> Vec<String> {
        if let Some(why) = &self.held_back {
            return vec![format!("nothing: {why} (--promote overrides)")];
        }
        if self.no_push {
            return vec![format!("--no-push: {}:{} stays in the local engine", self.repository, self.tag)];
        }
        vec![format!("push {}:{} ({}); keep the manifest digest", self.repository, self.tag, self.credentials)]
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            if let Some(why) = &self.held_back {
                return Ok(Completion::Skipped(format!("{why}: nothing is pushed (--promote overrides)")));
            }
            if self.dry_run {
                return Ok(Completion::Skipped(format!("dry run: would push {}:{}", self.repository, self.tag)));
            }
            if self.no_push {
                return Ok(Completion::Skipped(format!(
                    "--no-push: {0}:{1} stays in the local engine",
                    self.repository, self.tag
                )));
            }
            let digest = self.images.push(&self.repository, &self.tag, self.auth.as_ref(), &|l| ctx.line(l)).await?;
            ctx.detail(Detail::Digest, &digest);
            ctx.detail(Detail::Pushed, format!("{}:{}", self.repository, self.tag));
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).digest = Some(digest);
            Ok(Completion::Done)
        })
    }
}

/// `:latest` follows QA: it is pushed only once QA holds this build, so a build that was held
/// back, or that lost to a newer one, leaves it where it is.
pub struct PushLatest<I> {
    pub images: Arc<I>,
    pub repository: String,
    pub auth: Option<RegistryAuth>,
    pub dry_run: bool,
    pub facts: SharedFacts,
}

impl<I: Images> Stage for PushLatest<I> {
    fn name(&self) -> StageName {
        StageName::ImageLatest
    }

    fn describe(&self) -> Vec<String> {
        vec![format!("push {}:latest, once QA holds this build", self.repository)]
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let (digest, promoted, id) = {
                let facts = self.facts.lock().unwrap_or_else(|e| e.into_inner());
                (facts.digest.clone(), facts.promoted, facts.image_id.clone())
            };
            let latest = format!("{}:latest", self.repository);
            if self.dry_run {
                return Ok(Completion::Skipped(format!("dry run: would push {latest} once QA holds this build")));
            }
            let (Some(digest), Some(id)) = (digest, id) else {
                return Ok(Completion::Skipped(format!("nothing was pushed: {latest} stays")));
            };
            if !promoted {
                return Ok(Completion::Skipped(format!("QA does not hold this build: {latest} stays")));
            }
            // Tagged only now, from this build's own image: another build on the same engine
            // may have built the same repository meanwhile.
            self.images.tag(&id, &self.repository, "latest").await?;
            let pushed = self.images.push(&self.repository, "latest", self.auth.as_ref(), &|l| ctx.line(l)).await?;
            if pushed != digest {
                return Err(format!(
                    "{latest} was pushed as {pushed}, not as this build's {digest}: another build changed the local \
                     tag meanwhile; push it again with this run's image"
                )
                .into());
            }
            ctx.detail(Detail::Pushed, latest);
            Ok(Completion::Done)
        })
    }
}

/// Signs the pushed image as `cosign sign --key` does and attests its SLSA provenance as
/// `cosign attest --type slsaprovenance1` does: both stored beside the image, under the
/// `sha256-<hex>.sig` and `.att` tags of its repository.
pub struct SignImage {
    pub oci: crate::tools::oci::Oci,
    pub repository: String,
    pub auth: crate::tools::oci::RegistryAuth,
    pub key: Arc<crate::cosign::CosignKey>,
    pub build: crate::cosign::Build,
    pub dry_run: bool,
    pub facts: SharedFacts,
}

impl Stage for SignImage {
    fn name(&self) -> StageName {
        StageName::ImageSign
    }

    fn describe(&self) -> Vec<String> {
        let key = self.key.public_key().fingerprint();
        vec![
            format!("sign {}@<pushed digest> with cosign key {key} (tag sha256-<hex>.sig)", self.repository),
            format!(
                "attest its SLSA provenance v1 (source {} at {}, run {}) with that key (tag sha256-<hex>.att)",
                self.build.source, self.build.commit, self.build.run_id
            ),
        ]
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            use crate::cosign;
            let key = self.key.public_key().fingerprint();
            if self.dry_run {
                return Ok(Completion::Skipped(format!("dry run: would sign and attest with cosign key {key}")));
            }
            let Some(digest) = self.facts.lock().unwrap_or_else(|e| e.into_inner()).digest.clone() else {
                return Ok(Completion::Skipped("nothing was pushed: nothing to sign".into()));
            };
            let statement = cosign::provenance_statement(&self.repository, &digest, &self.build);
            let signed =
                sign_and_attest(&self.oci, &self.auth, &self.key, &self.repository, &digest, &statement).await?;
            let super::Signed { signature, attestation } = signed.clone();
            ctx.line(&format!("signed {}@{digest} with {key}: signature manifest {signature}", self.repository));
            ctx.line(&format!("attested its provenance (commit {}): manifest {attestation}", self.build.commit));
            ctx.detail(Detail::Signature, &signature);
            ctx.detail(Detail::Attestation, &attestation);
            self.facts.lock().unwrap_or_else(|e| e.into_inner()).signed = Some(signed);
            Ok(Completion::Done)
        })
    }
}

/// Signs `repository@digest` as `cosign sign --key` does and attaches `statement` (an in-toto
/// statement about it) as `cosign attest` does, under its `.sig` and `.att` tags; returns the
/// two manifests.
pub async fn sign_and_attest(
    oci: &crate::tools::oci::Oci,
    auth: &crate::tools::oci::RegistryAuth,
    key: &crate::cosign::CosignKey,
    repository: &str,
    digest: &str,
    statement: &[u8],
) -> Result<super::Signed, crate::runner::StageError> {
    use crate::cosign::{self, Attached};
    let payload = cosign::simple_signing(repository, digest);
    let signature = cosign::encode_signature(&key.sign(&payload));
    let layer = Attached {
        media_type: cosign::SIMPLE_SIGNING_MEDIA_TYPE.into(),
        bytes: payload,
        annotations: [(cosign::SIGNATURE_ANNOTATION.to_string(), signature)].into(),
    };
    let signature = oci.attach(repository, &cosign::tag_for(digest, "sig"), layer, auth).await?;
    let layer = Attached {
        media_type: cosign::DSSE_MEDIA_TYPE.into(),
        bytes: cosign::envelope(statement, key)?,
        annotations: [
            (cosign::SIGNATURE_ANNOTATION.to_string(), String::new()),
            ("predicateType".to_string(), cosign::SLSA_PROVENANCE_V1.to_string()),
        ]
        .into(),
    };
    let attestation = oci.attach(repository, &cosign::tag_for(digest, "att"), layer, auth).await?;
    Ok(super::Signed { signature, attestation })
}

/// How an image's cosign signature and SLSA provenance are checked against a public key:
/// read from the registry (the `.sig` and `.att` tags beside the image), verified here.
pub struct ImageVerification {
    /// How long a registry request may go without progress.
    pub timeout: std::time::Duration,
    pub auth: crate::tools::oci::RegistryAuth,
    pub key: crate::cosign::PublicKey,
    /// Where the key came from, for plans and messages.
    pub key_source: String,
}

impl ImageVerification {
    /// What a plan says is checked of `image` (a digest, or how it will be known).
    pub fn describe(&self, image: &str, commit: &str) -> String {
        format!(
            "verify that {image} is signed by cosign key {} ({}) and that its SLSA provenance names commit {commit}",
            self.key.fingerprint(),
            self.key_source
        )
    }

    /// `repository@digest` must be signed by the key and attested as built from `commit`.
    pub async fn verify(
        &self,
        repository: &str,
        digest: &str,
        commit: &str,
        ctx: &StageContext,
    ) -> Result<(), crate::runner::StageError> {
        use crate::cosign;
        // Plain HTTP to a registry on this machine, as the engine that pushed there talks to it.
        let oci = crate::tools::oci::Oci::new(crate::tools::oci::on_this_machine(repository), self.timeout);
        let signatures = oci.attached(repository, &cosign::tag_for(digest, "sig"), &self.auth).await?;
        cosign::verify_signature(&signatures, &self.key, repository, digest)?;
        let attestations = oci.attached(repository, &cosign::tag_for(digest, "att"), &self.auth).await?;
        cosign::verify_provenance(&attestations, &self.key, repository, digest, commit)?;
        let key = self.key.fingerprint();
        ctx.line(&format!("{repository}@{digest} is signed by {key}, and its provenance names commit {commit}"));
        ctx.detail(Detail::Image, format!("{repository}@{digest}"));
        ctx.detail(Detail::VerifiedWith, key);
        Ok(())
    }
}

/// QA's check, before anything is deployed, that the image values.yaml names is signed and was
/// built from the chart's appVersion.
pub struct VerifyImage {
    pub verification: ImageVerification,
    pub image: crate::stages::qa::QaImage,
    /// The chart's appVersion.
    pub commit: String,
}

impl Stage for VerifyImage {
    fn name(&self) -> StageName {
        StageName::ImageVerify
    }

    fn describe(&self) -> Vec<String> {
        let image = format!("{}@{}", self.image.repository, self.image.digest.as_deref().unwrap_or("<no digest>"));
        vec![self.verification.describe(&image, &self.commit)]
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let Some(digest) = &self.image.digest else {
                return Err(format!(
                    "image.verify_key is set, but values.yaml names {} without a digest: an image is verified \
                     by its manifest digest, which build-and-deploy writes when it pushes",
                    self.image.tagged()
                )
                .into());
            };
            self.verification.verify(&self.image.repository, digest, &self.commit, ctx).await?;
            Ok(Completion::Done)
        })
    }
}
