//! The operator's entry point: command line, logging, then the controller until SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use bitcoin_operator::controller::{self, Settings};
use bitcoin_operator::policy::AllowedImages;
use bitcoin_operator::resources::{PodDefaults, RPC_PORT};
use bitcoin_operator::rpc::RpcClient;
use clap::Parser;

/// Runs bitcoind regtest networks for BitcoinNetwork resources in all namespaces: a StatefulSet
/// and a headless Service per network, a status with every node, and a full mesh of addnode
/// entries over JSON-RPC.
///
/// Reads: the in-cluster service account, or KUBECONFIG / ~/.kube/config outside a cluster.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Args {
    /// bitcoind image for networks that do not name one (spec.image).
    #[arg(long, default_value_t = Settings::default().pods.image)]
    bitcoind_image: String,
    /// Image repositories networks may name in spec.image, comma-separated (any tag or digest
    /// of them), besides the repository of --bitcoind-image, which is always allowed. A network
    /// naming another image is refused: a Warning event, a status condition, and its
    /// StatefulSet is left as it is.
    #[arg(long, value_delimiter = ',')]
    allowed_images: Vec<String>,
    /// Pull policy of the bitcoind containers.
    #[arg(long, default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    bitcoind_pull_policy: String,
    /// Seconds between reconciles of an unchanged network (heals missed events).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    resync_seconds: u64,
    /// Seconds a JSON-RPC call to a bitcoind may take.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    rpc_timeout_seconds: u64,
    /// Networks reconciled at once (0: no limit).
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Port of /healthz, /readyz and /metrics, on all addresses (0: any free port, logged).
    #[arg(long, default_value_t = 8080)]
    metrics_port: u16,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Colours only for a person at a terminal, not in `kubectl logs`.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_max_level(args.log_level).with_target(false).with_ansi(ansi).init();
    let allowed_images = AllowedImages::new(std::iter::once(&args.bitcoind_image).chain(&args.allowed_images));
    let settings = Settings {
        pods: PodDefaults::new(&args.bitcoind_image, &args.bitcoind_pull_policy),
        allowed_images,
        resync: Duration::from_secs(args.resync_seconds),
        concurrency: args.concurrency,
        ..Settings::default()
    };
    let rpc_timeout = Duration::from_secs(args.rpc_timeout_seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(async {
        let metrics = tokio::net::TcpListener::bind(("0.0.0.0", args.metrics_port)).await.map_err(|e| {
            format!("cannot listen on port {} for /healthz, /readyz and /metrics: {e}", args.metrics_port)
        })?;
        let address = metrics.local_addr().map_err(|e| e.to_string())?;
        let client = kube::Client::try_default().await.map_err(|e| format!("no Kubernetes API to talk to: {e}"))?;
        tracing::info!(version = env!("CARGO_PKG_VERSION"), metrics = %address, "bitcoin-operator starting");
        let rpc = RpcClient::new(RPC_PORT, rpc_timeout);
        controller::run(client, settings, rpc, metrics).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}
