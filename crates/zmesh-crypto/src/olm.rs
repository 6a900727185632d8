//! End-to-end sessions: a thin, safe wrapper around vodozemac's Olm (3DH key agreement with a
//! one-time key, then the Double Ratchet).
//!
//! vodozemac (audited, used by Matrix clients) does all the cryptography; this module fixes
//! how zmesh uses it:
//!
//! - Keys cross the API as plain 32-byte arrays, and every remote key arrives inside a signed
//!   [`PrekeyBundle`] or [`SenderCertificate`], so a session is always bound to a zmesh
//!   identity ([`E2eSession::remote_identity`]).
//! - Sessions use Olm v1 (`SessionConfig::version_1`), the only configuration vodozemac offers
//!   without an experimental feature. Its 8-byte truncated MAC is acceptable here because
//!   every Olm message also travels inside a sealed-sender AEAD with a 16-byte tag.
//! - Pickles (saved state) are sealed with this crate's [`envelope`]
//!   (AES-256-GCM under a per-pickle HKDF key) rather than vodozemac's pickle cipher, which
//!   uses a deterministic IV and an 8-byte MAC. The plaintext (a fixed header and vodozemac's
//!   JSON pickle) is built in a buffer sized in advance and wiped after use.
//! - Each [`E2eAccount`] also holds an X25519 *sealing* key for [`crate::sealed`]. vodozemac
//!   does not expose the Olm identity secret, and a separate key keeps the Olm identity key to
//!   the one protocol it was made for.

use std::fmt;

use serde::Serialize;
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, AccountPickle, OlmMessage, Session, SessionConfig, SessionPickle};
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use crate::prekeys::{DeviceKeys, MAX_ONE_TIME_KEYS, PrekeyBundle, Reader, SenderCertificate};
use crate::sign::{PublicIdentity, SigningIdentity};
use crate::{CryptoError, envelope, random_bytes};

/// Largest plaintext [`E2eSession::encrypt`] accepts.
pub const MAX_PLAINTEXT_LEN: usize = 64 * 1024;
/// Largest Olm message body accepted from a peer: the largest plaintext plus Olm's framing,
/// keys, padding and MAC (under 200 bytes), with room to spare.
pub const MAX_BODY_LEN: usize = MAX_PLAINTEXT_LEN + 1024;
/// Version byte at the start of a pickle's plaintext.
const PICKLE_VERSION: u8 = 1;
/// Envelope contexts: an account pickle never opens as a session pickle, and vice versa.
const ACCOUNT_PICKLE_CONTEXT: &[u8] = b"zmesh/olm-account-pickle/v1";
const SESSION_PICKLE_CONTEXT: &[u8] = b"zmesh/olm-session-pickle/v1";

mod message;

pub use message::{OlmCiphertext, OlmKind};

fn olm_error(e: impl fmt::Display) -> CryptoError {
    CryptoError::Olm(e.to_string())
}

/// Serializes `value` as JSON after `header` into a buffer sized exactly in advance (a first
/// pass only counts bytes), so no reallocation leaves a copy of the secrets behind, and the
/// buffer is wiped when dropped.
fn pickle_plaintext(header: &[u8], value: &impl Serialize) -> Zeroizing<Vec<u8>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // vodozemac's pickles always serialize (it relies on that itself), and neither writer
    // here can fail.
    #[allow(clippy::expect_used)]
    serde_json::to_writer(&mut count, value).expect("vodozemac pickles serialize to JSON");
    let mut out = Zeroizing::new(Vec::with_capacity(header.len() + count.0));
    out.extend_from_slice(header);
    #[allow(clippy::expect_used)]
    serde_json::to_writer(&mut *out, value).expect("vodozemac pickles serialize to JSON");
    out
}

/// A pickle's plaintext: the fixed header after the version byte, and vodozemac's JSON.
type OpenedPickle<const N: usize> = (Zeroizing<[u8; N]>, Zeroizing<Vec<u8>>);

