use std::collections::BTreeMap;

use tempfile::TempDir;

use super::tables::{ENTRIES, IDS, META, TTL, USAGE};
use super::*;
use redb::{ReadableDatabase, ReadableTableMetadata};

const T0: u64 = 1_700_000_000_000;
const DAY: u64 = 24 * 3600 * 1000;
const OVERHEAD: u64 = MAILBOX_ENTRY_OVERHEAD;

fn mb(n: u8) -> Key256 {
    Key256([0x50 | n; 32])
}

/// A body that names its entry, so a mixed-up read shows.
pub(super) fn entry(id: [u8; 16], order: u64, expires_at_ms: u64, len: usize) -> MailboxEntry {
    let body = (0..len).map(|i| id[i % 16] ^ i as u8).collect();
    MailboxEntry { id, order, expires_at_ms, body }
}

/// Deterministic pseudo-random ids (xorshift), so failures reproduce.
fn random_ids(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&next().to_le_bytes());
            id[8..].copy_from_slice(&next().to_le_bytes());
            id
        })
        .collect()
}

/// `n` entries whose orders repeat in runs of 25, so ties are decided by the random id.
fn entries(n: usize, seed: u64) -> Vec<MailboxEntry> {
    let ids = random_ids(n, seed);
    ids.iter().enumerate().map(|(i, id)| entry(*id, T0 + (i / 25) as u64, T0 + DAY, 64)).collect()
}

fn sorted(mut list: Vec<MailboxEntry>) -> Vec<MailboxEntry> {
    list.sort_by_key(MailboxEntry::cursor);
    list
}

fn open_file(limits: MailboxLimits) -> (TempDir, MailboxStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = MailboxStore::open(&dir.path().join("mailboxes.redb"), limits).unwrap();
    (dir, store)
}

fn mem() -> MailboxStore {
    MailboxStore::open_in_memory(MailboxLimits::default()).unwrap()
}

/// Reads the whole mailbox in batches of `batch`, following `next_cursor`.
fn read_all(
    store: &MailboxStore,
    m: &Key256,
    after: Option<Cursor>,
    batch: usize,
    now: u64,
) -> Vec<MailboxEntry> {
    let (mut out, mut cursor) = (Vec::new(), after);
    loop {
        let b = store.read(m, cursor, batch, u64::MAX, now).unwrap();
        out.extend(b.entries);
        cursor = b.next_cursor;
        if !b.has_more {
            return out;
        }
    }
}

/// Recounts everything from `mailbox_entries` and checks it against the counters and the two
/// indexes: every entry has its id row and TTL row and nothing else is there.
pub(super) fn assert_consistent(store: &MailboxStore) {
    let txn = store.db.begin_read().unwrap();
    let entries = txn.open_table(ENTRIES).unwrap();
    let ids = txn.open_table(IDS).unwrap();
    let ttl = txn.open_table(TTL).unwrap();
    let mut usage: BTreeMap<MailboxKey, (u64, u64)> = BTreeMap::new();
    let mut total = 0;
    for row in entries.iter().unwrap() {
        let (key, value) = row.unwrap();
        let (mailbox, cursor) = codec::split_key(key.value());
        let (expires_at_ms, _) = codec::decode(value.value()).unwrap();
        let size = codec::charged(value.value().len());
        let u = usage.entry(mailbox).or_default();
        *u = (u.0 + 1, u.1 + size);
        total += size;
        let order = ids.get(&codec::id_key(&mailbox, &cursor.id)).unwrap().unwrap().value();
        assert_eq!(order, cursor.order);
        assert!(ttl.get((expires_at_ms, key.value())).unwrap().is_some());
    }
    assert_eq!(ids.len().unwrap(), entries.len().unwrap());
    assert_eq!(ttl.len().unwrap(), entries.len().unwrap());
    let stored: BTreeMap<MailboxKey, (u64, u64)> = txn
        .open_table(USAGE)
        .unwrap()
        .iter()
        .unwrap()
        .map(|row| row.map(|(k, v)| (*k.value(), v.value())).unwrap())
        .collect();
    assert_eq!(stored, usage);
    let totals = store.totals().unwrap();
    assert_eq!(
        (totals.messages, totals.bytes, totals.mailboxes),
        (entries.len().unwrap(), total, usage.len() as u64)
    );
}

