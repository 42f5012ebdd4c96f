//! A real Kubernetes control plane for tests: etcd and kube-apiserver (built by `.ci/kube-tools`,
//! found through `STAGECOACH_KUBE_BIN`) as processes on 127.0.0.1, with TLS serving, a
//! client-certificate admin, RBAC authorization, a ServiceAccount signing key (so that
//! `kubectl create token` works) and an audit log of every request. No controller-manager, no
//! scheduler, no kubelet: objects are stored, defaulted and authorized, and no pod ever runs.
//!
//! Each test that needs one starts its own: nextest runs every test in a process of its own,
//! and a control plane of their own keeps tests apart (CRDs and ClusterRoles are cluster-wide,
//! and the operator watches every namespace). A supervisor process ends etcd and kube-apiserver
//! and removes their directory when the control plane is dropped or the test process is gone,
//! however it ended, so nothing is left running or listening.
//!
//! Shared by the CLI tests and the operator's tests (`#[path]`): it uses nothing of either.

#![allow(dead_code)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get the binaries, for the skip message and the CI failure.
pub const HOW: &str = "run `eval \"$(.ci/kube-tools)\"` first (it builds them, and .ci/run does)";

pub struct ControlPlane {
    /// `https://127.0.0.1:PORT`
    pub server: String,
    /// An admin's kubeconfig (client certificate in group system:masters).
    pub kubeconfig: PathBuf,
    /// The CA the serving certificate is signed by.
    pub ca: PathBuf,
    /// kubectl, kube-apiserver and etcd.
    pub bin: PathBuf,
    dir: tempfile::TempDir,
    supervisor: Child,
}

/// Whether a test must fail instead of skipping when a part is missing (`.ci/run` sets it).
fn required() -> bool {
    std::env::var_os("STAGECOACH_REQUIRE_COMPONENTS").is_some_and(|v| v == "1")
}

/// `$STAGECOACH_KUBE_BIN` when it holds kubectl, kube-apiserver and etcd; else a loud skip
/// (a failure in CI).
pub fn kube_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("STAGECOACH_KUBE_BIN").map(PathBuf::from);
    let complete =
        bin.as_ref().is_some_and(|bin| ["kubectl", "kube-apiserver", "etcd"].iter().all(|b| bin.join(b).is_file()));
    if !complete {
        let what = "etcd, kube-apiserver and kubectl (STAGECOACH_KUBE_BIN)";
        assert!(!required(), "{what} are required here (STAGECOACH_REQUIRE_COMPONENTS=1) but missing: {HOW}");
        eprintln!("SKIPPED: {what} are missing: {HOW}");
        return None;
    }
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[track_caller]
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The extensions of each certificate: a CA, the API server's serving certificate (127.0.0.1),
/// an admin's client certificate.
const OPENSSL_CONFIG: &str = "[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
";

/// The certificates, and the ServiceAccount signing key, as P-256 keys (made in milliseconds,
/// unlike RSA).
fn certificates(dir: &Path) {
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG).unwrap();
    let new = |name: &str, subject: &str, extensions: &str, signer: &[&str]| {
        let (key, out) = (format!("{name}.key"), format!("{name}.crt"));
        let args = ["req", "-x509", "-config", "openssl.cnf", "-extensions", extensions, "-newkey", "ec"];
        let key_args = ["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-keyout", &key];
        openssl(dir, &[&args[..], &key_args, &["-out", &out, "-subj", subject], signer].concat());
    };
    new("ca", "/CN=test-ca", "ca", &[]);
    let by_ca = ["-CA", "ca.crt", "-CAkey", "ca.key"];
    new("server", "/CN=kube-apiserver", "server", &by_ca);
    new("admin", "/O=system:masters/CN=test-admin", "client", &by_ca);
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key"]);
}

/// Every request, with who made it and the answer's code.
const AUDIT_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

/// Runs etcd and kube-apiserver until the test process (`$1`) is gone or it is told to stop,
/// then ends them, waits for them, and removes the directory.
const SUPERVISOR: &str = r#"
parent=$1 dir=$2
"$BIN/etcd" --data-dir "$dir/etcd" --name test --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "test=http://127.0.0.1:$PEER_PORT" --log-level warn >"$dir/etcd.log" 2>&1 &
etcd=$!
"$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$PORT" \
  --tls-cert-file "$dir/server.crt" --tls-private-key-file "$dir/server.key" --client-ca-file "$dir/ca.crt" \
  --authorization-mode RBAC --service-cluster-ip-range 10.0.0.0/24 --allow-privileged \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$dir/sa.key" --service-account-signing-key-file "$dir/sa.key" \
  --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
  --cert-dir "$dir/generated" --enable-priority-and-fairness=false --profiling=false \
  >"$dir/apiserver.log" 2>&1 &
