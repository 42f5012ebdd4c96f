//! bitcoin-operator: a Kubernetes controller that turns BitcoinNetwork resources into bitcoind
//! regtest networks whose nodes all know each other.
//!
//! - [`crd`]: the custom resource; [`resources`]: the StatefulSet and Service built from it;
//! - [`controller`]: the reconciler and the kube-runtime controller around it;
//! - [`status`]: the node list from the pods; [`mesh`] and [`rpc`]: the addnode lists over JSON-RPC;
//! - [`secret`]: the RPC credentials.

pub mod controller;
pub mod crd;
pub mod mesh;
pub mod metrics;
pub mod policy;
pub mod resources;
pub mod rpc;
pub mod secret;
pub mod status;

/// Why a reconcile failed; the message becomes a Warning event on the network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not {action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("secret {name} {problem}")]
    Secret { name: String, problem: String },
    #[error("{kind} {name} exists but is not controlled by this BitcoinNetwork; delete or rename it")]
    NotOwned { kind: &'static str, name: String },
    #[error("the name {name} is too long: pod names need it to be at most {max} characters")]
    NameTooLong { name: String, max: usize },
    #[error("a BitcoinNetwork without a namespace")]
    NoNamespace,
    #[error("the mesh could not be updated on {failed} of {of} nodes; first: {first}")]
    Mesh { failed: usize, of: usize, first: rpc::RpcError },
    #[error(
        "the BitcoinNetwork CRD is not installed (the API server has no bitcoinnetworks.{}); the chart installs it from its crds/",
        crd::GROUP
    )]
    CrdMissing,
    #[error(
        "the operator may not list BitcoinNetworks (403 Forbidden: {0}); bind its ServiceAccount to the chart's ClusterRole"
    )]
    Forbidden(String),
    #[error("cannot reach the Kubernetes API: {0}")]
    Unreachable(#[source] Box<kube::Error>),
    #[error("the Kubernetes API refused to list BitcoinNetworks: {0}")]
    StartRefused(#[source] Box<kube::Error>),
}

impl Error {
    /// What the first call to the API server says about the cluster.
    pub fn at_start(error: kube::Error) -> Error {
        match error {
            kube::Error::Api(status) if status.code == 404 => Error::CrdMissing,
            kube::Error::Api(status) if status.code == 403 => Error::Forbidden(status.message),
            kube::Error::Api(_) => Error::StartRefused(Box::new(error)),
            other => Error::Unreachable(Box::new(other)),
        }
    }

    /// `map_err(Error::kube("read the Service"))`
    pub fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { action, source }
    }
}
