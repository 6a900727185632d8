//! How a file becomes what relays store: encrypted chunks and an encrypted manifest. No I/O.
//!
//! A blob has a random 16-byte id. Data chunk `i` is stored under chunk id `"{id}/{i}"` and holds
//! at most [`MAX_PLAINTEXT`] bytes, so that once sealed it is exactly one [`CHUNK_SIZE`] coding
//! unit. The manifest (`"{id}/m"`) records the size, the chunk count, the data type and the file
//! name. Both are sealed with the identity's envelope secret and their chunk id as associated
//! data: a relay that swaps two chunks, or serves one blob's chunk for another's, makes the
//! open fail instead of silently returning the wrong bytes. The random id keeps the storage keys
//! of a user's blobs unlinkable to their content.
//!
//! Put writes the data chunks first and the manifest last, so a readable manifest means all the
//! data was stored.

use std::fmt;
use std::str::FromStr;

use zmesh_core::erasure;
use zmesh_core::storage_auth::{self, AuthRequest};
use zmesh_crypto::envelope;
use zmesh_types::constants::CHUNK_SIZE;
use zmesh_types::{DataType, Key256};
use zmesh_wire::store::{Op, OwnerAuth, StoreMessage};

use crate::identity::Identity;
use crate::{ChunkRef, ClientError, Result};

/// Most plaintext bytes in one data chunk: a sealed chunk fills exactly one coding unit.
pub const MAX_PLAINTEXT: usize = CHUNK_SIZE - envelope::OVERHEAD;
/// Envelope context of data chunks.
pub const CHUNK_CONTEXT: &[u8] = b"zmesh/chunk";
/// Envelope context of manifests.
pub const MANIFEST_CONTEXT: &[u8] = b"zmesh/manifest";
/// The manifest format this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// A blob's id: 16 random bytes, written as 32 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId(pub [u8; 16]);

impl BlobId {
    /// A fresh random id.
    pub fn random() -> BlobId {
        let mut id = [0u8; 16];
        fill_random(&mut id);
        BlobId(id)
    }

    /// The chunk id of data chunk `index`: `"{id}/{index}"`.
    pub fn data_chunk_id(&self, index: u64) -> Vec<u8> {
        format!("{self}/{index}").into_bytes()
    }

    /// The chunk id of the manifest: `"{id}/m"`.
    pub fn manifest_chunk_id(&self) -> Vec<u8> {
        format!("{self}/m").into_bytes()
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

impl FromStr for BlobId {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<BlobId> {
        let mut id = [0u8; 16];
        if s.len() != 32 || hex::decode_to_slice(s, &mut id).is_err() {
            return Err(ClientError::BadBlobId(s.to_owned()));
        }
        Ok(BlobId(id))
    }
}

impl ChunkRef {
    /// The chunk id this reference names.
    pub fn chunk_id(&self) -> Vec<u8> {
        match self {
            ChunkRef::Manifest(id) => id.manifest_chunk_id(),
            ChunkRef::Data(id, i) => id.data_chunk_id(*i),
        }
    }
}

/// Number of data chunks for a blob of `size` bytes (0 for an empty blob).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(MAX_PLAINTEXT as u64)
}

/// Plaintext length of data chunk `index` of a blob of `size` bytes.
pub fn chunk_len(size: u64, index: u64) -> u64 {
    let start = index.saturating_mul(MAX_PLAINTEXT as u64);
    size.saturating_sub(start).min(MAX_PLAINTEXT as u64)
}

/// What a blob is: the plaintext of its manifest chunk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Total plaintext bytes.
    pub size: u64,
    /// Number of data chunks.
    pub chunks: u64,
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// The file's name when it was stored (informational).
    pub name: String,
}

impl Manifest {
    pub fn new(size: u64, data_type: DataType, name: impl Into<String>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            size,
            chunks: chunk_count(size),
            data_type,
            name: name.into(),
        }
    }

    /// Seals the manifest of blob `id`.
    pub fn seal(&self, identity: &Identity, id: BlobId) -> Vec<u8> {
        // Serialising a struct of plain fields cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        envelope::seal(
            &identity.envelope_secret(),
            MANIFEST_CONTEXT,
            &id.manifest_chunk_id(),
            &json,
        )
    }

    /// Opens and checks the sealed manifest of blob `id`.
    ///
    /// # Errors
    /// [`ClientError::Decrypt`] if it does not open under this identity and id;
    /// [`ClientError::Inconsistent`] for a manifest whose fields do not add up.
    pub fn open(identity: &Identity, id: BlobId, sealed: &[u8]) -> Result<Manifest> {
        let json = envelope::open(
            &identity.envelope_secret(),
            MANIFEST_CONTEXT,
            &id.manifest_chunk_id(),
            sealed,
        )
        .map_err(|_| ClientError::Decrypt(ChunkRef::Manifest(id)))?;
        let bad = |reason: String| ClientError::Inconsistent { id, reason };
        let m: Manifest =
            serde_json::from_slice(&json).map_err(|e| bad(format!("unreadable manifest: {e}")))?;
        if m.version != MANIFEST_VERSION {
            return Err(bad(format!("manifest version {} is not supported", m.version)));
        }
        if m.chunks != chunk_count(m.size) {
            return Err(bad(format!(
                "manifest says {} chunks for {} bytes, expected {}",
                m.chunks,
                m.size,
                chunk_count(m.size)
            )));
        }
        Ok(m)
    }
}

