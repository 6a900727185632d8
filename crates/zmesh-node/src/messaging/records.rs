//! Signed records users publish in the DHT: presence (the relay a user is reachable at, so
//! other relays can forward to it) and the prekey bundle (what a sender needs to open a
//! session). A record is stored under [`record_key`] on the nodes nearest that key; each of
//! them checks the owner's signature and the value itself, so a relay cannot plant or alter a
//! record, and readers may check it again.
//!
//! Lifetimes are bounded by kind ([`PRESENCE_MAX_LIFETIME_MS`], [`BUNDLE_MAX_LIFETIME_MS`]), so
//! a record the owner no longer refreshes goes away on its own, and a version cannot lie in the
//! future, so an owner's (or a thief's) record cannot pin the key against later updates.
//!
//! [`RecordStore`] is memory only: records are short-lived and republished by their owners, so
//! a restarted node learns them again from the next publish.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId};
use sha2::{Digest, Sha256};
use zmesh_crypto::prekeys::PrekeyBundle;
use zmesh_crypto::sign::{PublicIdentity, SigningIdentity};
use zmesh_types::Key256;
use zmesh_wire::msg::{
    MAX_RECORD_VALUE, MsgMessage, MsgOutcome, MsgStatus, RecordKind, SignedRecord,
};
use zmesh_wire::{Reader, WirePeer, Writer};

use super::{CLOCK_SKEW_MS, answer};

/// Domain separation for [`record_key`]: no other key derived from an address can equal it.
pub const RECORD_KEY_DOMAIN: &[u8] = b"zmesh/record-key/v1\0";
/// Longest a presence record may live: a user who goes away is soon no longer routed to a
/// relay that no longer serves it; online clients republish well within it.
pub const PRESENCE_MAX_LIFETIME_MS: u64 = 15 * 60 * 1000;
/// Longest a prekey bundle may live (30 days, like offline messages): long enough for a
/// device that is offline for weeks, short enough that a lost device's keys go away.
pub const BUNDLE_MAX_LIFETIME_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most records one node keeps (each at most [`MAX_RECORD_VALUE`] bytes of value).
pub const MAX_RECORDS: usize = 100_000;
/// Format version of [`PresenceValue`].
pub const PRESENCE_VERSION: u8 = 1;

/// Where a user's record of `kind` is stored:
/// `SHA-256("zmesh/record-key/v1\0" ‖ kind code ‖ address)`.
pub fn record_key(kind: RecordKind, address: &[u8; 32]) -> Key256 {
    let mut h = Sha256::new();
    h.update(RECORD_KEY_DOMAIN);
    h.update([kind.code()]);
    h.update(address);
    Key256(h.finalize().into())
}

/// Longest lifetime a record of `kind` may claim, measured from the holder's clock.
pub fn max_lifetime_ms(kind: RecordKind) -> u64 {
    match kind {
        RecordKind::Presence => PRESENCE_MAX_LIFETIME_MS,
        RecordKind::Bundle => BUNDLE_MAX_LIFETIME_MS,
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("invalid or weak owner public key")]
    BadKey,
    #[error("bad owner signature")]
    BadSignature,
    #[error("the prekey bundle belongs to another identity than the record's owner")]
    OwnerMismatch,
    #[error("the record has expired")]
    Expired,
    #[error("the record lives until {expires_at_ms}, past the latest allowed {latest_ms}")]
    LifetimeTooLong { expires_at_ms: u64, latest_ms: u64 },
    #[error("the record version {version} is ahead of this node's clock")]
    VersionInFuture { version: u64 },
    #[error("bad record value: {0}")]
    BadValue(String),
    #[error("the record store is full ({MAX_RECORDS} records at most)")]
    Full,
}

