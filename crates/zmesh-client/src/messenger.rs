//! A user's end-to-end messaging state: the Olm account, one set of Olm sessions per contact,
//! each contact's last known device keys, and the ids of recently received messages. No
//! networking: [`Messenger::encrypt`] turns text into sealed bytes for a relay, and
//! [`Messenger::decrypt`] turns sealed bytes from a relay back into text.
//!
//! - The first message to someone needs their [`PrekeyBundle`] (published as a
//!   [`RecordKind::Bundle`](zmesh_wire::msg::RecordKind::Bundle) record, see [`Messenger::bundle_record`] and [`bundle_from_record`]);
//!   later ones, and replies, use the Olm session that message started.
//! - Every message is sealed (sealed sender): a relay sees the recipient, never the sender.
//!   The sender's [`SenderCertificate`](zmesh_crypto::prekeys::SenderCertificate) travels inside, and the receiver checks that it binds
//!   the Olm key the message was made with to the sender's address.
//! - State is saved, sealed under a key derived from the identity's secret, before
//!   `encrypt`/`decrypt`/`bundle_record` return (the ratchet moved; losing that step would make
//!   later messages undecryptable). Everything lives in one file, `state`, replaced atomically
//!   (temporary file, fsync, rename, directory fsync), mode 0600, in a 0700 directory. Each
//!   operation holds the directory's `lock` file and reloads the state first, so several
//!   processes may share one state directory.
//! - A message id seen before (the same message delivered twice, by a retry through another
//!   relay) is reported with `duplicate: true` and an empty `text`, without decrypting again:
//!   its Olm message key was used up the first time. Only a true copy counts (the seen-id memory
//!   keeps a fingerprint of each Olm message); anything else with a known id is decrypted as
//!   usual and reported as a duplicate only if it decrypts. The memory keeps the last
//!   [`SEEN_CAPACITY`] ids; an older copy fails to decrypt with a clear error instead.
//! - When both sides start a session at the same time, each keeps both (up to
//!   [`MAX_SESSIONS_PER_CONTACT`]): messages are sent with the session that last received one,
//!   and a received message is tried against each session of its sender's device.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;
use zmesh_crypto::olm::E2eSession;
use zmesh_crypto::prekeys::{DeviceKeys, PrekeyBundle};
use zmesh_crypto::safety;
use zmesh_crypto::sealed::{self, SealedContent};
use zmesh_crypto::sign::{PublicIdentity, SigningIdentity};

use crate::identity::Identity;
use crate::{ClientError, Result};

mod bundle;
mod content;
#[doc(hidden)]
pub mod fuzzing;
mod receive;
mod state;
#[cfg(test)]
mod tests;

pub use bundle::bundle_from_record;
pub use content::MAX_TEXT_LEN;
pub use state::{MAX_CONTACTS, MAX_SESSIONS_PER_CONTACT, SEEN_CAPACITY};

use bundle::check_bundle;
use state::{State, Store};

/// Unpublished one-time keys [`Messenger::bundle_record`] makes sure of before each bundle.
pub const MIN_UNPUBLISHED_KEYS: usize = 20;
/// How long a published bundle record lives (30 days).
pub const BUNDLE_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;

// The longest sealed message this module makes fits the messaging protocol's frames.
const _: () = assert!(sealed::MAX_SEALED_LEN <= zmesh_wire::msg::MAX_SEALED_LEN);

/// A message ready for a relay: send `sealed` to the recipient under `id` (keep the id on
/// retries, so relays and the recipient drop copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: [u8; 16],
    pub sealed: Vec<u8>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub id: [u8; 16],
    /// The sender's address (checked against the sender's certificate and Olm session).
    pub from: [u8; 32],
    /// The sender's clock when sent (Unix milliseconds).
    pub sent_at_ms: u64,
    /// The text; empty for a duplicate (see the module documentation).
    pub text: String,
    /// This id was received before; the caller should drop the message.
    pub duplicate: bool,
}

