//! Owner identities: Ed25519 keys that sign requests (for example, to delete or renew stored
//! data), and the public side that nodes check them with.
//!
//! Verification is strict (RFC 8032 with canonical encodings, as in `verify_strict`) and weak
//! (small-order) public keys are refused when parsed, so one signature cannot be made valid for
//! several keys or messages.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes};

/// HKDF `info` for the envelope secret derived from a signing secret.
const ENVELOPE_ROOT_INFO: &[u8] = b"zmesh/envelope-root/v1";

/// A user's signing key. Its secret is wiped when it is dropped.
pub struct SigningIdentity {
    key: SigningKey,
}

impl std::fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("SigningIdentity").field("public", &self.public()).finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// A new identity from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut secret = Zeroizing::new([0_u8; 32]);
        random_bytes(secret.as_mut());
        Self::from_secret_bytes(&secret)
    }

    /// The identity whose 32-byte Ed25519 secret is `secret` (as read from a keystore).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(secret) }
    }

    /// The 32-byte Ed25519 secret, for writing to a keystore.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The public half, to hand to others.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity(self.key.verifying_key().to_bytes())
    }

    /// Signs `msg` (Ed25519, deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// A secret for [`envelope`](crate::envelope), derived with HKDF-SHA256 so that envelope
    /// keys never use the raw signing key (one key, one purpose).
    pub fn envelope_secret(&self) -> Zeroizing<[u8; 32]> {
        let secret = self.secret_bytes();
        let mut out = Zeroizing::new([0_u8; 32]);
        // Only fails for outputs over 255 hash lengths; 32 bytes is one.
        #[allow(clippy::expect_used)]
        Hkdf::<Sha256>::new(None, secret.as_ref())
            .expand(ENVELOPE_ROOT_INFO, out.as_mut())
            .expect("32-byte HKDF output is valid");
        out
    }
}

/// A checked Ed25519 public key: a valid encoding of a point that is not of small order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicIdentity([u8; 32]);

impl PublicIdentity {
    /// Parses a public key, refusing invalid encodings and weak (small-order) points.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] or [`CryptoError::WeakPublicKey`].
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(CryptoError::WeakPublicKey);
        }
        Ok(Self(*bytes))
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks `sig` over `msg` with strict RFC 8032 rules.
    ///
    /// # Errors
    /// [`CryptoError::BadSignature`] if it does not verify.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), CryptoError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| CryptoError::InvalidPublicKey)?;
        key.verify_strict(msg, &Signature::from_bytes(sig)).map_err(|_| CryptoError::BadSignature)
    }

    /// A fixed-length address for this owner: SHA-256 of the public key bytes.
    pub fn address(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secret_round_trips() {
        let id = SigningIdentity::generate();
        let again = SigningIdentity::from_secret_bytes(&id.secret_bytes());
        assert_eq!(id.public(), again.public());
        assert_ne!(SigningIdentity::generate().public(), SigningIdentity::generate().public());
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1 (empty message).
        let secret: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let public: [u8; 32] = [
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ];
        let id = SigningIdentity::from_secret_bytes(&secret);
        assert_eq!(id.public().as_bytes(), &public);
        let sig = id.sign(b"");
        assert_eq!(sig[..4], [0xe5, 0x56, 0x43, 0x00]);
        PublicIdentity::from_bytes(&public).unwrap().verify(b"", &sig).unwrap();
    }

    #[test]
    fn address_is_sha256_of_public_key() {
        let id = SigningIdentity::from_secret_bytes(&[1; 32]);
        let expected: [u8; 32] = Sha256::digest(id.public().as_bytes()).into();
        assert_eq!(id.public().address(), expected);
    }

    #[test]
    fn low_order_points_are_rejected() {
        // The identity (y = 1) and the order-4 point (y = 0).
        let mut identity = [0_u8; 32];
        identity[0] = 1;
        assert_eq!(PublicIdentity::from_bytes(&identity), Err(CryptoError::WeakPublicKey));
        assert_eq!(PublicIdentity::from_bytes(&[0; 32]), Err(CryptoError::WeakPublicKey));
        // The order-2 point (y = -1 = p - 1).
        let mut minus_one = [0xff_u8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        assert_eq!(PublicIdentity::from_bytes(&minus_one), Err(CryptoError::WeakPublicKey));
    }

    #[test]
    fn invalid_encoding_is_rejected() {
        // y = 2 is not on the curve (x^2 would have to be a non-square).
        let mut bytes = [0_u8; 32];
        bytes[0] = 2;
        assert_eq!(PublicIdentity::from_bytes(&bytes), Err(CryptoError::InvalidPublicKey));
    }

    #[test]
    fn bad_signature() {
        let id = SigningIdentity::from_secret_bytes(&[3; 32]);
        let mut sig = id.sign(b"msg");
        assert_eq!(id.public().verify(b"msh", &sig), Err(CryptoError::BadSignature));
        sig[0] ^= 1;
        assert_eq!(id.public().verify(b"msg", &sig), Err(CryptoError::BadSignature));
        let other = SigningIdentity::from_secret_bytes(&[4; 32]);
        assert_eq!(other.public().verify(b"msg", &id.sign(b"msg")), Err(CryptoError::BadSignature));
    }

    #[test]
    fn envelope_secret_is_not_the_signing_secret() {
        let id = SigningIdentity::from_secret_bytes(&[5; 32]);
        let env = id.envelope_secret();
        assert_ne!(*env, *id.secret_bytes());
        assert_eq!(*env, *SigningIdentity::from_secret_bytes(&[5; 32]).envelope_secret());
        assert_ne!(*env, *SigningIdentity::from_secret_bytes(&[6; 32]).envelope_secret());
    }

    #[test]
    fn debug_hides_secret() {
        let id = SigningIdentity::from_secret_bytes(&[7; 32]);
        let text = format!("{id:?}");
        assert!(text.starts_with("SigningIdentity"));
        assert!(!text.contains("[7, 7"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn sign_verify(secret: [u8; 32], msg in proptest::collection::vec(any::<u8>(), 0..512)) {
            let id = SigningIdentity::from_secret_bytes(&secret);
            let public = PublicIdentity::from_bytes(id.public().as_bytes()).unwrap();
            prop_assert_eq!(public, id.public());
            let sig = id.sign(&msg);
            prop_assert!(public.verify(&msg, &sig).is_ok());
            let mut other = msg.clone();
            other.push(0);
            prop_assert_eq!(public.verify(&other, &sig), Err(CryptoError::BadSignature));
        }
    }
}
