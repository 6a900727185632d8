//! `zmesh status`, `zmesh peers`, `zmesh closest`: a running node's state, for humans or as JSON.

use anyhow::Context;
use clap::Args;
use zmesh_node::node::reports::{LookupReport, PeersReport, StatusReport};

use crate::http::{client, get_json};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The node's API address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    api: String,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ClosestArgs {
    /// The 256-bit key, as 64 hex characters.
    key: String,
    #[arg(long, default_value = "127.0.0.1:7070")]
    api: String,
    #[arg(long)]
    json: bool,
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value).context("encoding JSON")?);
    Ok(())
}

pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let s: StatusReport = get_json(&client(), &args.api, "/v1/status").await?;
    if args.json {
        return print_json(&s);
    }
    let name = if s.name.is_empty() { "(unnamed)" } else { &s.name };
    println!("node          {name}");
    println!("peer id       {}", s.peer_id);
    println!("node id       {}", s.node_id);
    println!("version       zmesh {} (protocol {})", s.version, s.protocol_versions.join(", "));
    println!("capabilities  {} (0x{:08x})", s.capability_names.join(", "), s.capabilities);
    for (i, addr) in s.listen_addrs.iter().enumerate() {
        println!("{}{addr}", if i == 0 { "listening     " } else { "              " });
    }
    println!("api           http://{}", s.api);
    println!("peers         {} active over {} connections", s.peer_count, s.connections);
    println!("routing table {} peers", s.routing_table_size);
    println!("uptime        {}", human_duration(s.uptime_secs));
    Ok(())
}

pub async fn peers(args: StatusArgs) -> anyhow::Result<()> {
    let report: PeersReport = get_json(&client(), &args.api, "/v1/peers").await?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{:<54} {:>9} {:>10} {:>6} {:>9}  capabilities",
        "peer id", "rtt", "quality", "conns", "up"
    );
    for p in &report.peers {
        let rtt = p.rtt_ms.map(|r| format!("{r:.2}ms")).unwrap_or_else(|| "-".into());
        println!(
            "{:<54} {:>9} {:>10} {:>6} {:>9}  {}",
            p.peer_id,
            rtt,
            p.quality.as_deref().unwrap_or("-"),
            p.connections,
            human_duration(p.connected_secs),
            p.capability_names.join(",")
        );
    }
    println!("{} active peers", report.peers.len());
    for d in report.dead.iter().take(10) {
        println!("dead: {} — {}", d.peer_id, d.reason);
    }
    Ok(())
}

pub async fn closest(args: ClosestArgs) -> anyhow::Result<()> {
    let report: LookupReport =
        get_json(&client(), &args.api, &format!("/v1/dht/closest/{}", args.key)).await?;
    if args.json {
        return print_json(&report);
    }
    println!("{:>3}  {:<54} distance", "#", "peer id");
    for (i, p) in report.peers.iter().enumerate() {
        println!("{:>3}  {:<54} {}…", i + 1, p.peer_id, &p.distance[..16]);
    }
    println!(
        "{} peers in {} rounds, {} queried, {:.1} ms",
        report.peers.len(),
        report.rounds,
        report.queried,
        report.elapsed_ms
    );
    Ok(())
}
