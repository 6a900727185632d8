//! One connection to a relay: a small libp2p swarm (TCP or QUIC, Noise, Yamux) running the zmesh
//! handshake, `/zmesh/store/1.0` and `/zmesh/msg/1.0` request-response, driven by a background
//! task.
//!
//! The swarm uses a fresh transport key for every connection: the relay authenticates the user
//! by the signatures on requests, not by the connection, so there is no reason to link a user's
//! sessions at the transport layer. Requests are sent only after the relay's handshake completed,
//! as a relay serves storage to handshaken peers only.
//!
//! Messaging runs both ways on the one connection: the client sends requests, and once it has
//! logged in the relay pushes `Deliver` requests with live messages. Those go to whoever
//! [`subscribed`](Relay::subscribe); with no subscriber, or one that drops a [`Delivery`]
//! unanswered, the relay is told nothing was taken and keeps the messages in the mailbox.
//!
//! Messaging requests are flow-controlled (seed 001, "Backpressure Handling"): at most a window
//! of them is unanswered at a time, the rest wait in a bounded local queue (callers wait when it
//! is full), and a request the relay answers `Throttled` is sent again, in its place in the
//! queue, once the relay's retry-after has passed. Callers see only the final answer.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use zmesh_core::flow::{FlowReason, FlowSignal, MAX_WINDOW, OutboundWindow};
use zmesh_core::handshake::LocalOffer;
use zmesh_core::keepalive::KeepAliveConfig;
use zmesh_node::RuntimeInfo;
use zmesh_node::control::{self, ControlEvent, ControlReport};
use zmesh_node::framing::FrameCodec;
use zmesh_types::Capabilities;
use zmesh_types::constants::SUPPORTED_VERSIONS;
use zmesh_wire::control::FlowControl;
use zmesh_wire::msg::{Cursor, Envelope, MsgMessage, MsgOutcome, MsgStatus};
use zmesh_wire::store::StoreMessage;

use crate::{ClientError, Result};

/// The storage protocol.
pub const STORE_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/store/1.0");
/// The messaging protocol.
pub const MSG_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/msg/1.0");
/// How long one storage request may take: a relay codes and places 15 shards of up to 4 MiB.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one messaging request may take: a relay may forward to another relay or write to
/// three mailbox replicas, each a round trip and an fsync.
pub const MSG_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Live deliveries waiting for the subscriber. More are refused at once (the relay keeps them
/// in the mailbox), so a slow subscriber cannot make the relay wait on it.
pub const DELIVERY_QUEUE: usize = 32;
/// How long dialling and the handshake may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Messaging requests that may wait locally for their turn; callers of [`MsgRelay::request`]
/// then wait for room, so a burst costs bounded memory.
pub const MSG_QUEUE: usize = 10_000;
/// Most messaging requests open at once on one connection, whatever the relay's window allows:
/// each is a Yamux stream, and a Yamux peer with default settings closes the whole connection
/// beyond 512 streams (which the relay's own pushes to this client share).
pub const MAX_OPEN_REQUESTS: usize = 256;
/// How long one request may keep being answered `Throttled` before its caller is told.
pub const MAX_THROTTLED: Duration = Duration::from_secs(5 * 60);
/// After a rate-limit refusal, requests go one at a time for this long. A relay counts every
/// request that arrives before the retry-after it gave as ignoring it, and disconnects a peer
/// that does so ten times within a minute: a batch sent when the pause ends, with only a token
/// or two back in the relay's bucket, would do just that.
pub const SINGLE_FILE_AFTER_RATE_LIMIT: Duration = Duration::from_secs(60);
/// Added to a relay's retry-after: it travels in whole milliseconds, rounded down, and a request
/// that arrives a moment early counts against the client.
const RETRY_MARGIN: Duration = Duration::from_millis(5);
/// Requests handed over by callers but not yet taken into the queue.
const MSG_CHANNEL: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Anything that answers storage requests: a [`Relay`], or a fake in tests.
pub trait ChunkStore {
    /// Sends one request and waits for its answer.
    fn call(&self, request: StoreMessage) -> impl Future<Output = Result<StoreMessage>> + Send;
}

/// Anything that answers messaging requests: a [`Relay`], or a fake in tests.
pub trait MsgRelay {
    /// Sends one `/zmesh/msg/1.0` request and waits for its answer.
    fn request(&self, request: MsgMessage) -> impl Future<Output = Result<MsgMessage>> + Send;
    /// The relay's peer id (what a login is bound to).
    fn peer_id(&self) -> PeerId;
    /// An address the relay is reachable at (what a presence record points to).
    fn addr(&self) -> Multiaddr;
}

/// Live messages the relay pushed, waiting for an answer. Answer with [`Delivery::answer`]
/// once they are safely handled; dropping it unanswered tells the relay none were taken.
#[derive(Debug)]
pub struct Delivery {
    pub messages: Vec<Envelope>,
    reply: oneshot::Sender<MsgMessage>,
}

impl Delivery {
    /// A delivery and the receiver of its answer (the connection's side; also for fakes).
    pub fn new(messages: Vec<Envelope>) -> (Delivery, oneshot::Receiver<MsgMessage>) {
        let (reply, answer) = oneshot::channel();
        (Delivery { messages, reply }, answer)
    }

    /// Tells the relay the messages up to `upto` (`count` of them) were taken; `None` and 0
    /// when none were.
    pub fn answer(self, upto: Option<Cursor>, count: u16) {
        let _ = self.reply.send(MsgMessage::Delivered { upto, count });
    }
}

/// The receiving end of a [`Relay`]'s live deliveries; ends when the connection does.
pub type Deliveries = mpsc::Receiver<Delivery>;

#[derive(NetworkBehaviour)]
struct ClientBehaviour {
    control: control::Behaviour,
    store: request_response::Behaviour<FrameCodec<StoreMessage>>,
    msg: request_response::Behaviour<FrameCodec<MsgMessage>>,
}

enum Command {
    Store { request: Box<StoreMessage>, reply: oneshot::Sender<Result<StoreMessage>> },
    Subscribe { reply: oneshot::Sender<Deliveries> },
}

type MsgReply = oneshot::Sender<Result<MsgMessage>>;

/// A messaging request for the connection's queue.
struct MsgCommand {
    request: MsgMessage,
    reply: MsgReply,
}

/// A handshaken connection to one relay. Dropping it closes the connection.
#[derive(Debug, Clone)]
pub struct Relay {
    commands: mpsc::Sender<Command>,
    /// Apart from `commands`, so that a full messaging queue holds up messaging only.
    msgs: mpsc::Sender<MsgCommand>,
    lost: Arc<AtomicBool>,
    backlog: Arc<Backlog>,
    peer: PeerId,
    addr: Multiaddr,
}

/// Messaging requests waiting in this connection's local queue and sent but unanswered,
/// refreshed by the connection's task (for progress reports and tests of backpressure).
#[derive(Debug, Default)]
struct Backlog {
    queued: AtomicUsize,
    in_flight: AtomicUsize,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MsgCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgCommand").field("request", &request_name(&self.request)).finish()
    }
}

