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

/// `cosign sign` and `cosign attest --type slsaprovenance1` of `image` (by digest) with the key
/// at `private`, the provenance naming `commit` as the source built.
fn sign_and_attest(cosign: &Path, private: &Path, image: &str, commit: &str, dir: &Path) {
    let predicate = dir.join(format!("provenance-{commit}.json"));
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
    let registry = ["--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry"];
    let mut sign = vec!["sign", "--key", key];
    sign.extend(registry);
    sign.push(image);
    let (ok, _, err) = run_cosign(cosign, &sign, dir);
    assert!(ok, "cosign sign: {err}");
    let predicate = predicate.to_str().unwrap();
    let mut attest = vec!["attest", "--key", key, "--type", "slsaprovenance1", "--predicate", predicate];
    attest.extend(registry);
    attest.push(image);
    let (ok, _, err) = run_cosign(cosign, &attest, dir);
    assert!(ok, "cosign attest: {err}");
}

/// The in-toto statement of the first envelope `cosign verify-attestation` printed.
fn attested_statement(out: &str) -> serde_json::Value {
    use base64::Engine as _;
    let envelope: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let statement = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&statement).unwrap()
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

    let key_env = [("STAGECOACH_COSIGN_KEY", private.to_str().unwrap()), ("STAGECOACH_COSIGN_PASSWORD", PASSWORD)];
    // plan and --dry-run name the key by its fingerprint, and sign nothing.
    let fingerprint = stagecoach::cosign::PublicKey::from_pem(&std::fs::read(&public).unwrap()).unwrap().fingerprint();
    let plan = stagecoach(dev.dir.path(), &["plan", "build-and-deploy"], &key_env);
    plan.success();
    assert!(
        plan.stdout.contains(&format!("sign {repository}@<pushed digest> with cosign key {fingerprint}")),
        "{}",
        plan.stdout
    );
    let dry = stagecoach(dev.dir.path(), &["--no-progress", "--dry-run", "build-and-deploy"], &key_env);
    dry.success();
    assert!(
        dry.stderr.contains(&format!("dry run: would sign and attest with cosign key {fingerprint}")),
        "{}",
        dry.stderr
    );
    assert_eq!(registry.tags("signed-operator"), Vec::<String>::new(), "the dry run pushed or signed");

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
    let statement = attested_statement(&out);
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
    sign_and_attest(&cosign, &private, &image, commit, keys.path());

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

/// Copies the manifest under `from` to the tag `to` in repository `name`, as someone who moves
/// signatures around would.
fn copy_manifest(registry: &Registry, name: &str, from: &str, to: &str, dir: &Path) {
    let file = dir.join("copied-manifest.json");
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let url = |tag: &str| format!("http://{}/v2/{name}/manifests/{tag}", registry.host);
    let get = Command::new("curl")
        .args(["-fsS", "-H", &format!("Accept: {media_type}"), "-o", file.to_str().unwrap(), &url(from)])
        .status()
        .unwrap();
    assert!(get.success(), "GET {from}");
    let put = Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H", &format!("Content-Type: {media_type}")])
        .args(["--data-binary", &format!("@{}", file.display()), &url(to)])
        .status()
        .unwrap();
    assert!(put.success(), "PUT {to}");
}

