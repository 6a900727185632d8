//! The holder side of storage: keeps shards for owners who signed for them, serves them only to
//! their owner, and deletes them on the owner's word or at expiry. Every request is verified
//! here, by the holder itself, whoever relayed it. Methods block on disk; the node calls them from
//! blocking tasks.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zmesh_core::erasure;
use zmesh_core::storage_auth::{self, AuthError, ReplayGuard, Verified};
use zmesh_store::{GcReport, ShardKey, ShardMeta, ShardStore, StoreError};
use zmesh_types::constants::MAX_ENCODED_SHARD_LEN;
use zmesh_wire::shard::Shard;
use zmesh_wire::store::{Op, Outcome, OwnerAuth, Status, StoreMessage};

use libp2p::PeerId;
use zmesh_core::repair::{ScheduleConfig, WardenSchedule};

use super::custody::AuditCounters;
use crate::NodeError;
use crate::clock::unix_ms;
use crate::identity::node_id;
use crate::lock;

pub const STORE_FILE: &str = "shards.redb";
/// Nonces a holder remembers at most (one per request within the replay window).
const REPLAY_CAPACITY: usize = 200_000;

#[derive(Debug)]
pub struct Holder {
    pub(super) store: ShardStore,
    guard: Mutex<ReplayGuard>,
    clock_offset: Duration,
    pub(super) local_peer: PeerId,
    /// Which of the chunks held here this node scans, and when (see `zmesh_core::repair`).
    pub(super) schedule: Mutex<WardenSchedule>,
    pub audit: AuditCounters,
}

/// `GET /v1/storage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageReport {
    pub bytes_used: u64,
    pub max_bytes: u64,
    pub shards: u64,
    pub next_expiry_unix_ms: Option<u64>,
    /// Whether this node takes new shards.
    pub accepting: bool,
    /// The node's storage clock (Unix ms), which `storage.clock_offset` moves.
    pub clock_unix_ms: u64,
}

pub(crate) fn auth_status(e: &AuthError) -> Status {
    match e {
        AuthError::Stale { .. } | AuthError::Replayed => Status::Replay,
        AuthError::Malformed | AuthError::WrongOp { .. } => Status::BadRequest,
        _ => Status::Unauthorized,
    }
}

pub(super) fn store_status(e: &StoreError) -> Status {
    match e {
        StoreError::InsufficientStorage { .. } => Status::InsufficientStorage,
        StoreError::OwnerMismatch => Status::Unauthorized,
        StoreError::Expired | StoreError::Invalid(_) => Status::BadRequest,
        _ => Status::Internal,
    }
}

pub(super) fn result(outcome: Outcome) -> StoreMessage {
    StoreMessage::Result(outcome)
}

