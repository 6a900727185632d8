//! The relay: what a node does for the clients connected to it, and for other relays.
//!
//! - **Login**: a user proves its key (a signed [`UserAuth`] for this relay) and gets a
//!   session; messages for that user are then pushed to its connection.
//! - **Send**: a sealed message for an address goes, in this order, to the recipient's session
//!   here (direct), to the relay its presence record names (federated, `Forward`), or to its
//!   offline mailbox on the nodes nearest the mailbox key (see [`replicas`](super::replicas)).
//!   The sender hears `Delivered`, `Queued` (stored on a quorum), `Quota`, or why neither.
//! - **Records**: presence and prekey bundles are kept on the [`RECORD_REPLICAS`] nodes
//!   nearest their record key; a relay publishes to all of them and reads from all of them,
//!   keeping the newest valid answer.
//!
//! The relay never sees who sent a message or what it says: envelopes are sealed to the
//! recipient, and the sender need not even be logged in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use libp2p::{Multiaddr, PeerId};
use sha2::{Digest, Sha256};
use zmesh_core::mailbox::{AppendOutcome, OrderClock};
use zmesh_types::Key256;
use zmesh_wire::msg::{
    AuthPurpose, Envelope, MAX_SEALED_LEN, MsgMessage, MsgOutcome, MsgStatus, RecordKind,
    SignedRecord, UserAuth,
};

use super::auth::{UserReplayGuard, verify_user_auth};
use super::mailbox::{MailboxHolder, OFFLINE_TTL_MS};
use super::net::MsgNet;
use super::records::{PresenceValue, RecordStore, record_key, verify_record};
use super::routes::RouteCache;
use super::sessions::{Delivery, Session, Sessions};
use super::stats::{MessagingReport, MessagingStats};
use super::{MessagingError, answer};
use crate::clock::unix_ms;
use crate::config::MessagingSection;
use crate::storage::PeerAddrs;

/// Nodes that hold each record. Presence is read on every federated send and refreshed by its
/// user every few minutes; five copies survive four of those nodes leaving between refreshes.
pub const RECORD_REPLICAS: usize = 5;

#[derive(Debug)]
pub struct MessageRelay {
    pub(super) net: MsgNet,
    pub(super) config: MessagingSection,
    pub(super) mailbox: Arc<MailboxHolder>,
    pub(super) records: Arc<Mutex<RecordStore>>,
    sessions: Mutex<Sessions>,
    pub(super) guard: Mutex<UserReplayGuard>,
    order: Mutex<OrderClock>,
    routes: Mutex<RouteCache>,
    pub stats: MessagingStats,
    login_target: [u8; 32],
}

fn random_token() -> [u8; 32] {
    let mut token = [0u8; 32];
    // A token only names a session in this relay's memory; a failed read leaves it unique
    // enough (zeros) and costs nothing but resumption, which needs a fresh login anyway.
    let _ = getrandom::fill(&mut token);
    token
}

/// The answer to a login or resume that opened no session.
fn not_logged_in(status: MsgStatus, detail: impl Into<String>) -> MsgMessage {
    MsgMessage::LoggedIn { outcome: MsgOutcome::new(status, detail), session_token: [0; 32] }
}

fn short(address: &[u8; 32]) -> String {
    hex::encode(&address[..4])
}

impl MessageRelay {
    pub fn new(
        net: MsgNet,
        config: MessagingSection,
        mailbox: Arc<MailboxHolder>,
        records: Arc<Mutex<RecordStore>>,
        stats: MessagingStats,
    ) -> Arc<Self> {
        let login_target = Sha256::digest(net.local.to_bytes()).into();
        let routes = Mutex::new(RouteCache::new(config.route_cache.0));
        Arc::new(MessageRelay {
            net,
            config,
            mailbox,
            records,
            sessions: Mutex::new(Sessions::default()),
            guard: Mutex::new(UserReplayGuard::default()),
            order: Mutex::new(OrderClock::new()),
            routes,
            stats,
            login_target,
        })
    }

    /// What a user signs to log in here: SHA-256 of this relay's PeerId bytes, so a login
    /// cannot be replayed at another relay.
    pub fn login_target(&self) -> [u8; 32] {
        self.login_target
    }

    /// Deletes expired offline messages and records; returns how many of each went. Blocks on
    /// disk.
    pub fn collect_garbage(&self) -> Result<(u64, u64), MessagingError> {
        let now = unix_ms();
        let records = crate::lock(&self.records).gc(now) as u64;
        let gc = self.mailbox.gc(now)?;
        Ok((gc.removed, records))
    }

