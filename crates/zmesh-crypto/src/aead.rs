//! The one AES-256-GCM implementation this crate uses, behind two in-place calls, so that the
//! choice lives in a single file.
//!
//! aws-lc-rs won `benches/aead.rs` (1.3–1.6× ring and about 3× RustCrypto `aes-gcm` on 1 MiB
//! on x86-64 with VAES), builds with only the Rust toolchain and a C compiler, and wipes its
//! key schedule when a key is dropped (AWS-LC cleanses memory it frees).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::CryptoError;

/// AES-256 key length.
pub(crate) const KEY_LEN: usize = 32;
/// GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// GCM tag length.
pub(crate) const TAG_LEN: usize = 16;

fn key(key: &[u8; KEY_LEN]) -> LessSafeKey {
    // Only fails for a key of the wrong length, which the type rules out.
    #[allow(clippy::expect_used)]
    let unbound = UnboundKey::new(&AES_256_GCM, key).expect("AES-256 key is 32 bytes");
    LessSafeKey::new(unbound)
}

/// Encrypts `buf` in place and returns the tag.
pub(crate) fn seal_in_place(
    k: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    let nonce = Nonce::assume_unique_for_key(*nonce);
    // Only fails past GCM's per-message limit (~64 GiB), far above anything a Vec here holds.
    #[allow(clippy::expect_used)]
    let tag = key(k)
        .seal_in_place_separate_tag(nonce, Aad::from(aad), buf)
        .expect("message within the AES-GCM length limit");
    let mut out = [0_u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Verifies `tag` and decrypts `buf` in place. On failure `buf` is zeroed, so no unverified
/// plaintext survives.
pub(crate) fn open_in_place(
    k: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), CryptoError> {
    let nonce = Nonce::assume_unique_for_key(*nonce);
    if key(k).open_in_place_separate_tag(nonce, Aad::from(aad), tag, buf).is_err() {
        buf.fill(0);
        return Err(CryptoError::BadTag);
    }
    Ok(())
}
