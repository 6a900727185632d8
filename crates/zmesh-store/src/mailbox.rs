//! The durable offline mailboxes of a Full Node: sealed messages for recipients who are offline,
//! kept until they are acknowledged or expire, under per-mailbox and total quotas.
//!
//! A mailbox is named by its mailbox key ([`Key256`]) and replicated on the nodes nearest that
//! key. Each entry carries a message id chosen at random by the sender and an `order`, a Unix
//! millisecond timestamp assigned once by the relay that accepted the message and carried
//! unchanged to every replica. Entries are sorted by `(order, id)`, and a [`Cursor`] is exactly
//! that pair. Because both halves are the same on every replica, a cursor taken from one replica
//! means the same position on any other: a client that read up to a cursor on one relay can
//! reconnect to any relay holding the mailbox and continue from there, in order, without gaps or
//! repeats. Ties in `order` are broken by the id, which every replica compares alike.
//!
//! Like the shard store, this store never reads the clock: every call that depends on time takes
//! `now_ms`. It uses its own redb file (the node opens it at `<dir>/mailboxes.redb`).
//!
//! # Tables (one redb file)
//!
//! | table | key | value |
//! |---|---|---|
//! | `mailbox_entries` | 56 bytes: `mailbox ‖ order (big-endian) ‖ id` | `version ‖ expires_at_ms ‖ body length ‖ body`, see `codec` |
//! | `mailbox_ids` | 48 bytes: `mailbox ‖ id` | `order`: finds an entry by id (dedupe, reconciliation) |
//! | `mailbox_ttl` | `(expires_at_ms, entry key)` | `()` |
//! | `mailbox_usage` | 32 bytes: `mailbox` | `(messages, bytes)`; a row per non-empty mailbox |
//! | `mailbox_meta` | `"format"`, `"total_bytes"` | `u64` |
//!
//! Entry keys sort by mailbox, then order, then id, so a mailbox is one range already in cursor
//! order: reads and acks are range scans. Every entry has exactly one `mailbox_ids` row and one
//! `mailbox_ttl` row. The TTL index sorts by expiry, so GC reads exactly the expired entries.
//!
//! # Accounting
//!
//! An entry is charged [`MAILBOX_ENTRY_OVERHEAD`] plus its body: the overhead is what its keys
//! and header take in the three tables, so a flood of empty messages still runs into the quota.
//! `mailbox_usage` and `meta.total_bytes` change in the same write transaction as the entries
//! they count, so they cannot drift; a store without the total (older or damaged) has both
//! recomputed on open. The message total is the length of `mailbox_entries` and the mailbox
//! count that of `mailbox_usage`, which redb keeps without a scan.
//!
//! Expired entries are never read, listed or counted by [`MailboxStore::usage`], but occupy the
//! disk until [`MailboxStore::gc`] runs; an append that would not fit collects them first, so
//! expired entries never cause a refusal. [`MailboxStore::totals`] has no clock and so counts
//! them.
//!
//! # Acknowledgements and replicas
//!
//! An ack removes the entries up to a cursor on this replica only. If anti-entropy later copies
//! an acknowledged entry back from a replica that missed the ack, it is harmless: it sorts at or
//! before the client's cursor, so no read after that cursor returns it, and the next ack or its
//! expiry removes it.
//!
//! Every write commits with immediate durability (fsync) before returning `Ok`, so a message a
//! relay acknowledged to its sender survives a crash.

mod codec;
mod read;
mod tables;

use std::fmt;
use std::path::Path;

use redb::{Database, Durability, ReadableTable, WriteTransaction};
use zmesh_types::Key256;

use crate::StoreError;
pub use codec::MAILBOX_ENTRY_OVERHEAD;
use codec::{EntryKey, MailboxKey};
use tables::{META_FORMAT, META_TOTAL_BYTES, Tables};

/// Preallocation cap for result vectors, so a huge `max_messages` or `limit` from a caller does
/// not allocate before there is anything to put in it.
const PREALLOC_MAX: usize = 256;

