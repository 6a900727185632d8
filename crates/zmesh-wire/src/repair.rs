//! What anti-entropy repair adds to the storage protocol: the placement record a warden keeps
//! for each chunk, and the per-shard health a holder reports back.

use zmesh_types::constants::TOTAL_SHARDS;

use crate::{MAX_PEER_ID, Reader, WireError, Writer};

/// Where a chunk's shards live, as the chunk's warden last established it. Every holder keeps a
/// copy, so whichever of them becomes warden after churn knows whom to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRecord {
    /// The warden's storage-clock time (Unix ms) when it wrote this record; a newer record
    /// replaces an older one, never the reverse.
    pub version: u64,
    /// `holders[i]` is the PeerId (bytes) of the node holding shard `i`, empty when none is
    /// known. Always `TOTAL_SHARDS` entries.
    pub holders: Vec<Vec<u8>>,
}

impl PlacementRecord {
    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.version);
        for i in 0..TOTAL_SHARDS {
            let peer = self.holders.get(i).filter(|p| p.len() <= MAX_PEER_ID);
            w.short_bytes(peer.map(Vec::as_slice).unwrap_or_default());
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let version = r.u64("record version")?;
        let mut holders = Vec::with_capacity(TOTAL_SHARDS);
        for _ in 0..TOTAL_SHARDS {
            holders.push(r.short_bytes("record holder", 0, MAX_PEER_ID)?.to_vec());
        }
        Ok(PlacementRecord { version, holders })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode(&mut w);
        w.0
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        Self::decode(&mut Reader::new(bytes))
    }
}

/// The state of one shard as its holder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Present, its bytes match both checksums, and it is the shard the owner signed for.
    Healthy,
    /// Present but damaged or not the signed shard; the holder has dropped it.
    Corrupt,
    /// Past its expiry and still on disk (the holder has not deleted it yet).
    Expired,
}

impl ShardState {
    fn code(self) -> u8 {
        match self {
            ShardState::Healthy => 0,
            ShardState::Corrupt => 1,
            ShardState::Expired => 2,
        }
    }

    fn from_code(c: u8) -> Result<Self, WireError> {
        match c {
            0 => Ok(ShardState::Healthy),
            1 => Ok(ShardState::Corrupt),
            2 => Ok(ShardState::Expired),
            v => Err(WireError::BadValue { field: "shard state", value: v.into() }),
        }
    }
}

/// One entry of a holder's health report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHealth {
    pub index: u8,
    pub state: ShardState,
    pub expires_at_ms: u64,
}

impl ShardHealth {
    pub fn encode(&self, w: &mut Writer) {
        w.u8(self.index);
        w.u8(self.state.code());
        w.u64(self.expires_at_ms);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let index = r.u8("shard index")?;
        if usize::from(index) >= TOTAL_SHARDS {
            return Err(WireError::BadValue { field: "shard index", value: index.into() });
        }
        Ok(ShardHealth {
            index,
            state: ShardState::from_code(r.u8("shard state")?)?,
            expires_at_ms: r.u64("expiry")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use proptest::prelude::*;

    pub fn record() -> impl Strategy<Value = PlacementRecord> {
        (
            any::<u64>(),
            proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..=MAX_PEER_ID),
                TOTAL_SHARDS,
            ),
        )
            .prop_map(|(version, holders)| PlacementRecord { version, holders })
    }

    pub fn health() -> impl Strategy<Value = ShardHealth> {
        (0..TOTAL_SHARDS as u8, 0u8..3, any::<u64>()).prop_map(|(index, state, expires_at_ms)| {
            ShardHealth {
                index,
                state: ShardState::from_code(state).unwrap_or(ShardState::Healthy),
                expires_at_ms,
            }
        })
    }

    proptest! {
        #[test]
        fn records_round_trip(record in record()) {
            prop_assert_eq!(PlacementRecord::from_bytes(&record.to_bytes()).unwrap(), record);
        }

        #[test]
        fn garbage_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = PlacementRecord::from_bytes(&bytes);
        }
    }
}
