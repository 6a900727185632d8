//! The control protocol `/zmesh/hello/1.0`: one stream per connection, opened by the dialer,
//! carrying HELLO / HELLO_ACK and then PING / PONG both ways for as long as the connection lives.
//! The protocol decisions are [`zmesh_core::handshake`] and [`zmesh_core::keepalive`]; this module
//! only moves their frames and timers. A failed handshake, a dead peer or a malformed frame
//! closes the connection, with the reason reported to the node and logged there.
//!
//! The same stream carries flow control: FLOW_CONTROL and WINDOW_UPDATE frames from the peer
//! are reported as events, and [`Behaviour::send_flow`] writes ours. They share the stream with
//! PING / PONG, so they are never queued behind user traffic.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, SinkExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    FromSwarm, NetworkBehaviour, NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, Stream, StreamProtocol};
use zmesh_core::handshake::{HandshakeError, LocalOffer, Negotiated};
use zmesh_core::keepalive::{KeepAlive, KeepAliveAction, KeepAliveConfig, Quality, RttSample};
use zmesh_wire::control::{ControlFrame, FlowControl};

use crate::clock::unix_ms as wall_ms;
use crate::framing::{FrameError, read_frame, write_frame};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/hello/1.0");

/// What a connection's control stream reports.
#[derive(Debug, Clone)]
pub enum ControlEvent {
    Negotiated(Negotiated),
    HandshakeFailed(String),
    Rtt {
        sample: RttSample,
        smoothed: Duration,
        quality: Quality,
    },
    Dead {
        missed: u32,
    },
    /// The control stream broke: malformed frame, unexpected message, or stream closed.
    Broken(String),
    /// The peer's FLOW_CONTROL: slow down, pause, or use a new window.
    FlowControl(FlowControl),
    /// The peer's WINDOW_UPDATE: its consumed total.
    WindowUpdate(u32),
}

impl ControlEvent {
    /// Whether the connection must be closed after this event.
    fn closes_connection(&self) -> bool {
        !matches!(
            self,
            ControlEvent::Negotiated(_)
                | ControlEvent::Rtt { .. }
                | ControlEvent::FlowControl(_)
                | ControlEvent::WindowUpdate(_)
        )
    }
}

#[derive(Debug)]
pub struct ControlReport {
    pub peer: PeerId,
    pub connection: ConnectionId,
    pub event: ControlEvent,
}

#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub offer: Arc<LocalOffer>,
    pub keepalive: KeepAliveConfig,
    pub handshake_timeout: Duration,
}

/// A flow-control frame for a connection's control stream.
#[derive(Debug, Clone)]
pub struct FlowFrame(ControlFrame);

#[derive(Debug)]
pub struct Behaviour {
    config: ControlConfig,
    pending: VecDeque<ToSwarm<ControlReport, FlowFrame>>,
}

impl Behaviour {
    pub fn new(config: ControlConfig) -> Self {
        Behaviour { config, pending: VecDeque::new() }
    }

    /// Sends FLOW_CONTROL on one connection's control stream.
    pub fn send_flow(&mut self, peer: PeerId, connection: ConnectionId, frame: FlowControl) {
        self.notify(peer, connection, ControlFrame::FlowControl(frame));
    }

    /// Sends WINDOW_UPDATE on one connection's control stream.
    pub fn send_window_update(&mut self, peer: PeerId, connection: ConnectionId, consumed: u32) {
        self.notify(peer, connection, ControlFrame::WindowUpdate { consumed });
    }

    fn notify(&mut self, peer: PeerId, connection: ConnectionId, frame: ControlFrame) {
        self.pending.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: FlowFrame(frame),
        });
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = ControlReport;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(self.config.clone(), Role::Server))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        role_override: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let role = if role_override == Endpoint::Dialer { Role::Client } else { Role::Server };
        Ok(Handler::new(self.config.clone(), role))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        if event.closes_connection() {
            self.pending.push_back(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::One(connection),
            });
        }
        self.pending.push_back(ToSwarm::GenerateEvent(ControlReport { peer, connection, event }));
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<ControlReport, THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

pub struct Handler {
    config: ControlConfig,
    role: Role,
    requested_stream: bool,
    task: Option<BoxFuture<'static, ()>>,
    events_tx: mpsc::Sender<ControlEvent>,
    events_rx: mpsc::Receiver<ControlEvent>,
    /// Flow-control frames for the stream task; taken by it when the stream starts. Frames
    /// beyond its capacity are dropped: a newer signal supersedes an older one anyway.
    outgoing_tx: mpsc::Sender<ControlFrame>,
    outgoing_rx: Option<mpsc::Receiver<ControlFrame>>,
    /// Until a control stream exists: the handshake must start before this fires.
    stream_deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    failed: bool,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").field("role", &self.role).finish_non_exhaustive()
    }
}

