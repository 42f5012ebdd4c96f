//! CLI tests: they run the built `stagecoach` binary in temporary directories, with real git.

mod build_detection;
mod chart_commands;
mod chart_push;
mod ci_configs;
mod commands;
mod config_errors;
mod control_plane;
mod faults;
mod flow;
mod gates;
mod git_server;
mod helm_library;
mod hostile;
mod image;
mod junit;
mod layout;
mod promote;
mod provenance;
mod qa;
mod race;
mod real_api;
mod real_kind;
mod registry;
mod release;
mod ssh;
mod support;
