//! The on-disk record of one shard: a fixed header, then the data.
//!
//! ```text
//! offset  len  field
//!      0    1  format version (1)
//!      1   32  owner address
//!     33    8  expires_at_ms, big-endian
//!     41   32  SHA-256 of the data
//!     73    4  data length, big-endian
//!     77    n  data
//! ```
//!
//! The length field repeats what the value length already says; it is there so a truncated or
//! spliced record is detected instead of served.

use zmesh_types::Key256;

use crate::{ShardMeta, StoreError};

const VERSION: u8 = 1;

/// Bytes of a record before its data. Every shard is charged this on top of its data, so a flood
/// of empty shards still runs into the quota.
pub const RECORD_OVERHEAD: u64 = HEADER_LEN as u64;

const HEADER_LEN: usize = 1 + 32 + 8 + 32 + 4;

/// Encodes a record. The caller has already bounded `data` (see `MAX_ENCODED_SHARD_LEN`), so its length
/// fits the 4-byte field.
pub(crate) fn encode(meta: &ShardMeta, data: &[u8]) -> Result<Vec<u8>, StoreError> {
    let len = u32::try_from(data.len())
        .map_err(|_| StoreError::Invalid(format!("data of {} bytes is too long", data.len())))?;
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.push(VERSION);
    out.extend_from_slice(&meta.owner.0);
    out.extend_from_slice(&meta.expires_at_ms.to_be_bytes());
    out.extend_from_slice(&meta.checksum);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// Decodes a record into its meta and a view of its data. Never panics and never allocates: every
/// length is checked against the bytes actually present.
pub(crate) fn decode(bytes: &[u8]) -> Result<(ShardMeta, &[u8]), StoreError> {
    let (header, data) = bytes.split_first_chunk::<HEADER_LEN>().ok_or_else(|| {
        corrupt(format!("record of {} bytes is shorter than its header", bytes.len()))
    })?;
    let (version, rest) = header.split_at(1);
    if version[0] != VERSION {
        return Err(corrupt(format!("unknown record version {}", version[0])));
    }
    let (owner, rest) = split::<32>(rest)?;
    let (expires, rest) = split::<8>(rest)?;
    let (checksum, rest) = split::<32>(rest)?;
    let (len, _) = split::<4>(rest)?;
    let len = u32::from_be_bytes(len);
    if u64::from(len) != data.len() as u64 {
        return Err(corrupt(format!("record says {len} data bytes but holds {}", data.len())));
    }
    let meta =
        ShardMeta { owner: Key256(owner), expires_at_ms: u64::from_be_bytes(expires), checksum };
    Ok((meta, data))
}

fn split<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), StoreError> {
    bytes
        .split_first_chunk::<N>()
        .map(|(head, rest)| (*head, rest))
        .ok_or_else(|| corrupt("record header is truncated".to_string()))
}

fn corrupt(msg: String) -> StoreError {
    StoreError::Corrupt(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta() -> ShardMeta {
        ShardMeta { owner: Key256([7; 32]), expires_at_ms: 1234, checksum: [9; 32] }
    }

    #[test]
    fn round_trip() {
        let rec = encode(&meta(), b"hello").unwrap();
        assert_eq!(rec.len() as u64, RECORD_OVERHEAD + 5);
        let (m, d) = decode(&rec).unwrap();
        assert_eq!(m, meta());
        assert_eq!(d, b"hello");
    }

    #[test]
    fn rejects_bad_version_and_lengths() {
        let mut rec = encode(&meta(), b"hello").unwrap();
        assert!(matches!(decode(&rec[..rec.len() - 1]), Err(StoreError::Corrupt(_))));
        rec.push(0);
        assert!(matches!(decode(&rec), Err(StoreError::Corrupt(_))));
        rec.pop();
        rec[0] = 2;
        assert!(matches!(decode(&rec), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(&[]), Err(StoreError::Corrupt(_))));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
