//! Reed-Solomon coding of stored chunks: 10 data + 5 parity shards, any 10 healthy ones recover
//! the chunk (DESIGN.md, "Data flows").
//!
//! Chunks are already client-side encrypted; this layer adds only redundancy and corruption
//! detection. Every shard carries a SHA-256 over its header fields and its data (computed here,
//! so the wire codec stays free of hashing): a flipped index or length fails the check as surely
//! as a flipped data byte, and a decoder trusts a shard only if it matches, so a corrupt shard
//! counts as missing rather than poisoning the reconstruction. The owner signs all 15
//! checksums, so holders can also tell the shard they are handed is the one the owner encoded.

use std::collections::BTreeMap;

use reed_solomon_simd::ReedSolomonDecoder;
use sha2::{Digest, Sha256};
use zmesh_types::Key256;
use zmesh_types::constants::{CHUNK_SIZE, DATA_SHARDS, PARITY_SHARDS, TOTAL_SHARDS};
use zmesh_wire::shard::{Shard, ShardHeader, shard_len};

/// Why a chunk could not be coded or recovered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErasureError {
    #[error("chunk of {len} bytes is outside 1..={max}")]
    ChunkSize { len: usize, max: usize },
    #[error("found {found} healthy shards, need {needed}")]
    NotEnoughShards { found: usize, needed: usize },
    /// The codec refused its input. Inputs are validated first, so this means a bug.
    #[error("reed-solomon: {0}")]
    Codec(#[from] reed_solomon_simd::Error),
}

/// Splits `chunk` (1..=`CHUNK_SIZE` bytes) into `TOTAL_SHARDS` shards, index 0..15. The last
/// data shard is zero-padded; `chunk_len` in every header restores the exact length.
pub fn encode(storage_key: Key256, chunk: &[u8]) -> Result<Vec<Shard>, ErasureError> {
    let chunk_len = chunk.len();
    if !(1..=CHUNK_SIZE).contains(&chunk_len) {
        return Err(ErasureError::ChunkSize { len: chunk_len, max: CHUNK_SIZE });
    }
    let len = shard_len(chunk_len);
    let originals = (0..DATA_SHARDS)
        .map(|i| {
            let mut shard = Vec::with_capacity(len);
            shard.extend_from_slice(
                &chunk[(i * len).min(chunk_len)..((i + 1) * len).min(chunk_len)],
            );
            shard.resize(len, 0);
            shard
        })
        .collect();
    code(storage_key, chunk_len, originals)
}

/// Recovers a chunk from any `DATA_SHARDS` healthy shards of it. Shards of another key, with a
/// wrong checksum, or whose lengths disagree with the majority are ignored; repeated indices
/// count once. When all data shards are healthy they are joined without decoding.
pub fn decode(
    storage_key: Key256,
    shards: impl IntoIterator<Item = Shard>,
) -> Result<Vec<u8>, ErasureError> {
    let mut healthy = Healthy::select(storage_key, shards)?;
    healthy.restore_originals()?;
    let mut chunk = Vec::with_capacity(healthy.shard_len * DATA_SHARDS);
    for data in healthy.slots.iter().take(DATA_SHARDS).flatten() {
        chunk.extend_from_slice(data);
    }
    chunk.truncate(healthy.chunk_len);
    Ok(chunk)
}

/// Recreates all `TOTAL_SHARDS` shards from any `DATA_SHARDS` healthy ones, for repair. The
/// result equals what [`encode`] produced for the chunk.
pub fn rebuild(
    storage_key: Key256,
    shards: impl IntoIterator<Item = Shard>,
) -> Result<Vec<Shard>, ErasureError> {
    let mut healthy = Healthy::select(storage_key, shards)?;
    healthy.restore_originals()?;
    let originals = healthy.slots.into_iter().take(DATA_SHARDS).flatten().collect();
    code(storage_key, healthy.chunk_len, originals)
}

/// Whether the shard's header and data match its checksum (and the data its declared length).
pub fn verify(shard: &Shard) -> bool {
    shard.data.len() == shard.header.shard_len as usize
        && checksum(&shard.header, &shard.data) == shard.header.checksum
}

/// SHA-256 over every header field but the checksum, then the data.
pub fn checksum(header: &ShardHeader, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header.storage_key.0);
    h.update([header.index, header.data_shards, header.parity_shards]);
    h.update(header.chunk_len.to_be_bytes());
    h.update(header.shard_len.to_be_bytes());
    h.update(data);
    h.finalize().into()
}

/// Computes parity for `DATA_SHARDS` padded data shards and wraps all of them in headers.
fn code(
    storage_key: Key256,
    chunk_len: usize,
    originals: Vec<Vec<u8>>,
) -> Result<Vec<Shard>, ErasureError> {
    let parity = reed_solomon_simd::encode(DATA_SHARDS, PARITY_SHARDS, &originals)?;
    let len = shard_len(chunk_len);
    Ok(originals
        .into_iter()
        .chain(parity)
        .enumerate()
        .map(|(index, data)| {
            let mut header = ShardHeader {
                storage_key,
                index: index as u8,
                data_shards: DATA_SHARDS as u8,
                parity_shards: PARITY_SHARDS as u8,
                chunk_len: chunk_len as u32,
                shard_len: len as u32,
                checksum: [0; 32],
            };
            header.checksum = checksum(&header, &data);
            Shard { header, data }
        })
        .collect())
}

