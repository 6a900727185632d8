use std::collections::HashMap;

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::*;

const OVERHEAD: u64 = RECORD_OVERHEAD;

fn key(sk: u8, index: u8) -> ShardKey {
    ShardKey { storage_key: Key256([sk; 32]), index }
}

fn owner(n: u8) -> Key256 {
    Key256([0xA0 | n; 32])
}

fn meta(owner_n: u8, expires_at_ms: u64, data: &[u8]) -> ShardMeta {
    ShardMeta { owner: owner(owner_n), expires_at_ms, checksum: Sha256::digest(data).into() }
}

fn open(max: u64) -> (TempDir, ShardStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(&dir.path().join("store.redb"), max).unwrap();
    (dir, store)
}

/// Puts `len` bytes of `fill` under `k` for owner `o`, expiring at `exp`.
fn put(
    store: &ShardStore,
    k: ShardKey,
    o: u8,
    exp: u64,
    len: usize,
    now: u64,
) -> Result<(), StoreError> {
    let data = vec![k.index ^ o; len];
    store.put(&k, &meta(o, exp, &data), &data, now)
}

#[test]
fn put_get_round_trip() {
    let (_dir, store) = open(1 << 20);
    let data = b"ciphertext shard".to_vec();
    let m = meta(1, 10_000, &data);
    store.put(&key(1, 3), &m, &data, 0).unwrap();
    let got = store.get(&key(1, 3), 5).unwrap().unwrap();
    assert_eq!(got, StoredShard { meta: m, data });
    assert_eq!(store.get(&key(1, 4), 5).unwrap(), None);
    assert_eq!(store.get(&key(2, 3), 5).unwrap(), None);
}

#[test]
fn expired_is_never_served_and_gc_frees_it() {
    let (_dir, store) = open(1 << 20);
    let (t, ttl) = (1_700_000_000_000u64, 30 * 24 * 3600 * 1000u64);
    put(&store, key(1, 0), 1, t + ttl, 100, t).unwrap();
    let size = OVERHEAD + 100;
    assert!(store.get(&key(1, 0), t + ttl - 1).unwrap().is_some());
    assert_eq!(store.get(&key(1, 0), t + ttl).unwrap(), None);
    assert!(store.list(&key(1, 0).storage_key, t + ttl).unwrap().is_empty());
    // Usage leaves it out before GC; the capacity check still counts it.
    assert_eq!(store.usage(t + ttl).unwrap().bytes_used, 0);
    assert_eq!(store.usage(t + ttl - 1).unwrap().bytes_used, size);
    assert_eq!(store.gc(t + ttl - 1).unwrap(), GcReport::default());
    assert_eq!(store.gc(t + ttl).unwrap(), GcReport { removed: 1, bytes_freed: size });
    let usage = store.usage(t + ttl).unwrap();
    assert_eq!((usage.bytes_used, usage.shards, usage.next_expiry_ms), (0, 0, None));
    assert_eq!(store.gc(t + ttl).unwrap(), GcReport::default());
}

#[test]
fn put_refuses_expired_and_invalid_shards() {
    let (_dir, store) = open(1 << 20);
    assert!(matches!(put(&store, key(1, 0), 1, 10, 5, 10), Err(StoreError::Expired)));
    let err = put(&store, key(1, TOTAL_SHARDS as u8), 1, 20, 5, 10).unwrap_err();
    assert_eq!(err.kind(), "invalid");
    let data = vec![1u8; 5];
    let mut m = meta(1, 20, &data);
    m.checksum[0] ^= 1;
    assert_eq!(store.put(&key(1, 0), &m, &data, 10).unwrap_err().kind(), "invalid");
    let long = vec![0u8; MAX_ENCODED_SHARD_LEN + 1];
    let err = store.put(&key(1, 0), &meta(1, 20, &long), &long, 10).unwrap_err();
    assert_eq!(err.kind(), "invalid");
    assert_eq!(store.usage(10).unwrap().shards, 0);
}

