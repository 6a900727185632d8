//! Users logged in at this relay, and the live delivery of their messages.
//!
//! Each session has one queue and one task that pushes what is queued to the client as
//! `Deliver` batches, one batch at a time: messages reach the client in the order the relay
//! accepted them, and a burst costs one round trip per batch instead of one per message. A
//! message counts as delivered only when the client answers that it took it; otherwise the
//! relay falls back to the recipient's mailbox, so nothing is lost to a client that vanished.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use zmesh_wire::msg::{Envelope, MAX_BATCH, MsgMessage};

use super::mailbox::MAX_READ_BYTES;
use super::net::MsgNet;

/// Messages waiting for one session's delivery task. A client that cannot keep up makes
/// senders fall back to its mailbox instead of growing this queue.
pub const DELIVER_QUEUE: usize = 4096;
/// Sealed bytes waiting for one session at most (a slow reader costs the relay this much).
pub const DELIVER_QUEUE_BYTES: usize = 8 << 20;

/// What became of one message pushed to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The client took it.
    Delivered,
    /// The client answered but did not take it.
    Declined,
    /// The client did not answer: its connection is gone or stuck.
    Unreachable,
}

#[derive(Debug)]
pub struct Pending {
    pub envelope: Envelope,
    pub done: oneshot::Sender<Delivery>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub peer: PeerId,
    pub token: [u8; 32],
    queue: mpsc::Sender<Pending>,
    /// Sealed bytes in the queue, so a stalled client holds at most [`DELIVER_QUEUE_BYTES`].
    queued_bytes: Arc<AtomicUsize>,
}

impl Session {
    /// Opens a session for `peer`, whose delivery task pushes through `net`.
    pub fn start(net: MsgNet, peer: PeerId, token: [u8; 32], timeout: Duration) -> Session {
        let (queue, rx) = mpsc::channel(DELIVER_QUEUE);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        tokio::spawn(deliver_queued(net, peer, rx, timeout, queued_bytes.clone()));
        Session { peer, token, queue, queued_bytes }
    }

    /// Pushes `envelope` to the client and waits for the outcome. A full queue (by count or
    /// bytes) declines at once: the sender's relay queues the message offline instead.
    pub async fn deliver(&self, envelope: Envelope) -> Delivery {
        let len = envelope.sealed.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > DELIVER_QUEUE_BYTES {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Delivery::Declined;
        }
        let (done, outcome) = oneshot::channel();
        if self.queue.try_send(Pending { envelope, done }).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Delivery::Declined;
        }
        outcome.await.unwrap_or(Delivery::Unreachable)
    }
}

/// Users one connection may log in as (a device with a few identities), so keys made up by
/// the million cannot make a relay hold a task per key.
pub const MAX_SESSIONS_PER_PEER: usize = 16;
/// Sessions a relay holds in all.
pub const MAX_SESSIONS: usize = 100_000;
/// How long an ended session can be resumed with its token (a client reconnecting after its
/// connection broke) before the user must log in again.
pub const RESUME_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Why a login gets no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error("this connection has {MAX_SESSIONS_PER_PEER} sessions already")]
    PeerFull,
    #[error("this relay has {MAX_SESSIONS} sessions already")]
    RelayFull,
}

/// Sessions by user address: one per user (a new login replaces the old one), and the tokens of
/// recently ended ones, which a reconnecting client may resume.
#[derive(Debug, Default)]
pub struct Sessions {
    by_address: HashMap<[u8; 32], Session>,
    ended: HashMap<[u8; 32], ([u8; 32], Instant)>,
}

impl Sessions {
    pub fn get(&self, address: &[u8; 32]) -> Option<Session> {
        self.by_address.get(address).cloned()
    }

    /// Checks whether `peer` may open a session for `address` (replacing that user's own
    /// session never counts against the limits).
    pub fn admit(&self, address: &[u8; 32], peer: &PeerId) -> Result<(), SessionRefused> {
        if self.by_address.contains_key(address) {
            return Ok(());
        }
        if self.by_address.len() >= MAX_SESSIONS {
            return Err(SessionRefused::RelayFull);
        }
        let of_peer = self.by_address.values().filter(|s| &s.peer == peer).count();
        if of_peer >= MAX_SESSIONS_PER_PEER {
            return Err(SessionRefused::PeerFull);
        }
        Ok(())
    }

    pub fn insert(&mut self, address: [u8; 32], session: Session) {
        self.by_address.insert(address, session);
    }

    /// Ends `address`'s session if it is still the one with `token` (a newer login stays).
    pub fn end(&mut self, address: &[u8; 32], token: &[u8; 32], now: Instant) -> bool {
        if self.by_address.get(address).is_some_and(|s| &s.token == token) {
            self.by_address.remove(address);
            self.remember(*token, *address, now);
            return true;
        }
        false
    }

