//! A command from the pipeline file (build, unit tests), run with `sh -c` under its timeout.

use std::path::PathBuf;

use crate::config::Command;
use crate::process::{Cmd, Runner};
use crate::runner::{Outcome, Stage, StageContext, StageFuture};

pub struct RunCommand {
    pub name: &'static str,
    pub command: Command,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub process: Runner,
}

impl Stage for RunCommand {
    fn name(&self) -> &str {
        self.name
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let mut cmd = Cmd::shell(&self.command.run).cwd(&self.cwd).timeout(self.command.timeout);
            for (key, value) in &self.env {
                cmd = cmd.env(key, value);
            }
            self.process.stream(&cmd, &|l| ctx.line(l), &|l| ctx.line(l)).await?;
            Ok(Outcome::Done)
        })
    }
}