impl Handler {
    fn new(config: ControlConfig, role: Role) -> Self {
        let (events_tx, events_rx) = mpsc::channel(16);
        let (outgoing_tx, outgoing_rx) = mpsc::channel(16);
        let deadline = Box::pin(tokio::time::sleep(config.handshake_timeout));
        Handler {
            config,
            role,
            requested_stream: false,
            task: None,
            events_tx,
            events_rx,
            outgoing_tx,
            outgoing_rx: Some(outgoing_rx),
            stream_deadline: Some(deadline),
            failed: false,
        }
    }

    fn start(&mut self, stream: Stream) {
        let Some(outgoing) = self.outgoing_rx.take() else {
            // One control stream per connection; a second one is dropped unread.
            return;
        };
        self.stream_deadline = None;
        let fut = run(stream, self.role, self.config.clone(), self.events_tx.clone(), outgoing);
        self.task = Some(fut.boxed());
    }

    fn fail(&mut self, reason: String) {
        if !self.failed {
            self.failed = true;
            self.stream_deadline = None;
            let _ = self.events_tx.try_send(ControlEvent::HandshakeFailed(reason));
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = FlowFrame;
    type ToBehaviour = ControlEvent;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
    }

    fn connection_keep_alive(&self) -> bool {
        // The control stream keeps the connection open until keep-alive declares it dead.
        !self.failed
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), ControlEvent>> {
        if self.role == Role::Client && !self.requested_stream {
            self.requested_stream = true;
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
                    .with_timeout(self.config.handshake_timeout),
            });
        }
        if let Some(deadline) = self.stream_deadline.as_mut()
            && deadline.poll_unpin(cx).is_ready()
        {
            let timeout = self.config.handshake_timeout;
            self.fail(format!("no zmesh handshake within {timeout:?}"));
        }
        if let Some(task) = self.task.as_mut()
            && task.poll_unpin(cx).is_ready()
        {
            self.task = None;
        }
        if let Poll::Ready(Some(event)) = self.events_rx.poll_next_unpin(cx) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, FlowFrame(frame): Self::FromBehaviour) {
        let _ = self.outgoing_tx.try_send(frame);
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            // Only the dialer opens the control stream; an inbound one on its side is ignored.
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            }) if self.role == Role::Server => self.start(stream),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) => self.start(stream),
            ConnectionEvent::DialUpgradeError(e) => {
                self.fail(format!(
                    "could not open the zmesh control stream {PROTOCOL}: {}",
                    e.error
                ));
            }
            _ => {}
        }
    }
}

async fn run(
    mut stream: Stream,
    role: Role,
    config: ControlConfig,
    mut events: mpsc::Sender<ControlEvent>,
    outgoing: mpsc::Receiver<ControlFrame>,
) {
    let handshake = tokio::time::timeout(config.handshake_timeout, async {
        match role {
            Role::Client => client_handshake(&mut stream, &config.offer).await,
            Role::Server => server_handshake(&mut stream, &config.offer).await,
        }
    })
    .await;
    let negotiated = match handshake {
        Ok(Ok(n)) => n,
        Ok(Err(reason)) => {
            let _ = events.send(ControlEvent::HandshakeFailed(reason)).await;
            return;
        }
        Err(_) => {
            let timeout = config.handshake_timeout;
            let reason = format!("handshake did not complete within {timeout:?}");
            let _ = events.send(ControlEvent::HandshakeFailed(reason)).await;
            return;
        }
    };
    if events.send(ControlEvent::Negotiated(negotiated)).await.is_err() {
        return;
    }
    let reason = keepalive(stream, config.keepalive, &mut events, outgoing).await;
    let _ = events.send(reason).await;
}

async fn client_handshake(stream: &mut Stream, offer: &LocalOffer) -> Result<Negotiated, String> {
    write_frame(stream, &ControlFrame::Hello(offer.hello())).await.map_err(|e| e.to_string())?;
    match read_frame::<ControlFrame, _>(stream).await {
        Ok(ControlFrame::HelloAck(ack)) => offer.accept(&ack).map_err(|e| e.to_string()),
        Ok(other) => Err(format!("expected HELLO_ACK, got {}", frame_name(&other))),
        Err(e) => Err(format!("reading HELLO_ACK: {e}")),
    }
}

