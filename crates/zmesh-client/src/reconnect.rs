//! Staying connected (seed 001, "Connection Recovery Strategy"): a [`Reconnecting`] connection
//! is a [`MsgRelay`] that, when its relay is lost, dials again with exponential backoff (1 s,
//! 2 s, 4 s … 30 s, jittered; see [`zmesh_core::backoff`]), trying the alternate endpoints in
//! turn from the one it used.
//!
//! Requests that are safe to repeat (`Send`, whose message id makes relays, mailboxes and the
//! recipient keep one copy, and `FetchRecord`) are sent again over the new connection when the
//! old one was lost before they were answered, so a caller sees one answer. Others are not: a
//! `Sync` or `Ack` carries a one-time nonce the mailbox may have used already, a `Login` or a
//! presence record is bound to the relay that was lost. Their callers get the error and start
//! over (see [`Mailer::rejoin`](crate::Mailer::rejoin)).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use zmesh_core::backoff::{Backoff, Reconnect};
use zmesh_wire::msg::MsgMessage;

use crate::messenger::random_bytes;
use crate::relay::{Deliveries, MsgRelay, Relay};
use crate::{ClientError, ErrorKind, Result};

/// How long a request may wait for the connection to come back before its caller is told.
pub const DEFAULT_GIVE_UP: Duration = Duration::from_secs(5 * 60);

/// A connection that can be lost: a [`Relay`], or a fake in tests.
pub trait Link: MsgRelay + Clone + Send + Sync + 'static {
    /// Whether the connection has ended (as opposed to one request failing).
    fn is_lost(&self) -> bool;
    /// Starts taking the relay's live deliveries (see [`Relay::subscribe`]).
    fn subscribe(&self) -> impl Future<Output = Result<Deliveries>> + Send;
}

/// Opens [`Link`]s.
pub trait Dial: Send + Sync + 'static {
    type Link: Link;
    fn dial(&self, addr: &Multiaddr) -> impl Future<Output = Result<Self::Link>> + Send;
}

impl Link for Relay {
    fn is_lost(&self) -> bool {
        Relay::is_lost(self)
    }

    fn subscribe(&self) -> impl Future<Output = Result<Deliveries>> + Send {
        let relay = self.clone();
        async move { Relay::subscribe(&relay).await }
    }
}

/// Dials real relays with [`Relay::connect`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayDial;

impl Dial for RelayDial {
    type Link = Relay;

    fn dial(&self, addr: &Multiaddr) -> impl Future<Output = Result<Relay>> + Send {
        Relay::connect(addr.clone())
    }
}

/// A connection to whichever relay answers, kept up.
pub type ReconnectingRelay = Reconnecting<RelayDial>;

/// One reconnection attempt, as reported to an observer (and logged at info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectAttempt {
    /// 1 for the first attempt after a loss.
    pub number: u32,
    pub addr: Multiaddr,
    /// How long it waits before dialling.
    pub delay: Duration,
}

/// How a [`Reconnecting`] connection comes back.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    pub backoff: Backoff,
    /// How long a request may wait for a new connection ([`DEFAULT_GIVE_UP`]).
    pub give_up: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy { backoff: Backoff::new(), give_up: DEFAULT_GIVE_UP }
    }
}

type Observer = Arc<dyn Fn(&ReconnectAttempt) + Send + Sync>;

/// Live deliveries from one connection; they end when it is lost.
#[derive(Debug)]
pub struct Subscription {
    pub deliveries: Deliveries,
    /// Which connection (see [`Reconnecting::generation`]).
    pub generation: u64,
}

/// A [`MsgRelay`] that reconnects (see the module documentation). Clones share the connection.
pub struct Reconnecting<D: Dial> {
    inner: Arc<Inner<D>>,
}

struct Inner<D: Dial> {
    dial: D,
    /// The connection in use and its generation, bumped at each reconnection.
    current: Mutex<(D::Link, u64)>,
    /// Held while reconnecting, so one caller dials and the others wait for its result.
    plan: tokio::sync::Mutex<Reconnect<Multiaddr>>,
    give_up: Duration,
    observer: Mutex<Option<Observer>>,
    /// Attempts since the connection was last lost, and the last failure, for the error of a
    /// caller that stops waiting.
    attempts: AtomicU32,
    last_error: Mutex<String>,
}

