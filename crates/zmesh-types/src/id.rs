use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A point in zmesh's 256-bit key space: node ids, storage keys and lookup targets all live here.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key256(pub [u8; 32]);

/// A node's position in the key space.
///
/// `node_id = SHA-256(peer id bytes)`: the PeerId of an Ed25519 node is the identity multihash of
/// its protobuf-encoded public key, and this hash is the exact key libp2p's Kademlia ranks peers
/// by, so one value serves the routing table, placement and the API alike.
pub type NodeId = Key256;

/// XOR distance between two keys, ordered as a 256-bit big-endian unsigned integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 32]);

impl Key256 {
    pub const ZERO: Key256 = Key256([0; 32]);

    /// SHA-256 of arbitrary bytes.
    pub fn hash(bytes: &[u8]) -> Self {
        Key256(Sha256::digest(bytes).into())
    }

    /// Where a chunk lives in the key space: `SHA-256(owner_address ‖ ":" ‖ chunk_id)`. Anyone
    /// who knows the owner's address and the chunk id can recompute it; no one can choose it for
    /// another owner's address.
    pub fn storage_key(owner_address: &Key256, chunk_id: &[u8]) -> Key256 {
        let mut h = Sha256::new();
        h.update(owner_address.0);
        h.update(b":");
        h.update(chunk_id);
        Key256(h.finalize().into())
    }

    /// The node id of a peer, given the bytes of its libp2p PeerId.
    pub fn from_peer_id_bytes(peer_id_bytes: &[u8]) -> NodeId {
        Self::hash(peer_id_bytes)
    }

    pub fn distance(&self, other: &Key256) -> Distance {
        let mut out = [0u8; 32];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Distance(out)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Orders `a` and `b` by their distance to `self`.
    pub fn cmp_distance(&self, a: &Key256, b: &Key256) -> Ordering {
        self.distance(a).cmp(&self.distance(b))
    }
}

impl Distance {
    /// Index of the highest set bit plus one (0 for equal keys): the Kademlia bucket number.
    pub fn leading_bucket(&self) -> u32 {
        for (i, byte) in self.0.iter().enumerate() {
            if *byte != 0 {
                return 256 - (i as u32 * 8 + byte.leading_zeros());
            }
        }
        0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeyError {
    #[error("key must be 64 hex characters (256 bits), got {0} characters")]
    Length(usize),
    #[error("key is not valid hex: {0}")]
    Hex(String),
}

impl FromStr for Key256 {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(ParseKeyError::Length(s.len()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| ParseKeyError::Hex(e.to_string()))?;
        Ok(Key256(out))
    }
}

impl fmt::Display for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key256({})", &self.to_hex()[..16])
    }
}

impl Serialize for Key256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Key256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!("ab".parse::<Key256>(), Err(ParseKeyError::Length(2)));
        assert!(matches!("zz".repeat(32).parse::<Key256>(), Err(ParseKeyError::Hex(_))));
    }

    #[test]
    fn storage_key_is_the_hash_of_address_colon_chunk() {
        let owner = Key256([1; 32]);
        let mut preimage = owner.0.to_vec();
        preimage.extend_from_slice(b":chunk-7");
        assert_eq!(Key256::storage_key(&owner, b"chunk-7"), Key256::hash(&preimage));
        assert_ne!(
            Key256::storage_key(&owner, b"chunk-7"),
            Key256::storage_key(&owner, b"chunk-8")
        );
    }

    #[test]
    fn bucket_of_distance() {
        let a = Key256::ZERO;
        let mut b = [0u8; 32];
        b[31] = 1;
        assert_eq!(a.distance(&Key256(b)).leading_bucket(), 1);
        b[0] = 0x80;
        assert_eq!(a.distance(&Key256(b)).leading_bucket(), 256);
        assert_eq!(a.distance(&a).leading_bucket(), 0);
    }

    proptest! {
        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let k = Key256(bytes);
            prop_assert_eq!(k.to_hex().parse::<Key256>().unwrap(), k);
        }

        #[test]
        fn xor_is_a_metric(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let (a, b) = (Key256(a), Key256(b));
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&a), Distance([0; 32]));
            // Unidirectionality: for a fixed point and distance there is exactly one partner.
            let d = a.distance(&b);
            let back = Key256(std::array::from_fn(|i| a.0[i] ^ d.0[i]));
            prop_assert_eq!(back, b);
        }
    }
}