/// Opens a pickle and splits its plaintext into the `N`-byte header and the JSON after it.
fn open_pickle<const N: usize>(
    key: &[u8; 32],
    context: &[u8],
    bytes: &[u8],
) -> Result<OpenedPickle<N>, CryptoError> {
    let plaintext = Zeroizing::new(envelope::open(key, context, b"", bytes)?);
    let mut r = Reader::new(&plaintext);
    let version = r.u8("pickle")?;
    if version != PICKLE_VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    let header = Zeroizing::new(r.array::<N>("pickle header")?);
    let json = Zeroizing::new(r.rest().to_vec());
    Ok((header, json))
}

/// A device's long-term end-to-end keys: the Olm account (identity keys and one-time keys) and
/// the sealing key. Secrets are wiped when it is dropped (vodozemac and x25519-dalek zeroize
/// their key types).
pub struct E2eAccount {
    account: Account,
    sealing: StaticSecret,
}

impl fmt::Debug for E2eAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("E2eAccount")
            .field("keys", &self.device_keys())
            .field("one_time_keys", &self.one_time_key_count())
            .finish_non_exhaustive()
    }
}

impl Default for E2eAccount {
    fn default() -> Self {
        Self::new()
    }
}

impl E2eAccount {
    /// A new account with fresh keys and no one-time keys.
    pub fn new() -> Self {
        let mut secret = Zeroizing::new([0_u8; 32]);
        random_bytes(secret.as_mut());
        Self { account: Account::new(), sealing: StaticSecret::from(*secret) }
    }

    /// The Olm Curve25519 identity key.
    pub fn curve25519_key(&self) -> [u8; 32] {
        self.account.curve25519_key().to_bytes()
    }

    /// The Olm Ed25519 key.
    pub fn ed25519_key(&self) -> [u8; 32] {
        *self.account.ed25519_key().as_bytes()
    }

    /// The public sealing key that [`crate::sealed::seal`] encrypts to.
    pub fn sealing_key(&self) -> [u8; 32] {
        PublicKey::from(&self.sealing).to_bytes()
    }

    /// All three public keys.
    pub fn device_keys(&self) -> DeviceKeys {
        DeviceKeys {
            curve25519: self.curve25519_key(),
            ed25519: self.ed25519_key(),
            sealing: self.sealing_key(),
        }
    }

    /// Generates up to `count` new one-time keys (capped at [`MAX_ONE_TIME_KEYS`] per call)
    /// and returns their public halves. The account keeps a bounded store and drops its oldest
    /// keys when it is full.
    pub fn generate_one_time_keys(&mut self, count: usize) -> Vec<[u8; 32]> {
        let result = self.account.generate_one_time_keys(count.min(MAX_ONE_TIME_KEYS));
        result.created.iter().map(Curve25519PublicKey::to_bytes).collect()
    }

    /// One-time keys not yet marked published, oldest first.
    pub fn unpublished_one_time_keys(&self) -> Vec<[u8; 32]> {
        let mut keys: Vec<_> = self.account.one_time_keys().into_iter().collect();
        keys.sort_by_key(|(id, _)| *id);
        keys.into_iter().map(|(_, key)| key.to_bytes()).collect()
    }

    /// Marks every current one-time key published (after a bundle with them was handed out).
    pub fn mark_published(&mut self) {
        self.account.mark_keys_as_published();
    }

    /// One-time key secrets held (published or not, not yet used by an inbound session).
    pub fn one_time_key_count(&self) -> usize {
        self.account.stored_one_time_key_count()
    }

    /// A signed bundle of this device's keys and (up to [`MAX_ONE_TIME_KEYS`] of) its
    /// unpublished one-time keys. Call [`mark_published`](Self::mark_published) once it is out.
    ///
    /// # Errors
    /// None in practice; the key count is capped before signing.
    pub fn prekey_bundle(
        &self,
        identity: &SigningIdentity,
        created_at_ms: u64,
    ) -> Result<PrekeyBundle, CryptoError> {
        let mut keys = self.unpublished_one_time_keys();
        keys.truncate(MAX_ONE_TIME_KEYS);
        PrekeyBundle::sign(identity, self.device_keys(), keys, created_at_ms)
    }