#[test]
fn quota_refuses_with_exact_numbers_and_replacement_counts_the_difference() {
    let size = OVERHEAD + 100;
    let (_dir, store) = open(2 * size + 10);
    put(&store, key(1, 0), 1, 100, 100, 0).unwrap();
    put(&store, key(1, 1), 1, 100, 100, 0).unwrap();
    let err = put(&store, key(1, 2), 1, 100, 100, 0).unwrap_err();
    assert!(matches!(err, StoreError::InsufficientStorage { needed, free: 10 } if needed == size));
    assert_eq!(err.to_string(), format!("insufficient storage: need {size} bytes, 10 free"));
    assert_eq!(err.kind(), "insufficient_storage");
    // 10 bytes free cannot hold even an empty shard's record header.
    assert!(!store.has_capacity(0));

    // Growing a shard by 10 fits exactly, by 11 does not.
    put(&store, key(1, 0), 1, 100, 110, 0).unwrap();
    assert_eq!(store.usage(0).unwrap().bytes_used, 2 * size + 10);
    let err = put(&store, key(1, 1), 1, 100, 101, 0).unwrap_err();
    assert!(matches!(err, StoreError::InsufficientStorage { needed: 1, free: 0 }));
    // Shrinking always fits and frees the difference.
    put(&store, key(1, 0), 1, 100, 40, 0).unwrap();
    assert_eq!(store.usage(0).unwrap().bytes_used, 2 * size - 60);
    put(&store, key(1, 1), 1, 100, 170, 0).unwrap();
    assert_eq!(store.usage(0).unwrap().bytes_used, 2 * size + 10);
}

#[test]
fn expired_shards_never_block_a_put() {
    let size = OVERHEAD + 100;
    let (_dir, store) = open(size);
    put(&store, key(1, 0), 1, 50, 100, 0).unwrap();
    assert!(!store.has_capacity(100));
    put(&store, key(2, 0), 2, 200, 100, 50).unwrap();
    assert_eq!(store.get(&key(1, 0), 0).unwrap(), None, "collected to make room");
    assert_eq!(store.usage(50).unwrap().bytes_used, size);
}

#[test]
fn owner_mismatch_on_put_and_delete() {
    let (_dir, store) = open(1 << 20);
    put(&store, key(1, 0), 1, 100, 10, 0).unwrap();
    put(&store, key(1, 1), 2, 200, 10, 0).unwrap();
    let err = put(&store, key(1, 0), 2, 100, 10, 0).unwrap_err();
    assert!(matches!(err, StoreError::OwnerMismatch));
    assert_eq!(err.kind(), "forbidden");
    let err = store.delete(&key(1, 0).storage_key, &owner(1), 0).unwrap_err();
    assert!(matches!(err, StoreError::OwnerMismatch));
    assert_eq!(store.list(&key(1, 0).storage_key, 0).unwrap().len(), 2, "nothing deleted");
    // Once expired, a shard no longer binds its key to its owner.
    put(&store, key(1, 0), 2, 300, 10, 100).unwrap();
    assert_eq!(store.get(&key(1, 0), 100).unwrap().unwrap().meta.owner, owner(2));
    assert_eq!(store.delete(&key(1, 0).storage_key, &owner(2), 100).unwrap(), 2);
}

#[test]
fn delete_removes_every_index_of_a_key_only() {
    let (_dir, store) = open(1 << 20);
    for i in 0..TOTAL_SHARDS as u8 {
        put(&store, key(1, i), 1, 100, 10, 0).unwrap();
    }
    put(&store, key(2, 0), 1, 100, 10, 0).unwrap();
    assert_eq!(store.delete(&key(1, 0).storage_key, &owner(1), 0).unwrap(), TOTAL_SHARDS as u64);
    assert!(store.list(&key(1, 0).storage_key, 0).unwrap().is_empty());
    assert_eq!(
        store.usage(0).unwrap(),
        Usage {
            bytes_used: OVERHEAD + 10,
            max_bytes: 1 << 20,
            shards: 1,
            next_expiry_ms: Some(100)
        }
    );
    assert_eq!(store.delete(&key(1, 0).storage_key, &owner(1), 0).unwrap(), 0);
    // GC finds nothing left behind in the TTL index.
    assert_eq!(store.gc(1000).unwrap(), GcReport { removed: 1, bytes_freed: OVERHEAD + 10 });
}