impl<D: Dial> Clone for Reconnecting<D> {
    fn clone(&self) -> Self {
        Reconnecting { inner: self.inner.clone() }
    }
}

impl<D: Dial> fmt::Debug for Reconnecting<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("addr", &self.addr().to_string())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Requests that may be repeated over a new connection without a second effect.
fn resendable(request: &MsgMessage) -> bool {
    matches!(request, MsgMessage::Send { .. } | MsgMessage::FetchRecord { .. })
}

impl<D: Dial> Reconnecting<D> {
    /// Keeps `link`, made through `endpoints[current]`, up with `dial`.
    pub fn new(
        dial: D,
        link: D::Link,
        endpoints: Vec<Multiaddr>,
        current: usize,
        policy: ReconnectPolicy,
    ) -> Self {
        Reconnecting {
            inner: Arc::new(Inner {
                dial,
                current: Mutex::new((link, 0)),
                plan: tokio::sync::Mutex::new(Reconnect::new(endpoints, current, policy.backoff)),
                give_up: policy.give_up,
                observer: Mutex::new(None),
                attempts: AtomicU32::new(0),
                last_error: Mutex::new(String::new()),
            }),
        }
    }

    /// Calls `observer` before each attempt (a CLI prints it; it is logged either way).
    pub fn with_observer(
        self,
        observer: impl Fn(&ReconnectAttempt) + Send + Sync + 'static,
    ) -> Self {
        *self.inner.observer.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::new(observer));
        self
    }

    /// The connection in use.
    pub fn link(&self) -> D::Link {
        self.current().0
    }

    /// Which connection is in use: 0 for the first, one more after each reconnection.
    pub fn generation(&self) -> u64 {
        self.current().1
    }

    fn current(&self) -> (D::Link, u64) {
        self.inner.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Subscribes to the live deliveries of the connection in use.
    ///
    /// # Errors
    /// As [`Link::subscribe`].
    pub async fn subscribe(&self) -> Result<Subscription> {
        let (link, generation) = self.current();
        Ok(Subscription { deliveries: link.subscribe().await?, generation })
    }

    /// Replaces connection `generation`, which was lost, and returns once a new one is up; at
    /// once if another caller already replaced it. Waits as long as it takes: bound it with a
    /// timeout or a shutdown signal (dropping the future is safe).
    ///
    /// # Errors
    /// Only if there are no endpoints or no randomness for the jitter.
    pub async fn reconnect(&self, generation: u64) -> Result<()> {
        let mut plan = self.inner.plan.lock().await;
        if self.generation() != generation {
            return Ok(());
        }
        loop {
            let random = u32::from_le_bytes(random_bytes()?);
            let Some(attempt) = plan.next_attempt(random) else {
                return Err(ClientError::Unreachable {
                    attempts: 0,
                    waited_secs: 0,
                    last: "no relay address to reconnect to".into(),
                });
            };
            let (index, addr) = (attempt.index, attempt.endpoint.clone());
            let report = ReconnectAttempt { number: attempt.number, addr, delay: attempt.delay };
            tracing::info!(
                attempt = report.number,
                relay = %report.addr,
                "reconnecting in {:.1} s",
                report.delay.as_secs_f64()
            );
            let observer =
                self.inner.observer.lock().unwrap_or_else(PoisonError::into_inner).clone();
            if let Some(observer) = observer {
                observer(&report);
            }
            tokio::time::sleep(report.delay).await;
            self.inner.attempts.store(report.number, Ordering::Relaxed);
            match self.inner.dial.dial(&report.addr).await {
                Ok(link) => {
                    plan.connected(index);
                    self.inner.attempts.store(0, Ordering::Relaxed);
                    let mut current =
                        self.inner.current.lock().unwrap_or_else(PoisonError::into_inner);
                    *current = (link, generation + 1);
                    tracing::info!(relay = %report.addr, "reconnected");
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(relay = %report.addr, "reconnection failed: {e}");
                    *self.inner.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                        e.to_string();
                }
            }
        }
    }

    /// Sends `request`, again over a new connection if the one it went on was lost first.
    async fn resend(&self, request: MsgMessage) -> Result<MsgMessage> {
        let mut lost_at: Option<Instant> = None;
        loop {
            let (link, generation) = self.current();
            let error = match link.request(request.clone()).await {
                Err(e) if e.kind() == ErrorKind::Network && link.is_lost() => e,
                other => return other,
            };
            let since = *lost_at.get_or_insert_with(Instant::now);
            let left = self.inner.give_up.saturating_sub(since.elapsed());
            tracing::debug!("{error}; sending again once reconnected");
            match tokio::time::timeout(left, self.reconnect(generation)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(self.unreachable(since)),
            }
        }
    }

    fn unreachable(&self, since: Instant) -> ClientError {
        let last = self.inner.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone();
        ClientError::Unreachable {
            attempts: self.inner.attempts.load(Ordering::Relaxed),
            waited_secs: since.elapsed().as_secs(),
            last: if last.is_empty() { "no attempt finished".into() } else { last },
        }
    }
}

