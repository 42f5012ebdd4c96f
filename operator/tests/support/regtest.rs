//! What bitcoind answers to the JSON-RPC calls the operator and its probes make, and nothing
//! else: shared by the in-process stand-ins of the mesh tests (`bitcoind.rs`) and the stand-in
//! image of the kind tests (`examples/bitcoind-standin.rs`).

#![allow(dead_code)]

use serde_json::{Value, json};

/// One node's addnode list.
#[derive(Debug, Default)]
pub struct Node {
    pub added: Vec<String>,
}

/// A JSON-RPC error: bitcoind's code and message.
pub type RpcError = (i64, String);

impl Node {
    /// The answer to `method` with `params` (strings, as `bitcoin-cli` sends them).
    pub fn answer(&mut self, method: &str, params: &[String]) -> Result<Value, RpcError> {
        match (method, params) {
            ("getaddednodeinfo", []) => Ok(json!(
                self.added
                    .iter()
                    .map(|a| json!({"addednode": a, "connected": false, "addresses": []}))
                    .collect::<Vec<_>>()
            )),
            ("getnetworkinfo", []) => {
                Ok(json!({"version": 280100, "subversion": "/Satoshi:28.1.0/", "connections": self.added.len()}))
            }
            ("addnode", [peer, command]) if command == "add" => {
                if self.added.contains(peer) {
                    Err((-23, "Error: Node already added".to_owned()))
                } else {
                    self.added.push(peer.clone());
                    Ok(Value::Null)
                }
            }
            ("addnode", [peer, command]) if command == "remove" => match self.added.iter().position(|a| a == peer) {
                Some(i) => {
                    self.added.remove(i);
                    Ok(Value::Null)
                }
                None => Err((-24, "Error: Node could not be removed. It has not been added previously.".to_owned())),
            },
            _ => Err((-32601, "Method not found".to_owned())),
        }
    }
}

/// The method and its parameters, as strings, from a JSON-RPC request.
pub fn call(request: &Value) -> (String, Vec<String>) {
    let method = request["method"].as_str().unwrap_or_default().to_owned();
    let params = request["params"]
        .as_array()
        .map(|p| p.iter().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect())
        .unwrap_or_default();
    (method, params)
}

/// The reply bitcoind sends for JSON-RPC 1.0 requests: an error comes with HTTP 500.
pub fn reply(id: &Value, result: Result<Value, RpcError>) -> (u16, Value) {
    match result {
        Ok(result) => (200, json!({"result": result, "error": null, "id": id})),
        Err((code, message)) => (500, json!({"result": null, "error": {"code": code, "message": message}, "id": id})),
    }
}
