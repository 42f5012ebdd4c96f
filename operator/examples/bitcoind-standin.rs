//! A stand-in for bitcoind and bitcoin-cli in the operator's kind tests, where no bitcoind image
//! can be had: one static binary that is `bitcoind` (a JSON-RPC server answering what the
//! operator and its probes call — getnetworkinfo, addnode, getaddednodeinfo — and keeping the
//! added-node list) or `bitcoin-cli` (its client), by the name it runs under. No blocks, no
//! peers: the tests that need a real bitcoind say so and run in hosted CI.
//!
//! Built static for the stand-in image (tests/real_kind.rs in the workspace makes it):
//!   RUSTFLAGS="-C target-feature=+crt-static" \
//!     cargo build --profile image --target x86_64-unknown-linux-gnu -p bitcoin-operator --example bitcoind-standin

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

#[path = "../tests/support/regtest.rs"]
mod regtest;

/// `-name=value` options and the other arguments, in order.
struct Args {
    options: Vec<(String, String)>,
    rest: Vec<String>,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Self {
        let (mut options, mut rest) = (Vec::new(), Vec::new());
        for arg in args {
            match arg.strip_prefix('-').filter(|_| rest.is_empty()) {
                Some(option) => {
                    let (name, value) = option.split_once('=').unwrap_or((option, ""));
                    options.push((name.to_owned(), value.to_owned()));
                }
                None => rest.push(arg),
            }
        }
        Self { options, rest }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn port(&self) -> u16 {
        self.get("rpcport").and_then(|p| p.parse().ok()).unwrap_or(18443)
    }

    fn authorization(&self) -> String {
        let credentials = format!("{}:{}", self.get("rpcuser").unwrap_or(""), self.get("rpcpassword").unwrap_or(""));
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials))
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let program = argv.next().unwrap_or_default();
    let args = Args::parse(argv);
    if program.ends_with("bitcoin-cli") { cli(&args) } else { server(&args) }
}

fn server(args: &Args) -> ExitCode {
    let listener = match TcpListener::bind(("0.0.0.0", args.port())) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on port {}: {e}", args.port());
            return ExitCode::FAILURE;
        }
    };
    // As PID 1 of its container, SIGTERM would be ignored without a handler of its own.
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
            tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        });
        println!("stand-in bitcoind stopping");
        std::process::exit(0);
    });
    println!("stand-in bitcoind (regtest JSON-RPC only) listening on port {}", args.port());
    let node = Arc::new(Mutex::new(regtest::Node::default()));
    let expected = args.authorization();
    for stream in listener.incoming().flatten() {
        let (node, expected) = (Arc::clone(&node), expected.clone());
        std::thread::spawn(move || serve(stream, &node, &expected));
    }
    ExitCode::SUCCESS
}

/// HTTP/1.1 requests on one connection (the operator's client keeps it open) until it closes.
fn serve(stream: TcpStream, node: &Mutex<regtest::Node>, expected: &str) {
    let mut reader = BufReader::new(stream.try_clone().expect("a stream"));
    let mut writer = stream;
    loop {
        let (mut length, mut authorized, mut close) = (0, false, false);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorized = value.trim() == expected,
                "connection" => close = value.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, reply) = if !authorized {
            (401, String::new())
        } else {
            let request: Value = serde_json::from_slice(&body).unwrap_or_default();
            let (method, params) = regtest::call(&request);
            let result = node.lock().unwrap_or_else(|e| e.into_inner()).answer(&method, &params);
            let (status, reply) = regtest::reply(&request["id"], result);
            (status, reply.to_string())
        };
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            _ => "Internal Server Error",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            reply.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(reply.as_bytes())).is_err() || close {
            return;
        }
    }
}

/// `bitcoin-cli [-options] METHOD [PARAMS…]`: prints the result as bitcoin-cli does.
fn cli(args: &Args) -> ExitCode {
    let Some((method, params)) = args.rest.split_first() else {
        eprintln!("error: too few parameters");
        return ExitCode::FAILURE;
    };
    let params: Vec<Value> = params.iter().map(|p| serde_json::from_str(p).unwrap_or_else(|_| json!(p))).collect();
    let body = json!({"jsonrpc": "1.0", "id": "cli", "method": method, "params": params}).to_string();
    let host = args.get("rpcconnect").unwrap_or("127.0.0.1");
    let answer = TcpStream::connect((host, args.port())).and_then(|mut stream| {
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            args.authorization(),
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    });
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("error: Could not connect to the server {host}:{} ({e})", args.port());
            return ExitCode::FAILURE;
        }
    };
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if head.lines().next().is_some_and(|status| status.contains(" 401 ")) {
        eprintln!("error: Authorization failed: Incorrect rpcuser or rpcpassword");
        return ExitCode::FAILURE;
    }
    let reply: Value = serde_json::from_str(body).unwrap_or_default();
    if let Some(error) = reply["error"].as_object() {
        eprintln!("error code: {}\nerror message:\n{}", error["code"], error["message"].as_str().unwrap_or_default());
        return ExitCode::FAILURE;
    }
    match &reply["result"] {
        Value::Null => {}
        Value::String(text) => println!("{text}"),
        other => println!("{}", serde_json::to_string_pretty(other).unwrap_or_default()),
    }
    ExitCode::SUCCESS
}
