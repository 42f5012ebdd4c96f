//! Signing and verifying an image with a cosign key: stagecoach (opening the key, signing the
//! manifest digest and attesting an SLSA provenance; reading both back and checking them)
//! against the real cosign CLI doing the same (`cosign sign` + `cosign attest`; `cosign verify`
//! + `cosign verify-attestation`), against the same local registry, in the same run.
//!
//!     cargo bench --bench cosign   (needs a Docker engine, docker-registry and STAGECOACH_COSIGN)

#![allow(dead_code)]

#[path = "../tests/ci_cache.rs"]
mod ci_cache;
#[path = "../tests/registry.rs"]
mod registry;
#[path = "../tests/support.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use stagecoach::cosign;

const ROUNDS: usize = 6;
const PASSWORD: &str = "bench-password";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn main() {
    let Some(cosign_bin) = std::env::var_os("STAGECOACH_COSIGN").filter(|p| Path::new(p).is_file()) else {
        eprintln!("needs the cosign CLI (eval \"$(.ci/kube-tools)\"): nothing measured");
        return;
    };
    if !registry::docker_available() {
        eprintln!("needs a Docker engine: nothing measured");
        return;
    }
    let Some(registry) = registry::Registry::start(None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cosign_cli = |args: &[&str]| {
        let out = Command::new(&cosign_bin)
            .args(args)
            .current_dir(d)
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("COSIGN_YES", "true")
            .env("HOME", d)
            .output()
            .unwrap();
        assert!(out.status.success(), "cosign {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    cosign_cli(&["generate-key-pair"]);
    let predicate = d.join("predicate.json");
    let provenance = serde_json::json!({
        "buildDefinition": { "buildType": "https://example.com/build", "externalParameters": {},
            "resolvedDependencies": [{ "uri": "git+https://git.example/dev.git", "digest": { "gitCommit": COMMIT } }] },
        "runDetails": { "builder": { "id": "https://example.com/builder" } },
    });
    std::fs::write(&predicate, provenance.to_string()).unwrap();
    let (pem, public) = (std::fs::read(d.join("cosign.key")).unwrap(), std::fs::read(d.join("cosign.pub")).unwrap());
    let public = cosign::PublicKey::from_pem(&public).unwrap();

    // One image per round and side, so that every signature is the first of its image.
    let repository = format!("{}/bench-signed", registry.host);
    let image = |name: &str| {
        std::fs::write(d.join("Dockerfile"), "FROM scratch\nCOPY stamp /stamp\n").unwrap();
        std::fs::write(d.join("stamp"), name).unwrap();
        let tagged = format!("{repository}:{name}");
        for args in [vec!["build", "-q", "-t", &tagged, d.to_str().unwrap()], vec!["push", "-q", &tagged]] {
            let out = Command::new("docker").args(&args).env("DOCKER_BUILDKIT", "0").output().unwrap();
            assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        registry.digest("bench-signed", name).unwrap()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let oci = stagecoach::tools::oci::Oci::new(true, Duration::from_secs(30));
    let auth = stagecoach::tools::oci::RegistryAuth::Anonymous;
    let build = cosign::Build {
        source: "https://git.example/dev.git".into(),
        commit: COMMIT.into(),
        commands: vec!["cargo build".into()],
        builder_version: "bench".into(),
        run_id: "bench".into(),
    };
    let (mut sign, mut sign_cli, mut verify, mut verify_cli) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let (ours, theirs) = (image(&format!("ours-{round}")), image(&format!("cli-{round}")));
        let started = Instant::now();
        runtime.block_on(async {
            let key = cosign::CosignKey::from_pem(&pem, PASSWORD.as_bytes()).unwrap();
            let statement = cosign::provenance_statement(&repository, &ours, &build);
            stagecoach::stages::image::sign_and_attest(&oci, &auth, &key, &repository, &ours, &statement)
                .await
                .unwrap();
        });
        sign.push(started.elapsed());
        let by_digest = format!("{repository}@{theirs}");
        let started = Instant::now();
        let registry_flags = ["--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry"];
        cosign_cli(&[&["sign", "--key", "cosign.key"][..], &registry_flags, &[by_digest.as_str()]].concat());
        let attest =
            ["attest", "--key", "cosign.key", "--type", "slsaprovenance1", "--predicate", predicate.to_str().unwrap()];
        cosign_cli(&[&attest[..], &registry_flags, &[by_digest.as_str()]].concat());
        sign_cli.push(started.elapsed());

        // Both verify the image cosign signed.
        let started = Instant::now();
        runtime.block_on(async {
            let signatures = oci.attached(&repository, &cosign::tag_for(&theirs, "sig"), &auth).await.unwrap();
            cosign::verify_signature(&signatures, &public, &repository, &theirs).unwrap();
            let attestations = oci.attached(&repository, &cosign::tag_for(&theirs, "att"), &auth).await.unwrap();
            cosign::verify_provenance(&attestations, &public, &repository, &theirs, COMMIT).unwrap();
        });
        verify.push(started.elapsed());
        let started = Instant::now();
        let offline = ["--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry"];
        cosign_cli(&[&["verify", "--key", "cosign.pub"][..], &offline, &[by_digest.as_str()]].concat());
        cosign_cli(
            &[
                &["verify-attestation", "--key", "cosign.pub", "--type", "slsaprovenance1"][..],
                &offline,
                &[by_digest.as_str()],
            ]
            .concat(),
        );
        verify_cli.push(started.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    let (sign, sign_cli, verify, verify_cli) =
        (median(&mut sign), median(&mut sign_cli), median(&mut verify), median(&mut verify_cli));
    println!("sign + attest an image with a cosign key, median of {ROUNDS} (key opened each time, as cosign does):");
    println!("  stagecoach:                          {sign:>7.1} ms");
    println!("  cosign sign + cosign attest:         {sign_cli:>7.1} ms");
    println!("  ratio stagecoach / cosign:           {:.2}x", sign / sign_cli);
    println!("verify its signature and SLSA provenance, median of {ROUNDS}:");
    println!("  stagecoach:                          {verify:>7.1} ms");
    println!("  cosign verify + verify-attestation:  {verify_cli:>7.1} ms");
    println!("  ratio stagecoach / cosign:           {:.2}x", verify / verify_cli);
}
