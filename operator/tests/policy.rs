//! Which images a network may name, and which Secrets.

use bitcoin_operator::crd::{BitcoinNetwork, BitcoinNetworkSpec};
use bitcoin_operator::policy::{AllowedImages, Refusal, refusal, repository};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[test]
fn the_repository_of_an_image_reference() {
    let cases = [
        ("name and tag", "bitcoin/bitcoin:28.1", "bitcoin/bitcoin"),
        ("no tag", "bitcoin/bitcoin", "bitcoin/bitcoin"),
        ("a registry with a port", "127.0.0.1:5000/bitcoind:1", "127.0.0.1:5000/bitcoind"),
        ("a registry with a port, no tag", "127.0.0.1:5000/bitcoind", "127.0.0.1:5000/bitcoind"),
        ("a digest", "bitcoin/bitcoin@sha256:abc", "bitcoin/bitcoin"),
        ("tag and digest", "ghcr.io/x/bitcoin:29.0@sha256:abc", "ghcr.io/x/bitcoin"),
    ];
    for (name, image, expected) in cases {
        assert_eq!(repository(image), expected, "{name}");
    }
}

fn network(image: Option<&str>, secret: Option<&str>) -> BitcoinNetwork {
    let spec = BitcoinNetworkSpec {
        nodes: 1,
        image: image.map(str::to_owned),
        secret: secret.map(str::to_owned),
        ..Default::default()
    };
    BitcoinNetwork::new("net", spec)
}

fn secret(label: Option<&str>) -> Secret {
    let labels = label.map(|v| [("bitcoin.stagecoach.dev/rpc-credentials".to_owned(), v.to_owned())].into());
    Secret { metadata: ObjectMeta { name: Some("rpc".into()), labels, ..ObjectMeta::default() }, ..Secret::default() }
}

#[test]
fn a_network_gets_what_it_asks_for_only_from_allowed_images_and_labelled_secrets() {
    let allowed = AllowedImages::new(["bitcoin/bitcoin:28.1", "127.0.0.1:5000/bitcoind"]);
    let cases: [(&str, BitcoinNetwork, Option<Secret>, Option<&str>); 9] = [
        ("no image, no secret", network(None, None), None, None),
        ("another tag of the default image", network(Some("bitcoin/bitcoin:29.0"), None), None, None),
        ("a digest of an allowed repository", network(Some("127.0.0.1:5000/bitcoind@sha256:1"), None), None, None),
        ("another repository", network(Some("evil/bitcoin:28.1"), None), None, Some("ImageNotAllowed")),
        (
            "a prefix of an allowed repository",
            network(Some("bitcoin/bitcoin-evil:1"), None),
            None,
            Some("ImageNotAllowed"),
        ),
        (
            "another registry, same path",
            network(Some("evil.io/bitcoin/bitcoin:28.1"), None),
            None,
            Some("ImageNotAllowed"),
        ),
        ("a labelled secret", network(None, Some("rpc")), Some(secret(Some("true"))), None),
        ("an unlabelled secret", network(None, Some("rpc")), Some(secret(None)), Some("SecretNotLabelled")),
        (
            "a secret labelled otherwise",
            network(None, Some("rpc")),
            Some(secret(Some("yes"))),
            Some("SecretNotLabelled"),
        ),
    ];
    for (name, network, secret, expected) in cases {
        let got = refusal(&network, secret.as_ref(), &allowed);
        assert_eq!(got.as_ref().map(Refusal::reason), expected, "{name}: {got:?}");
    }
}
