//! A command from the pipeline file (build, unit tests), run with `sh -c` under its timeout.

use std::path::PathBuf;

use crate::config::Command;
use crate::process::{Cmd, Spawner, shell_quote};
use crate::record::StageName;
use crate::runner::{Completion, Stage, StageContext, StageFuture};

/// `sh -c '…' (timeout 30m)`: a pipeline command as it will run.
pub fn describe(command: &Command) -> String {
    format!("sh -c {} (timeout {})", shell_quote(&command.run), crate::config::format_duration(command.timeout))
}

pub struct RunCommand {
    pub name: StageName,
    pub command: Command,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub spawner: Spawner,
}

impl Stage for RunCommand {
    fn name(&self) -> StageName {
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
            self.spawner.stream(&cmd, &|l| ctx.line(l), &|l| ctx.line(l)).await?;
            Ok(Completion::Done)
        })
    }
}
