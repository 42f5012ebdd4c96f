//! The full mesh. bitcoind connects to one address per subnet bucket on its own, so nodes of one
//! pod network would not all find each other (seed, part V): every ready node gets every other
//! ready node in its addnode list, and nodes that are gone or not ready are taken out.

use std::collections::BTreeSet;

use futures::future::join_all;

use crate::rpc::{RpcClient, RpcError};
use crate::secret::Credentials;

/// What one sync changed, and what it could not do.
#[derive(Debug, Default)]
pub struct MeshReport {
    /// (node, peer) entries added.
    pub added: Vec<(String, String)>,
    /// (node, peer) entries removed.
    pub removed: Vec<(String, String)>,
    pub failures: Vec<RpcError>,
}

impl MeshReport {
    /// The distinct peers in `entries`, for an event's note.
    pub fn peers(entries: &[(String, String)]) -> Vec<&str> {
        entries.iter().map(|(_, peer)| peer.as_str()).collect::<BTreeSet<_>>().into_iter().collect()
    }
}

/// Brings the addnode list of every node in `ready` (IPs) to "all the others". Nodes are synced
/// concurrently; a node that fails does not stop the others.
pub async fn sync(rpc: &RpcClient, credentials: &Credentials, ready: &[String]) -> MeshReport {
    let wanted: BTreeSet<&str> = ready.iter().map(String::as_str).collect();
    let results = join_all(ready.iter().map(|node| sync_node(rpc, credentials, node, &wanted))).await;
    let mut report = MeshReport::default();
    for (node, result) in ready.iter().zip(results) {
        let (added, removed, failure) = result;
        report.added.extend(added.into_iter().map(|peer| (node.clone(), peer)));
        report.removed.extend(removed.into_iter().map(|peer| (node.clone(), peer)));
        report.failures.extend(failure);
    }
    report
}

async fn sync_node(
    rpc: &RpcClient,
    credentials: &Credentials,
    node: &str,
    ready: &BTreeSet<&str>,
) -> (Vec<String>, Vec<String>, Option<RpcError>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let known = match rpc.added_nodes(node, credentials).await {
        Ok(known) => known,
        Err(e) => return (added, removed, Some(e)),
    };
    let known: BTreeSet<&str> = known.iter().map(String::as_str).collect();
    for peer in ready.iter().filter(|p| **p != node && !known.contains(*p)) {
        match rpc.add_node(node, credentials, peer).await {
            Ok(()) => added.push(peer.to_string()),
            Err(e) => return (added, removed, Some(e)),
        }
    }
    for peer in known.iter().filter(|p| !ready.contains(*p) || **p == node) {
        match rpc.remove_node(node, credentials, peer).await {
            Ok(()) => removed.push(peer.to_string()),
            Err(e) => return (added, removed, Some(e)),
        }
    }
    (added, removed, None)
}