impl Relay {
    /// Dials `addr`, runs the zmesh handshake, and returns once the relay accepted it.
    ///
    /// # Errors
    /// [`ClientError::Connect`] if the relay cannot be reached (or not within
    /// [`CONNECT_TIMEOUT`]), [`ClientError::Handshake`] if it refuses the handshake.
    pub async fn connect(addr: Multiaddr) -> Result<Relay> {
        let connect_err = |reason: String| ClientError::Connect { addr: addr.to_string(), reason };
        let mut swarm = build_swarm().map_err(connect_err)?;
        swarm.dial(addr.clone()).map_err(|e| connect_err(e.to_string()))?;
        let peer = tokio::time::timeout(CONNECT_TIMEOUT, handshake(&mut swarm, &addr))
            .await
            .map_err(|_| {
                connect_err(format!(
                    "no completed handshake within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })??;
        tracing::debug!(%peer, %addr, "connected to relay");
        let (commands, rx) = mpsc::channel(16);
        let (msgs, msg_rx) = mpsc::channel(MSG_CHANNEL);
        let lost = Arc::new(AtomicBool::new(false));
        let backlog = Arc::new(Backlog::default());
        tokio::spawn(drive(swarm, peer, rx, msg_rx, lost.clone(), backlog.clone()));
        Ok(Relay { commands, msgs, lost, backlog, peer, addr })
    }

    /// Connects to the first node of a devnet file (`{"nodes": [{"peer_id", "multiaddrs", …}]}`)
    /// that answers, trying each node's first TCP address in order.
    ///
    /// # Errors
    /// I/O and parse errors for the file; [`ClientError::NoRelay`] if no node answered.
    pub async fn from_devnet(path: &Path) -> Result<Relay> {
        let addrs = devnet_addrs(path)?;
        Relay::connect_first(&addrs)
            .await
            .map(|(relay, _)| relay)
            .map_err(|(tried, last)| ClientError::NoRelay { path: path.to_owned(), tried, last })
    }

    /// Connects to the first of `addrs` that answers; returns it and its index, or how many
    /// were tried and the last error.
    ///
    /// # Errors
    /// `(tried, last error)` when none answered.
    pub async fn connect_first(
        addrs: &[Multiaddr],
    ) -> std::result::Result<(Relay, usize), (usize, String)> {
        let mut last = "no relay address given".to_owned();
        for (i, addr) in addrs.iter().enumerate() {
            match Relay::connect(addr.clone()).await {
                Ok(relay) => return Ok((relay, i)),
                Err(e) => {
                    tracing::debug!("{e}");
                    last = e.to_string();
                }
            }
        }
        Err((addrs.len(), last))
    }

    /// The relay's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The address this connection was dialled on.
    pub fn addr(&self) -> &Multiaddr {
        &self.addr
    }

    /// Whether the connection has ended (closed, or the relay stopped answering): every request
    /// then fails at once.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Messaging requests `(queued here, sent and unanswered)`: bounded by [`MSG_QUEUE`] and
    /// [`MAX_OPEN_REQUESTS`] however slowly the relay answers.
    pub fn backlog(&self) -> (usize, usize) {
        (
            self.backlog.queued.load(Ordering::Relaxed),
            self.backlog.in_flight.load(Ordering::Relaxed),
        )
    }

    /// Starts taking the messages the relay pushes live (after a login). Subscribe before
    /// logging in, or the first pushes are refused (they stay in the mailbox). A new
    /// subscription replaces the previous one, whose receiver then ends.
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the connection has ended.
    pub async fn subscribe(&self) -> Result<Deliveries> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Subscribe { reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }

    async fn command<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> ClientError {
    ClientError::Transport("the relay connection has ended".into())
}

impl ChunkStore for Relay {
    fn call(&self, request: StoreMessage) -> impl Future<Output = Result<StoreMessage>> + Send {
        let relay = self.clone();
        let request = Box::new(request);
        async move { relay.command(|reply| Command::Store { request, reply }).await }
    }
}

impl MsgRelay for Relay {
    fn request(&self, request: MsgMessage) -> impl Future<Output = Result<MsgMessage>> + Send {
        // A clone keeps the connection up until the answer is in.
        let relay = self.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            // Waits here while the queue is full.
            relay.msgs.send(MsgCommand { request, reply }).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        }
    }

    fn peer_id(&self) -> PeerId {
        self.peer
    }

    fn addr(&self) -> Multiaddr {
        self.addr.clone()
    }
}

/// The first TCP address of every node of a devnet file (`{"nodes": [{"peer_id", "multiaddrs",
/// …}]}`), in the file's order.
///
/// # Errors
/// I/O and parse errors for the file; [`ClientError::NoRelay`] if it lists no node with a TCP
/// address.
pub fn devnet_addrs(path: &Path) -> Result<Vec<Multiaddr>> {
    #[derive(serde::Deserialize)]
    struct DevnetFile {
        nodes: Vec<RuntimeInfo>,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))?;
    let file: DevnetFile = serde_json::from_str(&text)
        .map_err(|e| ClientError::Usage(format!("{} is not a devnet file: {e}", path.display())))?;
    let addrs: Vec<Multiaddr> = file.nodes.iter().filter_map(devnet_addr).collect();
    if addrs.is_empty() {
        return Err(ClientError::NoRelay {
            path: path.to_owned(),
            tried: 0,
            last: "the file lists no node with a TCP address".into(),
        });
    }
    Ok(addrs)
}

/// A node's first TCP multiaddr, with its peer id appended so the dial authenticates it.
fn devnet_addr(node: &RuntimeInfo) -> Option<Multiaddr> {
    let mut addr = node
        .multiaddrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))?;
    let has_peer = addr.iter().any(|p| matches!(p, Protocol::P2p(_)));
    if !has_peer && let Ok(peer) = node.peer_id.parse::<PeerId>() {
        addr.push(Protocol::P2p(peer));
    }
    Some(addr)
}

fn build_swarm() -> std::result::Result<Swarm<ClientBehaviour>, String> {
    let offer = LocalOffer {
        versions: SUPPORTED_VERSIONS.to_vec(),
        capabilities: Capabilities::empty(),
        features: vec![],
    };
    let control_config = control::ControlConfig {
        offer: Arc::new(offer),
        keepalive: KeepAliveConfig::default(),
        handshake_timeout: HANDSHAKE_TIMEOUT,
    };
    let rr_config = request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT);
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_quic()
        .with_behaviour(|_| ClientBehaviour {
            control: control::Behaviour::new(control_config),
            store: request_response::Behaviour::new(
                [(STORE_PROTOCOL, ProtocolSupport::Outbound)],
                rr_config,
            ),
            // Full: the relay pushes live messages to the client as requests of its own. The
            // flow-control window and MAX_OPEN_REQUESTS bound how many are open, not this.
            msg: request_response::Behaviour::new(
                [(MSG_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(MSG_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(MAX_WINDOW as usize + DELIVERY_QUEUE),
            ),
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

/// Runs the swarm until the relay's side of the handshake completes on our connection.
async fn handshake(swarm: &mut Swarm<ClientBehaviour>, addr: &Multiaddr) -> Result<PeerId> {
    let failed = |reason: String| ClientError::Handshake { addr: addr.to_string(), reason };
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    reason: error.to_string(),
                });
            }
            SwarmEvent::ConnectionClosed { cause, .. } => {
                let why = cause.map(|c| c.to_string()).unwrap_or_else(|| "no reason given".into());
                return Err(failed(format!("the relay closed the connection ({why})")));
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Control(ControlReport {
                peer,
                event,
                ..
            })) => match event {
                ControlEvent::Negotiated(n) => {
                    tracing::debug!(%peer, version = %n.version, "handshake done");
                    return Ok(peer);
                }
                ControlEvent::HandshakeFailed(reason) | ControlEvent::Broken(reason) => {
                    return Err(failed(reason));
                }
                ControlEvent::Dead { missed } => {
                    return Err(failed(format!("the relay stopped answering ({missed} pings)")));
                }
                ControlEvent::Rtt { .. }
                | ControlEvent::FlowControl(_)
                | ControlEvent::WindowUpdate(_) => {}
            },
            _ => {}
        }
    }
}

/// What becomes of a request the relay sent.
#[derive(Debug)]
enum Inbound {
    /// Handed to the subscriber; its answer comes on this channel.
    Forwarded(oneshot::Receiver<MsgMessage>),
    /// Answered at once.
    Answer(Box<MsgMessage>),
}

/// A `Deliver` goes to the subscriber, if there is one with room, and is answered once the
/// subscriber has handled it; anything else, or a delivery nobody takes, is answered at once.
fn route_inbound(request: MsgMessage, subscriber: Option<&mpsc::Sender<Delivery>>) -> Inbound {
    let MsgMessage::Deliver { messages } = request else {
        let outcome = MsgOutcome::new(MsgStatus::BadRequest, "a client serves Deliver only");
        return Inbound::Answer(Box::new(MsgMessage::Result { outcome }));
    };
    let Some(subscriber) = subscriber else { return Inbound::Answer(Box::new(not_taken())) };
    let (delivery, answer) = Delivery::new(messages);
    match subscriber.try_send(delivery) {
        Ok(()) => Inbound::Forwarded(answer),
        Err(_) => Inbound::Answer(Box::new(not_taken())),
    }
}

/// The answer to a delivery the client did not take: the relay keeps it in the mailbox.
fn not_taken() -> MsgMessage {
    MsgMessage::Delivered { upto: None, count: 0 }
}

type PendingAnswer = BoxFuture<'static, (ResponseChannel<MsgMessage>, MsgMessage)>;

/// The request's type, for messages.
pub(crate) fn request_name(request: &MsgMessage) -> &'static str {
    match request {
        MsgMessage::Login { .. } => "Login",
        MsgMessage::PublishRecord { .. } => "PublishRecord",
        MsgMessage::FetchRecord { .. } => "FetchRecord",
        MsgMessage::Send { .. } => "Send",
        MsgMessage::Sync { .. } => "Sync",
        MsgMessage::Ack { .. } => "Ack",
        MsgMessage::Resume { .. } => "Resume",
        MsgMessage::Deliver { .. } => "Deliver",
        MsgMessage::Forward { .. } => "Forward",
        MsgMessage::MailboxAppend { .. } => "MailboxAppend",
        MsgMessage::MailboxRead { .. } => "MailboxRead",
        MsgMessage::MailboxAck { .. } => "MailboxAck",
        MsgMessage::MailboxIds { .. } => "MailboxIds",
        _ => "answer",
    }
}

