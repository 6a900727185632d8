//! Self-healing across real node processes: wardens rebuild lost and damaged shards, and verify
//! that expired chunks are gone.

// In tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::chunks::{Owner, fully_placed, repair_report, shard_map};
use common::{Devnet, get, run_node, signal, wait_for};
use nix::sys::signal::Signal;
use zmesh_types::{DataType, Key256};

/// The scan period in these tests.
const PERIOD: Duration = Duration::from_secs(4);
/// Devnets of 16–20 processes on two cores: run these tests one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn settings(extra: &[&'static str]) -> Vec<&'static str> {
    let mut s = common::fast_keepalive_with(&["repair.scan_interval=4s"]);
    s.extend_from_slice(extra);
    s
}

fn apis(devnet: &Devnet, dead: &HashSet<usize>) -> Vec<String> {
    (0..devnet.nodes.len())
        .filter(|i| !dead.contains(i))
        .map(|i| devnet.nodes[i].api.clone())
        .collect()
}

fn index_of(devnet: &Devnet, api: &str) -> usize {
    devnet.nodes.iter().position(|n| n.api == api).unwrap()
}

/// Waits until every chunk has a warden's placement record: each holder took part in a scan.
fn wait_for_first_scans(devnet: &Devnet, owner: &Owner, dead: &HashSet<usize>) {
    let apis = apis(devnet, dead);
    wait_for("first scans of every chunk", PERIOD * 6, || {
        let scans: u64 = apis
            .iter()
            .filter_map(|a| repair_report(a))
            .map(|r| r["scans"].as_u64().unwrap_or(0))
            .sum();
        (scans >= owner.chunks.len() as u64).then_some(())
    });
}

/// Sum of a `/v1/repair` counter over the nodes.
fn total(apis: &[String], field: &str) -> u64 {
    apis.iter().filter_map(|a| repair_report(a)).map(|r| r[field].as_u64().unwrap_or(0)).sum()
}

#[test]
fn lost_holders_are_replaced_within_a_scan_period() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let devnet = Devnet::start(20, &settings(&[]));
    let mut owner = Owner::connect(&devnet.dir.path().join("devnet.json"));
    // 20 chunks whose storage keys share 12 leading bits, so their 15 nearest nodes (their
    // holders) are the same: then killing five nodes takes five holders from *every* chunk.
    let prefix = Key256::hash(b"repair test prefix");
    for i in 0..20u32 {
        let data: Vec<u8> = (0..8192u32).map(|j| (i * 31 + j * 7) as u8).collect();
        owner.put(&data, Some((&prefix, 12)), DataType::MessageBackup);
    }
    let mut dead = HashSet::new();
    wait_for_first_scans(&devnet, &owner, &dead);

    let all = apis(&devnet, &dead);
    let holder_sets: Vec<HashSet<String>> =
        owner.chunks.iter().map(|c| shard_map(&all, &c.key).into_keys().collect()).collect();
    let common: HashSet<String> =
        holder_sets.iter().skip(1).fold(holder_sets[0].clone(), |acc, s| &acc & s);
    // Spare the seed (the client's relay) and each chunk's warden, so this is the plain case
    // "holders die, the warden repairs"; takeover by the next in line is the churn test's.
    let wardens: HashSet<String> = all
        .iter()
        .filter(|a| repair_report(a).is_some_and(|r| r["chunks_wardened"].as_u64() > Some(0)))
        .cloned()
        .collect();
    let mut victims: Vec<usize> = common
        .iter()
        .filter(|a| !wardens.contains(*a))
        .map(|a| index_of(&devnet, a))
        .filter(|&i| i != 0)
        .collect();
    victims.sort();
    victims.truncate(5);
    assert_eq!(victims.len(), 5, "five nodes holding shards of every chunk");
    let killed_at = Instant::now();
    for &i in &victims {
        signal(devnet.nodes[i].pid, Signal::SIGKILL);
        dead.insert(i);
    }
    let live = apis(&devnet, &dead);
    // One period for the next scan (plus its jitter), and time for the scan itself.
    let deadline = PERIOD + PERIOD / 10 + Duration::from_secs(12);
    devnet.explain("repair", || {
        wait_for("every chunk back to 15 shards on 15 live nodes", deadline, || {
            owner.chunks.iter().all(|c| fully_placed(&live, &c.key)).then_some(())
        })
    });
    eprintln!("all 20 chunks repaired {:?} after the kill", killed_at.elapsed());
    let rebuilt = total(&live, "shards_rebuilt");
    devnet.explain("repair", || {
        assert_eq!(rebuilt, 100, "5 shards of each of 20 chunks rebuilt, none twice");
    });
    let traffic = total(&live, "bytes_fetched") + total(&live, "bytes_stored");
    eprintln!("repair traffic: {rebuilt} shards rebuilt, {traffic} shard bytes moved");

    // Five more holders go; every chunk still reads back byte for byte.
    let holders_now: HashSet<usize> = owner
        .chunks
        .iter()
        .flat_map(|c| shard_map(&live, &c.key).into_keys().collect::<Vec<_>>())
        .map(|a| index_of(&devnet, &a))
        .collect();
    let more: Vec<usize> = holders_now.into_iter().filter(|&i| i != 0).take(5).collect();
    assert_eq!(more.len(), 5);
    for &i in &more {
        signal(devnet.nodes[i].pid, Signal::SIGKILL);
        dead.insert(i);
    }
    for chunk in &owner.chunks {
        assert_eq!(owner.read(chunk).as_deref(), Ok(&chunk.plaintext[..]), "chunk {}", chunk.key);
    }
}

