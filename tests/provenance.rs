//! `chart package --sign` against the real Helm engine (PyPI helm-python-sdk, Helm 4): the
//! provenance file verifies with `helm verify`, signs the text Helm's own signs, and a changed
//! package does not verify. Keys are made by GnuPG (Debian's gnupg).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{helm_engine, missing_component, stagecoach};

const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

/// A GnuPG home of its own; its agent is ended with it.
pub(crate) struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    pub(crate) fn new() -> Option<Self> {
        if Command::new("gpg").arg("--version").output().is_err() {
            missing_component("GnuPG (gpg)", "apt-get install gnupg; .ci/run does");
            return None;
        }
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Some(Self { home })
    }

    fn run(&self, passphrase: Option<&str>, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase.unwrap_or("")])
            .args(args)
            .env("GNUPGHOME", self.home.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// A new key `uid` of `algorithm` (gpg's names: rsa2048, ed25519…) that signs.
    pub(crate) fn key(&self, uid: &str, algorithm: &str, passphrase: Option<&str>) {
        self.run(passphrase, &["--quick-gen-key", uid, algorithm, "sign", "never"]);
    }

    pub(crate) fn armored_secret(&self, uid: &str, passphrase: Option<&str>) -> String {
        String::from_utf8(self.run(passphrase, &["--armor", "--export-secret-keys", uid])).unwrap()
    }

    /// A keyring file as Helm reads them, of every key or of `uid`'s: public for verify, secret
    /// for sign.
    pub(crate) fn keyring(&self, name: &str, secret: bool, uid: Option<&str>) -> PathBuf {
        let export = if secret { "--export-secret-keys" } else { "--export" };
        let bytes = self.run(None, &[&[export][..], uid.as_slice()].concat());
        let path = self.home.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").args(["--kill", "all"]).env("GNUPGHOME", self.home.path()).output();
    }
}

/// `helm verify`: what it found, or its error.
fn helm_verify(python: &Path, package: &Path, keyring: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new(python)
        .args(["-c", "import json, sys, helm_python as h; print(json.dumps(h.verify(sys.argv[1], sys.argv[2])))"])
        .arg(package)
        .arg(keyring)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The text a `.prov` file signs, as written between its headers and its signature.
fn signed_text(prov: &str) -> &str {
    let start = prov.find("\n\n").unwrap() + 2;
    let end = prov.find("\n-----BEGIN PGP SIGNATURE-----").unwrap();
    &prov[start..end]
}

fn package(out: &Path, env: &[(&str, &str)], extra: &[&str]) -> crate::support::Run {
    let chart = Path::new(WORKSPACE).join("chart-template");
    let out_dir = out.display().to_string();
    let args = [
        &["chart", "package", chart.to_str().unwrap(), "--rename", "bitcoin-operator", "--out", &out_dir][..],
        extra,
        &["--sign"],
    ]
    .concat();
    stagecoach(out.parent().unwrap(), &args, env)
}

#[test]
fn a_signed_package_verifies_with_helm_and_a_changed_one_does_not() {
    let (Some(python), Some(gpg)) = (helm_engine(), Gpg::new()) else { return };
    let dir = tempfile::tempdir().unwrap();
    // (case, gpg's algorithm, passphrase)
    let cases = [
        ("RSA 2048", "rsa2048", None),
        ("RSA 3072 behind a passphrase", "rsa3072", Some("open sesame 42")),
        ("Ed25519", "ed25519", None),
    ];
    for (index, (name, algorithm, passphrase)) in cases.into_iter().enumerate() {
        let uid = format!("Signer {index} <signer{index}@stagecoach.dev>");
        gpg.key(&uid, algorithm, passphrase);
        let key = gpg.armored_secret(&uid, passphrase);
        let out = dir.path().join(format!("out{index}"));
        let mut env = vec![("STAGECOACH_SIGNING_KEY", key.as_str())];
        if let Some(passphrase) = passphrase {
            env.push(("STAGECOACH_SIGNING_PASSPHRASE", passphrase));
        }
        let run = package(&out, &env, &[]);
        run.success();
        assert!(run.stdout.contains(&format!(".tgz.prov, signed by {uid}")), "{name}: {}", run.stdout);
        if let Some(passphrase) = passphrase {
            assert!(!run.stdout.contains(passphrase) && !run.stderr.contains(passphrase), "{name}: leaked");
        }

        let tgz = out.join("bitcoin-operator-0.1.0.tgz");
        let public = gpg.keyring(&format!("public{index}.gpg"), false, None);
        let verified = helm_verify(&python, &tgz, &public).unwrap_or_else(|e| panic!("{name}: helm verify: {e}"));
        let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&tgz).unwrap()));
        assert_eq!(verified["file_hash"], format!("sha256:{digest}"), "{name}");
        assert!(verified["signed_by"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().contains(&uid)), "{name}");

        // The same provenance beside a package with one byte changed: refused.
        let changed = dir.path().join(format!("changed{index}"));
        std::fs::create_dir_all(&changed).unwrap();
        let mut bytes = std::fs::read(&tgz).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(changed.join("bitcoin-operator-0.1.0.tgz"), bytes).unwrap();
        std::fs::copy(out.join("bitcoin-operator-0.1.0.tgz.prov"), changed.join("bitcoin-operator-0.1.0.tgz.prov"))
            .unwrap();
        let refused = helm_verify(&python, &changed.join("bitcoin-operator-0.1.0.tgz"), &public);
        assert!(refused.is_err(), "{name}: a changed package verified: {refused:?}");
    }

    // What is signed is what Helm signs for the same package.
    let ours = dir.path().join("out0");
    let helms = dir.path().join("helm");
    std::fs::create_dir_all(&helms).unwrap();
    std::fs::copy(ours.join("bitcoin-operator-0.1.0.tgz"), helms.join("bitcoin-operator-0.1.0.tgz")).unwrap();
    let secret = gpg.keyring("secret.gpg", true, Some("Signer 0"));
    let out = Command::new(&python)
        .args(["-c", "import sys, helm_python as h; h.sign(sys.argv[1], key='Signer 0', keyring=sys.argv[2])"])
        .arg(helms.join("bitcoin-operator-0.1.0.tgz"))
        .arg(&secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "helm sign: {}", String::from_utf8_lossy(&out.stderr));
    let (ours, helms) = (
        std::fs::read_to_string(ours.join("bitcoin-operator-0.1.0.tgz.prov")).unwrap(),
        std::fs::read_to_string(helms.join("bitcoin-operator-0.1.0.tgz.prov")).unwrap(),
    );
    assert_eq!(signed_text(&ours), signed_text(&helms));
    assert!(ours.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"), "{ours}");
}