impl Holder {
    /// Opens the shard store in `dir` and starts watching every chunk in its registry.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        clock_offset: Duration,
        local_peer: PeerId,
        schedule: ScheduleConfig,
    ) -> Result<Self, NodeError> {
        let path = dir.join(STORE_FILE);
        let store = ShardStore::open(&path, max_bytes)
            .map_err(|e| NodeError::Config(format!("opening {}: {e}", path.display())))?;
        let holder = Holder {
            store,
            guard: Mutex::new(ReplayGuard::new(REPLAY_CAPACITY)),
            clock_offset,
            local_peer,
            schedule: Mutex::new(WardenSchedule::new(schedule, node_id(&local_peer))),
            audit: AuditCounters::default(),
        };
        holder.watch_registry()?;
        Ok(holder)
    }

    /// The storage clock: wall time plus the configured offset.
    pub fn now_ms(&self) -> u64 {
        unix_ms() + self.clock_offset.as_millis() as u64
    }

    /// Checks a request against the real clock: `clock_offset` moves expiry, not the replay
    /// window, which must match the clocks of the owners signing requests.
    fn verify(&self, auth: &OwnerAuth, op: Op) -> Result<Verified, AuthError> {
        let mut guard = lock(&self.guard);
        storage_auth::verify(auth, op, unix_ms(), &mut guard)
    }

    /// Answers one holder request from `from` (StoreShard, FetchShards, DeleteShards, Capacity,
    /// and repair's HealthCheck, RepairFetch, RepairStore).
    pub fn handle(&self, from: &PeerId, request: StoreMessage) -> StoreMessage {
        match request {
            StoreMessage::HealthCheck { storage_key, record } => {
                self.health_check(from, &storage_key, record)
            }
            StoreMessage::RepairFetch { storage_key, index } => {
                self.repair_fetch(from, &storage_key, index)
            }
            StoreMessage::RepairStore { certificate, shard, record } => {
                result(self.repair_store(&certificate, &shard, record))
            }
            StoreMessage::StoreShard { auth, shard } => result(self.store_shard(&auth, &shard)),
            StoreMessage::FetchShards { auth } => self.fetch(&auth),
            StoreMessage::DeleteShards { auth } => result(self.delete(&auth)),
            StoreMessage::Capacity => StoreMessage::CapacityInfo {
                free_bytes: self
                    .report()
                    .map(|r| r.max_bytes.saturating_sub(r.bytes_used))
                    .unwrap_or(0),
                accepting: self.accepting(),
            },
            _ => result(Outcome::error(Status::BadRequest, "not a holder request")),
        }
    }

    pub fn accepting(&self) -> bool {
        self.store.has_capacity(MAX_ENCODED_SHARD_LEN as u64)
    }

    fn store_shard(&self, auth: &OwnerAuth, shard: &Shard) -> Outcome {
        let verified = match self.verify(auth, Op::Put) {
            Ok(v) => v,
            Err(e) => return Outcome::error(auth_status(&e), e.to_string()),
        };
        let h = &shard.header;
        if !storage_auth::is_signed_shard(auth, shard) {
            return Outcome::error(
                Status::Unauthorized,
                "the shard is not one the owner signed for",
            );
        }
        let Some(data_type) = verified.data_type else {
            return Outcome::error(Status::BadRequest, "no data type");
        };
        let bytes = shard.to_bytes();
        let meta = ShardMeta {
            owner: verified.owner,
            // The owner's signed time, not the relay's or this node's, fixes the expiry.
            expires_at_ms: auth.timestamp_ms + data_type.ttl().as_millis() as u64,
            checksum: Sha256::digest(&bytes).into(),
        };
        let key = ShardKey { storage_key: h.storage_key, index: h.index };
        let stored = match self.registry_entry(auth, None) {
            Ok(Some(entry)) => {
                self.store.put_with_chunk(&key, &meta, &bytes, self.now_ms(), &entry)
            }
            Ok(None) => self.store.put(&key, &meta, &bytes, self.now_ms()),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => {
                self.watch_chunk(&h.storage_key);
                Outcome::ok(1)
            }
            Err(e) => Outcome::error(store_status(&e), e.to_string()),
        }
    }

    fn fetch(&self, auth: &OwnerAuth) -> StoreMessage {
        let failed = |status, detail: String| StoreMessage::Shards {
            outcome: Outcome::error(status, detail),
            shards: Vec::new(),
        };
        let verified = match self.verify(auth, Op::Get) {
            Ok(v) => v,
            Err(e) => return failed(auth_status(&e), e.to_string()),
        };
        let now = self.now_ms();
        let held = match self.store.list(&auth.storage_key, now) {
            Ok(held) => held,
            Err(e) => return failed(store_status(&e), e.to_string()),
        };
        let mut shards = Vec::new();
        for (index, meta) in held {
            if meta.owner != verified.owner {
                return failed(Status::Unauthorized, "the shards belong to another owner".into());
            }
            let key = ShardKey { storage_key: auth.storage_key, index };
            // A shard that fails its checks on disk is left out: the reader counts it missing.
            if let Ok(Some(stored)) = self.store.get(&key, now)
                && let Ok(shard) = Shard::from_bytes(&stored.data)
                && erasure::verify(&shard)
            {
                shards.push(shard);
            }
        }
        let count = shards.len() as u16;
        StoreMessage::Shards { outcome: Outcome::ok(count), shards }
    }

    fn delete(&self, auth: &OwnerAuth) -> Outcome {
        let verified = match self.verify(auth, Op::Delete) {
            Ok(v) => v,
            Err(e) => return Outcome::error(auth_status(&e), e.to_string()),
        };
        match self.store.delete(&auth.storage_key, &verified.owner, self.now_ms()) {
            Ok(n) => Outcome::ok(n as u16),
            Err(e) => Outcome::error(store_status(&e), e.to_string()),
        }
    }

    /// The shard indices this node holds under `storage_key` (live ones).
    pub fn held(&self, storage_key: &zmesh_types::Key256) -> Result<Vec<u8>, StoreError> {
        Ok(self
            .store
            .list(storage_key, self.now_ms())?
            .into_iter()
            .map(|(index, _)| index)
            .collect())
    }

    pub fn gc(&self) -> Result<GcReport, StoreError> {
        self.store.gc(self.now_ms())
    }

    pub fn report(&self) -> Result<StorageReport, StoreError> {
        let now = self.now_ms();
        let usage = self.store.usage(now)?;
        Ok(StorageReport {
            bytes_used: usage.bytes_used,
            max_bytes: usage.max_bytes,
            shards: usage.shards,
            next_expiry_unix_ms: usage.next_expiry_ms,
            accepting: self.accepting(),
            clock_unix_ms: now,
        })
    }
}