/// Offset of the first byte of shard data of `key` in a redb file: right after the 75-byte
/// shard header, found by its storage key and code parameters (10 data, 5 parity).
fn shard_data_offset(file: &[u8], key: &Key256, index: u8) -> Option<usize> {
    let mut pattern = key.0.to_vec();
    pattern.extend_from_slice(&[index, 10, 5]);
    file.windows(pattern.len()).position(|w| w == pattern).map(|at| at + 75)
}

#[test]
fn a_flipped_byte_on_disk_is_found_by_the_audit_and_the_chunk_rebuilt() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let devnet = Devnet::start(16, &settings(&["repair.audit_interval=2s"]));
    let mut owner = Owner::connect(&devnet.dir.path().join("devnet.json"));
    let data: Vec<u8> = (0..64 * 1024u32).map(|j| (j * 13) as u8).collect();
    owner.put(&data, None, DataType::MessageBackup);
    let chunk = owner.chunks[0].clone();
    let dead = HashSet::new();
    wait_for_first_scans(&devnet, &owner, &dead);

    // Damage the shard of three holders (not the seed): stop each, flip one byte of shard data
    // in its redb file, start it again. Three lost shards leave 12, below the threshold of 13.
    let all = apis(&devnet, &dead);
    let map = shard_map(&all, &chunk.key);
    let mut damaged: Vec<(usize, u8)> = map
        .iter()
        .map(|(a, idx)| (index_of(&devnet, a), idx[0]))
        .filter(|(i, _)| *i != 0)
        .collect();
    damaged.sort();
    damaged.truncate(3);
    let mut restarted = Vec::new();
    for &(i, index) in &damaged {
        let node = &devnet.nodes[i];
        signal(node.pid, Signal::SIGTERM);
        wait_for("node to stop", Duration::from_secs(20), || {
            (!common::alive(node.pid)).then_some(())
        });
        let path = node.dir.join("shards.redb");
        let mut file = std::fs::read(&path).unwrap();
        let at = shard_data_offset(&file, &chunk.key, index).expect("shard in the redb file") + 100;
        file[at] ^= 0x01;
        std::fs::write(&path, &file).unwrap();
        restarted.push(run_node(&node.dir));
    }
    // The restarted nodes have new ports; wait until their APIs answer again.
    let restarted_apis: Vec<String> = damaged
        .iter()
        .map(|&(i, _)| {
            let file = devnet.nodes[i].dir.join(zmesh_node::RUNTIME_FILE);
            wait_for("restarted node", Duration::from_secs(30), || {
                let info: zmesh_node::RuntimeInfo =
                    serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
                get::<serde_json::Value>(&info.api, "/v1/status").ok().map(|_| info.api)
            })
        })
        .collect();
    // Each restarted node's audit drops its damaged shard.
    for api in &restarted_apis {
        wait_for("the audit to drop the damaged shard", Duration::from_secs(30), || {
            let r = repair_report(api)?;
            (r["audit"]["damaged_dropped"].as_u64()? >= 1).then_some(())
        });
    }
    let mut live: Vec<String> = (0..16)
        .filter(|i| !damaged.iter().any(|(d, _)| d == i))
        .map(|i| devnet.nodes[i].api.clone())
        .collect();
    live.extend(restarted_apis);
    wait_for("the chunk rebuilt to 15 shards", PERIOD * 4 + Duration::from_secs(10), || {
        fully_placed(&live, &chunk.key).then_some(())
    });
    assert_eq!(owner.read(&chunk).as_deref(), Ok(&data[..]));
    for mut child in restarted {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn after_expiry_the_scan_verifies_no_holder_keeps_a_shard() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    // GC far away, so it is the scan's check that finds and removes what expired.
    let devnet = Devnet::start(16, &settings(&["storage.gc_interval=1h"]));
    let mut owner = Owner::connect(&devnet.dir.path().join("devnet.json"));
    for i in 0..3u8 {
        owner.put(&[i; 5000], None, DataType::Media);
    }
    let dead = HashSet::new();
    wait_for_first_scans(&devnet, &owner, &dead);
    let held: u64 = apis(&devnet, &dead)
        .iter()
        .map(|a| get::<serde_json::Value>(a, "/v1/storage").unwrap()["shards"].as_u64().unwrap())
        .sum();
    assert_eq!(held, 45);

    // Media lives 7 days: restart every node with its storage clock 8 days ahead.
    let devnet =
        devnet.restart(&settings(&["storage.gc_interval=1h", "storage.clock_offset=192h"]));
    let all = apis(&devnet, &dead);
    wait_for("expiry verified for every chunk", PERIOD * 4 + Duration::from_secs(10), || {
        (total(&all, "expiries_verified") >= 3).then_some(())
    });
    assert_eq!(total(&all, "expiry_violations"), 0);
    for api in &all {
        let storage: serde_json::Value = get(api, "/v1/storage").unwrap();
        assert_eq!(storage["shards"], 0, "{api} keeps no shard");
        assert_eq!(storage["bytes_used"], 0, "{api} freed the bytes");
    }
    let verified: HashMap<String, u64> = all
        .iter()
        .filter_map(|a| Some((a.clone(), repair_report(a)?["expiries_verified"].as_u64()?)))
        .collect();
    eprintln!("expiries verified by node: {verified:?}");
}
