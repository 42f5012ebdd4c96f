//! Docker engine adapter (bollard): build, tag, push, pull, save and load images; the networks
//! and commands of the containers kind runs its nodes in.

use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder, PushImageOptionsBuilder,
    TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::secrets::Secrets;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine ({message}); start it (dockerd) or point DOCKER_HOST at it")]
    Engine { message: String },
    #[error("docker build failed: {message}{}", tail(.output))]
    Build { message: String, output: Vec<String> },
    #[error("registry {registry} refused the credentials for {reference}: {message}; check the registry credentials")]
    Auth { registry: String, reference: String, message: String },
    #[error("registry {registry} cannot be reached for {reference}: {message}")]
    Unreachable { registry: String, reference: String, message: String },
    #[error("{what} {reference}: {message}")]
    Image { what: &'static str, reference: String, message: String },
    #[error("`{command}` in container {container} failed: {message}")]
    Exec { container: String, command: String, message: String },
    #[error("{}: {source}", .path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error(
        "registry {registry} did not answer for {} while {what} {reference}; is it up? \
         (network.timeout or --network-timeout sets how long to wait)",
        crate::config::format_duration(*.after)
    )]
    Stalled { registry: String, what: &'static str, reference: String, after: std::time::Duration },
}

/// How long an engine stream (a push, a pull) may go without a message before it is given up.
pub const DEFAULT_STALL: Duration = Duration::from_secs(60);

fn tail(lines: &[String]) -> String {
    if lines.is_empty() { String::new() } else { format!("; last lines of the build:\n  {}", lines.join("\n  ")) }
}

/// Registry login for a push or pull.
#[derive(Clone)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryAuth({}, ***)", self.username)
    }
}

/// What a repository reference's registry is: `127.0.0.1:5000/op` → `127.0.0.1:5000`;
/// `org/op` → Docker Hub.
pub fn registry_of(repository: &str) -> &str {
    match repository.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// Credentials for `registry` from a docker `config.json` (`auths.<registry>`, under the names
/// `docker login` writes), or from the credential helper it names (`credsStore`, `credHelpers`).
pub fn auth_from_docker_config(config_json: &str, registry: &str) -> Option<RegistryAuth> {
    let keys: Vec<String> = if registry == "docker.io" {
        vec!["https://index.docker.io/v1/".into(), "docker.io".into()]
    } else {
        vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")]
    };
    keys.iter().find_map(|key| match docker_credential::get_credential_from_reader(config_json.as_bytes(), key) {
        Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => {
            Some(RegistryAuth { username, password })
        }
        _ => None,
    })
}

/// The docker `config.json` of this environment: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn docker_config(env: crate::config::Env<'_>) -> Option<String> {
    let dir = env("DOCKER_CONFIG").or_else(|| env("HOME").map(|home| format!("{home}/.docker")));
    dir.and_then(|dir| std::fs::read_to_string(format!("{dir}/config.json")).ok())
}

/// The real engine.
pub struct DockerEngine {
    docker: Docker,
    secrets: Secrets,
    stall: Duration,
}

/// Why one push attempt failed.
enum PushFailure {
    Message(String),
    /// No message for the whole stall timeout: not retried, the registry does not answer.
    Stalled,
}

impl DockerEngine {
    /// Connects to `DOCKER_HOST` or the local socket, agreeing on an API version the engine speaks.
    pub async fn connect(secrets: Secrets) -> Result<Self, DockerError> {
        let engine = |e: bollard::errors::Error| DockerError::Engine { message: e.to_string() };
        let docker =
            Docker::connect_with_local_defaults().map_err(engine)?.negotiate_version().await.map_err(engine)?;
        docker.ping().await.map_err(engine)?;
        Ok(Self { docker, secrets, stall: DEFAULT_STALL })
    }

