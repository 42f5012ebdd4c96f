//! A JSON-RPC client for the few bitcoind calls the mesh needs, over plain HTTP to pod IPs, with
//! a deadline on every call.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::secret::Credentials;

/// bitcoind's `RPC_CLIENT_NODE_ALREADY_ADDED`.
const NODE_ALREADY_ADDED: i64 = -23;
/// bitcoind's `RPC_CLIENT_NODE_NOT_ADDED`.
const NODE_NOT_ADDED: i64 = -24;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("{node}: {method} got no answer within {timeout:?}")]
    Timeout { node: String, method: &'static str, timeout: Duration },
    #[error("{node}: {method}: {message}")]
    Transport { node: String, method: &'static str, message: String },
    #[error("{node}: the RPC credentials were refused (HTTP 401); check the network's secret")]
    Unauthorized { node: String },
    #[error("{node}: {method} failed with code {code}: {message}")]
    Rpc { node: String, method: &'static str, code: i64, message: String },
    #[error("{node}: {method}: unexpected answer (HTTP {status}): {detail}")]
    BadAnswer { node: String, method: &'static str, status: u16, detail: String },
    #[error("{node} is not an IP address")]
    BadAddress { node: String },
}

/// What `getnetworkinfo` says, in the parts the operator reads.
#[derive(Debug, Deserialize)]
pub struct NetworkInfo {
    pub version: u64,
    pub subversion: String,
    pub connections: u64,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Option<ReplyError>,
}

#[derive(Deserialize)]
struct ReplyError {
    code: i64,
    message: String,
}

#[derive(Deserialize)]
struct AddedNode {
    addednode: String,
}

/// Connections are pooled per node, so one reconcile's calls to a node share one TCP connection.
#[derive(Clone)]
pub struct RpcClient {
    http: Client<HttpConnector, Full<Bytes>>,
    port: u16,
    timeout: Duration,
}

impl RpcClient {
    pub fn new(port: u16, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Self { http, port, timeout }
    }

    /// The IPs in the node's addnode list.
    pub async fn added_nodes(&self, node: &str, credentials: &Credentials) -> Result<Vec<String>, RpcError> {
        let result = self.call(node, credentials, "getaddednodeinfo", json!([])).await?;
        let added: Vec<AddedNode> = serde_json::from_value(result).map_err(|e| RpcError::BadAnswer {
            node: node.to_owned(),
            method: "getaddednodeinfo",
            status: 200,
            detail: e.to_string(),
        })?;
        Ok(added.into_iter().map(|a| a.addednode).collect())
    }

    /// `addnode <peer> add`; a peer already in the list is not an error (another reconcile of
    /// the same network may have added it first).
    pub async fn add_node(&self, node: &str, credentials: &Credentials, peer: &str) -> Result<(), RpcError> {
        self.addnode(node, credentials, peer, "add", NODE_ALREADY_ADDED).await
    }

    /// `addnode <peer> remove`; a peer not in the list is not an error.
    pub async fn remove_node(&self, node: &str, credentials: &Credentials, peer: &str) -> Result<(), RpcError> {
        self.addnode(node, credentials, peer, "remove", NODE_NOT_ADDED).await
    }

    pub async fn network_info(&self, node: &str, credentials: &Credentials) -> Result<NetworkInfo, RpcError> {
        let result = self.call(node, credentials, "getnetworkinfo", json!([])).await?;
        serde_json::from_value(result).map_err(|e| RpcError::BadAnswer {
            node: node.to_owned(),
            method: "getnetworkinfo",
            status: 200,
            detail: e.to_string(),
        })
    }

    async fn addnode(
        &self,
        node: &str,
        credentials: &Credentials,
        peer: &str,
        command: &str,
        tolerated: i64,
    ) -> Result<(), RpcError> {
        match self.call(node, credentials, "addnode", json!([peer, command])).await {
            Err(RpcError::Rpc { code, .. }) if code == tolerated => Ok(()),
            other => other.map(drop),
        }
    }

    async fn call(
        &self,
        node: &str,
        credentials: &Credentials,
        method: &'static str,
        params: Value,
    ) -> Result<Value, RpcError> {
        let ip: IpAddr = node.parse().map_err(|_| RpcError::BadAddress { node: node.to_owned() })?;
        let body = json!({"jsonrpc": "1.0", "id": method, "method": method, "params": params});
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", credentials.user, credentials.password));
        let mut auth = HeaderValue::try_from(format!("Basic {token}")).expect("base64 is a valid header value");
        auth.set_sensitive(true);
        let request = Request::post(format!("http://{}/", SocketAddr::new(ip, self.port)))
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, auth)
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a request to an IP address is valid");
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| RpcError::Transport {
                node: node.to_owned(),
                method,
                message: transport_message(&e),
            })?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| RpcError::Transport {
                node: node.to_owned(),
                method,
                message: e.to_string(),
            })?;
            Ok::<_, RpcError>((status, body.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange).await.map_err(|_| RpcError::Timeout {
            node: node.to_owned(),
            method,
            timeout: self.timeout,
        })??;
        if status == StatusCode::UNAUTHORIZED {
            return Err(RpcError::Unauthorized { node: node.to_owned() });
        }
        // bitcoind answers RPC errors with HTTP 500 (or 404 for unknown methods) and a JSON body.
        let reply: Reply = serde_json::from_slice(&body).map_err(|_| RpcError::BadAnswer {
            node: node.to_owned(),
            method,
            status: status.as_u16(),
            detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        })?;
        match reply.error {
            Some(e) => Err(RpcError::Rpc { node: node.to_owned(), method, code: e.code, message: e.message }),
            None => Ok(reply.result),
        }
    }
}

/// hyper's top-level error says only "client error (Connect)"; the cause says what happened.
fn transport_message(error: &hyper_util::client::legacy::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}
