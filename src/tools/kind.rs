//! kind (Kubernetes in Docker), through its CLI.

use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::process::{Cmd, LineSink, ProcessError, Spawner};

/// The Docker network kind puts every cluster's nodes on (unless KIND_EXPERIMENTAL_DOCKER_NETWORK
/// names another); `kind delete cluster` leaves it behind.
pub const NETWORK: &str = "kind";

pub const INSTALL: &str =
    "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) or set tools.kind";

#[derive(Clone, Debug)]
pub struct Kind {
    pub bin: PathBuf,
    pub spawner: Spawner,
}

impl Kind {
    fn cmd(&self) -> Cmd {
        Cmd::new(self.bin.display().to_string()).install_hint(INSTALL)
    }

    /// `v0.27.0` from `kind v0.27.0 go1.23.6 linux/amd64`.
    pub async fn version(&self, echo: LineSink<'_>) -> Result<String, ProcessError> {
        let out = self.spawner.output(&self.cmd().arg("version").timeout(Duration::from_secs(30)), echo).await?;
        Ok(out.stdout.split_whitespace().find(|w| w.starts_with('v')).unwrap_or("unknown").to_string())
    }

    /// The names of the kind clusters on this machine.
    pub async fn clusters(&self, echo: LineSink<'_>) -> Result<Vec<String>, ProcessError> {
        let cmd = self.cmd().args(["get", "clusters"]).timeout(Duration::from_secs(60));
        Ok(self
            .spawner
            .output(&cmd, echo)
            .await?
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// The containers of cluster `name`'s nodes.
    pub async fn nodes(&self, name: &str, echo: LineSink<'_>) -> Result<Vec<String>, ProcessError> {
        let cmd = self.cmd().args(["get", "nodes", "--name", name]).timeout(Duration::from_secs(60));
        Ok(self.spawner.output(&cmd, echo).await?.stdout.split_whitespace().map(String::from).collect())
    }

    /// The command line as it would be echoed (secrets masked), for plans.
    pub fn display(&self, cmd: &Cmd) -> String {
        self.spawner.display(cmd)
    }

    pub fn create_cmd(&self, name: &str, image: &str, config: Option<&Path>, kubeconfig: &Path) -> Cmd {
        let mut cmd = self
            .cmd()
            .args(["create", "cluster", "--name", name, "--image", image, "--wait", "120s", "--kubeconfig"])
            .arg(kubeconfig.display().to_string());
        if let Some(config) = config {
            cmd = cmd.arg("--config").arg(config.display().to_string());
        }
        cmd.timeout(Duration::from_secs(600))
    }

    pub async fn create(&self, cmd: &Cmd, echo: LineSink<'_>, lines: LineSink<'_>) -> Result<(), ProcessError> {
        self.spawner.stream(cmd, echo, lines).await
    }

    pub fn load_image_cmd(&self, name: &str, image: &str) -> Cmd {
        self.cmd().args(["load", "docker-image", image, "--name", name]).timeout(Duration::from_secs(600))
    }

    pub async fn load_image(
        &self,
        name: &str,
        image: &str,
        echo: LineSink<'_>,
        lines: LineSink<'_>,
    ) -> Result<(), ProcessError> {
        self.spawner.stream(&self.load_image_cmd(name, image), echo, lines).await
    }

    pub async fn export_logs(&self, name: &str, dir: &Path, echo: LineSink<'_>) -> Result<(), ProcessError> {
        let cmd = self
            .cmd()
            .args(["export", "logs"])
            .arg(dir.display().to_string())
            .args(["--name", name])
            .timeout(Duration::from_secs(300));
        self.spawner.output(&cmd, echo).await.map(|_| ())
    }

    pub fn delete_cmd(&self, name: &str, kubeconfig: &Path) -> Cmd {
        self.cmd()
            .args(["delete", "cluster", "--name", name, "--kubeconfig"])
            .arg(kubeconfig.display().to_string())
            .timeout(Duration::from_secs(300))
    }

    pub async fn delete(&self, name: &str, kubeconfig: &Path, echo: LineSink<'_>) -> Result<(), ProcessError> {
        self.spawner.output(&self.delete_cmd(name, kubeconfig), echo).await.map(|_| ())
    }
}
