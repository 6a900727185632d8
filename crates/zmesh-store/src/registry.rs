//! What repair needs from a holder's store: the chunk registry (for each chunk the node holds
//! shards of, the owner's certificate and the chunk's placement record, so that whichever holder
//! becomes warden can find and rebuild it) and the audit primitives (walk every shard, check it
//! against its checksum, drop a damaged one).
//!
//! | table | key | value |
//! |---|---|---|
//! | `chunks` | storage key (32 bytes) | `expires_at_ms: u64 BE ‖ certificate length: u32 BE ‖ certificate ‖ placement record` |
//!
//! Both blobs are opaque here (their codecs live in `zmesh-wire`); lengths are bounded before
//! anything is allocated. Registry entries are small (about 1 KiB) and are not charged to the
//! byte quota; they outlive their chunk's expiry until the warden has verified the deletion.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};
use zmesh_types::Key256;

use crate::{
    RawKey, SHARDS, ShardKey, ShardMeta, ShardStore, StoreError, WriteTables, begin_write, raw_key,
    record,
};

const CHUNKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("chunks");

/// Longest certificate kept (an owner's signed PUT is under 700 bytes).
pub const MAX_CERTIFICATE: usize = 4096;
/// Longest placement record kept (15 PeerIds of at most 64 bytes, with lengths and a version).
pub const MAX_RECORD: usize = 8 + 15 * 65;

/// A chunk this node holds shards of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkEntry {
    pub expires_at_ms: u64,
    pub certificate: Vec<u8>,
    /// Empty until a warden has sent one.
    pub record: Vec<u8>,
}

impl ChunkEntry {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        if self.certificate.len() > MAX_CERTIFICATE || self.record.len() > MAX_RECORD {
            return Err(StoreError::Invalid("certificate or placement record too long".into()));
        }
        let mut out = Vec::with_capacity(12 + self.certificate.len() + self.record.len());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        out.extend_from_slice(&(self.certificate.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.certificate);
        out.extend_from_slice(&self.record);
        Ok(out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt("chunk registry entry is malformed".into());
        let (head, rest) = bytes.split_at_checked(12).ok_or_else(corrupt)?;
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&head[..8]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&head[8..]);
        let cert_len = u32::from_be_bytes(len) as usize;
        if cert_len > MAX_CERTIFICATE {
            return Err(corrupt());
        }
        let (certificate, record) = rest.split_at_checked(cert_len).ok_or_else(corrupt)?;
        if record.len() > MAX_RECORD {
            return Err(corrupt());
        }
        Ok(ChunkEntry {
            expires_at_ms: u64::from_be_bytes(expires),
            certificate: certificate.to_vec(),
            record: record.to_vec(),
        })
    }
}

/// What an audit found under one shard key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardCheck {
    Missing,
    /// The record decodes and its data matches the stored checksum.
    Intact {
        meta: ShardMeta,
        data: Vec<u8>,
    },
    /// Undecodable, or the data does not match the checksum.
    Damaged,
}