fn reason_text(reason: FlowReason) -> &'static str {
    match reason {
        FlowReason::BufferFull => "too many requests unanswered",
        FlowReason::RateLimit => "over its rate limit",
        FlowReason::SystemLoad => "the relay is overloaded",
    }
}

/// A messaging request waiting for its turn, or in flight.
#[derive(Debug)]
struct Queued<R> {
    /// Order of arrival: a request sent again goes back to its place in the queue.
    seq: u64,
    request: MsgMessage,
    reply: R,
    /// When the relay first answered it `Throttled`.
    throttled_since: Option<Instant>,
}

/// What an answer means for its request.
#[derive(Debug)]
enum Answered<R> {
    /// The final answer, or why there is none, for the caller.
    Done(R, Result<MsgMessage>),
    /// The relay did not take it now; it is queued again.
    Retry,
    /// Not a request in flight (it failed already when the connection was lost).
    Unknown,
}

/// Flow control of one connection's messaging requests, without I/O: which queued request may
/// go out now, what each answer means, and when to look again. `K` names a request in flight,
/// `R` is where its answer goes.
///
/// Only answers count as consumed, not the relay's WINDOW_UPDATE totals: every request gets
/// exactly one answer, so the client's own count is exact, while a relay's count of consumed
/// requests may or may not include the ones it throttled or that timed out. FLOW_CONTROL's
/// window and pause are taken, its consumed total replaced by ours for the same reason.
#[derive(Debug)]
struct Outbox<K, R> {
    window: OutboundWindow,
    /// Answers received, throttled ones excepted.
    answered: u64,
    queue: VecDeque<Queued<R>>,
    sent: HashMap<K, Queued<R>>,
    next_seq: u64,
    capacity: usize,
    max_open: usize,
    /// One request at a time until then (see [`SINGLE_FILE_AFTER_RATE_LIMIT`]).
    single_file_until: Option<Instant>,
}

