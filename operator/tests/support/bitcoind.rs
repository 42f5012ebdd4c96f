//! JSON-RPC servers that answer like bitcoind for the calls the mesh makes, on real TCP at
//! 127.0.0.x (every address in 127/8 is loopback on Linux, so each "pod" has its own IP and
//! they share one port, as pods do). Each records the calls it got and keeps an addnode list.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret-rpc-pass";

#[derive(Clone, Default)]
pub struct Behaviour {
    /// Answers after this long (for timeouts).
    pub delay: Option<Duration>,
    /// Answers `addnode` with this RPC error code.
    pub addnode_error: Option<i64>,
}

#[derive(Default)]
struct NodeState {
    node: super::regtest::Node,
    calls: Vec<String>,
    behaviour: Behaviour,
}

#[derive(Clone)]
pub struct Bitcoind {
    pub ip: String,
    state: Arc<Mutex<NodeState>>,
}

impl Bitcoind {
    /// Calls as "method param param…", and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    pub fn added(&self) -> Vec<String> {
        let mut added = self.state.lock().unwrap().node.added.clone();
        added.sort();
        added
    }

    pub fn set_added(&self, added: &[&str]) {
        self.state.lock().unwrap().node.added = added.iter().map(|s| s.to_string()).collect();
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = behaviour;
    }
}

/// `count` nodes at 127.0.0.2, 127.0.0.3, … all listening on the returned port.
pub async fn start(count: u8) -> (u16, Vec<Bitcoind>) {
    'attempt: for _ in 0..20 {
        let first = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).await.expect("bind 127.0.0.2");
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for i in 1..count {
            match TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2 + i), port)).await {
                Ok(listener) => listeners.push(listener),
                Err(_) => continue 'attempt,
            }
        }
        let nodes = listeners.into_iter().map(serve).collect();
        return (port, nodes);
    }
    panic!("no port free on 127.0.0.2 to 127.0.0.{}", 1 + count);
}

fn serve(listener: TcpListener) -> Bitcoind {
    let ip = listener.local_addr().unwrap().ip().to_string();
    let node = Bitcoind { ip, state: Arc::default() };
    let served = node.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let node = served.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let node = node.clone();
                    async move { Ok::<_, Infallible>(node.answer(request).await) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    node
}

impl Bitcoind {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        let authorized = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            == Some(&format!("Basic {expected}"));
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let call: Value = serde_json::from_slice(&body).expect("JSON-RPC requests are JSON");
        let (method, params) = super::regtest::call(&call);
        let behaviour = self.state.lock().unwrap().behaviour.clone();
        if !authorized {
            // bitcoind answers a wrong password with an empty 401.
            return Response::builder().status(StatusCode::UNAUTHORIZED).body(Full::default()).unwrap();
        }
        // Recorded before any delay: a client that gives up drops the connection, and with it this task.
        let line = std::iter::once(method.clone()).chain(params.iter().cloned()).collect::<Vec<_>>().join(" ");
        self.state.lock().unwrap().calls.push(line);
        if let Some(delay) = behaviour.delay {
            tokio::time::sleep(delay).await;
        }
        let result = match (behaviour.addnode_error, method.as_str()) {
            (Some(code), "addnode") => Err((code, "refused by the test".to_owned())),
            _ => self.state.lock().unwrap().node.answer(&method, &params),
        };
        let (status, reply) = super::regtest::reply(&call["id"], result);
        let status = StatusCode::from_u16(status).unwrap();
        Response::builder().status(status).body(Full::new(Bytes::from(reply.to_string()))).unwrap()
    }
}

pub fn ip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i))
}

pub fn addr(i: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(i), port)
}
