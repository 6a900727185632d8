//! Authorization is enforced by every holder, not only by the relay: requests sent straight to
//! the nodes that hold a chunk's shards, as a malicious relay would send them.

// In tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Devnet, Node, get};
use zmesh_client::identity::Identity;
use zmesh_client::relay::{ChunkStore, Relay};
use zmesh_core::erasure;
use zmesh_core::storage_auth::{AuthRequest, REPLAY_WINDOW_MS, sign};
use zmesh_crypto::sign::SigningIdentity;
use zmesh_node::clock::unix_ms as now_ms;
use zmesh_types::{DataType, Key256};
use zmesh_wire::store::{Op, Status, StoreMessage};

const PASSPHRASE: &str = "holder tests";

fn zmesh(identity: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--identity")
        .arg(identity)
        .env("ZMESH_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap()
}

fn auth(who: &SigningIdentity, op: Op, chunk_id: &[u8], at: u64) -> zmesh_wire::store::OwnerAuth {
    let request =
        AuthRequest { op, data_type: None, chunk_id, shard_checksums: Vec::new(), chunk_len: 0 };
    sign(who, request, at, rand::random())
}

fn status_of(answer: &StoreMessage) -> Status {
    match answer {
        StoreMessage::Result(o)
        | StoreMessage::Shards { outcome: o, .. }
        | StoreMessage::Chunk { outcome: o, .. } => o.status,
        other => panic!("unexpected answer {other:?}"),
    }
}

async fn connect(addr: &str) -> Relay {
    Relay::connect(addr.parse().unwrap()).await.expect("connect to holder")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_holder_refuses_forged_replayed_and_foreign_requests() {
    let devnet = tokio::task::spawn_blocking(|| Devnet::start(16, &[])).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let id_path = work.path().join("alice");
    assert!(zmesh(&id_path, &["id", "new"]).status.success());
    let file = work.path().join("secret.bin");
    std::fs::write(&file, vec![42u8; 10_000]).unwrap();
    let devnet_file = devnet.dir.path().join("devnet.json");
    let out = zmesh(
        &id_path,
        &["put", file.to_str().unwrap(), "--devnet", devnet_file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let blob = String::from_utf8_lossy(&out.stdout).split_whitespace().last().unwrap().to_string();

    let alice = Identity::load(&id_path, PASSPHRASE.as_bytes()).unwrap();
    let alice = alice.signing();
    let mallory = SigningIdentity::generate();
    let chunk_id = format!("{blob}/0");
    let key = Key256::storage_key(&Key256(alice.public().address()), chunk_id.as_bytes());
    let holders: Vec<usize> = (0..16)
        .filter(|&i| {
            let held: serde_json::Value =
                get(devnet.api(i), &format!("/v1/storage/keys/{key}")).unwrap();
            !held["indices"].as_array().unwrap().is_empty()
        })
        .collect();
    assert_eq!(holders.len(), 15);

    for &i in &holders {
        let addr = devnet.nodes[i].multiaddrs.iter().find(|a| a.contains("/tcp/")).unwrap().clone();
        let holder = connect(&addr).await;
        let now = now_ms();

        // Mallory signs for Alice's storage key: not hers.
        let mut stolen = auth(&mallory, Op::Get, chunk_id.as_bytes(), now);
        stolen.storage_key = key;
        stolen.signature = mallory.sign(&stolen.signed_bytes());
        let answer = holder.call(StoreMessage::FetchShards { auth: stolen }).await.unwrap();
        assert_eq!(status_of(&answer), Status::Unauthorized, "holder {i}: forged read");

        // Mallory presents Alice's key with her own signature.
        let mut impostor = auth(alice, Op::Get, chunk_id.as_bytes(), now);
        impostor.signature = mallory.sign(&impostor.signed_bytes());
        let answer = holder.call(StoreMessage::FetchShards { auth: impostor }).await.unwrap();
        assert_eq!(status_of(&answer), Status::Unauthorized, "holder {i}: impostor read");

        // Mallory tries to overwrite Alice's shard with one of her own making.
        let shards = erasure::encode(key, b"mallory was here").unwrap();
        let mut overwrite = sign(
            &mallory,
            AuthRequest {
                op: Op::Put,
                data_type: Some(DataType::Media),
                chunk_id: chunk_id.as_bytes(),
                shard_checksums: shards.iter().map(|s| s.header.checksum).collect(),
                chunk_len: 16,
            },
            now,
            rand::random(),
        );
        overwrite.storage_key = key;
        overwrite.signature = mallory.sign(&overwrite.signed_bytes());
        let shard = shards[0].clone();
        let answer =
            holder.call(StoreMessage::StoreShard { auth: overwrite, shard }).await.unwrap();
        assert_eq!(status_of(&answer), Status::Unauthorized, "holder {i}: forged overwrite");

        // And to delete it.
        let mut delete = auth(&mallory, Op::Delete, chunk_id.as_bytes(), now);
        delete.storage_key = key;
        delete.signature = mallory.sign(&delete.signed_bytes());
        let answer = holder.call(StoreMessage::DeleteShards { auth: delete }).await.unwrap();
        assert_eq!(status_of(&answer), Status::Unauthorized, "holder {i}: forged delete");

        // Alice's own request works once; the same bytes again are a replay.
        let read = auth(alice, Op::Get, chunk_id.as_bytes(), now);
        let answer = holder.call(StoreMessage::FetchShards { auth: read.clone() }).await.unwrap();
        match &answer {
            StoreMessage::Shards { outcome, shards } => {
                assert_eq!(outcome.status, Status::Ok);
                assert_eq!(shards.len(), 1, "holder {i} holds one shard of the chunk");
            }
            other => panic!("holder {i}: {other:?}"),
        }
        let answer = holder.call(StoreMessage::FetchShards { auth: read }).await.unwrap();
        assert_eq!(status_of(&answer), Status::Replay, "holder {i}: replayed read");

        // An old request is refused even with a fresh nonce.
        let stale = auth(alice, Op::Get, chunk_id.as_bytes(), now - REPLAY_WINDOW_MS - 60_000);
        let answer = holder.call(StoreMessage::FetchShards { auth: stale }).await.unwrap();
        assert_eq!(status_of(&answer), Status::Replay, "holder {i}: stale read");
    }

    // Nothing Mallory did changed Alice's data.
    let out_path = work.path().join("back.bin");
    let out = zmesh(
        &id_path,
        &[
            "get",
            &blob,
            "-o",
            out_path.to_str().unwrap(),
            "--devnet",
            devnet_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&out_path).unwrap(), std::fs::read(&file).unwrap());

    // Another identity cannot read it through the CLI either.
    let bob = work.path().join("bob");
    assert!(zmesh(&bob, &["id", "new"]).status.success());
    let out = zmesh(
        &bob,
        &[
            "get",
            &blob,
            "-o",
            work.path().join("bob.bin").to_str().unwrap(),
            "--devnet",
            devnet_file.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    tokio::task::spawn_blocking(move || devnet.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_holder_says_insufficient_storage() {
    let full =
        tokio::task::spawn_blocking(|| Node::start(&["storage.max_bytes=1000"])).await.unwrap();
    let owner = SigningIdentity::generate();
    let chunk_id = b"blob/0";
    let key = Key256::storage_key(&Key256(owner.public().address()), chunk_id);
    let shards = erasure::encode(key, &[7u8; 50_000]).unwrap();
    let request = AuthRequest {
        op: Op::Put,
        data_type: Some(DataType::Media),
        chunk_id,
        shard_checksums: shards.iter().map(|s| s.header.checksum).collect(),
        chunk_len: 50_000,
    };
    let put = sign(&owner, request, now_ms(), rand::random());
    let holder = connect(&full.tcp_addr()).await;
    let answer = holder
        .call(StoreMessage::StoreShard { auth: put, shard: shards[0].clone() })
        .await
        .unwrap();
    match answer {
        StoreMessage::Result(o) => {
            assert_eq!(o.status, Status::InsufficientStorage);
            assert!(o.detail.starts_with("insufficient storage: need"), "{}", o.detail);
        }
        other => panic!("{other:?}"),
    }
}
