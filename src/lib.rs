//! stagecoach: carries a Kubernetes operator through DEV, QA and RELEASE git repositories.
//!
//! `cli` parses, `app` dispatches, `pipeline` lays out stages that `runner` runs; adapters to
//! external systems live in `tools`, and `process` is the only place that starts programs.

pub mod app;
pub mod build_context;
pub mod chart;
pub mod ci;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod pipeline;
pub mod process;
pub mod promote;
pub mod report;
pub mod runner;
pub mod secrets;
pub mod stages;
pub mod tools;
pub mod version;