/// One identity's end-to-end messaging state, kept in a directory.
pub struct Messenger {
    store: Store,
    signing: SigningIdentity,
    address: [u8; 32],
    key: Zeroizing<[u8; 32]>,
    state: State,
}

impl fmt::Debug for Messenger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messenger")
            .field("address", &hex::encode(self.address))
            .field("dir", &self.store)
            .field("contacts", &self.state.contacts.len())
            .finish_non_exhaustive()
    }
}

fn hex_address(address: &[u8; 32]) -> String {
    hex::encode(address)
}

/// Fresh random bytes (message ids, nonces) from the system's generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0_u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        ClientError::io("reading the system's random number generator", std::io::Error::other(e))
    })?;
    Ok(bytes)
}

/// The conventional state directory of an identity file: `<identity file>.e2e`.
pub fn default_dir(identity_file: &Path) -> PathBuf {
    let mut name = identity_file.as_os_str().to_owned();
    name.push(".e2e");
    PathBuf::from(name)
}

impl Messenger {
    /// Opens the state in `dir` (see [`default_dir`]), creating a new Olm account there if it
    /// holds none.
    ///
    /// # Errors
    /// [`ClientError::ForeignMessagingState`] if another identity wrote it,
    /// [`ClientError::CorruptMessagingState`], I/O errors.
    pub fn open(identity: &Identity, dir: &Path) -> Result<Messenger> {
        let store = Store::create(dir)?;
        let signing = SigningIdentity::from_secret_bytes(&identity.signing().secret_bytes());
        let address = identity.address().0;
        let key = identity.envelope_secret();
        let _lock = store.lock()?;
        let state = match store.load(&key, &address)? {
            Some(state) => state,
            None => {
                let state = State::new();
                store.save(&state, &key, &address)?;
                state
            }
        };
        Ok(Messenger { store, signing, address, key, state })
    }

    /// This identity's address.
    pub fn address(&self) -> [u8; 32] {
        self.address
    }

    /// This device's current keys.
    pub fn device_keys(&self) -> DeviceKeys {
        self.state.account.device_keys()
    }

