//! CLI tests: they run the built `stagecoach` binary in temporary directories, with real git.

mod build_detection;
mod chart_commands;
mod commands;
mod config_errors;
mod flow;
mod gates;
mod git_server;
mod helm_library;
mod image;
mod layout;
mod promote;
mod qa;
mod race;
mod registry;
mod release;
mod ssh;
mod support;
