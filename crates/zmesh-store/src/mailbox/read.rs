//! The read side of the mailbox store: nothing here writes.

use std::ops::Bound;

use redb::{ReadTransaction, ReadableDatabase, ReadableTableMetadata};
use zmesh_types::Key256;

use super::codec::{self, EntryKey};
use super::tables::{ENTRIES, IDS, META, META_TOTAL_BYTES, TTL, USAGE};
use super::{
    Cursor, MailboxEntry, MailboxStore, MailboxTotals, MailboxUsage, PREALLOC_MAX, ReadBatch,
};
use crate::StoreError;

impl MailboxStore {
    /// Up to `max_messages` live entries strictly after `after` (from the start if `None`), in
    /// cursor order, stopping before the body bytes would pass `max_bytes`. A batch holds at
    /// least one entry when there is one, however large (`max_messages` 0 counts as 1). A damaged
    /// entry in the way is a `Corrupt` error, never skipped in silence.
    pub fn read(
        &self,
        mailbox: &Key256,
        after: Option<Cursor>,
        max_messages: usize,
        max_bytes: u64,
        now_ms: u64,
    ) -> Result<ReadBatch, StoreError> {
        let max_messages = max_messages.max(1);
        let txn = self.db.begin_read()?;
        let entries_table = txn.open_table(ENTRIES)?;
        let (lower, last) = after_bounds(mailbox, after);
        let mut entries = Vec::with_capacity(max_messages.min(PREALLOC_MAX));
        let mut bytes = 0u64;
        let mut has_more = false;
        for row in entries_table.range::<&EntryKey>((lower.as_ref(), Bound::Included(&last)))? {
            let (key, value) = row?;
            let (expires_at_ms, body) = codec::decode(value.value())?;
            if expires_at_ms <= now_ms {
                continue;
            }
            let len = body.len() as u64;
            if entries.len() >= max_messages
                || (!entries.is_empty() && bytes.saturating_add(len) > max_bytes)
            {
                has_more = true;
                break;
            }
            bytes = bytes.saturating_add(len);
            let (_, cursor) = codec::split_key(key.value());
            entries.push(MailboxEntry {
                id: cursor.id,
                order: cursor.order,
                expires_at_ms,
                body: body.to_vec(),
            });
        }
        let next_cursor = entries.last().map(MailboxEntry::cursor).or(after);
        Ok(ReadBatch { entries, has_more, next_cursor })
    }

    /// The live entry with message id `id`, if the mailbox holds one.
    pub fn get(
        &self,
        mailbox: &Key256,
        id: &[u8; 16],
        now_ms: u64,
    ) -> Result<Option<MailboxEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let ids = txn.open_table(IDS)?;
        let Some(order) = ids.get(&codec::id_key(&mailbox.0, id))?.map(|v| v.value()) else {
            return Ok(None);
        };
        let entries = txn.open_table(ENTRIES)?;
        let key = codec::entry_key(mailbox, &Cursor { order, id: *id });
        let Some(value) = entries.get(&key)? else {
            return Ok(None);
        };
        let (expires_at_ms, body) = codec::decode(value.value())?;
        if expires_at_ms <= now_ms {
            return Ok(None);
        }
        Ok(Some(MailboxEntry { id: *id, order, expires_at_ms, body: body.to_vec() }))
    }

    /// The cursors of up to `limit` live entries after `after`, in order: what replicas compare
    /// to find the entries one holds and another lacks. Reads only value headers.
    pub fn ids_after(
        &self,
        mailbox: &Key256,
        after: Option<Cursor>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Cursor>, StoreError> {
        let txn = self.db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let (lower, last) = after_bounds(mailbox, after);
        let mut out = Vec::with_capacity(limit.min(PREALLOC_MAX));
        for row in entries.range::<&EntryKey>((lower.as_ref(), Bound::Included(&last)))? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = row?;
            if codec::expires_at(value.value())? > now_ms {
                out.push(codec::split_key(key.value()).1);
            }
        }
        Ok(out)
    }

    /// Live figures of `mailbox` at `now_ms`: expired entries awaiting GC are left out (found
    /// through the TTL index, so this costs only as much as there is garbage).
    pub fn usage(&self, mailbox: &Key256, now_ms: u64) -> Result<MailboxUsage, StoreError> {
        let txn = self.db.begin_read()?;
        let counts = txn.open_table(USAGE)?.get(&mailbox.0)?.map(|v| v.value());
        let (mut messages, mut bytes) = counts.unwrap_or((0, 0));
        let entries = txn.open_table(ENTRIES)?;
        let ttl = txn.open_table(TTL)?;
        for row in ttl.range(..=(now_ms, &[u8::MAX; codec::ENTRY_KEY_LEN]))? {
            let (key, _) = row?;
            let (expires_at_ms, raw) = key.value();
            if raw[..codec::MAILBOX_LEN] != mailbox.0 {
                continue;
            }
            if let Some(value) = entries.get(raw)? {
                let value = value.value();
                if codec::expires_at(value).map_or(true, |e| e == expires_at_ms) {
                    messages = messages.saturating_sub(1);
                    bytes = bytes.saturating_sub(codec::charged(value.len()));
                }
            }
        }
        Ok(MailboxUsage { messages, bytes })
    }

    /// Figures of the whole store without a clock: expired entries not yet collected count.
    pub fn totals(&self) -> Result<MailboxTotals, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(MailboxTotals {
            messages: txn.open_table(ENTRIES)?.len()?,
            bytes: read_total_bytes(&txn)?,
            mailboxes: txn.open_table(USAGE)?.len()?,
        })
    }
}

/// The range bounds of the entries of `mailbox` after `after`.
fn after_bounds(mailbox: &Key256, after: Option<Cursor>) -> (Bound<EntryKey>, EntryKey) {
    let (first, last) = codec::mailbox_bounds(mailbox);
    let lower = match after {
        Some(cursor) => Bound::Excluded(codec::entry_key(mailbox, &cursor)),
        None => Bound::Included(first),
    };
    (lower, last)
}

fn read_total_bytes(txn: &ReadTransaction) -> Result<u64, StoreError> {
    let total = txn.open_table(META)?.get(META_TOTAL_BYTES)?.map(|v| v.value());
    total.ok_or_else(|| StoreError::Corrupt("mailbox byte total is missing".into()))
}