impl ShardStore {
    /// Records (or replaces) the registry entry of a chunk; durable on `Ok`.
    pub fn put_chunk(&self, storage_key: &Key256, entry: &ChunkEntry) -> Result<(), StoreError> {
        let value = entry.encode()?;
        let txn = begin_write(&self.db)?;
        txn.open_table(CHUNKS)?.insert(&storage_key.0, value.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Stores a shard and its chunk's registry entry together: durable on `Ok`, with one fsync.
    pub fn put_with_chunk(
        &self,
        key: &ShardKey,
        meta: &ShardMeta,
        data: &[u8],
        now_ms: u64,
        entry: &ChunkEntry,
    ) -> Result<(), StoreError> {
        let value = entry.encode()?;
        self.put_in(key, meta, data, now_ms, |txn| {
            txn.open_table(CHUNKS)?.insert(&key.storage_key.0, value.as_slice())?;
            Ok(())
        })
    }

    pub fn chunk(&self, storage_key: &Key256) -> Result<Option<ChunkEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(CHUNKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match table.get(&storage_key.0)? {
            Some(v) => Ok(Some(ChunkEntry::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Every registry entry. A damaged entry is skipped (and reported as its key with `None`) so
    /// one bad record cannot stop repair of the others.
    pub fn chunks(&self) -> Result<Vec<(Key256, Option<ChunkEntry>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(CHUNKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((Key256(*k.value()), ChunkEntry::decode(v.value()).ok()));
        }
        Ok(out)
    }

    pub fn remove_chunk(&self, storage_key: &Key256) -> Result<bool, StoreError> {
        let txn = begin_write(&self.db)?;
        let removed = txn.open_table(CHUNKS)?.remove(&storage_key.0)?.is_some();
        txn.commit()?;
        Ok(removed)
    }

    /// Shard keys in order, starting after `after`, at most `limit`: an audit walks the store in
    /// slices so it never holds a long transaction.
    pub fn shard_keys(
        &self,
        after: Option<ShardKey>,
        limit: usize,
    ) -> Result<Vec<ShardKey>, StoreError> {
        let txn = self.db.begin_read()?;
        let shards = txn.open_table(SHARDS)?;
        let mut out = Vec::new();
        let range = match after {
            Some(k) => shards.range::<&RawKey>((
                std::ops::Bound::Excluded(&k.raw()),
                std::ops::Bound::Unbounded,
            ))?,
            None => shards.range::<&RawKey>(..)?,
        };
        for entry in range.take(limit) {
            let (k, _) = entry?;
            let raw = k.value();
            let mut key = [0u8; 32];
            key.copy_from_slice(&raw[..32]);
            out.push(ShardKey { storage_key: Key256(key), index: raw[32] });
        }
        Ok(out)
    }

    /// Reads a shard whatever its expiry and checks it against its stored checksum.
    pub fn check_shard(&self, key: &ShardKey) -> Result<ShardCheck, StoreError> {
        let txn = self.db.begin_read()?;
        let shards = txn.open_table(SHARDS)?;
        let Some(value) = shards.get(&key.raw())? else {
            return Ok(ShardCheck::Missing);
        };
        let Ok((meta, data)) = record::decode(value.value()) else {
            return Ok(ShardCheck::Damaged);
        };
        if <[u8; 32]>::from(Sha256::digest(data)) != meta.checksum {
            return Ok(ShardCheck::Damaged);
        }
        Ok(ShardCheck::Intact { meta, data: data.to_vec() })
    }

    /// Drops one shard whoever owns it (the node's own decision: it is damaged or expired), even
    /// one whose record no longer decodes. Returns whether it was there.
    pub fn remove_shard(&self, key: &ShardKey) -> Result<bool, StoreError> {
        let raw = key.raw();
        let txn = begin_write(&self.db)?;
        let removed = {
            let mut tables = WriteTables::open(&txn)?;
            let Some(old) = tables.shards.remove(&raw)? else {
                return Ok(false);
            };
            let bytes = old.value().to_vec();
            drop(old);
            match record::decode(&bytes) {
                Ok((meta, _)) => {
                    tables.ttl.remove((meta.expires_at_ms, &raw))?;
                }
                Err(_) => {
                    // The expiry in the record is unreadable: find the index entry by key.
                    let mut stale = Vec::new();
                    for entry in tables.ttl.iter()? {
                        let (k, _) = entry?;
                        let (at, r) = k.value();
                        if *r == raw {
                            stale.push(at);
                        }
                    }
                    for at in stale {
                        tables.ttl.remove((at, &raw))?;
                    }
                }
            }
            let total = tables.bytes_used()?;
            tables.set_bytes_used(total.saturating_sub(bytes.len() as u64))?;
            true
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Deletes the expired shards of one chunk now, without waiting for GC; returns how many.
    pub fn purge_expired(&self, storage_key: &Key256, now_ms: u64) -> Result<u64, StoreError> {
        let expired: Vec<u8> = {
            let txn = self.db.begin_read()?;
            let shards = txn.open_table(SHARDS)?;
            let (first, last) = (raw_key(storage_key, 0), raw_key(storage_key, u8::MAX));
            let mut out = Vec::new();
            for entry in shards.range::<&RawKey>(&first..=&last)? {
                let (k, v) = entry?;
                if record::decode(v.value()).is_ok_and(|(m, _)| m.expires_at_ms <= now_ms) {
                    out.push(k.value()[32]);
                }
            }
            out
        };
        let mut removed = 0;
        for index in expired {
            removed +=
                u64::from(self.remove_shard(&ShardKey { storage_key: *storage_key, index })?);
        }
        Ok(removed)
    }

    /// Test hook shared with the registry tests: the raw TTL index length.
    #[cfg(test)]
    pub(crate) fn ttl_len(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(crate::TTL)?.len()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn shard_meta(data: &[u8], expires_at_ms: u64) -> ShardMeta {
        ShardMeta { owner: Key256([1; 32]), expires_at_ms, checksum: Sha256::digest(data).into() }
    }

    #[test]
    fn registry_entries_round_trip_and_bad_ones_are_refused() {
        let store = ShardStore::open_in_memory(1 << 20).unwrap();
        let key = Key256([9; 32]);
        assert_eq!(store.chunk(&key).unwrap(), None);
        let entry =
            ChunkEntry { expires_at_ms: NOW, certificate: vec![1; 700], record: vec![2; 300] };
        store.put_chunk(&key, &entry).unwrap();
        assert_eq!(store.chunk(&key).unwrap(), Some(entry.clone()));
        assert_eq!(store.chunks().unwrap(), vec![(key, Some(entry))]);
        let too_long = ChunkEntry { expires_at_ms: 0, certificate: vec![0; 5000], record: vec![] };
        assert!(matches!(store.put_chunk(&key, &too_long), Err(StoreError::Invalid(_))));
        assert!(store.remove_chunk(&key).unwrap());
        assert!(!store.remove_chunk(&key).unwrap());
        for bytes in [&[][..], &[0; 11][..], &[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..]]
        {
            assert!(ChunkEntry::decode(bytes).is_err());
        }
    }

    #[test]
    fn an_audit_finds_damage_and_removal_keeps_the_accounting_exact() {
        let store = ShardStore::open_in_memory(1 << 20).unwrap();
        let key = ShardKey { storage_key: Key256([3; 32]), index: 4 };
        let data = vec![7u8; 1000];
        store.put(&key, &shard_meta(&data, NOW + 10), &data, NOW).unwrap();
        assert!(matches!(store.check_shard(&key).unwrap(), ShardCheck::Intact { .. }));
        assert_eq!(store.shard_keys(None, 10).unwrap(), vec![key]);
        assert!(store.shard_keys(Some(key), 10).unwrap().is_empty());
        // Damage the data behind the store's back.
        let mut bytes = record::encode(&shard_meta(&data, NOW + 10), &data).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        store.put_raw(&key, &bytes).unwrap();
        assert_eq!(store.check_shard(&key).unwrap(), ShardCheck::Damaged);
        assert!(store.remove_shard(&key).unwrap());
        assert_eq!(store.check_shard(&key).unwrap(), ShardCheck::Missing);
        assert_eq!(store.usage(NOW).unwrap().bytes_used, 0);
        assert_eq!(store.ttl_len().unwrap(), 0);
        // An undecodable record is removed too, its index entry found by key.
        store.put(&key, &shard_meta(&data, NOW + 10), &data, NOW).unwrap();
        store.put_raw(&key, &[0xff; 3]).unwrap();
        assert_eq!(store.check_shard(&key).unwrap(), ShardCheck::Damaged);
        assert!(store.remove_shard(&key).unwrap());
        assert_eq!(store.ttl_len().unwrap(), 0);
    }

    #[test]
    fn purge_expired_removes_only_that_chunks_expired_shards() {
        let store = ShardStore::open_in_memory(1 << 20).unwrap();
        let data = vec![5u8; 100];
        let a = Key256([1; 32]);
        let b = Key256([2; 32]);
        for (k, i, exp) in [(a, 0, NOW + 5), (a, 1, NOW + 50), (b, 0, NOW + 5)] {
            store
                .put(&ShardKey { storage_key: k, index: i }, &shard_meta(&data, exp), &data, NOW)
                .unwrap();
        }
        assert_eq!(store.purge_expired(&a, NOW + 10).unwrap(), 1);
        assert_eq!(store.list(&a, 0).unwrap().len(), 1);
        assert_eq!(store.list(&b, 0).unwrap().len(), 1, "other chunks wait for GC");
    }
}
