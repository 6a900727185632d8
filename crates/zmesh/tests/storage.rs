//! Encrypted, erasure-coded storage across real node processes, driven through the CLI.

// In tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, Devnet, Node, bootstrap_to, get, metric, signal, wait_for};
use nix::sys::signal::Signal;
use zmesh_types::Key256;

const PASSPHRASE: &str = "correct horse battery staple";
const MARKER: &[u8] = b"ZMESH-PLAINTEXT-MARKER-7f3c";
/// Fast dead-peer detection, so lookups stop offering killed nodes quickly.
const FAST: [&str; 3] =
    ["keepalive.ping_interval=1s", "keepalive.ping_jitter=100ms", "keepalive.pong_timeout=500ms"];

struct User {
    identity: PathBuf,
    devnet_file: PathBuf,
}

impl User {
    fn new(dir: &Path, name: &str, devnet: &Devnet) -> User {
        let user =
            User { identity: dir.join(name), devnet_file: devnet.dir.path().join("devnet.json") };
        let out = user.run(&["id", "new"]);
        assert!(out.status.success(), "id new: {}", String::from_utf8_lossy(&out.stderr));
        user
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--identity")
            .arg(&self.identity)
            .env("ZMESH_PASSPHRASE", PASSPHRASE)
            .output()
            .expect("run zmesh")
    }

    fn with_devnet(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let file = self.devnet_file.to_str().expect("utf-8 path");
        all.extend(["--devnet", file]);
        self.run(&all)
    }