impl<D: Dial> MsgRelay for Reconnecting<D> {
    fn request(&self, request: MsgMessage) -> impl Future<Output = Result<MsgMessage>> + Send {
        let this = self.clone();
        async move {
            if resendable(&request) {
                this.resend(request).await
            } else {
                this.link().request(request).await
            }
        }
    }

    fn peer_id(&self) -> PeerId {
        self.link().peer_id()
    }

    fn addr(&self) -> Multiaddr {
        self.link().addr()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;

    use zmesh_wire::msg::{MsgOutcome, MsgStatus, RecordKind};

    use super::*;

    /// The fake network: which endpoints are up, and every request that reached a relay.
    #[derive(Default)]
    struct Net {
        down: Mutex<HashSet<usize>>,
        received: Mutex<Vec<(usize, MsgMessage)>>,
        dials: Mutex<Vec<usize>>,
    }

    #[derive(Clone)]
    struct FakeLink {
        endpoint: usize,
        peer: PeerId,
        lost: Arc<AtomicBool>,
        net: Arc<Net>,
    }

    fn addr(i: usize) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{}", 4000 + i).parse().unwrap()
    }

    impl MsgRelay for FakeLink {
        fn request(&self, request: MsgMessage) -> impl Future<Output = Result<MsgMessage>> + Send {
            let link = self.clone();
            async move {
                if link.lost.load(Ordering::Acquire) {
                    return Err(ClientError::Transport("connection lost".into()));
                }
                link.net.received.lock().unwrap().push((link.endpoint, request.clone()));
                Ok(match request {
                    MsgMessage::Send { id, .. } => {
                        MsgMessage::Sent { id, outcome: MsgOutcome::new(MsgStatus::Queued, "") }
                    }
                    _ => MsgMessage::Result { outcome: MsgOutcome::ok() },
                })
            }
        }

        fn peer_id(&self) -> PeerId {
            self.peer
        }

        fn addr(&self) -> Multiaddr {
            addr(self.endpoint)
        }
    }

    impl Link for FakeLink {
        fn is_lost(&self) -> bool {
            self.lost.load(Ordering::Acquire)
        }

        fn subscribe(&self) -> impl Future<Output = Result<Deliveries>> + Send {
            std::future::ready(Ok(tokio::sync::mpsc::channel(1).1))
        }
    }

    struct FakeDial(Arc<Net>);

    impl FakeDial {
        fn link(&self, endpoint: usize) -> FakeLink {
            FakeLink { endpoint, peer: PeerId::random(), lost: Arc::default(), net: self.0.clone() }
        }
    }

    impl Dial for FakeDial {
        type Link = FakeLink;

        fn dial(&self, to: &Multiaddr) -> impl Future<Output = Result<FakeLink>> + Send {
            let endpoint = (0..3).find(|&i| addr(i) == *to).unwrap();
            self.0.dials.lock().unwrap().push(endpoint);
            let up = !self.0.down.lock().unwrap().contains(&endpoint);
            let link = self.link(endpoint);
            async move {
                if up {
                    Ok(link)
                } else {
                    Err(ClientError::Connect {
                        addr: addr(endpoint).to_string(),
                        reason: "down".into(),
                    })
                }
            }
        }
    }

    fn policy(give_up: Duration) -> ReconnectPolicy {
        let ms = Duration::from_millis(1);
        ReconnectPolicy { backoff: Backoff::with_range(ms, 8 * ms), give_up }
    }

    fn send(n: u8) -> MsgMessage {
        MsgMessage::Send { recipient: [9; 32], id: [n; 16], sealed: vec![n] }
    }