impl RecordError {
    pub fn status(&self) -> MsgStatus {
        match self {
            RecordError::BadKey | RecordError::BadSignature | RecordError::OwnerMismatch => {
                MsgStatus::Unauthorized
            }
            RecordError::Expired
            | RecordError::LifetimeTooLong { .. }
            | RecordError::VersionInFuture { .. }
            | RecordError::BadValue(_) => MsgStatus::BadRequest,
            RecordError::Full => MsgStatus::Quota,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.status() {
            MsgStatus::Unauthorized => "unauthorized",
            MsgStatus::Quota => "quota",
            _ => "invalid",
        }
    }
}

/// The value of a presence record: the relay the user is reachable at.
///
/// Encoding: `version u8 (= 1) ‖ WirePeer` (PeerId bytes and binary multiaddrs). Bytes after
/// the peer are ignored, like every zmesh decoder does, so a newer version may append fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceValue {
    pub relay: WirePeer,
}

impl PresenceValue {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(vec![PRESENCE_VERSION]);
        self.relay.encode(&mut w);
        w.0
    }

    /// Decodes and checks the value: a known version, a PeerId and multiaddrs that parse.
    /// A record that points nowhere is useless to every reader, so it is refused up front.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader::new(bytes);
        let bad = |e: zmesh_wire::WireError| RecordError::BadValue(format!("presence: {e}"));
        let version = r.u8("presence version").map_err(bad)?;
        if version != PRESENCE_VERSION {
            return Err(RecordError::BadValue(format!("unknown presence version {version}")));
        }
        let relay = WirePeer::decode(&mut r).map_err(bad)?;
        PeerId::from_bytes(&relay.peer_id)
            .map_err(|e| RecordError::BadValue(format!("presence relay peer id: {e}")))?;
        for addr in &relay.addrs {
            Multiaddr::try_from(addr.clone())
                .map_err(|e| RecordError::BadValue(format!("presence relay address: {e}")))?;
        }
        Ok(PresenceValue { relay })
    }
}

/// What a checked record is: whose, and where it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedRecord {
    pub address: [u8; 32],
    pub key: Key256,
}

/// Checks `record` at `now_ms`: live, a bounded lifetime, a version not ahead of the clock
/// (by more than the skew), a valid owner key, a strict signature, and a value that decodes
/// for its kind (a bundle must verify and name the owner's identity). Cheap checks first.
pub fn verify_record(record: &SignedRecord, now_ms: u64) -> Result<VerifiedRecord, RecordError> {
    if record.expires_at_ms <= now_ms {
        return Err(RecordError::Expired);
    }
    let latest_ms =
        now_ms.saturating_add(max_lifetime_ms(record.kind)).saturating_add(CLOCK_SKEW_MS);
    if record.expires_at_ms > latest_ms {
        return Err(RecordError::LifetimeTooLong {
            expires_at_ms: record.expires_at_ms,
            latest_ms,
        });
    }
    if record.version > now_ms.saturating_add(CLOCK_SKEW_MS) {
        return Err(RecordError::VersionInFuture { version: record.version });
    }
    if record.value.len() > MAX_RECORD_VALUE {
        return Err(RecordError::BadValue(format!(
            "{} bytes, at most {MAX_RECORD_VALUE}",
            record.value.len()
        )));
    }
    let owner = PublicIdentity::from_bytes(&record.owner_key).map_err(|_| RecordError::BadKey)?;
    owner
        .verify(&record.signed_bytes(), &record.signature)
        .map_err(|_| RecordError::BadSignature)?;
    match record.kind {
        RecordKind::Presence => {
            PresenceValue::from_bytes(&record.value)?;
        }
        RecordKind::Bundle => {
            let bundle = PrekeyBundle::from_bytes(&record.value)
                .map_err(|e| RecordError::BadValue(format!("prekey bundle: {e}")))?;
            if bundle.identity_key() != &record.owner_key {
                return Err(RecordError::OwnerMismatch);
            }
            bundle.verify().map_err(|e| RecordError::BadValue(format!("prekey bundle: {e}")))?;
        }
    }
    let address = owner.address();
    Ok(VerifiedRecord { address, key: record_key(record.kind, &address) })
}

/// Builds and signs a record (the owner's side).
pub fn sign_record(
    identity: &SigningIdentity,
    kind: RecordKind,
    value: Vec<u8>,
    version: u64,
    expires_at_ms: u64,
) -> SignedRecord {
    let mut record = SignedRecord {
        kind,
        owner_key: *identity.public().as_bytes(),
        version,
        expires_at_ms,
        value,
        signature: [0; 64],
    };
    record.signature = identity.sign(&record.signed_bytes());
    record
}

