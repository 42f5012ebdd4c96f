//! bitcoin-operator: a Kubernetes controller that turns BitcoinNetwork resources into bitcoind
//! regtest networks.
//!
//! Only the crate exists so far: the controller, its CRD and binaries are still to be written.
