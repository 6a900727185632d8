//! The relay side of storage: a client's PUT, GET or DELETE of one chunk becomes a placement on
//! the nodes nearest the storage key, erasure coding, and shard requests to holders. The relay
//! checks the owner's signature too, so garbage is refused before it fans out; holders check it
//! again themselves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use libp2p::{Multiaddr, PeerId};
use zmesh_core::erasure::{self, ErasureError};
use zmesh_core::placement::{Candidate, PLACEMENT_CANDIDATES, Placement};
use zmesh_core::storage_auth::{self, ReplayGuard};
use zmesh_wire::store::{Op, Outcome, OwnerAuth, Status, StoreMessage};

use super::holder::auth_status;
use super::{PeerAddrs, StorageNet};

const CAPACITY_TIMEOUT: Duration = Duration::from_secs(5);
const SHARD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Relay {
    net: StorageNet,
    guard: Mutex<ReplayGuard>,
}

fn refuse(status: Status, detail: impl Into<String>) -> StoreMessage {
    StoreMessage::Result(Outcome::error(status, detail))
}

impl Relay {
    pub fn new(net: StorageNet) -> Self {
        Relay { net, guard: Mutex::new(ReplayGuard::new(100_000)) }
    }

    fn verify(&self, auth: &OwnerAuth, op: Op) -> Result<(), Outcome> {
        let mut guard = crate::lock(&self.guard);
        storage_auth::verify(auth, op, crate::clock::unix_ms(), &mut guard)
            .map(|_| ())
            .map_err(|e| Outcome::error(auth_status(&e), e.to_string()))
    }

    async fn candidates(
        &self,
        auth: &OwnerAuth,
    ) -> Result<Vec<(PeerId, zmesh_types::NodeId, Vec<Multiaddr>)>, Outcome> {
        self.net.closest(auth.storage_key, PLACEMENT_CANDIDATES).await.map_err(|e| {
            Outcome::error(Status::Internal, format!("looking up the nearest nodes: {e}"))
        })
    }

    pub async fn handle(&self, request: StoreMessage) -> StoreMessage {
        match request {
            StoreMessage::PutChunk { auth, chunk } => self.put(auth, chunk).await,
            StoreMessage::GetChunk { auth } => self.get(auth).await,
            StoreMessage::DeleteChunk { auth } => self.delete(auth).await,
            _ => refuse(Status::BadRequest, "not a client request"),
        }
    }

    async fn put(&self, auth: OwnerAuth, chunk: Vec<u8>) -> StoreMessage {
        if let Err(outcome) = self.verify(&auth, Op::Put) {
            return StoreMessage::Result(outcome);
        }
        if chunk.len() != auth.chunk_len as usize {
            return refuse(Status::BadRequest, "the chunk length differs from the signed one");
        }
        let shards = match erasure::encode(auth.storage_key, &chunk) {
            Ok(s) => s,
            Err(e) => return refuse(Status::BadRequest, e.to_string()),
        };
        if !shards.iter().map(|s| &s.header.checksum).eq(auth.shard_checksums.iter()) {
            return refuse(
                Status::Unauthorized,
                "the chunk does not match the checksums the owner signed",
            );
        }
        let found = match self.candidates(&auth).await {
            Ok(c) => c,
            Err(outcome) => return StoreMessage::Result(outcome),
        };
        let addrs: HashMap<PeerId, Vec<Multiaddr>> =
            found.iter().map(|(p, _, a)| (*p, a.clone())).collect();
        let accepting = join_all(found.iter().map(|(peer, _, a)| async {
            let asked = self
                .net
                .request((*peer, a.clone()), StoreMessage::Capacity, CAPACITY_TIMEOUT)
                .await;
            matches!(asked, Ok(StoreMessage::CapacityInfo { accepting: true, .. }))
        }))
        .await;
        let candidates = found
            .iter()
            .zip(accepting)
            .map(|((peer, node_id, _), accepting)| Candidate {
                peer: *peer,
                node_id: *node_id,
                accepting,
            })
            .collect();
        let mut placement = match Placement::plan(&auth.storage_key, candidates) {
            Ok(p) => p,
            Err(e) => return refuse(Status::NoPlacement, e.to_string()),
        };
        let target = |p: &PeerId| -> PeerAddrs { (*p, addrs.get(p).cloned().unwrap_or_default()) };
        let mut pending: Vec<usize> = (0..shards.len()).collect();
        let mut moved = 0;
        while !pending.is_empty() {
            let sends = pending.iter().map(|&i| {
                let holder = target(&placement.holders()[i]);
                let message =
                    StoreMessage::StoreShard { auth: auth.clone(), shard: shards[i].clone() };
                async move { (i, self.net.request(holder, message, SHARD_TIMEOUT).await) }
            });
            let mut failed = Vec::new();
            for (i, answer) in join_all(sends).await {
                match answer {
                    Ok(StoreMessage::Result(o)) if o.status == Status::Ok => {}
                    other => {
                        let why = match other {
                            Ok(StoreMessage::Result(o)) => format!("{:?}: {}", o.status, o.detail),
                            Ok(_) => "unexpected answer".into(),
                            Err(e) => e,
                        };
                        tracing::info!(index = i, holder = %placement.holders()[i], "shard not stored ({why}); trying the next node");
                        failed.push(i);
                    }
                }
            }
            for &i in &failed {
                if let Err(e) = placement.reassign(i) {
                    return refuse(Status::NoPlacement, e.to_string());
                }
                moved += 1;
            }
            pending = failed;
        }
        tracing::info!(key = %auth.storage_key, bytes = chunk.len(), moved, "chunk stored on 15 nodes");
        StoreMessage::Result(Outcome::ok(shards.len() as u16))
    }