impl<K: Hash + Eq, R> Outbox<K, R> {
    fn new(capacity: usize, max_open: usize) -> Self {
        Outbox {
            window: OutboundWindow::new(),
            answered: 0,
            queue: VecDeque::new(),
            sent: HashMap::new(),
            next_seq: 0,
            capacity,
            max_open,
            single_file_until: None,
        }
    }

    /// Whether another request may be queued.
    fn has_room(&self) -> bool {
        self.queue.len() < self.capacity
    }

    fn push(&mut self, request: MsgMessage, reply: R) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Queued { seq, request, reply, throttled_since: None });
    }

    /// The next request to send at `now`, if the window and the open-request bound allow;
    /// hand it back with [`sent`](Self::sent).
    fn next_to_send(&mut self, now: Instant) -> Option<Queued<R>> {
        let single_file = self.single_file_until.is_some_and(|t| now < t);
        let max_open = if single_file { 1 } else { self.max_open };
        if self.sent.len() >= max_open || !self.window.can_send(now) {
            return None;
        }
        let queued = self.queue.pop_front()?;
        self.window.on_sent();
        Some(queued)
    }

    fn sent(&mut self, key: K, queued: Queued<R>) {
        self.sent.insert(key, queued);
    }

    fn consumed_one(&mut self) {
        self.answered += 1;
        self.window.on_update(self.answered as u32);
    }

    /// The relay's answer to request `key`.
    fn on_answer(&mut self, key: &K, answer: MsgMessage, now: Instant) -> Answered<R> {
        let Some(mut queued) = self.sent.remove(key) else { return Answered::Unknown };
        let MsgMessage::Throttled { flow } = answer else {
            self.consumed_one();
            return Answered::Done(queued.reply, Ok(answer));
        };
        // The request had no effect: it is no longer in flight, and goes again later.
        self.window.on_refused();
        let signal = self.signal(&flow);
        self.window.on_signal(&signal, now);
        if signal.reason == FlowReason::RateLimit {
            self.single_file_until = Some(now + SINGLE_FILE_AFTER_RATE_LIMIT);
        }
        let since = *queued.throttled_since.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited >= MAX_THROTTLED {
            let error = ClientError::Throttled {
                request: request_name(&queued.request),
                waited_secs: waited.as_secs(),
                reason: reason_text(signal.reason),
            };
            return Answered::Done(queued.reply, Err(error));
        }
        let at = self.queue.partition_point(|q| q.seq < queued.seq);
        self.queue.insert(at, queued);
        Answered::Retry
    }

    /// Request `key` failed without an answer (timed out, stream broken): it no longer
    /// occupies the window.
    fn on_failure(&mut self, key: &K) -> Option<R> {
        let queued = self.sent.remove(key)?;
        self.consumed_one();
        Some(queued.reply)
    }

    /// FLOW_CONTROL from the control stream: a new window, and a pause.
    fn on_flow_control(&mut self, flow: &FlowControl, now: Instant) {
        let signal = self.signal(flow);
        self.window.on_signal(&signal, now);
    }

    fn signal(&self, flow: &FlowControl) -> FlowSignal {
        let mut signal = FlowSignal::from_wire(flow);
        signal.consumed = self.answered as u32;
        if !signal.retry_after.is_zero() {
            signal.retry_after += RETRY_MARGIN;
        }
        signal
    }

    /// When requests wait only for a pause to end: the time to look again.
    fn wake_at(&self, now: Instant) -> Option<Instant> {
        if self.queue.is_empty() { None } else { self.window.resume_at(now) }
    }

    /// Every request, queued or in flight, taken out (the connection is gone).
    fn drain(&mut self) -> Vec<R> {
        let queued = self.queue.drain(..).map(|q| q.reply);
        queued.chain(self.sent.drain().map(|(_, q)| q.reply)).collect()
    }
}

