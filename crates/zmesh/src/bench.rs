//! `zmesh bench lookup`: lookup latency and rounds on a fresh local devnet, beside a baseline
//! (the same API round trip without a lookup) measured in the same run, plus each node's idle
//! memory. `zmesh bench storage` and `zmesh bench messaging` measure the other protocols the
//! same way: a fresh devnet and a baseline in one run.

mod messaging;

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
    /// End-to-end put and get of encrypted, erasure-coded data on a local devnet.
    Storage(StorageArgs),
    /// Relay throughput and one-way latency of messages, one relay and federated, beside TCP.
    Messaging(messaging::MessagingArgs),
}

#[derive(Args, Debug)]
pub struct StorageArgs {
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Puts and gets of each kind.
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// Size of each file, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    size: usize,
    /// Devnet directory [default: a fresh temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
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
        BenchCommand::Storage(args) => storage(args).await,
        BenchCommand::Messaging(args) => messaging::messaging(args).await,
    }
}

/// Starts a devnet in `dir` (or a fresh temporary one, removed afterwards) with config
/// `overrides` (`KEY=VALUE`) on every node, runs `f`, stops it.
async fn with_devnet<F, Fut>(
    nodes: usize,
    dir: Option<PathBuf>,
    overrides: Vec<String>,
    f: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Devnet) -> Fut,
    Fut: Future<Output = (Devnet, anyhow::Result<()>)>,
{
    crate::init_logging("warn");
    let owned_dir = dir.is_none();
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("zmesh-bench-{}", std::process::id()))
    });
    let devnet_args =
        DevnetArgs { nodes, dir: dir.clone(), overrides, min_routing: None, timeout: None };
    eprintln!("starting a {nodes}-node devnet in {}", dir.display());
    let devnet = Devnet::start(&devnet_args).await?;
    let started = Instant::now();
    let converged = devnet
        .wait_converged(default_min_routing(nodes), Duration::from_secs(60 + nodes as u64))
        .await;
    let (devnet, result) = match converged {
        Ok(_) => {
            eprintln!("converged in {:.1} s", started.elapsed().as_secs_f64());
            f(devnet).await
        }
        Err(e) => (devnet, Err(e)),
    };
    devnet.stop().await;
    if owned_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn storage(args: StorageArgs) -> anyhow::Result<()> {
    let StorageArgs { nodes, rounds, size, dir } = args;
    with_devnet(nodes, dir, Vec::new(), move |devnet| async move {
        let result = measure_storage(&devnet, rounds, size).await;
        (devnet, result)
    })
    .await
}

async fn measure_storage(devnet: &Devnet, rounds: usize, size: usize) -> anyhow::Result<()> {
    use zmesh_client::blob::{get_request, put_request, seal_chunk};
    use zmesh_client::{BlobId, ChunkRef, ChunkStore, Identity, Relay};
    use zmesh_types::DataType;
    use zmesh_wire::store::{Status, StoreMessage};

    let relay_addr =
        devnet.nodes[0].multiaddrs.iter().find(|a| a.contains("/tcp/")).context("tcp address")?;
    let relay = Relay::connect(relay_addr.parse()?).await?;
    let identity = Identity::from_signing(zmesh_crypto::sign::SigningIdentity::generate());
    let data: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
    let work = std::env::temp_dir().join(format!("zmesh-bench-files-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let noop = |_: &zmesh_client::Progress| {};

    let (mut baseline, mut put_file, mut get_file, mut put_chunk, mut get_chunk) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    for i in 0..rounds {
        let t = Instant::now();
        relay.call(StoreMessage::Capacity).await?;
        baseline.push(ms(t));

        // A whole file: its data chunk(s) and the manifest, as `zmesh put` / `zmesh get` do.
        let t = Instant::now();
        let stored = zmesh_client::put_reader(
            &relay,
            &identity,
            &data[..],
            Some(size as u64),
            "bench",
            DataType::Media,
            noop,
        )
        .await?;
        put_file.push(ms(t));
        let out = work.join(format!("{i}.out"));
        let t = Instant::now();
        zmesh_client::get(&relay, &identity, stored.id, &out, noop).await?;
        get_file.push(ms(t));
        if std::fs::read(&out)? != data {
            bail!("round {i}: data came back different");
        }
        std::fs::remove_file(&out)?;

        // One chunk, without the client's encryption: the mesh's own cost.
        let id = BlobId::random();
        let chunk = ChunkRef::Data(id, 0);
        let sealed =
            seal_chunk(&identity, id, 0, &data[..size.min(zmesh_client::blob::MAX_PLAINTEXT)]);
        let request =
            put_request(&identity, chunk, sealed, DataType::Media, zmesh_client::blob::now_ms())?;
        let t = Instant::now();
        match relay.call(request).await? {
            StoreMessage::Result(o) if o.status == Status::Ok => {}
            other => bail!("put chunk: {other:?}"),
        }
        put_chunk.push(ms(t));
        let t = Instant::now();
        match relay.call(get_request(&identity, chunk, zmesh_client::blob::now_ms())).await? {
            StoreMessage::Chunk { outcome, .. } if outcome.status == Status::Ok => {}
            other => bail!("get chunk: {other:?}"),
        }
        get_chunk.push(ms(t));
    }
    let _ = std::fs::remove_dir_all(&work);
    let nodes = devnet.nodes.len();
    println!(
        "zmesh bench storage: {nodes} nodes, {rounds} rounds of {size}-byte files, all byte-identical"
    );
    println!("{}", summary("baseline capacity request", baseline, "ms"));
    println!("{}", summary("put file (chunk + manifest)", put_file, "ms"));
    println!("{}", summary("get file (chunk + manifest)", get_file, "ms"));
    println!("{}", summary("put one chunk", put_chunk, "ms"));
    println!("{}", summary("get one chunk", get_chunk, "ms"));
    Ok(())
}

async fn lookup(args: LookupArgs) -> anyhow::Result<()> {
    let LookupArgs { nodes, lookups, dir } = args;
    with_devnet(nodes, dir, Vec::new(), move |devnet| async move {
        let result = measure(&devnet, lookups).await;
        (devnet, result)
    })
    .await
}

async fn measure(devnet: &Devnet, lookups: usize) -> anyhow::Result<()> {
    let nodes = devnet.nodes.len();
    eprintln!("idling 2 s before measuring");
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
