//! Reading the RPC credentials out of a Secret.

use std::collections::BTreeMap;

use bitcoin_operator::secret::{Credentials, from_secret};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

fn secret(data: &[(&str, &[u8])]) -> Secret {
    let data = data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect::<BTreeMap<_, _>>();
    Secret { data: Some(data), ..Secret::default() }
}

#[test]
fn credentials_come_from_both_keys_or_the_error_names_what_is_wrong() {
    let cases: &[(&str, Secret, Result<(&str, &str), &str>)] = &[
        ("both keys", secret(&[("BITCOIN_RPC_USER", b"alice"), ("BITCOIN_RPC_PASSWORD", b"pw")]), Ok(("alice", "pw"))),
        (
            "extra keys are ignored",
            secret(&[("BITCOIN_RPC_USER", b"a"), ("BITCOIN_RPC_PASSWORD", b"p"), ("other", b"x")]),
            Ok(("a", "p")),
        ),
        ("no user", secret(&[("BITCOIN_RPC_PASSWORD", b"pw")]), Err("secret rpc has no key BITCOIN_RPC_USER")),
        (
            "empty password",
            secret(&[("BITCOIN_RPC_USER", b"alice"), ("BITCOIN_RPC_PASSWORD", b"")]),
            Err("secret rpc key BITCOIN_RPC_PASSWORD is empty"),
        ),
        (
            "binary user",
            secret(&[("BITCOIN_RPC_USER", &[0xff, 0xfe]), ("BITCOIN_RPC_PASSWORD", b"pw")]),
            Err("secret rpc key BITCOIN_RPC_USER is not UTF-8 text"),
        ),
        ("no data at all", Secret::default(), Err("secret rpc has no key BITCOIN_RPC_USER")),
        (
            "stringData (as written, before the server folds it into data)",
            Secret {
                string_data: Some(BTreeMap::from([
                    ("BITCOIN_RPC_USER".into(), "u".into()),
                    ("BITCOIN_RPC_PASSWORD".into(), "p".into()),
                ])),
                ..Secret::default()
            },
            Ok(("u", "p")),
        ),
    ];
    for (name, secret, expected) in cases {
        let got = from_secret("rpc", secret).map(|c| (c.user, c.password)).map_err(|e| e.to_string());
        let expected = expected.map(|(u, p)| (u.to_owned(), p.to_owned())).map_err(str::to_owned);
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn debug_output_hides_the_password() {
    let credentials = Credentials { user: "alice".into(), password: "hunter2".into() };
    let shown = format!("{credentials:?}");
    assert!(shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
}