    /// Figures for `GET /v1/messaging`; reads the mailbox store, so call it off the event loop.
    pub fn report(&self) -> Result<MessagingReport, MessagingError> {
        let totals = self
            .mailbox
            .store()
            .totals()
            .map_err(|e| MessagingError::store("mailbox totals", e))?;
        let s = &self.stats;
        Ok(MessagingReport {
            sessions: crate::lock(&self.sessions).len(),
            records_held: crate::lock(&self.records).len(),
            mailboxes: totals.mailboxes,
            mailbox_messages: totals.messages,
            mailbox_bytes: totals.bytes,
            logins: s.logins.get(),
            sent_direct: s.direct.get(),
            sent_federated: s.federated.get(),
            sent_queued: s.queued.get(),
            sent_quota: s.quota.get(),
            sent_failed: s.failed.get(),
            forwards_delivered: s.forwards_delivered.get(),
            synced: s.synced.get(),
            acks: s.acks.get(),
            read_repairs: s.read_repairs.get(),
            records_published: s.records_published.get(),
        })
    }

    /// Answers a client's request (or a relay's `Forward`).
    pub async fn handle_client(self: &Arc<Self>, peer: PeerId, request: MsgMessage) -> MsgMessage {
        match request {
            MsgMessage::Login { auth } => self.login(peer, &auth),
            MsgMessage::Resume { session_token } => self.resume(peer, session_token),
            MsgMessage::PublishRecord { record } => self.publish(record).await,
            MsgMessage::FetchRecord { kind, owner_address } => {
                let record = self.fetch_record(kind, &owner_address).await;
                let outcome = match &record {
                    Some(_) => MsgOutcome::ok(),
                    None => MsgOutcome::new(MsgStatus::NotFound, "no such record"),
                };
                MsgMessage::Record { outcome, record }
            }
            MsgMessage::Send { recipient, id, sealed } => self.send(recipient, id, sealed).await,
            MsgMessage::Forward { recipient, envelope } => {
                let status = match self.deliver_here(&recipient, envelope).await {
                    true => {
                        self.stats.forwards_delivered.inc();
                        MsgStatus::Delivered
                    }
                    false => MsgStatus::NotHere,
                };
                answer(status, "")
            }
            MsgMessage::Sync { auth, after, max_messages } => {
                self.sync(auth, after, max_messages).await
            }
            MsgMessage::Ack { auth, upto } => self.ack(auth, upto).await,
            _ => answer(MsgStatus::BadRequest, "not a client request"),
        }
    }

    /// The connection to `peer` closed: its sessions end.
    pub fn peer_gone(&self, peer: &PeerId) {
        let ended = crate::lock(&self.sessions).end_peer(peer, Instant::now());
        if ended > 0 {
            tracing::debug!(%peer, ended, "client disconnected; sessions ended");
        }
    }

    fn login(self: &Arc<Self>, peer: PeerId, auth: &UserAuth) -> MsgMessage {
        let verified = {
            let mut guard = crate::lock(&self.guard);
            verify_user_auth(auth, AuthPurpose::Login, &self.login_target, unix_ms(), &mut guard)
        };
        let address = match verified {
            Ok(a) => a,
            Err(e) => return not_logged_in(e.status(), e.to_string()),
        };
        let mut sessions = crate::lock(&self.sessions);
        self.open_session(&mut sessions, address, peer, random_token(), "user logged in")
    }

    /// Moves the session `token` names to `peer`'s connection, keeping the token.
    fn resume(self: &Arc<Self>, peer: PeerId, token: [u8; 32]) -> MsgMessage {
        let mut sessions = crate::lock(&self.sessions);
        let Some(address) = sessions.resume(&token, Instant::now()) else {
            let detail = "no session with this token (expired, or the relay restarted): log in";
            return not_logged_in(MsgStatus::NotFound, detail);
        };
        self.open_session(&mut sessions, address, peer, token, "session resumed")
    }

    /// Opens `address`'s session on `peer`'s connection under `token`, within the limits.
    fn open_session(
        &self,
        sessions: &mut Sessions,
        address: [u8; 32],
        peer: PeerId,
        token: [u8; 32],
        what: &str,
    ) -> MsgMessage {
        if let Err(e) = sessions.admit(&address, &peer) {
            return not_logged_in(MsgStatus::Quota, e.to_string());
        }
        let timeout = self.config.deliver_timeout.0;
        sessions.insert(address, Session::start(self.net.clone(), peer, token, timeout));
        self.stats.logins.inc();
        tracing::debug!(%peer, user = %short(&address), "{what}");
        MsgMessage::LoggedIn { outcome: MsgOutcome::ok(), session_token: token }
    }