/// A position in a mailbox: entries sort by `order`, then by `id`. Valid on every replica, see
/// the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor {
    /// Declared first so the derived `Ord` compares it first.
    pub order: u64,
    pub id: [u8; 16],
}

/// One sealed message in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    /// Message id, random, chosen by the sender; unique within a mailbox (appends dedupe on it).
    pub id: [u8; 16],
    /// Ordering timestamp, Unix ms, assigned once by the accepting relay, the same on every
    /// replica.
    pub order: u64,
    /// Absolute expiry, Unix ms; the entry is gone from this instant on.
    pub expires_at_ms: u64,
    /// Sealed ciphertext; the store never looks inside.
    pub body: Vec<u8>,
}

impl MailboxEntry {
    pub fn cursor(&self) -> Cursor {
        Cursor { order: self.order, id: self.id }
    }
}

/// The limits an append is checked against. Not stored: an operator may change them between
/// runs, and a mailbox above a lowered limit only refuses to grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    pub max_messages_per_mailbox: u64,
    /// Charged bytes (body plus [`MAILBOX_ENTRY_OVERHEAD`] per entry).
    pub max_bytes_per_mailbox: u64,
    /// Charged bytes over all mailboxes.
    pub max_total_bytes: u64,
    /// Longest body accepted, in bytes.
    pub max_body_len: u64,
}

impl Default for MailboxLimits {
    /// 10 000 messages and 64 MiB per mailbox, 1 GiB in all, 64 KiB per body.
    fn default() -> Self {
        MailboxLimits {
            max_messages_per_mailbox: 10_000,
            max_bytes_per_mailbox: 64 << 20,
            max_total_bytes: 1 << 30,
            max_body_len: 64 << 10,
        }
    }
}

/// Which limit refused an append. A full mailbox is full on every replica alike; a full store is
/// this node's problem, and another replica may still take the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaLimit {
    MailboxMessages,
    MailboxBytes,
    TotalBytes,
}

impl fmt::Display for QuotaLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaLimit::MailboxMessages => "messages per mailbox",
            QuotaLimit::MailboxBytes => "bytes per mailbox",
            QuotaLimit::TotalBytes => "total mailbox bytes",
        })
    }
}

/// The outcome of an accepted append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The mailbox already held a live entry with this id; nothing changed.
    pub duplicate: bool,
    /// Where the stored entry sits (for a duplicate, the one stored first).
    pub cursor: Cursor,
}

/// Entries after a cursor, in cursor order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    pub entries: Vec<MailboxEntry>,
    /// Live entries remain after this batch.
    pub has_more: bool,
    /// Where the next read starts: the last entry's cursor, or the cursor read after when the
    /// batch is empty (`None` if that was the start).
    pub next_cursor: Option<Cursor>,
}

/// Live figures of one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxUsage {
    pub messages: u64,
    /// Charged bytes, see [`MAILBOX_ENTRY_OVERHEAD`].
    pub bytes: u64,
}

/// Figures of the whole store, expired entries not yet collected included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxTotals {
    pub messages: u64,
    pub bytes: u64,
    /// Mailboxes holding at least one entry.
    pub mailboxes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxGc {
    pub removed: u64,
    pub bytes_freed: u64,
}

/// The mailbox store. Methods take `&self`; redb serialises writers and lets readers run
/// alongside them, so one store can be shared across tasks (it is `Send + Sync`).
#[derive(Debug)]
pub struct MailboxStore {
    db: Database,
    limits: MailboxLimits,
}

