//! Helm, through its CLI.

use std::path::PathBuf;
use std::time::Duration;

use super::Target;
use crate::process::{Cmd, LineSink, ProcessError, Spawner};

pub const INSTALL: &str = "install Helm 3 (https://helm.sh/docs/intro/install/) or set tools.helm";

#[derive(Clone, Debug)]
pub struct Helm {
    pub bin: PathBuf,
    pub spawner: Spawner,
}

/// helm's flags for a target.
fn target_args(target: &Target) -> Vec<String> {
    let mut args = vec!["--kubeconfig".to_string(), target.kubeconfig.display().to_string()];
    if let Some(context) = &target.context {
        args.extend(["--kube-context".to_string(), context.clone()]);
    }
    args
}

/// A release to install or upgrade: `helm template` renders exactly what it would install.
#[derive(Clone, Debug)]
pub struct Install {
    pub release: String,
    /// A chart package (.tgz) or directory.
    pub chart: PathBuf,
    /// `--set-string` overrides: an image tag of digits must stay a string.
    pub sets: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Install {
    fn set_args(&self) -> Vec<String> {
        self.sets.iter().flat_map(|(key, value)| ["--set-string".to_string(), format!("{key}={value}")]).collect()
    }
}

impl Helm {
    fn cmd(&self) -> Cmd {
        Cmd::new(self.bin.display().to_string()).install_hint(INSTALL)
    }

    /// The command line as it would be echoed (secrets masked), for plans.
    pub fn display(&self, cmd: &Cmd) -> String {
        self.spawner.display(cmd)
    }

    /// `helm upgrade --install`, waiting until the release's resources are ready.
    pub fn upgrade_install_cmd(&self, install: &Install, target: &Target) -> Cmd {
        self.cmd()
            .args(["upgrade", "--install", &install.release])
            .arg(install.chart.display().to_string())
            .args(["--wait", "--timeout", &format!("{}s", install.timeout.as_secs())])
            .args(target_args(target))
            .args(install.set_args())
            .timeout(install.timeout + Duration::from_secs(60))
    }

    pub async fn upgrade_install(
        &self,
        install: &Install,
        target: &Target,
        echo: LineSink<'_>,
        lines: LineSink<'_>,
    ) -> Result<(), ProcessError> {
        self.spawner.stream(&self.upgrade_install_cmd(install, target), echo, lines).await
    }

    /// `helm template`: the manifests the install would apply, rendered without a cluster.
    pub fn template_cmd(&self, install: &Install) -> Cmd {
        self.cmd()
            .args(["template", &install.release])
            .arg(install.chart.display().to_string())
            .args(install.set_args())
            .timeout(Duration::from_secs(120))
    }

    pub async fn template(&self, install: &Install, echo: LineSink<'_>) -> Result<String, ProcessError> {
        Ok(self.spawner.output(&self.template_cmd(install), echo).await?.stdout)
    }

    pub async fn status(&self, release: &str, target: &Target, echo: LineSink<'_>) -> Result<String, ProcessError> {
        let cmd = self.cmd().args(["status", release]).args(target_args(target)).timeout(Duration::from_secs(60));
        Ok(self.spawner.output(&cmd, echo).await?.stdout)
    }
}