    /// Pushes `envelope` to `recipient`'s session here, if it has one that takes it.
    async fn deliver_here(&self, recipient: &[u8; 32], envelope: Envelope) -> bool {
        let Some(session) = crate::lock(&self.sessions).get(recipient) else { return false };
        match session.deliver(envelope).await {
            Delivery::Delivered => true,
            Delivery::Declined => false,
            Delivery::Unreachable => {
                crate::lock(&self.sessions).end(recipient, &session.token, Instant::now());
                tracing::debug!(user = %short(recipient), "session ended: the client stopped answering");
                false
            }
        }
    }

    async fn send(
        self: &Arc<Self>,
        recipient: [u8; 32],
        id: [u8; 16],
        sealed: Vec<u8>,
    ) -> MsgMessage {
        if sealed.is_empty() || sealed.len() > MAX_SEALED_LEN {
            let detail = format!("a sealed message has 1 to {MAX_SEALED_LEN} bytes");
            return MsgMessage::Sent {
                id,
                outcome: MsgOutcome::new(MsgStatus::BadRequest, detail),
            };
        }
        let now = unix_ms();
        let order = crate::lock(&self.order).next(now);
        let envelope =
            Envelope { id, order, expires_at_ms: now.saturating_add(OFFLINE_TTL_MS), sealed };
        let outcome = self.route(recipient, envelope).await;
        MsgMessage::Sent { id, outcome }
    }

    /// Direct, then federated, then the mailbox.
    async fn route(self: &Arc<Self>, recipient: [u8; 32], envelope: Envelope) -> MsgOutcome {
        if self.deliver_here(&recipient, envelope.clone()).await {
            self.stats.direct.inc();
            return MsgOutcome::new(MsgStatus::Delivered, "delivered by this relay");
        }
        if let Some(relay) = self.presence(&recipient).await
            && relay.0 != self.net.local
        {
            let forward = MsgMessage::Forward { recipient, envelope: envelope.clone() };
            match self.net.request(relay.clone(), forward, self.config.request_timeout.0).await {
                Ok(MsgMessage::Result { outcome }) if outcome.status == MsgStatus::Delivered => {
                    self.stats.federated.inc();
                    return MsgOutcome::new(
                        MsgStatus::Delivered,
                        format!("delivered through relay {}", relay.0),
                    );
                }
                other => {
                    tracing::debug!(relay = %relay.0, "forward not delivered ({other:?}); queueing");
                    crate::lock(&self.routes).forget_presence(&recipient);
                }
            }
        }
        match self.append(&recipient, envelope).await {
            AppendOutcome::Queued { stored } => {
                self.stats.queued.inc();
                MsgOutcome::new(MsgStatus::Queued, format!("stored on {stored} mailbox nodes"))
            }
            AppendOutcome::Quota => {
                self.stats.quota.inc();
                MsgOutcome::new(MsgStatus::Quota, "the recipient's mailbox is full")
            }
            AppendOutcome::Failed { stored } => {
                self.stats.failed.inc();
                MsgOutcome::new(
                    MsgStatus::NoRoute,
                    format!(
                        "not delivered: the recipient is offline and only {stored} mailbox nodes stored it"
                    ),
                )
            }
        }
    }

    /// The relay `address` is logged in at, from its presence record (cached briefly).
    async fn presence(self: &Arc<Self>, address: &[u8; 32]) -> Option<PeerAddrs> {
        if let Some(relay) = crate::lock(&self.routes).presence(address, Instant::now()) {
            return Some(relay);
        }
        let record = self.fetch_record(RecordKind::Presence, address).await?;
        let value = PresenceValue::from_bytes(&record.value).ok()?;
        let peer = PeerId::from_bytes(&value.relay.peer_id).ok()?;
        let addrs: Vec<Multiaddr> =
            value.relay.addrs.into_iter().filter_map(|a| Multiaddr::try_from(a).ok()).collect();
        let valid_for = Duration::from_millis(record.expires_at_ms.saturating_sub(unix_ms()));
        let relay = (peer, addrs);
        crate::lock(&self.routes).put_presence(*address, relay.clone(), valid_for, Instant::now());
        Some(relay)
    }

    /// The nodes nearest `key` (cached briefly).
    pub(super) async fn nearest(
        &self,
        key: Key256,
        count: usize,
    ) -> Result<Vec<PeerAddrs>, String> {
        if let Some(peers) = crate::lock(&self.routes).nearest(&key, count, Instant::now()) {
            return Ok(peers);
        }
        let peers = self.net.closest(key, count).await?;
        crate::lock(&self.routes).put_nearest(key, count, peers.clone(), Instant::now());
        Ok(peers)
    }

