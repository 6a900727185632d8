//! One replica of offline mailboxes: the node-side handler of `MailboxAppend`, `MailboxRead`,
//! `MailboxAck` and `MailboxIds`, on top of the durable [`MailboxStore`].
//!
//! - Appends come from relays on behalf of anonymous senders, so they carry no signature; the
//!   replica checks only what keeps the mailbox sound: a bounded expiry ([`OFFLINE_TTL_MS`]),
//!   a body within limits, and an `order` not ahead of the clock (a far-future order would
//!   sort after every later message, and a client that read and acked past it would never see
//!   those). Appends are idempotent by message id and answered only once fsynced.
//! - Reads and acks come from the user's relay carrying the user's own signed
//!   [`UserAuth`], bound to the mailbox of the key that signed it
//!   (`mailbox_key(SHA-256(owner_key))`): the replica checks the user, not the peer that
//!   passed the request on, and a user can only ever read or ack their own mailbox.
//! - `MailboxIds` lists cursors only, so replicas can find what they lack without moving
//!   bodies around.
//!
//! Methods block on disk; the node calls them from blocking tasks.

use std::path::Path;
use std::sync::Mutex;

use libp2p::PeerId;
use sha2::{Digest, Sha256};
use zmesh_core::mailbox::mailbox_key;
use zmesh_store::mailbox::{MailboxGc, ReadBatch};
use zmesh_store::{MailboxEntry, MailboxLimits, MailboxStore};
use zmesh_types::Key256;
use zmesh_wire::msg::{
    AuthPurpose, Cursor, ENVELOPE_FIXED_LEN, Envelope, MAX_BATCH, MAX_IDS, MAX_MSG_FRAME,
    MAX_SEALED_LEN, MsgMessage, MsgStatus, UserAuth,
};

use super::auth::{AuthFailure, UserReplayGuard, verify_user_auth};
use super::{CLOCK_SKEW_MS, MessagingError, answer, store_status};

