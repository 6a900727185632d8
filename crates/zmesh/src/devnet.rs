//! `zmesh devnet`: N Full Nodes on loopback, each its own `zmesh node run` process so any one
//! can be killed like a real node; waits until their routing tables converge, writes
//! `DIR/devnet.json`, and stops them all on Ctrl-C or SIGTERM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use zmesh_node::node::reports::StatusReport;
use zmesh_node::{RUNTIME_FILE, RuntimeInfo, config};

use crate::http::{client, get_json};

#[derive(Args, Debug, Clone)]
pub struct DevnetArgs {
    /// How many nodes to start.
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// Directory for the nodes' data, their logs and devnet.json. Identities are kept across
    /// runs; configs are rewritten.
    #[arg(long, default_value = "./devnet")]
    pub dir: PathBuf,
    /// Override a config key on every node, e.g. `--set keepalive.ping_interval=1s` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Converged means every routing table holds at least this many peers
    /// [default: min(nodes - 1, 15)].
    #[arg(long)]
    pub min_routing: Option<usize>,
    /// Give up if the mesh has not converged after this many seconds [default: 60 + nodes].
    #[arg(long)]
    pub timeout: Option<u64>,
}

/// One entry of `devnet.json`: the fields of a node's runtime file.
pub type DevnetNode = RuntimeInfo;

#[derive(Debug, Serialize, Deserialize)]
pub struct DevnetFile {
    pub nodes: Vec<DevnetNode>,
}

pub struct Devnet {
    pub dir: PathBuf,
    pub nodes: Vec<DevnetNode>,
    children: Vec<Child>,
}

fn node_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node-{i:02}"))
}

