//! A command from the pipeline file (build, unit tests), run with `sh -c` under its timeout.

use std::path::PathBuf;

use crate::config::Command;
use crate::process::{Cmd, Runner, shell_quote};
use crate::runner::{Outcome, Stage, StageContext, StageFuture};

/// `sh -c '…' (timeout 30m)`: a pipeline command as it will run.
pub fn describe(command: &Command) -> String {
    format!("sh -c {} (timeout {})", shell_quote(&command.run), crate::config::format_duration(command.timeout))
}

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

    fn describe(&self) -> Vec<String> {
        vec![format!("{} in {}", describe(&self.command), self.cwd.display())]
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