    /// How long a push or pull may go without progress.
    pub fn with_stall_timeout(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// A handle that has not talked to the engine: for plans, which run nothing.
    pub fn unconnected(secrets: Secrets) -> Result<Self, DockerError> {
        let docker =
            Docker::connect_with_local_defaults().map_err(|e| DockerError::Engine { message: e.to_string() })?;
        Ok(Self { docker, secrets, stall: DEFAULT_STALL })
    }

    fn mask(&self, text: &str) -> String {
        self.secrets.mask(text).into_owned()
    }

    /// An engine error about `reference`, its message masked.
    fn image_error(&self, what: &'static str, reference: &str, message: impl std::fmt::Display) -> DockerError {
        DockerError::Image { what, reference: reference.to_string(), message: self.mask(&message.to_string()) }
    }

    /// Builds the tar context; every line of build output goes to `on_line`. Returns the image id.
    /// An engine shared with other builds (CI runners) may delete a cached layer while this build
    /// looks it up; that build is made again, twice at most.
    pub async fn build(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<String, DockerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.build_once(context.clone(), dockerfile, tag, on_line).await {
                Err(DockerError::Build { message, .. }) if attempt < 3 && message.contains("unable to find image") => {
                    on_line(&format!("the engine lost a cached layer meanwhile ({message}); building again"));
                }
                result => return result,
            }
        }
    }

