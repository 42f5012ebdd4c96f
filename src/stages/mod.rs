//! One file per stage. A stage gets its adapters and settings when it is built (in
//! `pipeline.rs`) and never starts programs or dials out except through them.

pub mod cluster;
pub mod command;
pub mod image;
pub mod promote_to_qa;
pub mod qa;
pub mod release;

use std::sync::{Arc, Mutex};

/// What earlier stages of a run found out and later ones need.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The ID (config digest) of the image built, or prepared for QA.
    pub image_id: Option<String>,
    /// `sha256:…` of the pushed image's manifest.
    pub digest: Option<String>,
    /// The manifest digests of that image's signature and attestation, when it was signed.
    pub signed: Option<Signed>,
    /// The package QA checked and installs: a release in the same run publishes these bytes.
    pub package: Option<crate::chart::package::Package>,
    /// The chart the integration tests ran against.
    pub tested: Option<Tested>,
    /// QA holds this build now (promoted, or already there): only then does `:latest` move.
    pub promoted: bool,
}

/// Where the signature and the provenance attestation of the pushed image are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub signature: String,
    pub attestation: String,
}

/// The dotted values.yaml keys of the image reference (`chart.image_*_key`).
#[derive(Clone, Debug)]
pub struct ImageKeys {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

impl std::fmt::Display for ImageKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}, {}", self.repository, self.tag, self.digest)
    }
}

/// A chart as tested: its appVersion and the digest of its release package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tested {
    pub app_version: String,
    pub digest: String,
}

/// The integration-test run that tested a chart, as a release's provenance names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    pub run_id: String,
    /// The QA commit it ran on.
    pub qa_commit: String,
    pub outcome: String,
}

/// What a release must match before it publishes.
#[derive(Clone, Debug)]
pub enum Expectation {
    /// The chart tested earlier in the same run.
    SameRun(SharedFacts),
    /// The chart of an earlier integration-test run record.
    Record(Tested),
    /// Nothing: `release --untested`.
    Untested,
}

pub type SharedFacts = Arc<Mutex<Facts>>;
