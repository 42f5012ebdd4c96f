//! Pipeline file: discovery, `${VAR}` interpolation and up-front validation.
//!
//! The file is read once into `Raw*` types that keep every value's line and column, then checked
//! as a whole; every problem found is reported as `file:line:column: field: message`, not just
//! the first. The checked [`Config`] holds plain values and never any secret: credentials are
//! named by environment variable and read when a stage needs them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// Where the pipeline file lives inside a repository.
pub const DEFAULT_FILE: &str = "pipelines/stagecoach.yaml";
/// The only format version this build reads.
pub const FORMAT_VERSION: u32 = 1;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a network operation (git, the registry, the served index) may go without progress.
pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `helm upgrade --install --wait` may take by default.
pub const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Files dropped from a chart when it is packaged for release unless the file says otherwise.
pub const DEFAULT_DROP: [&str; 5] = [".travis.yml", ".github", ".gitlab-ci.yml", "ci", "pipelines"];

/// Reads environment variables; a closure so tests can hand in a table.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no pipeline file found: looked for {DEFAULT_FILE} in {} and its parent directories up to the repository root; \
         pass --config FILE or set STAGECOACH_CONFIG; a QA repository takes the DEV repository's \
         pipelines/stagecoach.yaml (`stagecoach init qa DIR`, run in the DEV repository, copies it)",
        .start.display()
    )]
    NotFound { start: PathBuf },
    #[error("{}: cannot read the pipeline file: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", render_diagnostics(.path, .diagnostics))]
    Invalid { path: PathBuf, diagnostics: Vec<Diagnostic> },
}

/// One problem in a pipeline file, at a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: u64,
    pub column: u64,
    /// Dotted path of the field, e.g. `repositories.qa.credentials`; empty for the whole file.
    pub field: String,
    pub message: String,
}

fn render_diagnostics(path: &Path, diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics
        .iter()
        .map(|d| {
            let field = if d.field.is_empty() { String::new() } else { format!("{}: ", d.field) };
            format!("{}:{}:{}: {field}{}", path.display(), d.line, d.column, d.message)
        })
        .collect();
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// The checked configuration.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The pipeline file that was read.
    pub file: PathBuf,
    /// The repository root: relative paths in the file are relative to it.
    pub root: PathBuf,
    pub repositories: Repositories,
    pub image: Image,
    pub chart: Chart,
    pub cluster: Cluster,
    /// `cluster.pulled_images`: images the chart may deploy besides the one this pipeline builds,
    /// pulled by the cluster itself (a reference without a tag allows every tag).
    pub pulled_images: Vec<String>,
    /// `cluster.install_timeout`: how long the chart's install may take to become ready.
    pub install_timeout: Duration,
    pub commands: Commands,
    pub tools: Tools,
    /// `network.timeout`: how long a network operation may go without progress.
    pub network_timeout: Option<Duration>,
    pub credentials: BTreeMap<String, Credential>,
    /// Credentials used only when their variables are set (local runs without secrets).
    pub optional_credentials: std::collections::BTreeSet<String>,
}

