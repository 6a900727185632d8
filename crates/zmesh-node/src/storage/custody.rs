//! The holder's side of repair: the chunk registry (the owner's certificate and the placement
//! record for each chunk held here), health reports, shard reads for wardens, rebuilt shards
//! stored on the strength of the owner's certificate, and audits of the shards on disk.

use std::sync::atomic::{AtomicU64, Ordering};

use libp2p::PeerId;
use sha2::{Digest, Sha256};
use zmesh_core::erasure;
use zmesh_core::repair::schedule::rank_of;
use zmesh_core::storage_auth::{self, expiry_of};
use zmesh_store::{ChunkEntry, ShardCheck, ShardKey, ShardMeta, StoreError};
use zmesh_types::{Key256, NodeId};
use zmesh_wire::Writer;
use zmesh_wire::repair::{PlacementRecord, ShardHealth, ShardState};
use zmesh_wire::shard::Shard;
use zmesh_wire::store::{Outcome, OwnerAuth, Status, StoreMessage};

use super::holder::{Holder, auth_status, store_status};
use crate::identity::node_id;
use crate::lock;

/// A chunk's registry entry, decoded.
#[derive(Debug, Clone)]
pub struct Custody {
    pub certificate: OwnerAuth,
    pub record: Option<PlacementRecord>,
    pub expires_at_ms: u64,
}

/// What one slice of an audit found.
#[derive(Debug, Clone, Default)]
pub struct AuditSlice {
    pub checked: u64,
    pub damaged: Vec<ShardKey>,
    /// Where the next slice starts; `None` when the walk is complete.
    pub next: Option<ShardKey>,
}

/// Audit counters, for `GET /v1/repair` and metrics.
#[derive(Debug, Default)]
pub struct AuditCounters {
    pub shards_checked: AtomicU64,
    pub damaged_dropped: AtomicU64,
    pub passes: AtomicU64,
    pub last_pass_unix_ms: AtomicU64,
}

fn encode_auth(auth: &OwnerAuth) -> Vec<u8> {
    let mut w = Writer::default();
    auth.encode(&mut w);
    w.0
}

/// The node ids a record names, in index order (`None` for empty slots or unparsable ids).
pub fn record_peers(record: &PlacementRecord) -> Vec<Option<PeerId>> {
    record.holders.iter().map(|b| PeerId::from_bytes(b).ok()).collect()
}

/// The node ids of the holders a record names.
pub fn record_node_ids(record: &PlacementRecord) -> Vec<NodeId> {
    record.holders.iter().filter(|h| !h.is_empty()).map(|h| Key256::from_peer_id_bytes(h)).collect()
}

pub(crate) fn record_contains(record: &PlacementRecord, peer: &PeerId) -> bool {
    let bytes = peer.to_bytes();
    record.holders.contains(&bytes)
}

impl Custody {
    /// A registry entry decoded; `None` (logged) when its certificate no longer decodes.
    pub(crate) fn decode(storage_key: &Key256, entry: &ChunkEntry) -> Option<Custody> {
        let Ok(certificate) = OwnerAuth::decode(&mut zmesh_wire::Reader::new(&entry.certificate))
        else {
            tracing::warn!(key = %storage_key, "unreadable certificate in the chunk registry");
            return None;
        };
        let record = (!entry.record.is_empty())
            .then(|| PlacementRecord::from_bytes(&entry.record).ok())
            .flatten();
        Some(Custody { certificate, record, expires_at_ms: entry.expires_at_ms })
    }
}

impl Holder {
    /// The decoded registry entry of `storage_key`; `None` if there is none or it is damaged.
    pub fn custody(&self, storage_key: &Key256) -> Result<Option<Custody>, StoreError> {
        Ok(self.store.chunk(storage_key)?.and_then(|entry| Custody::decode(storage_key, &entry)))
    }