/// The mailbox store's file in the node directory.
pub const MAILBOX_FILE: &str = "mailboxes.redb";
/// How long an offline message may wait for its recipient (seed 000: 30 days). A protocol
/// constant: every replica refuses a longer one, so no relay can make a message outlive it.
pub const OFFLINE_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Sealed bytes one `Batch` answer carries at most (besides a first message, which always
/// goes). Far under the frame limit, so a relay that merges the answers of three replicas
/// holds a few MiB per read, not three full frames.
pub const MAX_READ_BYTES: u64 = 4 * 1024 * 1024;

// A full batch under the byte budget (plus one message that overruns it) fits a frame.
const _: () = assert!(
    MAX_READ_BYTES as usize + MAX_SEALED_LEN + MAX_BATCH * ENVELOPE_FIXED_LEN + 64 * 1024
        <= MAX_MSG_FRAME
);

/// The wire cursor of a store cursor (the same pair, `(order, id)`).
pub fn wire_cursor(c: zmesh_store::Cursor) -> Cursor {
    Cursor { order: c.order, id: c.id }
}

/// The store cursor of a wire cursor.
pub fn store_cursor(c: Cursor) -> zmesh_store::Cursor {
    zmesh_store::Cursor { order: c.order, id: c.id }
}

/// The mailbox entry an envelope is stored as.
pub fn entry_from_envelope(e: Envelope) -> MailboxEntry {
    MailboxEntry { id: e.id, order: e.order, expires_at_ms: e.expires_at_ms, body: e.sealed }
}

/// The envelope a stored entry is carried in.
pub fn envelope_from_entry(e: MailboxEntry) -> Envelope {
    Envelope { id: e.id, order: e.order, expires_at_ms: e.expires_at_ms, sealed: e.body }
}

/// The mailbox a user's authorisation is for: that of the key that signed it.
pub fn owner_mailbox(auth: &UserAuth) -> Key256 {
    let address: [u8; 32] = Sha256::digest(auth.owner_key).into();
    mailbox_key(&address)
}

/// The replica side of the mailboxes this node holds.
#[derive(Debug)]
pub struct MailboxHolder {
    store: MailboxStore,
    guard: Mutex<UserReplayGuard>,
    /// Added to the time for expiry decisions only (tests of the 30-day TTL); signatures are
    /// judged by the real clock, which their signers share.
    expiry_offset_ms: u64,
}

impl MailboxHolder {
    /// Opens (or creates) the store at `<dir>/mailboxes.redb`.
    pub fn open(dir: &Path, limits: MailboxLimits) -> Result<Self, MessagingError> {
        let path = dir.join(MAILBOX_FILE);
        let store = MailboxStore::open(&path, limits)
            .map_err(|e| MessagingError::store(format!("opening {}", path.display()), e))?;
        Ok(MailboxHolder {
            store,
            guard: Mutex::new(UserReplayGuard::default()),
            expiry_offset_ms: 0,
        })
    }

    /// Moves the clock expiry is judged by `offset_ms` ahead (tests and demos).
    pub fn with_expiry_offset(mut self, offset_ms: u64) -> Self {
        self.expiry_offset_ms = offset_ms;
        self
    }

    /// The time expiry is judged by, for a real time of `now_ms`.
    pub fn expiry_now(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.expiry_offset_ms)
    }

    /// The store below, for figures and GC schedules.
    pub fn store(&self) -> &MailboxStore {
        &self.store
    }

    /// Collects expired messages; durable on `Ok`.
    pub fn gc(&self, now_ms: u64) -> Result<MailboxGc, MessagingError> {
        self.store.gc(self.expiry_now(now_ms)).map_err(|e| MessagingError::store("mailbox gc", e))
    }

    /// Answers one replica request. `_from` is the peer that sent it; appends and listings are
    /// open to any peer at this layer, and reads and acks are judged by the user's signature,
    /// never by who relayed them.
    pub fn handle(&self, _from: &PeerId, request: MsgMessage, now_ms: u64) -> MsgMessage {
        match request {
            MsgMessage::MailboxAppend { mailbox, envelope } => {
                self.append(&Key256(mailbox), envelope, now_ms)
            }
            MsgMessage::MailboxRead { auth, after, max_messages } => {
                self.read(&auth, after, max_messages, now_ms)
            }
            MsgMessage::MailboxAck { auth, upto } => self.ack(&auth, upto, now_ms),
            MsgMessage::MailboxIds { mailbox, after, limit } => {
                self.ids(&Key256(mailbox), after, limit, now_ms)
            }
            _ => answer(MsgStatus::BadRequest, "not a mailbox replica request"),
        }
    }

    fn append(&self, mailbox: &Key256, envelope: Envelope, now_ms: u64) -> MsgMessage {
        let expiry_now = self.expiry_now(now_ms);
        if envelope.expires_at_ms <= expiry_now {
            return answer(MsgStatus::BadRequest, "the message has expired");
        }
        let latest = now_ms.saturating_add(OFFLINE_TTL_MS).saturating_add(CLOCK_SKEW_MS);
        if envelope.expires_at_ms > latest {
            return answer(
                MsgStatus::BadRequest,
                format!("the message expires after the {OFFLINE_TTL_MS} ms offline TTL"),
            );
        }
        if envelope.order > now_ms.saturating_add(CLOCK_SKEW_MS) {
            return answer(MsgStatus::BadRequest, "the message order is ahead of this clock");
        }
        if envelope.sealed.len() > MAX_SEALED_LEN {
            return answer(
                MsgStatus::BadRequest,
                format!(
                    "sealed message of {} bytes, at most {MAX_SEALED_LEN}",
                    envelope.sealed.len()
                ),
            );
        }
        match self.store.append(mailbox, &entry_from_envelope(envelope), expiry_now) {
            Ok(appended) if appended.duplicate => answer(MsgStatus::Ok, "duplicate"),
            Ok(_) => answer(MsgStatus::Ok, "stored"),
            Err(e) => answer(store_status(&e), e.to_string()),
        }
    }

    /// Checks a read or ack authorisation and returns the mailbox it opens.
    fn authorise(
        &self,
        auth: &UserAuth,
        purpose: AuthPurpose,
        now_ms: u64,
    ) -> Result<Key256, AuthFailure> {
        let mailbox = owner_mailbox(auth);
        // A poisoned lock only means another handler panicked mid-check; the cache is still a
        // valid set of nonces.
        let mut guard = crate::lock(&self.guard);
        verify_user_auth(auth, purpose, &mailbox.0, now_ms, &mut guard)?;
        Ok(mailbox)
    }

    fn read(
        &self,
        auth: &UserAuth,
        after: Option<Cursor>,
        max_messages: u16,
        now_ms: u64,
    ) -> MsgMessage {
        let mailbox = match self.authorise(auth, AuthPurpose::MailboxRead, now_ms) {
            Ok(m) => m,
            Err(e) => return answer(e.status(), e.to_string()),
        };
        let max = usize::from(max_messages).clamp(1, MAX_BATCH);
        let expiry_now = self.expiry_now(now_ms);
        match self.store.read(&mailbox, after.map(store_cursor), max, MAX_READ_BYTES, expiry_now) {
            Ok(ReadBatch { entries, has_more, next_cursor }) => MsgMessage::Batch {
                messages: entries.into_iter().map(envelope_from_entry).collect(),
                has_more,
                next_cursor: next_cursor.map(wire_cursor),
            },
            Err(e) => answer(store_status(&e), e.to_string()),
        }
    }

    fn ack(&self, auth: &UserAuth, upto: Cursor, now_ms: u64) -> MsgMessage {
        let mailbox = match self.authorise(auth, AuthPurpose::MailboxAck, now_ms) {
            Ok(m) => m,
            Err(e) => return answer(e.status(), e.to_string()),
        };
        // Orders come from many relays' clocks, and a message can reach this replica just after
        // one stamped later that the owner already read: an ack would delete it unread. So an
        // ack only reaches entries older than the clock skew; younger ones stay for a later ack,
        // and the client drops the copies it reads again by their ids.
        let settled = Cursor { order: now_ms.saturating_sub(CLOCK_SKEW_MS), id: [0xFF; 16] };
        let upto = upto.min(settled);
        match self.store.ack(&mailbox, store_cursor(upto), self.expiry_now(now_ms)) {
            Ok(removed) => answer(MsgStatus::Ok, format!("{removed} removed")),
            Err(e) => answer(store_status(&e), e.to_string()),
        }
    }

    fn ids(&self, mailbox: &Key256, after: Option<Cursor>, limit: u16, now_ms: u64) -> MsgMessage {
        let limit = usize::from(limit).min(MAX_IDS);
        match self.store.ids_after(mailbox, after.map(store_cursor), limit, self.expiry_now(now_ms))
        {
            Ok(cursors) => {
                MsgMessage::Ids { cursors: cursors.into_iter().map(wire_cursor).collect() }
            }
            Err(e) => answer(store_status(&e), e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::auth::sign_user_auth;
    use zmesh_crypto::sign::SigningIdentity;
    use zmesh_wire::msg::MsgOutcome;

    const NOW: u64 = 1_800_000_000_000;
    const DAY: u64 = 24 * 60 * 60 * 1000;

    /// A user and the state a client keeps to sign fresh authorisations.
    struct User {
        id: SigningIdentity,
        nonce: u64,
    }

    impl User {
        fn new() -> Self {
            User { id: SigningIdentity::generate(), nonce: 0 }
        }

        fn mailbox(&self) -> Key256 {
            mailbox_key(&self.id.public().address())
        }

        fn auth(&mut self, purpose: AuthPurpose, now: u64) -> UserAuth {
            self.nonce += 1;
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&self.nonce.to_be_bytes());
            sign_user_auth(&self.id, purpose, &self.mailbox().0, now, nonce)
        }

        fn read(&mut self, after: Option<Cursor>, max: u16, now: u64) -> MsgMessage {
            MsgMessage::MailboxRead {
                auth: self.auth(AuthPurpose::MailboxRead, now),
                after,
                max_messages: max,
            }
        }

        fn ack(&mut self, upto: Cursor, now: u64) -> MsgMessage {
            MsgMessage::MailboxAck { auth: self.auth(AuthPurpose::MailboxAck, now), upto }
        }
    }

    fn holder(dir: &Path) -> MailboxHolder {
        MailboxHolder::open(dir, MailboxLimits::default()).unwrap()
    }

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519().public().to_peer_id()
    }

    /// A pseudo-random id, so ids do not sort in append order.
    fn id(n: u32) -> [u8; 16] {
        let h: [u8; 32] = Sha256::digest(n.to_be_bytes()).into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        id
    }

    fn envelope(n: u32, order: u64) -> Envelope {
        Envelope {
            id: id(n),
            order,
            expires_at_ms: NOW + DAY,
            sealed: format!("sealed {n}").into_bytes(),
        }
    }

    fn append(h: &MailboxHolder, mailbox: &Key256, envelope: Envelope, now: u64) -> MsgOutcome {
        match h.handle(&peer(), MsgMessage::MailboxAppend { mailbox: mailbox.0, envelope }, now) {
            MsgMessage::Result { outcome } => outcome,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn status(answer: &MsgMessage) -> MsgStatus {
        match answer {
            MsgMessage::Result { outcome } => outcome.status,
            other => panic!("expected a Result, got {other:?}"),
        }
    }

    fn batch(answer: MsgMessage) -> (Vec<Envelope>, bool, Option<Cursor>) {
        match answer {
            MsgMessage::Batch { messages, has_more, next_cursor } => {
                (messages, has_more, next_cursor)
            }
            other => panic!("expected a Batch, got {other:?}"),
        }
    }

    #[test]
    fn conversions_keep_every_field() {
        let e = envelope(1, 42);
        let entry = entry_from_envelope(e.clone());
        assert_eq!(wire_cursor(entry.cursor()), e.cursor());
        assert_eq!(store_cursor(e.cursor()), entry.cursor());
        assert_eq!(envelope_from_entry(entry), e);
    }

    #[test]
    fn round_trip_of_300_messages_with_equal_orders_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let h = holder(dir.path());
        let mut alice = User::new();
        let mb = alice.mailbox();
        for n in 0..300 {
            assert_eq!(append(&h, &mb, envelope(n, NOW), NOW).status, MsgStatus::Ok);
        }

        // One read asks for more than a batch may hold: capped at MAX_BATCH.
        let (first, has_more, _) = batch(h.handle(&peer(), alice.read(None, u16::MAX, NOW), NOW));
        assert_eq!(first.len(), MAX_BATCH);
        assert!(has_more);

        // Read it all in batches of 64, then check order and completeness.
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let (msgs, more, next) = batch(h.handle(&peer(), alice.read(after, 64, NOW), NOW));
            assert!(msgs.len() <= 64);
            got.extend(msgs);
            after = next;
            if !more {
                break;
            }
        }
        assert_eq!(got.len(), 300);
        let cursors: Vec<_> = got.iter().map(Envelope::cursor).collect();
        let mut sorted = cursors.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(cursors, sorted, "strictly in (order, id) order, no repeats");
        assert_eq!(after, cursors.last().copied());
        let mut bodies: Vec<_> = got.iter().map(|e| e.sealed.clone()).collect();
        bodies.sort();
        let mut expected: Vec<_> = (0..300).map(|n| format!("sealed {n}").into_bytes()).collect();
        expected.sort();
        assert_eq!(bodies, expected);

        // An ack right away removes nothing: a message stamped earlier by a slower relay's
        // clock may still be on its way, and must not be deleted unread.
        let ack = h.handle(&peer(), alice.ack(cursors[299], NOW), NOW);
        assert_eq!(
            ack,
            MsgMessage::Result { outcome: MsgOutcome::new(MsgStatus::Ok, "0 removed") }
        );
        // Once the clock skew has passed: ack the first 100, then the rest.
        let later = NOW + CLOCK_SKEW_MS + 1;
        let ack = h.handle(&peer(), alice.ack(cursors[99], later), later);
        assert_eq!(status(&ack), MsgStatus::Ok);
        let (rest, _, _) = batch(h.handle(&peer(), alice.read(None, 256, later), later));
        assert_eq!(rest.iter().map(Envelope::cursor).collect::<Vec<_>>(), cursors[100..]);
        let ack = h.handle(&peer(), alice.ack(cursors[299], later), later);
        assert_eq!(
            ack,
            MsgMessage::Result { outcome: MsgOutcome::new(MsgStatus::Ok, "200 removed") }
        );
        let (none, more, next) = batch(h.handle(&peer(), alice.read(None, 10, later), later));
        assert!(none.is_empty() && !more && next.is_none());
    }

    #[test]
    fn a_duplicate_append_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let h = holder(dir.path());
        let mut alice = User::new();
        let mb = alice.mailbox();
        assert_eq!(
            append(&h, &mb, envelope(1, NOW), NOW),
            MsgOutcome::new(MsgStatus::Ok, "stored")
        );
        assert_eq!(
            append(&h, &mb, envelope(1, NOW), NOW),
            MsgOutcome::new(MsgStatus::Ok, "duplicate")
        );
        // A retry with the same id is the same message, whatever else changed on the way.
        let mut changed = envelope(1, NOW + 5);
        changed.sealed = b"other".to_vec();
        assert_eq!(append(&h, &mb, changed, NOW + 10).status, MsgStatus::Ok);
        let (msgs, _, _) = batch(h.handle(&peer(), alice.read(None, 10, NOW), NOW));
        assert_eq!(msgs, vec![envelope(1, NOW)]);
    }

    #[test]
    fn a_full_mailbox_answers_quota() {
        let dir = tempfile::tempdir().unwrap();
        let limits = MailboxLimits { max_messages_per_mailbox: 2, ..MailboxLimits::default() };
        let h = MailboxHolder::open(dir.path(), limits).unwrap();
        let mb = User::new().mailbox();
        assert_eq!(append(&h, &mb, envelope(1, NOW), NOW).status, MsgStatus::Ok);
        assert_eq!(append(&h, &mb, envelope(2, NOW), NOW).status, MsgStatus::Ok);
        let refused = append(&h, &mb, envelope(3, NOW), NOW);
        assert_eq!(refused.status, MsgStatus::Quota);
        assert!(refused.detail.contains("messages per mailbox"), "{}", refused.detail);
        // Another mailbox still has room.
        let other = User::new().mailbox();
        assert_eq!(append(&h, &other, envelope(3, NOW), NOW).status, MsgStatus::Ok);
    }

    #[test]
    fn bad_appends_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let h = holder(dir.path());
        let mb = User::new().mailbox();
        let mut too_long = envelope(1, NOW);
        too_long.expires_at_ms = NOW + OFFLINE_TTL_MS + CLOCK_SKEW_MS + 1;
        assert_eq!(append(&h, &mb, too_long, NOW).status, MsgStatus::BadRequest);
        let mut edge = envelope(2, NOW);
        edge.expires_at_ms = NOW + OFFLINE_TTL_MS + CLOCK_SKEW_MS;
        assert_eq!(append(&h, &mb, edge, NOW).status, MsgStatus::Ok);
        let mut expired = envelope(3, NOW);
        expired.expires_at_ms = NOW;
        assert_eq!(append(&h, &mb, expired, NOW).status, MsgStatus::BadRequest);
        let mut huge = envelope(4, NOW);
        huge.sealed = vec![0; MAX_SEALED_LEN + 1];
        assert_eq!(append(&h, &mb, huge, NOW).status, MsgStatus::BadRequest);
        // Within the wire bound but over this store's body limit.
        let mut big = envelope(5, NOW);
        big.sealed = vec![0; MailboxLimits::default().max_body_len as usize + 1];
        assert_eq!(append(&h, &mb, big, NOW).status, MsgStatus::BadRequest);
        let future = envelope(6, NOW + CLOCK_SKEW_MS + 1);
        assert_eq!(append(&h, &mb, future, NOW).status, MsgStatus::BadRequest);
        let extreme =
            Envelope { id: [7; 16], order: u64::MAX, expires_at_ms: u64::MAX, sealed: vec![] };
        assert_eq!(append(&h, &mb, extreme, u64::MAX - 1).status, MsgStatus::Ok);
    }

    #[test]
    fn another_users_auth_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let h = holder(dir.path());
        let alice = User::new();
        let mut mallory = User::new();
        append(&h, &alice.mailbox(), envelope(1, NOW), NOW);

        // Mallory's auth aimed at Alice's mailbox: its target is not Mallory's mailbox.
        let mut nonce = [0u8; 16];
        nonce[0] = 0xEE;
        let aimed =
            sign_user_auth(&mallory.id, AuthPurpose::MailboxRead, &alice.mailbox().0, NOW, nonce);
        let answer = h.handle(
            &peer(),
            MsgMessage::MailboxRead { auth: aimed, after: None, max_messages: 10 },
            NOW,
        );
        assert_eq!(status(&answer), MsgStatus::Unauthorized);

        // Alice's key with Mallory's signature.
        let mut forged = alice_auth_forged_by(&alice, &mallory);
        let answer = h.handle(
            &peer(),
            MsgMessage::MailboxRead { auth: forged.clone(), after: None, max_messages: 10 },
            NOW,
        );
        assert_eq!(status(&answer), MsgStatus::Unauthorized);
        forged.purpose = AuthPurpose::MailboxAck;
        let upto = Cursor { order: u64::MAX, id: [0xFF; 16] };
        let answer = h.handle(&peer(), MsgMessage::MailboxAck { auth: forged, upto }, NOW);
        assert_eq!(status(&answer), MsgStatus::Unauthorized);

        // Mallory's own valid auth reads Mallory's (empty) mailbox, never Alice's.
        let (msgs, _, _) = batch(h.handle(&peer(), mallory.read(None, 10, NOW), NOW));
        assert!(msgs.is_empty());
        assert_eq!(status(&h.handle(&peer(), mallory.ack(upto, NOW), NOW)), MsgStatus::Ok);
        assert_eq!(h.store().usage(&alice.mailbox(), NOW).unwrap().messages, 1);

        // A read auth does not ack.
        let mut alice = alice;
        let read_auth = alice.auth(AuthPurpose::MailboxRead, NOW);
        let answer = h.handle(&peer(), MsgMessage::MailboxAck { auth: read_auth, upto }, NOW);
        assert_eq!(status(&answer), MsgStatus::Unauthorized);
        assert_eq!(h.store().usage(&alice.mailbox(), NOW).unwrap().messages, 1);
    }

    fn alice_auth_forged_by(alice: &User, mallory: &User) -> UserAuth {
        let mut auth = sign_user_auth(
            &alice.id,
            AuthPurpose::MailboxRead,
            &alice.mailbox().0,
            NOW,
            [0xAB; 16],
        );
        auth.signature = mallory.id.sign(&auth.signed_bytes());
        auth
    }

    #[test]
    fn replayed_and_stale_auths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let h = holder(dir.path());
        let mut alice = User::new();
        append(&h, &alice.mailbox(), envelope(1, NOW), NOW);
        let read = alice.read(None, 10, NOW);
        assert_eq!(batch(h.handle(&peer(), read.clone(), NOW)).0.len(), 1);
        // Another relay replays what it saw.
        assert_eq!(status(&h.handle(&peer(), read, NOW + 1)), MsgStatus::Replay);

        let old = alice.read(None, 10, NOW - CLOCK_SKEW_MS - 1);
        assert_eq!(status(&h.handle(&peer(), old, NOW)), MsgStatus::Replay);
        let ack = alice.ack(Cursor { order: u64::MAX, id: [0xFF; 16] }, NOW);
        assert_eq!(status(&h.handle(&peer(), ack.clone(), NOW)), MsgStatus::Ok);
        assert_eq!(status(&h.handle(&peer(), ack, NOW)), MsgStatus::Replay);
    }

    #[test]
    fn expired_entries_are_never_read_or_listed() {
        let dir = tempfile::tempdir().unwrap();
        let h = holder(dir.path());
        let mut alice = User::new();
        let mb = alice.mailbox();
        let mut short = envelope(1, NOW);
        short.expires_at_ms = NOW + 1000;
        append(&h, &mb, short, NOW);
        append(&h, &mb, envelope(2, NOW), NOW);
        let later = NOW + 1000;
        let (msgs, more, _) = batch(h.handle(&peer(), alice.read(None, 10, later), later));
        assert_eq!(msgs, vec![envelope(2, NOW)]);
        assert!(!more);
        let ids = h.handle(
            &peer(),
            MsgMessage::MailboxIds { mailbox: mb.0, after: None, limit: 10 },
            later,
        );
        assert_eq!(ids, MsgMessage::Ids { cursors: vec![envelope(2, NOW).cursor()] });
        assert_eq!(h.gc(later).unwrap().removed, 1);
    }

    #[test]
    fn mailbox_ids_list_cursors_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let h = holder(dir.path());
        let mb = User::new().mailbox();
        let mut cursors: Vec<_> =
            (0..20).map(|n| envelope(n, NOW - u64::from(n % 3)).cursor()).collect();
        for n in 0..20 {
            append(&h, &mb, envelope(n, NOW - u64::from(n % 3)), NOW);
        }
        cursors.sort();
        let list = |after, limit| match h.handle(
            &peer(),
            MsgMessage::MailboxIds { mailbox: mb.0, after, limit },
            NOW,
        ) {
            MsgMessage::Ids { cursors } => cursors,
            other => panic!("expected Ids, got {other:?}"),
        };
        assert_eq!(list(None, 100), cursors);
        assert_eq!(list(None, 5), cursors[..5]);
        assert_eq!(list(Some(cursors[4]), 5), cursors[5..10]);
        assert_eq!(list(Some(cursors[19]), 5), Vec::<Cursor>::new());
        assert!(list(None, 0).is_empty());
        // Another mailbox is empty.
        let other = User::new().mailbox();
        let answer = h.handle(
            &peer(),
            MsgMessage::MailboxIds { mailbox: other.0, after: None, limit: 10 },
            NOW,
        );
        assert_eq!(answer, MsgMessage::Ids { cursors: vec![] });
    }

    #[test]
    fn messages_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut alice = User::new();
        let mb = alice.mailbox();
        {
            let h = holder(dir.path());
            for n in 0..5 {
                append(&h, &mb, envelope(n, NOW + u64::from(n)), NOW);
            }
        }
        let h = holder(dir.path());
        let (msgs, _, _) = batch(h.handle(&peer(), alice.read(None, 10, NOW), NOW));
        assert_eq!(msgs, (0..5).map(|n| envelope(n, NOW + u64::from(n))).collect::<Vec<_>>());
    }

    #[test]
    fn other_requests_are_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let h = holder(dir.path());
        let answer = h.handle(&peer(), MsgMessage::Deliver { messages: Vec::new() }, NOW);
        assert_eq!(status(&answer), MsgStatus::BadRequest);
    }
}