/// Writes node `i`'s config: loopback with OS-chosen ports, the devnet's settings, then the
/// user's overrides on top.
fn configure(
    dir: &Path,
    i: usize,
    n: usize,
    bootstrap: Option<&str>,
    overrides: &[String],
) -> anyhow::Result<()> {
    let path = dir.join(zmesh_node::CONFIG_FILE);
    let mut text = fs::read_to_string(&path).unwrap_or_else(|_| config::DEFAULT_CONFIG.to_string());
    let bootstrap = bootstrap.map(|b| format!("[\"{b}\"]")).unwrap_or_else(|| "[]".into());
    // Every devnet node connects from 127.0.0.1, so the per-IP limit must fit the whole mesh.
    let per_ip = (n + 5).max(5).to_string();
    let name = format!("node-{i:02}");
    let devnet_settings = [
        ("node.name", name.as_str()),
        ("network.listen", r#"["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]"#),
        ("network.bootstrap", bootstrap.as_str()),
        ("api.listen", "127.0.0.1:0"),
        ("limits.max_per_ip", per_ip.as_str()),
    ];
    for (key, value) in devnet_settings {
        text = config::set_key(&text, key, value)?;
    }
    for assignment in overrides {
        let (key, value) = config::split_assignment(assignment)?;
        text = config::set_key(&text, key, value)?;
    }
    zmesh_node::fsutil::write_atomic(&path, text.as_bytes())?;
    Ok(())
}

fn spawn_node(dir: &Path) -> anyhow::Result<Child> {
    let _ = fs::remove_file(dir.join(RUNTIME_FILE));
    let log = fs::File::create(dir.join("node.log")).context("creating node.log")?;
    let exe = std::env::current_exe().context("locating the zmesh binary")?;
    Command::new(exe)
        .args(["node", "run", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("node.log")?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the node in {}", dir.display()))
}

fn log_tail(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Waits for a node's runtime file, failing fast if the process exits.
async fn wait_runtime(dir: &Path, child: &mut Child) -> anyhow::Result<RuntimeInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = fs::read_to_string(dir.join(RUNTIME_FILE))
            && let Ok(info) = serde_json::from_str::<RuntimeInfo>(&text)
        {
            return Ok(info);
        }
        if let Some(status) = child.try_wait()? {
            bail!("the node in {} exited ({status}):\n{}", dir.display(), log_tail(dir));
        }
        if Instant::now() > deadline {
            bail!("the node in {} did not start within 30 s:\n{}", dir.display(), log_tail(dir));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Devnet {
    pub async fn start(args: &DevnetArgs) -> anyhow::Result<Devnet> {
        if args.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        if args.nodes > 200 {
            bail!(
                "--nodes {} is more than this machine's loopback devnet supports (200)",
                args.nodes
            );
        }
        fs::create_dir_all(&args.dir)
            .with_context(|| format!("creating {}", args.dir.display()))?;
        let dir = fs::canonicalize(&args.dir)?;
        let n = args.nodes;
        for i in 0..n {
            let d = node_dir(&dir, i);
            if !d.join(zmesh_node::identity::IDENTITY_FILE).exists() {
                zmesh_node::init_dir(&d, &[])?;
            }
        }
        let mut devnet = Devnet {
            dir: dir.clone(),
            nodes: Vec::with_capacity(n),
            children: Vec::with_capacity(n),
        };

        // The first node is the seed everyone else bootstraps from.
        configure(&node_dir(&dir, 0), 0, n, None, &args.overrides)?;
        let mut seed = spawn_node(&node_dir(&dir, 0))?;
        let seed_info = wait_runtime(&node_dir(&dir, 0), &mut seed).await?;
        devnet.children.push(seed);
        let bootstrap = seed_info
            .multiaddrs
            .iter()
            .find(|a| a.contains("/tcp/"))
            .or(seed_info.multiaddrs.first())
            .context("the seed node reports no listen address")?
            .clone();
        devnet.nodes.push(seed_info);

        for i in 1..n {
            configure(&node_dir(&dir, i), i, n, Some(&bootstrap), &args.overrides)?;
            devnet.children.push(spawn_node(&node_dir(&dir, i))?);
        }
        for i in 1..n {
            let info = wait_runtime(&node_dir(&dir, i), &mut devnet.children[i]).await?;
            devnet.nodes.push(info);
        }
        Ok(devnet)
    }

    /// Polls every node until each routing table holds at least `min_routing` peers and no
    /// table changed over the last second. Returns the table sizes.
    pub async fn wait_converged(
        &self,
        min_routing: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<usize>> {
        let http = client();
        let deadline = Instant::now() + timeout;
        let mut previous: Vec<usize> = Vec::new();
        let mut stable_since = Instant::now();
        loop {
            let mut sizes = Vec::with_capacity(self.nodes.len());
            for node in &self.nodes {
                let s: StatusReport = get_json(&http, &node.api, "/v1/status").await?;
                sizes.push(s.routing_table_size);
            }
            if sizes != previous {
                previous = sizes.clone();
                stable_since = Instant::now();
            }
            let all_full = sizes.iter().all(|s| *s >= min_routing);
            if all_full && stable_since.elapsed() >= Duration::from_secs(1) {
                return Ok(sizes);
            }
            if Instant::now() > deadline {
                bail!(
                    "the mesh did not converge within {timeout:?}: routing table sizes {sizes:?}, wanted at least {min_routing} each"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn write_file(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("devnet.json");
        let json = serde_json::to_vec_pretty(&DevnetFile { nodes: self.nodes.clone() })?;
        zmesh_node::fsutil::write_atomic(&path, &json)?;
        Ok(path)
    }

    /// SIGTERM to every node, then SIGKILL to any still running after 10 s.
    pub async fn stop(mut self) -> usize {
        for child in &self.children {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        let mut stopped = 0;
        for child in &mut self.children {
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(_) => stopped += 1,
                Err(_) => {
                    let _ = child.kill().await;
                }
            }
        }
        stopped
    }

    /// Reports nodes that exited on their own (e.g. killed from outside), once each.
    fn reap(&mut self, reported: &mut [bool]) {
        for (i, child) in self.children.iter_mut().enumerate() {
            if !reported[i]
                && let Ok(Some(status)) = child.try_wait()
            {
                reported[i] = true;
                eprintln!("node-{i:02} (pid {}) exited: {status}", self.nodes[i].pid);
            }
        }
    }
}

pub fn default_min_routing(nodes: usize) -> usize {
    nodes.saturating_sub(1).min(15)
}

pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    crate::init_logging("warn");
    let started = Instant::now();
    eprintln!("starting {} nodes in {}", args.nodes, args.dir.display());
    let mut devnet = Devnet::start(&args).await?;
    let min_routing = args.min_routing.unwrap_or_else(|| default_min_routing(args.nodes));
    let timeout = Duration::from_secs(args.timeout.unwrap_or(60 + args.nodes as u64));
    let sizes = match devnet.wait_converged(min_routing, timeout).await {
        Ok(sizes) => sizes,
        Err(e) => {
            devnet.stop().await;
            return Err(e);
        }
    };
    let path = devnet.write_file()?;
    let (min, max) =
        (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
    println!(
        "devnet: {} nodes converged in {:.1} s (routing tables hold {min}..={max} peers)",
        devnet.nodes.len(),
        started.elapsed().as_secs_f64()
    );
    println!("  devnet.json  {}", path.display());
    println!(
        "  first node   api http://{}  (zmesh status --api {})",
        devnet.nodes[0].api, devnet.nodes[0].api
    );
    println!("  logs         {}/node-*/node.log", devnet.dir.display());
    println!("press Ctrl-C to stop");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut reported = vec![false; devnet.children.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => devnet.reap(&mut reported),
        }
    }
    eprintln!("stopping {} nodes", devnet.nodes.len());
    let stopped = devnet.stop().await;
    println!("devnet stopped ({stopped} nodes exited cleanly)");
    Ok(())
}