impl Config {
    /// The credential variables `command` must not see: every variable named under
    /// `credentials:` that its `env_passthrough` does not list.
    pub fn withheld_from(&self, command: &Command) -> Vec<String> {
        let mut names: Vec<String> = self
            .credentials
            .values()
            .flat_map(Credential::env_names)
            .filter(|name| !command.env_passthrough.iter().any(|kept| kept == name))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repositories {
    pub dev: Repository,
    pub qa: Repository,
    /// The Helm chart repository releases merge into; none when they go to `chart.oci` only.
    pub release: Option<Repository>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    pub url: String,
    pub branch: String,
    /// Name of an entry under `credentials`.
    pub credentials: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Registry and path without a tag, e.g. `127.0.0.1:5000/bitcoin-operator`.
    pub repository: String,
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub credentials: Option<String>,
    /// A cosign public key, inside the repository: QA deploys and RELEASE publishes only an
    /// image signed by it, with a provenance naming the chart's appVersion.
    pub verify_key: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// Chart directory inside the QA repository.
    pub path: PathBuf,
    pub name: String,
    /// Dotted keys in values.yaml that hold the image's repository, tag and manifest digest:
    /// together they name exactly the image that runs.
    pub image_repository_key: String,
    pub image_tag_key: String,
    pub image_digest_key: String,
    /// Name the chart is published under in the RELEASE repository.
    pub release_name: String,
    /// CI files and directories left out of the released package.
    pub drop: Vec<String>,
    /// Where the RELEASE repository is served; index entries point there, and a release is
    /// checked there after the push.
    pub base_url: Option<String>,
    /// An OCI repository releases are also pushed to.
    pub oci: Option<OciRepository>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRepository {
    /// `oci://HOST[:PORT]/PATH`
    pub url: String,
    /// The credentials entry for it; without one, what `docker login` stored.
    pub credentials: Option<String>,
    /// HTTP instead of HTTPS (a registry on this machine).
    pub plain_http: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cluster {
    Kind {
        name: String,
        node_image: String,
        /// Where the saved node image is kept between runs.
        cache_dir: Option<PathBuf>,
        /// A kind cluster configuration file.
        config: Option<PathBuf>,
    },
    Existing {
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
    },
}

/// Where kind, helm and kubectl are, when not on PATH.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tools {
    pub kind: Option<PathBuf>,
    pub helm: Option<PathBuf>,
    pub kubectl: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commands {
    pub build: Command,
    pub unit_tests: Command,
    pub integration_tests: Command,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// A shell command line, run with `sh -c` (the shell expands `$VAR` in it, stagecoach does not).
    pub run: String,
    pub timeout: Duration,
    /// Credential variables (named under `credentials:`) this command may see; it sees no other.
    pub env_passthrough: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// An HTTPS token (git) read from `token_env`.
    Token { username: Username, token_env: String },
    /// A user name and a password read from `password_env`.
    Password { username: Username, password_env: String },
    /// An SSH private key file (git over SSH); the agent is tried first.
    SshKey { username: Username, key_path: PathBuf },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Username {
    Default,
    Literal(String),
    FromEnv(String),
}

impl Credential {
    /// Names of every environment variable it reads (user names too).
    pub fn env_names(&self) -> Vec<&str> {
        let user = match self {
            Self::Token { username, .. } | Self::Password { username, .. } | Self::SshKey { username, .. } => username,
        };
        let mut names = self.secret_env_names();
        if let Username::FromEnv(name) = user {
            names.push(name);
        }
        names
    }

    /// Names of the environment variables whose values are secret.
    pub fn secret_env_names(&self) -> Vec<&str> {
        match self {
            Self::Token { token_env, .. } => vec![token_env],
            Self::Password { password_env, .. } => vec![password_env],
            Self::SshKey { .. } => vec![],
        }
    }

    /// How `plan` shows it: which variables it reads, never their values.
    pub fn describe(&self) -> String {
        let user = |u: &Username| match u {
            Username::Default => String::new(),
            Username::Literal(name) => format!("user {name}, "),
            Username::FromEnv(var) => format!("user ${var}, "),
        };
        match self {
            Self::Token { username, token_env } => format!("{}token ${token_env}", user(username)),
            Self::Password { username, password_env } => format!("{}password ${password_env}", user(username)),
            Self::SshKey { username, key_path } => format!("{}ssh key {}", user(username), key_path.display()),
        }
    }
}

impl Config {
    /// Every environment variable named as a secret by this file.
    pub fn secret_env_names(&self) -> Vec<&str> {
        self.credentials.values().flat_map(Credential::secret_env_names).collect()
    }

    /// A path from the file, made absolute against the repository root (without `./` parts).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.root.join(path).components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery and loading.

/// Finds the pipeline file: `--config` > `STAGECOACH_CONFIG` > `pipelines/stagecoach.yaml` in
/// `start` or a parent, stopping at the first directory that holds `.git`.
pub fn discover(explicit: Option<&Path>, env: Env<'_>, start: &Path) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit.map(Path::to_path_buf).or_else(|| env("STAGECOACH_CONFIG").map(PathBuf::from)) {
        // Relative to where stagecoach was started, whatever directory a stage later works in.
        return Ok(start.join(path));
    }
    for dir in start.ancestors() {
        let candidate = dir.join(DEFAULT_FILE);
        if candidate.is_file() {
            return Ok(candidate);
        }
        if dir.join(".git").exists() {
            break;
        }
    }
    Err(ConfigError::NotFound { start: start.to_path_buf() })
}

pub fn load(path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let invalid = |diagnostics| ConfigError::Invalid { path: path.to_path_buf(), diagnostics };
    let text = crate::files::utf8_text(&bytes).map_err(|e| {
        let message = format!("byte 0x{:02x} is not UTF-8; save the file as UTF-8 text", e.byte);
        invalid(vec![Diagnostic { line: e.line as u64, column: e.column as u64, field: String::new(), message }])
    })?;
    parse(text, path, env).map_err(invalid)
}

/// Parses and checks a pipeline file's text; `path` decides the repository root.
pub fn parse(text: &str, path: &Path, env: Env<'_>) -> Result<Config, Vec<Diagnostic>> {
    let raw = deserialize(text).map_err(|d| vec![d])?;
    Checker { env, diagnostics: Vec::new() }.check(raw, path)
}

fn deserialize(text: &str) -> Result<RawFile, Diagnostic> {
    let mut field = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|error| {
        let (line, column) = error.location().map_or((1, 1), |l| (l.line(), l.column()));
        // The bare message, without the position (we print our own) or the snippet.
        let full = error.without_snippet().to_string();
        let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
        let field = field.trim_end_matches(".value").trim_end_matches('.').replace(".value.", ".");
        let field = if field == "." { String::new() } else { field };
        Diagnostic { line, column, field, message: explain_serde_message(message) }
    })
}

/// Adds a "did you mean" hint to unknown-field messages, and says where secrets belong.
fn explain_serde_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, rest)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = rest
        .split_once("expected ")
        .map(|(_, list)| list.trim_start_matches("one of "))
        .map(|list| list.split(", ").map(|s| s.trim_matches('`')).collect())
        .unwrap_or_default();
    let mut out = format!("unknown key `{unknown}`");
    if ["token", "password", "secret", "username_password"].contains(&unknown) {
        out.push_str(&format!(
            "; secrets are never written in the pipeline file: name the environment variable that holds it \
             with `{unknown}_env`"
        ));
        if !expected.is_empty() {
            out.push_str(&format!(" (keys here: {})", expected.join(", ")));
        }
        return out;
    }
    match did_you_mean(unknown, &expected) {
        Some(best) => out.push_str(&format!("; did you mean `{best}`?")),
        None if !expected.is_empty() => out.push_str(&format!("; expected one of: {}", expected.join(", "))),
        None => {}
    }
    out
}

/// The closest candidate, if it is close enough to be what was meant.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(input, c), *c))
        .filter(|(distance, c)| *distance <= (c.len().max(input.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

// ---------------------------------------------------------------------------------------------
// Interpolation.

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`. Any other `$` stays as it is.
pub fn interpolate(input: &str, env: Env<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| format!("`${{` without a closing `}}` in {input:?}"))?;
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            if !is_env_name(name) {
                return Err(format!("`${{{expr}}}`: {name:?} is not a variable name (letters, digits, `_`)"));
            }
            match (env(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set; export it, or give a default with `${{{name}:-…}}`"
                    ));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------------------------
// Durations, as written in the file (`90s`, `30m`, `1h30m`).

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration; write it like 90s, 30m or 1h30m");
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() || total == 0 && !text.trim().starts_with('0') {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// The inverse of [`parse_duration`] for whole seconds; sub-second values show as `0.25s`.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_millis() != 0 && secs < 60 {
        return format!("{:.2}s", duration.as_secs_f64());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

// ---------------------------------------------------------------------------------------------
// Raw file types: what the YAML says, with positions.

type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Spanned<u32>,
    repositories: RawRepositories,
    image: RawImage,
    chart: RawChart,
    cluster: Spanned<RawCluster>,
    commands: RawCommands,
    tools: Option<RawTools>,
    network: Option<RawNetwork>,
    #[serde(default)]
    credentials: BTreeMap<String, Spanned<RawCredential>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    timeout: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTools {
    kind: Option<Text>,
    helm: Option<Text>,
    kubectl: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepositories {
    dev: RawRepository,
    qa: RawRepository,
    release: Option<RawRepository>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    url: Text,
    branch: Option<Text>,
    credentials: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    repository: Text,
    dockerfile: Option<Text>,
    context: Option<Text>,
    credentials: Option<Text>,
    verify_key: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChart {
    path: Option<Text>,
    name: Text,
    image_repository_key: Option<Text>,
    image_tag_key: Option<Text>,
    image_digest_key: Option<Text>,
    release_name: Option<Text>,
    drop: Option<Vec<Text>>,
    base_url: Option<Text>,
    oci: Option<Text>,
    oci_credentials: Option<Text>,
    oci_plain_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    provider: Option<Text>,
    name: Option<Text>,
    node_image: Option<Text>,
    cache_dir: Option<Text>,
    config: Option<Text>,
    kubeconfig: Option<Text>,
    context: Option<Text>,
    pulled_images: Option<Vec<Text>>,
    install_timeout: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommands {
    build: RawCommand,
    unit_tests: RawCommand,
    integration_tests: RawCommand,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    run: Text,
    timeout: Option<Text>,
    env_passthrough: Option<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    optional: Option<Spanned<bool>>,
    username: Option<Text>,
    username_env: Option<Text>,
    token_env: Option<Text>,
    password_env: Option<Text>,
    ssh_key_path: Option<Text>,
}

// ---------------------------------------------------------------------------------------------
// Checking.

struct Checker<'e> {
    env: Env<'e>,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, field: &str, message: impl fmt::Display) {
        self.diagnostics.push(Diagnostic {
            line: at.referenced.line(),
            column: at.referenced.column(),
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    /// The value with `${VAR}` expanded; on error, records it and returns the raw text.
    fn text(&mut self, value: &Text, field: &str) -> String {
        match interpolate(&value.value, self.env) {
            Ok(text) if text.trim().is_empty() => {
                self.error(value, field, "must not be empty");
                text
            }
            Ok(text) => text,
            Err(message) => {
                self.error(value, field, message);
                value.value.clone()
            }
        }
    }

    fn opt_text(&mut self, value: &Option<Text>, field: &str) -> Option<String> {
        value.as_ref().map(|v| self.text(v, field))
    }

    /// A name that must pass `valid`, else `explain` tells what is wrong.
    fn checked(&mut self, value: &Text, field: &str, valid: impl Fn(&str) -> Result<(), String>) -> String {
        let text = self.text(value, field);
        if let Err(message) = valid(&text) {
            self.error(value, field, message);
        }
        text
    }

    fn env_name(&mut self, value: &Text, field: &str) -> String {
        self.checked(value, field, |name| {
            if is_env_name(name) {
                Ok(())
            } else {
                // The text is not repeated: it may be the secret itself, written in the wrong place.
                Err("is not an environment variable name (letters, digits, `_`): give the variable's NAME, never its value".into())
            }
        })
    }

    fn check(mut self, raw: RawFile, path: &Path) -> Result<Config, Vec<Diagnostic>> {
        if raw.version.value != FORMAT_VERSION {
            self.error(
                &raw.version,
                "version",
                format!("unsupported version {}; this stagecoach reads version {FORMAT_VERSION}", raw.version.value),
            );
        }
        let credential_names: Vec<String> = raw.credentials.keys().cloned().collect();
        let mut credentials = BTreeMap::new();
        let optional_credentials = raw
            .credentials
            .iter()
            .filter(|(_, c)| c.value.optional.as_ref().is_some_and(|o| o.value))
            .map(|(n, _)| n.clone())
            .collect();
        for (name, credential) in &raw.credentials {
            if let Some(credential) = self.credential(credential, &format!("credentials.{name}")) {
                credentials.insert(name.clone(), credential);
            }
        }
        let repositories = Repositories {
            dev: self.repository(&raw.repositories.dev, "repositories.dev", &credential_names),
            qa: self.repository(&raw.repositories.qa, "repositories.qa", &credential_names),
            release: raw
                .repositories
                .release
                .as_ref()
                .map(|release| self.repository(release, "repositories.release", &credential_names)),
        };
        let image = Image {
            repository: self.checked(&raw.image.repository, "image.repository", validate_image_repository),
            dockerfile: self.opt_text(&raw.image.dockerfile, "image.dockerfile").unwrap_or("Dockerfile".into()).into(),
            context: self.opt_text(&raw.image.context, "image.context").unwrap_or(".".into()).into(),
            credentials: self.reference(&raw.image.credentials, "image.credentials", &credential_names),
            verify_key: raw.image.verify_key.as_ref().map(|key| {
                self.checked(key, "image.verify_key", |p| {
                    crate::files::relative_path(Path::new(p)).map_err(|e| {
                        format!(
                            "{}; the key is read from inside this repository",
                            e.to_string().split_once(": ").map_or(e.to_string(), |(_, why)| why.to_string())
                        )
                    })
                })
                .into()
            }),
        };
        let chart = self.chart(&raw.chart, &credential_names);
        if repositories.release.is_none() && chart.oci.is_none() {
            self.error(
                &raw.repositories.qa.url,
                "repositories.release",
                "releases need somewhere to go: `repositories.release` (a Helm chart repository) or `chart.oci`",
            );
        }
        let cluster = self.cluster(&raw.cluster);
        let pulled_images = raw
            .cluster
            .value
            .pulled_images
            .iter()
            .flatten()
            .map(|image| self.checked(image, "cluster.pulled_images", validate_image_reference))
            .collect();
        let install_timeout = match &raw.cluster.value.install_timeout {
            Some(value) => self.duration(value, "cluster.install_timeout", DEFAULT_INSTALL_TIMEOUT),
            None => DEFAULT_INSTALL_TIMEOUT,
        };
        let credential_vars: Vec<&str> = credentials.values().flat_map(Credential::env_names).collect();
        let commands = Commands {
            build: self.command(&raw.commands.build, "commands.build", &credential_vars),
            unit_tests: self.command(&raw.commands.unit_tests, "commands.unit_tests", &credential_vars),
            integration_tests: self.command(
                &raw.commands.integration_tests,
                "commands.integration_tests",
                &credential_vars,
            ),
        };
        let tools = match &raw.tools {
            Some(t) => Tools {
                kind: self.opt_text(&t.kind, "tools.kind").map(PathBuf::from),
                helm: self.opt_text(&t.helm, "tools.helm").map(PathBuf::from),
                kubectl: self.opt_text(&t.kubectl, "tools.kubectl").map(PathBuf::from),
            },
            None => Tools::default(),
        };
        let network_timeout = raw
            .network
            .as_ref()
            .and_then(|n| n.timeout.as_ref())
            .map(|value| self.duration(value, "network.timeout", DEFAULT_NETWORK_TIMEOUT));
        if !self.diagnostics.is_empty() {
            self.diagnostics.sort_by_key(|d| (d.line, d.column));
            return Err(self.diagnostics);
        }
        let root = repository_root(path);
        let mut repositories = repositories;
        for repo in [Some(&mut repositories.dev), Some(&mut repositories.qa), repositories.release.as_mut()]
            .into_iter()
            .flatten()
        {
            if is_relative_path_url(&repo.url) {
                repo.url = root.join(&repo.url).display().to_string();
            }
        }
        let mut cluster = cluster;
        if let Cluster::Kind { cache_dir: Some(dir), .. } = &mut cluster
            && dir.is_relative()
        {
            *dir = root.join(&*dir);
        }
        let mut tools = tools;
        for tool in [&mut tools.kind, &mut tools.helm, &mut tools.kubectl].into_iter().flatten() {
            if tool.is_relative() && tool.components().count() > 1 {
                *tool = root.join(&*tool);
            }
        }
        Ok(Config {
            file: path.to_path_buf(),
            root,
            repositories,
            image,
            chart,
            cluster,
            pulled_images,
            install_timeout,
            commands,
            tools,
            network_timeout,
            credentials,
            optional_credentials,
        })
    }

    fn reference(&mut self, value: &Option<Text>, field: &str, names: &[String]) -> Option<String> {
        let value = value.as_ref()?;
        let name = self.text(value, field);
        if !names.contains(&name) {
            let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = match did_you_mean(&name, &candidates) {
                Some(best) => format!("; did you mean `{best}`?"),
                None if names.is_empty() => "; add it under `credentials:`".to_string(),
                None => format!("; defined: {}", names.join(", ")),
            };
            self.error(value, field, format!("no credentials named `{name}`{hint}"));
        }
        Some(name)
    }

    fn repository(&mut self, raw: &RawRepository, field: &str, names: &[String]) -> Repository {
        let url = self.checked(&raw.url, &format!("{field}.url"), validate_git_url);
        let branch = match &raw.branch {
            Some(branch) => self.checked(branch, &format!("{field}.branch"), |b| {
                if git2::Reference::is_valid_name(&format!("refs/heads/{b}")) {
                    Ok(())
                } else {
                    Err(format!("{b:?} is not a valid git branch name"))
                }
            }),
            None => "main".to_string(),
        };
        let credentials = self.reference(&raw.credentials, &format!("{field}.credentials"), names);
        Repository { url, branch, credentials }
    }

    fn chart(&mut self, raw: &RawChart, credential_names: &[String]) -> Chart {
        let name = self.checked(&raw.name, "chart.name", validate_chart_name);
        let release_name = match &raw.release_name {
            Some(value) => self.checked(value, "chart.release_name", validate_chart_name),
            None => name.clone(),
        };
        let mut key = |value: &Option<Text>, field: &str, default: &str| match value {
            Some(value) => self.checked(value, field, validate_dotted_key),
            None => default.to_string(),
        };
        let image_repository_key = key(&raw.image_repository_key, "chart.image_repository_key", "image.repository");
        let image_tag_key = key(&raw.image_tag_key, "chart.image_tag_key", "image.tag");
        let image_digest_key = key(&raw.image_digest_key, "chart.image_digest_key", "image.digest");
        let drop = match &raw.drop {
            Some(list) => list.iter().map(|item| self.text(item, "chart.drop")).collect(),
            None => DEFAULT_DROP.iter().map(ToString::to_string).collect(),
        };
        let base_url = raw.base_url.as_ref().map(|value| {
            self.checked(value, "chart.base_url", |url| {
                if url.starts_with("http://") || url.starts_with("https://") {
                    Ok(())
                } else {
                    Err(format!("{url:?} is not an http(s) URL"))
                }
            })
        });
        let oci = raw.oci.as_ref().map(|value| OciRepository {
            url: self.checked(value, "chart.oci", |url| match url.strip_prefix("oci://") {
                Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
                _ => Err(format!("{url:?} is not an OCI repository; write oci://HOST[:PORT]/PATH")),
            }),
            credentials: self.reference(&raw.oci_credentials, "chart.oci_credentials", credential_names),
            plain_http: raw.oci_plain_http.unwrap_or(false),
        });
        Chart {
            base_url,
            oci,
            path: match &raw.path {
                // Inside the QA repository: stagecoach writes there.
                Some(path) => self
                    .checked(path, "chart.path", |p| {
                        crate::files::relative_path(Path::new(p)).map_err(|e| {
                            e.to_string().split_once(": ").map_or(e.to_string(), |(_, why)| why.to_string())
                        })
                    })
                    .into(),
                None => ".".into(),
            },
            name,
            image_repository_key,
            image_tag_key,
            image_digest_key,
            release_name,
            drop,
        }
    }

    fn cluster(&mut self, section: &Spanned<RawCluster>) -> Cluster {
        let raw = &section.value;
        let provider = self.opt_text(&raw.provider, "cluster.provider").unwrap_or("kind".into());
        let only_for = |checker: &mut Self, value: &Option<Text>, key: &str, other: &str| {
            if let Some(value) = value {
                checker.error(value, &format!("cluster.{key}"), format!("only used with provider `{other}`"));
            }
        };
        match provider.as_str() {
            "kind" => {
                only_for(self, &raw.kubeconfig, "kubeconfig", "existing");
                only_for(self, &raw.context, "context", "existing");
                let node_image = match &raw.node_image {
                    Some(value) => self.checked(value, "cluster.node_image", validate_image_reference),
                    None => {
                        self.error(
                            section,
                            "cluster.node_image",
                            "provider `kind` needs `node_image` (e.g. kindest/node:v1.33.1): it pins the cluster and keys the node image cache",
                        );
                        String::new()
                    }
                };
                Cluster::Kind {
                    name: match &raw.name {
                        Some(value) => self.checked(value, "cluster.name", validate_cluster_name),
                        None => "stagecoach".into(),
                    },
                    node_image,
                    cache_dir: self.opt_text(&raw.cache_dir, "cluster.cache_dir").map(PathBuf::from),
                    config: self.opt_text(&raw.config, "cluster.config").map(PathBuf::from),
                }
            }
            "existing" => {
                for (value, key) in [
                    (&raw.name, "name"),
                    (&raw.node_image, "node_image"),
                    (&raw.cache_dir, "cache_dir"),
                    (&raw.config, "config"),
                ] {
                    only_for(self, value, key, "kind");
                }
                Cluster::Existing {
                    kubeconfig: self.opt_text(&raw.kubeconfig, "cluster.kubeconfig").map(PathBuf::from),
                    context: self.opt_text(&raw.context, "cluster.context"),
                }
            }
            other => {
                let at = raw.provider.as_ref().expect("a provider other than the default was written");
                let hint = did_you_mean(other, &["kind", "existing"])
                    .map(|b| format!("did you mean `{b}`? "))
                    .unwrap_or_default();
                self.error(
                    at,
                    "cluster.provider",
                    format!("unknown provider `{other}`; {hint}expected `kind` or `existing`"),
                );
                Cluster::Existing { kubeconfig: None, context: None }
            }
        }
    }

    /// A duration (`90s`, `30m`, `1h30m`) longer than 0s and at most 24h; `default` after an error.
    fn duration(&mut self, value: &Text, field: &str, default: Duration) -> Duration {
        let text = self.text(value, field);
        match parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                self.error(value, field, "must be longer than 0s");
                default
            }
            Ok(d) if d > MAX_TIMEOUT => {
                self.error(value, field, "must be at most 24h");
                default
            }
            Ok(d) => d,
            Err(message) => {
                self.error(value, field, message);
                default
            }
        }
    }

    fn command(&mut self, raw: &RawCommand, field: &str, credential_vars: &[&str]) -> Command {
        // Not interpolated: the shell expands `$VAR` itself when the command runs.
        if raw.run.value.trim().is_empty() {
            self.error(&raw.run, &format!("{field}.run"), "must not be empty");
        }
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(value) => self.duration(value, &format!("{field}.timeout"), DEFAULT_TIMEOUT),
        };
        let mut env_passthrough = Vec::new();
        for value in raw.env_passthrough.iter().flatten() {
            let field = format!("{field}.env_passthrough");
            let name = self.env_name(value, &field);
            if !credential_vars.contains(&name.as_str()) {
                let hint = match did_you_mean(&name, credential_vars) {
                    Some(best) => format!("did you mean `{best}`? "),
                    None => String::new(),
                };
                self.error(
                    value,
                    &field,
                    format!(
                        "`{name}` is no variable of `credentials:`; {hint}only those are held back from commands, \
                         every other variable reaches them anyway"
                    ),
                );
            }
            env_passthrough.push(name);
        }
        Command { run: raw.run.value.clone(), timeout, env_passthrough }
    }

    fn credential(&mut self, raw: &Spanned<RawCredential>, field: &str) -> Option<Credential> {
        let entry = &raw.value;
        let username = match (&entry.username, &entry.username_env) {
            (Some(_), Some(env)) => {
                self.error(env, &format!("{field}.username_env"), "give `username` or `username_env`, not both");
                Username::Default
            }
            (Some(name), None) => Username::Literal(self.text(name, &format!("{field}.username"))),
            (None, Some(env)) => Username::FromEnv(self.env_name(env, &format!("{field}.username_env"))),
            (None, None) => Username::Default,
        };
        let secrets: Vec<(&Text, &str)> = [
            (&entry.token_env, "token_env"),
            (&entry.password_env, "password_env"),
            (&entry.ssh_key_path, "ssh_key_path"),
        ]
        .into_iter()
        .filter_map(|(value, key)| value.as_ref().map(|v| (v, key)))
        .collect();
        match secrets.as_slice() {
            [] => {
                self.error(raw, field, "needs one of `token_env`, `password_env` or `ssh_key_path`");
                None
            }
            [(value, "token_env")] => {
                Some(Credential::Token { username, token_env: self.env_name(value, &format!("{field}.token_env")) })
            }
            [(value, "password_env")] => {
                if username == Username::Default {
                    self.error(value, field, "`password_env` needs `username` or `username_env`");
                }
                Some(Credential::Password {
                    username,
                    password_env: self.env_name(value, &format!("{field}.password_env")),
                })
            }
            [(value, _)] => Some(Credential::SshKey {
                username,
                key_path: self.text(value, &format!("{field}.ssh_key_path")).into(),
            }),
            [_, (second, key), ..] => {
                self.error(
                    second,
                    &format!("{field}.{key}"),
                    "give only one of `token_env`, `password_env`, `ssh_key_path`",
                );
                None
            }
        }
    }
}

/// The directory that holds `pipelines/`, or the file's own directory.
fn repository_root(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new(""));
    let root = if dir.file_name().is_some_and(|n| n == "pipelines") { dir.parent().unwrap_or(dir) } else { dir };
    if root.as_os_str().is_empty() { PathBuf::from(".") } else { root.to_path_buf() }
}

/// A repository given as a relative path (not a URL, not `host:path`): relative to the root.
fn is_relative_path_url(url: &str) -> bool {
    let scp_like = url.split('/').next().is_some_and(|first| first.contains(':'));
    !url.contains("://") && !scp_like && Path::new(url).is_relative()
}

fn validate_git_url(url: &str) -> Result<(), String> {
    if let Some((scheme, rest)) = url.split_once("://") {
        if !["https", "http", "ssh", "git", "file"].contains(&scheme) {
            return Err(format!("unsupported URL scheme `{scheme}`; use https, http, ssh, git, file or a path"));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo.contains(':')
        {
            return Err("credentials must not be written in URLs; name environment variables under `credentials:` \
                        and refer to them with `credentials: NAME`"
                .into());
        }
    }
    Ok(())
}

/// A Helm chart name, as Helm itself accepts them.
fn validate_chart_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("{name:?} names a directory, not a chart; Helm refuses it too"));
    }
    if name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid chart name: use letters, digits, `-`, `_` and `.`"))
    }
}

fn validate_dotted_key(key: &str) -> Result<(), String> {
    if key
        .split('.')
        .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)))
    {
        Ok(())
    } else {
        Err(format!("{key:?} is not a dotted key like `image.tag`"))
    }
}

fn validate_cluster_name(name: &str) -> Result<(), String> {
    let ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid cluster name: use lowercase letters, digits and `-`"))
    }
}

/// A repository path without tag or digest; stagecoach adds the tags itself.
fn validate_image_repository(repository: &str) -> Result<(), String> {
    let last = repository.rsplit('/').next().unwrap_or_default();
    if repository.contains('@') {
        return Err("must not carry a digest: stagecoach tags and pushes the image itself".into());
    }
    if let Some((_, tag)) = last.split_once(':') {
        return Err(format!(
            "must not carry a tag (`:{tag}`): stagecoach tags the image with the commit or release tag"
        ));
    }
    validate_image_reference(repository)
}

/// `[host[:port]/]path[:tag]` with lowercase path components.
fn validate_image_reference(reference: &str) -> Result<(), String> {
    let (name, digest) = reference.split_once('@').unwrap_or((reference, ""));
    if !digest.is_empty() && !is_sha256_digest(digest) {
        return Err(format!("{reference:?}: the digest after `@` must be sha256: and 64 hex digits"));
    }
    let (name, _tag) = match name.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (reference, None),
    };
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost") {
        parts.remove(0);
    }
    let component_ok = |p: &&str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    if parts.iter().all(component_ok) {
        Ok(())
    } else {
        Err(format!("{reference:?} is not a valid image name: use lowercase letters, digits, `.`, `_`, `-` and `/`"))
    }
}

/// `sha256:` and 64 lowercase hex digits: an image manifest digest.
pub fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_table() {
        let env = |name: &str| match name {
            "HOST" => Some("git.local".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases: [(&str, &str, Result<&str, &str>); 10] = [
            ("plain text", "main", Ok("main")),
            ("one variable", "https://${HOST}/qa.git", Ok("https://git.local/qa.git")),
            ("default unused", "${HOST:-other}", Ok("git.local")),
            ("default used", "${MISSING:-fallback}", Ok("fallback")),
            ("empty counts as unset", "${EMPTY:-fallback}", Ok("fallback")),
            ("escaped dollar", "cost $$5", Ok("cost $5")),
            ("lone dollar kept", "a$b", Ok("a$b")),
            ("unset", "${MISSING}", Err("environment variable MISSING is not set")),
            ("unclosed", "${HOST", Err("without a closing")),
            ("bad name", "${1X}", Err("is not a variable name")),
        ];
        for (name, input, want) in cases {
            let got = interpolate(input, &env);
            match (want, &got) {
                (Ok(want), Ok(got)) => assert_eq!(got, want, "case {name}"),
                (Err(want), Err(got)) => assert!(got.contains(want), "case {name}: {got}"),
                _ => panic!("case {name}: got {got:?}"),
            }
        }
    }

    #[test]
    fn duration_table() {
        let ok = [("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2h", 7200), ("0s", 0)];
        for (text, secs) in ok {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
            if secs > 0 {
                assert_eq!(parse_duration(&format_duration(Duration::from_secs(secs))), Ok(Duration::from_secs(secs)));
            }
        }
        for bad in ["", "30", "m", "5 min", "1.5h", "-3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(format_duration(Duration::from_millis(250)), "0.25s");
    }

    #[test]
    fn did_you_mean_table() {
        let keys = ["url", "branch", "credentials"];
        for (input, want) in
            [("brnch", Some("branch")), ("credential", Some("credentials")), ("urll", Some("url")), ("zzz", None)]
        {
            assert_eq!(did_you_mean(input, &keys), want, "{input}");
        }
    }

    #[test]
    fn image_reference_table() {
        let cases = [
            ("127.0.0.1:5000/bitcoin-operator", true),
            ("localhost/op", true),
            ("ghcr.io/org/op", true),
            ("op", true),
            ("Op", false),
            ("reg.io/Org/op", false),
            ("reg.io//op", false),
        ];
        for (reference, ok) in cases {
            assert_eq!(validate_image_repository(reference).is_ok(), ok, "{reference}");
        }
        assert!(validate_image_repository("op:v1").unwrap_err().contains("must not carry a tag"));
        assert!(validate_image_reference("kindest/node:v1.33.1").is_ok());
    }
}
