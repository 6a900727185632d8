//! Passphrase-protected secrets: the user's identity keystore file and key backups.
//!
//! The key is Argon2id of the passphrase, so guessing passphrases offline costs memory and time.
//! The Argon2 parameters are stored in the file (they can be raised later without breaking old
//! files), which also means a hostile file chooses them: [`open_with_passphrase`] checks them
//! against fixed bounds *before* running Argon2, so no file can make it allocate or spin without
//! limit. The whole header is authenticated as associated data.
//!
//! Format:
//!
//! ```text
//! magic "ZMKS" ‖ version u8 (= 1) ‖ m_cost u32 BE ‖ t_cost u32 BE ‖ p_cost u32 BE
//!   ‖ salt [16] ‖ nonce [12] ‖ ciphertext ‖ tag [16]
//! ```

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::{CryptoError, random_bytes};

/// First bytes of every keystore file.
pub const MAGIC: [u8; 4] = *b"ZMKS";
/// The only format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Length of the Argon2 salt.
pub const SALT_LEN: usize = 16;
/// Length of magic, version, parameters, salt and nonce.
pub const HEADER_LEN: usize = 4 + 1 + 3 * 4 + SALT_LEN + NONCE_LEN;
/// Bytes a keystore adds to its secret.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Largest memory cost accepted, in KiB (1 GiB).
pub const MAX_M_COST_KIB: u32 = 1024 * 1024;
/// Largest number of passes accepted.
pub const MAX_T_COST: u32 = 16;
/// Largest number of lanes accepted.
pub const MAX_P_COST: u32 = 16;

/// Argon2id cost parameters, stored in each keystore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory, in KiB.
    pub m_cost_kib: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes (parallelism).
    pub p_cost: u32,
}

impl Argon2Params {
    /// Tiny parameters for tests only: they make passphrase guessing cheap.
    pub const TEST_PARAMS: Self = Self { m_cost_kib: 8, t_cost: 1, p_cost: 1 };

    /// Checks the bounds every keystore must meet, so both sealing and opening refuse the same
    /// parameters.
    fn checked(self) -> Result<Params, CryptoError> {
        let bad = CryptoError::KdfParams {
            m_cost_kib: self.m_cost_kib,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
        };
        let in_bounds = (1..=MAX_P_COST).contains(&self.p_cost)
            && (1..=MAX_T_COST).contains(&self.t_cost)
            && self.m_cost_kib <= MAX_M_COST_KIB
            && self.m_cost_kib >= 8 * self.p_cost;
        if !in_bounds {
            return Err(bad);
        }
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(KEY_LEN)).map_err(|_| bad)
    }
}

/// Tiny parameters for tests only (see [`Argon2Params::TEST_PARAMS`]).
pub const TEST_PARAMS: Argon2Params = Argon2Params::TEST_PARAMS;

