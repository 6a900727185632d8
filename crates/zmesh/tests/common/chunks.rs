//! Storing and reading single chunks through the real client library and a relay of a running
//! mesh, and asking nodes which shards they hold: what repair tests need.

use std::collections::HashMap;
use std::path::Path;

use zmesh_client::blob::{self, BlobId};
use zmesh_client::{ChunkRef, ChunkStore, Identity, Relay};
use zmesh_crypto::sign::SigningIdentity;
use zmesh_types::{DataType, Key256};
use zmesh_wire::store::{Status, StoreMessage};

use super::get;

/// A user with a connection to one relay, and the chunks they stored.
pub struct Owner {
    pub identity: Identity,
    relay: Relay,
    rt: tokio::runtime::Runtime,
    pub chunks: Vec<StoredChunk>,
}

#[derive(Clone)]
pub struct StoredChunk {
    pub id: BlobId,
    pub key: Key256,
    pub plaintext: Vec<u8>,
}

impl Owner {
    pub fn connect(devnet_file: &Path) -> Owner {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let relay = rt.block_on(Relay::from_devnet(devnet_file)).expect("connect to a relay");
        Owner {
            identity: Identity::from_signing(SigningIdentity::generate()),
            relay,
            rt,
            chunks: Vec::new(),
        }
    }

    /// The storage key of a blob's first data chunk.
    pub fn key_of(&self, id: BlobId) -> Key256 {
        Key256::storage_key(&self.identity.address(), &id.data_chunk_id(0))
    }

    /// Stores `plaintext` as the first data chunk of a new blob whose storage key starts with
    /// `prefix_bits` bits of `prefix` (found by trying random blob ids), so that chosen chunks
    /// land on the same nodes.
    pub fn put(&mut self, plaintext: &[u8], prefix: Option<(&Key256, u32)>, data_type: DataType) {
        let id = loop {
            let id = BlobId::random();
            match prefix {
                Some((p, bits)) if 256 - self.key_of(id).distance(p).leading_bucket() < bits => {
                    continue;
                }
                _ => break id,
            }
        };
        let sealed = blob::seal_chunk(&self.identity, id, 0, plaintext);
        let request = blob::put_request(
            &self.identity,
            ChunkRef::Data(id, 0),
            sealed,
            data_type,
            blob::now_ms(),
        )
        .expect("put request");
        match self.rt.block_on(self.relay.call(request)).expect("relay answers") {
            StoreMessage::Result(o) if o.status == Status::Ok => {}
            other => panic!("put refused: {other:?}"),
        }
        self.chunks.push(StoredChunk { id, key: self.key_of(id), plaintext: plaintext.to_vec() });
    }

    /// Reads a chunk back through the relay; `Err` with the relay's reason if it cannot.
    pub fn read(&self, chunk: &StoredChunk) -> Result<Vec<u8>, String> {
        let request =
            blob::get_request(&self.identity, ChunkRef::Data(chunk.id, 0), blob::now_ms());
        match self.rt.block_on(self.relay.call(request)) {
            Ok(StoreMessage::Chunk { outcome, chunk: sealed }) if outcome.status == Status::Ok => {
                blob::open_chunk(&self.identity, chunk.id, 0, &sealed).map_err(|e| e.to_string())
            }
            Ok(StoreMessage::Chunk { outcome, .. }) => Err(outcome.detail),
            other => Err(format!("{other:?}")),
        }
    }
}

/// Which shard indices each of `apis` holds under `key` (nodes that do not answer are left out).
pub fn shard_map(apis: &[String], key: &Key256) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for api in apis {
        let Ok(held) = get::<serde_json::Value>(api, &format!("/v1/storage/keys/{key}")) else {
            continue;
        };
        let indices: Vec<u8> = held["indices"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).map(|v| v as u8).collect())
            .unwrap_or_default();
        if !indices.is_empty() {
            out.insert(api.clone(), indices);
        }
    }
    out
}

/// Whether `key` has all 15 shards on 15 distinct nodes among `apis`: each shard index can be
/// given its own node holding it (a bipartite matching; a node holding an extra copy is fine).
pub fn fully_placed(apis: &[String], key: &Key256) -> bool {
    let map = shard_map(apis, key);
    let nodes: Vec<&Vec<u8>> = map.values().collect();
    // owner[n] = the index node n is matched to.
    let mut owner: Vec<Option<u8>> = vec![None; nodes.len()];
    fn augment(i: u8, nodes: &[&Vec<u8>], owner: &mut [Option<u8>], seen: &mut [bool]) -> bool {
        for n in 0..nodes.len() {
            if nodes[n].contains(&i) && !seen[n] {
                seen[n] = true;
                if owner[n].is_none_or(|j| augment(j, nodes, owner, seen)) {
                    owner[n] = Some(i);
                    return true;
                }
            }
        }
        false
    }
    (0..15u8).all(|i| augment(i, &nodes, &mut owner, &mut vec![false; nodes.len()]))
}

/// `GET /v1/repair` of one node.
pub fn repair_report(api: &str) -> Option<serde_json::Value> {
    get::<serde_json::Value>(api, "/v1/repair").ok()
}
