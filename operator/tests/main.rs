//! The operator's tests: the reconciler against an in-memory API server, the mesh against
//! JSON-RPC servers on 127.0.0.x, the secret handling, the generated CRD, and (ignored unless a
//! kind cluster is at hand) the whole operator in a cluster.

mod binary;
mod crd;
mod fake;
mod kind;
mod manifests;
mod mesh;
mod policy;
mod rbac;
mod reconcile;
mod secret;
mod support;