    async fn get(&self, auth: OwnerAuth) -> StoreMessage {
        let answer = |outcome: Outcome, chunk: Vec<u8>| StoreMessage::Chunk { outcome, chunk };
        if let Err(outcome) = self.verify(&auth, Op::Get) {
            return answer(outcome, Vec::new());
        }
        let found = match self.candidates(&auth).await {
            Ok(c) => c,
            Err(outcome) => return answer(outcome, Vec::new()),
        };
        let replies = join_all(found.iter().map(|(peer, _, a)| {
            let message = StoreMessage::FetchShards { auth: auth.clone() };
            self.net.request((*peer, a.clone()), message, SHARD_TIMEOUT)
        }))
        .await;
        let mut shards = Vec::new();
        let mut refused = None;
        for reply in replies {
            match reply {
                Ok(StoreMessage::Shards { outcome, shards: got })
                    if outcome.status == Status::Ok =>
                {
                    shards.extend(got)
                }
                Ok(StoreMessage::Shards { outcome, .. })
                    if outcome.status == Status::Unauthorized =>
                {
                    refused = Some(outcome);
                }
                _ => {}
            }
        }
        if shards.is_empty() {
            return match refused {
                Some(outcome) => answer(outcome, Vec::new()),
                None => answer(
                    Outcome::error(Status::NotFound, "no shards of this chunk were found"),
                    Vec::new(),
                ),
            };
        }
        match erasure::decode(auth.storage_key, shards) {
            Ok(chunk) => answer(Outcome::ok(0), chunk),
            Err(ErasureError::NotEnoughShards { found, needed }) => answer(
                Outcome {
                    status: Status::NotEnoughShards,
                    detail: format!("found {found} healthy shards, need {needed}"),
                    count: found as u16,
                    needed: needed as u16,
                },
                Vec::new(),
            ),
            Err(e) => answer(Outcome::error(Status::Internal, e.to_string()), Vec::new()),
        }
    }

    async fn delete(&self, auth: OwnerAuth) -> StoreMessage {
        if let Err(outcome) = self.verify(&auth, Op::Delete) {
            return StoreMessage::Result(outcome);
        }
        let found = match self.candidates(&auth).await {
            Ok(c) => c,
            Err(outcome) => return StoreMessage::Result(outcome),
        };
        let replies = join_all(found.iter().map(|(peer, _, a)| {
            let message = StoreMessage::DeleteShards { auth: auth.clone() };
            self.net.request((*peer, a.clone()), message, SHARD_TIMEOUT)
        }))
        .await;
        let mut deleted = 0u16;
        for reply in replies {
            match reply {
                Ok(StoreMessage::Result(o)) if o.status == Status::Ok => deleted += o.count,
                Ok(StoreMessage::Result(o)) if o.status == Status::Unauthorized => {
                    return StoreMessage::Result(o);
                }
                _ => {}
            }
        }
        StoreMessage::Result(Outcome::ok(deleted))
    }
}