#[test]
fn append_read_ack_follow_cursor_order() {
    let store = mem();
    let list = entries(300, 7);
    // Insert in a scrambled order: every 7th, then the rest.
    for e in list
        .iter()
        .step_by(7)
        .chain(list.iter().enumerate().filter(|(i, _)| i % 7 != 0).map(|p| p.1))
    {
        let appended = store.append(&mb(1), e, T0).unwrap();
        assert_eq!(appended, Appended { duplicate: false, cursor: e.cursor() });
    }
    let want = sorted(list);
    for batch in [1, 7, 64, 1000] {
        assert_eq!(read_all(&store, &mb(1), None, batch, T0), want);
    }
    assert!(read_all(&store, &mb(2), None, 10, T0).is_empty());

    assert_eq!(store.ack(&mb(1), want[99].cursor(), T0).unwrap(), 100);
    assert_eq!(read_all(&store, &mb(1), None, 50, T0), want[100..]);
    // Acking again, or an earlier cursor, removes nothing.
    assert_eq!(store.ack(&mb(1), want[99].cursor(), T0).unwrap(), 0);
    assert_eq!(store.ack(&mb(1), want[3].cursor(), T0).unwrap(), 0);
    assert_eq!(store.usage(&mb(1), T0).unwrap().messages, 200);
    assert_consistent(&store);
}

#[test]
fn a_cursor_from_one_replica_is_valid_on_another() {
    let (a, b) = (mem(), mem());
    let list = entries(120, 11);
    for e in &list {
        a.append(&mb(1), e, T0).unwrap();
    }
    for e in list.iter().rev() {
        b.append(&mb(1), e, T0).unwrap();
    }
    let want = sorted(list);
    let first = a.read(&mb(1), None, 37, u64::MAX, T0).unwrap();
    assert_eq!(first.entries, want[..37]);
    assert!(first.has_more);
    // The client reconnects to the other replica and continues where it stopped.
    assert_eq!(read_all(&b, &mb(1), first.next_cursor, 10, T0), want[37..]);
    assert_eq!(
        b.ids_after(&mb(1), None, 1000, T0).unwrap(),
        a.ids_after(&mb(1), None, 1000, T0).unwrap()
    );
    assert_eq!(b.ack(&mb(1), first.next_cursor.unwrap(), T0).unwrap(), 37);
    assert_eq!(read_all(&b, &mb(1), None, 10, T0), want[37..]);
}

#[test]
fn duplicate_append_changes_nothing() {
    let (_dir, store) = open_file(MailboxLimits::default());
    let first = entry([1; 16], T0, T0 + DAY, 100);
    store.append(&mb(1), &first, T0).unwrap();
    let before = store.totals().unwrap();
    // The same id again, even with another order and body, is the message already stored.
    let again = entry([1; 16], T0 + 5, T0 + 2 * DAY, 10);
    let appended = store.append(&mb(1), &again, T0 + 1).unwrap();
    assert_eq!(appended, Appended { duplicate: true, cursor: first.cursor() });
    assert_eq!(store.totals().unwrap(), before);
    assert_eq!(store.get(&mb(1), &[1; 16], T0).unwrap(), Some(first.clone()));
    // The id is per mailbox.
    assert!(!store.append(&mb(2), &again, T0).unwrap().duplicate);
    // Once the stored one has expired, the id is free again.
    let later = entry([1; 16], T0 + DAY, T0 + 3 * DAY, 10);
    assert!(!store.append(&mb(1), &later, T0 + DAY).unwrap().duplicate);
    assert_eq!(read_all(&store, &mb(1), None, 10, T0 + DAY), vec![later]);
    assert_consistent(&store);
}

