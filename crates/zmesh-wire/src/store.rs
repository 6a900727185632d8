//! The storage protocol (`/zmesh/store/1.0`): a client asks a relay to put, get or delete a
//! chunk; the relay erasure-codes it and asks holders to store, fetch or delete shards.
//!
//! Every request that touches a user's data carries an [`OwnerAuth`] signed by the owner's
//! identity key. A PUT's signature covers the checksums of all 15 shards, so each holder can check
//! that the shard it is handed is the one the owner encoded, even though a relay did the coding.

use zmesh_types::Key256;
use zmesh_types::constants::{CHUNK_SIZE, TOTAL_SHARDS};

use crate::repair::{PlacementRecord, ShardHealth};
use crate::shard::Shard;
use crate::{Message, Reader, WireError, Writer};

/// Longest chunk id in bytes.
pub const MAX_CHUNK_ID: usize = 64;
/// Domain separation for owner signatures.
pub const AUTH_DOMAIN: &[u8] = b"zmesh/owner-auth/v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    Delete,
}

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Put => 1,
            Op::Get => 2,
            Op::Delete => 3,
        }
    }
    fn from_code(c: u8) -> Result<Op, WireError> {
        match c {
            1 => Ok(Op::Put),
            2 => Ok(Op::Get),
            3 => Ok(Op::Delete),
            v => Err(WireError::BadValue { field: "op", value: v.into() }),
        }
    }
}

/// The owner's signed statement authorising one operation on one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerAuth {
    /// Ed25519 public key; the owner address is its SHA-256.
    pub public_key: [u8; 32],
    pub op: Op,
    /// Data-type code (fixes the TTL); PUT only, 0 otherwise.
    pub data_type: u8,
    pub chunk_id: Vec<u8>,
    /// `SHA-256(owner_address ‖ ":" ‖ chunk_id)`; holders recompute it.
    pub storage_key: Key256,
    pub timestamp_ms: u64,
    /// Random; holders refuse a nonce seen within the replay window.
    pub nonce: [u8; 16],
    /// PUT: SHA-256 of each of the 15 shards, by index, and the chunk length. Empty / 0 otherwise.
    pub shard_checksums: Vec<[u8; 32]>,
    pub chunk_len: u32,
    pub signature: [u8; 64],
}

impl OwnerAuth {
    /// The bytes the owner signs: the domain, then every field but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer(AUTH_DOMAIN.to_vec());
        self.encode_unsigned(&mut w);
        w.0
    }

    fn encode_unsigned(&self, w: &mut Writer) {
        w.bytes(&self.public_key);
        w.u8(self.op.code());
        w.u8(self.data_type);
        w.short_bytes(&self.chunk_id);
        w.bytes(&self.storage_key.0);
        w.u64(self.timestamp_ms);
        w.bytes(&self.nonce);
        let sums = &self.shard_checksums[..self.shard_checksums.len().min(TOTAL_SHARDS)];
        w.u8(sums.len() as u8);
        for s in sums {
            w.bytes(s);
        }
        w.u32(self.chunk_len);
    }

    pub fn encode(&self, w: &mut Writer) {
        self.encode_unsigned(w);
        w.bytes(&self.signature);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let public_key = r.array("public key")?;
        let op = Op::from_code(r.u8("op")?)?;
        let data_type = r.u8("data type")?;
        let chunk_id = r.short_bytes("chunk id", 1, MAX_CHUNK_ID)?.to_vec();
        let storage_key = Key256(r.array("storage key")?);
        let timestamp_ms = r.u64("timestamp")?;
        let nonce = r.array("nonce")?;
        let count = r.count_u8("shard checksums", TOTAL_SHARDS)?;
        if count != 0 && count != TOTAL_SHARDS {
            return Err(WireError::BadLength {
                field: "shard checksums",
                len: count,
                min: TOTAL_SHARDS,
                max: TOTAL_SHARDS,
            });
        }
        let mut shard_checksums = Vec::with_capacity(count);
        for _ in 0..count {
            shard_checksums.push(r.array("shard checksum")?);
        }
        let chunk_len = r.u32("chunk length")?;
        if chunk_len as usize > CHUNK_SIZE {
            return Err(WireError::BadValue { field: "chunk length", value: chunk_len.into() });
        }
        let signature = r.array("signature")?;
        Ok(OwnerAuth {
            public_key,
            op,
            data_type,
            chunk_id,
            storage_key,
            timestamp_ms,
            nonce,
            shard_checksums,
            chunk_len,
            signature,
        })
    }
}

