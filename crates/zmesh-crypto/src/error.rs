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
    /// Encoded input ends in the middle of a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length or count field (or a whole input) above the bound this build accepts; checked
    /// before anything is allocated.
    #[error("{what} too long: {len}, at most {max}")]
    TooLong {
        /// What was measured.
        what: &'static str,
        /// Length or count found.
        len: usize,
        /// Largest accepted value.
        max: usize,
    },
    /// Bytes left over after a complete encoding (one value must have exactly one encoding).
    #[error("{extra} trailing bytes after {what}")]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// A field with a value this format does not allow.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A Curve25519 key of small order (a Diffie-Hellman with it would give an all-zero or
    /// otherwise predictable shared secret), or a point that no honest key is (on the twist).
    #[error("low-order (non-contributory) or invalid Curve25519 key")]
    LowOrderKey,
    /// A signed prekey bundle or certificate belongs to another identity than the one asked for.
    #[error("identity does not match the expected address")]
    IdentityMismatch,
    /// The prekey bundle has no one-time key left to start a session with.
    #[error("no unused one-time key left in the prekey bundle")]
    NoOneTimeKey,
    /// An inbound session can only start from a pre-key message.
    #[error("expected an Olm pre-key message")]
    NotPreKeyMessage,
    /// The Olm sender key inside a message differs from the one its sender certificate names.
    #[error("Olm sender key does not match the sender certificate")]
    SenderMismatch,
    /// Olm (vodozemac) refused to create a session or to decrypt: unknown or used one-time key,
    /// bad MAC, message key already used or too far ahead, or a non-contributory key.
    #[error("olm: {0}")]
    Olm(String),
}