/// The healthy shards of one chunk, by index.
struct Healthy {
    chunk_len: usize,
    shard_len: usize,
    slots: Vec<Option<Vec<u8>>>,
}

impl Healthy {
    /// Keeps the shards that belong to `storage_key`, are well formed and pass their checksum,
    /// grouped by the (chunk_len, shard_len) they claim; the group with the most distinct
    /// indices wins, so even shards that verify but disagree (encoded twice with different
    /// lengths) cannot be mixed.
    fn select(
        storage_key: Key256,
        shards: impl IntoIterator<Item = Shard>,
    ) -> Result<Self, ErasureError> {
        let mut groups: BTreeMap<(u32, u32), Vec<Option<Vec<u8>>>> = BTreeMap::new();
        for shard in shards {
            let h = &shard.header;
            if h.storage_key != storage_key || h.validate().is_err() {
                continue;
            }
            let slots = groups
                .entry((h.chunk_len, h.shard_len))
                .or_insert_with(|| vec![None; TOTAL_SHARDS]);
            let slot = &mut slots[usize::from(h.index)];
            // Checked after the cheap tests: a duplicate of a healthy shard is not hashed.
            if slot.is_none() && verify(&shard) {
                *slot = Some(shard.data);
            }
        }
        let found = |slots: &[Option<Vec<u8>>]| slots.iter().flatten().count();
        let best = groups.into_iter().max_by_key(|(_, slots)| found(slots));
        let found = best.as_ref().map_or(0, |(_, slots)| found(slots));
        match best {
            Some(((chunk_len, shard_len), slots)) if found >= DATA_SHARDS => {
                Ok(Healthy { chunk_len: chunk_len as usize, shard_len: shard_len as usize, slots })
            }
            _ => Err(ErasureError::NotEnoughShards { found, needed: DATA_SHARDS }),
        }
    }

