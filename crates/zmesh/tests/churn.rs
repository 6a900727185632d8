//! Churn: nodes keep dying and new ones keep joining while a mesh holds 100 chunks, for more
//! than ten scan periods. Nothing may be lost, and no chunk may be repaired by two wardens in
//! one period.
//!
//! The repair threshold is 15 here (repair any missing shard): this test kills up to 4 of 30
//! nodes every three periods, many times the failure rate the default of 13 is meant for.

// In tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::chunks::{Owner, fully_placed, repair_report, shard_map};
use common::{Devnet, Node, bootstrap_to, signal, wait_for};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zmesh_types::DataType;

const PERIOD: Duration = Duration::from_secs(4);
const SETTINGS: [&str; 8] = [
    "keepalive.ping_interval=1s",
    "dht.request_timeout=3s",
    "keepalive.ping_jitter=100ms",
    "keepalive.pong_timeout=500ms",
    "repair.scan_interval=4s",
    "repair.threshold=15",
    "limits.max_per_ip=200",
    "limits.max_total=400",
];

/// A node of the mesh: one started by the devnet (by index) or one that joined later.
enum Member {
    Devnet(usize),
    Joined(Node),
}

#[test]
fn thirty_nodes_under_churn_lose_nothing_and_never_repair_twice() {
    let seed: u64 = std::env::var("CHURN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    eprintln!("churn seed {seed} (set CHURN_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let devnet = Devnet::start(30, &SETTINGS);
    let seed_addr =
        devnet.nodes[0].multiaddrs.iter().find(|a| a.contains("/tcp/")).unwrap().clone();
    let mut owner = Owner::connect(&devnet.dir.path().join("devnet.json"));
    for i in 0..100u32 {
        let data: Vec<u8> = (0..2048u32).map(|j| (i.wrapping_mul(97) ^ j) as u8).collect();
        owner.put(&data, None, DataType::MessageBackup);
    }
    let mut members: Vec<Member> = (0..30).map(Member::Devnet).collect();
    let api_of = |m: &Member| match m {
        Member::Devnet(i) => devnet.nodes[*i].api.clone(),
        Member::Joined(n) => n.api().to_string(),
    };
    let scans = |members: &[Member]| -> u64 {
        members
            .iter()
            .filter_map(|m| repair_report(&api_of(m)))
            .map(|r| r["scans"].as_u64().unwrap_or(0))
            .sum()
    };
    wait_for("first scans", PERIOD * 6, || (scans(&members) >= 100).then_some(()));

    // Five rounds, one every three periods: 15 periods of churn. Each round can take up to 4 of
    // a chunk's 15 holders; repair has until the next round to restore them.
    let join_settings: Vec<String> =
        SETTINGS.iter().map(|s| s.to_string()).chain([bootstrap_to(&seed_addr)]).collect();
    let join_refs: Vec<&str> = join_settings.iter().map(String::as_str).collect();
    let (mut killed, mut joined) = (0, 0);
    for round in 0..5 {
        let count = rng.gen_range(2..=4);
        for _ in 0..count {
            // Never the seed (index 0): it is the client's relay and the newcomers' bootstrap.
            let pick = rng.gen_range(1..members.len());
            match members.remove(pick) {
                Member::Devnet(i) => signal(devnet.nodes[i].pid, Signal::SIGKILL),
                Member::Joined(mut n) => {
                    let _ = n.child.kill();
                    let _ = n.child.wait();
                }
            }
            killed += 1;
        }
        for _ in 0..count {
            members.push(Member::Joined(Node::start(&join_refs)));
            joined += 1;
        }
        eprintln!("round {round}: killed {count}, started {count}");
        std::thread::sleep(PERIOD * 3);
    }
    eprintln!("{killed} nodes killed, {joined} joined");

    let live: Vec<String> = members.iter().map(&api_of).collect();
    let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("every chunk back to 15 shards on live nodes", PERIOD * 8, || {
            owner.chunks.iter().all(|c| fully_placed(&live, &c.key)).then_some(())
        })
    }));
    if let Err(panic) = settled {
        // Say which chunks and what the nodes logged about them.
        let logs: Vec<String> = members
            .iter()
            .map(|m| match m {
                Member::Devnet(i) => devnet.log(*i),
                Member::Joined(n) => n.log(),
            })
            .collect();
        for m in &members {
            let peer = match m {
                Member::Devnet(i) => devnet.nodes[*i].peer_id.clone(),
                Member::Joined(n) => n.info.peer_id.clone(),
            };
            eprintln!("live peer {peer}");
        }
        for c in owner.chunks.iter().filter(|c| !fully_placed(&live, &c.key)) {
            eprintln!(
                "chunk {}: {:?}",
                c.key,
                shard_map(&live, &c.key).values().collect::<Vec<_>>()
            );
            let key = c.key.to_string();
            for (i, log) in logs.iter().enumerate() {
                for line in log.lines().filter(|l| l.contains(&key)) {
                    eprintln!("  member {i}: {line}");
                }
            }
        }
        std::panic::resume_unwind(panic);
    }
    let mut lost = 0;
    for chunk in &owner.chunks {
        if owner.read(chunk).as_deref() != Ok(&chunk.plaintext[..]) {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "chunks lost");

    // Repairs of one chunk by two different nodes less than a period apart.
    let mut by_key: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let (mut rebuilt, mut repairs, mut failures, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for api in &live {
        let Some(r) = repair_report(api) else { continue };
        rebuilt += r["shards_rebuilt"].as_u64().unwrap_or(0);
        repairs += r["repairs"].as_u64().unwrap_or(0);
        failures += r["failures"].as_u64().unwrap_or(0);
        bytes += r["bytes_fetched"].as_u64().unwrap_or(0) + r["bytes_stored"].as_u64().unwrap_or(0);
        for e in r["recent"].as_array().unwrap() {
            if e["kind"] == "repair" {
                let key = e["storage_key"].as_str().unwrap().to_string();
                by_key
                    .entry(key)
                    .or_default()
                    .push((e["at_unix_ms"].as_u64().unwrap(), api.clone()));
            }
        }
    }
    let mut doubled = HashSet::new();
    for (key, mut events) in by_key {
        events.sort();
        for pair in events.windows(2) {
            if pair[0].1 != pair[1].1 && pair[1].0 - pair[0].0 < PERIOD.as_millis() as u64 {
                doubled.insert(key.clone());
            }
        }
    }
    eprintln!(
        "surviving nodes report: {repairs} repairs, {rebuilt} shards rebuilt, {bytes} shard bytes \
         moved, {failures} failed attempts; chunks repaired twice in one period: {}",
        doubled.len()
    );
    assert!(doubled.is_empty(), "chunks repaired by two wardens in one period: {doubled:?}");
}
