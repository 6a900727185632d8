//! The one error type of this crate.
//!
//! Variants are deliberately coarse where detail would help an attacker (a failed tag says
//! nothing about *why*), and precise where it helps a user (a wrong passphrase is not "corrupt").

/// Every way a cryptographic operation of zmesh can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The input is shorter than the fixed header and tag of its format.
    #[error("input too short: {len} bytes, need at least {min}")]
    TooShort {
        /// Bytes given.
        len: usize,
        /// Smallest valid length.
        min: usize,
    },
    /// The format version byte names a version this build does not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The AEAD tag did not verify: wrong key, context or associated data, or altered bytes.
    #[error("authentication failed: wrong key, context or associated data, or corrupted data")]
    BadTag,
    /// A keystore blob does not start with the keystore magic.
    #[error("not a zmesh keystore (bad magic)")]
    BadMagic,
    /// Argon2 parameters outside the bounds this crate accepts (hostile or corrupt file, or a
    /// caller asking for an unusable cost).
    #[error(
        "argon2 parameters out of bounds: m_cost={m_cost_kib} KiB, t_cost={t_cost}, p_cost={p_cost}"
    )]
    KdfParams {
        /// Memory cost in KiB.
        m_cost_kib: u32,
        /// Iterations.
        t_cost: u32,
        /// Lanes.
        p_cost: u32,
    },
    /// The keystore did not decrypt under this passphrase (or was altered).
    #[error("wrong passphrase (or the keystore was altered)")]
    WrongPassphrase,
    /// Argon2 itself failed (for example, it could not allocate its memory).
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// Bytes that are not a valid Ed25519 public key encoding.
    #[error("invalid public key encoding")]
    InvalidPublicKey,
    /// A small-order ("weak") Ed25519 public key, for which forged signatures are trivial.
    #[error("weak (small-order) public key")]
    WeakPublicKey,
    /// A signature that does not verify under the key (strict RFC 8032 rules).
    #[error("bad signature")]
    BadSignature,
}