impl MailboxStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path, limits: MailboxLimits) -> Result<Self, StoreError> {
        Self::init(Database::create(path)?, limits)
    }

    /// A store in memory, for tests that need many fresh stores fast; the logic is the same.
    #[cfg(test)]
    fn open_in_memory(limits: MailboxLimits) -> Result<Self, StoreError> {
        let backend = redb::backends::InMemoryBackend::new();
        Self::init(Database::builder().create_with_backend(backend)?, limits)
    }

    /// Creates missing tables, checks the format and restores missing counters.
    fn init(db: Database, limits: MailboxLimits) -> Result<Self, StoreError> {
        let txn = begin_write(&db)?;
        {
            // Opening every table in a write transaction creates it, so readers can rely on them.
            let mut t = Tables::open(&txn)?;
            let format = t.meta.get(META_FORMAT)?.map(|v| v.value());
            match format {
                None => {
                    t.meta.insert(META_FORMAT, tables::FORMAT)?;
                }
                Some(tables::FORMAT) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt(format!(
                        "unsupported mailbox store format {other}"
                    )));
                }
            }
            let has_total = t.meta.get(META_TOTAL_BYTES)?.is_some();
            if !has_total {
                tables::recount(&mut t)?;
            }
        }
        txn.commit()?;
        Ok(MailboxStore { db, limits })
    }

    pub fn limits(&self) -> MailboxLimits {
        self.limits
    }

    /// Stores `entry` in `mailbox`; durable when it returns `Ok`.
    ///
    /// Idempotent by message id: if the mailbox holds a live entry with this id, returns
    /// `duplicate: true` and changes nothing (an expired one is replaced). Refuses, in this order:
    /// a body longer than `max_body_len` (`BodyTooLarge`); an expired entry
    /// (`expires_at_ms <= now_ms`, `Expired`); an entry that would pass a limit
    /// (`QuotaExceeded`, checked only after collecting every expired entry).
    pub fn append(
        &self,
        mailbox: &Key256,
        entry: &MailboxEntry,
        now_ms: u64,
    ) -> Result<Appended, StoreError> {
        let len = entry.body.len() as u64;
        if len > self.limits.max_body_len {
            return Err(StoreError::BodyTooLarge { len, max: self.limits.max_body_len });
        }
        if entry.expires_at_ms <= now_ms {
            return Err(StoreError::Expired);
        }
        let value = codec::encode(entry.expires_at_ms, &entry.body)?;
        let size = codec::charged(value.len());
        let cursor = entry.cursor();
        let key = codec::entry_key(mailbox, &cursor);

        let txn = begin_write(&self.db)?;
        let duplicate = {
            let mut t = Tables::open(&txn)?;
            let id_key = codec::id_key(&mailbox.0, &entry.id);
            let stored_order = t.ids.get(&id_key)?.map(|v| v.value());
            let mut duplicate = None;
            if let Some(order) = stored_order {
                let stored = Cursor { order, id: entry.id };
                let old_key = codec::entry_key(mailbox, &stored);
                let live = match t.entries.get(&old_key)? {
                    // An undecodable entry counts as live: better a refused copy than a lost one.
                    Some(v) => codec::expires_at(v.value()).map_or(true, |e| e > now_ms),
                    None => false,
                };
                if live {
                    duplicate = Some(stored);
                } else {
                    // Expired, or an id row without its entry: clear both and store afresh.
                    t.remove(&old_key)?;
                    t.ids.remove(&id_key)?;
                }
            }
            if duplicate.is_none() {
                self.check_quota(&mut t, &mailbox.0, size, now_ms)?;
                t.insert(&key, entry.expires_at_ms, &value)?;
            }
            duplicate
        };
        finish(txn, duplicate.is_none())?;
        Ok(match duplicate {
            Some(stored) => Appended { duplicate: true, cursor: stored },
            None => Appended { duplicate: false, cursor },
        })
    }

    /// Refuses an entry of `size` charged bytes that would pass a limit, after collecting the
    /// expired entries if it would.
    fn check_quota(
        &self,
        t: &mut Tables<'_>,
        mailbox: &MailboxKey,
        size: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let l = &self.limits;
        let fits = |usage: MailboxUsage, total: u64| {
            if usage.messages.saturating_add(1) > l.max_messages_per_mailbox {
                Err((QuotaLimit::MailboxMessages, usage.messages, 1, l.max_messages_per_mailbox))
            } else if usage.bytes.saturating_add(size) > l.max_bytes_per_mailbox {
                Err((QuotaLimit::MailboxBytes, usage.bytes, size, l.max_bytes_per_mailbox))
            } else if total.saturating_add(size) > l.max_total_bytes {
                Err((QuotaLimit::TotalBytes, total, size, l.max_total_bytes))
            } else {
                Ok(())
            }
        };
        if fits(t.mailbox_usage(mailbox)?, t.total_bytes()?).is_ok() {
            return Ok(());
        }
        t.collect_expired(now_ms)?;
        fits(t.mailbox_usage(mailbox)?, t.total_bytes()?).map_err(|(limit, used, needed, max)| {
            StoreError::QuotaExceeded { limit, used, needed, max }
        })
    }

    /// Deletes every entry of `mailbox` at or before `upto` (delivered) and returns how many live
    /// ones went; expired ones in that range are collected too but not counted. Durable on `Ok`.
    pub fn ack(&self, mailbox: &Key256, upto: Cursor, now_ms: u64) -> Result<u64, StoreError> {
        let (first, _) = codec::mailbox_bounds(mailbox);
        let last = codec::entry_key(mailbox, &upto);
        self.remove_keys(Some(now_ms), |t| {
            let mut keys = Vec::new();
            for row in t.entries.range::<&EntryKey>(&first..=&last)? {
                keys.push(*row?.0.value());
            }
            Ok(keys)
        })
    }

    /// Deletes the entries of `mailbox` with these message ids, wherever they sort, and returns
    /// how many were there (expired or not). For reconciliation between replicas. Durable on `Ok`.
    pub fn remove_ids(&self, mailbox: &Key256, ids: &[[u8; 16]]) -> Result<u64, StoreError> {
        self.remove_keys(None, |t| {
            let mut keys = Vec::with_capacity(ids.len().min(PREALLOC_MAX));
            for id in ids {
                let order = t.ids.get(&codec::id_key(&mailbox.0, id))?.map(|v| v.value());
                if let Some(order) = order {
                    keys.push(codec::entry_key(mailbox, &Cursor { order, id: *id }));
                }
            }
            Ok(keys)
        })
    }

    /// Removes the entries `select` names in one durable transaction; counts those live at
    /// `now_ms`, or all with `None`. Commits only if something changed.
    fn remove_keys(
        &self,
        now_ms: Option<u64>,
        select: impl FnOnce(&Tables<'_>) -> Result<Vec<EntryKey>, StoreError>,
    ) -> Result<u64, StoreError> {
        let txn = begin_write(&self.db)?;
        let (removed, changed) = {
            let mut t = Tables::open(&txn)?;
            let keys = select(&t)?;
            let mut counted = 0u64;
            for key in &keys {
                if let Some(removed) = t.remove(key)? {
                    let live = match (now_ms, removed.expires_at_ms) {
                        (Some(now_ms), Some(expires_at_ms)) => expires_at_ms > now_ms,
                        _ => true,
                    };
                    counted += u64::from(live);
                }
            }
            (counted, !keys.is_empty())
        };
        finish(txn, changed)?;
        Ok(removed)
    }

    /// Removes every entry with `expires_at_ms <= now_ms`, reading only the expired entries of
    /// the TTL index. Durable on `Ok`.
    pub fn gc(&self, now_ms: u64) -> Result<MailboxGc, StoreError> {
        let txn = begin_write(&self.db)?;
        let (report, touched) = Tables::open(&txn)?.collect_expired(now_ms)?;
        finish(txn, touched)?;
        Ok(report)
    }
}

/// A write transaction that fsyncs on commit. Immediate is redb's default; it is set here so the
/// guarantee the writes document does not hinge on a default.
fn begin_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    Ok(txn)
}

/// Commits if the transaction changed something, else aborts it and spares the fsync.
fn finish(txn: WriteTransaction, changed: bool) -> Result<(), StoreError> {
    if changed {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(())
}

/// Decodes a stored entry value (expiry and body): [`crate::fuzzing`] only.
pub(crate) fn decode_entry_value(value: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    codec::decode(value)
}

/// Encodes an entry value: [`crate::fuzzing`] only.
pub(crate) fn encode_entry_value(expires_at_ms: u64, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    codec::encode(expires_at_ms, body)
}

#[cfg(test)]
#[path = "mailbox_tests.rs"]
mod tests;

#[cfg(test)]
mod model_tests;