    #[tokio::test]
    async fn sends_on_a_lost_connection_go_again_once_over_the_next_endpoint() {
        let net = Arc::new(Net::default());
        let dial = FakeDial(net.clone());
        let first = dial.link(0);
        let endpoints = (0..3).map(addr).collect();
        let relay = Reconnecting::new(dial, first.clone(), endpoints, 0, policy(DEFAULT_GIVE_UP));
        relay.request(send(1)).await.unwrap();

        // The relay goes away and stays away; the second endpoint answers.
        net.down.lock().unwrap().insert(0);
        first.lost.store(true, Ordering::Release);
        let sends = (2..=6).map(|n| {
            let relay = relay.clone();
            tokio::spawn(async move { relay.request(send(n)).await })
        });
        for (task, n) in futures::future::join_all(sends).await.into_iter().zip(2..) {
            let answer = task.unwrap().unwrap();
            assert!(matches!(answer, MsgMessage::Sent { id, .. } if id == [n; 16]));
        }
        assert_eq!(relay.generation(), 1, "one reconnection for all of them");
        assert_eq!(*net.dials.lock().unwrap(), [0, 1], "the lost endpoint first, then the next");
        let received = net.received.lock().unwrap().clone();
        let ids: Vec<(usize, u8)> = received
            .iter()
            .map(|(e, r)| match r {
                MsgMessage::Send { id, .. } => (*e, id[0]),
                _ => panic!("{r:?}"),
            })
            .collect();
        assert_eq!(ids.len(), 6, "each message reached a relay once: {ids:?}");
        assert!(ids[1..].iter().all(|(e, _)| *e == 1), "{ids:?}");
        assert_eq!(relay.addr(), addr(1));
    }

    #[tokio::test]
    async fn requests_that_cannot_be_repeated_fail_and_a_caller_gives_up_in_time() {
        let net = Arc::new(Net::default());
        let dial = FakeDial(net.clone());
        let first = dial.link(0);
        let relay = Reconnecting::new(
            dial,
            first.clone(),
            vec![addr(0)],
            0,
            policy(Duration::from_millis(50)),
        );
        net.down.lock().unwrap().insert(0);
        first.lost.store(true, Ordering::Release);

        // Resume names a session on the relay that was lost: never repeated elsewhere.
        let fetch = MsgMessage::Resume { session_token: [1; 32] };
        let e = relay.request(fetch).await.unwrap_err();
        assert!(matches!(e, ClientError::Transport(_)), "{e}");
        assert!(net.dials.lock().unwrap().is_empty(), "no reconnection for it");

        let started = Instant::now();
        let request = MsgMessage::FetchRecord { kind: RecordKind::Bundle, owner_address: [5; 32] };
        let e = relay.request(request).await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { attempts: 1.., .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::Network);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("down"), "names the last failure: {e}");
    }

    #[tokio::test]
    async fn attempts_back_off_and_are_reported() {
        let net = Arc::new(Net::default());
        let dial = FakeDial(net.clone());
        let first = dial.link(0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let relay =
            Reconnecting::new(dial, first.clone(), vec![addr(0)], 0, policy(DEFAULT_GIVE_UP))
                .with_observer(move |a| log.lock().unwrap().push(a.clone()));
        net.down.lock().unwrap().insert(0);
        first.lost.store(true, Ordering::Release);
        let waiting = {
            let relay = relay.clone();
            tokio::spawn(async move { relay.request(send(1)).await })
        };
        // Back after six failed attempts.
        while net.dials.lock().unwrap().len() < 6 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        net.down.lock().unwrap().clear();
        waiting.await.unwrap().unwrap();
        let seen = seen.lock().unwrap();
        assert!(seen.len() >= 7, "{seen:?}");
        let numbers: Vec<u32> = seen.iter().map(|a| a.number).collect();
        assert_eq!(numbers, (1..=seen.len() as u32).collect::<Vec<_>>());
        // 1, 2, 4, 8, 8 … ms, each within ±25 %.
        let ms = Duration::from_millis(1);
        for (a, nominal) in seen.iter().zip([1, 2, 4, 8, 8, 8, 8, 8, 8, 8]) {
            assert!(a.delay >= nominal * ms * 3 / 4 && a.delay <= nominal * ms * 5 / 4, "{a:?}");
            assert_eq!(a.addr, addr(0));
        }
    }
}