    /// This device's certificate under `identity`, for [`crate::sealed::SealedContent`].
    pub fn sender_certificate(&self, identity: &SigningIdentity) -> SenderCertificate {
        SenderCertificate::sign(identity, self.device_keys())
    }

    /// Diffie-Hellman of the sealing secret with `their` public key.
    pub(crate) fn sealing_dh(&self, their: &[u8; 32]) -> SharedSecret {
        self.sealing.diffie_hellman(&PublicKey::from(*their))
    }

    /// The account's whole state, encrypted under `key` (see the module documentation).
    pub fn pickle(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut header = Zeroizing::new([0_u8; 33]);
        header[0] = PICKLE_VERSION;
        header[1..].copy_from_slice(self.sealing.as_bytes());
        let plaintext = pickle_plaintext(header.as_ref(), &self.account.pickle());
        envelope::seal(key, ACCOUNT_PICKLE_CONTEXT, b"", &plaintext)
    }

    /// Restores an account saved by [`pickle`](Self::pickle).
    ///
    /// # Errors
    /// [`CryptoError::TooShort`] / [`CryptoError::BadTag`] (wrong key, not an account pickle,
    /// or altered), [`CryptoError::UnsupportedVersion`], [`CryptoError::Malformed`].
    pub fn from_pickle(bytes: &[u8], key: &[u8; 32]) -> Result<Self, CryptoError> {
        let (sealing, json) = open_pickle::<32>(key, ACCOUNT_PICKLE_CONTEXT, bytes)?;
        let pickle: AccountPickle =
            serde_json::from_slice(&json).map_err(|_| CryptoError::Malformed("account pickle"))?;
        Ok(Self { account: Account::from_pickle(pickle), sealing: StaticSecret::from(*sealing) })
    }
}

/// An Olm session with one remote device, bound to that device's owner.
pub struct E2eSession {
    session: Session,
    remote_identity: PublicIdentity,
    remote_keys: DeviceKeys,
}

impl fmt::Debug for E2eSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("E2eSession")
            .field("session_id", &self.session_id())
            .field("remote_identity", &self.remote_identity)
            .finish_non_exhaustive()
    }
}

impl E2eSession {
    /// Starts a session to the device that published `bundle`, after checking the bundle
    /// ([`PrekeyBundle::verify`]) and that its identity hashes to `recipient_address` (the
    /// address the sender meant: without this check whoever served the bundle could swap in
    /// their own). Takes one one-time key from the bundle.
    ///
    /// # Errors
    /// Those of [`PrekeyBundle::verify`], [`CryptoError::IdentityMismatch`],
    /// [`CryptoError::NoOneTimeKey`], or [`CryptoError::Olm`].
    pub fn outbound(
        account: &E2eAccount,
        bundle: &mut PrekeyBundle,
        recipient_address: &[u8; 32],
    ) -> Result<Self, CryptoError> {
        let remote_identity = bundle.verify()?;
        if remote_identity.address() != *recipient_address {
            return Err(CryptoError::IdentityMismatch);
        }
        let one_time_key = bundle.take_one_time_key().ok_or(CryptoError::NoOneTimeKey)?;
        let remote_keys = *bundle.device_keys();
        let session = account
            .account
            .create_outbound_session(
                SessionConfig::version_1(),
                Curve25519PublicKey::from_bytes(remote_keys.curve25519),
                Curve25519PublicKey::from_bytes(one_time_key),
            )
            .map_err(olm_error)?;
        Ok(Self { session, remote_identity, remote_keys })
    }

