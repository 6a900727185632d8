//! Harness for tests that drive the real `zmesh` binary: devnets and single nodes as separate
//! processes, talked to through their HTTP API.
#![allow(dead_code)]

pub mod chunks;
pub mod follow;
pub mod raw;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use zmesh_node::RuntimeInfo;
use zmesh_node::node::reports::{PeersReport, StatusReport};

pub const BIN: &str = env!("CARGO_BIN_EXE_zmesh");

/// Fast dead-peer detection (PING every second, dead after three PONGs later than 500 ms), so
/// lookups stop offering killed nodes within seconds.
pub const FAST_KEEPALIVE: [&str; 3] =
    ["keepalive.ping_interval=1s", "keepalive.ping_jitter=100ms", "keepalive.pong_timeout=500ms"];

/// [`FAST_KEEPALIVE`], then `extra`.
pub fn fast_keepalive_with(extra: &[&'static str]) -> Vec<&'static str> {
    FAST_KEEPALIVE.iter().chain(extra).copied().collect()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET: the status code and the body.
pub fn http_get(api: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(api).map_err(|e| format!("connect {api}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed HTTP response")?;
    let code =
        head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status code")?;
    Ok((code, body.to_string()))
}

pub fn get<T: DeserializeOwned>(api: &str, path: &str) -> Result<T, String> {
    let (code, body) = http_get(api, path)?;
    if code != 200 {
        return Err(format!("{path}: HTTP {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

pub fn status(api: &str) -> StatusReport {
    get(api, "/v1/status").expect("status")
}

pub fn peers(api: &str) -> PeersReport {
    get(api, "/v1/peers").expect("peers")
}

/// The value of a metric line (`name{labels} value`) in a node's /metrics, 0 if absent.
pub fn metric(api: &str, series: &str) -> f64 {
    let (_, body) = http_get(api, "/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

pub fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).expect("signal");
}

pub fn alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie counts as gone.
    kill(Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// A `zmesh devnet` process and the nodes it started.
pub struct Devnet {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<RuntimeInfo>,
}

impl Devnet {
    pub fn start(nodes: usize, overrides: &[&str]) -> Devnet {
        Self::start_in(tempfile::tempdir().expect("tempdir"), nodes, overrides)
    }

    /// Stops this devnet and starts it again on the same directory (same identities and data)
    /// with `overrides`.
    pub fn restart(mut self, overrides: &[&str]) -> Devnet {
        let nodes = self.nodes.len();
        signal(self.child.id(), Signal::SIGINT);
        wait_for("devnet to exit", Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        let dir = tempfile::tempdir().expect("placeholder");
        let dir = std::mem::replace(&mut self.dir, dir);
        let _ = std::fs::remove_file(dir.path().join("devnet.json"));
        drop(self);
        Self::start_in(dir, nodes, overrides)
    }

    pub fn start_in(dir: tempfile::TempDir, nodes: usize, overrides: &[&str]) -> Devnet {
        let mut cmd = Command::new(BIN);
        cmd.args(["devnet", "--nodes", &nodes.to_string(), "--dir"]).arg(dir.path());
        for o in overrides {
            cmd.args(["--set", o]);
        }
        let log = std::fs::File::create(dir.path().join("devnet.out")).expect("log");
        let child = cmd
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn devnet");
        let mut devnet = Devnet { child, dir, nodes: Vec::new() };
        let file = devnet.dir.path().join("devnet.json");
        let timeout = Duration::from_secs(120 + nodes as u64);
        let nodes = wait_for("devnet.json", timeout, || {
            if let Ok(Some(status)) = devnet.child.try_wait() {
                panic!("devnet exited early ({status}):\n{}", devnet.output());
            }
            let text = std::fs::read_to_string(&file).ok()?;
            let parsed: serde_json::Value = serde_json::from_str(&text).ok()?;
            serde_json::from_value::<Vec<RuntimeInfo>>(parsed["nodes"].clone()).ok()
        });
        devnet.nodes = nodes;
        devnet
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("devnet.out")).unwrap_or_default()
    }

    pub fn api(&self, i: usize) -> &str {
        &self.nodes[i].api
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("node.log")).unwrap_or_default()
    }

    /// Runs `f`; if it panics, prints every node's log lines containing `filter` first, so a
    /// failure in a multi-process test comes with what the nodes said.
    pub fn explain<T>(&self, filter: &str, f: impl FnOnce() -> T) -> T {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => v,
            Err(panic) => {
                for i in 0..self.nodes.len() {
                    for line in self.log(i).lines().filter(|l| l.contains(filter)) {
                        eprintln!("node {i}: {line}");
                    }
                }
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Stops the devnet with SIGINT, as Ctrl-C would, and checks every node process is gone.
    pub fn stop(mut self) {
        signal(self.child.id(), Signal::SIGINT);
        let status = wait_for("devnet to exit", Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        assert!(status.success(), "devnet exited with {status}:\n{}", self.output());
        for n in &self.nodes {
            assert!(!alive(n.pid), "node pid {} still running after devnet stopped", n.pid);
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for n in &self.nodes {
            let _ = kill(Pid::from_raw(n.pid as i32), Signal::SIGKILL);
        }
    }
}

/// One `zmesh node run` process with its own directory.
pub struct Node {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub info: RuntimeInfo,
}

impl Node {
    /// `zmesh node init` + `zmesh node run` on loopback with OS-chosen ports and `overrides`.
    pub fn start(overrides: &[&str]) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut init = Command::new(BIN);
        init.args(["node", "init", "--dir"]).arg(dir.path());
        let defaults = [
            r#"network.listen=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]"#,
            "api.listen=127.0.0.1:0",
        ];
        for o in defaults.iter().chain(overrides) {
            init.args(["--set", o]);
        }
        let out = init.output().expect("node init");
        assert!(out.status.success(), "node init failed: {}", String::from_utf8_lossy(&out.stderr));
        Self::run(dir)
    }

    pub fn run(dir: tempfile::TempDir) -> Node {
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log");
        let mut child = Command::new(BIN)
            .args(["node", "run", "--dir"])
            .arg(dir.path())
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn node");
        let file = dir.path().join(zmesh_node::RUNTIME_FILE);
        let info = wait_for("node.json", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("node exited early ({status}): {}", read_log(dir.path()));
            }
            serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()
        });
        Node { child, dir, info }
    }

    pub fn api(&self) -> &str {
        &self.info.api
    }

    pub fn tcp_addr(&self) -> String {
        self.info.multiaddrs.iter().find(|a| a.contains("/tcp/")).expect("tcp address").clone()
    }

    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `zmesh node run` on an existing node directory (a devnet node restarted after a
/// kill), appending to its log.
pub fn run_node(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .expect("node log");
    Command::new(BIN)
        .args(["node", "run", "--dir"])
        .arg(dir)
        .stdout(log.try_clone().expect("node log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn node")
}

pub fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
}

pub fn bootstrap_to(addr: &str) -> String {
    format!(r#"network.bootstrap=["{addr}"]"#)
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
