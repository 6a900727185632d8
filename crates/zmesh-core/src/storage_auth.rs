//! Owner authorisation of storage requests, checked by every holder (not only the relay): the
//! request is signed by the key whose address owns the storage key, for this operation, recently,
//! and only once.

use std::collections::HashMap;

use zmesh_crypto::sign::{PublicIdentity, SigningIdentity};
use zmesh_types::{DataType, Key256};
use zmesh_wire::store::{Op, OwnerAuth};

/// How far a request's timestamp may be from the holder's clock, either way. Clocks of honest
/// nodes agree within seconds; a request older than this is refused as a possible replay.
pub const REPLAY_WINDOW_MS: u64 = 120_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("request authorises {got:?}, not {expected:?}")]
    WrongOp { expected: Op, got: Op },
    #[error(
        "request timestamp is {skew_ms} ms from this node's clock (window {REPLAY_WINDOW_MS} ms)"
    )]
    Stale { skew_ms: u64 },
    #[error("request nonce was already used")]
    Replayed,
    #[error("invalid or weak owner public key")]
    BadKey,
    #[error("the storage key does not belong to the signing owner")]
    NotOwner,
    #[error("bad owner signature")]
    BadSignature,
    #[error("a PUT must carry the checksums of all 15 shards and a known data type")]
    Malformed,
}

/// A verified request: who owns the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub owner: Key256,
    /// PUT only: the data type, which fixes the expiry.
    pub data_type: Option<DataType>,
}

