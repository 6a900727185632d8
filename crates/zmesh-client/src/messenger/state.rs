//! The messaging state and how it lives on disk.
//!
//! Everything is kept in one file, `state`, rewritten whole after each change, so that a crash
//! leaves either the old or the new state and never a mix (a ratchet saved without the one-time
//! key it consumed, say). The file is an [`envelope`] blob under the identity's envelope
//! secret, with the owner's address as associated data; the Olm pickles inside are sealed once
//! more by `zmesh-crypto` under their own contexts.
//!
//! ```text
//! state   = version u8 (= 1) ‖ account_len u32 ‖ account pickle
//!           ‖ contact_count u32 ‖ contact_count × contact
//!           ‖ seen_count u32 ‖ seen_count × (message_id [16] ‖ fingerprint [8]), oldest first
//! contact = identity [32] ‖ curve25519 [32] ‖ ed25519 [32] ‖ sealing [32]
//!           ‖ has_cert u8 (0 | 1) ‖ (sender certificate [CERT_LEN] if has_cert)
//!           ‖ session_count u8 ‖ session_count × (len u32 ‖ session pickle), preferred first
//! ```
//!
//! Writes go to `state.tmp` (mode 0600), are fsynced, renamed over `state`, and the directory is
//! fsynced. A `lock` file serializes processes that share the state (an `inbox --follow` and a
//! `send`, for instance): each operation holds it while it reloads, changes and saves.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;
use zmesh_crypto::CryptoError;
use zmesh_crypto::envelope;
use zmesh_crypto::olm::{E2eAccount, E2eSession};
use zmesh_crypto::prekeys::{CERT_LEN, DeviceKeys, SenderCertificate};
use zmesh_crypto::sign::PublicIdentity;
use zmesh_wire::{Reader, WireError};

use crate::identity::sync_dir;
use crate::{ClientError, Result};

/// Format version of the state file.
const STATE_VERSION: u8 = 1;
/// Envelope context of the state file.
const STATE_CONTEXT: &[u8] = b"zmesh/messaging-state/v1";
/// File names inside the state directory.
const STATE_FILE: &str = "state";
const TEMP_FILE: &str = "state.tmp";
const LOCK_FILE: &str = "lock";
/// Most message ids remembered for duplicate suppression (oldest forgotten first).
pub const SEEN_CAPACITY: usize = 10_000;
/// Most contacts kept.
pub const MAX_CONTACTS: usize = 10_000;
/// Most Olm sessions kept per contact (more than one exists when both sides started a session
/// at once, or the contact's device changed).
pub const MAX_SESSIONS_PER_CONTACT: usize = 4;
/// Largest account pickle accepted (vodozemac keeps at most 5000 one-time keys).
const MAX_ACCOUNT_PICKLE: usize = 4 * 1024 * 1024;
/// Largest session pickle accepted (5 receiving chains of 40 skipped keys at most).
const MAX_SESSION_PICKLE: usize = 1024 * 1024;
/// Largest state file read.
const MAX_STATE_FILE: u64 = 256 * 1024 * 1024;

/// Length of the fingerprint kept with each seen message id.
pub(super) const FINGERPRINT_LEN: usize = 8;
pub(super) type Fingerprint = [u8; FINGERPRINT_LEN];

/// What the messenger knows about one correspondent.
pub(super) struct Contact {
    pub identity: PublicIdentity,
    pub keys: DeviceKeys,
    /// The last certificate the contact sent (absent until a message arrives from them).
    pub cert: Option<SenderCertificate>,
    /// Olm sessions, the one to send with first.
    pub sessions: Vec<E2eSession>,
}

impl Contact {
    /// Records newer device keys (and the certificate they came in, if any).
    pub fn update_keys(&mut self, keys: DeviceKeys, cert: Option<SenderCertificate>) {
        if cert.is_some() {
            self.cert = cert;
        } else if self.cert.is_some_and(|c| *c.device_keys() != keys) {
            self.cert = None;
        }
        self.keys = keys;
    }

    /// Makes `session` the preferred one, dropping the oldest beyond the bound.
    pub fn add_session(&mut self, session: E2eSession) {
        self.sessions.insert(0, session);
        self.sessions.truncate(MAX_SESSIONS_PER_CONTACT);
    }
}

/// A bounded memory of received message ids, each with a fingerprint of its Olm message so that
/// only a true copy counts as already seen without decrypting it.
#[derive(Debug, Default)]
pub(super) struct Seen {
    map: HashMap<[u8; 16], Fingerprint>,
    /// Insertion order, oldest first.
    order: VecDeque<[u8; 16]>,
}