    /// Ends every session of `peer` (its connection closed); returns how many.
    pub fn end_peer(&mut self, peer: &PeerId, now: Instant) -> usize {
        let ended: Vec<([u8; 32], [u8; 32])> = self
            .by_address
            .iter()
            .filter(|(_, s)| &s.peer == peer)
            .map(|(address, s)| (*address, s.token))
            .collect();
        for (address, token) in &ended {
            self.by_address.remove(address);
            self.remember(*token, *address, now);
        }
        ended.len()
    }

    fn remember(&mut self, token: [u8; 32], address: [u8; 32], now: Instant) {
        if self.ended.len() >= MAX_SESSIONS {
            self.ended.retain(|_, (_, at)| now.saturating_duration_since(*at) < RESUME_WINDOW);
        }
        if self.ended.len() < MAX_SESSIONS {
            self.ended.insert(token, (address, now));
        }
    }

    /// The user whose session `token` names: a live session (the client reconnected before
    /// its old connection was noticed closed) or one ended within [`RESUME_WINDOW`]. The
    /// token is then no longer resumable; the caller opens the session again with it.
    pub fn resume(&mut self, token: &[u8; 32], now: Instant) -> Option<[u8; 32]> {
        if let Some((address, _)) = self.by_address.iter().find(|(_, s)| &s.token == token) {
            return Some(*address);
        }
        let (address, at) = self.ended.remove(token)?;
        (now.saturating_duration_since(at) < RESUME_WINDOW).then_some(address)
    }

    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }
}

/// Takes what is queued, up to a batch (by count and bytes), without waiting for more.
fn next_batch(first: Pending, rx: &mut mpsc::Receiver<Pending>) -> Vec<Pending> {
    let mut bytes = first.envelope.sealed.len() as u64;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH && bytes < MAX_READ_BYTES {
        match rx.try_recv() {
            Ok(p) => {
                bytes += p.envelope.sealed.len() as u64;
                batch.push(p);
            }
            Err(_) => break,
        }
    }
    batch
}

/// How many of a pushed batch the client took, from its answer.
fn taken(answer: &Result<MsgMessage, String>) -> Option<usize> {
    match answer {
        Ok(MsgMessage::Delivered { count, .. }) => Some(usize::from(*count)),
        Ok(_) => Some(0),
        Err(_) => None,
    }
}

