//! Client-side encryption of user data.
//!
//! Every blob gets its own key, derived with HKDF-SHA256 from the user's envelope secret and a
//! fresh random salt, so no two blobs ever share a key (and a random nonce can never repeat
//! under one key). The `context` string separates uses of the same secret (a file, a message
//! queue, …): a blob sealed for one context does not open in another. Nodes store only the
//! output, which says nothing beyond its length.
//!
//! Format (self-describing, so the format can change later without guessing):
//!
//! ```text
//! version u8 (= 1) ‖ salt [32] ‖ nonce [12] ‖ ciphertext ‖ tag [16]
//! ```

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::{CryptoError, random_bytes};

/// The only format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Length of the per-blob HKDF salt.
pub const SALT_LEN: usize = 32;
/// Bytes a sealed blob adds to its plaintext: version, salt, nonce and tag.
pub const OVERHEAD: usize = 1 + SALT_LEN + NONCE_LEN + TAG_LEN;
/// Prefix of the HKDF `info`; the caller's context follows it.
const INFO_PREFIX: &[u8] = b"zmesh/envelope/v1/";
const HEADER_LEN: usize = 1 + SALT_LEN + NONCE_LEN;

/// Derives the per-blob key; returned in a buffer that wipes itself.
fn blob_key(secret: &[u8; 32], salt: &[u8; SALT_LEN], context: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0_u8; KEY_LEN]);
    // Only fails for outputs over 255 hash lengths; 32 bytes is one.
    #[allow(clippy::expect_used)]
    Hkdf::<Sha256>::new(Some(salt), secret)
        .expand_multi_info(&[INFO_PREFIX, context], key.as_mut())
        .expect("32-byte HKDF output is valid");
    key
}

/// Encrypts `plaintext` under a fresh key derived from `identity_secret` and `context`,
/// authenticating `aad` too (it is not stored: the opener must supply the same bytes).
///
/// `identity_secret` should be a dedicated envelope secret (see
/// [`SigningIdentity::envelope_secret`](crate::sign::SigningIdentity::envelope_secret)), not a
/// signing key.
pub fn seal(identity_secret: &[u8; 32], context: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut salt = [0_u8; SALT_LEN];
    let mut nonce = [0_u8; NONCE_LEN];
    random_bytes(&mut salt);
    random_bytes(&mut nonce);
    let key = blob_key(identity_secret, &salt, context);

    // Sized once so the plaintext is never left behind in a reallocated buffer.
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.push(VERSION);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = aead::seal_in_place(&key, &nonce, aad, &mut out[HEADER_LEN..]);
    out.extend_from_slice(&tag);
    out
}

