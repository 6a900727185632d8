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

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use zmesh_core::handshake::LocalOffer;
use zmesh_core::keepalive::KeepAliveConfig;
use zmesh_node::RuntimeInfo;
use zmesh_node::control::{self, ControlEvent, ControlReport};
use zmesh_node::framing::FrameCodec;
use zmesh_types::Capabilities;
use zmesh_types::constants::SUPPORTED_VERSIONS;
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
    Store { request: StoreMessage, reply: oneshot::Sender<Result<StoreMessage>> },
    Msg { request: MsgMessage, reply: oneshot::Sender<Result<MsgMessage>> },
    Subscribe { reply: oneshot::Sender<Deliveries> },
}

/// A handshaken connection to one relay. Dropping it closes the connection.
#[derive(Debug, Clone)]
pub struct Relay {
    commands: mpsc::Sender<Command>,
    peer: PeerId,
    addr: Multiaddr,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").finish_non_exhaustive()
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
        tokio::spawn(drive(swarm, peer, rx));
        Ok(Relay { commands, peer, addr })
    }

    /// Connects to the first node of a devnet file (`{"nodes": [{"peer_id", "multiaddrs", …}]}`)
    /// that answers, trying each node's first TCP address in order.
    ///
    /// # Errors
    /// I/O and parse errors for the file; [`ClientError::NoRelay`] if no node answered.
    pub async fn from_devnet(path: &Path) -> Result<Relay> {
        #[derive(serde::Deserialize)]
        struct DevnetFile {
            nodes: Vec<RuntimeInfo>,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))?;
        let file: DevnetFile = serde_json::from_str(&text).map_err(|e| {
            ClientError::Usage(format!("{} is not a devnet file: {e}", path.display()))
        })?;
        let mut tried = 0;
        let mut last = "the file lists no node with a TCP address".to_owned();
        for node in &file.nodes {
            let Some(addr) = devnet_addr(node) else { continue };
            tried += 1;
            match Relay::connect(addr).await {
                Ok(relay) => return Ok(relay),
                Err(e) => {
                    tracing::debug!("{e}");
                    last = e.to_string();
                }
            }
        }
        Err(ClientError::NoRelay { path: path.to_owned(), tried, last })
    }

    /// The relay's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The address this connection was dialled on.
    pub fn addr(&self) -> &Multiaddr {
        &self.addr
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
        async move { relay.command(|reply| Command::Store { request, reply }).await }
    }
}

impl MsgRelay for Relay {
    fn request(&self, request: MsgMessage) -> impl Future<Output = Result<MsgMessage>> + Send {
        let relay = self.clone();
        async move { relay.command(|reply| Command::Msg { request, reply }).await }
    }

    fn peer_id(&self) -> PeerId {
        self.peer
    }

    fn addr(&self) -> Multiaddr {
        self.addr.clone()
    }
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
            // Full: the relay pushes live messages to the client as requests of its own.
            msg: request_response::Behaviour::new(
                [(MSG_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(MSG_REQUEST_TIMEOUT),
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

/// Requests in flight, by protocol.
#[derive(Default)]
struct Pending {
    store: HashMap<OutboundRequestId, oneshot::Sender<Result<StoreMessage>>>,
    msg: HashMap<OutboundRequestId, oneshot::Sender<Result<MsgMessage>>>,
}

impl Pending {
    fn fail(&mut self, id: &OutboundRequestId, reason: String) {
        if let Some(reply) = self.store.remove(id) {
            let _ = reply.send(Err(ClientError::Transport(reason)));
        } else if let Some(reply) = self.msg.remove(id) {
            let _ = reply.send(Err(ClientError::Transport(reason)));
        }
    }

    fn fail_all(&mut self, reason: &str) {
        for (_, reply) in self.store.drain() {
            let _ = reply.send(Err(ClientError::Transport(reason.to_owned())));
        }
        for (_, reply) in self.msg.drain() {
            let _ = reply.send(Err(ClientError::Transport(reason.to_owned())));
        }
    }
}

/// Owns the swarm: sends requests from `commands`, routes answers back, hands the relay's
/// deliveries to the subscriber and answers them, and fails every request once the connection
/// is gone. Ends when the [`Relay`] (every clone) is dropped.
async fn drive(
    mut swarm: Swarm<ClientBehaviour>,
    peer: PeerId,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut pending = Pending::default();
    let mut subscriber: Option<mpsc::Sender<Delivery>> = None;
    let mut answers: FuturesUnordered<PendingAnswer> = FuturesUnordered::new();
    let mut lost: Option<String> = None;
    loop {
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
                    (Command::Msg { reply, .. }, Some(reason)) => {
                        let _ = reply.send(Err(ClientError::Transport(reason.clone())));
                    }
                    (Command::Store { request, reply }, None) => {
                        let id = swarm.behaviour_mut().store.send_request(&peer, request);
                        pending.store.insert(id, reply);
                    }
                    (Command::Msg { request, reply }, None) => {
                        let id = swarm.behaviour_mut().msg.send_request(&peer, request);
                        pending.msg.insert(id, reply);
                    }
                }
            }
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
                        if let Some(reply) = pending.store.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        pending.fail(&request_id, lost.clone().unwrap_or_else(|| error.to_string()));
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(ClientBehaviourEvent::Msg(event)) => match event {
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    } => {
                        if let Some(reply) = pending.msg.remove(&request_id) {
                            let _ = reply.send(Ok(response));
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
                        pending.fail(&request_id, lost.clone().unwrap_or_else(|| error.to_string()));
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(ClientBehaviourEvent::Control(ControlReport {
                    event: ControlEvent::Dead { missed }, ..
                })) => {
                    lost = Some(format!("the relay stopped answering ({missed} pings missed)"));
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. }
                    if peer_id == peer =>
                {
                    let why = cause.map(|c| c.to_string()).unwrap_or_else(|| "closed".into());
                    let reason = lost
                        .clone()
                        .unwrap_or_else(|| format!("connection to the relay lost ({why})"));
                    pending.fail_all(&reason);
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
}
