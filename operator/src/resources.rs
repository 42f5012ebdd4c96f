//! The objects a network is made of, built as pure functions of the network and the operator's
//! settings: a headless Service and a StatefulSet of bitcoind pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, ExecAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretEnvSource,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};

use crate::crd::BitcoinNetwork;
use crate::secret::{DEFAULT_PASSWORD, DEFAULT_USER, PASSWORD_KEY, USER_KEY};

pub const RPC_PORT: u16 = 18443;
pub const P2P_PORT: u16 = 18444;
/// Label naming the network a pod belongs to; the pod watch maps events back through it.
pub const NETWORK_LABEL: &str = "bitcoin.stagecoach.dev/network";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "bitcoin-operator");
const CONTAINER: &str = "bitcoind";
const DATA_DIR: &str = "/data";
/// StatefulSet pod names add `-<ordinal>` and a 10-character revision hash label must fit in 63.
pub const MAX_NAME_LEN: usize = 52;

/// The operator's `--bitcoind-image` unless it is given one (the chart passes its own).
pub const DEFAULT_IMAGE: &str = "bitcoin/bitcoin:28.1";

/// How bitcoind pods are run when a network does not say.
#[derive(Clone, Debug)]
pub struct PodDefaults {
    pub image: String,
    pub pull_policy: String,
    /// For networks without `spec.resources`.
    pub resources: ResourceRequirements,
}

impl PodDefaults {
    /// Enough for a regtest node with a small chain; a network can ask for more.
    pub fn new(image: &str, pull_policy: &str) -> Self {
        let quantities = |cpu: &str, memory: &str| {
            Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(cpu.to_owned())),
                ("memory".to_owned(), Quantity(memory.to_owned())),
            ]))
        };
        Self {
            image: image.to_owned(),
            pull_policy: pull_policy.to_owned(),
            resources: ResourceRequirements {
                requests: quantities("100m", "256Mi"),
                limits: quantities("1", "1Gi"),
                ..ResourceRequirements::default()
            },
        }
    }
}

/// Checks of `checkov --framework kubernetes` that do not apply to the StatefulSet, with why;
/// checkov reads them from these annotations.
const CHECKOV_SKIPS: &[(&str, &str)] = &[
    ("CKV_K8S_43", "the image is the operator's --bitcoind-image or the network's spec.image, by tag as given"),
    ("CKV_K8S_15", "IfNotPresent or as --bitcoind-pull-policy says: clusters that load images (kind) cannot pull"),
    ("CKV_K8S_35", "bitcoind takes RPC credentials as arguments only, expanded by the kubelet from the environment"),
    (
        "CKV2_K8S_6",
        "a network serves RPC and P2P to the user's own pods, which the operator cannot know; RPC needs the network's credentials",
    ),
];

/// Both objects share the network's name: pods are `<name>-<ordinal>.<name>.<namespace>.svc`.
pub fn object_name(network: &BitcoinNetwork) -> String {
    network.name_any()
}

pub fn selector(network: &BitcoinNetwork) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "bitcoind".to_owned()),
        (NETWORK_LABEL.to_owned(), network.name_any()),
    ])
}

fn labels(network: &BitcoinNetwork) -> BTreeMap<String, String> {
    let mut labels = selector(network);
    labels.insert("app.kubernetes.io/instance".to_owned(), network.name_any());
    labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
    labels
}

fn meta(network: &BitcoinNetwork) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(network)),
        namespace: network.namespace(),
        labels: Some(labels(network)),
        // A controller reference: garbage collection deletes both objects with the network.
        owner_references: network.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// Headless: every pod gets a stable DNS name, also before it is ready (peers are found by IP,
