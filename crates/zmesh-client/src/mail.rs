//! End-to-end messaging through a relay (`/zmesh/msg/1.0`): a [`Mailer`] joins a connection
//! ([`MsgRelay`]), the user's identity and the user's [`Messenger`] state.
//!
//! - [`Mailer::login`] binds the connection to the user, so the relay pushes live messages to
//!   it; [`Mailer::publish_bundle`] and [`Mailer::publish_presence`] tell the mesh how to start
//!   a session with the user and which relay the user is at.
//! - [`Mailer::send`] encrypts (fetching the recipient's prekey bundle the first time) and
//!   hands the sealed message to the relay, which delivers it live or queues it in the
//!   recipient's mailbox. No login is needed to send.
//! - [`Mailer::sync`] drains the mailbox in order, batch by batch, acknowledging each batch only
//!   after the [`Inbox`] took its messages; [`Mailer::take_delivery`] does the same for a live
//!   push; [`Mailer::follow`] serves pushes until told to stop, re-syncing and refreshing the
//!   presence record on timers; [`Mailer::follow_reconnecting`] also comes back after the
//!   relay is lost, through [`Mailer::rejoin`]: the session resumed if the same relay still has
//!   it, else a fresh login and presence, and a sync either way.
//!
//! Every message reaches the [`Inbox`] at most once: ids seen in this process are dropped
//! before decrypting (a message can arrive live and from the mailbox, or twice in a mailbox),
//! and the [`Messenger`] drops ids it has seen before across processes. A message that does not
//! open is reported to [`Inbox::rejected`] and skipped, never handed up; the cursor still moves
//! past it so it does not block the mailbox.

use std::path::Path;
use std::time::Duration;

use zmesh_core::mailbox::{Position, Positioned, SeenIds, mailbox_key};
use zmesh_node::messaging::auth::sign_user_auth;
use zmesh_node::messaging::records::{PRESENCE_MAX_LIFETIME_MS, PresenceValue, sign_record};
use zmesh_types::Key256;
use zmesh_wire::WirePeer;
use zmesh_wire::msg::{
    AuthPurpose, Cursor, Envelope, MsgMessage, MsgOutcome, MsgStatus, RecordKind, SignedRecord,
    UserAuth,
};

use crate::identity::Identity;
use crate::messenger::{Incoming, Messenger, Outgoing, bundle_from_record, random_bytes};
use crate::relay::MsgRelay;
use crate::{ClientError, Result};

mod follow;
mod inbox;
#[cfg(test)]
mod tests;

pub use follow::FollowOptions;

/// How [`Mailer::rejoin`] got the session back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejoined {
    /// The relay still had the session and moved it to this connection.
    Resumed,
    /// A fresh login, and presence published again.
    LoggedIn,
}

impl Rejoined {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejoined::Resumed => "session resumed",
            Rejoined::LoggedIn => "logged in again",
        }
    }
}

/// How often a following client re-publishes its presence record: well within the record's
/// [`PRESENCE_MAX_LIFETIME_MS`], so it never lapses while the client is online.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(5 * 60);
/// How often a following client syncs its mailbox again by default: picks up a message that
/// went to the mailbox while the login was on its way, or that a relay could not push.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(5);

const _: () = assert!(PRESENCE_REFRESH.as_millis() * 2 < PRESENCE_MAX_LIFETIME_MS as u128);

/// How a message reached this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Pushed by the relay while logged in.
    Live,
    /// Read from the offline mailbox.
    Mailbox,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Live => "live",
            Via::Mailbox => "mailbox",
        }
    }
}

/// Where received messages go (the terminal, a database, a test's vector).
pub trait Inbox {
    /// A new message, in mailbox order. Return only once it is safely handled (written out,
    /// stored): the relay deletes it after. An error stops the delivery or sync, and neither
    /// this message nor any later one is acknowledged.
    fn message(&mut self, message: &Incoming, via: Via) -> Result<()>;

    /// A message that could not be opened (not for this identity, altered, or from a session
    /// this device no longer has). It is skipped.
    fn rejected(&mut self, id: &[u8; 16], via: Via, error: &ClientError) {
        tracing::warn!(id = %hex::encode(id), via = via.as_str(), "message skipped: {error}");
    }

    /// A failure that did not stop [`Mailer::follow`] (a re-sync or presence refresh that a
    /// later attempt may get through, or a lost connection being replaced).
    fn warning(&mut self, error: &ClientError) {
        tracing::warn!("{error}");
    }

    /// [`Mailer::follow_reconnecting`] is following again, at `relay`, after a lost connection.
    fn reconnected(&mut self, relay: &libp2p::Multiaddr, how: Rejoined) {
        tracing::info!(%relay, "following again ({})", how.as_str());
    }
}

