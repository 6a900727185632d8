//! A Full Node's durable local state: the erasure-coded shards it holds for other users, each
//! with an owner, an absolute expiry and a checksum, under a byte quota.
//!
//! The store never reads the clock: every call that depends on time takes `now_ms` (Unix
//! milliseconds), so tests and devnets can drive expiry without sleeping.
//!
//! # Tables (one redb file)
//!
//! | table | key | value |
//! |---|---|---|
//! | `shards` | 33 bytes: `storage_key ‖ index` | the record: fixed header (version, owner, expiry, checksum, data length), then the data; see [`RECORD_OVERHEAD`] |
//! | `ttl` | `(expires_at_ms, storage_key ‖ index)` | `()` |
//! | `meta` | `"format"`, `"bytes_used"` | `u64` |
//! | `chunks` | storage key | the chunk registry repair uses; see `registry.rs` |
//!
//! Keys sort by storage key first, so the shards of one key are a single range (`list`,
//! `delete`). The `ttl` index sorts by expiry, so GC reads exactly the expired entries instead of
//! scanning every shard. Every shard has exactly one `ttl` entry, with the expiry of its record.
//!
//! # Accounting
//!
//! A shard is charged its whole record, `RECORD_OVERHEAD + data.len()` bytes, because that is
//! what it occupies and because charging data alone would let empty shards fill the disk for
//! free. `meta.bytes_used` is the sum over all stored records, updated in the same write
//! transaction as every change to `shards`, so it cannot drift; a store without it (older or
//! damaged) has it recomputed on open.
//!
//! Expired shards are never served, listed or counted by [`ShardStore::usage`], but occupy the
//! disk until [`ShardStore::gc`] runs; a `put` that would not fit collects them first, so expired
//! data never causes a refusal. [`ShardStore::has_capacity`] has no clock and so counts them.
//!
//! Every write commits with immediate durability (fsync) before returning `Ok`, so a shard a node
//! acknowledged survives a crash.

mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod mailbox;
mod record;
mod registry;

use std::path::Path;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition, WriteTransaction,
};
use sha2::{Digest, Sha256};
use zmesh_types::Key256;
use zmesh_types::constants::{MAX_ENCODED_SHARD_LEN, TOTAL_SHARDS};

pub use error::StoreError;
pub use mailbox::{Cursor, MailboxEntry, MailboxLimits, MailboxStore, QuotaLimit};
pub use record::RECORD_OVERHEAD;
pub use registry::{ChunkEntry, MAX_CERTIFICATE, MAX_RECORD, ShardCheck};

/// `storage_key ‖ index`.
type RawKey = [u8; 33];

const SHARDS: TableDefinition<&RawKey, &[u8]> = TableDefinition::new("shards");
const TTL: TableDefinition<(u64, &RawKey), ()> = TableDefinition::new("ttl");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_FORMAT: &str = "format";
const META_BYTES_USED: &str = "bytes_used";
const FORMAT: u64 = 1;

/// Where a shard lives: the chunk's storage key and the shard's position in its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    pub storage_key: Key256,
    /// `0..TOTAL_SHARDS`.
    pub index: u8,
}

impl ShardKey {
    fn raw(&self) -> RawKey {
        raw_key(&self.storage_key, self.index)
    }
}

/// What the store knows about a shard besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMeta {
    /// The address of the user who stored it; only they may replace or delete it while it lives.
    pub owner: Key256,
    /// Absolute expiry, Unix milliseconds; the shard is gone from this instant on.
    pub expires_at_ms: u64,
    /// SHA-256 of the data.
    pub checksum: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredShard {
    pub meta: ShardMeta,
    pub data: Vec<u8>,
}

/// Live figures at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes charged for live shards (records, see [`RECORD_OVERHEAD`]).
    pub bytes_used: u64,
    pub max_bytes: u64,
    /// Live shards.
    pub shards: u64,
    /// The earliest expiry still in the future: when the next GC has work to do.
    pub next_expiry_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcReport {
    pub removed: u64,
    pub bytes_freed: u64,
}

/// The shard store. Methods take `&self`; redb serialises writers and lets readers run
/// alongside them, so one store can be shared across tasks (it is `Send + Sync`).
#[derive(Debug)]
pub struct ShardStore {
    db: Database,
    max_bytes: u64,
}