/// Outcome of a storage request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// The node is out of space (`storage.max_bytes`).
    InsufficientStorage,
    /// Bad signature, wrong owner, or a key that does not belong to the signer.
    Unauthorized,
    /// Timestamp outside the replay window, or a nonce already seen.
    Replay,
    NotFound,
    /// Fewer healthy shards than needed to decode.
    NotEnoughShards,
    /// Too few nodes with capacity to place 15 shards.
    NoPlacement,
    BadRequest,
    Internal,
    Other(u8),
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::InsufficientStorage => 1,
            Status::Unauthorized => 2,
            Status::Replay => 3,
            Status::NotFound => 4,
            Status::NotEnoughShards => 5,
            Status::NoPlacement => 6,
            Status::BadRequest => 7,
            Status::Internal => 8,
            Status::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> Status {
        match c {
            0 => Status::Ok,
            1 => Status::InsufficientStorage,
            2 => Status::Unauthorized,
            3 => Status::Replay,
            4 => Status::NotFound,
            5 => Status::NotEnoughShards,
            6 => Status::NoPlacement,
            7 => Status::BadRequest,
            8 => Status::Internal,
            c => Status::Other(c),
        }
    }
}

/// A status with a one-line reason for humans, and counts where they matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
    /// Shards placed, found or deleted.
    pub count: u16,
    /// Shards needed (for NotEnoughShards) or placements wanted.
    pub needed: u16,
}

/// Longest `Outcome::detail` in bytes.
pub const MAX_DETAIL: usize = 255;

impl Outcome {
    pub fn ok(count: u16) -> Self {
        Outcome { status: Status::Ok, detail: String::new(), count, needed: 0 }
    }

    pub fn error(status: Status, detail: impl Into<String>) -> Self {
        Outcome { status, detail: detail.into(), count: 0, needed: 0 }
    }

    fn encode(&self, w: &mut Writer) {
        w.u8(self.status.code());
        let mut end = self.detail.len().min(MAX_DETAIL);
        while !self.detail.is_char_boundary(end) {
            end -= 1;
        }
        w.short_bytes(&self.detail.as_bytes()[..end]);
        w.u16(self.count);
        w.u16(self.needed);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let status = Status::from_code(r.u8("status")?);
        let detail = r.short_bytes("detail", 0, MAX_DETAIL)?;
        let detail = std::str::from_utf8(detail)
            .map_err(|_| WireError::BadUtf8 { field: "detail" })?
            .to_owned();
        Ok(Outcome { status, detail, count: r.u16("count")?, needed: r.u16("needed")? })
    }
}

pub const TYPE_PUT_CHUNK: u8 = 0x40;
pub const TYPE_GET_CHUNK: u8 = 0x41;
pub const TYPE_DELETE_CHUNK: u8 = 0x42;
pub const TYPE_STORE_SHARD: u8 = 0x43;
pub const TYPE_FETCH_SHARDS: u8 = 0x44;
pub const TYPE_DELETE_SHARDS: u8 = 0x45;
pub const TYPE_CAPACITY: u8 = 0x46;
pub const TYPE_HEALTH_CHECK: u8 = 0x47;
pub const TYPE_REPAIR_FETCH: u8 = 0x48;
pub const TYPE_REPAIR_STORE: u8 = 0x49;
pub const TYPE_RESULT: u8 = 0x50;
pub const TYPE_CHUNK: u8 = 0x51;
pub const TYPE_SHARDS: u8 = 0x52;
pub const TYPE_CAPACITY_INFO: u8 = 0x53;
pub const TYPE_HEALTH: u8 = 0x54;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreMessage {
    /// Client → relay: store this (already encrypted) chunk.
    PutChunk {
        auth: OwnerAuth,
        chunk: Vec<u8>,
    },
    /// Client → relay: return the chunk.
    GetChunk {
        auth: OwnerAuth,
    },
    /// Client → relay: delete the chunk everywhere.
    DeleteChunk {
        auth: OwnerAuth,
    },
    /// Relay → holder: keep this shard.
    StoreShard {
        auth: OwnerAuth,
        shard: Shard,
    },
    /// Relay → holder: send the shards you hold under `auth.storage_key`.
    FetchShards {
        auth: OwnerAuth,
    },
    /// Relay → holder: delete the shards you hold under `auth.storage_key`.
    DeleteShards {
        auth: OwnerAuth,
    },
    /// Anyone → holder: can you take more shards?
    Capacity,
    /// Warden → holder: which shards of this chunk do you hold, and are they healthy? Carries
    /// the warden's placement record, which the holder keeps if it is newer than its own; the
    /// check itself tells the holder a warden is at work, so the next in line stays silent.
    HealthCheck {
        storage_key: Key256,
        record: Option<PlacementRecord>,
    },
    /// Warden → holder: send me shard `index`, to rebuild the chunk (answered with `Shards`).
    RepairFetch {
        storage_key: Key256,
        index: u8,
    },
    /// Warden → new holder: keep this rebuilt shard. `certificate` is the owner's original
    /// signed PUT, whose checksums the shard must match and whose time fixes its expiry.
    RepairStore {
        certificate: OwnerAuth,
        shard: Shard,
        record: PlacementRecord,
    },
    /// The answer to PutChunk, DeleteChunk, StoreShard, DeleteShards.
    Result(Outcome),
    /// The answer to GetChunk.
    Chunk {
        outcome: Outcome,
        chunk: Vec<u8>,
    },
    /// The answer to FetchShards.
    Shards {
        outcome: Outcome,
        shards: Vec<Shard>,
    },
    CapacityInfo {
        free_bytes: u64,
        accepting: bool,
    },
    /// The answer to HealthCheck: the holder's shards of the chunk, whether it has the owner's
    /// certificate for it, and its own placement record when that is newer than the warden's.
    Health {
        outcome: Outcome,
        has_certificate: bool,
        shards: Vec<ShardHealth>,
        record: Option<PlacementRecord>,
    },
}