    async fn build_once(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<String, DockerError> {
        let options = BuildImageOptionsBuilder::default().dockerfile(dockerfile).t(tag).rm(true).forcerm(true).build();
        let mut stream = self.docker.build_image(options, None, Some(bollard::body_full(bytes::Bytes::from(context))));
        let mut output: Vec<String> = Vec::new();
        let mut id = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                        for line in text.lines().filter(|l| !l.trim().is_empty()) {
                            let line = self.mask(line);
                            on_line(&line);
                            output.push(line);
                        }
                    }
                    if let Some(aux) = info.aux.and_then(|a| a.id) {
                        id = Some(aux);
                    }
                }
                Err(e) => {
                    let keep = output.len().saturating_sub(10);
                    return Err(DockerError::Build {
                        message: self.mask(&e.to_string()),
                        output: output.split_off(keep),
                    });
                }
            }
        }
        match id {
            Some(id) => Ok(id),
            None => self.inspect(tag).await.map(|i| i.id),
        }
    }

    /// `docker import`: an image of one layer, `rootfs`, with the metadata `changes` (Dockerfile
    /// instructions) applied; tagged `tag`. Returns the image id.
    ///
    /// An import is stamped with the time it ran, so the same files imported twice would be two
    /// images with two digests, where the builder's cache gives one. So the import's history
    /// comment names what it was made of, and an image of `tag` or `<repository>:latest` made
    /// of the same is tagged again instead.
    pub async fn import(&self, rootfs: Vec<u8>, changes: &[String], tag: &str) -> Result<String, DockerError> {
        let (repository, name) = match tag.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((repository, name)) => (repository, name),
            None => (tag, "latest"),
        };
        let mut made_of = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut made_of, &rootfs);
        for change in changes {
            sha2::Digest::update(&mut made_of, [0]);
            sha2::Digest::update(&mut made_of, change.as_bytes());
        }
        let comment = format!("stagecoach import of sha256:{:x}", sha2::Digest::finalize(made_of));
        for candidate in [tag.to_string(), format!("{repository}:latest")] {
            let same = self
                .docker
                .image_history(&candidate)
                .await
                .is_ok_and(|history| history.len() == 1 && history[0].comment == comment);
            if same {
                let id = self.inspect(&candidate).await?.id;
                if candidate != tag {
                    self.tag(&id, repository, name).await?;
                }
                return Ok(id);
            }
        }
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repository)
            .tag(name)
            .message(&comment)
            .changes(changes.to_vec())
            .build();
        let mut stream = self.docker.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
        while let Some(item) = stream.next().await {
            let info =
                item.map_err(|e| DockerError::Build { message: self.mask(&e.to_string()), output: Vec::new() })?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Build { message: self.mask(&message), output: Vec::new() });
            }
        }
        self.inspect(tag).await.map(|i| i.id)
    }

    pub async fn tag(&self, image: &str, repository: &str, tag: &str) -> Result<(), DockerError> {
        let options = TagImageOptionsBuilder::default().repo(repository).tag(tag).build();
        self.docker
            .tag_image(image, Some(options))
            .await
            .map_err(|e| self.image_error("tagging", &format!("{repository}:{tag}"), e))
    }

    /// Pushes `repository:tag`; returns the digest the registry stored. Transient failures are
    /// retried; refused credentials are not.
    pub async fn push(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<String, DockerError> {
        let reference = format!("{repository}:{tag}");
        let registry = registry_of(repository).to_string();
        let credentials = auth.map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(registry.clone()),
            ..Default::default()
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.push_once(repository, tag, credentials.clone(), on_line).await {
                Ok(digest) => return Ok(digest),
                Err(PushFailure::Stalled) => {
                    return Err(DockerError::Stalled { registry, what: "pushing", reference, after: self.stall });
                }
                Err(PushFailure::Message(message)) => {
                    let lower = message.to_lowercase();
                    let auth_failed = [
                        "unauthorized",
                        "authentication required",
                        "no basic auth credentials",
                        "denied",
                        "incorrect username or password",
                    ]
                    .iter()
                    .any(|s| lower.contains(s));
                    if auth_failed {
                        return Err(DockerError::Auth { registry, reference, message });
                    }
                    let unreachable =
                        ["connection refused", "no such host", "dial tcp", "i/o timeout", "no route to host"]
                            .iter()
                            .any(|s| lower.contains(s));
                    if attempt >= 3 {
                        return Err(if unreachable {
                            DockerError::Unreachable { registry, reference, message }
                        } else {
                            DockerError::Image { what: "pushing", reference, message }
                        });
                    }
                    on_line(&format!("push failed ({message}); trying again"));
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
            }
        }
    }

    async fn push_once(
        &self,
        repository: &str,
        tag: &str,
        credentials: Option<DockerCredentials>,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<String, PushFailure> {
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = self.docker.push_image(repository, Some(options), credentials);
        let mut digest = None;
        loop {
            let item = match tokio::time::timeout(self.stall, stream.next()).await {
                Err(_) => return Err(PushFailure::Stalled),
                Ok(None) => break,
                Ok(Some(item)) => item,
            };
            let info = item.map_err(|e| PushFailure::Message(self.mask(&e.to_string())))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(PushFailure::Message(self.mask(&error)));
            }
            if let Some(status) = info.status {
                // "<tag>: digest: sha256:… size: 528"
                if let Some(found) = status.split_whitespace().find(|w| w.starts_with("sha256:")) {
                    digest = Some(found.to_string());
                }
                if info.progress_detail.is_none() || status.contains("digest") {
                    on_line(&self.mask(&status));
                }
            }
        }
        digest.ok_or_else(|| PushFailure::Message("the registry reported no digest".to_string()))
    }

    /// Pulls `reference` (`repo:tag` or `repo@sha256:…`).
    pub async fn pull(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<(), DockerError> {
        let credentials = auth.map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            ..Default::default()
        });
        let options = CreateImageOptionsBuilder::default().from_image(reference).build();
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        loop {
            let item = match tokio::time::timeout(self.stall, stream.next()).await {
                Err(_) => {
                    return Err(DockerError::Stalled {
                        registry: registry_of(reference).to_string(),
                        what: "pulling",
                        reference: reference.to_string(),
                        after: self.stall,
                    });
                }
                Ok(None) => break,
                Ok(Some(item)) => item,
            };
            let info = item.map_err(|e| self.image_error("pulling", reference, e))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(self.image_error("pulling", reference, message));
            }
        }
        Ok(())
    }

    pub async fn inspect(&self, reference: &str) -> Result<ImageFacts, DockerError> {
        let image =
            self.docker.inspect_image(reference).await.map_err(|e| self.image_error("inspecting", reference, e))?;
        Ok(ImageFacts {
            id: image.id.unwrap_or_default(),
            size: u64::try_from(image.size.unwrap_or_default()).unwrap_or_default(),
            repo_digests: image.repo_digests.unwrap_or_default(),
        })
    }

    pub async fn exists(&self, reference: &str) -> bool {
        self.docker.inspect_image(reference).await.is_ok()
    }

    /// `docker save`: the image as a tar file.
    pub async fn save(&self, reference: &str, path: &Path) -> Result<(), DockerError> {
        let io = |source| DockerError::Io { path: path.to_path_buf(), source };
        let partial = path.with_extension("tar.partial");
        let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
        let mut stream = self.docker.export_image(reference);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.image_error("saving", reference, e))?;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(&partial, path).await.map_err(io)
    }

    /// `docker load`: images from a tar file written by [`save`](Self::save).
    pub async fn load(&self, path: &Path) -> Result<(), DockerError> {
        let io = |source| DockerError::Io { path: path.to_path_buf(), source };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let body = file_stream(file);
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut stream = self.docker.import_image_stream(options, body, None);
        let shown = path.display().to_string();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.image_error("loading", &shown, e))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(self.image_error("loading", &shown, message));
            }
        }
        Ok(())
    }
}