impl ShardStore {
    /// Opens or creates the store at `path` with a quota of `max_bytes`. The quota is not stored:
    /// an operator may change it between runs, and a store above a lowered quota only refuses to
    /// grow.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, StoreError> {
        Self::init(Database::create(path)?, max_bytes)
    }

    /// A store in memory, for tests that need many fresh stores fast; the logic is the same.
    #[cfg(test)]
    fn open_in_memory(max_bytes: u64) -> Result<Self, StoreError> {
        let backend = redb::backends::InMemoryBackend::new();
        Self::init(Database::builder().create_with_backend(backend)?, max_bytes)
    }

    /// Creates missing tables, checks the format and restores a missing byte total.
    fn init(db: Database, max_bytes: u64) -> Result<Self, StoreError> {
        let txn = begin_write(&db)?;
        {
            // Opening a table in a write transaction creates it, so readers can rely on all three.
            let shards = txn.open_table(SHARDS)?;
            txn.open_table(TTL)?;
            let mut meta = txn.open_table(META)?;
            let format = meta.get(META_FORMAT)?.map(|v| v.value());
            match format {
                None => {
                    meta.insert(META_FORMAT, FORMAT)?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt(format!("unsupported store format {other}")));
                }
            }
            let has_total = meta.get(META_BYTES_USED)?.is_some();
            if !has_total {
                let mut total = 0u64;
                for entry in shards.iter()? {
                    let (_, value) = entry?;
                    total = total.saturating_add(value.value().len() as u64);
                }
                meta.insert(META_BYTES_USED, total)?;
            }
        }
        txn.commit()?;
        Ok(ShardStore { db, max_bytes })
    }

    /// Stores or replaces a shard; durable when it returns `Ok`.
    ///
    /// Refuses, in this order: a malformed shard (`Invalid`: index not below `TOTAL_SHARDS`, data
    /// longer than `MAX_ENCODED_SHARD_LEN` (holders store encoded shards: header and data), checksum not SHA-256 of the data); an expired one
    /// (`expires_at_ms <= now_ms`); one whose key holds a live shard of another owner
    /// (`OwnerMismatch`); one that does not fit the quota (`InsufficientStorage`, where a
    /// replacement needs only its growth). An expired shard under the key is simply replaced.
    pub fn put(
        &self,
        key: &ShardKey,
        meta: &ShardMeta,
        data: &[u8],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.put_in(key, meta, data, now_ms, |_| Ok(()))
    }

    /// [`put`](Self::put), with `also` writing more in the same transaction (one fsync).
    fn put_in(
        &self,
        key: &ShardKey,
        meta: &ShardMeta,
        data: &[u8],
        now_ms: u64,
        also: impl FnOnce(&WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if usize::from(key.index) >= TOTAL_SHARDS {
            return Err(StoreError::Invalid(format!(
                "shard index {} is not below {TOTAL_SHARDS}",
                key.index
            )));
        }
        if data.len() > MAX_ENCODED_SHARD_LEN {
            return Err(StoreError::Invalid(format!(
                "shard of {} bytes exceeds {MAX_ENCODED_SHARD_LEN}",
                data.len()
            )));
        }
        if <[u8; 32]>::from(Sha256::digest(data)) != meta.checksum {
            return Err(StoreError::Invalid("checksum does not match the data".into()));
        }
        if meta.expires_at_ms <= now_ms {
            return Err(StoreError::Expired);
        }
        let record = record::encode(meta, data)?;
        let new_size = record.len() as u64;
        let raw = key.raw();

        let txn = begin_write(&self.db)?;
        {
            let mut tables = WriteTables::open(&txn)?;
            let mut total = tables.bytes_used()?;
            let old = match tables.shards.get(&raw)? {
                Some(value) => {
                    let bytes = value.value();
                    let (old_meta, _) = record::decode(bytes)?;
                    Some((old_meta, bytes.len() as u64))
                }
                None => None,
            };
            let mut old_size = 0;
            if let Some((old_meta, size)) = old {
                if old_meta.expires_at_ms > now_ms {
                    if old_meta.owner != meta.owner {
                        return Err(StoreError::OwnerMismatch);
                    }
                    old_size = size;
                } else {
                    // Expired: collect it now, so its bytes and owner no longer count.
                    total = total.saturating_sub(size);
                }
                tables.shards.remove(&raw)?;
                tables.ttl.remove((old_meta.expires_at_ms, &raw))?;
            }
            if new_size > old_size {
                let needed = new_size - old_size;
                if total.saturating_add(needed) > self.max_bytes {
                    let report = tables.collect_expired(now_ms)?;
                    total = total.saturating_sub(report.bytes_freed);
                    let free = self.max_bytes.saturating_sub(total);
                    if needed > free {
                        return Err(StoreError::InsufficientStorage { needed, free });
                    }
                }
            }
            tables.shards.insert(&raw, record.as_slice())?;
            tables.ttl.insert((meta.expires_at_ms, &raw), ())?;
            tables.set_bytes_used(total - old_size + new_size)?;
        }
        also(&txn)?;
        txn.commit()?;
        Ok(())
    }

    /// The live shard under `key`, checked against its checksum. Never returns an expired shard,
    /// whether or not GC has run.
    pub fn get(&self, key: &ShardKey, now_ms: u64) -> Result<Option<StoredShard>, StoreError> {
        let txn = self.db.begin_read()?;
        let shards = txn.open_table(SHARDS)?;
        let Some(value) = shards.get(&key.raw())? else {
            return Ok(None);
        };
        let (meta, data) = record::decode(value.value())?;
        if meta.expires_at_ms <= now_ms {
            return Ok(None);
        }
        if <[u8; 32]>::from(Sha256::digest(data)) != meta.checksum {
            return Err(StoreError::Corrupt("stored data does not match its checksum".into()));
        }
        Ok(Some(StoredShard { meta, data: data.to_vec() }))
    }

    /// The live shards of `storage_key` this node holds, by index, with their meta. Data is not
    /// read past the header, so this is cheap enough for anti-entropy scans.
    pub fn list(
        &self,
        storage_key: &Key256,
        now_ms: u64,
    ) -> Result<Vec<(u8, ShardMeta)>, StoreError> {
        let txn = self.db.begin_read()?;
        let shards = txn.open_table(SHARDS)?;
        let (first, last) = (raw_key(storage_key, 0), raw_key(storage_key, u8::MAX));
        let mut out = Vec::new();
        for entry in shards.range::<&RawKey>(&first..=&last)? {
            let (key, value) = entry?;
            let (meta, _) = record::decode(value.value())?;
            if meta.expires_at_ms > now_ms {
                out.push((key.value()[32], meta));
            }
        }
        Ok(out)
    }

    /// Deletes every shard of `storage_key` owned by `owner` and returns how many. If a live one
    /// belongs to someone else, deletes nothing and returns `OwnerMismatch`. Expired shards of the
    /// key are collected too but not counted.
    pub fn delete(
        &self,
        storage_key: &Key256,
        owner: &Key256,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let txn = begin_write(&self.db)?;
        let removed = {
            let mut tables = WriteTables::open(&txn)?;
            let (first, last) = (raw_key(storage_key, 0), raw_key(storage_key, u8::MAX));
            let mut doomed = Vec::new();
            for entry in tables.shards.range::<&RawKey>(&first..=&last)? {
                let (key, value) = entry?;
                let bytes = value.value();
                let (meta, _) = record::decode(bytes)?;
                let live = meta.expires_at_ms > now_ms;
                if live && meta.owner != *owner {
                    return Err(StoreError::OwnerMismatch);
                }
                doomed.push((*key.value(), meta.expires_at_ms, bytes.len() as u64, live));
            }
            let mut freed = 0u64;
            let mut removed = 0u64;
            for (raw, expires_at_ms, size, live) in doomed {
                tables.shards.remove(&raw)?;
                tables.ttl.remove((expires_at_ms, &raw))?;
                freed += size;
                removed += u64::from(live);
            }
            let total = tables.bytes_used()?;
            tables.set_bytes_used(total.saturating_sub(freed))?;
            removed
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Removes every shard with `expires_at_ms <= now_ms`, reading only the expired entries of
    /// the TTL index.
    pub fn gc(&self, now_ms: u64) -> Result<GcReport, StoreError> {
        let txn = begin_write(&self.db)?;
        let report = {
            let mut tables = WriteTables::open(&txn)?;
            let report = tables.collect_expired(now_ms)?;
            if report.removed > 0 {
                let total = tables.bytes_used()?;
                tables.set_bytes_used(total.saturating_sub(report.bytes_freed))?;
            }
            report
        };
        txn.commit()?;
        Ok(report)
    }

    /// Live figures at `now_ms`: expired shards awaiting GC are left out (found through the TTL
    /// index, so this costs only as much as there is garbage).
    pub fn usage(&self, now_ms: u64) -> Result<Usage, StoreError> {
        let txn = self.db.begin_read()?;
        let mut bytes_used = read_bytes_used(&txn)?;
        let shards = txn.open_table(SHARDS)?;
        let ttl = txn.open_table(TTL)?;
        let mut count = shards.len()?;
        for entry in ttl.range(..=(now_ms, &[u8::MAX; 33]))? {
            let (key, _) = entry?;
            let (_, raw) = key.value();
            if let Some(value) = shards.get(raw)? {
                bytes_used = bytes_used.saturating_sub(value.value().len() as u64);
                count = count.saturating_sub(1);
            }
        }
        let next_expiry_ms = match now_ms.checked_add(1) {
            Some(from) => match ttl.range((from, &[0u8; 33])..)?.next() {
                Some(entry) => Some(entry?.0.value().0),
                None => None,
            },
            None => None,
        };
        Ok(Usage { bytes_used, max_bytes: self.max_bytes, shards: count, next_expiry_ms })
    }

    /// Whether a new shard of `bytes` data bytes would fit (its [`RECORD_OVERHEAD`] included).
    /// Nodes stop advertising capacity when this is false. It has no clock, so expired shards
    /// not yet collected still count; if the store cannot be read it answers `false`.
    pub fn has_capacity(&self, bytes: u64) -> bool {
        let Ok(txn) = self.db.begin_read() else {
            return false;
        };
        let Ok(total) = read_bytes_used(&txn) else {
            return false;
        };
        bytes.saturating_add(RECORD_OVERHEAD) <= self.max_bytes.saturating_sub(total)
    }

    /// Test hook: writes raw bytes as the record under `key`, bypassing every check.
    #[cfg(test)]
    fn put_raw(&self, key: &ShardKey, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = begin_write(&self.db)?;
        txn.open_table(SHARDS)?.insert(&key.raw(), bytes)?;
        txn.commit()?;
        Ok(())
    }
}

fn raw_key(storage_key: &Key256, index: u8) -> RawKey {
    let mut raw = [0u8; 33];
    raw[..32].copy_from_slice(&storage_key.0);
    raw[32] = index;
    raw
}

/// A write transaction that fsyncs on commit. Immediate is redb's default; it is set here so the
/// guarantee `put` documents does not hinge on a default.
fn begin_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    Ok(txn)
}

fn read_bytes_used(txn: &ReadTransaction) -> Result<u64, StoreError> {
    let meta = txn.open_table(META)?;
    let total = meta.get(META_BYTES_USED)?.map(|v| v.value());
    total.ok_or_else(|| StoreError::Corrupt("byte total is missing".into()))
}

/// The three tables open in one write transaction.
struct WriteTables<'txn> {
    shards: Table<'txn, &'static RawKey, &'static [u8]>,
    ttl: Table<'txn, (u64, &'static RawKey), ()>,
    meta: Table<'txn, &'static str, u64>,
}