/// but people debugging a network use the names in the status).
pub fn service(network: &BitcoinNetwork) -> Service {
    let port = |name: &str, port: u16| ServicePort {
        name: Some(name.to_owned()),
        port: port.into(),
        ..ServicePort::default()
    };
    Service {
        metadata: meta(network),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector(network)),
            ports: Some(vec![port("rpc", RPC_PORT), port("p2p", P2P_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn stateful_set(network: &BitcoinNetwork, defaults: &PodDefaults) -> StatefulSet {
    let annotations = CHECKOV_SKIPS
        .iter()
        .enumerate()
        .map(|(i, (check, why))| (format!("checkov.io/skip{}", i + 1), format!("{check}={why}")))
        .collect();
    StatefulSet {
        metadata: ObjectMeta { annotations: Some(annotations), ..meta(network) },
        spec: Some(StatefulSetSpec {
            replicas: Some(network.spec.nodes),
            service_name: Some(object_name(network)),
            // Nodes do not depend on each other to start; the mesh is built once they are ready.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector { match_labels: Some(selector(network)), ..LabelSelector::default() },
            template: pod_template(network, defaults),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn pod_template(network: &BitcoinNetwork, defaults: &PodDefaults) -> PodTemplateSpec {
    // Kubernetes expands `$(VAR)` in args from the container's environment, envFrom included, so
    // the credentials never appear in the pod spec.
    let args = [
        "-regtest".to_owned(),
        "-printtoconsole".to_owned(),
        format!("-datadir={DATA_DIR}"),
        format!("-rpcport={RPC_PORT}"),
        format!("-port={P2P_PORT}"),
        "-rpcbind=0.0.0.0".to_owned(),
        // Pod IPs are not known in advance; the credentials guard the RPC port.
        "-rpcallowip=0.0.0.0/0".to_owned(),
        format!("-rpcuser=$({USER_KEY})"),
        format!("-rpcpassword=$({PASSWORD_KEY})"),
        "-fallbackfee=0.0002".to_owned(),
    ];
    // Exec probes are not expanded by Kubernetes, so a shell reads the same variables.
    let rpc_call = format!(
        "exec bitcoin-cli -regtest -rpcport={RPC_PORT} -rpcuser=\"${USER_KEY}\" -rpcpassword=\"${PASSWORD_KEY}\" getnetworkinfo >/dev/null"
    );
    let probe = |period: i32, failures: i32| Probe {
        exec: Some(ExecAction { command: Some(vec!["sh".to_owned(), "-c".to_owned(), rpc_call.clone()]) }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let (env, env_from) = match &network.spec.secret {
        Some(secret) => (
            None,
            Some(vec![EnvFromSource {
                // Not optional: without the secret the pod waits instead of starting with
                // credentials the operator does not know.
                secret_ref: Some(SecretEnvSource { name: secret.clone(), optional: Some(false) }),
                ..EnvFromSource::default()
            }]),
        ),
        None => (
            Some(vec![
                EnvVar { name: USER_KEY.to_owned(), value: Some(DEFAULT_USER.to_owned()), ..EnvVar::default() },
                EnvVar { name: PASSWORD_KEY.to_owned(), value: Some(DEFAULT_PASSWORD.to_owned()), ..EnvVar::default() },
            ]),
            None,
        ),
    };
    let port = |name: &str, port: u16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port.into(),
        ..ContainerPort::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels(network)), ..ObjectMeta::default() }),
        spec: Some(PodSpec {
            // bitcoind needs no Kubernetes API access.
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                // Above the UIDs of the host's users.
                run_as_user: Some(10001),
                run_as_group: Some(10001),
                fs_group: Some(10001),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: CONTAINER.to_owned(),
                image: Some(network.spec.image.clone().unwrap_or_else(|| defaults.image.clone())),
                image_pull_policy: Some(defaults.pull_policy.clone()),
                command: Some(vec!["bitcoind".to_owned()]),
                args: Some(args.into()),
                env,
                env_from,
                ports: Some(vec![port("rpc", RPC_PORT), port("p2p", P2P_PORT)]),
                readiness_probe: Some(probe(5, 3)),
                // Restarts a node that stopped answering for a minute (a regtest chain is cheap
                // to lose; a hung node in the mesh is not).
                liveness_probe: Some(probe(20, 3)),
                resources: Some(network.spec.resources.clone().unwrap_or_else(|| defaults.resources.clone())),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Capabilities::default() }),
                    ..SecurityContext::default()
                }),
                volume_mounts: Some(vec![VolumeMount {
                    name: "data".to_owned(),
                    mount_path: DATA_DIR.to_owned(),
                    ..VolumeMount::default()
                }]),
                ..Container::default()
            }],
            // A regtest chain is throwaway: it lives and dies with the pod.
            volumes: Some(vec![Volume {
                name: "data".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
    }
}

/// Whether `object` is controlled by `network` (and not, say, a StatefulSet someone made by hand
/// under the same name, which the operator must not take over).
pub fn controlled_by<K: Resource>(object: &K, network: &BitcoinNetwork) -> bool {
    let uid = network.uid();
    object.owner_references().iter().any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

/// The objects of a sample network (3 nodes, the chart's RPC secret, namespace `bitcoin`) under
/// the default settings, as YAML documents; `samplegen` prints them.
pub fn sample_yaml() -> String {
    let mut network = BitcoinNetwork::new(
        "sample",
        crate::crd::BitcoinNetworkSpec { nodes: 3, secret: Some("bitcoin-rpc".to_owned()), ..Default::default() },
    );
    network.metadata.namespace = Some("bitcoin".to_owned());
    // The API server gives every network a uid; the owner references name it.
    network.metadata.uid = Some("00000000-0000-4000-8000-000000000000".to_owned());
    let defaults = PodDefaults::new(DEFAULT_IMAGE, "IfNotPresent");
    let service = serde_saphyr::to_string(&service(&network)).expect("a Service serializes to YAML");
    let set = serde_saphyr::to_string(&stateful_set(&network, &defaults)).expect("a StatefulSet serializes to YAML");
    format!("# Generated by `cargo run -p bitcoin-operator --bin samplegen`; do not edit.\n---\n{service}---\n{set}")
}
