//! `zmesh bench lookup`: lookup latency and rounds on a fresh local devnet, beside a baseline
//! (the same API round trip without a lookup) measured in the same run, plus each node's idle
//! memory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use zmesh_node::node::reports::{LookupReport, StatusReport};
use zmesh_types::Key256;

use crate::devnet::{Devnet, DevnetArgs, default_min_routing};
use crate::http::{client, get_json};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Closest-peer lookups against a local devnet.
    Lookup(LookupArgs),
}

#[derive(Args, Debug)]
pub struct LookupArgs {
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    #[arg(long, default_value_t = 200)]
    lookups: usize,
    /// Devnet directory [default: a fresh temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The value at quantile `q` of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx]
}

fn summary(name: &str, mut values: Vec<f64>, unit: &str) -> String {
    values.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{name:<28} median {:>8.3} {unit}  p90 {:>8.3} {unit}  p99 {:>8.3} {unit}  (n = {})",
        quantile(&values, 0.5),
        quantile(&values, 0.9),
        quantile(&values, 0.99),
        values.len()
    )
}

fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Lookup(args) => lookup(args).await,
    }
}

async fn lookup(args: LookupArgs) -> anyhow::Result<()> {
    crate::init_logging("warn");
    let owned_dir = args.dir.is_none();
    let dir = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("zmesh-bench-{}", std::process::id()))
    });
    let devnet_args = DevnetArgs {
        nodes: args.nodes,
        dir: dir.clone(),
        overrides: Vec::new(),
        min_routing: None,
        timeout: None,
    };
    eprintln!("starting a {}-node devnet in {}", args.nodes, dir.display());
    let devnet = Devnet::start(&devnet_args).await?;
    let result = measure(&devnet, args.nodes, args.lookups).await;
    devnet.stop().await;
    if owned_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn measure(devnet: &Devnet, nodes: usize, lookups: usize) -> anyhow::Result<()> {
    let converged = Instant::now();
    devnet
        .wait_converged(default_min_routing(nodes), Duration::from_secs(60 + nodes as u64))
        .await?;
    eprintln!(
        "converged in {:.1} s; idling 2 s before measuring",
        converged.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss: Vec<f64> =
        devnet.nodes.iter().filter_map(|n| rss_kib(n.pid)).map(|k| k / 1024.0).collect();

    let http = client();
    let mut all_ids: Vec<Key256> = devnet.nodes.iter().map(|n| n.node_id).collect();
    let mut baseline = Vec::with_capacity(lookups);
    let mut latency = Vec::with_capacity(lookups);
    let mut node_side = Vec::with_capacity(lookups);
    let mut rounds = Vec::with_capacity(lookups);
    let mut exact = 0;
    for i in 0..lookups {
        let node = &devnet.nodes[i % devnet.nodes.len()];
        let t = Instant::now();
        let _: StatusReport = get_json(&http, &node.api, "/v1/status").await?;
        baseline.push(t.elapsed().as_secs_f64() * 1000.0);

        let key = Key256(rand::random());
        let t = Instant::now();
        let report: LookupReport = get_json(&http, &node.api, &format!("/v1/dht/closest/{key}"))
            .await
            .with_context(|| format!("lookup {i}"))?;
        latency.push(t.elapsed().as_secs_f64() * 1000.0);
        node_side.push(report.elapsed_ms);
        rounds.push(f64::from(report.rounds));
        all_ids.sort_by(|a, b| key.cmp_distance(a, b));
        let expected = &all_ids[..all_ids.len().min(20)];
        let got: Vec<Key256> = report.peers.iter().map(|p| p.node_id).collect();
        if got == expected {
            exact += 1;
        }
    }
    if exact != lookups {
        bail!("{} of {lookups} lookups did not return the true closest nodes", lookups - exact);
    }
    println!("zmesh bench lookup: {nodes} nodes, {lookups} lookups from rotating nodes, all exact");
    println!("{}", summary("baseline GET /v1/status", baseline, "ms"));
    println!("{}", summary("lookup, client-side", latency, "ms"));
    println!("{}", summary("lookup, node-side", node_side, "ms"));
    println!("{}", summary("lookup rounds", rounds, "  "));
    println!("{}", summary("idle RSS per node", rss, "MiB"));
    Ok(())
}