#[test]
fn without_a_usable_key_nothing_is_written() {
    let Some(gpg) = Gpg::new() else { return };
    gpg.key("Locked <locked@stagecoach.dev>", "rsa2048", Some("pass-7f3k2"));
    let locked = gpg.armored_secret("Locked", Some("pass-7f3k2"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // (case, environment, exit code, what stderr says)
    let cases: [(&str, Vec<(&str, &str)>, i32, &str); 4] = [
        ("no key", vec![], 2, "--sign needs STAGECOACH_SIGNING_KEY"),
        ("not a key", vec![("STAGECOACH_SIGNING_KEY", "hello")], 2, "not an ASCII-armored OpenPGP private key"),
        ("no passphrase", vec![("STAGECOACH_SIGNING_KEY", &locked)], 2, "does not unlock"),
        (
            "the wrong passphrase",
            vec![("STAGECOACH_SIGNING_KEY", &locked), ("STAGECOACH_SIGNING_PASSPHRASE", "wrong-9q8w7")],
            2,
            "does not unlock",
        ),
    ];
    for (name, env, code, says) in cases {
        let run = package(&out, &env, &[]);
        assert_eq!(run.code, code, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{name}: {}", run.stderr);
        assert!(!out.exists(), "{name}: something was written");
        assert!(!run.stderr.contains("PRIVATE KEY BLOCK") && !run.stderr.contains("wrong-9q8w7"), "{name}: leaked");
    }
    // --dry-run signs (so a bad key is found) and writes nothing.
    let run = package(
        &out,
        &[("STAGECOACH_SIGNING_KEY", &locked), ("STAGECOACH_SIGNING_PASSPHRASE", "pass-7f3k2")],
        &["--dry-run"],
    );
    run.success();
    assert!(
        run.stdout.contains("dry run: would write") && run.stdout.contains(".tgz.prov, signed by Locked"),
        "{}",
        run.stdout
    );
    assert!(!out.exists());
}

/// With a key in STAGECOACH_SIGNING_KEY, a release is signed: the `.prov` goes into the RELEASE
/// repository beside the package and into the OCI manifest, Helm verifies what was released,
/// and the same release again (signed anew) changes nothing.
#[test]
fn a_release_with_a_key_is_signed_in_both_places() {
    let (Some(python), Some(gpg), Some(registry)) = (helm_engine(), Gpg::new(), crate::registry::Registry::start(None))
    else {
        return;
    };
    gpg.key("Releaser <releaser@stagecoach.dev>", "rsa2048", None);
    let key = gpg.armored_secret("Releaser", None);
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release.git");
    crate::git_server::seed_bare_repo(&release, &[("README.md", "charts\n")]);
    let qa = crate::release::qa_checkout(dir.path(), &release, None);
    crate::release::release_to_oci(&qa, &registry.host);
    crate::support::git(&qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "oci"]);
    let env = [("STAGECOACH_SIGNING_KEY", key.as_str())];
    let run = stagecoach(&qa, &["--no-progress", "release", "--untested"], &env);
    run.success();
    assert!(run.stderr.contains("signing bitcoin-operator-0.2.0.tgz with Releaser"), "{}", run.stderr);

    let work = dir.path().join("released");
    crate::support::git(dir.path(), &["clone", "-q", release.to_str().unwrap(), work.to_str().unwrap()]);
    let public = gpg.keyring("public.gpg", false, None);
    let verified = helm_verify(&python, &work.join("bitcoin-operator-0.2.0.tgz"), &public).unwrap();
    assert!(verified["signed_by"].to_string().contains("Releaser"), "{verified}");
    let manifest = registry.manifest("charts/bitcoin-operator", "0.2.0").unwrap();
    let prov = std::fs::read(work.join("bitcoin-operator-0.2.0.tgz.prov")).unwrap();
    assert_eq!(
        manifest["layers"][1]["digest"],
        format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&prov)).as_str()
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = stagecoach(&qa, &["--no-progress", "release", "--untested"], &env);
    again.success();
    assert!(again.stderr.contains("already there"), "{}", again.stderr);
    assert_eq!(crate::support::git(&release, &["rev-list", "--count", "main"]), "2");
}
