//! Fuzzes `erasure::decode` and `erasure::rebuild` on shard sets as holders hand them back:
//! missing, duplicated, reordered, damaged, or re-checksummed by a dishonest holder (the
//! checksum is a plain SHA-256, which anyone can recompute). Neither may panic.
//!
//! The input picks a chunk (length and contents), encodes it, then applies a list of edits to
//! the shards. Checked:
//! - while no shard was re-checksummed, any 10 untouched distinct shards recover the chunk
//!   whatever else is in the set (damaged shards count as missing);
//! - a set that decodes also rebuilds, into 15 shards that verify and decode to the same chunk.
//!
//! Most of the time goes to Reed-Solomon recovery (a fixed cost per decode, whatever the
//! shard length), so a run decodes at most twice with it.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use zmesh_core::erasure;
use zmesh_fuzz::Input;
use zmesh_types::Key256;
use zmesh_types::constants::{CHUNK_SIZE, DATA_SHARDS, TOTAL_SHARDS};
use zmesh_wire::shard::Shard;

const KEY: Key256 = Key256([9; 32]);
/// Longest chunk tried: long enough for every shard-length rounding case, short enough to keep
/// each run fast (the largest chunk is covered by the crate's unit tests).
const MAX_FUZZ_CHUNK: usize = 8 * 1024;

fn chunk(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A shard with whether it still is exactly as encoded.
struct Held {
    shard: Shard,
    untouched: bool,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let len = 1 + usize::from(input.u16()) % MAX_FUZZ_CHUNK;
    let seed = input.u64();
    let original = chunk(len, seed);
    let encoded = erasure::encode(KEY, &original).expect("a chunk in range encodes");
    let mut held: Vec<Held> =
        encoded.iter().map(|s| Held { shard: s.clone(), untouched: true }).collect();
    // Whether some changed shard was given a matching checksum again.
    let mut resealed = false;

    while !input.is_empty() && !held.is_empty() {
        let (op, target, pos, val) = (input.u8(), input.u8(), input.u16(), input.u8());
        let i = usize::from(target) % held.len();
        let h = &mut held[i];
        match op % 8 {
            0 => {
                held.remove(i);
            }
            1 => {
                if !h.shard.data.is_empty() {
                    let at = usize::from(pos) % h.shard.data.len();
                    h.shard.data[at] ^= val | 1;
                    h.untouched = false;
                }
            }
            2 => {
                let header = &mut h.shard.header;
                match pos % 6 {
                    0 => header.index = val,
                    1 => header.data_shards = val,
                    2 => header.parity_shards = val,
                    3 => header.chunk_len ^= u32::from(val) << (pos % 24),
                    4 => header.shard_len ^= u32::from(val) << (pos % 24),
                    _ => header.storage_key.0[usize::from(val) % 32] ^= 1,
                }
                h.untouched = false;
            }
            3 => {
                let keep = usize::from(pos) % (h.shard.data.len() + 1);
                h.shard.data.truncate(keep);
                h.shard.data.extend(std::iter::repeat_n(val, usize::from(val) % 4));
                h.untouched = false;
            }
            4 => {
                let copy = Held { shard: h.shard.clone(), untouched: h.untouched };
                held.push(copy);
            }
            5 => {
                if !h.untouched {
                    h.shard.header.checksum = erasure::checksum(&h.shard.header, &h.shard.data);
                    resealed = true;
                }
            }
            6 => {
                // A well-formed shard of another chunk under the same key (an equivocating
                // owner, or a holder serving a stale version).
                let other_len = 1 + usize::from(pos) % MAX_FUZZ_CHUNK;
                let other = erasure::encode(KEY, &chunk(other_len, seed ^ u64::from(val) ^ 0x55))
                    .expect("a chunk in range encodes");
                if let Some(shard) = other.into_iter().nth(usize::from(val) % TOTAL_SHARDS) {
                    *h = Held { shard, untouched: false };
                    resealed = true;
                }
            }
            _ => {
                let j = usize::from(pos) % held.len();
                held.swap(i, j);
            }
        }
    }

    let shards: Vec<Shard> = held.iter().map(|h| h.shard.clone()).collect();
    let decoded = erasure::decode(KEY, shards.clone());
    let untouched: BTreeSet<u8> =
        held.iter().filter(|h| h.untouched).map(|h| h.shard.header.index).collect();
    if !resealed && untouched.len() >= DATA_SHARDS {
        assert_eq!(decoded.as_deref(), Ok(&original[..]), "enough intact shards, no chunk");
    }
    let Ok(chunk) = decoded else { return };
    assert!(!chunk.is_empty() && chunk.len() <= CHUNK_SIZE, "chunk of {} bytes", chunk.len());
    let rebuilt = erasure::rebuild(KEY, shards).expect("shards that decode also rebuild");
    assert_eq!(rebuilt.len(), TOTAL_SHARDS);
    assert!(rebuilt.iter().all(erasure::verify), "a rebuilt shard fails its checksum");
    let again = erasure::decode(KEY, rebuilt);
    assert_eq!(again.as_ref(), Ok(&chunk), "rebuilt shards decode to another chunk");
});
