//! Signed key material that binds a device's Olm keys to its owner's zmesh identity.
//!
//! A zmesh user is known by an address, SHA-256 of an Ed25519 identity key
//! ([`PublicIdentity`]). Messages, though, are encrypted with Olm keys that live on a device
//! ([`E2eAccount`](crate::olm::E2eAccount)). Whoever hands out those keys (a relay, the DHT) is
//! not trusted, so both objects here carry an Ed25519 signature by the identity key: a
//! substituted key fails [`PrekeyBundle::verify`] or does not hash to the address asked for.
//!
//! - [`PrekeyBundle`]: what a sender fetches to start a session — the device keys plus up to
//!   [`MAX_ONE_TIME_KEYS`] one-time keys.
//! - [`SenderCertificate`]: the same binding without the one-time keys, small enough to travel
//!   inside every sealed message so the recipient learns and checks the sender without a
//!   lookup (and can answer, since it names the sender's sealing key too).
//!
//! Formats (big-endian; keys are fixed-size, so only the key count has a length field):
//!
//! ```text
//! bundle = version u8 (= 1) ‖ identity [32] ‖ curve25519 [32] ‖ ed25519 [32] ‖ sealing [32]
//!          ‖ created_at_ms u64 ‖ count u16 (≤ 100) ‖ count × one-time key [32] ‖ signature [64]
//! cert   = version u8 (= 1) ‖ identity [32] ‖ curve25519 [32] ‖ ed25519 [32] ‖ sealing [32]
//!          ‖ signature [64]
//! signed = domain ‖ the encoding up to (not including) the signature
//! ```
//!
//! The two domains differ, so a certificate signature can never pass as a bundle signature or
//! as any other zmesh signature.

use curve25519_dalek::montgomery::MontgomeryPoint;

use crate::sign::{PublicIdentity, SigningIdentity};
use crate::{CryptoError, random_bytes};

mod reader;

pub(crate) use reader::Reader;

/// Format version of both encodings.
pub const VERSION: u8 = 1;
/// Most one-time keys one bundle may carry (bounds the decoder's allocation).
pub const MAX_ONE_TIME_KEYS: usize = 100;
/// Signature domain of a [`PrekeyBundle`].
pub const BUNDLE_DOMAIN: &[u8] = b"zmesh/prekey-bundle/v1\0";
/// Signature domain of a [`SenderCertificate`].
pub const CERT_DOMAIN: &[u8] = b"zmesh/sender-cert/v1\0";
/// Encoded length of a [`SenderCertificate`].
pub const CERT_LEN: usize = 1 + KEYS_LEN + 64;
/// Identity and the three device keys.
const KEYS_LEN: usize = 4 * 32;
/// Longest valid bundle encoding.
pub const MAX_BUNDLE_LEN: usize = 1 + KEYS_LEN + 8 + 2 + MAX_ONE_TIME_KEYS * 32 + 64;

// `used` below is a bit mask over the one-time keys.
const _: () = assert!(MAX_ONE_TIME_KEYS <= 128);

/// The public keys of one device's [`E2eAccount`](crate::olm::E2eAccount).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceKeys {
    /// Olm Curve25519 identity key (the 3DH identity key).
    pub curve25519: [u8; 32],
    /// Olm Ed25519 key of the device.
    pub ed25519: [u8; 32],
    /// X25519 key that sealed-sender envelopes are encrypted to (see [`crate::sealed`]).
    pub sealing: [u8; 32],
}

impl DeviceKeys {
    /// Every key is a valid point and none is of low order.
    fn check(&self) -> Result<(), CryptoError> {
        check_ed25519(&self.ed25519)?;
        check_curve(&self.curve25519)?;
        check_curve(&self.sealing)
    }
}

/// `true` for Curve25519 u-coordinates that no honest key has: points of small order
/// (including all-zero), for which a Diffie-Hellman result is predictable, and points on the
/// twist rather than the curve. An honest X25519 public key is a multiple of the base point,
/// so it is on the curve and of prime order. (Mapping to Edwards form and multiplying by the
/// cofactor costs a field inversion and a square root, a fraction of an X25519 ladder.)
pub(crate) fn is_low_order(u: &[u8; 32]) -> bool {
    MontgomeryPoint(*u).to_edwards(0).is_none_or(|point| point.is_small_order())
}

/// Checks an Ed25519 key the way identities are checked (valid, not of small order).
fn check_ed25519(key: &[u8; 32]) -> Result<PublicIdentity, CryptoError> {
    PublicIdentity::from_bytes(key)
}