    /// The registry entry to write along with a shard stored under `auth`, or `None` when the
    /// current entry is already as new (same certificate, record at least as recent).
    pub(super) fn registry_entry(
        &self,
        auth: &OwnerAuth,
        record: Option<&PlacementRecord>,
    ) -> Result<Option<ChunkEntry>, StoreError> {
        let Some(expires_at_ms) = expiry_of(auth) else { return Ok(None) };
        let current = self.custody(&auth.storage_key)?;
        let newer_record = |current: &Option<PlacementRecord>| match (record, current) {
            (Some(new), Some(old)) => new.version > old.version,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let (certificate, expires_at_ms, old_record) = match current {
            // A re-put of the chunk: the newer signed time wins, whichever arrives first.
            Some(c) if c.certificate.timestamp_ms > auth.timestamp_ms => {
                (c.certificate, c.expires_at_ms, c.record)
            }
            Some(c) if c.certificate == *auth && !newer_record(&c.record) => return Ok(None),
            Some(c) => (auth.clone(), expires_at_ms, c.record),
            None => (auth.clone(), expires_at_ms, None),
        };
        let record = if newer_record(&old_record) { record.cloned() } else { old_record };
        Ok(Some(ChunkEntry {
            expires_at_ms,
            certificate: encode_auth(&certificate),
            record: record.map(|r| r.to_bytes()).unwrap_or_default(),
        }))
    }

    /// Starts watching every chunk of the registry (at start-up).
    pub(super) fn watch_registry(&self) -> Result<(), crate::NodeError> {
        let chunks = self
            .store
            .chunks()
            .map_err(|e| crate::NodeError::Config(format!("reading the chunk registry: {e}")))?;
        for (key, entry) in chunks {
            if let Some(custody) = entry.and_then(|e| Custody::decode(&key, &e)) {
                self.watch(&key, &custody);
            }
        }
        Ok(())
    }

    /// (Re)computes this node's rank for a chunk. Without a record yet, the index of the shard
    /// held here stands in for the rank: placement put shard *i* on the *i*-th closest node.
    pub(super) fn watch_chunk(&self, storage_key: &Key256) {
        if let Ok(Some(custody)) = self.custody(storage_key) {
            self.watch(storage_key, &custody);
        }
    }

    fn watch(&self, storage_key: &Key256, custody: &Custody) {
        let local: NodeId = node_id(&self.local_peer);
        let rank = match &custody.record {
            Some(record) => rank_of(storage_key, &local, &record_node_ids(record)),
            None => self
                .store
                .list(storage_key, 0)
                .ok()
                .and_then(|held| held.iter().map(|(i, _)| usize::from(*i)).min()),
        };
        let mut schedule = lock(&self.schedule);
        schedule.watch(*storage_key, rank, custody.expires_at_ms, self.now_ms());
    }

    /// Keeps `record` for `storage_key` if it is newer than the one held. Returns whether it was
    /// taken.
    pub fn adopt_record(&self, storage_key: &Key256, record: &PlacementRecord) -> bool {
        let Ok(Some(custody)) = self.custody(storage_key) else { return false };
        if custody.record.as_ref().is_some_and(|r| r.version >= record.version) {
            return false;
        }
        let entry = ChunkEntry {
            expires_at_ms: custody.expires_at_ms,
            certificate: encode_auth(&custody.certificate),
            record: record.to_bytes(),
        };
        if let Err(e) = self.store.put_chunk(storage_key, &entry) {
            tracing::error!(key = %storage_key, "saving a placement record failed: {e}");
            return false;
        }
        self.watch_chunk(storage_key);
        true
    }

    /// The chunks whose placement record names `peer`, with the node ids of all their holders.
    pub fn chunks_held_with(
        &self,
        peer: &PeerId,
    ) -> Result<Vec<(Key256, Vec<NodeId>)>, StoreError> {
        let bytes = peer.to_bytes();
        let mut out = Vec::new();
        for (key, entry) in self.store.chunks()? {
            let Some(record) = entry.and_then(|e| PlacementRecord::from_bytes(&e.record).ok())
            else {
                continue;
            };
            if record.holders.contains(&bytes) {
                out.push((key, record_node_ids(&record)));
            }
        }
        Ok(out)
    }

    /// Forgets a chunk whose expiry the warden has verified.
    pub fn forget_chunk(&self, storage_key: &Key256) {
        if let Err(e) = self.store.remove_chunk(storage_key) {
            tracing::error!(key = %storage_key, "removing a registry entry failed: {e}");
        }
        lock(&self.schedule).forget(storage_key);
    }

    /// Checks one stored shard: against its stored checksum, its own header checksum, and the
    /// checksum the owner signed. A shard failing any of them is dropped here and now.
    fn check_and_drop(&self, key: &ShardKey, certificate: Option<&OwnerAuth>) -> Option<ShardMeta> {
        let intact = match self.store.check_shard(key) {
            Ok(ShardCheck::Intact { meta, data }) => Shard::from_bytes(&data).ok().and_then(|s| {
                let signed = certificate.map(|c| c.shard_checksums.get(usize::from(key.index)));
                let matches_signed = match signed {
                    Some(Some(sum)) => *sum == s.header.checksum,
                    Some(None) => false,
                    None => true,
                };
                (s.header.storage_key == key.storage_key
                    && s.header.index == key.index
                    && erasure::verify(&s)
                    && matches_signed)
                    .then_some(meta)
            }),
            Ok(ShardCheck::Missing) => return None,
            Ok(ShardCheck::Damaged) => None,
            Err(e) => {
                tracing::error!(key = %key.storage_key, index = key.index, "reading a shard failed: {e}");
                return None;
            }
        };
        if intact.is_none() {
            tracing::warn!(
                key = %key.storage_key,
                index = key.index,
                "shard failed its checksum; dropping it so the chunk's warden rebuilds it"
            );
            self.audit.damaged_dropped.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.store.remove_shard(key) {
                tracing::error!("dropping a damaged shard failed: {e}");
            }
        }
        intact
    }

    pub(super) fn health_check(
        &self,
        from: &PeerId,
        storage_key: &Key256,
        offered: Option<PlacementRecord>,
    ) -> StoreMessage {
        let now = self.now_ms();
        let failed = |e: StoreError| StoreMessage::Health {
            outcome: Outcome::error(store_status(&e), e.to_string()),
            has_certificate: false,
            shards: Vec::new(),
            record: None,
        };
        let mut custody = match self.custody(storage_key) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        // A newer record is taken from a node it names: wardens are always holders.
        if let (Some(offer), Some(held)) = (&offered, custody.as_mut())
            && record_contains(offer, from)
            && self.adopt_record(storage_key, offer)
        {
            held.record = Some(offer.clone());
        }
        let from_member = custody
            .as_ref()
            .is_some_and(|c| c.record.as_ref().is_none_or(|r| record_contains(r, from)));
        if from_member {
            let sender_rank = custody
                .as_ref()
                .and_then(|c| c.record.as_ref())
                .and_then(|r| rank_of(storage_key, &node_id(from), &record_node_ids(r)));
            let mut schedule = lock(&self.schedule);
            schedule.heard_warden(storage_key, sender_rank, now);
        }
        let expired = custody.as_ref().is_some_and(|c| c.expires_at_ms <= now);
        if expired && let Err(e) = self.store.purge_expired(storage_key, now) {
            tracing::error!(key = %storage_key, "deleting an expired chunk's shards failed: {e}");
        }
        let held = match self.store.list(storage_key, 0) {
            Ok(h) => h,
            Err(e) => return failed(e),
        };
        let certificate = custody.as_ref().map(|c| &c.certificate);
        let mut shards = Vec::new();
        for (index, meta) in held {
            let key = ShardKey { storage_key: *storage_key, index };
            let state = if meta.expires_at_ms <= now {
                ShardState::Expired
            } else if self.check_and_drop(&key, certificate).is_some() {
                ShardState::Healthy
            } else {
                ShardState::Corrupt
            };
            shards.push(ShardHealth { index, state, expires_at_ms: meta.expires_at_ms });
        }
        if expired && from_member && shards.is_empty() {
            // The warden has seen this node's copy gone; nothing is left to watch here.
            self.forget_chunk(storage_key);
        }
        let own = custody.as_ref().and_then(|c| c.record.clone());
        let newer = own.filter(|o| offered.as_ref().is_none_or(|r| o.version > r.version));
        StoreMessage::Health {
            outcome: Outcome::ok(shards.len() as u16),
            has_certificate: custody.is_some(),
            shards,
            record: newer,
        }
    }

    /// Serves one shard to a warden. Only the chunk's recorded holders may read (shards are
    /// ciphertext either way, but there is no reason to hand them to anyone else).
    pub(super) fn repair_fetch(
        &self,
        from: &PeerId,
        storage_key: &Key256,
        index: u8,
    ) -> StoreMessage {
        let answer = |outcome, shards| StoreMessage::Shards { outcome, shards };
        let allowed = *from == self.local_peer
            || matches!(self.custody(storage_key), Ok(Some(Custody { record: Some(ref r), .. })) if record_contains(r, from));
        if !allowed {
            return answer(
                Outcome::error(
                    Status::Unauthorized,
                    "only the chunk's holders may read shards for repair",
                ),
                Vec::new(),
            );
        }
        let key = ShardKey { storage_key: *storage_key, index };
        match self.store.get(&key, self.now_ms()) {
            Ok(Some(stored)) => match Shard::from_bytes(&stored.data) {
                Ok(shard) if erasure::verify(&shard) => answer(Outcome::ok(1), vec![shard]),
                _ => {
                    self.check_and_drop(&key, None);
                    answer(Outcome::error(Status::NotFound, "the shard is damaged"), Vec::new())
                }
            },
            Ok(None) => answer(Outcome::error(Status::NotFound, "no such shard here"), Vec::new()),
            Err(StoreError::Corrupt(_)) => {
                self.check_and_drop(&key, None);
                answer(Outcome::error(Status::NotFound, "the shard is damaged"), Vec::new())
            }
            Err(e) => answer(Outcome::error(store_status(&e), e.to_string()), Vec::new()),
        }
    }

    /// Keeps a rebuilt shard. The owner's certificate is checked like a PUT's signature, minus
    /// the replay window: it may be old, but the shard must be exactly one the owner signed for
    /// and it expires when the owner's PUT said.
    pub(super) fn repair_store(
        &self,
        certificate: &OwnerAuth,
        shard: &Shard,
        record: PlacementRecord,
    ) -> Outcome {
        let verified = match storage_auth::verify_certificate(certificate) {
            Ok(v) => v,
            Err(e) => return Outcome::error(auth_status(&e), e.to_string()),
        };
        let h = &shard.header;
        if !storage_auth::is_signed_shard(certificate, shard) {
            return Outcome::error(
                Status::Unauthorized,
                "the shard is not one the owner signed for",
            );
        }
        let Some(expires_at_ms) = expiry_of(certificate) else {
            return Outcome::error(Status::BadRequest, "unknown data type");
        };
        if record.holders.get(usize::from(h.index)) != Some(&self.local_peer.to_bytes()) {
            return Outcome::error(Status::BadRequest, "the placement record names another node");
        }
        let now = self.now_ms();
        // One shard of a chunk per node, so that losing a node costs each chunk one shard at
        // most. A node that missed a health check may still hold another one.
        if let Ok(held) = self.store.list(&h.storage_key, now)
            && let Some((other, _)) = held.iter().find(|(i, _)| *i != h.index)
        {
            return Outcome::error(
                Status::BadRequest,
                format!("this node already holds shard {other} of the chunk"),
            );
        }
        let bytes = shard.to_bytes();
        let meta = ShardMeta {
            owner: verified.owner,
            expires_at_ms,
            checksum: Sha256::digest(&bytes).into(),
        };
        let key = ShardKey { storage_key: h.storage_key, index: h.index };
        let stored = match self.registry_entry(certificate, Some(&record)) {
            Ok(Some(entry)) => self.store.put_with_chunk(&key, &meta, &bytes, now, &entry),
            Ok(None) => self.store.put(&key, &meta, &bytes, now),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => {
                self.watch_chunk(&h.storage_key);
                tracing::info!(key = %h.storage_key, index = h.index, "stored a rebuilt shard");
                Outcome::ok(1)
            }
            Err(e) => Outcome::error(store_status(&e), e.to_string()),
        }
    }

    /// Audits up to `limit` shards after `after`, dropping any that fail a check.
    pub fn audit(&self, after: Option<ShardKey>, limit: usize) -> Result<AuditSlice, StoreError> {
        let keys = self.store.shard_keys(after, limit)?;
        let mut slice = AuditSlice { next: keys.last().copied(), ..AuditSlice::default() };
        if keys.len() < limit {
            slice.next = None;
        }
        for key in keys {
            let certificate = self.custody(&key.storage_key).ok().flatten().map(|c| c.certificate);
            slice.checked += 1;
            if self.check_and_drop(&key, certificate.as_ref()).is_none() {
                slice.damaged.push(key);
            }
        }
        self.audit.shards_checked.fetch_add(slice.checked, Ordering::Relaxed);
        Ok(slice)
    }
}