impl Seen {
    pub fn get(&self, id: &[u8; 16]) -> Option<&Fingerprint> {
        self.map.get(id)
    }

    /// Remembers `id` (a known id keeps its first fingerprint), forgetting the oldest beyond
    /// [`SEEN_CAPACITY`].
    pub fn insert(&mut self, id: [u8; 16], fingerprint: Fingerprint) {
        if self.map.contains_key(&id) {
            return;
        }
        while self.order.len() >= SEEN_CAPACITY {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(id, fingerprint);
        self.order.push_back(id);
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }
}

/// The whole messaging state of one identity.
pub(super) struct State {
    pub account: E2eAccount,
    pub contacts: BTreeMap<[u8; 32], Contact>,
    pub seen: Seen,
}

impl State {
    pub fn new() -> Self {
        State { account: E2eAccount::new(), contacts: BTreeMap::new(), seen: Seen::default() }
    }

    /// The contact for `identity`, created if new, with `keys` recorded.
    ///
    /// # Errors
    /// [`ClientError::TooManyContacts`] when a new contact would pass [`MAX_CONTACTS`].
    pub fn contact_entry(
        &mut self,
        identity: PublicIdentity,
        keys: DeviceKeys,
        cert: Option<SenderCertificate>,
    ) -> Result<&mut Contact> {
        let address = identity.address();
        if !self.contacts.contains_key(&address) && self.contacts.len() >= MAX_CONTACTS {
            return Err(ClientError::TooManyContacts { max: MAX_CONTACTS });
        }
        let contact = self.contacts.entry(address).or_insert_with(|| Contact {
            identity,
            keys,
            cert: None,
            sessions: Vec::new(),
        });
        contact.update_keys(keys, cert);
        Ok(contact)
    }

    /// The plaintext of the state file (wiped when dropped).
    pub(super) fn encode(&self, key: &[u8; 32]) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.push(STATE_VERSION);
        put_blob(&mut out, &self.account.pickle(key));
        put_u32(&mut out, self.contacts.len());
        for contact in self.contacts.values() {
            out.extend_from_slice(contact.identity.as_bytes());
            out.extend_from_slice(&contact.keys.curve25519);
            out.extend_from_slice(&contact.keys.ed25519);
            out.extend_from_slice(&contact.keys.sealing);
            match &contact.cert {
                Some(cert) => {
                    out.push(1);
                    cert.encode_into(&mut out);
                }
                None => out.push(0),
            }
            // At most MAX_SESSIONS_PER_CONTACT (kept by `add_session`).
            out.push(u8::try_from(contact.sessions.len()).unwrap_or(u8::MAX));
            for session in &contact.sessions {
                put_blob(&mut out, &session.pickle(key));
            }
        }
        put_u32(&mut out, self.seen.len());
        for id in &self.seen.order {
            out.extend_from_slice(id);
            out.extend_from_slice(self.seen.map.get(id).unwrap_or(&[0; FINGERPRINT_LEN]));
        }
        out
    }

    pub(super) fn decode(plain: &[u8], key: &[u8; 32]) -> std::result::Result<State, String> {
        let mut r = Reader::new(plain);
        let version = r.u8("state version").map_err(wire)?;
        if version != STATE_VERSION {
            return Err(format!("unsupported state version {version}"));
        }
        let pickle = get_blob(&mut r, "account pickle", MAX_ACCOUNT_PICKLE)?;
        let account = E2eAccount::from_pickle(pickle, key).map_err(|e| format!("account: {e}"))?;
        let count = get_count(&mut r, "contact count", MAX_CONTACTS)?;
        let mut contacts = BTreeMap::new();
        for _ in 0..count {
            let identity = r.array::<32>("contact identity").map_err(wire)?;
            let identity = PublicIdentity::from_bytes(&identity).map_err(|e| e.to_string())?;
            let keys = DeviceKeys {
                curve25519: r.array("contact curve25519 key").map_err(wire)?,
                ed25519: r.array("contact ed25519 key").map_err(wire)?,
                sealing: r.array("contact sealing key").map_err(wire)?,
            };
            let cert = match r.u8("certificate flag").map_err(wire)? {
                0 => None,
                1 => Some(
                    SenderCertificate::from_bytes(r.bytes(CERT_LEN, "certificate").map_err(wire)?)
                        .map_err(|e| format!("certificate: {e}"))?,
                ),
                v => return Err(format!("bad certificate flag {v}")),
            };
            let n = r.count_u8("session count", MAX_SESSIONS_PER_CONTACT).map_err(wire)?;
            let mut sessions = Vec::with_capacity(n);
            for _ in 0..n {
                let pickle = get_blob(&mut r, "session pickle", MAX_SESSION_PICKLE)?;
                let session =
                    E2eSession::from_pickle(pickle, key).map_err(|e| format!("session: {e}"))?;
                if session.remote_identity() != identity {
                    return Err("a session is filed under the wrong contact".into());
                }
                sessions.push(session);
            }
            let address = identity.address();
            let contact = Contact { identity, keys, cert, sessions };
            if contacts.insert(address, contact).is_some() {
                return Err("a contact appears twice".into());
            }
        }
        let count = get_count(&mut r, "seen count", SEEN_CAPACITY)?;
        let mut seen = Seen::default();
        for _ in 0..count {
            let id = r.array::<16>("seen id").map_err(wire)?;
            let fingerprint = r.array("seen fingerprint").map_err(wire)?;
            seen.insert(id, fingerprint);
        }
        if r.remaining() != 0 {
            return Err(format!("{} trailing bytes", r.remaining()));
        }
        Ok(State { account, contacts, seen })
    }
}