/// What happened to the messages of a delivery, a sync or a whole follow session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Handed to the [`Inbox`].
    pub messages: usize,
    /// Dropped as copies of messages received before.
    pub duplicates: usize,
    /// Did not open; reported to [`Inbox::rejected`].
    pub rejected: usize,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.messages += other.messages;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

/// The outcome of one mailbox sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub tally: Tally,
    /// Batches read.
    pub batches: usize,
    /// The relay claimed more messages but made no progress; sync again later, perhaps through
    /// another relay.
    pub stalled: bool,
}

/// Where a sent message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Handed to the recipient's live connection.
    Delivered,
    /// Stored durably in the recipient's offline mailbox.
    Queued,
}

impl SendStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Delivered => "delivered",
            SendStatus::Queued => "queued",
        }
    }
}

/// A message the relay accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub id: [u8; 16],
    pub status: SendStatus,
}

/// Parses an address: 64 hex characters.
///
/// # Errors
/// [`ClientError::BadAddress`].
pub fn parse_address(text: &str) -> Result<[u8; 32]> {
    let mut address = [0_u8; 32];
    match hex::decode_to_slice(text, &mut address) {
        Ok(()) => Ok(address),
        Err(_) => Err(ClientError::BadAddress(text.to_owned())),
    }
}

/// Fetches the prekey bundle record `address` published, as the relay finds it (unchecked;
/// see [`bundle_from_record`]).
///
/// # Errors
/// [`ClientError::NoBundle`] if none is published, [`ClientError::MsgRefused`], transport
/// errors.
pub async fn fetch_bundle_record<R: MsgRelay>(
    relay: &R,
    address: &[u8; 32],
) -> Result<SignedRecord> {
    let request = MsgMessage::FetchRecord { kind: RecordKind::Bundle, owner_address: *address };
    match relay.request(request).await? {
        MsgMessage::Record { outcome, record } => match (outcome.status, record) {
            (MsgStatus::Ok, Some(record)) => Ok(record),
            (MsgStatus::Ok | MsgStatus::NotFound, None) | (MsgStatus::NotFound, _) => {
                Err(ClientError::NoBundle { address: hex::encode(address) })
            }
            (_, _) => Err(refused("fetch of a prekey bundle", outcome)),
        },
        MsgMessage::Result { outcome } if outcome.status == MsgStatus::NotFound => {
            Err(ClientError::NoBundle { address: hex::encode(address) })
        }
        MsgMessage::Result { outcome } => Err(refused("fetch of a prekey bundle", outcome)),
        _ => Err(ClientError::UnexpectedResponse { request: "FetchRecord" }),
    }
}

/// The identity key of the owner of `address`, from the prekey bundle it published (checked:
/// signed by that key, which hashes to the address).
///
/// # Errors
/// As [`fetch_bundle_record`], and [`ClientError::BadBundle`].
pub async fn fetch_identity_key<R: MsgRelay>(
    relay: &R,
    address: &[u8; 32],
    now_ms: u64,
) -> Result<[u8; 32]> {
    let record = fetch_bundle_record(relay, address).await?;
    bundle_from_record(&record, address, now_ms)?;
    Ok(record.owner_key)
}

fn refused(request: &'static str, outcome: MsgOutcome) -> ClientError {
    ClientError::MsgRefused { request, status: outcome.status, detail: outcome.detail }
}

/// Expects `Result{Ok}`.
fn expect_ok(request: &'static str, answer: MsgMessage) -> Result<()> {
    match answer {
        MsgMessage::Result { outcome } if outcome.status == MsgStatus::Ok => Ok(()),
        MsgMessage::Result { outcome } => Err(refused(request, outcome)),
        _ => Err(ClientError::UnexpectedResponse { request }),
    }
}

/// A mailbox entry as the sync session sorts it.
struct Entry(Envelope);

impl Positioned for Entry {
    fn position(&self) -> Position {
        (self.0.order, self.0.id)
    }
}

fn to_cursor((order, id): Position) -> Cursor {
    Cursor { order, id }
}

fn to_position(cursor: Cursor) -> Position {
    (cursor.order, cursor.id)
}

/// A logged-in session a relay can restore after a reconnection. No `Debug`: the token is a
/// credential.
#[derive(Clone, Copy)]
struct Session {
    token: [u8; 32],
    /// The relay that issued the token: the only one it is shown to, since whoever holds it
    /// can take over the session's live messages.
    relay: libp2p::PeerId,
}

/// One user's messaging over one relay connection.
pub struct Mailer<R> {
    relay: R,
    identity: Identity,
    messenger: Messenger,
    /// Ids handed up (or rejected) by this process, across syncs and live deliveries.
    seen: SeenIds,
    session: Option<Session>,
    clock: fn() -> u64,
}

