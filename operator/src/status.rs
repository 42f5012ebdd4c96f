//! The status a network should show, computed from it and its pods alone (no API calls).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::crd::{BitcoinNetwork, BitcoinNetworkStatus, NodeStatus};
use crate::resources::object_name;

pub const READY: &str = "Ready";

/// One entry per pod of the StatefulSet, by ordinal. Pods being deleted are listed as not ready,
/// so the mesh drops them before they go.
pub fn nodes(network: &BitcoinNetwork, pods: &[Arc<Pod>]) -> Vec<NodeStatus> {
    let set = object_name(network);
    let namespace = network.namespace().unwrap_or_default();
    let mut nodes: Vec<NodeStatus> = pods
        .iter()
        .filter_map(|pod| {
            let name = pod.name_any();
            let ordinal = name.strip_prefix(&set)?.strip_prefix('-')?.parse().ok()?;
            let status = pod.status.as_ref();
            let ready = pod.metadata.deletion_timestamp.is_none()
                && status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(NodeStatus {
                ordinal,
                ready,
                ip: status.and_then(|s| s.pod_ip.clone()),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                dns_name: format!("{name}.{set}.{namespace}.svc.cluster.local"),
            })
        })
        .collect();
    nodes.sort_by_key(|n| n.ordinal);
    nodes
}

/// Why a network is not ready whatever its pods say: the operator refused what it asks for, or
/// its last reconcile failed. The Ready condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub reason: &'static str,
    pub message: String,
}

impl From<&crate::policy::Refusal> for Blocked {
    fn from(refusal: &crate::policy::Refusal) -> Self {
        Blocked { reason: refusal.reason(), message: refusal.to_string() }
    }
}

impl From<&crate::Error> for Blocked {
    fn from(error: &crate::Error) -> Self {
        Blocked { reason: "ReconcileFailed", message: error.to_string() }
    }
}

/// The whole status. The Ready condition keeps its `lastTransitionTime` while its status stays
/// the same, so an unchanged network computes an equal status and nothing is written. A network
/// that is blocked is not ready, and the condition says why.
pub fn status(
    network: &BitcoinNetwork,
    pods: &[Arc<Pod>],
    now: Time,
    blocked: Option<&Blocked>,
) -> BitcoinNetworkStatus {
    let nodes = nodes(network, pods);
    let desired = network.spec.nodes;
    let ready = nodes.iter().filter(|n| n.ready && n.ordinal < desired).count() as i32;
    let all_ready = ready == desired && nodes.len() as i32 == desired;
    let (status, reason, message) = match blocked {
        Some(blocked) => ("False", blocked.reason, blocked.message.clone()),
        None if all_ready => ("True", "AllNodesReady", format!("{ready} of {desired} nodes ready")),
        None => ("False", "NodesNotReady", format!("{ready} of {desired} nodes ready")),
    };
    let previous = network.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now,
    };
    let condition = Condition {
        type_: READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: network.metadata.generation,
        last_transition_time,
    };
    BitcoinNetworkStatus {
        ready_nodes: ready,
        nodes,
        conditions: vec![condition],
        observed_generation: network.metadata.generation,
    }
}

/// IPs of the nodes that take part in the mesh.
pub fn ready_ips(status: &BitcoinNetworkStatus) -> Vec<String> {
    status.nodes.iter().filter(|n| n.ready).filter_map(|n| n.ip.clone()).collect()
}