#[test]
fn list_gives_live_indices_of_one_key() {
    let (_dir, store) = open(1 << 20);
    put(&store, key(1, 7), 1, 100, 10, 0).unwrap();
    put(&store, key(1, 2), 1, 50, 10, 0).unwrap();
    put(&store, key(1, 14), 2, 100, 10, 0).unwrap();
    put(&store, key(0, 0), 1, 100, 10, 0).unwrap();
    put(&store, key(2, 0), 1, 100, 10, 0).unwrap();
    let listed = store.list(&key(1, 0).storage_key, 0).unwrap();
    let indices: Vec<u8> = listed.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, vec![2, 7, 14]);
    assert_eq!(listed[2].1.owner, owner(2));
    assert_eq!(listed[0].1.expires_at_ms, 50);
    let later: Vec<u8> =
        store.list(&key(1, 0).storage_key, 50).unwrap().iter().map(|(i, _)| *i).collect();
    assert_eq!(later, vec![7, 14]);
}

#[test]
fn usage_reports_next_expiry() {
    let (_dir, store) = open(1 << 20);
    assert_eq!(store.usage(0).unwrap().next_expiry_ms, None);
    put(&store, key(1, 0), 1, 300, 10, 0).unwrap();
    put(&store, key(1, 1), 1, 100, 10, 0).unwrap();
    put(&store, key(1, 2), 1, 200, 10, 0).unwrap();
    assert_eq!(store.usage(0).unwrap().next_expiry_ms, Some(100));
    assert_eq!(store.usage(100).unwrap().next_expiry_ms, Some(200));
    // Replacing a shard moves its index entry.
    put(&store, key(1, 1), 1, 400, 10, 0).unwrap();
    assert_eq!(store.usage(0).unwrap().next_expiry_ms, Some(200));
    assert_eq!(store.usage(400).unwrap().next_expiry_ms, None);
    assert_eq!(store.usage(u64::MAX).unwrap().next_expiry_ms, None);
}

#[test]
fn survives_reopen_and_recomputes_a_missing_total() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let expected = {
        let store = ShardStore::open(&path, 1 << 20).unwrap();
        put(&store, key(1, 0), 1, 100, 10, 0).unwrap();
        put(&store, key(1, 1), 1, 100, 20, 0).unwrap();
        store.usage(0).unwrap()
    };
    assert_eq!(expected.bytes_used, 2 * OVERHEAD + 30);
    let store = ShardStore::open(&path, 1 << 20).unwrap();
    assert_eq!(store.usage(0).unwrap(), expected);
    assert_eq!(store.get(&key(1, 1), 0).unwrap().unwrap().data.len(), 20);

    // Drop the stored total; the next open recomputes it from the records.
    let txn = store.db.begin_write().unwrap();
    txn.open_table(META).unwrap().remove(META_BYTES_USED).unwrap();
    txn.commit().unwrap();
    drop(store);
    let store = ShardStore::open(&path, 1 << 20).unwrap();
    assert_eq!(store.usage(0).unwrap(), expected);
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let (_dir, store) = open(1 << 20);
    put(&store, key(1, 0), 1, 100, 10, 0).unwrap();
    store.put_raw(&key(1, 0), b"garbage").unwrap();
    let err = store.get(&key(1, 0), 0).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert_eq!(err.kind(), "corrupt");
    assert!(matches!(store.list(&key(1, 0).storage_key, 0), Err(StoreError::Corrupt(_))));
    assert!(matches!(put(&store, key(1, 0), 1, 100, 10, 0), Err(StoreError::Corrupt(_))));

    // A well-formed record whose data no longer matches its checksum.
    let data = vec![5u8; 10];
    let mut rec = record::encode(&meta(1, 100, &data), &data).unwrap();
    if let Some(last) = rec.last_mut() {
        *last ^= 0xFF;
    }
    store.put_raw(&key(1, 1), &rec).unwrap();
    assert!(matches!(store.get(&key(1, 1), 0), Err(StoreError::Corrupt(_))));

    // GC still collects what the TTL index points at, decodable or not.
    assert_eq!(store.gc(100).unwrap().removed, 1);
}

// ---- property test: the store against an in-memory model ----

#[derive(Debug, Clone)]
enum Op {
    Put { sk: u8, index: u8, owner: u8, ttl: u64, len: usize },
    Delete { sk: u8, owner: u8 },
    Gc,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3u8, 0..4u8, 0..2u8, 0..60u64, 0..200usize)
            .prop_map(|(sk, index, owner, ttl, len)| Op::Put { sk, index, owner, ttl, len }),
        1 => (0..3u8, 0..2u8).prop_map(|(sk, owner)| Op::Delete { sk, owner }),
        1 => Just(Op::Gc),
        2 => (0..40u64).prop_map(Op::Advance),
    ]
}