    /// Creates the receiving side of a session from its first (pre-key) message and returns
    /// that message's plaintext. `sender` (from the sealed envelope) is verified and must name
    /// the Olm key the message was made with. Uses up the one-time key the message names.
    ///
    /// # Errors
    /// Those of [`SenderCertificate::verify`], [`CryptoError::Malformed`],
    /// [`CryptoError::NotPreKeyMessage`], [`CryptoError::SenderMismatch`], or
    /// [`CryptoError::Olm`] (unknown or used one-time key, bad MAC).
    pub fn inbound(
        account: &mut E2eAccount,
        sender: &SenderCertificate,
        message: &OlmCiphertext,
    ) -> Result<(Self, Vec<u8>), CryptoError> {
        let remote_identity = sender.verify()?;
        let OlmMessage::PreKey(pre_key) = message.to_olm()? else {
            return Err(CryptoError::NotPreKeyMessage);
        };
        let remote_keys = *sender.device_keys();
        if pre_key.identity_key().to_bytes() != remote_keys.curve25519 {
            return Err(CryptoError::SenderMismatch);
        }
        let created = account
            .account
            .create_inbound_session(SessionConfig::version_1(), pre_key.identity_key(), &pre_key)
            .map_err(olm_error)?;
        Ok((Self { session: created.session, remote_identity, remote_keys }, created.plaintext))
    }

    /// Encrypts the next message (a pre-key message until the other side has answered).
    ///
    /// # Errors
    /// [`CryptoError::TooLong`] past [`MAX_PLAINTEXT_LEN`], or [`CryptoError::Olm`].
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<OlmCiphertext, CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(CryptoError::TooLong {
                what: "plaintext",
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let message = self.session.encrypt(plaintext).map_err(olm_error)?;
        Ok(OlmCiphertext::from_olm(&message))
    }

    /// Decrypts a message of this session. Messages may arrive out of order within vodozemac's
    /// limits (up to 2000 skipped messages per chain, 5 receiving chains, 40 stored skipped
    /// keys per chain); a replayed or too old message fails.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] or [`CryptoError::Olm`].
    pub fn decrypt(&mut self, message: &OlmCiphertext) -> Result<Vec<u8>, CryptoError> {
        let message = message.to_olm()?;
        self.session.decrypt(&message).map_err(olm_error)
    }

    /// vodozemac's globally unique session id (base64).
    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// Whether a message from the other side was decrypted (from then on, messages are
    /// normal rather than pre-key).
    pub fn has_received_message(&self) -> bool {
        self.session.has_received_message()
    }

    /// The remote owner's checked identity.
    pub fn remote_identity(&self) -> PublicIdentity {
        self.remote_identity
    }

    /// The remote device's keys (its sealing key is where replies are sealed to).
    pub fn remote_device_keys(&self) -> &DeviceKeys {
        &self.remote_keys
    }

    /// The session's whole state, encrypted under `key`.
    pub fn pickle(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut header = [0_u8; 129];
        header[0] = PICKLE_VERSION;
        header[1..33].copy_from_slice(self.remote_identity.as_bytes());
        header[33..65].copy_from_slice(&self.remote_keys.curve25519);
        header[65..97].copy_from_slice(&self.remote_keys.ed25519);
        header[97..].copy_from_slice(&self.remote_keys.sealing);
        let plaintext = pickle_plaintext(&header, &self.session.pickle());
        envelope::seal(key, SESSION_PICKLE_CONTEXT, b"", &plaintext)
    }

    /// Restores a session saved by [`pickle`](Self::pickle).
    ///
    /// # Errors
    /// As [`E2eAccount::from_pickle`].
    pub fn from_pickle(bytes: &[u8], key: &[u8; 32]) -> Result<Self, CryptoError> {
        let (header, json) = open_pickle::<128>(key, SESSION_PICKLE_CONTEXT, bytes)?;
        let mut r = Reader::new(header.as_ref());
        let remote_identity = PublicIdentity::from_bytes(&r.array("pickle identity")?)?;
        let remote_keys = DeviceKeys {
            curve25519: r.array("pickle curve25519 key")?,
            ed25519: r.array("pickle ed25519 key")?,
            sealing: r.array("pickle sealing key")?,
        };
        let pickle: SessionPickle =
            serde_json::from_slice(&json).map_err(|_| CryptoError::Malformed("session pickle"))?;
        Ok(Self { session: Session::from_pickle(pickle), remote_identity, remote_keys })
    }
}

#[cfg(test)]
mod tests;
