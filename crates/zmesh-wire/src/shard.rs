//! One erasure-coded shard of a stored chunk, as nodes hold and exchange it: a fixed-size header
//! followed by the shard's bytes.
//!
//! The header lets any holder detect corruption (`checksum`) and lets a decoder put the shard
//! back in place (`index`) and cut the padding off the chunk (`chunk_len`). Computing and
//! checking the checksum is `zmesh_core::erasure`'s job; this codec only moves the bytes and
//! refuses headers no honest encoder writes, before allocating anything.

use zmesh_types::Key256;
use zmesh_types::constants::{CHUNK_SIZE, DATA_SHARDS, MAX_SHARD_LEN, PARITY_SHARDS, TOTAL_SHARDS};

use crate::{Reader, WireError, Writer};

/// Length of each shard of a chunk of `chunk_len` bytes: `ceil(chunk_len / DATA_SHARDS)`
/// rounded up to an even number, because reed-solomon-simd codes even-sized shards only.
pub const fn shard_len(chunk_len: usize) -> usize {
    (chunk_len.div_ceil(DATA_SHARDS) + 1) & !1
}

const _: () = assert!(shard_len(CHUNK_SIZE) == MAX_SHARD_LEN);

/// What a shard says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHeader {
    /// The chunk this shard belongs to.
    pub storage_key: Key256,
    /// Position in the code: `0..DATA_SHARDS` are data, the rest parity.
    pub index: u8,
    pub data_shards: u8,
    pub parity_shards: u8,
    /// Exact length of the chunk; the last data shard is zero-padded up to `shard_len`.
    pub chunk_len: u32,
    /// Length of this shard's data, the same for every shard of the chunk.
    pub shard_len: u32,
    /// SHA-256 of the shard's data bytes.
    pub checksum: [u8; 32],
}

impl ShardHeader {
    /// Bytes of an encoded header.
    pub const ENCODED_LEN: usize = 32 + 1 + 1 + 1 + 4 + 4 + 32;
    const _SAME_AS_TYPES: () =
        assert!(Self::ENCODED_LEN == zmesh_types::constants::SHARD_HEADER_LEN);

    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.storage_key.0);
        w.u8(self.index);
        w.u8(self.data_shards);
        w.u8(self.parity_shards);
        w.u32(self.chunk_len);
        w.u32(self.shard_len);
        w.bytes(&self.checksum);
    }

    /// Decodes and validates a header: only the 10 + 5 code is accepted for now, and the lengths
    /// must be exactly those an encoder would write, so `shard_len` can be trusted as a bound.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let header = ShardHeader {
            storage_key: Key256(r.array("storage key")?),
            index: r.u8("shard index")?,
            data_shards: r.u8("data shards")?,
            parity_shards: r.u8("parity shards")?,
            chunk_len: r.u32("chunk length")?,
            shard_len: r.u32("shard length")?,
            checksum: r.array("checksum")?,
        };
        header.validate()?;
        Ok(header)
    }

    /// Checks the fields against each other and the protocol constants.
    pub fn validate(&self) -> Result<(), WireError> {
        if usize::from(self.data_shards) != DATA_SHARDS {
            return Err(WireError::BadValue {
                field: "data shards",
                value: self.data_shards.into(),
            });
        }
        if usize::from(self.parity_shards) != PARITY_SHARDS {
            return Err(WireError::BadValue {
                field: "parity shards",
                value: self.parity_shards.into(),
            });
        }
        if usize::from(self.index) >= TOTAL_SHARDS {
            return Err(WireError::BadValue { field: "shard index", value: self.index.into() });
        }
        let chunk_len = self.chunk_len as usize;
        if !(1..=CHUNK_SIZE).contains(&chunk_len) {
            return Err(WireError::BadLength {
                field: "chunk length",
                len: chunk_len,
                min: 1,
                max: CHUNK_SIZE,
            });
        }
        let len = self.shard_len as usize;
        if len > MAX_SHARD_LEN || !len.is_multiple_of(2) {
            return Err(WireError::BadValue { field: "shard length", value: len as u64 });
        }
        let expected = shard_len(chunk_len);
        if len != expected {
            return Err(WireError::BadLength {
                field: "shard length",
                len,
                min: expected,
                max: expected,
            });
        }
        Ok(())
    }
}

/// A header and the shard's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub header: ShardHeader,
    pub data: Vec<u8>,
}

