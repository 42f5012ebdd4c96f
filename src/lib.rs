//! stagecoach: carries a Kubernetes operator through DEV, QA and RELEASE git repositories.
//!
//! Dependencies point one way: `cli` parses into `app`'s request; `app` runs commands;
//! `pipeline` builds a flow's [`runner::Plan`] from `stages`, which use `tools` (one adapter per
//! external system), `chart` (pure chart file work) and `branch_update`. Below them all:
//! `config`, `process` (the only place programs start), `record`, `report`, `secrets`.

pub mod app;
pub mod branch_update;
pub mod build_context;
pub mod chart;
pub mod ci;
pub mod cli;
pub mod config;
pub mod cosign;
pub mod credentials;
pub mod files;
pub mod pipeline;
pub mod process;
pub mod record;
pub mod report;
pub mod runner;
pub mod secrets;
pub mod stages;
pub mod tools;
pub mod version;
