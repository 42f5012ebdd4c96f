//! Build and push of an operator-like image (a static binary FROM scratch, plus a file that
//! changes every round so that nothing is a pure cache hit): stagecoach's engine adapter
//! (bollard) against `docker build` + `docker tag` + `docker push` x2 on the same context,
//! against the same local registry, in the same run.
//!
//!     cargo bench --bench image          (needs a Docker engine and docker-registry)

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

use stagecoach::tools::docker::DockerEngine;

const ROUNDS: usize = 8;

fn main() {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/x86_64-unknown-linux-gnu/image/operator");
    if !binary.is_file() || !registry::docker_available() {
        eprintln!("needs the static operator binary (see operator/Dockerfile) and a Docker engine: nothing measured");
        return;
    }
    let Some(registry) = registry::Registry::start(None) else { return };
    let context = tempfile::tempdir().unwrap();
    let c = context.path();
    std::fs::copy(&binary, c.join("operator")).unwrap();
    std::fs::write(
        c.join("Dockerfile"),
        "FROM scratch\nCOPY operator /operator\nCOPY stamp /stamp\nENTRYPOINT [\"/operator\"]\n",
    )
    .unwrap();
    let ours_repo = format!("{}/bench-stagecoach", registry.host);
    let cli_repo = format!("{}/bench-cli", registry.host);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let engine = runtime.block_on(DockerEngine::connect(Default::default())).unwrap();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate the order so neither side always runs on a warmer engine.
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            std::fs::write(c.join("stamp"), format!("{side}-{round}-{:?}", Instant::now())).unwrap();
            let tag = format!("r{round}");
            let started = Instant::now();
            if side == 0 {
                runtime.block_on(async {
                    let tar = stagecoach::build_context::tar(c, &c.join("Dockerfile")).unwrap();
                    let id = engine.build(tar, "Dockerfile", &format!("{ours_repo}:{tag}"), &|_| {}).await.unwrap();
                    engine.tag(&id, &ours_repo, "latest").await.unwrap();
                    engine.push(&ours_repo, &tag, None, &|_| {}).await.unwrap();
                    engine.push(&ours_repo, "latest", None, &|_| {}).await.unwrap();
                });
                ours.push(started.elapsed());
            } else {
                let reference = format!("{cli_repo}:{tag}");
                let latest = format!("{cli_repo}:latest");
                for args in [
                    vec!["build", "-q", "-t", &reference, c.to_str().unwrap()],
                    vec!["tag", &reference, &latest],
                    vec!["push", "-q", &reference],
                    vec!["push", "-q", &latest],
                ] {
                    let out = Command::new("docker").args(&args).env("DOCKER_BUILDKIT", "0").output().unwrap();
                    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
                }
                theirs.push(started.elapsed());
            }
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    println!(
        "build + tag + push (:tag and :latest) of a {:.1} MB static binary image, median of {ROUNDS}:",
        std::fs::metadata(&binary).unwrap().len() as f64 / 1e6
    );
    println!("  stagecoach (bollard):                 {:>7.1} ms", ours.as_secs_f64() * 1e3);
    println!("  docker CLI (build, tag, push, push):  {:>7.1} ms", theirs.as_secs_f64() * 1e3);
    println!("  ratio stagecoach / docker CLI:        {:.2}x", ours.as_secs_f64() / theirs.as_secs_f64());
}
