//! Credentials named in the pipeline file, read from the environment when a stage needs them.
//! Every secret read here is registered with [`Secrets`] so that it is masked everywhere.

use crate::config::{Config, Credential, Env, Username};
use crate::secrets::Secrets;
use crate::tools::docker::{self, RegistryAuth};
use crate::tools::git::Auth;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(pub String);

fn entry<'c>(config: &'c Config, name: &str) -> Result<&'c Credential, CredentialError> {
    config.credentials.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.credentials.keys().map(String::as_str).collect();
        CredentialError(format!(
            "no credentials named `{name}` in {}; defined: {}",
            config.file.display(),
            known.join(", ")
        ))
    })
}

fn read(env: Env<'_>, name: &str, var: &str) -> Result<String, CredentialError> {
    env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
        CredentialError(format!(
            "credentials `{name}`: environment variable {var} is not set; export it (the pipeline file names it)"
        ))
    })
}

fn username(env: Env<'_>, name: &str, user: &Username, default: &str) -> Result<String, CredentialError> {
    Ok(match user {
        Username::Default => default.to_string(),
        Username::Literal(user) => user.clone(),
        Username::FromEnv(var) => read(env, name, var)?,
    })
}

/// An optional entry whose secret variable is not set stands for "no credentials".
fn unset_optional(config: &Config, name: &str, credential: &Credential, env: Env<'_>) -> bool {
    config.optional_credentials.contains(name)
        && credential.secret_env_names().iter().any(|var| env(var).is_none_or(|v| v.is_empty()))
}

/// Git credentials: tokens and passwords go to libgit2's credentials callback.
pub fn git_auth(config: &Config, name: &str, env: Env<'_>, secrets: &mut Secrets) -> Result<Auth, CredentialError> {
    let credential = entry(config, name)?;
    if unset_optional(config, name, credential, env) {
        return Ok(Auth::None);
    }
    Ok(match credential {
        Credential::Token { username: user, token_env } => {
            let password = read(env, name, token_env)?;
            secrets.add(password.clone());
            Auth::UserPass { username: username(env, name, user, "x-access-token")?, password }
        }
        Credential::Password { username: user, password_env } => {
            let password = read(env, name, password_env)?;
            secrets.add(password.clone());
            Auth::UserPass { username: username(env, name, user, "")?, password }
        }
        Credential::SshKey { username: user, key_path } => {
            Auth::Ssh { username: username(env, name, user, "git")?, key_path: Some(config.resolve(key_path)) }
        }
    })
}

/// A repository's git credentials: its `credentials` entry, or none.
pub fn repo_auth(
    config: &Config,
    repo: &crate::config::Repository,
    env: Env<'_>,
    secrets: &mut Secrets,
) -> Result<Auth, CredentialError> {
    match &repo.credentials {
        Some(name) => git_auth(config, name, env, secrets),
        None => Ok(Auth::None),
    }
}

/// The image registry's credentials: see [`registry_auth_for`].
pub fn registry_auth(
    config: &Config,
    env: Env<'_>,
    secrets: &mut Secrets,
) -> Result<Option<RegistryAuth>, CredentialError> {
    let registry = docker::registry_of(&config.image.repository);
    registry_auth_for(config, config.image.credentials.as_deref(), registry, env, secrets)
}

/// Credentials for `registry`: the entry `credentials` names, else what `docker login` stored
/// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, or its credential helper), else none.
pub fn registry_auth_for(
    config: &Config,
    credentials: Option<&str>,
    registry: &str,
    env: Env<'_>,
    secrets: &mut Secrets,
) -> Result<Option<RegistryAuth>, CredentialError> {
    let named = credentials.map(|name| entry(config, name).map(|c| (name, c))).transpose()?;
    let auth = match named.filter(|(name, c)| !unset_optional(config, name, c, env)) {
        Some((name, credential)) => match credential {
            Credential::Password { username: user, password_env } => {
                let password = read(env, name, password_env)?;
                Some(RegistryAuth { username: username(env, name, user, "")?, password })
            }
            Credential::Token { username: user, token_env } => {
                let password = read(env, name, token_env)?;
                Some(RegistryAuth { username: username(env, name, user, "token")?, password })
            }
            Credential::SshKey { .. } => {
                return Err(CredentialError(format!(
                    "credentials `{name}`: a registry takes a user and password or token, not an SSH key"
                )));
            }
        },
        None if credentials.is_some() => None,
        None => docker::docker_config(env).and_then(|text| docker::auth_from_docker_config(&text, registry)),
    };
    if let Some(auth) = &auth {
        secrets.add(auth.password.clone());
    }
    Ok(auth)
}

/// The key charts are signed with: the ASCII-armored OpenPGP private key in
/// STAGECOACH_SIGNING_KEY, unlocked with STAGECOACH_SIGNING_PASSPHRASE when that is set (and
/// masked from then on); none when the variable is unset.
pub fn signing_key(
    env: Env<'_>,
    secrets: &mut Secrets,
) -> Result<Option<crate::chart::provenance::SigningKey>, CredentialError> {
    let Some(armored) = env("STAGECOACH_SIGNING_KEY").filter(|k| !k.trim().is_empty()) else { return Ok(None) };
    let passphrase = env("STAGECOACH_SIGNING_PASSPHRASE");
    if let Some(passphrase) = &passphrase {
        secrets.add(passphrase.clone());
    }
    crate::chart::provenance::SigningKey::from_armored(&armored, passphrase.as_deref())
        .map(Some)
        .map_err(|e| CredentialError(format!("STAGECOACH_SIGNING_KEY: {e}")))
}

/// The cosign key images are signed with: STAGECOACH_COSIGN_KEY (the key `cosign
/// generate-key-pair` wrote, or the path of that file) opened with STAGECOACH_COSIGN_PASSWORD;
/// none when the variable is unset. Both are masked from here on.
pub fn cosign_key(env: Env<'_>, secrets: &mut Secrets) -> Result<Option<crate::cosign::CosignKey>, CredentialError> {
    let Some(value) = env("STAGECOACH_COSIGN_KEY").filter(|k| !k.trim().is_empty()) else { return Ok(None) };
    let password = env("STAGECOACH_COSIGN_PASSWORD").unwrap_or_default();
    if !password.is_empty() {
        secrets.add(password.clone());
    }
    let pem = if value.trim_start().starts_with("-----BEGIN") {
        secrets.add(value.clone());
        value.into_bytes()
    } else {
        std::fs::read(&value).map_err(|e| CredentialError(format!("STAGECOACH_COSIGN_KEY: reading {value}: {e}")))?
    };
    crate::cosign::CosignKey::from_pem(&pem, password.as_bytes()).map(Some).map_err(|e| {
        CredentialError(format!("STAGECOACH_COSIGN_KEY: {e}; its password is read from STAGECOACH_COSIGN_PASSWORD"))
    })
}

/// Every secret the pipeline file names that is set, so that masking starts before any stage.
pub fn known_secrets(config: &Config, env: Env<'_>) -> Secrets {
    let mut secrets = Secrets::new();
    for var in config.secret_env_names() {
        if let Some(value) = env(var) {
            secrets.add(value);
        }
    }
    secrets
}