    pub(super) fn forget_nearest(&self, key: &Key256) {
        crate::lock(&self.routes).forget_nearest(key);
    }

    /// Sends a request to a node; this node's own record store and mailboxes answer directly.
    pub(super) async fn ask(
        &self,
        peer: &PeerAddrs,
        message: MsgMessage,
    ) -> Result<MsgMessage, String> {
        if peer.0 == self.net.local {
            return Ok(self.answer_as_holder(self.net.local, message).await);
        }
        self.net.request(peer.clone(), message, self.config.request_timeout.0).await
    }

    /// Answers what a node asks a record or mailbox holder: records from memory, mailboxes on
    /// a blocking task (they fsync).
    pub async fn answer_as_holder(&self, from: PeerId, message: MsgMessage) -> MsgMessage {
        match message {
            MsgMessage::PublishRecord { .. } | MsgMessage::FetchRecord { .. } => {
                crate::lock(&self.records).handle(message, unix_ms())
            }
            MsgMessage::MailboxAppend { .. }
            | MsgMessage::MailboxRead { .. }
            | MsgMessage::MailboxAck { .. }
            | MsgMessage::MailboxIds { .. } => {
                let mailbox = self.mailbox.clone();
                tokio::task::spawn_blocking(move || mailbox.handle(&from, message, unix_ms()))
                    .await
                    .unwrap_or_else(|e| answer(MsgStatus::Internal, format!("mailbox task: {e}")))
            }
            _ => answer(MsgStatus::BadRequest, "not a holder request"),
        }
    }

    async fn publish(&self, record: SignedRecord) -> MsgMessage {
        let verified = match verify_record(&record, unix_ms()) {
            Ok(v) => v,
            Err(e) => return answer(e.status(), e.to_string()),
        };
        let holders = match self.nearest(verified.key, RECORD_REPLICAS).await {
            Ok(h) => h,
            Err(e) => {
                return answer(MsgStatus::Internal, format!("finding the record's nodes: {e}"));
            }
        };
        let message = MsgMessage::PublishRecord { record };
        let answers = join_all(holders.iter().map(|h| self.ask(h, message.clone()))).await;
        let mut stored = 0;
        let mut refusal = None;
        for a in answers {
            match a {
                Ok(MsgMessage::Result { outcome }) if outcome.status == MsgStatus::Ok => {
                    stored += 1
                }
                Ok(MsgMessage::Result { outcome }) => refusal = Some(outcome),
                Ok(_) | Err(_) => {}
            }
        }
        if stored == 0 {
            self.forget_nearest(&verified.key);
            return match refusal {
                Some(outcome) => MsgMessage::Result { outcome },
                None => answer(MsgStatus::NoRoute, "no record holder answered"),
            };
        }
        self.stats.records_published.inc();
        answer(MsgStatus::Ok, format!("stored on {stored} of {} nodes", holders.len()))
    }

    /// The newest valid record of `kind` for `address` any of its holders has. Holders that
    /// lack it get a copy (a holder that restarted, or joined since it was published).
    pub(super) async fn fetch_record(
        self: &Arc<Self>,
        kind: RecordKind,
        address: &[u8; 32],
    ) -> Option<SignedRecord> {
        let key = record_key(kind, address);
        let holders = self.nearest(key, RECORD_REPLICAS).await.ok()?;
        let message = MsgMessage::FetchRecord { kind, owner_address: *address };
        let answers = join_all(holders.iter().map(|h| self.ask(h, message.clone()))).await;
        let now = unix_ms();
        let mut best: Option<SignedRecord> = None;
        let mut lacking = Vec::new();
        for (holder, a) in holders.iter().zip(answers) {
            match a {
                Ok(MsgMessage::Record { record: Some(r), .. }) => {
                    let valid = verify_record(&r, now)
                        .is_ok_and(|v| v.address == *address && r.kind == kind);
                    if valid && best.as_ref().is_none_or(|b| r.version > b.version) {
                        best = Some(r);
                    }
                }
                Ok(MsgMessage::Record { record: None, .. }) => lacking.push(holder.clone()),
                Ok(_) | Err(_) => {}
            }
        }
        if let Some(record) = &best
            && !lacking.is_empty()
        {
            let relay = self.clone();
            let copy = MsgMessage::PublishRecord { record: record.clone() };
            tokio::spawn(async move {
                join_all(lacking.iter().map(|h| relay.ask(h, copy.clone()))).await;
            });
        }
        best
    }
}