async fn deliver_queued(
    net: MsgNet,
    peer: PeerId,
    mut rx: mpsc::Receiver<Pending>,
    timeout: Duration,
    queued_bytes: Arc<AtomicUsize>,
) {
    while let Some(first) = rx.recv().await {
        let batch = next_batch(first, &mut rx);
        let taken_bytes: usize = batch.iter().map(|p| p.envelope.sealed.len()).sum();
        queued_bytes.fetch_sub(taken_bytes, Ordering::Relaxed);
        let messages = batch.iter().map(|p| p.envelope.clone()).collect();
        let answer = net.request((peer, vec![]), MsgMessage::Deliver { messages }, timeout).await;
        let taken = taken(&answer);
        for (i, pending) in batch.into_iter().enumerate() {
            let outcome = match taken {
                Some(n) if i < n => Delivery::Delivered,
                Some(_) => Delivery::Declined,
                None => Delivery::Unreachable,
            };
            let _ = pending.done.send(outcome);
        }
        if let Err(e) = answer {
            // The rest of the queue would wait out the same timeout: fail it now, and let
            // the relay end the session.
            tracing::debug!(%peer, "live delivery failed: {e}");
            rx.close();
            while let Ok(p) = rx.try_recv() {
                let _ = p.done.send(Delivery::Unreachable);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(n: u8, len: usize) -> Envelope {
        Envelope { id: [n; 16], order: u64::from(n), expires_at_ms: 1, sealed: vec![n; len] }
    }

    #[test]
    fn batches_take_what_is_queued_up_to_the_limits() {
        let (tx, mut rx) = mpsc::channel(DELIVER_QUEUE);
        let pending = |n, len| {
            let (done, _) = oneshot::channel();
            tx.try_send(Pending { envelope: envelope(n, len), done }).unwrap();
        };
        for n in 0..10 {
            pending(n, 10);
        }
        let first = rx.try_recv().unwrap();
        let batch = next_batch(first, &mut rx);
        let ids: Vec<u8> = batch.iter().map(|p| p.envelope.id[0]).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>(), "in queue order");

        // Large messages: the byte budget ends the batch after the one that crosses it.
        for n in 0..4 {
            pending(n, (MAX_READ_BYTES / 2) as usize);
        }
        let first = rx.try_recv().unwrap();
        assert_eq!(next_batch(first, &mut rx).len(), 2);
    }

    #[test]
    fn a_client_answer_says_how_many_it_took() {
        let delivered = Ok(MsgMessage::Delivered { upto: None, count: 3 });
        assert_eq!(taken(&delivered), Some(3));
        assert_eq!(taken(&Ok(MsgMessage::Ids { cursors: vec![] })), Some(0));
        assert_eq!(taken(&Err("gone".into())), None);
    }

    #[tokio::test]
    async fn a_stalled_client_costs_a_bounded_queue() {
        // Nobody answers the node task's commands: the client never takes a push.
        let (commands, _rx) = mpsc::channel(1);
        let net = MsgNet { commands, local: PeerId::random() };
        let session = Session::start(net, PeerId::random(), [1; 32], Duration::from_secs(60));
        let mut pushes = tokio::task::JoinSet::new();
        for n in 0..20u8 {
            let session = session.clone();
            pushes.spawn(async move { session.deliver(envelope(n, 1 << 20)).await });
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut declined = 0;
        while let Some(Ok(outcome)) = pushes.try_join_next() {
            assert_eq!(outcome, Delivery::Declined);
            declined += 1;
        }
        // At most one batch (4 MiB) in flight and 8 MiB queued; the rest were turned away.
        assert!(declined >= 20 - 4 - 8, "{declined} declined");
        assert!(session.queued_bytes.load(Ordering::Relaxed) <= DELIVER_QUEUE_BYTES);
    }

    #[tokio::test]
    async fn one_connection_holds_a_bounded_number_of_sessions() {
        let (commands, _rx) = mpsc::channel(1);
        let net = MsgNet { commands, local: PeerId::random() };
        let peer = PeerId::random();
        let mut sessions = Sessions::default();
        let t = Duration::from_secs(1);
        for n in 0..MAX_SESSIONS_PER_PEER as u8 {
            assert_eq!(sessions.admit(&[n; 32], &peer), Ok(()));
            sessions.insert([n; 32], Session::start(net.clone(), peer, [n; 32], t));
        }
        assert_eq!(sessions.admit(&[0xEE; 32], &peer), Err(SessionRefused::PeerFull));
        assert_eq!(sessions.admit(&[0; 32], &peer), Ok(()), "replacing one's own session");
        assert_eq!(sessions.admit(&[0xEE; 32], &PeerId::random()), Ok(()));
    }

    #[tokio::test]
    async fn sessions_end_by_token_or_peer() {
        let (commands, _rx) = mpsc::channel(1);
        let net = MsgNet { commands, local: PeerId::random() };
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let mut sessions = Sessions::default();
        let t = Duration::from_secs(1);
        sessions.insert([1; 32], Session::start(net.clone(), alice, [1; 32], t));
        sessions.insert([2; 32], Session::start(net.clone(), alice, [2; 32], t));
        sessions.insert([3; 32], Session::start(net, bob, [3; 32], t));
        let now = Instant::now();
        assert!(!sessions.end(&[3; 32], &[9; 32], now), "another login's token ends nothing");
        assert_eq!(sessions.admit(&[1; 32], &alice), Ok(()), "a user may log in again");
        assert_eq!(sessions.end_peer(&alice, now), 2);
        assert!(sessions.end(&[3; 32], &[3; 32], now));
        assert!(sessions.is_empty());
    }

    #[tokio::test]
    async fn an_ended_session_resumes_by_token_within_the_window_once() {
        let (commands, _rx) = mpsc::channel(1);
        let net = MsgNet { commands, local: PeerId::random() };
        let peer = PeerId::random();
        let t0 = Instant::now();
        let mut sessions = Sessions::default();
        let t = Duration::from_secs(1);
        sessions.insert([1; 32], Session::start(net.clone(), peer, [10; 32], t));
        sessions.insert([2; 32], Session::start(net, peer, [20; 32], t));
        assert_eq!(sessions.resume(&[10; 32], t0), Some([1; 32]), "a live session's token");
        assert_eq!(sessions.resume(&[99; 32], t0), None, "an unknown token");
        sessions.end_peer(&peer, t0);
        assert_eq!(sessions.resume(&[10; 32], t0 + RESUME_WINDOW / 2), Some([1; 32]));
        assert_eq!(sessions.resume(&[10; 32], t0 + RESUME_WINDOW / 2), None, "used once");
        assert_eq!(sessions.resume(&[20; 32], t0 + RESUME_WINDOW), None, "expired");
    }
}