    fn address(&self) -> Key256 {
        let out = self.run(&["id", "show", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["address"].as_str().expect("address").parse().expect("hex address")
    }

    fn put(&self, file: &Path) -> String {
        let out = self.with_devnet(&["put", file.to_str().expect("path")]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "put failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout.lines().last().and_then(|l| l.split_whitespace().last()).expect("id").to_string()
    }

    fn get(&self, id: &str, out: &Path) -> Output {
        self.with_devnet(&["get", id, "-o", out.to_str().expect("path")])
    }
}

/// Random bytes with the plaintext marker sprinkled in.
fn file_with_marker(dir: &Path, name: &str, len: usize) -> PathBuf {
    let mut data: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
    for at in (0..len.saturating_sub(MARKER.len())).step_by(len / 8 + 1) {
        data[at..at + MARKER.len()].copy_from_slice(MARKER);
    }
    let path = dir.join(name);
    std::fs::write(&path, &data).expect("write");
    path
}

/// The nodes (by devnet index) holding shards of `chunk_id`, among those not in `dead`.
fn holders(devnet: &Devnet, owner: &Key256, chunk_id: &str, dead: &HashSet<usize>) -> Vec<usize> {
    let key = Key256::storage_key(owner, chunk_id.as_bytes());
    (0..devnet.nodes.len())
        .filter(|i| !dead.contains(i))
        .filter(|&i| {
            let held: serde_json::Value =
                get(devnet.api(i), &format!("/v1/storage/keys/{key}")).expect("keys");
            !held["indices"].as_array().expect("indices").is_empty()
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn data_survives_five_lost_holders_and_fails_clearly_at_six() {
    let devnet = Devnet::start(20, &FAST);
    let work = tempfile::tempdir().unwrap();
    let alice = User::new(work.path(), "alice", &devnet);
    let owner = alice.address();

    let small = file_with_marker(work.path(), "small.bin", 1 << 20);
    let large = file_with_marker(work.path(), "large.bin", 50 << 20);
    let small_id = alice.put(&small);
    let large_id = alice.put(&large);

    // Nodes are blind: no data directory holds any plaintext.
    for node in &devnet.nodes {
        for file in files_under(&node.dir) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(!contains(&bytes, MARKER), "plaintext marker found in {}", file.display());
        }
    }

    // Kill 5 holders of the small file's data chunk (never node 0, the seed). Every chunk has its
    // 15 shards on 15 distinct nodes, so no chunk loses more than 5.
    let mut dead = HashSet::new();
    let victims: Vec<usize> = holders(&devnet, &owner, &format!("{small_id}/0"), &dead)
        .into_iter()
        .filter(|i| *i != 0)
        .take(5)
        .collect();
    assert_eq!(victims.len(), 5);
    for &i in &victims {
        signal(devnet.nodes[i].pid, Signal::SIGKILL);
        dead.insert(i);
    }
    for (id, original) in [(&small_id, &small), (&large_id, &large)] {
        let out_path = work.path().join(format!("{id}.out"));
        let out = alice.get(id, &out_path);
        assert!(
            out.status.success(),
            "get {id} after 5 failures: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&out_path).unwrap() == std::fs::read(original).unwrap(),
            "{id} differs"
        );
    }

    // A sixth holder of that chunk goes: 9 shards are left, 10 are needed.
    let sixth = holders(&devnet, &owner, &format!("{small_id}/0"), &dead)
        .into_iter()
        .find(|i| *i != 0)
        .expect("a live holder");
    signal(devnet.nodes[sixth].pid, Signal::SIGKILL);
    let out = alice.get(&small_id, &work.path().join("fail.out"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("found 9 healthy shards, need 10"), "error must name the counts: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
}

#[test]
fn expired_data_is_deleted_everywhere_and_never_served() {
    let devnet = Devnet::start(16, &[]);
    let work = tempfile::tempdir().unwrap();
    let alice = User::new(work.path(), "alice", &devnet);
    let file = file_with_marker(work.path(), "media.bin", 100_000);
    let id = alice.put(&file);
    let held: u64 = (0..16)
        .map(|i| {
            get::<serde_json::Value>(devnet.api(i), "/v1/storage").unwrap()["shards"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(held, 30, "15 shards of the data chunk and 15 of the manifest");

    // Media lives 7 days: move every node's storage clock 8 days ahead.
    let devnet = devnet.restart(&["storage.clock_offset=192h", "storage.gc_interval=500ms"]);
    let alice =
        User { identity: alice.identity, devnet_file: devnet.dir.path().join("devnet.json") };
    for i in 0..16 {
        wait_for("expired shards to be deleted", Duration::from_secs(20), || {
            let report: serde_json::Value = get(devnet.api(i), "/v1/storage").ok()?;
            (report["shards"].as_u64() == Some(0) && report["bytes_used"].as_u64() == Some(0))
                .then_some(())
        });
    }
    let removed: f64 =
        (0..16).map(|i| metric(devnet.api(i), "zmesh_storage_gc_removed_total")).sum();
    assert_eq!(removed, 30.0, "every expired shard was garbage-collected by its holder");
    let out = alice.get(&id, &work.path().join("gone.out"));
    assert!(!out.status.success(), "expired data must not be served");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
    devnet.stop();
}

#[test]
fn a_full_node_is_skipped_by_placement() {
    let devnet = Devnet::start(16, &[]);
    let seed = devnet.nodes[0].multiaddrs.iter().find(|a| a.contains("/tcp/")).unwrap().clone();
    let full = Node::start(&["storage.max_bytes=1000", &bootstrap_to(&seed)]);
    wait_for("the full node in every routing table", Duration::from_secs(30), || {
        (0..16).all(|i| common::status(devnet.api(i)).routing_table_size >= 16).then_some(())
    });
    let report: serde_json::Value = get(full.api(), "/v1/storage").unwrap();
    assert_eq!(report["accepting"], serde_json::Value::Bool(false));

    let work = tempfile::tempdir().unwrap();
    let alice = User::new(work.path(), "alice", &devnet);
    for n in 0..3 {
        let file = file_with_marker(work.path(), &format!("f{n}.bin"), 50_000);
        let id = alice.put(&file);
        let out_path = work.path().join(format!("{n}.out"));
        assert!(alice.get(&id, &out_path).status.success());
        assert!(std::fs::read(&out_path).unwrap() == std::fs::read(&file).unwrap());
    }
    // Asked for capacity, said no, and got nothing.
    assert!(
        metric(full.api(), r#"zmesh_storage_requests_total{op="capacity",status="Ok"}"#) >= 1.0
    );
    let report: serde_json::Value = get(full.api(), "/v1/storage").unwrap();
    assert_eq!(report["shards"], 0);
    devnet.stop();
}
