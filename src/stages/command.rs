//! A command from the pipeline file (build, unit tests, integration tests), run with `sh -c`
//! under its timeout, without the credential variables it does not list in `env_passthrough`.

use std::path::{Path, PathBuf};

use crate::config::Command;
use crate::process::{Cmd, Spawner, shell_quote};
use crate::record::StageName;
use crate::runner::{Completion, Stage, StageContext, StageFuture};

/// `sh -c '…' (timeout 30m)`: a pipeline command as it will run.
pub fn describe(command: &Command, withheld: &[String]) -> String {
    let mut text =
        format!("sh -c {} (timeout {})", shell_quote(&command.run), crate::config::format_duration(command.timeout));
    if !withheld.is_empty() {
        text.push_str(&format!(", without {}", withheld.join(", ")));
    }
    text
}

/// The command line of `command` in `cwd`, without the `withheld` variables.
pub fn cmd(command: &Command, cwd: &Path, withheld: &[String]) -> Cmd {
    withheld.iter().fold(Cmd::shell(&command.run).cwd(cwd).timeout(command.timeout), |cmd, name| cmd.env_remove(name))
}

pub struct RunCommand {
    pub name: StageName,
    pub command: Command,
    pub cwd: PathBuf,
    /// The credential variables it must not see (`Config::withheld_from`).
    pub withheld: Vec<String>,
    pub spawner: Spawner,
}

impl Stage for RunCommand {
    fn name(&self) -> StageName {
        self.name
    }

    fn describe(&self) -> Vec<String> {
        vec![format!("{} in {}", describe(&self.command, &self.withheld), self.cwd.display())]
    }

    fn run<'a>(&'a self, ctx: &'a StageContext) -> StageFuture<'a> {
        Box::pin(async move {
            let cmd = cmd(&self.command, &self.cwd, &self.withheld);
            self.spawner.stream(&cmd, &|l| ctx.line(l), &|l| ctx.line(l)).await?;
            Ok(Completion::Done)
        })
    }
}