fn encode_record(w: &mut Writer, record: &Option<PlacementRecord>) {
    match record {
        Some(r) => {
            w.u8(1);
            r.encode(w);
        }
        None => w.u8(0),
    }
}

fn decode_record(r: &mut Reader<'_>) -> Result<Option<PlacementRecord>, WireError> {
    match r.u8("record flag")? {
        0 => Ok(None),
        1 => Ok(Some(PlacementRecord::decode(r)?)),
        v => Err(WireError::BadValue { field: "record flag", value: v.into() }),
    }
}

impl Message for StoreMessage {
    // The largest message is a FetchShards answer: up to 15 shards of a 4 MiB chunk.
    const MAX_FRAME: usize = 8 * 1024 * 1024;

    fn encode_body(&self, w: &mut Writer) {
        match self {
            StoreMessage::PutChunk { auth, chunk } => {
                w.u8(TYPE_PUT_CHUNK);
                auth.encode(w);
                w.u32(chunk.len() as u32);
                w.bytes(chunk);
            }
            StoreMessage::GetChunk { auth } => {
                w.u8(TYPE_GET_CHUNK);
                auth.encode(w);
            }
            StoreMessage::DeleteChunk { auth } => {
                w.u8(TYPE_DELETE_CHUNK);
                auth.encode(w);
            }
            StoreMessage::StoreShard { auth, shard } => {
                w.u8(TYPE_STORE_SHARD);
                auth.encode(w);
                let bytes = shard.to_bytes();
                w.u32(bytes.len() as u32);
                w.bytes(&bytes);
            }
            StoreMessage::FetchShards { auth } => {
                w.u8(TYPE_FETCH_SHARDS);
                auth.encode(w);
            }
            StoreMessage::DeleteShards { auth } => {
                w.u8(TYPE_DELETE_SHARDS);
                auth.encode(w);
            }
            StoreMessage::Capacity => w.u8(TYPE_CAPACITY),
            StoreMessage::HealthCheck { storage_key, record } => {
                w.u8(TYPE_HEALTH_CHECK);
                w.bytes(&storage_key.0);
                encode_record(w, record);
            }
            StoreMessage::RepairFetch { storage_key, index } => {
                w.u8(TYPE_REPAIR_FETCH);
                w.bytes(&storage_key.0);
                w.u8(*index);
            }
            StoreMessage::RepairStore { certificate, shard, record } => {
                w.u8(TYPE_REPAIR_STORE);
                certificate.encode(w);
                let bytes = shard.to_bytes();
                w.u32(bytes.len() as u32);
                w.bytes(&bytes);
                record.encode(w);
            }
            StoreMessage::Health { outcome, has_certificate, shards, record } => {
                w.u8(TYPE_HEALTH);
                outcome.encode(w);
                w.u8(*has_certificate as u8);
                let shards = &shards[..shards.len().min(TOTAL_SHARDS)];
                w.u8(shards.len() as u8);
                for s in shards {
                    s.encode(w);
                }
                encode_record(w, record);
            }
            StoreMessage::Result(outcome) => {
                w.u8(TYPE_RESULT);
                outcome.encode(w);
            }
            StoreMessage::Chunk { outcome, chunk } => {
                w.u8(TYPE_CHUNK);
                outcome.encode(w);
                w.u32(chunk.len() as u32);
                w.bytes(chunk);
            }
            StoreMessage::Shards { outcome, shards } => {
                w.u8(TYPE_SHARDS);
                outcome.encode(w);
                let shards = &shards[..shards.len().min(TOTAL_SHARDS)];
                w.u8(shards.len() as u8);
                for s in shards {
                    let bytes = s.to_bytes();
                    w.u32(bytes.len() as u32);
                    w.bytes(&bytes);
                }
            }
            StoreMessage::CapacityInfo { free_bytes, accepting } => {
                w.u8(TYPE_CAPACITY_INFO);
                w.u64(*free_bytes);
                w.u8(*accepting as u8);
            }
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let chunk = |r: &mut Reader<'_>| -> Result<Vec<u8>, WireError> {
            let len = r.u32("chunk length")? as usize;
            if len > CHUNK_SIZE {
                return Err(WireError::BadLength { field: "chunk", len, min: 0, max: CHUNK_SIZE });
            }
            Ok(r.bytes(len, "chunk")?.to_vec())
        };
        let shard = |r: &mut Reader<'_>| -> Result<Shard, WireError> {
            let len = r.u32("shard length")? as usize;
            Shard::from_bytes(r.bytes(len, "shard")?)
        };
        match r.u8("type")? {
            TYPE_PUT_CHUNK => {
                let auth = OwnerAuth::decode(&mut r)?;
                Ok(StoreMessage::PutChunk { auth, chunk: chunk(&mut r)? })
            }
            TYPE_GET_CHUNK => Ok(StoreMessage::GetChunk { auth: OwnerAuth::decode(&mut r)? }),
            TYPE_DELETE_CHUNK => Ok(StoreMessage::DeleteChunk { auth: OwnerAuth::decode(&mut r)? }),
            TYPE_STORE_SHARD => {
                let auth = OwnerAuth::decode(&mut r)?;
                Ok(StoreMessage::StoreShard { auth, shard: shard(&mut r)? })
            }
            TYPE_FETCH_SHARDS => Ok(StoreMessage::FetchShards { auth: OwnerAuth::decode(&mut r)? }),
            TYPE_DELETE_SHARDS => {
                Ok(StoreMessage::DeleteShards { auth: OwnerAuth::decode(&mut r)? })
            }
            TYPE_CAPACITY => Ok(StoreMessage::Capacity),
            TYPE_HEALTH_CHECK => Ok(StoreMessage::HealthCheck {
                storage_key: Key256(r.array("storage key")?),
                record: decode_record(&mut r)?,
            }),
            TYPE_REPAIR_FETCH => {
                let storage_key = Key256(r.array("storage key")?);
                let index = r.u8("shard index")?;
                if usize::from(index) >= TOTAL_SHARDS {
                    return Err(WireError::BadValue { field: "shard index", value: index.into() });
                }
                Ok(StoreMessage::RepairFetch { storage_key, index })
            }
            TYPE_REPAIR_STORE => {
                let certificate = OwnerAuth::decode(&mut r)?;
                let shard = shard(&mut r)?;
                Ok(StoreMessage::RepairStore {
                    certificate,
                    shard,
                    record: PlacementRecord::decode(&mut r)?,
                })
            }
            TYPE_HEALTH => {
                let outcome = Outcome::decode(&mut r)?;
                let has_certificate = r.u8("certificate flag")? != 0;
                let count = r.count_u8("shard health", TOTAL_SHARDS)?;
                let mut shards = Vec::with_capacity(count);
                for _ in 0..count {
                    shards.push(ShardHealth::decode(&mut r)?);
                }
                Ok(StoreMessage::Health {
                    outcome,
                    has_certificate,
                    shards,
                    record: decode_record(&mut r)?,
                })
            }
            TYPE_RESULT => Ok(StoreMessage::Result(Outcome::decode(&mut r)?)),
            TYPE_CHUNK => {
                let outcome = Outcome::decode(&mut r)?;
                Ok(StoreMessage::Chunk { outcome, chunk: chunk(&mut r)? })
            }
            TYPE_SHARDS => {
                let outcome = Outcome::decode(&mut r)?;
                let count = r.count_u8("shards", TOTAL_SHARDS)?;
                let mut shards = Vec::with_capacity(count);
                for _ in 0..count {
                    shards.push(shard(&mut r)?);
                }
                Ok(StoreMessage::Shards { outcome, shards })
            }
            TYPE_CAPACITY_INFO => Ok(StoreMessage::CapacityInfo {
                free_bytes: r.u64("free bytes")?,
                accepting: r.u8("accepting")? != 0,
            }),
            t => Err(WireError::UnknownType(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repair::strategy::{health, record};
    use crate::shard::tests::shard;
    use crate::{decode_frame, encode_frame};
    use proptest::prelude::*;

    fn auth() -> impl Strategy<Value = OwnerAuth> {
        (
            any::<[u8; 32]>(),
            prop_oneof![Just(Op::Put), Just(Op::Get), Just(Op::Delete)],
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 1..=MAX_CHUNK_ID),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<[u8; 16]>(),
            prop_oneof![Just(0usize), Just(TOTAL_SHARDS)],
            0..=CHUNK_SIZE as u32,
            any::<[u8; 32]>(),
        )
            .prop_map(
                |(pk, op, data_type, chunk_id, key, ts, nonce, sums, chunk_len, sig)| OwnerAuth {
                    public_key: pk,
                    op,
                    data_type,
                    chunk_id,
                    storage_key: Key256(key),
                    timestamp_ms: ts,
                    nonce,
                    shard_checksums: (0..sums).map(|i| [i as u8; 32]).collect(),
                    chunk_len,
                    signature: [sig, sig].concat().try_into().unwrap(),
                },
            )
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        (any::<u8>(), "[ -~]{0,255}", any::<u16>(), any::<u16>()).prop_map(
            |(s, detail, count, needed)| Outcome {
                status: Status::from_code(s),
                detail,
                count,
                needed,
            },
        )
    }

    fn message() -> impl Strategy<Value = StoreMessage> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..2048);
        prop_oneof![
            (auth(), bytes.clone())
                .prop_map(|(auth, chunk)| StoreMessage::PutChunk { auth, chunk }),
            auth().prop_map(|auth| StoreMessage::GetChunk { auth }),
            auth().prop_map(|auth| StoreMessage::DeleteChunk { auth }),
            (auth(), shard()).prop_map(|(auth, shard)| StoreMessage::StoreShard { auth, shard }),
            auth().prop_map(|auth| StoreMessage::FetchShards { auth }),
            auth().prop_map(|auth| StoreMessage::DeleteShards { auth }),
            Just(StoreMessage::Capacity),
            outcome().prop_map(StoreMessage::Result),
            (outcome(), bytes).prop_map(|(outcome, chunk)| StoreMessage::Chunk { outcome, chunk }),
            (outcome(), proptest::collection::vec(shard(), 0..3))
                .prop_map(|(outcome, shards)| StoreMessage::Shards { outcome, shards }),
            (any::<u64>(), any::<bool>()).prop_map(|(free_bytes, accepting)| {
                StoreMessage::CapacityInfo { free_bytes, accepting }
            }),
            (any::<[u8; 32]>(), proptest::option::of(record())).prop_map(|(key, record)| {
                StoreMessage::HealthCheck { storage_key: Key256(key), record }
            }),
            (any::<[u8; 32]>(), 0..TOTAL_SHARDS as u8).prop_map(|(key, index)| {
                StoreMessage::RepairFetch { storage_key: Key256(key), index }
            }),
            (auth(), shard(), record()).prop_map(|(certificate, shard, record)| {
                StoreMessage::RepairStore { certificate, shard, record }
            }),
            (
                outcome(),
                any::<bool>(),
                proptest::collection::vec(health(), 0..=TOTAL_SHARDS),
                proptest::option::of(record()),
            )
                .prop_map(|(outcome, has_certificate, shards, record)| {
                    StoreMessage::Health { outcome, has_certificate, shards, record }
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn round_trip(m in message()) {
            let bytes = encode_frame(&m);
            prop_assert!(bytes.len() <= StoreMessage::MAX_FRAME);
            let (decoded, used) = decode_frame::<StoreMessage>(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(decoded, m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = StoreMessage::decode_body(&bytes);
        }

        #[test]
        fn the_signature_covers_every_field(a in auth(), flip in 0usize..200) {
            let signed = a.signed_bytes();
            let mut w = Writer::default();
            a.encode(&mut w);
            // The encoding is the signed fields (after the domain) followed by the signature.
            prop_assert_eq!(&w.0[..w.0.len() - 64], &signed[AUTH_DOMAIN.len()..]);
            let mut other = a.clone();
            other.timestamp_ms ^= 1 << (flip % 64);
            prop_assert_ne!(other.signed_bytes(), signed);
        }
    }

    #[test]
    fn an_oversized_chunk_is_refused_before_allocation() {
        let mut w = Writer::default();
        w.u8(TYPE_CHUNK);
        Outcome::ok(0).encode(&mut w);
        w.u32(u32::MAX);
        assert!(matches!(StoreMessage::decode_body(&w.0), Err(WireError::BadLength { .. })));
    }
}
