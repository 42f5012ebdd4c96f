//! One file per stage. A stage gets its adapters and settings when it is built (in
//! `pipeline.rs`) and never starts programs or dials out except through them.

pub mod command;
pub mod image;
pub mod qa;
pub mod qa_promote;
pub mod release;

use std::sync::{Arc, Mutex};

/// What earlier stages of a run found out and later ones need.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub image_id: Option<String>,
    /// `sha256:…` of the pushed image.
    pub digest: Option<String>,
    /// The chart the integration tests ran against.
    pub tested: Option<Tested>,
}

/// A chart as tested: its appVersion and the digest of its release package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tested {
    pub app_version: String,
    pub digest: String,
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
