//! One adapter per external system. Each returns stagecoach's own small types.

pub mod cli_tool;
pub mod docker;
pub mod git;
pub mod helm;
pub mod kind;
pub mod kubectl;
