//! One promotion (clone, edit, commit, push) against a git smart-HTTP server with basic auth on
//! 127.0.0.1: `stagecoach promote` against the same steps done by the git CLI in a script (the
//! seed's way: shallow clone, sed, commit, push), measured in the same run.
//!
//! Target: stagecoach within 1.1x of the script (median of 15 interleaved rounds).
//!
//!     cargo bench --bench promote        (needs nginx and fcgiwrap: .ci/run installs them)

#![allow(dead_code)]

#[path = "../tests/ci_cache.rs"]
mod ci_cache;
#[path = "../tests/git_server.rs"]
mod git_server;
#[path = "../tests/support.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-1234";
const ROUNDS: usize = 15;

fn main() {
    let Some(server) = git_server::GitServer::start("ci", TOKEN) else {
        eprintln!("nginx/fcgiwrap missing: nothing measured");
        return;
    };
    let values = "# QA chart values\nimage:\n  repository: 127.0.0.1:5000/op\n  tag: latest # set by CI\n";
    let url = server.create_repo("qa", &[("values.yaml", values), ("README.md", &"filler line\n".repeat(2000))]);
    let work = tempfile::tempdir().unwrap();
    let askpass = work.path().join("askpass.sh");
    std::fs::write(&askpass, format!("#!/bin/sh\necho {TOKEN}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = format!(
        "set -e\nd=$(mktemp -d)\ngit clone -q --depth 1 --branch main http://ci@{host}/qa.git \"$d\"\n\
         sed -i \"s/^  tag: .*/  tag: $1 # set by CI/\" \"$d/values.yaml\"\n\
         git -C \"$d\" -c user.name=stagecoach -c user.email=stagecoach@localhost commit -qam \"promote $1\"\n\
         git -C \"$d\" push -q origin main\nrm -rf \"$d\"\n",
        host = url.trim_start_matches("http://").trim_end_matches("/qa.git")
    );
    let pipeline = support::VALID_PIPELINE.replacen("https://git.example/qa.git", &url, 1).replacen(
        "    token_env: GITHUB_TOKEN",
        "    username: ci\n    token_env: QA_TOKEN",
        1,
    );
    std::fs::create_dir_all(work.path().join("pipelines")).unwrap();
    std::fs::write(work.path().join("pipelines/stagecoach.yaml"), pipeline).unwrap();

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..ROUNDS {
        // Alternate who goes first, so neither always meets a warmer server.
        let mut run_ours = |tag: String| {
            let started = Instant::now();
            let out = Command::new(support::BIN)
                .current_dir(work.path())
                .env("QA_TOKEN", TOKEN)
                .args(["-q", "promote", "--repo", "qa", "--file", "values.yaml", "--set", &format!("image.tag={tag}")])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            ours.push(started.elapsed());
        };
        let mut run_theirs = |tag: String| {
            let started = Instant::now();
            let out = Command::new("bash")
                .args(["-c", &script, "promote", &tag])
                .env("GIT_ASKPASS", &askpass)
                .env("GIT_TERMINAL_PROMPT", "0")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            theirs.push(started.elapsed());
        };
        if round % 2 == 0 {
            run_ours(format!("s{round}"));
            run_theirs(format!("g{round}"));
        } else {
            run_theirs(format!("g{round}"));
            run_ours(format!("s{round}"));
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    println!("one promotion over HTTP with basic auth, median of {ROUNDS}:");
    println!("  stagecoach promote:            {:>7.1} ms", ours.as_secs_f64() * 1e3);
    println!("  git CLI script (clone/sed/commit/push): {:>7.1} ms", theirs.as_secs_f64() * 1e3);
    let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
    println!("  ratio stagecoach / git script: {ratio:.2}x");
    println!("  target <= 1.1x: {}", if ratio <= 1.1 { "met" } else { "MISSED" });
    let commits = support::git(&server.bare("qa"), &["rev-list", "--count", "main"]);
    println!("  commits on the server: {commits} (1 seed + {} promotions)", 2 * ROUNDS);
}