impl Default for Argon2Params {
    /// The OWASP-recommended Argon2id minimum: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self { m_cost_kib: 19 * 1024, t_cost: 2, p_cost: 1 }
    }
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    params: Params,
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut key = Zeroizing::new([0_u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(key)
}

/// Encrypts `secret` under a key derived from `passphrase` with Argon2id and `params`.
///
/// # Errors
/// [`CryptoError::KdfParams`] if `params` are outside the bounds [`open_with_passphrase`]
/// accepts (a file that could never be opened is refused up front); [`CryptoError::Kdf`] if
/// Argon2 fails.
pub fn seal_with_passphrase(
    passphrase: &[u8],
    secret: &[u8],
    params: Argon2Params,
) -> Result<Vec<u8>, CryptoError> {
    let checked = params.checked()?;
    let mut salt = [0_u8; SALT_LEN];
    let mut nonce = [0_u8; NONCE_LEN];
    random_bytes(&mut salt);
    random_bytes(&mut nonce);
    let key = derive_key(passphrase, &salt, checked)?;

    // Sized once so the secret is never left behind in a reallocated buffer.
    let mut out = Vec::with_capacity(secret.len() + OVERHEAD);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&params.m_cost_kib.to_be_bytes());
    out.extend_from_slice(&params.t_cost.to_be_bytes());
    out.extend_from_slice(&params.p_cost.to_be_bytes());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(secret);
    let (header, body) = out.split_at_mut(HEADER_LEN);
    let tag = aead::seal_in_place(&key, &nonce, header, body);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Reads a keystore made by [`seal_with_passphrase`] and returns its secret in a buffer that
/// wipes itself.
///
/// # Errors
/// [`CryptoError::TooShort`], [`CryptoError::BadMagic`], [`CryptoError::UnsupportedVersion`]
/// for a malformed header; [`CryptoError::KdfParams`] for parameters out of bounds (checked
/// before Argon2 runs); [`CryptoError::WrongPassphrase`] if the passphrase is wrong or the file
/// was altered; [`CryptoError::Kdf`] if Argon2 fails.
pub fn open_with_passphrase(
    passphrase: &[u8],
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if blob.len() < OVERHEAD {
        return Err(CryptoError::TooShort { len: blob.len(), min: OVERHEAD });
    }
    let (header, rest) = blob.split_at(HEADER_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    if header[..4] != MAGIC {
        return Err(CryptoError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(CryptoError::UnsupportedVersion(header[4]));
    }
    let be = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let params = Argon2Params { m_cost_kib: be(5), t_cost: be(9), p_cost: be(13) };
    let checked = params.checked()?;
    let salt = &header[17..17 + SALT_LEN];
    let (Ok(nonce), Ok(tag)) =
        (<&[u8; NONCE_LEN]>::try_from(&header[17 + SALT_LEN..]), <&[u8; TAG_LEN]>::try_from(tag))
    else {
        // Unreachable: the lengths were fixed by the splits above.
        return Err(CryptoError::TooShort { len: blob.len(), min: OVERHEAD });
    };
    let key = derive_key(passphrase, salt, checked)?;
    let mut secret = Zeroizing::new(ciphertext.to_vec());
    aead::open_in_place(&key, nonce, header, &mut secret, tag)
        .map_err(|_| CryptoError::WrongPassphrase)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sealed() -> Vec<u8> {
        seal_with_passphrase(b"correct horse", b"identity secret", TEST_PARAMS).unwrap()
    }

    fn with_params(m: u32, t: u32, p: u32) -> Vec<u8> {
        let mut blob = sealed();
        blob[5..9].copy_from_slice(&m.to_be_bytes());
        blob[9..13].copy_from_slice(&t.to_be_bytes());
        blob[13..17].copy_from_slice(&p.to_be_bytes());
        blob
    }

    #[test]
    fn round_trip_and_layout() {
        let blob = sealed();
        assert_eq!(blob.len(), OVERHEAD + 15);
        assert_eq!(&blob[..4], b"ZMKS");
        assert_eq!(blob[4], VERSION);
        assert_eq!(&blob[5..9], &8_u32.to_be_bytes());
        let secret = open_with_passphrase(b"correct horse", &blob).unwrap();
        assert_eq!(secret.as_slice(), b"identity secret");
    }

    #[test]
    fn default_params_are_accepted() {
        assert!(Argon2Params::default().checked().is_ok());
        assert_eq!(Argon2Params::default().m_cost_kib, 19456);
    }

    #[test]
    fn wrong_passphrase() {
        assert_eq!(
            open_with_passphrase(b"correct horsf", &sealed()),
            Err(CryptoError::WrongPassphrase)
        );
    }

    #[test]
    fn too_short() {
        for len in [0, 4, HEADER_LEN, OVERHEAD - 1] {
            assert_eq!(
                open_with_passphrase(b"pw", &sealed()[..len]),
                Err(CryptoError::TooShort { len, min: OVERHEAD })
            );
        }
    }

    #[test]
    fn bad_magic() {
        let mut blob = sealed();
        blob[0] = b'X';
        assert_eq!(open_with_passphrase(b"pw", &blob), Err(CryptoError::BadMagic));
    }

    #[test]
    fn unknown_version() {
        let mut blob = sealed();
        blob[4] = 2;
        assert_eq!(open_with_passphrase(b"pw", &blob), Err(CryptoError::UnsupportedVersion(2)));
    }

    #[test]
    fn hostile_params_are_refused_before_argon2() {
        for (m, t, p) in [
            (u32::MAX, 1, 1),
            (MAX_M_COST_KIB + 1, 1, 1),
            (8, 0, 1),
            (8, MAX_T_COST + 1, 1),
            (8, u32::MAX, 1),
            (64, 1, 0),
            (1024, 1, MAX_P_COST + 1),
            (15, 1, 2),
            (0, 1, 1),
        ] {
            assert_eq!(
                open_with_passphrase(b"correct horse", &with_params(m, t, p)),
                Err(CryptoError::KdfParams { m_cost_kib: m, t_cost: t, p_cost: p }),
                "m={m} t={t} p={p}"
            );
        }
    }

    #[test]
    fn altered_params_in_bounds_fail_as_wrong_passphrase() {
        assert_eq!(
            open_with_passphrase(b"correct horse", &with_params(16, 1, 1)),
            Err(CryptoError::WrongPassphrase)
        );
    }

    #[test]
    fn sealing_refuses_unopenable_params() {
        let params = Argon2Params { m_cost_kib: MAX_M_COST_KIB + 1, t_cost: 1, p_cost: 1 };
        assert!(matches!(
            seal_with_passphrase(b"pw", b"s", params),
            Err(CryptoError::KdfParams { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn round_trip(
            passphrase in proptest::collection::vec(any::<u8>(), 0..64),
            secret in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let blob = seal_with_passphrase(&passphrase, &secret, TEST_PARAMS).unwrap();
            let opened = open_with_passphrase(&passphrase, &blob).unwrap();
            prop_assert_eq!(opened.as_slice(), &secret[..]);
        }

        #[test]
        fn any_flipped_byte_fails(index: proptest::sample::Index, bit in 0_u8..8) {
            let mut blob = sealed();
            let i = index.index(blob.len());
            // Flips in byte 6 of m_cost can ask for up to 512 MiB within bounds: slow, and the
            // bounds are tested on their own above.
            prop_assume!(i != 6);
            blob[i] ^= 1 << bit;
            prop_assert!(open_with_passphrase(b"correct horse", &blob).is_err());
        }
    }
}