#[test]
fn refuses_expired_and_oversized_entries() {
    let limits = MailboxLimits { max_body_len: 100, ..MailboxLimits::default() };
    let store = MailboxStore::open_in_memory(limits).unwrap();
    let err = store.append(&mb(1), &entry([1; 16], T0, T0, 10), T0).unwrap_err();
    assert!(matches!(err, StoreError::Expired));
    let err = store.append(&mb(1), &entry([1; 16], T0, T0 + 1, 101), T0).unwrap_err();
    assert!(matches!(err, StoreError::BodyTooLarge { len: 101, max: 100 }));
    assert_eq!(err.kind(), "too_large");
    store.append(&mb(1), &entry([1; 16], T0, T0 + 1, 100), T0).unwrap();
    assert_eq!(store.totals().unwrap().messages, 1);
}

fn quota_store(limits: MailboxLimits) -> MailboxStore {
    MailboxStore::open_in_memory(limits).unwrap()
}

#[test]
fn message_quota_per_mailbox() {
    let limits = MailboxLimits { max_messages_per_mailbox: 3, ..MailboxLimits::default() };
    let store = quota_store(limits);
    for id in 0..3 {
        store.append(&mb(1), &entry([id; 16], T0, T0 + DAY, 10), T0).unwrap();
    }
    let err = store.append(&mb(1), &entry([9; 16], T0, T0 + DAY, 10), T0).unwrap_err();
    let want = StoreError::QuotaExceeded {
        limit: QuotaLimit::MailboxMessages,
        used: 3,
        needed: 1,
        max: 3,
    };
    assert_eq!(err.to_string(), want.to_string());
    assert_eq!(err.kind(), "quota");
    // A duplicate of a stored entry is still answered, and other mailboxes are not affected.
    assert!(store.append(&mb(1), &entry([0; 16], T0, T0 + DAY, 10), T0).unwrap().duplicate);
    store.append(&mb(2), &entry([9; 16], T0, T0 + DAY, 10), T0).unwrap();
    // An ack makes room.
    store.ack(&mb(1), Cursor { order: T0, id: [0; 16] }, T0).unwrap();
    store.append(&mb(1), &entry([9; 16], T0, T0 + DAY, 10), T0).unwrap();
    assert_consistent(&store);
}

#[test]
fn byte_quotas_per_mailbox_and_in_total() {
    let size = OVERHEAD + 100;
    let per_mailbox = 2 * size + OVERHEAD + 10;
    let limits = MailboxLimits {
        max_bytes_per_mailbox: per_mailbox,
        max_total_bytes: 4 * size,
        ..MailboxLimits::default()
    };
    let store = quota_store(limits);
    store.append(&mb(1), &entry([1; 16], T0, T0 + DAY, 100), T0).unwrap();
    store.append(&mb(1), &entry([2; 16], T0, T0 + DAY, 100), T0).unwrap();
    let err = store.append(&mb(1), &entry([3; 16], T0, T0 + DAY, 100), T0).unwrap_err();
    assert!(matches!(
        err,
        StoreError::QuotaExceeded { limit: QuotaLimit::MailboxBytes, used, needed, max }
            if used == 2 * size && needed == size && max == per_mailbox
    ));
    // The overhead counts: what is left holds a body of 10, not of 11.
    let err = store.append(&mb(1), &entry([4; 16], T0, T0 + DAY, 11), T0).unwrap_err();
    assert_eq!(err.kind(), "quota");
    store.append(&mb(1), &entry([4; 16], T0, T0 + DAY, 10), T0).unwrap();
    assert_eq!(store.usage(&mb(1), T0).unwrap(), MailboxUsage { messages: 3, bytes: per_mailbox });

    store.append(&mb(2), &entry([1; 16], T0, T0 + DAY, 80), T0).unwrap();
    let err = store.append(&mb(3), &entry([1; 16], T0, T0 + DAY, 100), T0).unwrap_err();
    assert!(matches!(
        err,
        StoreError::QuotaExceeded { limit: QuotaLimit::TotalBytes, used, needed, max }
            if used == 4 * OVERHEAD + 290 && needed == size && max == 4 * size
    ));
    assert_consistent(&store);
}