/// Storage requests in flight.
type PendingStore = HashMap<OutboundRequestId, oneshot::Sender<Result<StoreMessage>>>;

/// Sends every messaging request the flow control lets go now.
fn flush(
    swarm: &mut Swarm<ClientBehaviour>,
    peer: &PeerId,
    outbox: &mut Outbox<OutboundRequestId, MsgReply>,
) {
    let now = Instant::now();
    while let Some(queued) = outbox.next_to_send(now) {
        let id = swarm.behaviour_mut().msg.send_request(peer, queued.request.clone());
        outbox.sent(id, queued);
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Owns the swarm: sends requests (messaging ones under flow control, see [`Outbox`]), routes
/// answers back, hands the relay's deliveries to the subscriber and answers them, and fails
/// every request once the connection is gone. Ends when the [`Relay`] (every clone) is dropped.
async fn drive(
    mut swarm: Swarm<ClientBehaviour>,
    peer: PeerId,
    mut commands: mpsc::Receiver<Command>,
    mut msgs: mpsc::Receiver<MsgCommand>,
    lost_flag: Arc<AtomicBool>,
    backlog: Arc<Backlog>,
) {
    let mut store: PendingStore = HashMap::new();
    let mut outbox: Outbox<OutboundRequestId, MsgReply> = Outbox::new(MSG_QUEUE, MAX_OPEN_REQUESTS);
    let mut subscriber: Option<mpsc::Sender<Delivery>> = None;
    let mut answers: FuturesUnordered<PendingAnswer> = FuturesUnordered::new();
    let mut lost: Option<String> = None;
    loop {
        if lost.is_none() {
            flush(&mut swarm, &peer, &mut outbox);
        }
        backlog.queued.store(outbox.queue.len(), Ordering::Relaxed);
        backlog.in_flight.store(outbox.sent.len(), Ordering::Relaxed);
        let wake = outbox.wake_at(Instant::now());
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                match (command, &lost) {
                    (Command::Subscribe { reply }, _) => {
                        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
                        // After the connection is lost the receiver ends at once.
                        if lost.is_none() {
                            subscriber = Some(tx);
                        }
                        let _ = reply.send(rx);
                    }
                    (Command::Store { reply, .. }, Some(reason)) => {
                        let _ = reply.send(Err(ClientError::Transport(reason.clone())));
                    }
                    (Command::Store { request, reply }, None) => {
                        let id = swarm.behaviour_mut().store.send_request(&peer, *request);
                        store.insert(id, reply);
                    }
                }
            }
            // Taken only while the queue has room: callers wait in the channel meanwhile.
            msg = msgs.recv(), if outbox.has_room() || lost.is_some() => {
                let Some(MsgCommand { request, reply }) = msg else { break };
                match &lost {
                    Some(reason) => {
                        let _ = reply.send(Err(ClientError::Transport(reason.clone())));
                    }
                    None => outbox.push(request, reply),
                }
            }
            () = sleep_until(wake) => {}
            Some((channel, answer)) = answers.next(), if !answers.is_empty() => {
                // Fails only if the relay gave up waiting; it then keeps the messages.
                let _ = swarm.behaviour_mut().msg.send_response(channel, answer);
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(ClientBehaviourEvent::Store(event)) => match event {
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    } => {
                        if let Some(reply) = store.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = store.remove(&request_id) {
                            let reason = lost.clone().unwrap_or_else(|| error.to_string());
                            let _ = reply.send(Err(ClientError::Transport(reason)));
                        }
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(ClientBehaviourEvent::Msg(event)) => match event {
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    } => {
                        if let Answered::Done(reply, answer) =
                            outbox.on_answer(&request_id, response, Instant::now())
                        {
                            let _ = reply.send(answer);
                        }
                    }
                    request_response::Event::Message {
                        peer: from,
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    } => {
                        // Only the relay this connection is for may push to the user.
                        let request = if from == peer { request } else {
                            MsgMessage::Result { outcome: MsgOutcome::new(
                                MsgStatus::Unauthorized, "not this client's relay") }
                        };
                        let live = subscriber.as_ref().filter(|s| !s.is_closed());
                        match route_inbound(request, live) {
                            Inbound::Forwarded(answer) => answers.push(Box::pin(async move {
                                (channel, answer.await.unwrap_or_else(|_| not_taken()))
                            })),
                            Inbound::Answer(answer) => {
                                let _ = swarm.behaviour_mut().msg.send_response(channel, *answer);
                            }
                        }
                    }
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = outbox.on_failure(&request_id) {
                            let reason = lost.clone().unwrap_or_else(|| error.to_string());
                            let _ = reply.send(Err(ClientError::Transport(reason)));
                        }
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(ClientBehaviourEvent::Control(ControlReport {
                    event, ..
                })) => match event {
                    ControlEvent::Dead { missed } => {
                        lost = Some(format!("the relay stopped answering ({missed} pings missed)"));
                        lost_flag.store(true, Ordering::Release);
                    }
                    ControlEvent::FlowControl(flow) => {
                        outbox.on_flow_control(&flow, Instant::now());
                    }
                    // Answers are counted instead (see `Outbox`).
                    ControlEvent::WindowUpdate(_) => {}
                    _ => {}
                },
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. }
                    if peer_id == peer =>
                {
                    let why = cause.map(|c| c.to_string()).unwrap_or_else(|| "closed".into());
                    let reason = lost
                        .clone()
                        .unwrap_or_else(|| format!("connection to the relay lost ({why})"));
                    // Set before any caller hears of the failure, so it can tell a lost
                    // connection from a failed request.
                    lost_flag.store(true, Ordering::Release);
                    for (_, reply) in store.drain() {
                        let _ = reply.send(Err(ClientError::Transport(reason.clone())));
                    }
                    for reply in outbox.drain() {
                        let _ = reply.send(Err(ClientError::Transport(reason.clone())));
                    }
                    // Ends the subscriber's receiver, so a follower learns the connection is gone.
                    subscriber = None;
                    lost = Some(reason);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(peer_id: &str, addrs: &[&str]) -> RuntimeInfo {
        serde_json::from_value(serde_json::json!({
            "peer_id": peer_id,
            "node_id": "00".repeat(32),
            "multiaddrs": addrs,
            "api": "127.0.0.1:1",
            "dir": "/tmp/x",
            "pid": 1,
        }))
        .unwrap()
    }

    #[test]
    fn a_devnet_entry_gives_its_first_tcp_address_with_the_peer_id() {
        let peer = PeerId::random();
        let n = node(
            &peer.to_string(),
            &[
                "/ip4/127.0.0.1/udp/4001/quic-v1",
                "/ip4/127.0.0.1/tcp/4001",
                "/ip4/127.0.0.1/tcp/4002",
            ],
        );
        let addr = devnet_addr(&n).unwrap();
        assert_eq!(addr.to_string(), format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"));
        assert!(devnet_addr(&node(&peer.to_string(), &["/ip4/127.0.0.1/udp/1/quic-v1"])).is_none());
    }

    fn deliver(n: u8) -> MsgMessage {
        let envelope =
            |i| Envelope { id: [i; 16], order: u64::from(i), expires_at_ms: 9, sealed: vec![i] };
        MsgMessage::Deliver { messages: (1..=n).map(envelope).collect() }
    }

    fn answered(inbound: Inbound) -> MsgMessage {
        match inbound {
            Inbound::Answer(answer) => *answer,
            Inbound::Forwarded(_) => panic!("forwarded, expected an answer"),
        }
    }

    #[test]
    fn deliveries_nobody_takes_are_refused_at_once() {
        assert_eq!(answered(route_inbound(deliver(2), None)), not_taken());
        // A full queue: the relay keeps the messages rather than wait on a slow subscriber.
        let (tx, _rx) = mpsc::channel(1);
        assert!(matches!(route_inbound(deliver(1), Some(&tx)), Inbound::Forwarded(_)));
        assert_eq!(answered(route_inbound(deliver(1), Some(&tx))), not_taken());
        // A subscriber that went away.
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        assert_eq!(answered(route_inbound(deliver(1), Some(&tx))), not_taken());
    }

    #[test]
    fn other_requests_from_the_relay_are_refused() {
        let (tx, mut rx) = mpsc::channel(1);
        let sync = MsgMessage::FetchRecord {
            kind: zmesh_wire::msg::RecordKind::Bundle,
            owner_address: [1; 32],
        };
        let MsgMessage::Result { outcome } = answered(route_inbound(sync, Some(&tx))) else {
            panic!("not a Result");
        };
        assert_eq!(outcome.status, MsgStatus::BadRequest);
        assert!(rx.try_recv().is_err(), "nothing reached the subscriber");
    }

    #[tokio::test]
    async fn a_subscriber_answers_or_drops_a_delivery() {
        let (tx, mut rx) = mpsc::channel(4);
        let Inbound::Forwarded(answer) = route_inbound(deliver(3), Some(&tx)) else {
            panic!("not forwarded");
        };
        let delivery = rx.recv().await.unwrap();
        assert_eq!(delivery.messages.len(), 3);
        let upto = Some(delivery.messages[2].cursor());
        delivery.answer(upto, 3);
        assert_eq!(answer.await.unwrap(), MsgMessage::Delivered { upto, count: 3 });

        let Inbound::Forwarded(answer) = route_inbound(deliver(1), Some(&tx)) else {
            panic!("not forwarded");
        };
        drop(rx.recv().await.unwrap());
        assert!(answer.await.is_err(), "the connection then answers `not taken`");
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_clearly() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let e = Relay::connect(addr).await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
        assert_eq!(e.kind(), crate::ErrorKind::Network);
    }

    #[tokio::test]
    async fn a_devnet_with_no_live_node_names_what_it_tried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devnet.json");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let nodes = serde_json::json!({"nodes": [node(
            &PeerId::random().to_string(),
            &[&format!("/ip4/127.0.0.1/tcp/{port}")],
        )]});
        std::fs::write(&path, nodes.to_string()).unwrap();
        let e = Relay::from_devnet(&path).await.unwrap_err();
        assert!(matches!(e, ClientError::NoRelay { tried: 1, .. }), "{e}");
    }

    // Flow control of messaging requests (`Outbox`), without a network: keys are numbers,
    // replies the number of the request they answer.

    use zmesh_core::flow::{BASE_PAUSE, INITIAL_WINDOW, MIN_WINDOW};
    use zmesh_wire::control::FlowReasonCode;

    fn send(n: u8) -> MsgMessage {
        MsgMessage::Send { recipient: [1; 32], id: [n; 16], sealed: vec![n] }
    }

    fn sent(n: u8) -> MsgMessage {
        MsgMessage::Sent { id: [n; 16], outcome: MsgOutcome::new(MsgStatus::Queued, "") }
    }

    fn throttled(reason: FlowReasonCode, retry_after_ms: u32) -> MsgMessage {
        let flow = FlowControl { new_window: INITIAL_WINDOW, consumed: 0, reason, retry_after_ms };
        MsgMessage::Throttled { flow }
    }

    /// Sends what may go at `now`: (key, request number) in the order sent.
    fn send_ready(outbox: &mut Outbox<u32, u8>, now: Instant, keys: &mut u32) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        while let Some(queued) = outbox.next_to_send(now) {
            *keys += 1;
            out.push((*keys, queued.reply));
            outbox.sent(*keys, queued);
        }
        out
    }

    /// The final answer, and which request it is for.
    fn done(answered: Answered<u8>) -> (u8, MsgMessage) {
        match answered {
            Answered::Done(n, answer) => (n, answer.unwrap()),
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn a_throttled_request_goes_again_in_its_place_after_the_retry_after() {
        let t0 = Instant::now();
        let mut outbox = Outbox::new(100, 100);
        let mut keys = 0;
        for n in 1..=3 {
            outbox.push(send(n), n);
        }
        let first = send_ready(&mut outbox, t0, &mut keys);
        assert_eq!(first, [(1, 1), (2, 2), (3, 3)]);
        outbox.push(send(4), 4);
        // Answered out of order: 2 and 1 are throttled, 3 taken.
        let full = FlowReasonCode::BufferFull;
        assert!(matches!(outbox.on_answer(&2, throttled(full, 500), t0), Answered::Retry));
        assert!(matches!(outbox.on_answer(&1, throttled(full, 500), t0), Answered::Retry));
        assert_eq!(done(outbox.on_answer(&3, sent(3), t0)).0, 3);
        // Nothing goes before the retry-after; the loop is told when to look again.
        let resume = t0 + Duration::from_millis(500) + RETRY_MARGIN;
        assert!(send_ready(&mut outbox, t0, &mut keys).is_empty());
        assert_eq!(outbox.wake_at(t0), Some(resume));
        // Then in the order they came, ahead of the one queued meanwhile.
        let again = send_ready(&mut outbox, resume, &mut keys);
        assert_eq!(again.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 2, 4]);
        for (key, n) in again {
            let answer = done(outbox.on_answer(&key, sent(n), resume));
            assert_eq!(answer, (n, sent(n)), "the caller sees the final answer");
        }
        assert_eq!(outbox.window.in_flight(), 0);
        assert_eq!(outbox.answered, 4, "throttled answers are not counted as consumed");
        assert!(matches!(outbox.on_answer(&1, sent(1), resume), Answered::Unknown));
    }

    #[test]
    fn after_a_rate_limit_requests_go_one_at_a_time_for_a_minute() {
        let t0 = Instant::now();
        let mut outbox = Outbox::new(100, 100);
        let mut keys = 0;
        for n in 1..=6 {
            outbox.push(send(n), n);
        }
        let first = send_ready(&mut outbox, t0, &mut keys);
        assert_eq!(first.len(), 6);
        // The relay's bucket held two: the other four come back throttled.
        done(outbox.on_answer(&1, sent(1), t0));
        done(outbox.on_answer(&2, sent(2), t0));
        for key in 3..=6 {
            let answer = throttled(FlowReasonCode::RateLimit, 600);
            assert!(matches!(outbox.on_answer(&key, answer, t0), Answered::Retry));
        }
        let resume = outbox.wake_at(t0).unwrap();
        assert_eq!(resume, t0 + Duration::from_millis(600) + RETRY_MARGIN);
        // One after the pause, the next once that one is answered.
        assert_eq!(send_ready(&mut outbox, resume, &mut keys), [(7, 3)]);
        assert!(send_ready(&mut outbox, resume, &mut keys).is_empty());
        done(outbox.on_answer(&7, sent(3), resume));
        assert_eq!(send_ready(&mut outbox, resume, &mut keys), [(8, 4)]);
        done(outbox.on_answer(&8, sent(4), resume));
        // A minute on, all at once again.
        let later = t0 + SINGLE_FILE_AFTER_RATE_LIMIT;
        assert_eq!(send_ready(&mut outbox, later, &mut keys).len(), 2);
    }

    #[test]
    fn a_request_throttled_for_five_minutes_is_given_up() {
        let mut now = Instant::now();
        let started = now;
        let mut outbox = Outbox::new(100, 100);
        let mut keys = 0;
        outbox.push(send(1), 1);
        let error = loop {
            let ready = send_ready(&mut outbox, now, &mut keys);
            assert_eq!(ready.len(), 1, "sent again once the pause is over");
            let load = throttled(FlowReasonCode::SystemLoad, 30_000);
            if let Answered::Done(1, answer) = outbox.on_answer(&ready[0].0, load, now) {
                break answer.unwrap_err();
            }
            now = outbox.wake_at(now).unwrap();
        };
        assert!(now.duration_since(started) >= MAX_THROTTLED);
        assert!(now.duration_since(started) < MAX_THROTTLED + Duration::from_secs(31));
        assert!(matches!(error, ClientError::Throttled { request: "Send", .. }), "{error}");
        assert_eq!(error.kind(), crate::ErrorKind::Unavailable);
        assert!(error.to_string().contains("overloaded"), "{error}");
    }

    #[test]
    fn the_window_the_open_bound_and_the_queue_hold_requests_back() {
        let t0 = Instant::now();
        let mut keys = 0;
        // At most 2 open, 3 queued.
        let mut outbox = Outbox::new(3, 2);
        for n in 1..=3 {
            outbox.push(send(n), n);
        }
        assert!(!outbox.has_room(), "callers wait");
        assert_eq!(send_ready(&mut outbox, t0, &mut keys).len(), 2);
        assert!(outbox.has_room());
        assert!(send_ready(&mut outbox, t0, &mut keys).is_empty());
        assert_eq!(outbox.wake_at(t0), None, "an answer, not a timer, lets the next one go");
        done(outbox.on_answer(&1, sent(1), t0));
        assert_eq!(send_ready(&mut outbox, t0, &mut keys), [(3, 3)]);
        // A request that failed without an answer frees its place too.
        assert_eq!(outbox.on_failure(&2), Some(2));
        assert_eq!(outbox.window.in_flight(), 1);
        let mut left = outbox.drain();
        left.sort_unstable();
        assert_eq!(left, [3], "what the lost connection still had");

        // FLOW_CONTROL from the control stream: a smaller window and a pause.
        let mut outbox = Outbox::new(MSG_QUEUE, MAX_OPEN_REQUESTS);
        for n in 0..200 {
            outbox.push(send(n), n);
        }
        let flow = FlowControl {
            new_window: 50,
            // A relay's count that differs from ours changes nothing.
            consumed: 77,
            reason: FlowReasonCode::BufferFull,
            retry_after_ms: 0,
        };
        outbox.on_flow_control(&flow, t0);
        assert_eq!(outbox.window.window(), MIN_WINDOW, "clamped");
        assert!(send_ready(&mut outbox, t0, &mut keys).is_empty(), "paused");
        let resume = outbox.wake_at(t0).unwrap();
        assert_eq!(resume, t0 + BASE_PAUSE, "no retry-after: the first backoff step");
        let batch = send_ready(&mut outbox, resume, &mut keys);
        assert_eq!(batch.len(), MIN_WINDOW as usize);
        assert_eq!(batch[0].1, 0, "in order");
    }
}
