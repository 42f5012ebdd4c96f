//! The operator's tests: the reconciler against an in-memory API server, the mesh against
//! JSON-RPC servers on 127.0.0.x, the secret handling, the generated CRD, and (ignored unless a
//! kind cluster is at hand) the whole operator in a cluster; `real_api` runs it against a real
//! control plane (etcd and kube-apiserver) with the chart's own RBAC.

mod binary;
#[path = "../../tests/ci_cache.rs"]
mod ci_cache;
#[path = "../../tests/control_plane.rs"]
mod control_plane;
mod crd;
mod fake;
mod kind;
mod manifests;
mod mesh;
mod policy;
mod rbac;
mod real_api;
mod reconcile;
mod secret;
mod support;