impl Shard {
    /// Header then data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(ShardHeader::ENCODED_LEN + self.data.len()));
        self.header.encode(&mut w);
        w.bytes(&self.data);
        w.0
    }

    /// Decodes a shard whose data must be exactly `shard_len` bytes. Does not check the
    /// checksum: that is `zmesh_core::erasure::verify`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Shard, WireError> {
        let mut r = Reader::new(bytes);
        let header = ShardHeader::decode(&mut r)?;
        let len = header.shard_len as usize;
        if r.remaining() > len {
            return Err(WireError::BadLength {
                field: "shard data",
                len: r.remaining(),
                min: len,
                max: len,
            });
        }
        let data = r.bytes(len, "shard data")?.to_vec();
        Ok(Shard { header, data })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header_for(chunk_len: usize, index: u8) -> ShardHeader {
        ShardHeader {
            storage_key: Key256([7; 32]),
            index,
            data_shards: DATA_SHARDS as u8,
            parity_shards: PARITY_SHARDS as u8,
            chunk_len: chunk_len as u32,
            shard_len: shard_len(chunk_len) as u32,
            checksum: [9; 32],
        }
    }

    pub(crate) fn shard() -> impl Strategy<Value = Shard> {
        let chunk_len = prop_oneof![1..=4096usize, Just(CHUNK_SIZE), 1..=CHUNK_SIZE];
        (any::<[u8; 32]>(), 0..TOTAL_SHARDS as u8, chunk_len, any::<[u8; 32]>(), any::<u64>())
            .prop_map(|(key, index, chunk_len, checksum, seed)| {
                let header = ShardHeader {
                    storage_key: Key256(key),
                    checksum,
                    ..header_for(chunk_len, index)
                };
                let data = (0..header.shard_len as u64)
                    .map(|i| (seed.wrapping_add(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
                    .collect();
                Shard { header, data }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn round_trip(s in shard()) {
            let bytes = s.to_bytes();
            prop_assert_eq!(bytes.len(), ShardHeader::ENCODED_LEN + s.data.len());
            prop_assert_eq!(Shard::from_bytes(&bytes).unwrap(), s);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Shard::from_bytes(&bytes);
        }

        #[test]
        fn valid_header_with_garbage_never_panics(
            chunk_len in 1..=100usize,
            tail in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut w = Writer::default();
            header_for(chunk_len, 0).encode(&mut w);
            w.bytes(&tail);
            let ok = Shard::from_bytes(&w.0).is_ok();
            prop_assert_eq!(ok, tail.len() == shard_len(chunk_len));
        }
    }

    #[test]
    fn shard_len_is_even_and_covers_the_chunk() {
        assert_eq!(shard_len(1), 2);
        assert_eq!(shard_len(20), 2);
        assert_eq!(shard_len(21), 4);
        assert_eq!(shard_len(CHUNK_SIZE), MAX_SHARD_LEN);
        for len in 1..1000 {
            let s = shard_len(len);
            assert!(s.is_multiple_of(2) && s * DATA_SHARDS >= len && (s - 2) * DATA_SHARDS < len);
        }
    }

    fn decode_header(h: &ShardHeader) -> Result<ShardHeader, WireError> {
        let mut w = Writer::default();
        h.encode(&mut w);
        assert_eq!(w.0.len(), ShardHeader::ENCODED_LEN);
        ShardHeader::decode(&mut Reader::new(&w.0))
    }

    #[test]
    fn bad_headers_are_refused() {
        let good = header_for(1000, 3);
        assert_eq!(decode_header(&good), Ok(good.clone()));
        let cases = [
            ShardHeader { index: 15, ..good.clone() },
            ShardHeader { data_shards: 8, ..good.clone() },
            ShardHeader { parity_shards: 4, ..good.clone() },
            ShardHeader { chunk_len: 0, shard_len: 0, ..good.clone() },
            ShardHeader { chunk_len: CHUNK_SIZE as u32 + 1, ..good.clone() },
            ShardHeader { shard_len: 101, ..good.clone() },
            ShardHeader { shard_len: 102, ..good.clone() },
            ShardHeader { shard_len: u32::MAX - 1, ..good.clone() },
        ];
        for h in cases {
            assert!(decode_header(&h).is_err(), "{h:?} accepted");
        }
        assert!(matches!(
            decode_header(&ShardHeader { data_shards: 8, ..good }),
            Err(WireError::BadValue { field: "data shards", value: 8 })
        ));
    }

    #[test]
    fn data_must_be_exactly_shard_len() {
        let header = header_for(1000, 0);
        let mut s = Shard { header, data: vec![1; 100] };
        assert!(Shard::from_bytes(&s.to_bytes()).is_ok());
        s.data.push(0);
        assert!(matches!(
            Shard::from_bytes(&s.to_bytes()),
            Err(WireError::BadLength { field: "shard data", len: 101, .. })
        ));
        s.data.truncate(99);
        assert!(matches!(
            Shard::from_bytes(&s.to_bytes()),
            Err(WireError::Truncated { field: "shard data", needed: 1 })
        ));
    }
}