    /// Runs `op` with the lock held on freshly loaded state; `op` saves what it changes. After
    /// an error the in-memory state goes back to what is on disk.
    fn transaction<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let _lock = self.store.lock()?;
        self.state = self.load_existing()?;
        let result = op(self);
        if result.is_err()
            && let Ok(state) = self.load_existing()
        {
            self.state = state;
        }
        result
    }

    fn load_existing(&self) -> Result<State> {
        self.store.load(&self.key, &self.address)?.ok_or_else(|| {
            ClientError::CorruptMessagingState {
                path: self.store.state_path(),
                reason: "the state file disappeared".into(),
            }
        })
    }

    fn save(&self) -> Result<()> {
        self.store.save(&self.state, &self.key, &self.address)
    }

    /// Encrypts `text` for the owner of `recipient` (an address).
    ///
    /// Uses the session with that address; `bundle` (the recipient's, e.g. from
    /// [`bundle_from_record`]) is needed when there is none, and starts a new session when its
    /// device keys differ from the current session's (the recipient moved to a new device). A
    /// given bundle is always checked to belong to `recipient`. Saves before returning.
    ///
    /// # Errors
    /// [`ClientError::TextTooLong`], [`ClientError::NoSession`] without a session or bundle,
    /// [`ClientError::BadBundle`], [`ClientError::Usage`] for one's own address, I/O errors.
    pub fn encrypt(
        &mut self,
        recipient: &[u8; 32],
        bundle: Option<PrekeyBundle>,
        text: &str,
        now_ms: u64,
    ) -> Result<Outgoing> {
        if text.len() > MAX_TEXT_LEN {
            return Err(ClientError::TextTooLong { len: text.len(), max: MAX_TEXT_LEN });
        }
        if *recipient == self.address {
            return Err(ClientError::Usage("cannot send an end-to-end message to oneself".into()));
        }
        let bundle = match bundle {
            Some(bundle) => Some(check_bundle(bundle, recipient)?),
            None => None,
        };
        self.transaction(|m| m.encrypt_locked(recipient, bundle, text, now_ms))
    }

    fn encrypt_locked(
        &mut self,
        recipient: &[u8; 32],
        bundle: Option<(PrekeyBundle, PublicIdentity)>,
        text: &str,
        now_ms: u64,
    ) -> Result<Outgoing> {
        let current = self.state.contacts.get(recipient).and_then(|c| c.sessions.first());
        let reuse = current.is_some_and(|session| {
            bundle.as_ref().is_none_or(|(b, _)| b.device_keys() == session.remote_device_keys())
        });
        if !reuse {
            let Some((mut bundle, identity)) = bundle else {
                return Err(ClientError::NoSession { address: hex_address(recipient) });
            };
            let session = E2eSession::outbound(&self.state.account, &mut bundle, recipient)
                .map_err(|e| ClientError::BadBundle {
                    address: hex_address(recipient),
                    reason: e.to_string(),
                })?;
            self.state.contact_entry(identity, *bundle.device_keys(), None)?.add_session(session);
        }
        let sender = self.state.account.sender_certificate(&self.signing);
        let Some(session) =
            self.state.contacts.get_mut(recipient).and_then(|c| c.sessions.first_mut())
        else {
            return Err(ClientError::NoSession { address: hex_address(recipient) });
        };
        let id = random_bytes()?;
        let plain = content::encode(&id, now_ms, text);
        let ciphertext =
            session.encrypt(&plain).map_err(|e| ClientError::Encryption(e.to_string()))?;
        let sealing = session.remote_device_keys().sealing;
        let sealed_content =
            SealedContent { sender, message_id: id, sent_at_ms: now_ms, ciphertext };
        let sealed = sealed::seal(&sealed_content, &sealing)
            .map_err(|e| ClientError::Encryption(e.to_string()))?;
        self.save()?;
        Ok(Outgoing { id, sealed })
    }

    /// Opens and decrypts a sealed message addressed to this identity. Saves before returning
    /// (also when the message decrypted but its content is malformed: the ratchet moved).
    ///
    /// # Errors
    /// [`ClientError::NotForThisIdentity`] (someone else's, or altered),
    /// [`ClientError::MalformedMessage`], [`ClientError::UnknownSession`],
    /// [`ClientError::UndecryptableMessage`], I/O errors. A message that does not open or
    /// decrypt leaves the state as it was.
    pub fn decrypt(&mut self, sealed: &[u8]) -> Result<Incoming> {
        self.transaction(|m| m.decrypt_locked(sealed))
    }

    /// The safety number of this identity and `other_identity_key` (an Ed25519 identity key,
    /// see [`contact_identity`](Self::contact_identity)): twelve groups of five digits that
    /// both sides compare out of band.
    ///
    /// # Errors
    /// [`ClientError::BadIdentityKey`] for an invalid or weak key.
    pub fn safety_number(&self, other_identity_key: &[u8; 32]) -> Result<String> {
        let other = PublicIdentity::from_bytes(other_identity_key)
            .map_err(|e| ClientError::BadIdentityKey(e.to_string()))?;
        Ok(safety::safety_number(&self.signing.public(), &other).to_string())
    }

    /// The identity key of a known contact (as of the last operation).
    pub fn contact_identity(&self, address: &[u8; 32]) -> Option<[u8; 32]> {
        self.state.contacts.get(address).map(|c| *c.identity.as_bytes())
    }

    /// Addresses of all known contacts, in byte order.
    pub fn contacts(&self) -> Vec<[u8; 32]> {
        self.state.contacts.keys().copied().collect()
    }
}