#[test]
fn expired_entries_never_cause_a_refusal() {
    let limits = MailboxLimits {
        max_messages_per_mailbox: 1,
        max_total_bytes: OVERHEAD + 100,
        ..MailboxLimits::default()
    };
    let store = quota_store(limits);
    store.append(&mb(1), &entry([1; 16], T0, T0 + 50, 100), T0).unwrap();
    store.append(&mb(1), &entry([2; 16], T0, T0 + 99, 100), T0 + 50).unwrap();
    // Another mailbox's garbage is collected too when the total is short.
    store.append(&mb(2), &entry([3; 16], T0, T0 + 200, 100), T0 + 99).unwrap();
    assert_eq!(
        store.totals().unwrap(),
        MailboxTotals { messages: 1, bytes: OVERHEAD + 100, mailboxes: 1 }
    );
    assert_consistent(&store);
}

#[test]
fn expired_entries_are_never_returned_and_gc_frees_them_exactly() {
    let store = mem();
    let ids = random_ids(90, 3);
    let mut live = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let m = mb((i % 3) as u8);
        // A third expire at T0 + 10, a third at T0 + 20, a third a day later.
        let expires = [T0 + 10, T0 + 20, T0 + DAY][i / 30];
        let e = entry(*id, T0 + (i % 4) as u64, expires, i);
        store.append(&m, &e, T0).unwrap();
        if expires > T0 + 20 {
            live.entry(i % 3).or_insert_with(Vec::new).push(e);
        }
    }
    let now = T0 + 20;
    for n in 0..3u8 {
        let want = sorted(live[&usize::from(n)].clone());
        assert_eq!(read_all(&store, &mb(n), None, 4, now), want);
        let cursors: Vec<Cursor> = want.iter().map(MailboxEntry::cursor).collect();
        assert_eq!(store.ids_after(&mb(n), None, 1000, now).unwrap(), cursors);
        let bytes = want.iter().map(|e| OVERHEAD + e.body.len() as u64).sum();
        assert_eq!(store.usage(&mb(n), now).unwrap(), MailboxUsage { messages: 10, bytes });
    }
    assert_eq!(store.get(&mb(0), &ids[0], now).unwrap(), None);
    assert!(store.get(&mb(0), &ids[60], now).unwrap().is_some());

    let before = store.totals().unwrap();
    let doomed: u64 = (0..60).map(|i| OVERHEAD + i as u64).sum();
    assert_eq!(store.gc(T0 + 9).unwrap(), MailboxGc::default());
    let gc = store.gc(now).unwrap();
    assert_eq!(gc, MailboxGc { removed: 60, bytes_freed: doomed });
    assert_eq!(store.totals().unwrap().bytes, before.bytes - doomed);
    assert_eq!(store.gc(now).unwrap(), MailboxGc::default());
    assert_consistent(&store);
    // Past every expiry the store is empty and forgets the mailboxes.
    store.gc(T0 + DAY).unwrap();
    assert_eq!(store.totals().unwrap(), MailboxTotals::default());
}

#[test]
fn read_bounds_and_edges() {
    let store = mem();
    let big = entry([1; 16], T0, T0 + DAY, 500);
    let small = entry([2; 16], T0, T0 + DAY, 10);
    store.append(&mb(1), &big, T0).unwrap();
    store.append(&mb(1), &small, T0).unwrap();
    // One entry even past max_bytes; then stop before passing it.
    let b = store.read(&mb(1), None, 10, 100, T0).unwrap();
    assert_eq!(
        (b.entries, b.has_more, b.next_cursor),
        (vec![big.clone()], true, Some(big.cursor()))
    );
    let b = store.read(&mb(1), None, 10, 510, T0).unwrap();
    assert_eq!((b.entries.len(), b.has_more), (2, false));
    // max_messages 0 reads one.
    let b = store.read(&mb(1), None, 0, u64::MAX, T0).unwrap();
    assert_eq!((b.entries.len(), b.has_more), (1, true));
    // Nothing after the last: the cursor stays.
    let b = store.read(&mb(1), Some(small.cursor()), 10, u64::MAX, T0).unwrap();
    assert_eq!((b.entries.len(), b.has_more, b.next_cursor), (0, false, Some(small.cursor())));
    let end = Cursor { order: u64::MAX, id: [u8::MAX; 16] };
    assert!(store.read(&mb(1), Some(end), 10, u64::MAX, T0).unwrap().entries.is_empty());
    assert!(store.ids_after(&mb(1), Some(end), 10, T0).unwrap().is_empty());
    assert_eq!(store.ids_after(&mb(1), None, 1, T0).unwrap(), vec![big.cursor()]);
    assert_eq!(store.ack(&mb(1), end, T0).unwrap(), 2);
}

