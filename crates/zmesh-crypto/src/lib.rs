//! Client-side cryptography of zmesh.
//!
//! Nodes are blind couriers: everything here runs on the user's side, so that no node ever
//! holds a key or a plaintext. Only audited primitives are used (AES-256-GCM, HKDF-SHA256,
//! Argon2id, Ed25519, X25519, and vodozemac's Olm); this crate only fixes formats, domain
//! separation and bounds, and wipes every secret it touches.
//!
//! - [`envelope`]: per-blob keys and AEAD for user data.
//! - [`keystore`]: passphrase-protected secrets (identity files, key backups).
//! - [`sign`]: owner identities that sign requests.
//! - [`olm`]: end-to-end sessions (Olm: 3DH with one-time keys, then the Double Ratchet).
//! - [`prekeys`]: device keys signed by the owner's identity (prekey bundles, sender
//!   certificates).
//! - [`sealed`]: sealed sender, so relays see only the recipient.
//! - [`safety`]: safety numbers for comparing identity keys out of band.

mod aead;
pub mod envelope;
mod error;
pub mod keystore;
pub mod olm;
pub mod prekeys;
pub mod safety;
pub mod sealed;
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