fn wire(e: WireError) -> String {
    e.to_string()
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Every count and pickle here is bounded far below u32::MAX.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_blob(out: &mut Vec<u8>, blob: &[u8]) {
    put_u32(out, blob.len());
    out.extend_from_slice(blob);
}

fn get_count(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
) -> std::result::Result<usize, String> {
    let n = r.u32(what).map_err(wire)? as usize;
    if n > max {
        return Err(format!("{what} {n} above {max}"));
    }
    Ok(n)
}

fn get_blob<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    max: usize,
) -> std::result::Result<&'a [u8], String> {
    let len = get_count(r, what, max)?;
    r.bytes(len, what).map_err(wire)
}

/// The state directory's files.
#[derive(Debug, Clone)]
pub(super) struct Store {
    dir: PathBuf,
}

/// Holds the directory's lock until dropped.
#[derive(Debug)]
pub(super) struct LockGuard(fs::File);

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first just makes it prompt.
        let _ = self.0.unlock();
    }
}

impl Store {
    /// Creates the directory (mode 0700) if needed.
    pub fn create(dir: &Path) -> Result<Store> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| ClientError::io(format!("creating {}", dir.display()), e))?;
        Ok(Store { dir: dir.to_owned() })
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Waits for exclusive use of the state (other processes hold it only for one operation).
    pub fn lock(&self) -> Result<LockGuard> {
        let path = self.dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ClientError::io(format!("opening {}", path.display()), e))?;
        file.lock().map_err(|e| ClientError::io(format!("locking {}", path.display()), e))?;
        Ok(LockGuard(file))
    }

    /// Reads and opens the state; `None` if there is none yet.
    pub fn load(&self, key: &[u8; 32], owner: &[u8; 32]) -> Result<Option<State>> {
        let path = self.state_path();
        let corrupt =
            |reason: String| ClientError::CorruptMessagingState { path: path.clone(), reason };
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClientError::io(format!("reading {}", path.display()), e)),
        };
        if len > MAX_STATE_FILE {
            return Err(corrupt(format!("{len} bytes, at most {MAX_STATE_FILE} expected")));
        }
        let sealed = fs::read(&path)
            .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))?;
        let plain = match envelope::open(key, STATE_CONTEXT, owner, &sealed) {
            Ok(plain) => Zeroizing::new(plain),
            Err(CryptoError::BadTag) => {
                return Err(ClientError::ForeignMessagingState { path: path.clone() });
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        State::decode(&plain, key).map(Some).map_err(corrupt)
    }

    /// Writes the state atomically: temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, state: &State, key: &[u8; 32], owner: &[u8; 32]) -> Result<()> {
        let plain = state.encode(key);
        let sealed = envelope::seal(key, STATE_CONTEXT, owner, &plain);
        let temp = self.dir.join(TEMP_FILE);
        let path = self.state_path();
        // A leftover from an interrupted save is stale (saves happen under the lock).
        match fs::remove_file(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ClientError::io(format!("removing {}", temp.display()), e)),
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| ClientError::io(format!("creating {}", temp.display()), e))?;
        if let Err(e) = file.write_all(&sealed).and_then(|()| file.sync_all()) {
            let _ = fs::remove_file(&temp);
            return Err(ClientError::io(format!("writing {}", temp.display()), e));
        }
        drop(file);
        fs::rename(&temp, &path).map_err(|e| {
            let _ = fs::remove_file(&temp);
            ClientError::io(format!("renaming {} to {}", temp.display(), path.display()), e)
        })?;
        sync_dir(&self.dir)
    }
}