/// Remembers nonces for the replay window. Bounded: entries expire with the window, and past
/// `capacity` live entries new requests are refused rather than memory growing.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: HashMap<[u8; 16], u64>,
    capacity: usize,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        ReplayGuard { seen: HashMap::new(), capacity }
    }

    /// Records `nonce`; `false` if it was seen within the window (or the guard is full).
    fn admit(&mut self, nonce: [u8; 16], now_ms: u64) -> bool {
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, expires| *expires > now_ms);
        }
        if self.seen.len() >= self.capacity {
            return false;
        }
        match self.seen.get(&nonce) {
            Some(expires) if *expires > now_ms => false,
            _ => {
                self.seen.insert(nonce, now_ms + 2 * REPLAY_WINDOW_MS);
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// What an owner signs to authorise one operation on one chunk.
#[derive(Debug, Clone)]
pub struct AuthRequest<'a> {
    pub op: Op,
    pub data_type: Option<DataType>,
    pub chunk_id: &'a [u8],
    pub shard_checksums: Vec<[u8; 32]>,
    pub chunk_len: u32,
}

/// Builds and signs an [`OwnerAuth`] (client side).
pub fn sign(
    identity: &SigningIdentity,
    request: AuthRequest<'_>,
    now_ms: u64,
    nonce: [u8; 16],
) -> OwnerAuth {
    let public = identity.public();
    let owner = Key256(public.address());
    let mut auth = OwnerAuth {
        public_key: *public.as_bytes(),
        op: request.op,
        data_type: request.data_type.map(DataType::code).unwrap_or(0),
        chunk_id: request.chunk_id.to_vec(),
        storage_key: Key256::storage_key(&owner, request.chunk_id),
        timestamp_ms: now_ms,
        nonce,
        shard_checksums: request.shard_checksums,
        chunk_len: request.chunk_len,
        signature: [0; 64],
    };
    auth.signature = identity.sign(&auth.signed_bytes());
    auth
}

/// Checks an [`OwnerAuth`] for `expected` at `now_ms`. Cheap checks first; the signature last;
/// the nonce is recorded only for a request that passed everything else.
pub fn verify(
    auth: &OwnerAuth,
    expected: Op,
    now_ms: u64,
    guard: &mut ReplayGuard,
) -> Result<Verified, AuthError> {
    if auth.op != expected {
        return Err(AuthError::WrongOp { expected, got: auth.op });
    }
    let skew_ms = now_ms.abs_diff(auth.timestamp_ms);
    if skew_ms > REPLAY_WINDOW_MS {
        return Err(AuthError::Stale { skew_ms });
    }
    let verified = verify_signature(auth)?;
    if !guard.admit(auth.nonce, now_ms) {
        return Err(AuthError::Replayed);
    }
    Ok(verified)
}

/// Checks an owner's PUT as a *certificate*: the lasting proof that these 15 shard checksums
/// belong to this owner's chunk, which repair presents when it re-stores a rebuilt shard long
/// after the PUT. No replay window or nonce applies (the shard must still match a signed
/// checksum, and its expiry stays fixed by the signed time), so a certificate can only ever
/// restore what the owner stored, never extend or change it.
pub fn verify_certificate(auth: &OwnerAuth) -> Result<Verified, AuthError> {
    if auth.op != Op::Put {
        return Err(AuthError::WrongOp { expected: Op::Put, got: auth.op });
    }
    verify_signature(auth)
}

/// The checks every request shares: well-formed for its op, the key's owner, the signature.
fn verify_signature(auth: &OwnerAuth) -> Result<Verified, AuthError> {
    let data_type = match auth.op {
        Op::Put => {
            if auth.shard_checksums.len() != zmesh_types::constants::TOTAL_SHARDS {
                return Err(AuthError::Malformed);
            }
            Some(DataType::from_code(auth.data_type).ok_or(AuthError::Malformed)?)
        }
        _ => None,
    };
    let public = PublicIdentity::from_bytes(&auth.public_key).map_err(|_| AuthError::BadKey)?;
    let owner = Key256(public.address());
    if Key256::storage_key(&owner, &auth.chunk_id) != auth.storage_key {
        return Err(AuthError::NotOwner);
    }
    public.verify(&auth.signed_bytes(), &auth.signature).map_err(|_| AuthError::BadSignature)?;
    Ok(Verified { owner, data_type })
}

/// Whether `shard` is exactly one of the shards the owner's PUT signed for: same chunk, same
/// length, the signed checksum for its index, and data matching that checksum.
pub fn is_signed_shard(auth: &OwnerAuth, shard: &zmesh_wire::shard::Shard) -> bool {
    let h = &shard.header;
    h.storage_key == auth.storage_key
        && h.chunk_len == auth.chunk_len
        && auth.shard_checksums.get(usize::from(h.index)) == Some(&h.checksum)
        && crate::erasure::verify(shard)
}

/// When a chunk stored under `certificate` expires: its signed time plus its type's TTL.
pub fn expiry_of(certificate: &OwnerAuth) -> Option<u64> {
    let ttl = DataType::from_code(certificate.data_type)?.ttl();
    Some(certificate.timestamp_ms.saturating_add(ttl.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn put(identity: &SigningIdentity, nonce: u8) -> OwnerAuth {
        let request = AuthRequest {
            op: Op::Put,
            data_type: Some(DataType::Media),
            chunk_id: b"blob/0",
            shard_checksums: vec![[7; 32]; 15],
            chunk_len: 1000,
        };
        sign(identity, request, NOW, [nonce; 16])
    }

    #[test]
    fn a_signed_request_verifies_once() {
        let alice = SigningIdentity::generate();
        let mut guard = ReplayGuard::new(1000);
        let auth = put(&alice, 1);
        let v = verify(&auth, Op::Put, NOW + 5, &mut guard).unwrap();
        assert_eq!(v.owner, Key256(alice.public().address()));
        assert_eq!(v.data_type, Some(DataType::Media));
        assert_eq!(verify(&auth, Op::Put, NOW + 6, &mut guard), Err(AuthError::Replayed));
    }

    #[test]
    fn a_certificate_stays_valid_after_the_window_but_not_when_altered() {
        let alice = SigningIdentity::generate();
        let cert = put(&alice, 2);
        let v = verify_certificate(&cert).unwrap();
        assert_eq!(v.owner, Key256(alice.public().address()));
        assert_eq!(expiry_of(&cert), Some(NOW + DataType::Media.ttl().as_millis() as u64));
        let mut forged = cert.clone();
        forged.shard_checksums[3][0] ^= 1;
        assert_eq!(verify_certificate(&forged), Err(AuthError::BadSignature));
        let mut later = cert.clone();
        later.timestamp_ms += 1;
        assert_eq!(verify_certificate(&later), Err(AuthError::BadSignature));
        let get = sign(
            &alice,
            AuthRequest {
                op: Op::Get,
                data_type: None,
                chunk_id: b"blob/0",
                shard_checksums: Vec::new(),
                chunk_len: 0,
            },
            NOW,
            [3; 16],
        );
        assert!(matches!(verify_certificate(&get), Err(AuthError::WrongOp { .. })));
    }

    #[test]
    fn forged_stale_and_misdirected_requests_are_refused() {
        let alice = SigningIdentity::generate();
        let mallory = SigningIdentity::generate();
        let mut guard = ReplayGuard::new(1000);

        let mut tampered = put(&alice, 2);
        tampered.shard_checksums[3] = [8; 32];
        assert_eq!(verify(&tampered, Op::Put, NOW, &mut guard), Err(AuthError::BadSignature));

        // Mallory signs for Alice's storage key: the key is not Mallory's.
        let mut stolen = put(&mallory, 3);
        stolen.storage_key = put(&alice, 3).storage_key;
        stolen.signature = mallory.sign(&stolen.signed_bytes());
        assert_eq!(verify(&stolen, Op::Put, NOW, &mut guard), Err(AuthError::NotOwner));

        // Mallory presents Alice's key with her own signature.
        let mut impostor = put(&alice, 4);
        impostor.signature = mallory.sign(&impostor.signed_bytes());
        assert_eq!(verify(&impostor, Op::Put, NOW, &mut guard), Err(AuthError::BadSignature));

        let stale = put(&alice, 5);
        assert!(matches!(
            verify(&stale, Op::Put, NOW + REPLAY_WINDOW_MS + 1, &mut guard),
            Err(AuthError::Stale { .. })
        ));
        assert!(matches!(
            verify(&put(&alice, 6), Op::Delete, NOW, &mut guard),
            Err(AuthError::WrongOp { .. })
        ));

        let mut no_sums = put(&alice, 7);
        no_sums.shard_checksums.clear();
        no_sums.signature = alice.sign(&no_sums.signed_bytes());
        assert_eq!(verify(&no_sums, Op::Put, NOW, &mut guard), Err(AuthError::Malformed));
        // None of the refused requests used up a nonce.
        assert!(guard.is_empty());
    }

    #[test]
    fn the_guard_stays_bounded() {
        let alice = SigningIdentity::generate();
        let mut guard = ReplayGuard::new(2);
        assert!(verify(&put(&alice, 10), Op::Put, NOW, &mut guard).is_ok());
        assert!(verify(&put(&alice, 11), Op::Put, NOW, &mut guard).is_ok());
        assert_eq!(verify(&put(&alice, 12), Op::Put, NOW, &mut guard), Err(AuthError::Replayed));
        // After the window the old nonces expire and make room.
        let later = NOW + 2 * REPLAY_WINDOW_MS + 1;
        let mut fresh = put(&alice, 13);
        fresh.timestamp_ms = later;
        fresh.signature = alice.sign(&fresh.signed_bytes());
        assert!(verify(&fresh, Op::Put, later, &mut guard).is_ok());
        assert_eq!(guard.len(), 1);
    }
}
