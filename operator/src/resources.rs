//! The objects a network is made of, built as pure functions of the network and the operator's
//! settings: a headless Service and a StatefulSet of bitcoind pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, ExecAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SecretEnvSource, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
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

/// How bitcoind pods are run when a network does not say.
#[derive(Clone, Debug)]
pub struct PodDefaults {
    pub image: String,
    pub pull_policy: String,
}

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
    StatefulSet {
        metadata: meta(network),
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
    let probe = format!(
        "exec bitcoin-cli -regtest -rpcport={RPC_PORT} -rpcuser=\"${USER_KEY}\" -rpcpassword=\"${PASSWORD_KEY}\" getnetworkinfo >/dev/null"
    );
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
                run_as_user: Some(1000),
                run_as_group: Some(1000),
                fs_group: Some(1000),
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
                readiness_probe: Some(Probe {
                    exec: Some(ExecAction { command: Some(vec!["sh".to_owned(), "-c".to_owned(), probe]) }),
                    initial_delay_seconds: Some(5),
                    period_seconds: Some(5),
                    timeout_seconds: Some(3),
                    failure_threshold: Some(3),
                    ..Probe::default()
                }),
                resources: network.spec.resources.clone(),
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

/// What differs between the StatefulSet found and the one wanted, in the parts the operator owns
/// (the API server fills in defaults elsewhere, so whole objects never compare equal).
pub fn drift(found: &StatefulSet, wanted: &StatefulSet) -> Vec<&'static str> {
    let replicas = |s: &StatefulSet| s.spec.as_ref().and_then(|s| s.replicas);
    let container = |s: &StatefulSet| {
        let pod = s.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        pod.and_then(|p| p.containers.iter().find(|c| c.name == CONTAINER).cloned()).unwrap_or_default()
    };
    let (fc, wc) = (container(found), container(wanted));
    let mut fields = Vec::new();
    if replicas(found) != replicas(wanted) {
        fields.push("replicas");
    }
    if fc.image != wc.image {
        fields.push("image");
    }
    if fc.image_pull_policy != wc.image_pull_policy {
        fields.push("imagePullPolicy");
    }
    if fc.resources.unwrap_or_default() != wc.resources.unwrap_or_default() {
        fields.push("resources");
    }
    if (fc.env, fc.env_from) != (wc.env, wc.env_from) || fc.args != wc.args {
        fields.push("credentials");
    }
    fields
}

/// Whether `object` is controlled by `network` (and not, say, a StatefulSet someone made by hand
/// under the same name, which the operator must not take over).
pub fn controlled_by<K: Resource>(object: &K, network: &BitcoinNetwork) -> bool {
    let uid = network.uid();
    object.owner_references().iter().any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}
