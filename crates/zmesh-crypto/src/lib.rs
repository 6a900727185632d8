//! Client-side cryptography of zmesh.
//!
//! Nodes are blind couriers: everything here runs on the user's side, so that no node ever
//! holds a key or a plaintext. Only audited primitives are used (AES-256-GCM, HKDF-SHA256,
//! Argon2id, Ed25519); this crate only fixes formats, domain separation and bounds, and wipes
//! every secret it touches.
//!
//! - [`envelope`]: per-blob keys and AEAD for user data.
//! - [`keystore`]: passphrase-protected secrets (identity files, key backups).
//! - [`sign`]: owner identities that sign requests.

mod aead;
pub mod envelope;
mod error;
pub mod keystore;
pub mod sign;

pub use error::CryptoError;

/// Fills `buf` from the operating system's CSPRNG.
///
/// There is no safe way to go on without randomness (a repeated salt or nonce breaks the
/// formats), so a failing OS generator is treated as fatal.
fn random_bytes(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}
