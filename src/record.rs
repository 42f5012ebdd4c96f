//! The run record: what each stage did, under names the code shares as types. The JSON written
//! by `--report` and read back by `release --tested` uses exactly these names.

use std::collections::BTreeMap;

use serde::Serialize;

/// Declares an enum of names with their one spelling in records, plans and progress lines.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

names! {
    /// The stages of the three flows.
    StageName {
        Build = "build",
        UnitTests = "unit-tests",
        ImageBuild = "image-build",
        ImagePush = "image-push",
        ImageSign = "image-sign",
        ImageVerify = "image-verify",
        QaPromote = "qa-promote",
        ImageLatest = "image-latest",
        ChartCheck = "chart-check",
        ClusterUp = "cluster-up",
        DevCheckout = "dev-checkout",
        ImagePrepare = "image-prepare",
        ImageLoad = "image-load",
        HelmInstall = "helm-install",
        IntegrationTests = "integration-tests",
        Release = "release",
        Diagnostics = "diagnostics",
        NodeImageCache = "node-image-cache",
        ClusterTeardown = "cluster-teardown",
    }
}

names! {
    /// The facts a stage records.
    Detail {
        Image = "image",
        ImageId = "image_id",
        Digest = "digest",
        Pushed = "pushed",
        /// The manifests of the image's cosign signature (`sha256-….sig`) and attestation (`.att`).
        Signature = "signature",
        Attestation = "attestation",
        /// The fingerprint of the cosign key an image's signature and provenance were verified with.
        VerifiedWith = "verified_with",
        QaCommit = "qa_commit",
        Package = "package",
        ReleaseCommit = "release_commit",
        OciReference = "oci_reference",
        OciDigest = "oci_digest",
        Served = "served",
        NodeImageCache = "node_image_cache",
        NodeImageLoadedMs = "node_image_loaded_ms",
        NodeImageSaved = "node_image_saved",
        Loaded = "loaded",
        LoadedImageId = "loaded_image_id",
        Commit = "commit",
        Dir = "dir",
        ChartDigest = "chart_digest",
        /// The chart a passed integration-test run tested: `release --tested` reads these two.
        TestedAppVersion = "tested_app_version",
        TestedChartDigest = "tested_chart_digest",
        /// Where diagnostics were collected.
        Bundle = "bundle",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageOutcome {
    Passed,
    Skipped,
    Failed,
    /// Stopped because a stage beside it in its group failed.
    Cancelled,
    Interrupted,
    /// Not started because an earlier stage failed or the run was interrupted.
    NotRun,
}

impl StageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
            Self::NotRun => "not run",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StageRecord {
    pub name: StageName,
    /// Position of the stage's group; stages with the same group ran in parallel.
    pub group: usize,
    pub outcome: StageOutcome,
    /// Start, relative to the start of the run.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// Why it failed or was skipped (secrets masked).
    pub message: Option<String>,
    /// Facts the stage recorded (secrets masked).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<Detail, String>,
    /// A failed stage's last lines of output (secrets masked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tail: Vec<String>,
    /// It failed by refusing its input (a repository's content leading out of its checkout).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum RunOutcome {
    Passed,
    Failed { stage: StageName, error: String },
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    #[serde(flatten)]
    pub outcome: RunOutcome,
    pub duration_ms: u64,
    pub stages: Vec<StageRecord>,
    pub cleanup: Vec<StageRecord>,
}

impl RunRecord {
    /// Every stage in the order it ran, with whether it was a cleanup stage.
    pub fn all_stages(&self) -> impl Iterator<Item = (&StageRecord, bool)> {
        self.stages.iter().map(|r| (r, false)).chain(self.cleanup.iter().map(|r| (r, true)))
    }
}