#[test]
fn qa_deploys_only_an_image_signed_by_image_verify_key_whose_provenance_names_the_charts_app_version() {
    let Some(Setup { cosign, registry, keys, private, public }) = setup() else { return };
    let Some(qa) = crate::qa::setup("0.1.1-dev.abcdef0", "verify") else { return };
    let repository = format!("{}/verified", registry.host);
    // Four images pushed under four tags: one signed and attested by cosign as built from the
    // chart's appVersion, one never signed, one attested as built from another commit, and one
    // under which the first one's signature was copied.
    let push = |tag: &str| {
        let tagged = format!("{repository}:{tag}");
        crate::qa::tiny_image(&tagged, &qa.state);
        assert!(docker(&["push", "-q", &tagged]).0, "push {tagged}");
        registry.digest("verified", tag).unwrap()
    };
    let (signed, unsigned, other_commit, copied) =
        (push("qa-verify"), push("unsigned"), push("other-commit"), push("copied"));
    let at = |digest: &str| format!("{repository}@{digest}");
    sign_and_attest(&cosign, &private, &at(&signed), &qa.first_commit, keys.path());
    sign_and_attest(&cosign, &private, &at(&other_commit), &"e".repeat(40), keys.path());
    sign_and_attest(&cosign, &private, &at(&copied), &qa.first_commit, keys.path());
    let sig = |digest: &str| stagecoach::cosign::tag_for(digest, "sig");
    copy_manifest(&registry, "verified", &sig(&signed), &sig(&copied), keys.path());

    // The keys inside the QA checkout, as image.verify_key names them.
    std::fs::create_dir_all(qa.qa.join("keys")).unwrap();
    std::fs::copy(&public, qa.qa.join("keys/cosign.pub")).unwrap();
    std::fs::copy(&private, qa.qa.join("keys/cosign.key")).unwrap();
    let others = tempfile::tempdir().unwrap();
    let (_, other_public) = key_pair(&cosign, others.path());
    std::fs::copy(&other_public, qa.qa.join("keys/other.pub")).unwrap();
    let pipeline = qa.qa.join("pipelines/stagecoach.yaml");
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        "image:\n  repository: stagecoach-test/qa-op\n",
        &format!("image:\n  repository: {repository}\n  verify_key: ${{VERIFY_KEY}}\n"),
    );
    std::fs::write(&pipeline, text).unwrap();
    let fingerprint = stagecoach::cosign::PublicKey::from_pem(&std::fs::read(&public).unwrap()).unwrap().fingerprint();
    let values = qa.qa.join("values.yaml");
    let original = std::fs::read_to_string(&values).unwrap();
    let set_image = |digest: &str| {
        let text = original
            .replace("digest: \"\"", &format!("digest: \"{digest}\""))
            .replace("repository: stagecoach-test/qa-op", &format!("repository: {repository}"));
        std::fs::write(&values, text).unwrap();
    };
    let appversion = &qa.first_commit;

    // (name, verify_key, digest in values.yaml, exit code, what the error says)
    let cases: [(&str, &str, &str, i32, String); 8] = [
        ("signed by the key, built from appVersion", "keys/cosign.pub", &signed, 0, String::new()),
        ("another key", "keys/other.pub", &signed, 1, format!("{} is not signed by key SHA256:", at(&signed))),
        (
            "the digest changed to an unsigned image's",
            "keys/cosign.pub",
            &unsigned,
            1,
            format!("{} has no signature", at(&unsigned)),
        ),
        (
            "a provenance naming another commit",
            "keys/cosign.pub",
            &other_commit,
            1,
            format!(
                "was built from commit {} (its provenance says), but the chart's appVersion is {appversion}",
                "e".repeat(40)
            ),
        ),
        (
            "a signature over another digest",
            "keys/cosign.pub",
            &copied,
            1,
            format!("is for {signed}, not {}", at(&copied)),
        ),
        (
            "no digest in values.yaml",
            "keys/cosign.pub",
            "",
            1,
            "names ".to_string() + &repository + ":qa-verify without a digest",
        ),
        (
            "a private key as verify_key",
            "keys/cosign.key",
            &signed,
            2,
            "image.verify_key: keys/cosign.key: not a public key".into(),
        ),
        ("a key outside the checkout", "../cosign.pub", &signed, 2, "image.verify_key".into()),
    ];
    for (name, key, digest, code, part) in cases {
        set_image(digest);
        let _ = std::fs::remove_file(&qa.log);
        let run = qa.run(&["--no-progress", "--report", "../run.json", "integration-test"], &[("VERIFY_KEY", key)]);
        assert_eq!(run.code, code, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(&part), "{name}: {}", run.stderr);
        qa.assert_no_temporary_files();
        let calls = qa.calls();
        if code == 0 {
            let report = qa.report();
            let verify = crate::qa::stage(&report, "image-verify");
            assert_eq!(verify["details"]["verified_with"], fingerprint.as_str(), "{name}: {verify}");
            assert_eq!(verify["group"], 0, "{name}: it runs first: {verify}");
            eprintln!("image-verify: {} ms; whole run {} ms", verify["duration_ms"], report["duration_ms"]);
            assert!(calls.iter().any(|c| c.starts_with("helm upgrade")), "{name}: {calls:#?}");
            assert_eq!(qa.loaded(), [(format!("{repository}:qa-verify"), stagecoach_image_id(&at(&signed)))]);
        } else {
            // Refused before anything: no cluster, no chart packaged, nothing installed.
            assert!(!calls.iter().any(|c| c.starts_with("kind") || c.starts_with("helm")), "{name}: {calls:#?}");
        }
    }
    // A release version: the release at the end of the run verifies the image again, then
    // pushes the chart it tested to the OCI registry, signed, with a provenance naming this run.
    set_image(&signed);
    crate::release::release_to_oci(&qa.qa, &registry.host);
    git(&qa.qa, &["add", "-A"]);
    git(&qa.qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "signed image"]);
    crate::qa::edit_qa(&qa, "Chart.yaml", "version: 0.1.1-dev.abcdef0", "version: 0.2.0");
    let qa_commit = git(&qa.qa, &["rev-parse", "HEAD"]);
    let env = [
        ("VERIFY_KEY", "keys/cosign.pub"),
        ("STAGECOACH_COSIGN_KEY", private.to_str().unwrap()),
        ("STAGECOACH_COSIGN_PASSWORD", PASSWORD),
    ];
    let run = qa.run(&["--no-progress", "--report", "../run.json", "integration-test"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = qa.report();
    let release = crate::qa::stage(&report, "release");
    assert_eq!(release["details"]["verified_with"], fingerprint.as_str(), "{release}");
    let chart =
        format!("{}/charts/bitcoin-operator@{}", registry.host, release["details"]["oci_digest"].as_str().unwrap());
    let (ok, out, err) = verify_attestation(&cosign, &public, &chart, keys.path());
    assert!(ok, "cosign verify-attestation {chart}: {out}{err}");
    let statement = attested_statement(&out);
    let definition = &statement["predicate"]["buildDefinition"];
    assert_eq!(definition["resolvedDependencies"][0]["digest"]["gitCommit"], qa_commit.as_str(), "{statement}");
    assert_eq!(
        definition["externalParameters"]["integrationTest"],
        serde_json::json!({ "runId": report["run_id"], "outcome": "passed" }),
        "{statement}"
    );
    assert_eq!(definition["resolvedDependencies"][1]["digest"]["sha256"], signed.trim_start_matches("sha256:"));
    for tag in ["qa-verify", "unsigned", "other-commit", "copied"] {
        docker(&["rmi", "-f", &format!("{repository}:{tag}")]);
    }
    docker(&["rmi", "-f", "stagecoach-test/node:verify", &qa.image]);
}

/// The ID (config digest) of a local image.
fn stagecoach_image_id(reference: &str) -> String {
    let (ok, out) = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    assert!(ok, "{out}");
    out.trim().to_string()
}

#[test]
fn a_release_to_oci_is_signed_with_a_provenance_of_what_qa_tested_and_refused_for_an_image_that_does_not_verify() {
    let Some(Setup { cosign, registry, keys, private, public }) = setup() else { return };
    let app = crate::release::APP;
    // The images a chart may deploy: one signed by cosign as built from the chart's appVersion,
    // one attested as built from another commit.
    let push = |tag: &str| {
        let tagged = format!("{}/released-op:{tag}", registry.host);
        crate::qa::tiny_image(&tagged, keys.path());
        assert!(docker(&["push", "-q", &tagged]).0, "push {tagged}");
        let digest = registry.digest("released-op", tag).unwrap();
        docker(&["rmi", "-f", &tagged]);
        digest
    };
    let (built, other_commit) = (push("v1"), push("other"));
    let image = |digest: &str| format!("{}/released-op@{digest}", registry.host);
    sign_and_attest(&cosign, &private, &image(&built), app, keys.path());
    sign_and_attest(&cosign, &private, &image(&other_commit), &"e".repeat(40), keys.path());

    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release.git");
    crate::git_server::seed_bare_repo(&release, &[("README.md", "charts\n")]);
    let qa = crate::release::qa_checkout(dir.path(), &release, None);
    crate::release::release_to_oci(&qa, &registry.host);
    let pipeline = std::fs::read_to_string(qa.join("pipelines/stagecoach.yaml")).unwrap();
    std::fs::write(
        qa.join("pipelines/stagecoach.yaml"),
        pipeline.replace(
            "  credentials: registry\n",
            "  credentials: registry\n  verify_key: ${VERIFY_KEY:-keys/cosign.pub}\n",
        ),
    )
    .unwrap();
    std::fs::create_dir_all(qa.join("keys")).unwrap();
    std::fs::copy(&public, qa.join("keys/cosign.pub")).unwrap();
    let others = tempfile::tempdir().unwrap();
    let (_, other_public) = key_pair(&cosign, others.path());
    std::fs::copy(&other_public, qa.join("keys/other.pub")).unwrap();
    let values = std::fs::read_to_string(qa.join("values.yaml")).unwrap();
    let set_image = |digest: &str| {
        let text = values
            .replace(
                "repository: 127.0.0.1:5000/bitcoin-operator",
                &format!("repository: {}/released-op", registry.host),
            )
            .replace("digest: \"\"", &format!("digest: \"{digest}\""));
        std::fs::write(qa.join("values.yaml"), text).unwrap();
        git(&qa, &["add", "-A"]);
        git(&qa, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "image", "--allow-empty"]);
    };
    let key_env = [
        ("STAGECOACH_COSIGN_KEY", private.to_str().unwrap()),
        ("STAGECOACH_COSIGN_PASSWORD", PASSWORD),
        ("DOCKER_PASSWORD", "unused-by-this-registry"),
    ];
    let name = "charts/bitcoin-operator";

    // The release checks the image its package deploys before anything is published.
    let refusals = [
        ("another key", built.as_str(), "keys/other.pub", format!("{} is not signed by key SHA256:", image(&built))),
        (
            "a provenance naming another commit",
            other_commit.as_str(),
            "keys/cosign.pub",
            format!(
                "was built from commit {} (its provenance says), but the chart's appVersion is {app}",
                "e".repeat(40)
            ),
        ),
        ("no digest", "", "keys/cosign.pub", "without a digest (image.digest)".to_string()),
    ];
    for (case, digest, key, part) in refusals {
        set_image(digest);
        let env = [key_env.as_slice(), &[("VERIFY_KEY", key)]].concat();
        let run = stagecoach(&qa, &["--no-progress", "release", "--untested"], &env);
        assert_eq!(run.code, 1, "{case}: {}", run.stderr);
        assert!(run.stderr.contains(&part), "{case}: {}", run.stderr);
        assert_eq!(registry.tags(name), Vec::<String>::new(), "{case}: something was published");
        assert_eq!(git(&release, &["rev-list", "--count", "main"]), "1", "{case}");
    }

    // The tested chart, deploying the signed image: a passed integration-test record names it.
    set_image(&built);
    let qa_commit = git(&qa, &["rev-parse", "HEAD"]);
    let dry_report = dir.path().join("dry.json");
    let dry =
        stagecoach(&qa, &["--dry-run", "--report", dry_report.to_str().unwrap(), "release", "--untested"], &key_env);
    dry.success();
    let dry_record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&dry_report).unwrap()).unwrap();
    let package_digest =
        dry_record["stages"][0]["details"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest = dry_record["stages"][0]["details"]["oci_digest"].as_str().unwrap().to_string();
    assert!(
        dry.stderr.contains(&format!("dry run: would sign {}/{name}@{manifest} with cosign key", registry.host)),
        "{}",
        dry.stderr
    );
    assert_eq!(registry.tags(name), Vec::<String>::new(), "the dry run pushed");
    let tested = dir.path().join("tested.json");
    let record = serde_json::json!({
        "run_id": "qa-run-7",
        "outcome": "passed",
        "build": { "commit": qa_commit },
        "stages": [{"name": "helm-install", "details": {"tested_app_version": app, "tested_chart_digest": package_digest}}],
    });
    std::fs::write(&tested, record.to_string()).unwrap();
    let tested = tested.to_str().unwrap();
    let fingerprint = stagecoach::cosign::PublicKey::from_pem(&std::fs::read(&public).unwrap()).unwrap().fingerprint();
    let plan = stagecoach(&qa, &["plan", "release"], &key_env);
    plan.success();
    assert!(
        plan.stdout.contains(&format!("with cosign key {fingerprint} (tag sha256-<hex>.sig) and attest its SLSA provenance v1: QA https://git.example/qa.git at <from the --tested run record>, integration-test run <from the --tested run record>"))
            && plan.stdout.contains(&format!("is signed by cosign key {fingerprint} (keys/cosign.pub)")),
        "{}",
        plan.stdout
    );

    let report = dir.path().join("run.json");
    let started = std::time::Instant::now();
    let run = stagecoach(
        &qa,
        &["--no-progress", "--report", report.to_str().unwrap(), "release", "--tested", tested],
        &key_env,
    );
    run.success();
    eprintln!("signed release: {:?}", started.elapsed());
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let details = &record["stages"][0]["details"];
    eprintln!("release stage: {} ms", record["stages"][0]["duration_ms"]);
    assert_eq!(details["oci_digest"], manifest.as_str());
    assert_eq!(details["verified_with"], fingerprint.as_str());
    let hex = manifest.trim_start_matches("sha256:");
    assert_eq!(registry.digest(name, &format!("sha256-{hex}.sig")).as_deref(), details["signature"].as_str());
    assert_eq!(registry.digest(name, &format!("sha256-{hex}.att")).as_deref(), details["attestation"].as_str());
    let message = git(&release, &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains(&format!("Chart-Signature: {}\n", details["signature"].as_str().unwrap())), "{message}");
    for text in [&run.stdout, &run.stderr, &std::fs::read_to_string(&report).unwrap()] {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }

    // The real cosign accepts both, and the provenance names what QA tested.
    let chart = format!("{}/{name}@{manifest}", registry.host);
    let (ok, out, err) = verify(&cosign, &public, &chart, keys.path());
    assert!(ok && out.contains(&manifest), "cosign verify {chart}: {out}{err}");
    let (ok, _, err) = verify(&cosign, &other_public, &chart, keys.path());
    assert!(!ok, "another key verified the chart: {err}");
    let (ok, out, err) = verify_attestation(&cosign, &public, &chart, keys.path());
    assert!(ok, "cosign verify-attestation {chart}: {out}{err}");
    let statement = attested_statement(&out);
    let definition = &statement["predicate"]["buildDefinition"];
    assert_eq!(statement["subject"][0]["digest"]["sha256"], hex, "{statement}");
    assert_eq!(definition["resolvedDependencies"][0]["digest"]["gitCommit"], qa_commit.as_str(), "{statement}");
    assert_eq!(
        definition["externalParameters"]["integrationTest"],
        serde_json::json!({"runId": "qa-run-7", "outcome": "passed"})
    );
    assert_eq!(
        definition["resolvedDependencies"][1]["digest"]["sha256"],
        built.trim_start_matches("sha256:"),
        "{statement}"
    );
}