/// What [`RecordStore::put`] did with a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// New, or a higher version than the one held.
    Stored,
    /// The very record held already.
    Unchanged,
    /// Not newer than the one held (a lower version, or another record under the same
    /// version): the held one stays, so an old record cannot be replayed over a new one.
    Stale,
}

/// The records this node holds, newest version per record key, in memory and bounded.
#[derive(Debug)]
pub struct RecordStore {
    records: HashMap<Key256, SignedRecord>,
    limit: usize,
}

impl Default for RecordStore {
    fn default() -> Self {
        RecordStore::new()
    }
}

impl RecordStore {
    /// A store of at most [`MAX_RECORDS`] records.
    pub fn new() -> Self {
        RecordStore::with_limit(MAX_RECORDS)
    }

    /// A store of at most `limit` records (tests, small nodes).
    pub fn with_limit(limit: usize) -> Self {
        RecordStore { records: HashMap::new(), limit }
    }

    /// Checks `record` and keeps it if it is newer than the one held. A new key when the store
    /// is full is refused after dropping the expired records, rather than growing or evicting
    /// someone's live record.
    pub fn put(&mut self, record: SignedRecord, now_ms: u64) -> Result<PutOutcome, RecordError> {
        let verified = verify_record(&record, now_ms)?;
        match self.records.get(&verified.key) {
            Some(held) if held.expires_at_ms > now_ms => {
                if record.version > held.version {
                    self.records.insert(verified.key, record);
                    Ok(PutOutcome::Stored)
                } else if record == *held {
                    Ok(PutOutcome::Unchanged)
                } else {
                    Ok(PutOutcome::Stale)
                }
            }
            Some(_) => {
                // The held one has expired: any valid record replaces it.
                self.records.insert(verified.key, record);
                Ok(PutOutcome::Stored)
            }
            None => {
                if self.records.len() >= self.limit {
                    self.gc(now_ms);
                }
                if self.records.len() >= self.limit {
                    return Err(RecordError::Full);
                }
                self.records.insert(verified.key, record);
                Ok(PutOutcome::Stored)
            }
        }
    }

    /// The live record of `kind` for `address`, if held; an expired one is never returned.
    pub fn get(&self, kind: RecordKind, address: &[u8; 32], now_ms: u64) -> Option<SignedRecord> {
        self.records.get(&record_key(kind, address)).filter(|r| r.expires_at_ms > now_ms).cloned()
    }

    /// Drops every expired record; returns how many went.
    pub fn gc(&mut self, now_ms: u64) -> usize {
        let before = self.records.len();
        self.records.retain(|_, r| r.expires_at_ms > now_ms);
        before - self.records.len()
    }