impl DockerEngine {
    /// Whether a network of that name exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(DockerError::Engine { message: e.to_string() }),
        }
    }

    /// Whether container `container` is attached to network `name`.
    pub async fn on_network(&self, name: &str, container: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_network(name, None).await {
            Ok(network) => Ok(network
                .containers
                .is_some_and(|attached| attached.values().any(|c| c.name.as_deref() == Some(container)))),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(DockerError::Engine { message: e.to_string() }),
        }
    }

    /// Removes network `name` unless a container is attached to it; whether it did.
    pub async fn remove_unused_network(&self, name: &str) -> Result<bool, DockerError> {
        let network = match self.docker.inspect_network(name, None).await {
            Ok(network) => network,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(false),
            Err(e) => return Err(DockerError::Engine { message: e.to_string() }),
        };
        if network.containers.is_some_and(|c| !c.is_empty()) {
            return Ok(false);
        }
        self.docker.remove_network(name).await.map_err(|e| DockerError::Engine { message: e.to_string() })?;
        Ok(true)
    }

    /// `docker exec CONTAINER COMMAND…`: what it wrote to stdout, or what went wrong.
    pub async fn exec(&self, container: &str, command: &[&str]) -> Result<String, DockerError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let failed = |message: String| DockerError::Exec {
            container: container.to_string(),
            command: command.join(" "),
            message,
        };
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..CreateExecOptions::default()
        };
        let exec = self.docker.create_exec(container, options).await.map_err(|e| failed(e.to_string()))?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        if let StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&exec.id, None).await.map_err(|e| failed(e.to_string()))?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| failed(e.to_string()))? {
                    bollard::container::LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                    bollard::container::LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                    _ => {}
                }
            }
        }
        let code = self.docker.inspect_exec(&exec.id).await.map_err(|e| failed(e.to_string()))?.exit_code;
        if code != Some(0) {
            let code = code.map_or("no exit code".to_string(), |c| format!("exit code {c}"));
            return Err(failed(format!("{code}: {}", String::from_utf8_lossy(&stderr).trim())));
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }
}

/// A file as a stream of chunks, without pulling in tokio-util.
fn file_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

#[derive(Clone, Debug)]
pub struct ImageFacts {
    pub id: String,
    pub size: u64,
    pub repo_digests: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_table() {
        for (repository, want) in [
            ("127.0.0.1:5000/op", "127.0.0.1:5000"),
            ("localhost/op", "localhost"),
            ("ghcr.io/org/op", "ghcr.io"),
            ("org/op", "docker.io"),
            ("op", "docker.io"),
        ] {
            assert_eq!(registry_of(repository), want, "{repository}");
        }
    }

    #[test]
    fn docker_config_table() {
        // "bot:canary-s3cr3t-42" in base64.
        let config = r#"{"auths": {"127.0.0.1:5000": {"auth": "Ym90OmNhbmFyeS1zM2NyM3QtNDI="}, "https://index.docker.io/v1/": {"auth": "aHViOnB3"}}}"#;
        let got = auth_from_docker_config(config, "127.0.0.1:5000").unwrap();
        assert_eq!((got.username.as_str(), got.password.as_str()), ("bot", "canary-s3cr3t-42"));
        let hub = auth_from_docker_config(config, "docker.io").unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("hub", "pw"));
        assert!(auth_from_docker_config(config, "ghcr.io").is_none());
        assert!(auth_from_docker_config("not json", "ghcr.io").is_none());
        assert_eq!(format!("{got:?}"), "RegistryAuth(bot, ***)");
    }
}