apiserver=$!
stop() {
  kill "$apiserver" 2>/dev/null; wait "$apiserver"
  kill "$etcd" 2>/dev/null; wait "$etcd"
  rm -rf "$dir"
  exit 0
}
trap stop TERM INT HUP
# The test process is gone once it is no more, or a zombie no one reaps.
alive() { state=$(sed 's/.*) //' "/proc/$parent/stat" 2>/dev/null) && [ "${state%% *}" != Z ]; }
while alive; do sleep 0.2 & wait $!; done
stop
"#;

impl ControlPlane {
    /// Starts one and waits until it is ready; `None` (a failure in CI) without the binaries.
    pub fn start() -> Option<Self> {
        let bin = kube_bin()?;
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("stagecoach-control-plane-").tempdir().unwrap();
        let d = dir.path();
        certificates(d);
        std::fs::write(d.join("audit-policy.yaml"), AUDIT_POLICY).unwrap();
        let port = free_port();
        let server = format!("https://127.0.0.1:{port}");
        let kubeconfig = d.join("admin.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: admin\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {d}/ca.crt\nusers:\n- name: admin\n  user:\n    client-certificate: {d}/admin.crt\n    client-key: {d}/admin.key\ncontexts:\n- name: admin\n  context: {{cluster: test, user: admin}}\n",
                d = d.display()
            ),
        )
        .unwrap();
        // Its own process group: a Ctrl-C to the tests reaches it only through their end.
        let supervisor = Command::new("sh")
            .args(["-c", SUPERVISOR, "supervisor", &std::process::id().to_string(), &d.display().to_string()])
            .env("BIN", &bin)
            .env("PORT", port.to_string())
            .env("ETCD_PORT", free_port().to_string())
            .env("PEER_PORT", free_port().to_string())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the control plane's supervisor");
        let plane = ControlPlane { server, kubeconfig, ca: d.join("ca.crt"), bin, dir, supervisor };
        plane.wait_ready(started);
        Some(plane)
    }

    fn wait_ready(&self, started: Instant) {
        let deadline = started + Duration::from_secs(90);
        loop {
            // readyz holds back until the bootstrap RBAC roles and the default namespace exist.
            if self.kubectl(&["get", "--raw", "/readyz"]).is_ok_and(|out| out.trim() == "ok")
                && self.kubectl(&["get", "namespace", "default"]).is_ok()
            {
                eprintln!("control plane at {} ready in {:.1}s", self.server, started.elapsed().as_secs_f64());
                return;
            }
            assert!(Instant::now() < deadline, "the control plane did not get ready in 90 s:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of etcd's and kube-apiserver's logs, for a failure message.
    pub fn logs(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!("etcd.log:\n{}\napiserver.log:\n{}", tail("etcd.log"), tail("apiserver.log"))
    }

    /// kubectl as the admin: its stdout, or what it printed on failure.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_stdin(args, "")
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<String, String> {
        use std::io::Write as _;
        let mut child = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("kubectl {}: {stdout}{}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// The object as JSON, or `None` when the API server has no such object.
    pub fn get(&self, kind: &str, name: &str, namespace: Option<&str>) -> Option<serde_json::Value> {
        let mut args = vec!["get", kind, name, "-o", "json", "--ignore-not-found", "--show-managed-fields"];
        if let Some(namespace) = namespace {
            args.extend(["-n", namespace]);
        }
        let out = self.kubectl(&args).unwrap_or_else(|e| panic!("{e}"));
        (!out.trim().is_empty()).then(|| serde_json::from_str(&out).unwrap())
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/name` with a token the API
    /// server issued (TokenRequest): exactly the rights RBAC gives that account.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self
            .kubectl(&["create", "token", name, "-n", namespace, "--duration", "2h"])
            .unwrap_or_else(|e| panic!("{e}"));
        let path = self.dir.path().join(format!("{namespace}-{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: sa\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: test, user: sa, namespace: {namespace}}}\n",
                self.server,
                self.ca.display(),
                token.trim()
            ),
        )
        .unwrap();
        path
    }

    /// The audit log's entries (one JSON object per request the API server answered).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// A directory of the control plane's, removed with it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.supervisor.id().to_string()]).status();
        let _ = self.supervisor.wait();
    }
}
