//! RPC credentials. They come from the Secret a network names, read with one GET: the operator
//! never lists or watches Secrets, so its role can name the few it may read (`resourceNames`).

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::Error;

pub const USER_KEY: &str = "BITCOIN_RPC_USER";
pub const PASSWORD_KEY: &str = "BITCOIN_RPC_PASSWORD";
/// Used by networks that name no secret: a throwaway regtest network, reachable only in-cluster.
pub const DEFAULT_USER: &str = "bitcoin";
pub const DEFAULT_PASSWORD: &str = "regtest";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    pub fn defaults() -> Self {
        Self { user: DEFAULT_USER.to_owned(), password: DEFAULT_PASSWORD.to_owned() }
    }
}

// Hand-written so that a `{:?}` in a log line can never print the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<hidden>").finish()
    }
}

/// The Secret a network names, which must exist (its pods could not start without it).
pub async fn read(secrets: &Api<Secret>, name: &str) -> Result<Secret, Error> {
    let secret = secrets.get_opt(name).await.map_err(Error::kube("read the RPC secret"))?;
    secret.ok_or_else(|| Error::Secret {
        name: name.to_owned(),
        problem: format!(
            "does not exist in the network's namespace; create it with the keys {USER_KEY} and {PASSWORD_KEY} and the label {}={}",
            crate::policy::RPC_CREDENTIALS_LABEL.0,
            crate::policy::RPC_CREDENTIALS_LABEL.1
        ),
    })
}

/// The credentials in a Secret [`read`] returned: both keys must be present, non-empty UTF-8.
pub fn from_secret(name: &str, secret: &Secret) -> Result<Credentials, Error> {
    let value = |key: &str| -> Result<String, Error> {
        let bytes = secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone());
        let text = match bytes {
            Some(bytes) => String::from_utf8(bytes).map_err(|_| format!("key {key} is not UTF-8 text")),
            // stringData is write-only on the server, but fixtures and dry runs carry it.
            None => {
                secret.string_data.as_ref().and_then(|d| d.get(key)).cloned().ok_or_else(|| format!("has no key {key}"))
            }
        };
        match text {
            Ok(text) if !text.is_empty() => Ok(text),
            Ok(_) => Err(Error::Secret { name: name.to_owned(), problem: format!("key {key} is empty") }),
            Err(problem) => Err(Error::Secret { name: name.to_owned(), problem }),
        }
    };
    Ok(Credentials { user: value(USER_KEY)?, password: value(PASSWORD_KEY)? })
}
