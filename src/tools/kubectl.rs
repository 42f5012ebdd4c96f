//! kubectl, for waiting on nodes and for the diagnostics of a failed run.

use std::path::PathBuf;
use std::time::Duration;

use super::Target;
use crate::process::{Cmd, LineSink, ProcessError, Spawner};

pub const INSTALL: &str = "install kubectl (https://kubernetes.io/docs/tasks/tools/) or set tools.kubectl";

#[derive(Clone, Debug)]
pub struct Kubectl {
    pub bin: PathBuf,
    pub spawner: Spawner,
}

impl Kubectl {
    fn cmd(&self, target: &Target) -> Cmd {
        let mut cmd = Cmd::new(self.bin.display().to_string())
            .install_hint(INSTALL)
            .arg("--kubeconfig")
            .arg(target.kubeconfig.display().to_string());
        if let Some(context) = &target.context {
            cmd = cmd.arg("--context").arg(context);
        }
        cmd
    }

    /// `kubectl config view --minify --flatten`: one context of `sources` (a file, or a
    /// `KUBECONFIG` list `a:b`), with its cluster and user and their certificates inlined, as
    /// its current context. Handed to helm, kubectl and the tests, it lets them reach nothing else.
    pub fn minified_kubeconfig_cmd(&self, sources: &std::ffi::OsStr, context: Option<&str>) -> Cmd {
        let mut cmd = Cmd::new(self.bin.display().to_string())
            .install_hint(INSTALL)
            .args(["config", "view", "--minify", "--flatten", "--raw"])
            .env("KUBECONFIG", sources)
            .timeout(Duration::from_secs(60));
        if let Some(context) = context {
            cmd = cmd.arg("--context").arg(context);
        }
        cmd
    }

    pub async fn minified_kubeconfig(
        &self,
        sources: &std::ffi::OsStr,
        context: Option<&str>,
        echo: LineSink<'_>,
    ) -> Result<String, ProcessError> {
        Ok(self.spawner.output(&self.minified_kubeconfig_cmd(sources, context), echo).await?.stdout)
    }

    /// The command line as it would be echoed (secrets masked), for plans.
    pub fn display(&self, cmd: &Cmd) -> String {
        self.spawner.display(cmd)
    }

    /// Asks the API server its version: proves it answers and the credentials work, with no
    /// permission beyond what every authenticated user has (no node access).
    pub fn reachable_cmd(&self, target: &Target) -> Cmd {
        self.cmd(target).args(["version", "--output=json", "--request-timeout=30s"]).timeout(Duration::from_secs(60))
    }

    pub async fn reachable(&self, target: &Target, echo: LineSink<'_>) -> Result<(), ProcessError> {
        self.spawner.output(&self.reachable_cmd(target), echo).await.map(|_| ())
    }

    pub async fn wait_nodes_ready(&self, target: &Target, echo: LineSink<'_>) -> Result<(), ProcessError> {
        let cmd = self
            .cmd(target)
            .args(["wait", "--for=condition=Ready", "nodes", "--all", "--timeout=180s"])
            .timeout(Duration::from_secs(200));
        self.spawner.output(&cmd, echo).await.map(|_| ())
    }

    /// Runs `kubectl ARGS` and returns what it printed, errors included: diagnostics take
    /// whatever they can get.
    pub async fn capture(&self, target: &Target, args: &[&str], echo: LineSink<'_>) -> String {
        let cmd = self.cmd(target).args(args.iter().copied()).timeout(Duration::from_secs(120));
        match self.spawner.output(&cmd, echo).await {
            Ok(out) => out.stdout,
            Err(error) => format!("(kubectl {} failed: {error})\n", args.join(" ")),
        }
    }
}