fn check_curve(key: &[u8; 32]) -> Result<(), CryptoError> {
    if is_low_order(key) { Err(CryptoError::LowOrderKey) } else { Ok(()) }
}

/// A signed offer of a device's keys, for starting Olm sessions with it.
///
/// One-time keys are *consumed* by [`take_one_time_key`](Self::take_one_time_key): the key is
/// marked used in this copy only, so the signed list (and [`verify`](Self::verify)) stays
/// intact and a copy never hands out the same key twice. Different senders that fetched the
/// same bundle may still pick the same key; the random pick makes that unlikely and the
/// receiver then refuses the second session (vodozemac deletes a one-time key on first use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyBundle {
    identity: [u8; 32],
    keys: DeviceKeys,
    created_at_ms: u64,
    one_time_keys: Vec<[u8; 32]>,
    signature: [u8; 64],
    /// Bit `i` set: one-time key `i` was taken from this copy. Not encoded.
    used: u128,
}

impl PrekeyBundle {
    /// Builds and signs a bundle.
    ///
    /// # Errors
    /// [`CryptoError::TooLong`] for more than [`MAX_ONE_TIME_KEYS`] one-time keys.
    pub fn sign(
        identity: &SigningIdentity,
        keys: DeviceKeys,
        one_time_keys: Vec<[u8; 32]>,
        created_at_ms: u64,
    ) -> Result<Self, CryptoError> {
        if one_time_keys.len() > MAX_ONE_TIME_KEYS {
            return Err(CryptoError::TooLong {
                what: "one-time key list",
                len: one_time_keys.len(),
                max: MAX_ONE_TIME_KEYS,
            });
        }
        let mut bundle = Self {
            identity: *identity.public().as_bytes(),
            keys,
            created_at_ms,
            one_time_keys,
            signature: [0; 64],
            used: 0,
        };
        bundle.signature = identity.sign(&bundle.signed_bytes());
        Ok(bundle)
    }

    /// The owner's zmesh identity key, as encoded (checked by [`verify`](Self::verify)).
    pub fn identity_key(&self) -> &[u8; 32] {
        &self.identity
    }

    /// The device's keys.
    pub fn device_keys(&self) -> &DeviceKeys {
        &self.keys
    }

    /// When the owner made the bundle (Unix milliseconds), for telling stale bundles apart.
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    /// Every one-time key of the signed list, used or not.
    pub fn one_time_keys(&self) -> &[[u8; 32]] {
        &self.one_time_keys
    }

    /// One-time keys not yet taken from this copy.
    pub fn unused_one_time_keys(&self) -> usize {
        self.one_time_keys.len() - self.used.count_ones() as usize
    }

    /// Removes a random unused one-time key from this copy and returns it.
    pub fn take_one_time_key(&mut self) -> Option<[u8; 32]> {
        let unused = self.unused_one_time_keys();
        if unused == 0 {
            return None;
        }
        let mut r = [0_u8; 4];
        random_bytes(&mut r);
        // The modulo bias (< 2^-25 for ≤ 100 keys) only affects which key is picked.
        let mut nth = u32::from_be_bytes(r) as usize % unused;
        for (i, key) in self.one_time_keys.iter().enumerate() {
            if self.used & (1 << i) != 0 {
                continue;
            }
            if nth == 0 {
                self.used |= 1 << i;
                return Some(*key);
            }
            nth -= 1;
        }
        None
    }