    /// Records held, expired ones not yet collected included.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Answers `PublishRecord` (with `Result`) and `FetchRecord` (with `Record`).
    pub fn handle(&mut self, request: MsgMessage, now_ms: u64) -> MsgMessage {
        match request {
            MsgMessage::PublishRecord { record } => match self.put(record, now_ms) {
                Ok(PutOutcome::Stored) => answer(MsgStatus::Ok, "stored"),
                Ok(PutOutcome::Unchanged) => answer(MsgStatus::Ok, "unchanged"),
                Ok(PutOutcome::Stale) => {
                    answer(MsgStatus::Replay, "a record of this version or newer is held")
                }
                Err(e) => answer(e.status(), e.to_string()),
            },
            MsgMessage::FetchRecord { kind, owner_address } => {
                match self.get(kind, &owner_address, now_ms) {
                    Some(record) => {
                        MsgMessage::Record { outcome: MsgOutcome::ok(), record: Some(record) }
                    }
                    None => MsgMessage::Record {
                        outcome: MsgOutcome::new(MsgStatus::NotFound, "no such record"),
                        record: None,
                    },
                }
            }
            _ => answer(MsgStatus::BadRequest, "not a record request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zmesh_crypto::olm::E2eAccount;

    const NOW: u64 = 1_800_000_000_000;
    const MINUTE: u64 = 60_000;

    fn relay() -> WirePeer {
        let peer = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        WirePeer { peer_id: peer.to_bytes(), addrs: vec![addr.to_vec()] }
    }

    fn presence(id: &SigningIdentity, version: u64, expires: u64) -> SignedRecord {
        let value = PresenceValue { relay: relay() }.to_bytes();
        sign_record(id, RecordKind::Presence, value, version, expires)
    }

    fn bundle_value(id: &SigningIdentity) -> Vec<u8> {
        let mut account = E2eAccount::new();
        account.generate_one_time_keys(5);
        account.prekey_bundle(id, NOW).unwrap().to_bytes()
    }

    fn bundle(id: &SigningIdentity, version: u64, expires: u64) -> SignedRecord {
        sign_record(id, RecordKind::Bundle, bundle_value(id), version, expires)
    }

    fn address(id: &SigningIdentity) -> [u8; 32] {
        id.public().address()
    }

    #[test]
    fn record_keys_are_domain_separated_by_kind() {
        let a = [7u8; 32];
        let mut pre = RECORD_KEY_DOMAIN.to_vec();
        pre.push(1);
        pre.extend_from_slice(&a);
        assert_eq!(record_key(RecordKind::Presence, &a), Key256::hash(&pre));
        assert_ne!(record_key(RecordKind::Presence, &a), record_key(RecordKind::Bundle, &a));
        assert_ne!(record_key(RecordKind::Presence, &a), zmesh_core::mailbox::mailbox_key(&a));
    }

    #[test]
    fn presence_values_round_trip_and_bad_ones_are_refused() {
        let value = PresenceValue { relay: relay() };
        assert_eq!(PresenceValue::from_bytes(&value.to_bytes()).unwrap(), value);
        let mut newer = value.to_bytes();
        newer.extend_from_slice(b"appended field");
        assert_eq!(PresenceValue::from_bytes(&newer).unwrap(), value);
        let mut wrong_version = value.to_bytes();
        wrong_version[0] = 2;
        assert!(matches!(PresenceValue::from_bytes(&wrong_version), Err(RecordError::BadValue(_))));
        let junk_peer = PresenceValue { relay: WirePeer { peer_id: vec![1, 2, 3], addrs: vec![] } };
        assert!(matches!(
            PresenceValue::from_bytes(&junk_peer.to_bytes()),
            Err(RecordError::BadValue(_))
        ));
        let mut junk_addr = value.clone();
        junk_addr.relay.addrs = vec![vec![0xFF, 0xFF, 0xFF]];
        assert!(matches!(
            PresenceValue::from_bytes(&junk_addr.to_bytes()),
            Err(RecordError::BadValue(_))
        ));
        for len in 0..value.to_bytes().len() {
            assert!(PresenceValue::from_bytes(&value.to_bytes()[..len]).is_err());
        }
    }

    #[test]
    fn valid_presence_and_bundle_are_stored_and_fetched() {
        let alice = SigningIdentity::generate();
        let mut store = RecordStore::new();
        let p = presence(&alice, NOW, NOW + 10 * MINUTE);
        let b = bundle(&alice, NOW, NOW + 20 * 24 * 60 * MINUTE);
        let v = verify_record(&b, NOW).unwrap();
        assert_eq!(v.address, address(&alice));
        assert_eq!(v.key, record_key(RecordKind::Bundle, &address(&alice)));

        let answer = store.handle(MsgMessage::PublishRecord { record: p.clone() }, NOW);
        assert!(
            matches!(answer, MsgMessage::Result { outcome } if outcome.status == MsgStatus::Ok)
        );
        assert_eq!(store.put(b.clone(), NOW), Ok(PutOutcome::Stored));
        assert_eq!(store.len(), 2);

        let fetched = store.handle(
            MsgMessage::FetchRecord { kind: RecordKind::Presence, owner_address: address(&alice) },
            NOW + 1,
        );
        assert_eq!(fetched, MsgMessage::Record { outcome: MsgOutcome::ok(), record: Some(p) });
        assert_eq!(store.get(RecordKind::Bundle, &address(&alice), NOW), Some(b));

        let missing = store.handle(
            MsgMessage::FetchRecord { kind: RecordKind::Presence, owner_address: [9; 32] },
            NOW,
        );
        assert!(matches!(
            missing,
            MsgMessage::Record { outcome, record: None } if outcome.status == MsgStatus::NotFound
        ));
    }

    #[test]
    fn expired_records_are_never_returned_or_accepted() {
        let alice = SigningIdentity::generate();
        let mut store = RecordStore::new();
        let p = presence(&alice, NOW, NOW + MINUTE);
        assert_eq!(store.put(p.clone(), NOW), Ok(PutOutcome::Stored));
        assert!(store.get(RecordKind::Presence, &address(&alice), NOW + MINUTE - 1).is_some());
        assert_eq!(store.get(RecordKind::Presence, &address(&alice), NOW + MINUTE), None);
        assert_eq!(store.put(p, NOW + MINUTE), Err(RecordError::Expired));
        assert_eq!(store.gc(NOW + MINUTE), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn too_long_lifetimes_and_future_versions_are_refused() {
        let alice = SigningIdentity::generate();
        let edge = NOW + PRESENCE_MAX_LIFETIME_MS + CLOCK_SKEW_MS;
        verify_record(&presence(&alice, NOW, edge), NOW).unwrap();
        let e = verify_record(&presence(&alice, NOW, edge + 1), NOW).unwrap_err();
        assert!(matches!(e, RecordError::LifetimeTooLong { .. }));
        assert_eq!(e.status(), MsgStatus::BadRequest);

        let edge = NOW + BUNDLE_MAX_LIFETIME_MS + CLOCK_SKEW_MS;
        verify_record(&bundle(&alice, NOW, edge), NOW).unwrap();
        assert!(matches!(
            verify_record(&bundle(&alice, NOW, edge + 1), NOW),
            Err(RecordError::LifetimeTooLong { .. })
        ));
        assert!(matches!(
            verify_record(&presence(&alice, u64::MAX, NOW + MINUTE), NOW),
            Err(RecordError::VersionInFuture { .. })
        ));
        verify_record(&presence(&alice, NOW + CLOCK_SKEW_MS, NOW + MINUTE), NOW).unwrap();
    }

    #[test]
    fn forged_and_altered_records_are_refused() {
        let alice = SigningIdentity::generate();
        let mallory = SigningIdentity::generate();
        let mut store = RecordStore::new();

        let mut altered = presence(&alice, NOW, NOW + MINUTE);
        altered.value = PresenceValue { relay: relay() }.to_bytes();
        assert_eq!(store.put(altered, NOW), Err(RecordError::BadSignature));

        let mut longer = presence(&alice, NOW, NOW + MINUTE);
        longer.expires_at_ms += 1;
        assert_eq!(verify_record(&longer, NOW), Err(RecordError::BadSignature));

        // Mallory's signature over a record claiming Alice's key.
        let mut impostor = presence(&alice, NOW, NOW + MINUTE);
        impostor.signature = mallory.sign(&impostor.signed_bytes());
        let answer = store.handle(MsgMessage::PublishRecord { record: impostor }, NOW);
        assert!(matches!(
            answer,
            MsgMessage::Result { outcome } if outcome.status == MsgStatus::Unauthorized
        ));

        let mut weak = presence(&alice, NOW, NOW + MINUTE);
        weak.owner_key = [0; 32];
        weak.owner_key[0] = 1;
        assert_eq!(verify_record(&weak, NOW), Err(RecordError::BadKey));

        // A correctly signed record whose value is not a presence.
        let junk = sign_record(&alice, RecordKind::Presence, vec![1, 2, 3], NOW, NOW + MINUTE);
        assert!(matches!(verify_record(&junk, NOW), Err(RecordError::BadValue(_))));
        // A presence value filed as a bundle.
        let misfiled = sign_record(
            &alice,
            RecordKind::Bundle,
            PresenceValue { relay: relay() }.to_bytes(),
            NOW,
            NOW + MINUTE,
        );
        assert!(matches!(verify_record(&misfiled, NOW), Err(RecordError::BadValue(_))));
        assert!(store.is_empty());
    }

    #[test]
    fn a_bundle_of_another_identity_is_refused() {
        let alice = SigningIdentity::generate();
        let mallory = SigningIdentity::generate();
        // Mallory republishes Alice's (validly signed) bundle under her own record.
        let record = sign_record(&mallory, RecordKind::Bundle, bundle_value(&alice), NOW, NOW + 1);
        let e = verify_record(&record, NOW).unwrap_err();
        assert_eq!(e, RecordError::OwnerMismatch);
        assert_eq!(e.status(), MsgStatus::Unauthorized);

        // A bundle whose own signature is broken, under the right owner.
        let mut value = bundle_value(&alice);
        let last = value.len() - 1;
        value[last] ^= 1;
        let record = sign_record(&alice, RecordKind::Bundle, value, NOW, NOW + 1);
        assert!(matches!(verify_record(&record, NOW), Err(RecordError::BadValue(_))));
    }

    #[test]
    fn newer_versions_replace_older_ones_and_older_ones_are_stale() {
        let alice = SigningIdentity::generate();
        let mut store = RecordStore::new();
        let v1 = presence(&alice, NOW, NOW + MINUTE);
        let v2 = presence(&alice, NOW + 1, NOW + 2 * MINUTE);
        assert_eq!(store.put(v1.clone(), NOW), Ok(PutOutcome::Stored));
        assert_eq!(store.put(v1.clone(), NOW), Ok(PutOutcome::Unchanged));
        assert_eq!(store.put(v2.clone(), NOW), Ok(PutOutcome::Stored));
        assert_eq!(store.get(RecordKind::Presence, &address(&alice), NOW), Some(v2.clone()));
        assert_eq!(store.put(v1.clone(), NOW), Ok(PutOutcome::Stale));
        // Another record under the held version does not replace it either.
        let rival = presence(&alice, NOW + 1, NOW + 3 * MINUTE);
        assert_eq!(store.put(rival, NOW), Ok(PutOutcome::Stale));
        let answer = store.handle(MsgMessage::PublishRecord { record: v1 }, NOW);
        assert!(matches!(
            answer,
            MsgMessage::Result { outcome } if outcome.status == MsgStatus::Replay
        ));
        assert_eq!(store.get(RecordKind::Presence, &address(&alice), NOW), Some(v2));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn the_store_bound_is_respected() {
        let ids: Vec<_> = (0..4).map(|_| SigningIdentity::generate()).collect();
        let mut store = RecordStore::with_limit(3);
        assert_eq!(store.put(presence(&ids[0], NOW, NOW + MINUTE), NOW), Ok(PutOutcome::Stored));
        for id in &ids[1..3] {
            assert_eq!(
                store.put(presence(id, NOW, NOW + 10 * MINUTE), NOW),
                Ok(PutOutcome::Stored)
            );
        }
        let fourth = presence(&ids[3], NOW, NOW + 10 * MINUTE);
        let e = store.put(fourth.clone(), NOW).unwrap_err();
        assert_eq!(e, RecordError::Full);
        assert_eq!(e.status(), MsgStatus::Quota);
        // A held key may still be updated when full.
        let update = presence(&ids[1], NOW + 1, NOW + 10 * MINUTE);
        assert_eq!(store.put(update, NOW), Ok(PutOutcome::Stored));
        assert_eq!(store.len(), 3);
        // Once a record expires, its room goes to the newcomer.
        assert_eq!(store.put(fourth, NOW + MINUTE), Ok(PutOutcome::Stored));
        assert_eq!(store.len(), 3);
        assert_eq!(store.get(RecordKind::Presence, &address(&ids[0]), NOW), None);
    }

    #[test]
    fn other_requests_are_bad_requests() {
        let mut store = RecordStore::new();
        let answer = store.handle(MsgMessage::Deliver { messages: Vec::new() }, NOW);
        assert!(matches!(
            answer,
            MsgMessage::Result { outcome } if outcome.status == MsgStatus::BadRequest
        ));
    }
}
