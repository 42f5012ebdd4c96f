//! Health and metrics over HTTP, as controller-rs serves them: `/healthz` (the process answers),
//! `/readyz` (every watch has listed once, so the reconciler's cache is complete) and `/metrics`
//! (Prometheus text).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How a reconcile ended, the label of `reconciles_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The network is as its spec asks.
    Applied,
    /// The spec asks for what the operator may not do (see [`crate::policy`]).
    Refused,
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

type Labels = [(&'static str, &'static str); 1];

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    duration: Histogram,
    mesh_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bitcoin_operator");
        let reconciles = Family::<Labels, Counter>::default();
        registry.register("reconciles", "Reconciles by outcome", reconciles.clone());
        // 1 ms to ~16 s: a reconcile is a few API calls and the mesh's RPC calls.
        let duration = Histogram::new([0.001, 0.004, 0.016, 0.064, 0.256, 1.0, 4.0, 16.0]);
        registry.register("reconcile_duration_seconds", "How long reconciles take", duration.clone());
        let mesh_failures = Counter::default();
        registry.register("mesh_rpc_failures", "JSON-RPC calls to bitcoind nodes that failed", mesh_failures.clone());
        Self { registry, reconciles, duration, mesh_failures }
    }
}

impl Metrics {
    pub fn reconciled(&self, outcome: Outcome, took: Duration) {
        self.reconciles.get_or_create(&[("outcome", outcome.label())]).inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn mesh_failures(&self, count: usize) {
        self.mesh_failures.inc_by(count as u64);
    }

    /// The Prometheus text exposition.
    pub fn text(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Serves `/healthz`, `/readyz` (200 when `ready()`) and `/metrics` on `listener` until the
/// task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: impl Fn() -> bool + Clone + Send + Sync + 'static,
) {
    loop {
        // A failed accept (a client gone, no file descriptor left) is waited out, not fatal.
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (metrics, ready) = (metrics.clone(), ready.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let answer = answer(request.method(), request.uri().path(), &metrics, ready());
                async move { Ok::<_, Infallible>(answer) }
            });
            // Probes and scrapes are short; a client that stalls is cut off.
            let connection = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(5))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), connection).await;
        });
    }
}

fn answer(method: &Method, path: &str, metrics: &Metrics, ready: bool) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    let plain = "text/plain; charset=utf-8";
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, plain, "only GET\n".to_owned());
    }
    match path {
        "/healthz" => text(StatusCode::OK, plain, "ok\n".to_owned()),
        "/readyz" if ready => text(StatusCode::OK, plain, "ok\n".to_owned()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, plain, "watches not synced yet\n".to_owned()),
        "/metrics" => {
            text(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.text())
        }
        _ => text(StatusCode::NOT_FOUND, plain, "not found; try /healthz, /readyz or /metrics\n".to_owned()),
    }
}