    /// Checks the signature (strict Ed25519) and refuses weak keys: an invalid or small-order
    /// identity or device Ed25519 key, and any small-order Curve25519 key. Returns the checked
    /// identity, whose [`address`](PublicIdentity::address) the caller compares with the one it
    /// asked for.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`], [`CryptoError::WeakPublicKey`],
    /// [`CryptoError::BadSignature`] or [`CryptoError::LowOrderKey`].
    pub fn verify(&self) -> Result<PublicIdentity, CryptoError> {
        let identity = PublicIdentity::from_bytes(&self.identity)?;
        identity.verify(&self.signed_bytes(), &self.signature)?;
        self.keys.check()?;
        self.one_time_keys.iter().try_for_each(check_curve)?;
        Ok(identity)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BUNDLE_DOMAIN.len() + MAX_BUNDLE_LEN);
        out.extend_from_slice(BUNDLE_DOMAIN);
        self.encode_unsigned(&mut out);
        out
    }

    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        encode_keys(&self.identity, &self.keys, out);
        out.extend_from_slice(&self.created_at_ms.to_be_bytes());
        // At most MAX_ONE_TIME_KEYS (checked when signed or decoded), so it fits a u16.
        out.extend_from_slice(&(self.one_time_keys.len() as u16).to_be_bytes());
        for key in &self.one_time_keys {
            out.extend_from_slice(key);
        }
    }

    /// The encoding described in the module documentation.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_BUNDLE_LEN);
        self.encode_unsigned(&mut out);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes a bundle (without checking its signature: call [`verify`](Self::verify)).
    ///
    /// # Errors
    /// [`CryptoError::UnsupportedVersion`], [`CryptoError::Truncated`],
    /// [`CryptoError::TooLong`] or [`CryptoError::TrailingBytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        const WHAT: &str = "prekey bundle";
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(CryptoError::TooLong { what: WHAT, len: bytes.len(), max: MAX_BUNDLE_LEN });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8(WHAT)?;
        if version != VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let (identity, keys) = decode_keys(&mut r)?;
        let created_at_ms = r.u64("bundle timestamp")?;
        let count = usize::from(r.u16("one-time key count")?);
        if count > MAX_ONE_TIME_KEYS {
            return Err(CryptoError::TooLong {
                what: "one-time key list",
                len: count,
                max: MAX_ONE_TIME_KEYS,
            });
        }
        let mut one_time_keys = Vec::with_capacity(count);
        for _ in 0..count {
            one_time_keys.push(r.array("one-time key")?);
        }
        let signature = r.array("bundle signature")?;
        r.finish(WHAT)?;
        Ok(Self { identity, keys, created_at_ms, one_time_keys, signature, used: 0 })
    }
}

/// A device's keys signed by its owner's identity: the part of a [`PrekeyBundle`] that does not
/// change, carried inside each sealed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenderCertificate {
    identity: [u8; 32],
    keys: DeviceKeys,
    signature: [u8; 64],
}

impl SenderCertificate {
    /// Builds and signs a certificate.
    pub fn sign(identity: &SigningIdentity, keys: DeviceKeys) -> Self {
        let mut cert = Self { identity: *identity.public().as_bytes(), keys, signature: [0; 64] };
        cert.signature = identity.sign(&cert.signed_bytes());
        cert
    }

    /// The owner's zmesh identity key, as encoded (checked by [`verify`](Self::verify)).
    pub fn identity_key(&self) -> &[u8; 32] {
        &self.identity
    }

    /// The device's keys.
    pub fn device_keys(&self) -> &DeviceKeys {
        &self.keys
    }

    /// Same checks as [`PrekeyBundle::verify`]; returns the checked identity.
    ///
    /// # Errors
    /// As [`PrekeyBundle::verify`].
    pub fn verify(&self) -> Result<PublicIdentity, CryptoError> {
        let identity = PublicIdentity::from_bytes(&self.identity)?;
        identity.verify(&self.signed_bytes(), &self.signature)?;
        self.keys.check()?;
        Ok(identity)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CERT_DOMAIN.len() + CERT_LEN);
        out.extend_from_slice(CERT_DOMAIN);
        out.push(VERSION);
        encode_keys(&self.identity, &self.keys, &mut out);
        out
    }

    /// Appends the [`CERT_LEN`]-byte encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        encode_keys(&self.identity, &self.keys, out);
        out.extend_from_slice(&self.signature);
    }

    /// The [`CERT_LEN`]-byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CERT_LEN);
        self.encode_into(&mut out);
        out
    }

    /// Decodes a certificate from its exact encoding (no signature check).
    ///
    /// # Errors
    /// As [`PrekeyBundle::from_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes);
        let cert = Self::decode(&mut r)?;
        r.finish("sender certificate")?;
        Ok(cert)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, CryptoError> {
        let version = r.u8("sender certificate")?;
        if version != VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let (identity, keys) = decode_keys(r)?;
        let signature = r.array("certificate signature")?;
        Ok(Self { identity, keys, signature })
    }
}

fn encode_keys(identity: &[u8; 32], keys: &DeviceKeys, out: &mut Vec<u8>) {
    out.extend_from_slice(identity);
    out.extend_from_slice(&keys.curve25519);
    out.extend_from_slice(&keys.ed25519);
    out.extend_from_slice(&keys.sealing);
}

fn decode_keys(r: &mut Reader<'_>) -> Result<([u8; 32], DeviceKeys), CryptoError> {
    let identity = r.array("identity key")?;
    let curve25519 = r.array("curve25519 key")?;
    let ed25519 = r.array("ed25519 key")?;
    let sealing = r.array("sealing key")?;
    Ok((identity, DeviceKeys { curve25519, ed25519, sealing }))
}

#[cfg(test)]
mod tests;
