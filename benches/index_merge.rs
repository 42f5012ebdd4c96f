//! Merging one chart version into a Bitnami-scale index.yaml (15,000 entries, ~14 MB).
//!
//! Reports wall time (median of 9 interleaved rounds, each operation in a fresh process) and
//! peak RSS for a merge that adds a version and for a no-op merge, against baselines measured in
//! the same run: reading the file, and Helm's own loader (`repo add` through libhelm_sdkpy.so)
//! on the same index when the library is here. Targets: a merge within 5x and a no-op merge
//! within 3x the time to read the file, a merge under 1 s, peak RSS under 5x the index size.
//!
//!     cargo bench --bench index_merge

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use stagecoach::chart::index::{self, NewEntry};
use stagecoach::chart::meta::Metadata;

const CHARTS: usize = 300;
const VERSIONS: usize = 50;
const NOW: &str = "2026-11-22T00:00:00.000000000Z";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2], Path::new(&args[3]));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.yaml");
    let text = generate();
    std::fs::write(&path, &text).unwrap();
    let size = text.len() as f64;
    println!("index.yaml: {} entries, {:.1} MB", CHARTS * VERSIONS, size / 1e6);

    let [read, add, noop] = measure(["read", "add", "noop"], &path);
    let helm = helm_baseline(dir.path(), &path);

    println!();
    println!("{:<34} {:>10} {:>12} {:>12}", "", "wall", "peak RSS", "RSS/index");
    let row = |name: &str, (wall, rss): (Duration, u64)| {
        println!(
            "{name:<34} {:>8.0}ms {:>10.1}MB {:>11.2}x",
            wall.as_secs_f64() * 1e3,
            rss as f64 / 1e6,
            rss as f64 / size
        );
    };
    row("baseline: read the file", read);
    row("stagecoach: merge a new version", add);
    row("stagecoach: merge (already there)", noop);
    match helm {
        Some(helm) => {
            row("baseline: Helm loads the index", helm);
            println!();
            println!("merge / Helm load, wall: {:.3}x", add.0.as_secs_f64() / helm.0.as_secs_f64());
            println!("merge / Helm load, peak RSS: {:.3}x", add.1 as f64 / helm.1 as f64);
        }
        None => println!("(Helm baseline not measured: set STAGECOACH_HELM_LIB or run .ci/run first)"),
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let (add_ratio, noop_ratio) =
        (add.0.as_secs_f64() / read.0.as_secs_f64(), noop.0.as_secs_f64() / read.0.as_secs_f64());
    println!("target merge / read <= 5x: {} ({add_ratio:.2}x)", verdict(add_ratio <= 5.0));
    println!("target no-op merge / read <= 3x: {} ({noop_ratio:.2}x)", verdict(noop_ratio <= 3.0));
    println!("target merge < 1 s: {} ({:.0} ms)", verdict(add.0 < Duration::from_secs(1)), add.0.as_secs_f64() * 1e3);
    println!("target peak RSS < 5x index: {} ({:.2}x)", verdict((add.1 as f64) < 5.0 * size), add.1 as f64 / size);
}

/// For each operation, the median wall time of `ROUNDS` child runs, interleaved round by round
/// so that none always meets a warmer cache, and the largest peak RSS among them.
fn measure<const N: usize>(whats: [&str; N], path: &Path) -> [(Duration, u64); N] {
    const ROUNDS: usize = 9;
    let exe = std::env::current_exe().unwrap();
    let mut walls = [(); N].map(|()| Vec::new());
    let mut peaks = [0; N];
    for _ in 0..ROUNDS {
        for (i, what) in whats.iter().enumerate() {
            let out = Command::new(&exe).args(["--child", what]).arg(path).output().expect("run child");
            assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8_lossy(&out.stdout);
            let mut fields = text.split_whitespace();
            let nanos: u64 = fields.next().unwrap().parse().unwrap();
            let rss: u64 = fields.next().unwrap().parse().unwrap();
            walls[i].push(Duration::from_nanos(nanos));
            peaks[i] = peaks[i].max(rss);
        }
    }
    std::array::from_fn(|i| {
        walls[i].sort();
        (walls[i][ROUNDS / 2], peaks[i])
    })
}

