//! Signing checked by the real cosign CLI (built by .ci/kube-tools, `STAGECOACH_COSIGN`):
//! build-and-deploy with a key `cosign generate-key-pair` made, then `cosign verify` and
//! `cosign verify-attestation` against the real registry; and the other way round, what cosign
//! itself signed checked by stagecoach's verification.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::dev_repo;
use crate::registry::{Registry, docker_available};
use crate::support::{git, missing_component, stagecoach};

const PASSWORD: &str = "c0sign-pa55-canary";

fn cosign() -> Option<PathBuf> {
    match std::env::var_os("STAGECOACH_COSIGN").map(PathBuf::from).filter(|p| p.is_file()) {
        Some(path) => Some(path),
        None => {
            missing_component("the cosign CLI (STAGECOACH_COSIGN)", "eval \"$(.ci/kube-tools)\"");
            None
        }
    }
}

/// cosign with the flags a registry on loopback and no transparency log need.
fn run_cosign(cosign: &Path, args: &[&str], dir: &Path) -> (bool, String, String) {
    let out = Command::new(cosign)
        .args(args)
        .current_dir(dir)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("COSIGN_YES", "true")
        .env("HOME", dir)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

const OFFLINE: [&str; 3] = ["--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry"];

/// `cosign.key` and `cosign.pub` made by `cosign generate-key-pair` in `dir`.
fn key_pair(cosign: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let (ok, _, err) = run_cosign(cosign, &["generate-key-pair"], dir);
    assert!(ok, "cosign generate-key-pair: {err}");
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

/// What each test starts from: cosign, a registry, a key pair cosign made.
struct Setup {
    cosign: PathBuf,
    registry: Registry,
    keys: tempfile::TempDir,
    private: PathBuf,
    public: PathBuf,
}

fn setup() -> Option<Setup> {
    if !docker_available() {
        return None;
    }
    let cosign = cosign()?;
    let registry = Registry::start(None)?;
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(&cosign, keys.path());
    Some(Setup { cosign, registry, keys, private, public })
}

fn verify(cosign: &Path, public: &Path, image: &str, dir: &Path) -> (bool, String, String) {
    let mut args = vec!["verify", "--key", public.to_str().unwrap()];
    args.extend(OFFLINE);
    args.push(image);
    run_cosign(cosign, &args, dir)
}

fn verify_attestation(cosign: &Path, public: &Path, image: &str, dir: &Path) -> (bool, String, String) {
    let mut args = vec!["verify-attestation", "--key", public.to_str().unwrap(), "--type", "slsaprovenance1"];
    args.extend(OFFLINE);
    args.push(image);
    run_cosign(cosign, &args, dir)
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_signed_build_passes_cosign_verify_and_verify_attestation_and_fails_them_once_the_tag_is_pushed_again() {
    let Some(Setup { cosign, registry, keys, private, public }) = setup() else { return };
    let repository = format!("{}/signed-operator", registry.host);
    let dev = dev_repo(&repository, false);
    let head = git(dev.dir.path(), &["rev-parse", "HEAD"]);
    let short = &head[..7];
    let record = dev.dir.path().join("run.json");

    let started = std::time::Instant::now();
    let run = stagecoach(
        dev.dir.path(),
        &["--no-progress", "-v", "--report", record.to_str().unwrap(), "build-and-deploy"],
        &[("STAGECOACH_COSIGN_KEY", private.to_str().unwrap()), ("STAGECOACH_COSIGN_PASSWORD", PASSWORD)],
    );
    run.success();
    eprintln!("build-and-deploy with signing: {:?}", started.elapsed());
    let record_text = std::fs::read_to_string(&record).unwrap();
    for text in [&run.stdout, &run.stderr, &record_text] {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
    let record: serde_json::Value = serde_json::from_str(&record_text).unwrap();
    let stage = |name: &str| record["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    let digest = stage("image-push")["details"]["digest"].as_str().unwrap().to_string();
    let sign = stage("image-sign");
    assert_eq!(sign["outcome"], "passed", "{sign}");
    eprintln!("image-sign: {} ms; image-push: {} ms", sign["duration_ms"], stage("image-push")["duration_ms"]);
    let (signature, attestation) =
        (sign["details"]["signature"].as_str().unwrap(), sign["details"]["attestation"].as_str().unwrap());
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(registry.digest("signed-operator", &format!("sha256-{hex}.sig")).as_deref(), Some(signature));
    assert_eq!(registry.digest("signed-operator", &format!("sha256-{hex}.att")).as_deref(), Some(attestation));
    let message = git(&dev.qa, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains(&format!("Image-Signature: {signature}\n"))
            && message.contains(&format!("Image-Attestation: {attestation}\n")),
        "{message}"
    );

    // The real cosign accepts both, by digest and by tag.
    let by_digest = format!("{repository}@{digest}");
    let by_tag = format!("{repository}:{short}");
    for image in [&by_digest, &by_tag] {
        let (ok, out, err) = verify(&cosign, &public, image, keys.path());
        assert!(ok && out.contains(&digest), "cosign verify {image}: {out}{err}");
    }
    let (ok, out, err) = verify_attestation(&cosign, &public, &by_digest, keys.path());
    assert!(ok, "cosign verify-attestation: {out}{err}");
    let envelope: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    use base64::Engine as _;
    let statement = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&statement).unwrap();
    assert_eq!(statement["subject"][0]["digest"]["sha256"], hex);
    assert_eq!(
        statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["gitCommit"],
        head.as_str()
    );

    // A key cosign did not make the pair of refuses it.
    let others = tempfile::tempdir().unwrap();
    let (_, other_public) = key_pair(&cosign, others.path());
    let (ok, out, err) = verify(&cosign, &other_public, &by_digest, keys.path());
    assert!(!ok, "another key verified: {out}{err}");

    // Other bytes pushed under the same tag: the tag's image carries no signature.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("Dockerfile"), "FROM scratch\nCOPY x /x\n").unwrap();
    std::fs::write(other.path().join("x"), "other bytes").unwrap();
    let (built, out) = docker(&["build", "-q", "-t", &by_tag, other.path().to_str().unwrap()]);
    assert!(built, "{out}");
    let (pushed, out) = docker(&["push", "-q", &by_tag]);
    assert!(pushed, "{out}");
    assert_ne!(registry.digest("signed-operator", short).as_deref(), Some(digest.as_str()));
    let (ok, out, err) = verify(&cosign, &public, &by_tag, keys.path());
    assert!(!ok && err.contains("no signatures found"), "cosign verify after a re-push: {out}{err}");
    let (ok, out, err) = verify_attestation(&cosign, &public, &by_tag, keys.path());
    assert!(!ok, "cosign verify-attestation after a re-push: {out}{err}");
    docker(&["rmi", "-f", &by_tag, &by_digest]);
}

#[test]
fn a_key_that_does_not_open_stops_build_and_deploy_before_anything_is_built_or_pushed() {
    let Some(Setup { registry, keys: _keys, private, public, .. }) = setup() else { return };
    let pem = std::fs::read_to_string(&private).unwrap();
    let repository = format!("{}/refused-operator", registry.host);
    let dev = dev_repo(&repository, false);
    let commits = crate::image::qa_commits(&dev);
    let cases: [(&str, &str, &str, &str); 4] = [
        ("a wrong password", private.to_str().unwrap(), "wrong-password", "the password does not open the key"),
        (
            "the key itself in the variable, wrong password",
            &pem,
            "wrong-password",
            "the password does not open the key",
        ),
        ("the public key", public.to_str().unwrap(), PASSWORD, "not a cosign private key: a PEM block of `PUBLIC KEY`"),
        ("no such file", "/nonexistent/cosign.key", PASSWORD, "reading /nonexistent/cosign.key"),
    ];
    for (name, key, password, part) in cases {
        let run = stagecoach(
            dev.dir.path(),
            &["--no-progress", "build-and-deploy"],
            &[("STAGECOACH_COSIGN_KEY", key), ("STAGECOACH_COSIGN_PASSWORD", password)],
        );
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(run.stderr.contains("STAGECOACH_COSIGN_KEY") && run.stderr.contains(part), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains(password) && !run.stderr.contains("PRIVATE KEY-----\n"), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("unit tests ran"), "{name}: it built: {}", run.stderr);
        assert_eq!(registry.tags("refused-operator"), Vec::<String>::new(), "{name}");
        assert_eq!(crate::image::qa_commits(&dev), commits, "{name}");
    }
}

#[test]
fn what_cosign_signs_and_attests_passes_stagecoachs_verification_and_another_key_does_not() {
    let Some(Setup { cosign, registry, keys, private, public }) = setup() else { return };
    let image_dir = tempfile::tempdir().unwrap();
    std::fs::write(image_dir.path().join("Dockerfile"), "FROM scratch\nCOPY x /x\n").unwrap();
    std::fs::write(image_dir.path().join("x"), "signed by cosign").unwrap();
    let tagged = format!("{}/by-cosign:v1", registry.host);
    assert!(docker(&["build", "-q", "-t", &tagged, image_dir.path().to_str().unwrap()]).0);
    assert!(docker(&["push", "-q", &tagged]).0);
    let digest = registry.digest("by-cosign", "v1").unwrap();
    let image = format!("{}/by-cosign@{digest}", registry.host);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let predicate = image_dir.path().join("provenance.json");
    let provenance = serde_json::json!({
        "buildDefinition": {
            "buildType": "https://example.com/build",
            "externalParameters": {},
            "resolvedDependencies": [{ "uri": "git+https://git.example/dev.git", "digest": { "gitCommit": commit } }],
        },
        "runDetails": { "builder": { "id": "https://example.com/builder" } },
    });
    std::fs::write(&predicate, provenance.to_string()).unwrap();
    let key = private.to_str().unwrap();
    let (ok, _, err) = run_cosign(
        &cosign,
        &["sign", "--key", key, "--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry", &image],
        keys.path(),
    );
    assert!(ok, "cosign sign: {err}");
    let predicate = predicate.to_str().unwrap();
    let args = [
        "attest",
        "--key",
        key,
        "--type",
        "slsaprovenance1",
        "--predicate",
        predicate,
        "--tlog-upload=false",
        "--allow-insecure-registry",
        "--allow-http-registry",
        &image,
    ];
    let (ok, _, err) = run_cosign(&cosign, &args, keys.path());
    assert!(ok, "cosign attest: {err}");

    // stagecoach reads them from the registry and checks them with the public key.
    let others = tempfile::tempdir().unwrap();
    let (_, other_public) = key_pair(&cosign, others.path());
    let public = stagecoach::cosign::PublicKey::from_pem(&std::fs::read(&public).unwrap()).unwrap();
    let other = stagecoach::cosign::PublicKey::from_pem(&std::fs::read(&other_public).unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let oci = stagecoach::tools::oci::Oci::new(true, std::time::Duration::from_secs(10));
    let repository = format!("{}/by-cosign", registry.host);
    let anonymous = stagecoach::tools::oci::RegistryAuth::Anonymous;
    let tag = |suffix| stagecoach::cosign::tag_for(&digest, suffix);
    let signatures = runtime.block_on(oci.attached(&repository, &tag("sig"), &anonymous)).unwrap();
    let attestations = runtime.block_on(oci.attached(&repository, &tag("att"), &anonymous)).unwrap();
    assert_eq!((signatures.len(), attestations.len()), (1, 1));
    let signature = &signatures[0];
    let sig =
        stagecoach::cosign::decode_signature(&signature.annotations[stagecoach::cosign::SIGNATURE_ANNOTATION]).unwrap();
    assert!(public.verifies(&signature.bytes, &sig), "cosign's signature does not verify with its public key");
    assert!(!other.verifies(&signature.bytes, &sig), "another key verified cosign's signature");
    assert_eq!(stagecoach::cosign::signed_digest(&signature.bytes).as_deref(), Some(digest.as_str()));
    let provenance = stagecoach::cosign::open_provenance(&attestations[0].bytes, &public).unwrap();
    assert_eq!(provenance.commit.as_deref(), Some(commit));
    assert_eq!(provenance.subject_digests, [digest]);
    let refused = stagecoach::cosign::open_provenance(&attestations[0].bytes, &other).unwrap_err();
    assert!(refused.to_string().contains("not signed by this key"), "{refused}");
    docker(&["rmi", "-f", &tagged]);
}