async fn server_handshake(stream: &mut Stream, offer: &LocalOffer) -> Result<Negotiated, String> {
    let hello = match read_frame::<ControlFrame, _>(stream).await {
        Ok(ControlFrame::Hello(hello)) => hello,
        Ok(other) => return Err(format!("expected HELLO, got {}", frame_name(&other))),
        Err(e) => return Err(format!("reading HELLO: {e}")),
    };
    let (ack, result) = offer.answer(&hello);
    write_frame(stream, &ControlFrame::HelloAck(ack)).await.map_err(|e| e.to_string())?;
    if result.is_err() {
        // Let the refusal reach the client before the connection closes: half-close, then give
        // the client a moment to read it and close its side.
        let _ = stream.close().await;
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    result.map_err(|e: HandshakeError| e.to_string())
}

fn frame_name(frame: &ControlFrame) -> &'static str {
    match frame {
        ControlFrame::Hello(_) => "HELLO",
        ControlFrame::HelloAck(_) => "HELLO_ACK",
        ControlFrame::Ping(_) => "PING",
        ControlFrame::Pong(_) => "PONG",
        ControlFrame::FlowControl(_) => "FLOW_CONTROL",
        ControlFrame::WindowUpdate { .. } => "WINDOW_UPDATE",
    }
}

/// Runs PING / PONG until the peer is dead or the stream breaks; returns the event that says why.
async fn keepalive(
    stream: Stream,
    config: KeepAliveConfig,
    events: &mut mpsc::Sender<ControlEvent>,
    mut outgoing: mpsc::Receiver<ControlFrame>,
) -> ControlEvent {
    let (reader, mut writer) = stream.split();
    // Reading lives in its own stream so a timer firing never drops a half-read frame.
    let mut frames = futures::stream::unfold(reader, |mut r| async move {
        let frame = read_frame::<ControlFrame, _>(&mut r).await;
        Some(((frame, Instant::now()), r))
    })
    .boxed();
    let mut ka = KeepAlive::new(config, Instant::now(), rand::random());
    loop {
        let wake = tokio::time::Instant::from_std(ka.poll_timeout());
        tokio::select! {
            next = frames.next() => {
                let Some((frame, received_at)) = next else {
                    return ControlEvent::Broken("control stream ended".into());
                };
                match frame {
                    Ok(ControlFrame::Ping(ping)) => {
                        let pong = KeepAlive::answer(&ping, wall_ms(), received_at.elapsed());
                        if let Err(e) = write_frame(&mut writer, &ControlFrame::Pong(pong)).await {
                            return ControlEvent::Broken(format!("writing PONG: {e}"));
                        }
                    }
                    Ok(ControlFrame::Pong(pong)) => match ka.handle_pong(received_at, &pong) {
                        Ok(sample) => {
                            let smoothed = ka.smoothed_rtt().unwrap_or(sample.rtt);
                            let quality = Quality::from_rtt(smoothed);
                            let _ = events.send(ControlEvent::Rtt { sample, smoothed, quality }).await;
                        }
                        Err(e) => tracing::debug!("ignoring PONG: {e}"),
                    },
                    Ok(ControlFrame::FlowControl(flow)) => {
                        let _ = events.send(ControlEvent::FlowControl(flow)).await;
                    }
                    Ok(ControlFrame::WindowUpdate { consumed }) => {
                        let _ = events.send(ControlEvent::WindowUpdate(consumed)).await;
                    }
                    Ok(other) => {
                        return ControlEvent::Broken(format!("unexpected {} after the handshake", frame_name(&other)));
                    }
                    Err(FrameError::Wire(e)) if e.is_unknown_type() => {
                        tracing::debug!("ignoring control frame: {e}");
                    }
                    Err(FrameError::Closed) => return ControlEvent::Broken("control stream closed by the peer".into()),
                    Err(e) => return ControlEvent::Broken(format!("control stream: {e}")),
                }
            }
            Some(frame) = outgoing.next() => {
                if let Err(e) = write_frame(&mut writer, &frame).await {
                    return ControlEvent::Broken(format!("writing {}: {e}", frame_name(&frame)));
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                match ka.handle_timeout(Instant::now(), wall_ms()) {
                    Some(KeepAliveAction::SendPing(ping)) => {
                        if let Err(e) = write_frame(&mut writer, &ControlFrame::Ping(ping)).await {
                            return ControlEvent::Broken(format!("writing PING: {e}"));
                        }
                    }
                    Some(KeepAliveAction::Dead { missed }) => return ControlEvent::Dead { missed },
                    None => {}
                }
            }
        }
    }
}