    /// Fills every missing data shard from the others; a no-op when none is missing.
    fn restore_originals(&mut self) -> Result<(), ErasureError> {
        if self.slots[..DATA_SHARDS].iter().all(Option::is_some) {
            return Ok(());
        }
        let mut decoder = ReedSolomonDecoder::new(DATA_SHARDS, PARITY_SHARDS, self.shard_len)?;
        // Exactly DATA_SHARDS inputs suffice; more only add work.
        for (index, data) in self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.as_ref()?)))
            .take(DATA_SHARDS)
        {
            if index < DATA_SHARDS {
                decoder.add_original_shard(index, data)?;
            } else {
                decoder.add_recovery_shard(index - DATA_SHARDS, data)?;
            }
        }
        let result = decoder.decode()?;
        for (index, data) in result.restored_original_iter() {
            self.slots[index] = Some(data.to_vec());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: Key256 = Key256([0x5a; 32]);

    /// Deterministic pseudo-random bytes (xorshift), cheap enough for 4 MiB in a debug build.
    fn chunk(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn without(shards: &[Shard], drop: &[usize]) -> Vec<Shard> {
        shards.iter().filter(|s| !drop.contains(&usize::from(s.header.index))).cloned().collect()
    }

    fn chunk_len() -> impl Strategy<Value = usize> {
        prop_oneof![
            3 => 1..=64usize,
            3 => 1..=64 * 1024usize,
            1 => Just(CHUNK_SIZE),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn any_five_may_be_lost(
            len in chunk_len(),
            seed in any::<u64>(),
            drop in proptest::sample::subsequence((0..TOTAL_SHARDS).collect::<Vec<_>>(), 5),
        ) {
            let data = chunk(len, seed);
            let shards = encode(KEY, &data).unwrap();
            prop_assert_eq!(shards.len(), TOTAL_SHARDS);
            let rest = without(&shards, &drop);
            prop_assert_eq!(decode(KEY, rest.clone()).unwrap(), data);
            prop_assert_eq!(rebuild(KEY, rest).unwrap(), shards);
        }

        #[test]
        fn six_lost_is_not_enough(
            len in 1..=4096usize,
            seed in any::<u64>(),
            drop in proptest::sample::subsequence((0..TOTAL_SHARDS).collect::<Vec<_>>(), 6),
        ) {
            let shards = encode(KEY, &chunk(len, seed)).unwrap();
            let err = decode(KEY, without(&shards, &drop)).unwrap_err();
            prop_assert_eq!(err, ErasureError::NotEnoughShards { found: 9, needed: 10 });
        }
    }

    #[test]
    fn encode_lays_out_headers_and_data() {
        let data = chunk(1001, 1);
        let shards = encode(KEY, &data).unwrap();
        for (i, s) in shards.iter().enumerate() {
            assert_eq!(usize::from(s.header.index), i);
            assert_eq!(s.header.chunk_len, 1001);
            assert_eq!(s.header.shard_len, 102);
            assert_eq!(s.header.storage_key, KEY);
            assert!(verify(s));
            assert_eq!(Shard::from_bytes(&s.to_bytes()).unwrap(), *s);
        }
        let joined: Vec<u8> = shards[..DATA_SHARDS].iter().flat_map(|s| s.data.clone()).collect();
        assert_eq!(joined[..1001], data[..]);
        assert!(joined[1001..].iter().all(|&b| b == 0));
    }

    #[test]
    fn smallest_and_largest_chunks() {
        for len in [1, 2, 19, 21, CHUNK_SIZE] {
            let data = chunk(len, len as u64);
            let shards = encode(KEY, &data).unwrap();
            assert_eq!(decode(KEY, shards.clone()).unwrap(), data, "len {len}");
            assert_eq!(decode(KEY, without(&shards, &[0, 2, 4, 6, 9])).unwrap(), data);
        }
    }

    #[test]
    fn chunk_size_is_bounded() {
        assert_eq!(encode(KEY, &[]), Err(ErasureError::ChunkSize { len: 0, max: CHUNK_SIZE }));
        let too_big = vec![0; CHUNK_SIZE + 1];
        assert!(matches!(encode(KEY, &too_big), Err(ErasureError::ChunkSize { .. })));
    }

    #[test]
    fn not_enough_names_both_numbers() {
        let shards = encode(KEY, &chunk(500, 2)).unwrap();
        let err = decode(KEY, without(&shards, &[1, 3, 5, 7, 11, 13])).unwrap_err();
        assert_eq!(err.to_string(), "found 9 healthy shards, need 10");
        let err = rebuild(KEY, Vec::new()).unwrap_err();
        assert_eq!(err, ErasureError::NotEnoughShards { found: 0, needed: 10 });
    }

    #[test]
    fn corrupt_shard_is_ignored() {
        let data = chunk(3000, 3);
        let mut shards = encode(KEY, &data).unwrap();
        shards[4].data[17] ^= 0x01;
        assert!(!verify(&shards[4]));
        assert_eq!(decode(KEY, shards.clone()).unwrap(), data);
        // With 4 others missing, the corrupt one is the fifth loss: still recoverable.
        assert_eq!(decode(KEY, without(&shards, &[0, 10, 11, 12])).unwrap(), data);
        // With 5 others missing, only 9 healthy remain.
        let err = decode(KEY, without(&shards, &[0, 10, 11, 12, 13])).unwrap_err();
        assert_eq!(err, ErasureError::NotEnoughShards { found: 9, needed: 10 });
        // Rebuild repairs the corrupt shard.
        let fixed = rebuild(KEY, shards.clone()).unwrap();
        assert_eq!(fixed, encode(KEY, &data).unwrap());
    }

    #[test]
    fn foreign_duplicate_and_outvoted_shards_are_ignored() {
        let data = chunk(4000, 4);
        let shards = encode(KEY, &data).unwrap();
        let other = encode(Key256([1; 32]), &data).unwrap();

        // Another chunk's shards do not fill the gaps.
        let mixed: Vec<Shard> =
            without(&shards, &[0, 1, 2, 3, 4, 5]).into_iter().chain(other.clone()).collect();
        let err = decode(KEY, mixed).unwrap_err();
        assert_eq!(err, ErasureError::NotEnoughShards { found: 9, needed: 10 });

        // Repeats of one index count once.
        let nine = without(&shards, &[0, 1, 2, 3, 4, 5]);
        let twice: Vec<Shard> = nine.iter().chain(nine.iter()).cloned().collect();
        let err = decode(KEY, twice).unwrap_err();
        assert_eq!(err, ErasureError::NotEnoughShards { found: 9, needed: 10 });

        // A shard whose header was altered fails its checksum and is ignored.
        let mut liar = shards.clone();
        liar[2].header.chunk_len = 3990;
        assert_eq!(liar[2].header.shard_len, 400);
        assert_eq!(decode(KEY, liar.clone()).unwrap(), data);
        let err = decode(KEY, without(&liar, &[0, 1, 3, 4, 5])).unwrap_err();
        assert_eq!(err, ErasureError::NotEnoughShards { found: 9, needed: 10 });

        // A malformed shard (data length not shard_len) is ignored, not a panic.
        let mut short = shards.clone();
        short[0].data.pop();
        short[1].header.index = 200;
        assert_eq!(decode(KEY, short).unwrap(), data);
    }

    #[test]
    fn the_checksum_covers_the_header() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let shards = encode(KEY, &data).unwrap();
        let mut moved = shards[3].clone();
        moved.header.index = 4;
        assert!(!verify(&moved), "a relabelled shard must not verify");
        let mut resized = shards[3].clone();
        resized.header.chunk_len -= 1;
        assert!(!verify(&resized));
        assert!(shards.iter().all(verify));
    }

    #[test]
    fn rebuild_restores_the_originals() {
        let data = chunk(123_457, 5);
        let shards = encode(KEY, &data).unwrap();
        for drop in [[0, 1, 2, 3, 4], [10, 11, 12, 13, 14], [0, 5, 9, 10, 14]] {
            assert_eq!(rebuild(KEY, without(&shards, &drop)).unwrap(), shards);
        }
    }
}