impl<R> std::fmt::Debug for Mailer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("address", &self.identity.address().to_hex())
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl<R: MsgRelay> Mailer<R> {
    /// A mailer for `identity` over `relay`, with the messaging state in `state_dir` (see
    /// [`default_dir`](crate::messenger::default_dir)).
    ///
    /// # Errors
    /// As [`Messenger::open`].
    pub fn open(relay: R, identity: Identity, state_dir: &Path) -> Result<Mailer<R>> {
        let messenger = Messenger::open(&identity, state_dir)?;
        Ok(Mailer {
            relay,
            identity,
            messenger,
            seen: SeenIds::default(),
            session: None,
            clock: zmesh_node::clock::unix_ms,
        })
    }

    /// Reads time from `clock` (Unix ms) instead of the system clock.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// This user's address.
    pub fn address(&self) -> [u8; 32] {
        self.identity.address().0
    }

    pub fn relay(&self) -> &R {
        &self.relay
    }

    /// Continues over another connection (after the previous one was lost), keeping the memory
    /// of messages already received. Log in again before following.
    pub fn replace_relay(&mut self, relay: R) {
        self.relay = relay;
    }

    pub fn messenger(&self) -> &Messenger {
        &self.messenger
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// A fresh authorisation for `purpose` on `target`: replicas refuse a nonce seen before.
    fn auth(&self, purpose: AuthPurpose, target: &[u8; 32]) -> Result<UserAuth> {
        Ok(sign_user_auth(self.identity.signing(), purpose, target, self.now(), random_bytes()?))
    }

    fn mailbox(&self) -> [u8; 32] {
        mailbox_key(&self.address()).0
    }

    /// Logs in as this user, so the relay pushes the user's live messages to this connection
    /// (subscribe to them first, see [`Relay::subscribe`](crate::Relay::subscribe)).
    ///
    /// # Errors
    /// [`ClientError::MsgRefused`], transport errors.
    pub async fn login(&mut self) -> Result<()> {
        // Bound to this relay, so the relay cannot replay it to another.
        let relay = self.relay.peer_id();
        let target = Key256::hash(&relay.to_bytes()).0;
        let auth = self.auth(AuthPurpose::Login, &target)?;
        self.session = None;
        match self.relay.request(MsgMessage::Login { auth }).await? {
            MsgMessage::LoggedIn { outcome, session_token } if outcome.status == MsgStatus::Ok => {
                // All zeros: a relay that does not resume sessions.
                if session_token != [0; 32] {
                    self.session = Some(Session { token: session_token, relay });
                }
                Ok(())
            }
            MsgMessage::LoggedIn { outcome, .. } | MsgMessage::Result { outcome } => {
                Err(refused("login", outcome))
            }
            _ => Err(ClientError::UnexpectedResponse { request: "Login" }),
        }
    }

    /// After a reconnection, asks the relay to move the session of the last login to this
    /// connection. Only the relay that issued the session is asked. `false` when there is no
    /// such session (another relay, or it expired or restarted): log in instead.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn resume(&mut self) -> Result<bool> {
        let relay = self.relay.peer_id();
        let Some(session) = self.session.filter(|s| s.relay == relay) else { return Ok(false) };
        let request = MsgMessage::Resume { session_token: session.token };
        match self.relay.request(request).await? {
            MsgMessage::LoggedIn { outcome, session_token } if outcome.status == MsgStatus::Ok => {
                self.session = Some(Session { token: session_token, relay });
                Ok(true)
            }
            // NotFound, or a relay that does not know Resume: a fresh login does it.
            answer => {
                tracing::debug!(?answer, "session not resumed");
                self.session = None;
                Ok(false)
            }
        }
    }

    /// Gets the session back on a new connection: resumed if the relay still has it, else a
    /// fresh [`login`](Self::login) and [`publish_presence`](Self::publish_presence); then
    /// [`sync`](Self::sync)s, for what reached the mailbox while the connection was down.
    /// Subscribe to the new connection's deliveries first.
    ///
    /// # Errors
    /// As [`login`](Self::login), [`publish_presence`](Self::publish_presence) and
    /// [`sync`](Self::sync).
    pub async fn rejoin(&mut self, inbox: &mut impl Inbox) -> Result<(Rejoined, SyncReport)> {
        let how = self.resume_or_login().await?;
        if how == Rejoined::LoggedIn {
            self.publish_presence().await?;
        }
        Ok((how, self.sync(inbox).await?))
    }

    /// [`resume`](Self::resume)s the session, else [`login`](Self::login)s.
    ///
    /// # Errors
    /// As [`login`](Self::login).
    pub async fn resume_or_login(&mut self) -> Result<Rejoined> {
        if self.resume().await? {
            return Ok(Rejoined::Resumed);
        }
        self.login().await?;
        Ok(Rejoined::LoggedIn)
    }

    /// Publishes this device's prekey bundle, with fresh one-time keys as needed. Do it at every
    /// login: holders that restarted learn it again, and used one-time keys are replaced.
    ///
    /// # Errors
    /// [`ClientError::MsgRefused`], transport and state errors.
    pub async fn publish_bundle(&mut self) -> Result<()> {
        let record = self.messenger.bundle_record(self.now())?;
        let answer = self.relay.request(MsgMessage::PublishRecord { record }).await?;
        expect_ok("publishing the prekey bundle", answer)
    }

    /// Publishes that this user is reachable at this relay, for [`PRESENCE_MAX_LIFETIME_MS`].
    ///
    /// # Errors
    /// [`ClientError::MsgRefused`], transport errors.
    pub async fn publish_presence(&mut self) -> Result<()> {
        let answer =
            self.relay.request(MsgMessage::PublishRecord { record: self.presence() }).await?;
        expect_ok("publishing presence", answer)
    }

    /// The signed presence record pointing at this relay, valid from now.
    fn presence(&self) -> SignedRecord {
        let addr: libp2p::Multiaddr = self
            .relay
            .addr()
            .into_iter()
            .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            .collect();
        let relay =
            WirePeer { peer_id: self.relay.peer_id().to_bytes(), addrs: vec![addr.to_vec()] };
        let now = self.now();
        sign_record(
            self.identity.signing(),
            RecordKind::Presence,
            PresenceValue { relay }.to_bytes(),
            now,
            now.saturating_add(PRESENCE_MAX_LIFETIME_MS),
        )
    }

    /// Encrypts `text` for `recipient` and sends it.
    ///
    /// # Errors
    /// As [`encrypt`](Self::encrypt) and [`send_sealed`](Self::send_sealed).
    pub async fn send(&mut self, recipient: &[u8; 32], text: &str) -> Result<SendReport> {
        let outgoing = self.encrypt(recipient, text).await?;
        self.send_sealed(recipient, &outgoing).await
    }

    /// Encrypts `text` for `recipient`, fetching and checking its prekey bundle when there is no
    /// session yet. The result can be sent (and re-sent) with [`send_sealed`](Self::send_sealed).
    ///
    /// # Errors
    /// [`ClientError::NoBundle`], [`ClientError::BadBundle`], [`ClientError::TextTooLong`],
    /// transport and state errors.
    pub async fn encrypt(&mut self, recipient: &[u8; 32], text: &str) -> Result<Outgoing> {
        match self.messenger.encrypt(recipient, None, text, self.now()) {
            Err(ClientError::NoSession { .. }) => {
                let record = fetch_bundle_record(&self.relay, recipient).await?;
                let bundle = bundle_from_record(&record, recipient, self.now())?;
                self.messenger.encrypt(recipient, Some(bundle), text, self.now())
            }
            other => other,
        }
    }

    /// Sends an encrypted message. Safe to repeat after a transport error: the id stays, so
    /// relays, mailboxes and the recipient keep one copy.
    ///
    /// # Errors
    /// [`ClientError::MailboxFull`], [`ClientError::NotDelivered`], transport errors.
    pub async fn send_sealed(
        &self,
        recipient: &[u8; 32],
        outgoing: &Outgoing,
    ) -> Result<SendReport> {
        let request = MsgMessage::Send {
            recipient: *recipient,
            id: outgoing.id,
            sealed: outgoing.sealed.clone(),
        };
        let answer = self.relay.request(request).await?;
        send_outcome(recipient, outgoing.id, answer)
    }

    /// The identity key of `address`: a known contact's, else the one its published bundle is
    /// signed with.
    ///
    /// # Errors
    /// As [`fetch_identity_key`].
    pub async fn identity_key(&self, address: &[u8; 32]) -> Result<[u8; 32]> {
        match self.messenger.contact_identity(address) {
            Some(key) => Ok(key),
            None => fetch_identity_key(&self.relay, address, self.now()).await,
        }
    }
}

/// What the relay's answer to a `Send` means for the sender.
fn send_outcome(recipient: &[u8; 32], id: [u8; 16], answer: MsgMessage) -> Result<SendReport> {
    let outcome = match answer {
        MsgMessage::Sent { id: answered, outcome } if answered == id => outcome,
        MsgMessage::Result { outcome } if !outcome.status.is_success() => outcome,
        _ => return Err(ClientError::UnexpectedResponse { request: "Send" }),
    };
    let address = hex::encode(recipient);
    match outcome.status {
        MsgStatus::Delivered => Ok(SendReport { id, status: SendStatus::Delivered }),
        MsgStatus::Queued => Ok(SendReport { id, status: SendStatus::Queued }),
        MsgStatus::Quota => Err(ClientError::MailboxFull { address, detail: outcome.detail }),
        status => Err(ClientError::NotDelivered { address, status, detail: outcome.detail }),
    }
}