/// One measured operation in a fresh process, so that its peak RSS is its own.
fn child(what: &str, path: &Path) {
    let started = Instant::now();
    let text = std::fs::read_to_string(path).unwrap();
    let metadata = Metadata {
        api_version: "v2".into(),
        name: "chart-0150".into(),
        version: if what == "noop" { "1.25.0".into() } else { "1.25.1".into() },
        description: Some("A benchmark chart".into()),
        ..Metadata::default()
    };
    let digest = if what == "noop" { digest_of(150, 25) } else { "f".repeat(64) };
    match what {
        "read" => assert!(!text.is_empty()),
        _ => {
            let entry = NewEntry { metadata: &metadata, digest: &digest, url: "https://charts.example/x.tgz".into() };
            let merged = index::merge(Some(&text), &entry, NOW).unwrap();
            assert_eq!(matches!(merged, index::Merged::AlreadyPublished), what == "noop");
            std::hint::black_box(merged);
        }
    }
    let wall = started.elapsed();
    println!("{} {}", wall.as_nanos(), peak_rss());
}

/// VmHWM of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn digest_of(chart: usize, version: usize) -> String {
    format!("{:064x}", chart * 1000 + version)
}

/// An index as Helm writes it: charts in name order, versions newest first.
fn generate() -> String {
    let mut out = String::from("apiVersion: v1\nentries:\n");
    for chart in 0..CHARTS {
        let name = format!("chart-{chart:04}");
        out.push_str(&format!("  {name}:\n"));
        for v in (0..VERSIONS).rev() {
            let version = format!("1.{v}.0");
            out.push_str(&format!(
                "  - annotations:\n      category: Infrastructure\n      licenses: Apache-2.0\n    apiVersion: v2\n    appVersion: 2.{v}.1\n    created: \"2025-0{}-1{}T10:20:30.123456789Z\"\n    dependencies:\n    - name: common\n      repository: oci://registry.example/charts\n      tags:\n      - common\n      version: 2.x.x\n    description: {name} packaged by the benchmark, a chart with a description as long as real ones tend to be.\n    digest: {}\n    home: https://example.com/charts/{name}\n    icon: https://example.com/icons/{name}.svg\n    keywords:\n    - {name}\n    - database\n    - benchmark\n    maintainers:\n    - name: Bench Maintainers\n      url: https://github.com/example/charts\n    name: {name}\n    sources:\n    - https://github.com/example/charts/tree/main/{name}\n    urls:\n    - https://charts.example/{name}-{version}.tgz\n    version: {version}\n",
                1 + v % 9,
                v % 10,
                digest_of(chart, v)
            ));
        }
    }
    out.push_str(&format!("generated: \"{NOW}\"\n"));
    out
}

/// Helm loading the same index through the library (`repo add` over HTTP on 127.0.0.1).
fn helm_baseline(dir: &Path, index: &Path) -> Option<(Duration, u64)> {
    let lib = std::env::var_os("STAGECOACH_HELM_LIB").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/tools/helm-sdkpy/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so")
    });
    if !lib.is_file() {
        return None;
    }
    let home = dir.join("helm");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("repositories.yaml"), "apiVersion: \"\"\nrepositories: []\n").unwrap();
    let serve = dir.join("serve");
    std::fs::create_dir_all(&serve).unwrap();
    std::fs::copy(index, serve.join("index.yaml")).unwrap();
    let mut server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "0", "--directory"])
        .arg(&serve)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // "Serving HTTP on 127.0.0.1 port NNNN (…)"
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take()?), &mut first).ok()?;
    let port = first.split_whitespace().nth(5)?.to_string();
    let script = format!(
        "import ctypes, resource, time\nlib = ctypes.CDLL({lib:?})\nh = ctypes.c_ulonglong()\nassert lib.helm_sdkpy_config_create(b'default', b'', b'', b'{{}}', ctypes.byref(h)) == 0\nt = time.monotonic()\nassert lib.helm_sdkpy_repo_add(h, b'bench', b'http://127.0.0.1:{port}/', b'', b'', b'{{}}') == 0\nprint(int((time.monotonic() - t) * 1e9), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n",
        lib = lib.display().to_string()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("HELM_CONFIG_HOME", &home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("HELM_REPOSITORY_CONFIG", home.join("repositories.yaml"))
        .env("HELM_REPOSITORY_CACHE", home.join("cache/repository"))
        .output()
        .ok();
    let _ = server.kill();
    let _ = server.wait();
    let out = out?;
    if !out.status.success() {
        eprintln!("Helm baseline failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    Some((Duration::from_nanos(fields.next()?.parse().ok()?), fields.next()?.parse().ok()?))
}
