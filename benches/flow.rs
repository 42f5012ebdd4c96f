//! The DEV stage end to end on local repositories and a local registry: `stagecoach
//! build-and-deploy` (build and test commands trivial, image build and push, QA promotion)
//! against benches/seed_flow.sh, the blog series' steps with docker, git and sed, in the same run,
//! interleaved; with stagecoach's own stage durations, to show where its time goes. Target: at
//! least 2x faster than the script.
//!
//!     cargo bench --bench flow            (needs a Docker engine and docker-registry)
//!     BENCH_BUILDER=1 cargo bench --bench flow     (stagecoach through the builder as well)

#![allow(dead_code)]

#[path = "../tests/ci_cache.rs"]
mod ci_cache;
#[path = "../tests/git_server.rs"]
mod git_server;
#[path = "../tests/registry.rs"]
mod registry;
#[path = "../tests/support.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: usize = 9;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = root.join("target/x86_64-unknown-linux-gnu/image/operator");
    if !binary.is_file() || !registry::docker_available() {
        eprintln!("needs the static operator binary and a Docker engine: nothing measured");
        return;
    }
    let Some(registry) = registry::Registry::start(None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let chart = |name: &str| std::fs::read_to_string(root.join("chart-template").join(name)).unwrap();
    let (ours_qa, seed_qa) = (d.join("qa-ours.git"), d.join("qa-seed.git"));
    for qa in [&ours_qa, &seed_qa] {
        git_server::seed_bare_repo(qa, &[("Chart.yaml", &chart("Chart.yaml")), ("values.yaml", &chart("values.yaml"))]);
    }
    let dev = d.join("dev");
    std::fs::create_dir_all(dev.join("operator")).unwrap();
    std::fs::create_dir_all(dev.join("target/image")).unwrap();
    std::fs::create_dir_all(dev.join("pipelines")).unwrap();
    // BENCH_BUILDER=1: a line only the builder reads sends stagecoach's build to the builder
    // too, to see what importing the image saves.
    let dockerfile = std::fs::read_to_string(root.join("operator/Dockerfile")).unwrap();
    let builder = std::env::var_os("BENCH_BUILDER").is_some();
    std::fs::write(
        dev.join("operator/Dockerfile"),
        if builder { format!("ARG UNUSED=1\n{dockerfile}") } else { dockerfile },
    )
    .unwrap();
    std::fs::copy(root.join(".dockerignore"), dev.join(".dockerignore")).unwrap();
    std::fs::copy(&binary, dev.join("target/image/operator")).unwrap();
    std::fs::write(dev.join(".gitignore"), "target/\n").unwrap();
    let pipeline = support::VALID_PIPELINE
        .replacen("https://git.example/qa.git", &ours_qa.display().to_string(), 1)
        .replacen("127.0.0.1:5000/bitcoin-operator", &format!("{}/bench-ours", registry.host), 1)
        .replacen("  credentials: registry\n", "  dockerfile: operator/Dockerfile\n", 1)
        .replacen("run: cargo build", "run: 'true'", 1)
        .replacen("run: cargo test\n", "run: 'true'\n", 1)
        .replacen("    credentials: git\n", "", 2);
    std::fs::write(dev.join("pipelines/stagecoach.yaml"), pipeline).unwrap();
    support::git(&dev, &["init", "-q", "-b", "main"]);

    let (mut ours, mut seed) = (Vec::new(), Vec::new());
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    // Where stagecoach's time goes: each stage's duration, from its run record.
    let mut stages: std::collections::BTreeMap<(u64, String), Vec<u64>> = Default::default();
    let record = d.join("record.json");
    for round in 0..ROUNDS {
        // A new DEV commit (and so a new image tag) each round; the image layer changes too.
        std::fs::write(dev.join("stamp.txt"), format!("{round}")).unwrap();
        support::git(&dev, &["add", "."]);
        support::git(&dev, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", &format!("round {round}")]);
        let short = support::git(&dev, &["rev-parse", "--short=7", "HEAD"]);
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            // Appended bytes leave the ELF binary runnable and make its layer new: for this run,
            // round and side, so that no build is a cache hit of another (or of an earlier run).
            let mut operator = std::fs::read(&binary).unwrap();
            operator.extend(format!("run {run} round {round} side {side}").bytes());
            std::fs::write(dev.join("target/image/operator"), operator).unwrap();
            let started = Instant::now();
            let out = if side == 0 {
                Command::new(support::BIN)
                    .args(["-q", "--report"])
                    .arg(&record)
                    .arg("build-and-deploy")
                    .current_dir(&dev)
                    .output()
                    .unwrap()
            } else {
                Command::new(root.join("benches/seed_flow.sh"))
                    .arg(&dev)
                    .arg(format!("{}/bench-seed", registry.host))
                    .arg(&short)
                    .arg(&seed_qa)
                    .env("DOCKER_BUILDKIT", "0")
                    .output()
                    .unwrap()
            };
            assert!(out.status.success(), "side {side}: {}", String::from_utf8_lossy(&out.stderr));
            if side == 0 { &mut ours } else { &mut seed }.push(started.elapsed());
            if side == 0 {
                let run: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
                for stage in run["stages"].as_array().unwrap() {
                    let key = (stage["group"].as_u64().unwrap(), stage["name"].as_str().unwrap().to_string());
                    stages.entry(key).or_default().push(stage["duration_ms"].as_u64().unwrap());
                }
            }
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (ours, seed) = (median(&mut ours), median(&mut seed));
    println!("DEV stage (image build, push :tag and :latest, QA promotion), median of {ROUNDS}:");
    println!("  stagecoach build-and-deploy:              {:>7.1} ms", ours.as_secs_f64() * 1e3);
    println!("  seed script (docker, git clone, sed, push): {:>7.1} ms", seed.as_secs_f64() * 1e3);
    let ratio = ours.as_secs_f64() / seed.as_secs_f64();
    println!("  ratio stagecoach / seed script:           {ratio:.2}x ({:.1}x faster)", 1.0 / ratio);
    println!("  target at least 2x faster: {}", if ratio <= 0.5 { "met" } else { "MISSED" });
    println!("  stagecoach's stages (median ms; a group's stages run in parallel):");
    for ((group, name), mut ms) in stages {
        ms.sort();
        println!("    {group:>2} {name:<20} {:>6}", ms[ms.len() / 2]);
    }
    println!(
        "  QA commits: stagecoach {}, seed {}",
        support::git(&ours_qa, &["rev-list", "--count", "main"]),
        support::git(&seed_qa, &["rev-list", "--count", "main"])
    );
}
