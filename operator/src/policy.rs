//! What a network may ask of the operator. Whoever may create a BitcoinNetwork could otherwise
//! have the operator mount any Secret of the namespace into an image of their choice (the kubelet
//! mounts it; the operator's own read permission does not come into it): a confused deputy.

use k8s_openapi::api::core::v1::Secret;

use crate::crd::BitcoinNetwork;

/// A Secret a network may name must say it holds RPC credentials for bitcoind.
pub const RPC_CREDENTIALS_LABEL: (&str, &str) = ("bitcoin.stagecoach.dev/rpc-credentials", "true");

/// Why a network is not built as asked. The StatefulSet is left as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "secret {name} is not labelled {}={:?}; label it to let networks use it for RPC credentials",
        RPC_CREDENTIALS_LABEL.0,
        RPC_CREDENTIALS_LABEL.1
    )]
    SecretNotLabelled { name: String },
    #[error("image {image} is not allowed; the operator runs images of {} (--allowed-images)", .allowed.join(", "))]
    ImageNotAllowed { image: String, allowed: Vec<String> },
}

impl Refusal {
    /// The reason of the event and of the status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::SecretNotLabelled { .. } => "SecretNotLabelled",
            Refusal::ImageNotAllowed { .. } => "ImageNotAllowed",
        }
    }
}

/// The image repositories networks may name in `spec.image` (any tag or digest of them).
#[derive(Clone, Debug)]
pub struct AllowedImages(Vec<String>);

impl AllowedImages {
    /// From image references or repositories: `bitcoin/bitcoin:28.1` allows `bitcoin/bitcoin`.
    pub fn new<S: AsRef<str>>(images: impl IntoIterator<Item = S>) -> Self {
        let mut repositories: Vec<String> = images.into_iter().map(|i| repository(i.as_ref()).to_owned()).collect();
        repositories.sort();
        repositories.dedup();
        Self(repositories)
    }

    pub fn allows(&self, image: &str) -> bool {
        self.0.iter().any(|r| r == repository(image))
    }
}

/// `registry:5000/name:tag@sha256:…` → `registry:5000/name`
pub fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    match image.rsplit_once(':') {
        // A colon after the last slash starts a tag; before it, it is a registry's port.
        Some((name, tag)) if !tag.contains('/') => name,
        _ => image,
    }
}

/// The first thing the network asks for that it may not have, given the Secret it names.
pub fn refusal(network: &BitcoinNetwork, secret: Option<&Secret>, allowed: &AllowedImages) -> Option<Refusal> {
    if let Some(image) = &network.spec.image
        && !allowed.allows(image)
    {
        return Some(Refusal::ImageNotAllowed { image: image.clone(), allowed: allowed.0.clone() });
    }
    if let (Some(name), Some(secret)) = (&network.spec.secret, secret) {
        let labelled = secret.metadata.labels.as_ref().and_then(|l| l.get(RPC_CREDENTIALS_LABEL.0));
        if labelled.map(String::as_str) != Some(RPC_CREDENTIALS_LABEL.1) {
            return Some(Refusal::SecretNotLabelled { name: name.clone() });
        }
    }
    None
}