/// Checks and decrypts a blob made by [`seal`] with the same secret, context and `aad`.
///
/// # Errors
/// [`CryptoError::TooShort`] if `blob` is shorter than [`OVERHEAD`],
/// [`CryptoError::UnsupportedVersion`] for a version byte other than [`VERSION`],
/// [`CryptoError::BadTag`] if the secret, context or `aad` differ or any byte was altered.
pub fn open(
    identity_secret: &[u8; 32],
    context: &[u8],
    aad: &[u8],
    blob: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if blob.len() < OVERHEAD {
        return Err(CryptoError::TooShort { len: blob.len(), min: OVERHEAD });
    }
    let (header, rest) = blob.split_at(HEADER_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let (version, header) = header.split_at(1);
    if version[0] != VERSION {
        return Err(CryptoError::UnsupportedVersion(version[0]));
    }
    let (salt, nonce) = header.split_at(SALT_LEN);
    let (Ok(salt), Ok(nonce), Ok(tag)) = (
        <&[u8; SALT_LEN]>::try_from(salt),
        <&[u8; NONCE_LEN]>::try_from(nonce),
        <&[u8; TAG_LEN]>::try_from(tag),
    ) else {
        // Unreachable: the lengths were fixed by the splits above.
        return Err(CryptoError::TooShort { len: blob.len(), min: OVERHEAD });
    };
    let key = blob_key(identity_secret, salt, context);
    let mut plaintext = ciphertext.to_vec();
    aead::open_in_place(&key, nonce, aad, &mut plaintext, tag)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: [u8; 32] = [42; 32];

    #[test]
    fn overhead_is_header_plus_tag() {
        assert_eq!(OVERHEAD, 61);
        assert_eq!(seal(&SECRET, b"c", b"a", b"").len(), OVERHEAD);
        assert_eq!(seal(&SECRET, b"c", b"a", b"hello").len(), OVERHEAD + 5);
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let blob = seal(&SECRET, b"", b"", b"");
        assert_eq!(open(&SECRET, b"", b"", &blob).unwrap(), b"");
    }

    #[test]
    fn same_input_seals_differently() {
        let a = seal(&SECRET, b"c", b"a", b"same");
        let b = seal(&SECRET, b"c", b"a", b"same");
        assert_ne!(a, b);
        assert_ne!(a[1..HEADER_LEN], b[1..HEADER_LEN]);
    }

    #[test]
    fn short_input_is_rejected() {
        for len in [0, 1, HEADER_LEN, OVERHEAD - 1] {
            let blob = vec![VERSION; len];
            assert_eq!(
                open(&SECRET, b"c", b"a", &blob),
                Err(CryptoError::TooShort { len, min: OVERHEAD })
            );
        }
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut blob = seal(&SECRET, b"c", b"a", b"data");
        for v in [0, 2, 255] {
            blob[0] = v;
            assert_eq!(open(&SECRET, b"c", b"a", &blob), Err(CryptoError::UnsupportedVersion(v)));
        }
    }

    #[test]
    fn bad_tag_is_rejected() {
        let mut blob = seal(&SECRET, b"c", b"a", b"data");
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert_eq!(open(&SECRET, b"c", b"a", &blob), Err(CryptoError::BadTag));
    }

    #[test]
    fn context_is_not_ambiguous_with_prefix() {
        // info = prefix ‖ context; different contexts must give different keys.
        let blob = seal(&SECRET, b"ab", b"", b"x");
        assert_eq!(open(&SECRET, b"a", b"", &blob), Err(CryptoError::BadTag));
        assert_eq!(open(&SECRET, b"ab\0", b"", &blob), Err(CryptoError::BadTag));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip(
            secret: [u8; 32],
            context in proptest::collection::vec(any::<u8>(), 0..64),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let blob = seal(&secret, &context, &aad, &plaintext);
            prop_assert_eq!(blob.len(), plaintext.len() + OVERHEAD);
            prop_assert_eq!(open(&secret, &context, &aad, &blob).unwrap(), plaintext);
        }

        #[test]
        fn wrong_secret_context_or_aad_fails(
            secret: [u8; 32],
            other: [u8; 32],
            context in proptest::collection::vec(any::<u8>(), 0..32),
            other_context in proptest::collection::vec(any::<u8>(), 0..32),
            aad in proptest::collection::vec(any::<u8>(), 0..32),
            other_aad in proptest::collection::vec(any::<u8>(), 0..32),
            plaintext in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let blob = seal(&secret, &context, &aad, &plaintext);
            if other != secret {
                prop_assert_eq!(open(&other, &context, &aad, &blob), Err(CryptoError::BadTag));
            }
            if other_context != context {
                prop_assert_eq!(open(&secret, &other_context, &aad, &blob), Err(CryptoError::BadTag));
            }
            if other_aad != aad {
                prop_assert_eq!(open(&secret, &context, &other_aad, &blob), Err(CryptoError::BadTag));
            }
        }

        #[test]
        fn any_flipped_byte_fails(
            plaintext in proptest::collection::vec(any::<u8>(), 0..256),
            index: proptest::sample::Index,
            bit in 0_u8..8,
        ) {
            let mut blob = seal(&SECRET, b"ctx", b"aad", &plaintext);
            let i = index.index(blob.len());
            blob[i] ^= 1 << bit;
            let err = open(&SECRET, b"ctx", b"aad", &blob).unwrap_err();
            if i == 0 {
                prop_assert_eq!(err, CryptoError::UnsupportedVersion(VERSION ^ (1 << bit)));
            } else {
                prop_assert_eq!(err, CryptoError::BadTag);
            }
        }

        #[test]
        fn open_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = open(&SECRET, b"ctx", b"aad", &blob);
        }
    }
}
