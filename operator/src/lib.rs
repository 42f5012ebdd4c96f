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
    #[error("cannot list BitcoinNetworks ({0}); is the CRD installed? The chart installs it from chart-template/crds/")]
    CrdMissing(#[source] Box<kube::Error>),
}

impl Error {
    /// `map_err(Error::kube("read the Service"))`
    pub fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { action, source }
    }
}