/// Seals data chunk `index` of blob `id`, binding it to its position.
pub fn seal_chunk(identity: &Identity, id: BlobId, index: u64, plaintext: &[u8]) -> Vec<u8> {
    envelope::seal(&identity.envelope_secret(), CHUNK_CONTEXT, &id.data_chunk_id(index), plaintext)
}

/// Opens data chunk `index` of blob `id`.
///
/// # Errors
/// [`ClientError::Decrypt`] if the chunk was altered, belongs elsewhere, or to another identity.
pub fn open_chunk(identity: &Identity, id: BlobId, index: u64, sealed: &[u8]) -> Result<Vec<u8>> {
    envelope::open(&identity.envelope_secret(), CHUNK_CONTEXT, &id.data_chunk_id(index), sealed)
        .map_err(|_| ClientError::Decrypt(ChunkRef::Data(id, index)))
}

/// Milliseconds since the Unix epoch, as requests carry them.
pub use zmesh_node::clock::unix_ms as now_ms;

fn fill_random(buf: &mut [u8]) {
    // Without randomness no id or nonce is safe to use; there is nothing sensible to fall back to.
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

fn sign(identity: &Identity, request: AuthRequest<'_>, now_ms: u64) -> OwnerAuth {
    let mut nonce = [0u8; 16];
    fill_random(&mut nonce);
    storage_auth::sign(identity.signing(), request, now_ms, nonce)
}

/// A signed `PutChunk` for an already sealed chunk: the signature covers the checksums of the 15
/// shards the relay will cut from it, so holders can check each shard they are handed.
///
/// # Errors
/// [`ClientError::Usage`] for a chunk that is empty or larger than [`CHUNK_SIZE`] (a bug: sealed
/// chunks are never either).
pub fn put_request(
    identity: &Identity,
    chunk: ChunkRef,
    sealed: Vec<u8>,
    data_type: DataType,
    now_ms: u64,
) -> Result<StoreMessage> {
    let chunk_id = chunk.chunk_id();
    let storage_key = Key256::storage_key(&identity.address(), &chunk_id);
    let shards = erasure::encode(storage_key, &sealed)
        .map_err(|e| ClientError::Usage(format!("cannot code {chunk}: {e}")))?;
    let auth = sign(
        identity,
        AuthRequest {
            op: Op::Put,
            data_type: Some(data_type),
            chunk_id: &chunk_id,
            shard_checksums: shards.iter().map(|s| s.header.checksum).collect(),
            chunk_len: sealed.len() as u32,
        },
        now_ms,
    );
    Ok(StoreMessage::PutChunk { auth, chunk: sealed })
}

fn plain_auth(identity: &Identity, op: Op, chunk: ChunkRef, now_ms: u64) -> OwnerAuth {
    let chunk_id = chunk.chunk_id();
    let request = AuthRequest {
        op,
        data_type: None,
        chunk_id: &chunk_id,
        shard_checksums: vec![],
        chunk_len: 0,
    };
    sign(identity, request, now_ms)
}

/// A signed `GetChunk`.
pub fn get_request(identity: &Identity, chunk: ChunkRef, now_ms: u64) -> StoreMessage {
    StoreMessage::GetChunk { auth: plain_auth(identity, Op::Get, chunk, now_ms) }
}

/// A signed `DeleteChunk`.
pub fn delete_request(identity: &Identity, chunk: ChunkRef, now_ms: u64) -> StoreMessage {
    StoreMessage::DeleteChunk { auth: plain_auth(identity, Op::Delete, chunk, now_ms) }
}

#[cfg(test)]
pub(crate) mod tests {
    use zmesh_core::storage_auth::ReplayGuard;
    use zmesh_crypto::sign::SigningIdentity;

    use super::*;

    pub(crate) fn identity() -> Identity {
        Identity::from_signing(SigningIdentity::generate())
    }

    #[test]
    fn a_sealed_full_chunk_is_exactly_one_coding_unit() {
        let me = identity();
        let sealed = seal_chunk(&me, BlobId::random(), 0, &vec![7u8; MAX_PLAINTEXT]);
        assert_eq!(sealed.len(), CHUNK_SIZE);
    }

    #[test]
    fn chunking_at_the_boundaries() {
        let max = MAX_PLAINTEXT as u64;
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_len(1, 0), 1);
        assert_eq!(chunk_count(max), 1);
        assert_eq!(chunk_len(max, 0), max);
        assert_eq!(chunk_count(max + 1), 2);
        assert_eq!(chunk_len(max + 1, 0), max);
        assert_eq!(chunk_len(max + 1, 1), 1);
        assert_eq!(chunk_len(max + 1, 2), 0);
        assert_eq!(chunk_count(50 * 1024 * 1024), 13);
    }

    #[test]
    fn blob_ids_print_and_parse() {
        let id = BlobId::random();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<BlobId>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<BlobId>().unwrap(), id);
        assert_eq!(id.data_chunk_id(3), format!("{s}/3").into_bytes());
        assert_eq!(id.manifest_chunk_id(), format!("{s}/m").into_bytes());
        for bad in ["", "abc", &s[..31], &format!("{s}0"), &format!("{}zz", &s[..30])] {
            assert!(matches!(bad.parse::<BlobId>(), Err(ClientError::BadBlobId(_))), "{bad}");
        }
    }

    #[test]
    fn the_manifest_round_trips_and_is_bound_to_its_blob() {
        let me = identity();
        let id = BlobId::random();
        let m = Manifest::new(12345, DataType::Media, "file.bin");
        let sealed = m.seal(&me, id);
        assert_eq!(Manifest::open(&me, id, &sealed).unwrap(), m);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version":1,"size":12345,"chunks":1,"type":"media","name":"file.bin"})
        );
        assert!(matches!(
            Manifest::open(&me, BlobId::random(), &sealed),
            Err(ClientError::Decrypt(ChunkRef::Manifest(_)))
        ));
        assert!(matches!(Manifest::open(&identity(), id, &sealed), Err(ClientError::Decrypt(_))));
        // A manifest is not a data chunk, even at the same position.
        assert!(open_chunk(&me, id, 0, &sealed).is_err());
    }

    #[test]
    fn a_manifest_that_does_not_add_up_is_refused() {
        let me = identity();
        let id = BlobId::random();
        let mut m = Manifest::new(10, DataType::KeyBackup, "k");
        m.chunks = 2;
        let e = Manifest::open(&me, id, &m.seal(&me, id)).unwrap_err();
        assert!(matches!(e, ClientError::Inconsistent { .. }), "{e}");
    }

    #[test]
    fn chunks_are_bound_to_their_position() {
        let me = identity();
        let id = BlobId::random();
        let a = seal_chunk(&me, id, 0, b"first");
        let b = seal_chunk(&me, id, 1, b"second");
        assert_eq!(open_chunk(&me, id, 0, &a).unwrap(), b"first");
        assert_eq!(open_chunk(&me, id, 1, &b).unwrap(), b"second");
        // Swapped by a relay: neither opens.
        assert!(matches!(
            open_chunk(&me, id, 0, &b),
            Err(ClientError::Decrypt(ChunkRef::Data(_, 0)))
        ));
        assert!(open_chunk(&me, id, 1, &a).is_err());
        // Another blob's chunk at the same index does not open either.
        assert!(open_chunk(&me, BlobId::random(), 0, &a).is_err());
        // Nor under another identity.
        assert!(open_chunk(&identity(), id, 0, &a).is_err());
        let e = open_chunk(&me, id, 0, &b).unwrap_err();
        assert!(e.to_string().starts_with(&format!("chunk 0 of blob {id}")), "{e}");
    }

    #[test]
    fn a_put_request_carries_the_checksums_of_the_shards_and_verifies() {
        let me = identity();
        let id = BlobId::random();
        let chunk = ChunkRef::Data(id, 2);
        let sealed = seal_chunk(&me, id, 2, &vec![1u8; 100_000]);
        let now = now_ms();
        let StoreMessage::PutChunk { auth, chunk: sent } =
            put_request(&me, chunk, sealed.clone(), DataType::MessageBackup, now).unwrap()
        else {
            panic!("not a PutChunk");
        };
        assert_eq!(sent, sealed);
        let key = Key256::storage_key(&me.address(), &id.data_chunk_id(2));
        assert_eq!(auth.storage_key, key);
        assert_eq!(auth.chunk_id, id.data_chunk_id(2));
        assert_eq!(auth.chunk_len as usize, sealed.len());
        let expected: Vec<[u8; 32]> =
            erasure::encode(key, &sealed).unwrap().iter().map(|s| s.header.checksum).collect();
        assert_eq!(auth.shard_checksums, expected);
        let mut guard = ReplayGuard::new(16);
        let v = storage_auth::verify(&auth, Op::Put, now, &mut guard).unwrap();
        assert_eq!(v.owner, me.address());
        assert_eq!(v.data_type, Some(DataType::MessageBackup));
    }

    #[test]
    fn get_and_delete_requests_verify_and_use_fresh_nonces() {
        let me = identity();
        let chunk = ChunkRef::Manifest(BlobId::random());
        let now = now_ms();
        let mut guard = ReplayGuard::new(16);
        let (StoreMessage::GetChunk { auth: g }, StoreMessage::DeleteChunk { auth: d }) =
            (get_request(&me, chunk, now), delete_request(&me, chunk, now))
        else {
            panic!("wrong message types");
        };
        storage_auth::verify(&g, Op::Get, now, &mut guard).unwrap();
        storage_auth::verify(&d, Op::Delete, now, &mut guard).unwrap();
        assert_ne!(g.nonce, d.nonce);
        assert_eq!(g.timestamp_ms, now);
    }
}