/// What the store should hold. Expired entries may linger here as they may in the store; every
/// check looks at live entries only.
#[derive(Default)]
struct Model {
    shards: HashMap<ShardKey, (ShardMeta, u64)>,
}

impl Model {
    fn live(&self, now: u64) -> impl Iterator<Item = (&ShardKey, &(ShardMeta, u64))> {
        self.shards.iter().filter(move |(_, (m, _))| m.expires_at_ms > now)
    }

    fn live_bytes(&self, now: u64) -> u64 {
        self.live(now).map(|(_, (_, size))| size).sum()
    }
}

const MAX: u64 = 700;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let store = ShardStore::open_in_memory(MAX).unwrap();
        let mut model = Model::default();
        let mut now = 1_000u64;
        for op in ops {
            match op {
                Op::Put { sk, index, owner: o, ttl, len } => {
                    let k = key(sk, index);
                    let got = put(&store, k, o, now + ttl, len, now);
                    let size = OVERHEAD + len as u64;
                    let old = model.shards.get(&k).filter(|(m, _)| m.expires_at_ms > now).copied();
                    if ttl == 0 {
                        prop_assert!(matches!(got, Err(StoreError::Expired)), "{:?}", got);
                    } else if old.is_some_and(|(m, _)| m.owner != owner(o)) {
                        prop_assert!(matches!(got, Err(StoreError::OwnerMismatch)), "{:?}", got);
                    } else {
                        let old_size = old.map_or(0, |(_, s)| s);
                        let free = MAX - model.live_bytes(now);
                        if size > old_size && size - old_size > free {
                            let ok = matches!(got, Err(StoreError::InsufficientStorage { needed, free: f })
                                if needed == size - old_size && f == free);
                            prop_assert!(ok, "{:?}", got);
                        } else {
                            prop_assert!(got.is_ok(), "{:?}", got);
                            let data = vec![index ^ o; len];
                            model.shards.insert(k, (meta(o, now + ttl, &data), size));
                        }
                    }
                }
                Op::Delete { sk, owner: o } => {
                    let got = store.delete(&Key256([sk; 32]), &owner(o), now);
                    let mine: Vec<ShardKey> = model.shards.keys().filter(|k| k.storage_key.0[0] == sk).copied().collect();
                    if model.live(now).any(|(k, (m, _))| k.storage_key.0[0] == sk && m.owner != owner(o)) {
                        prop_assert!(matches!(got, Err(StoreError::OwnerMismatch)), "{:?}", got);
                    } else {
                        let live = model.live(now).filter(|(k, _)| k.storage_key.0[0] == sk).count() as u64;
                        prop_assert_eq!(got.ok(), Some(live));
                        for k in mine {
                            model.shards.remove(&k);
                        }
                    }
                }
                Op::Gc => {
                    store.gc(now).unwrap();
                    model.shards.retain(|_, (m, _)| m.expires_at_ms > now);
                    // Nothing expired is left, so the clockless capacity check is exact.
                    let free = MAX - model.live_bytes(now);
                    prop_assert_eq!(store.has_capacity(free.saturating_sub(OVERHEAD)), free >= OVERHEAD);
                    prop_assert!(!store.has_capacity(free + 1));
                }
                Op::Advance(ms) => now += ms,
            }

            // After every step: get, list and usage agree with the model.
            for sk in 0..3u8 {
                let mut listed = Vec::new();
                for index in 0..4u8 {
                    let k = key(sk, index);
                    let want = model.shards.get(&k).filter(|(m, _)| m.expires_at_ms > now);
                    let got = store.get(&k, now).unwrap();
                    prop_assert_eq!(got.as_ref().map(|s| s.meta), want.map(|(m, _)| *m));
                    if let (Some(got), Some((_, size))) = (got, want) {
                        prop_assert_eq!(got.data.len() as u64 + OVERHEAD, *size);
                        listed.push((index, got.meta));
                    }
                }
                prop_assert_eq!(store.list(&Key256([sk; 32]), now).unwrap(), listed);
            }
            let usage = store.usage(now).unwrap();
            prop_assert_eq!(usage, Usage {
                bytes_used: model.live_bytes(now),
                max_bytes: MAX,
                shards: model.live(now).count() as u64,
                next_expiry_ms: model.live(now).map(|(_, (m, _))| m.expires_at_ms).min(),
            });
        }
    }
}
