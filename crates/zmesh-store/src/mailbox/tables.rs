//! The mailbox tables open in one write transaction, and the changes that keep them and the
//! counters consistent: every insert and removal goes through here.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::codec::{self, EntryKey, IdKey, MailboxKey};
use super::{MailboxGc, MailboxUsage};
use crate::StoreError;

pub(super) const ENTRIES: TableDefinition<&EntryKey, &[u8]> =
    TableDefinition::new("mailbox_entries");
pub(super) const IDS: TableDefinition<&IdKey, u64> = TableDefinition::new("mailbox_ids");
pub(super) const TTL: TableDefinition<(u64, &EntryKey), ()> = TableDefinition::new("mailbox_ttl");
pub(super) const USAGE: TableDefinition<&MailboxKey, (u64, u64)> =
    TableDefinition::new("mailbox_usage");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("mailbox_meta");

pub(super) const META_FORMAT: &str = "format";
pub(super) const META_TOTAL_BYTES: &str = "total_bytes";
pub(super) const FORMAT: u64 = 1;

/// How many expired index rows GC reads before removing them, so collecting a large backlog does
/// not hold it all in memory at once.
const GC_BATCH: usize = 1024;

/// What a removal took away.
pub(super) struct Removed {
    /// `None` when the value could not be decoded (it is removed all the same).
    pub expires_at_ms: Option<u64>,
    pub size: u64,
}

pub(super) struct Tables<'txn> {
    pub entries: Table<'txn, &'static EntryKey, &'static [u8]>,
    pub ids: Table<'txn, &'static IdKey, u64>,
    pub ttl: Table<'txn, (u64, &'static EntryKey), ()>,
    pub usage: Table<'txn, &'static MailboxKey, (u64, u64)>,
    pub meta: Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            entries: txn.open_table(ENTRIES)?,
            ids: txn.open_table(IDS)?,
            ttl: txn.open_table(TTL)?,
            usage: txn.open_table(USAGE)?,
            meta: txn.open_table(META)?,
        })
    }

    pub fn total_bytes(&self) -> Result<u64, StoreError> {
        let total = self.meta.get(META_TOTAL_BYTES)?.map(|v| v.value());
        total.ok_or_else(|| StoreError::Corrupt("mailbox byte total is missing".into()))
    }

    /// The counters of one mailbox, expired entries not yet collected included.
    pub fn mailbox_usage(&self, mailbox: &MailboxKey) -> Result<MailboxUsage, StoreError> {
        let counts = self.usage.get(mailbox)?.map(|v| v.value());
        let (messages, bytes) = counts.unwrap_or((0, 0));
        Ok(MailboxUsage { messages, bytes })
    }

    /// Adds or takes one entry of `size` bytes from the counters of `mailbox` and the total. A
    /// mailbox whose last entry goes loses its row, so `mailbox_usage` lists non-empty mailboxes.
    fn account(&mut self, mailbox: &MailboxKey, size: u64, add: bool) -> Result<(), StoreError> {
        let MailboxUsage { messages, bytes } = self.mailbox_usage(mailbox)?;
        let total = self.total_bytes()?;
        let (messages, bytes, total) = if add {
            (messages.saturating_add(1), bytes.saturating_add(size), total.saturating_add(size))
        } else {
            (messages.saturating_sub(1), bytes.saturating_sub(size), total.saturating_sub(size))
        };
        if messages == 0 {
            self.usage.remove(mailbox)?;
        } else {
            self.usage.insert(mailbox, (messages, bytes))?;
        }
        self.meta.insert(META_TOTAL_BYTES, total)?;
        Ok(())
    }

    /// Stores an encoded entry with its id and TTL rows and charges it. The caller has checked
    /// that the id is not present and that the entry fits.
    pub fn insert(
        &mut self,
        key: &EntryKey,
        expires_at_ms: u64,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let (mailbox, cursor) = codec::split_key(key);
        self.entries.insert(key, value)?;
        self.ids.insert(&codec::id_key(&mailbox, &cursor.id), cursor.order)?;
        self.ttl.insert((expires_at_ms, key), ())?;
        self.account(&mailbox, codec::charged(value.len()), true)
    }

    /// Removes the entry under `key` with its id and TTL rows and uncharges it; `None` if there
    /// is no such entry. An undecodable value is removed too (its TTL row, which cannot be found
    /// without the expiry, is dropped later by GC).
    pub fn remove(&mut self, key: &EntryKey) -> Result<Option<Removed>, StoreError> {
        let (size, expires_at_ms) = match self.entries.remove(key)? {
            Some(value) => {
                let value = value.value();
                (codec::charged(value.len()), codec::expires_at(value).ok())
            }
            None => return Ok(None),
        };
        let (mailbox, cursor) = codec::split_key(key);
        self.ids.remove(&codec::id_key(&mailbox, &cursor.id))?;
        if let Some(expires_at_ms) = expires_at_ms {
            self.ttl.remove((expires_at_ms, key))?;
        }
        self.account(&mailbox, size, false)?;
        Ok(Some(Removed { expires_at_ms, size }))
    }

    /// Removes every entry expiring at or before `now_ms`, reading only the expired part of the
    /// TTL index. An index row whose entry is gone or carries another expiry is dropped alone; an
    /// undecodable entry is collected by its row. Also says whether any row was touched.
    pub fn collect_expired(&mut self, now_ms: u64) -> Result<(MailboxGc, bool), StoreError> {
        let mut report = MailboxGc::default();
        let mut touched = false;
        loop {
            let mut batch = Vec::with_capacity(GC_BATCH);
            for row in self.ttl.range(..=(now_ms, &[u8::MAX; codec::ENTRY_KEY_LEN]))? {
                let (key, _) = row?;
                let (expires_at_ms, raw) = key.value();
                batch.push((expires_at_ms, *raw));
                if batch.len() == GC_BATCH {
                    break;
                }
            }
            let done = batch.len() < GC_BATCH;
            touched |= !batch.is_empty();
            for (expires_at_ms, raw) in batch {
                self.ttl.remove((expires_at_ms, &raw))?;
                let matches = match self.entries.get(&raw)? {
                    Some(value) => {
                        codec::expires_at(value.value()).map_or(true, |e| e == expires_at_ms)
                    }
                    None => false,
                };
                if matches && let Some(removed) = self.remove(&raw)? {
                    report.removed += 1;
                    report.bytes_freed += removed.size;
                }
            }
            if done {
                return Ok((report, touched));
            }
        }
    }
}

/// Rebuilds `mailbox_usage` and the byte total from the entries.
pub(super) fn recount(t: &mut Tables<'_>) -> Result<(), StoreError> {
    t.usage.retain(|_, _| false)?;
    let mut total = 0u64;
    // Entries of one mailbox are adjacent, so one running row at a time suffices.
    let mut rows: Vec<(MailboxKey, u64, u64)> = Vec::new();
    for row in t.entries.iter()? {
        let (key, value) = row?;
        let (mailbox, _) = codec::split_key(key.value());
        let size = codec::charged(value.value().len());
        total = total.saturating_add(size);
        match rows.last_mut() {
            Some((m, messages, bytes)) if *m == mailbox => {
                *messages += 1;
                *bytes = bytes.saturating_add(size);
            }
            _ => rows.push((mailbox, 1, size)),
        }
    }
    for (mailbox, messages, bytes) in rows {
        t.usage.insert(&mailbox, (messages, bytes))?;
    }
    t.meta.insert(META_TOTAL_BYTES, total)?;
    Ok(())
}
