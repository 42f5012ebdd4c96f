//! One adapter per external system. Each returns stagecoach's own small types.

pub mod cli_tool;
pub mod docker;
pub mod git;
pub mod helm;
pub mod kind;
pub mod kubectl;
pub mod libgit2;
pub mod oci;

use std::path::PathBuf;

/// The cluster helm and kubectl talk to: a kubeconfig and, where it holds more than one, the
/// context.
#[derive(Clone, Debug)]
pub struct Target {
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
}