#[test]
fn remove_ids_and_ack_count() {
    let store = mem();
    for id in 0..5u8 {
        let expires = if id == 0 { T0 + 5 } else { T0 + DAY };
        store.append(&mb(1), &entry([id; 16], T0 + u64::from(id), expires, 20), T0).unwrap();
    }
    assert_eq!(store.remove_ids(&mb(1), &[[3; 16], [4; 16], [9; 16]]).unwrap(), 2);
    assert_eq!(store.remove_ids(&mb(2), &[[1; 16]]).unwrap(), 0);
    assert_eq!(store.get(&mb(1), &[3; 16], T0).unwrap(), None);
    assert!(store.get(&mb(1), &[2; 16], T0).unwrap().is_some());
    // The expired entry under the cursor goes too, but only live ones are counted.
    assert_eq!(store.ack(&mb(1), Cursor { order: T0 + 1, id: [1; 16] }, T0 + 5).unwrap(), 1);
    assert_eq!(store.totals().unwrap().messages, 1);
    assert_consistent(&store);
}

#[test]
fn survives_reopen_and_recomputes_missing_counters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailboxes.redb");
    let list = entries(40, 5);
    let (want, totals) = {
        let store = MailboxStore::open(&path, MailboxLimits::default()).unwrap();
        for (i, e) in list.iter().enumerate() {
            store.append(&mb((i % 2) as u8), e, T0).unwrap();
        }
        store.ack(&mb(0), list[10].cursor(), T0).unwrap();
        (read_all(&store, &mb(1), None, 7, T0), store.totals().unwrap())
    };
    let reopen = || MailboxStore::open(&path, MailboxLimits::default()).unwrap();
    {
        let store = reopen();
        assert_eq!(read_all(&store, &mb(1), None, 7, T0), want);
        assert_eq!(store.totals().unwrap(), totals);
        assert_consistent(&store);
    }
    // Lose the total and the usage rows: reopening rebuilds them.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove(META_TOTAL_BYTES).unwrap();
        txn.open_table(USAGE).unwrap().insert(&mb(1).0, (1, 1)).unwrap();
        txn.commit().unwrap();
    }
    let store = reopen();
    assert_eq!(store.totals().unwrap(), totals);
    assert_consistent(&store);
}

#[test]
fn corrupt_entries_are_errors_not_panics() {
    let store = mem();
    let e = entry([1; 16], T0, T0 + DAY, 20);
    store.append(&mb(1), &e, T0).unwrap();
    let key = codec::entry_key(&mb(1), &e.cursor());
    for bad in [&[][..], &[1, 2, 3][..], &[2; 40][..]] {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(ENTRIES).unwrap().insert(&key, bad).unwrap();
        txn.commit().unwrap();
        assert_eq!(store.read(&mb(1), None, 10, u64::MAX, T0).unwrap_err().kind(), "corrupt");
        assert_eq!(store.get(&mb(1), &e.id, T0).unwrap_err().kind(), "corrupt");
        assert_eq!(store.ids_after(&mb(1), None, 10, T0).unwrap_err().kind(), "corrupt");
        // A damaged entry is still a duplicate, never silently replaced.
        assert!(store.append(&mb(1), &e, T0).unwrap().duplicate);
    }
    // Other mailboxes are unaffected and the damaged one can still be acknowledged away.
    assert!(store.read(&mb(2), None, 10, u64::MAX, T0).unwrap().entries.is_empty());
    assert_eq!(store.ack(&mb(1), e.cursor(), T0).unwrap(), 1);
    // GC drops the TTL row the damaged entry left behind.
    assert_eq!(store.gc(T0 + DAY).unwrap(), MailboxGc::default());
    assert_eq!(store.db.begin_read().unwrap().open_table(TTL).unwrap().len().unwrap(), 0);
    let totals = store.totals().unwrap();
    assert_eq!((totals.messages, totals.mailboxes), (0, 0));
}