impl<'txn> WriteTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(WriteTables {
            shards: txn.open_table(SHARDS)?,
            ttl: txn.open_table(TTL)?,
            meta: txn.open_table(META)?,
        })
    }

    fn bytes_used(&self) -> Result<u64, StoreError> {
        let total = self.meta.get(META_BYTES_USED)?.map(|v| v.value());
        total.ok_or_else(|| StoreError::Corrupt("byte total is missing".into()))
    }

    fn set_bytes_used(&mut self, total: u64) -> Result<(), StoreError> {
        self.meta.insert(META_BYTES_USED, total)?;
        Ok(())
    }

    /// Removes every shard expiring at or before `now_ms` and its index entry. Sizes come from
    /// the stored value's length, so even an undecodable record is collected. The caller updates
    /// the byte total.
    fn collect_expired(&mut self, now_ms: u64) -> Result<GcReport, StoreError> {
        let mut expired = Vec::new();
        for entry in self.ttl.range(..=(now_ms, &[u8::MAX; 33]))? {
            let (key, _) = entry?;
            let (expires_at_ms, raw) = key.value();
            expired.push((expires_at_ms, *raw));
        }
        let mut report = GcReport::default();
        for (expires_at_ms, raw) in expired {
            self.ttl.remove((expires_at_ms, &raw))?;
            if let Some(value) = self.shards.remove(&raw)? {
                report.removed += 1;
                report.bytes_freed += value.value().len() as u64;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
