//! A bare peer for hostile-input tests: it completes the zmesh handshake like any client, then
//! writes whatever bytes a test gives it on `/zmesh/msg/1.0` — well-formed frames it never
//! throttles itself, truncated or oversized frames, garbage — and records what its control
//! stream saw (PONGs, RTT, FLOW_CONTROL, death).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identity, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use zmesh_core::handshake::LocalOffer;
use zmesh_core::keepalive::KeepAliveConfig;
use zmesh_node::control::{self, ControlEvent, ControlReport};
use zmesh_types::Capabilities;
use zmesh_types::constants::SUPPORTED_VERSIONS;
use zmesh_wire::msg::MsgMessage;
use zmesh_wire::{Message, decode_frame, encode_frame};

pub const MSG_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/msg/1.0");
/// The most response bytes read back.
const MAX_RESPONSE: u64 = 32 << 20;

async fn read_to_end<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    io.take(MAX_RESPONSE).read_to_end(&mut out).await?;
    Ok(out)
}

/// Writes requests as given and reads responses to the end of the stream.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_to_end(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_to_end(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct RawBehaviour {
    control: Toggle<control::Behaviour>,
    msg: request_response::Behaviour<RawCodec>,
}

/// What the peer's control stream and connection reported.
#[derive(Debug, Clone, Default)]
pub struct RawStats {
    pub pongs: u64,
    pub max_rtt: Duration,
    pub dead: bool,
    pub flow_controls: u64,
    pub window_updates: u64,
    /// Why the connection closed, once it has.
    pub closed: Option<String>,
}

type Reply = oneshot::Sender<Result<Vec<u8>, String>>;

/// A connected bare peer; dropping it closes the connection.
pub struct RawPeer {
    commands: mpsc::Sender<(Vec<u8>, Reply)>,
    stats: Arc<Mutex<RawStats>>,
    pub relay: PeerId,
}

impl RawPeer {
    /// Connects to `addr` (ending in `/p2p/…`) as `key` and completes the handshake.
    pub async fn connect(
        addr: &Multiaddr,
        key: identity::Keypair,
        keepalive: KeepAliveConfig,
    ) -> Result<RawPeer, String> {
        Self::open(addr, key, Some(keepalive)).await
    }

    /// Connects without ever starting the zmesh handshake (no control stream).
    pub async fn connect_without_handshake(addr: &Multiaddr) -> Result<RawPeer, String> {
        Self::open(addr, identity::Keypair::generate_ed25519(), None).await
    }

    async fn open(
        addr: &Multiaddr,
        key: identity::Keypair,
        keepalive: Option<KeepAliveConfig>,
    ) -> Result<RawPeer, String> {
        let handshake_wanted = keepalive.is_some();
        let keepalive = keepalive.unwrap_or_default();
        let offer = LocalOffer {
            versions: SUPPORTED_VERSIONS.to_vec(),
            capabilities: Capabilities::empty(),
            features: vec![],
        };
        let control_config = control::ControlConfig {
            offer: Arc::new(offer),
            keepalive,
            handshake_timeout: Duration::from_secs(10),
        };
        let rr = request_response::Config::default()
            .with_request_timeout(Duration::from_secs(30))
            .with_max_concurrent_streams(10_000);
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| e.to_string())?
            .with_behaviour(|_| RawBehaviour {
                control: handshake_wanted.then(|| control::Behaviour::new(control_config)).into(),
                msg: request_response::Behaviour::new([(MSG_PROTOCOL, ProtocolSupport::Full)], rr),
            })
            .map_err(|e| e.to_string())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.dial(addr.clone()).map_err(|e| e.to_string())?;
        let waiting = async {
            if handshake_wanted { handshake(&mut swarm).await } else { connected(&mut swarm).await }
        };
        let relay = tokio::time::timeout(Duration::from_secs(15), waiting)
            .await
            .map_err(|_| "no handshake within 15 s".to_string())??;
        let stats = Arc::new(Mutex::new(RawStats::default()));
        let (commands, rx) = mpsc::channel(1024);
        tokio::spawn(drive(swarm, relay, rx, stats.clone()));
        Ok(RawPeer { commands, stats, relay })
    }

    /// Sends raw bytes as one request and returns the raw answer.
    pub async fn request(&self, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send((bytes, tx)).await.map_err(|_| "peer task ended".to_string())?;
        rx.await.map_err(|_| "peer task ended".to_string())?
    }

    /// Sends one well-formed message and decodes the answer.
    pub async fn msg(&self, message: &MsgMessage) -> Result<MsgMessage, String> {
        let answer = self.request(encode_frame(message)).await?;
        match decode_frame::<MsgMessage>(&answer) {
            Ok(Some((m, _))) => Ok(m),
            Ok(None) => Err(format!("a cut-short answer of {} bytes", answer.len())),
            Err(e) => Err(format!("an undecodable answer: {e}")),
        }
    }

    pub fn stats(&self) -> RawStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn handshake(swarm: &mut Swarm<RawBehaviour>) -> Result<PeerId, String> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
            SwarmEvent::ConnectionClosed { cause, .. } => {
                return Err(format!("closed during the handshake: {cause:?}"));
            }
            SwarmEvent::Behaviour(RawBehaviourEvent::Control(ControlReport {
                peer,
                event,
                ..
            })) => match event {
                ControlEvent::Negotiated(_) => return Ok(peer),
                ControlEvent::HandshakeFailed(r) | ControlEvent::Broken(r) => return Err(r),
                _ => {}
            },
            _ => {}
        }
    }
}

async fn connected(swarm: &mut Swarm<RawBehaviour>) -> Result<PeerId, String> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => return Ok(peer_id),
            SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
            _ => {}
        }
    }
}

async fn drive(
    mut swarm: Swarm<RawBehaviour>,
    relay: PeerId,
    mut commands: mpsc::Receiver<(Vec<u8>, Reply)>,
    stats: Arc<Mutex<RawStats>>,
) {
    let mut pending: std::collections::HashMap<OutboundRequestId, Reply> = Default::default();
    let record =
        |f: &mut dyn FnMut(&mut RawStats)| f(&mut stats.lock().unwrap_or_else(|p| p.into_inner()));
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some((bytes, reply)) = command else { break };
                let id = swarm.behaviour_mut().msg.send_request(&relay, bytes);
                pending.insert(id, reply);
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(RawBehaviourEvent::Msg(event)) => match event {
                    request_response::Event::Message { message, .. } => match message {
                        request_response::Message::Response { request_id, response } => {
                            if let Some(reply) = pending.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                        request_response::Message::Request { request, channel, .. } => {
                            // Pushes from the relay: take nothing, so it queues them offline.
                            let _ = request;
                            let refuse = MsgMessage::Delivered { upto: None, count: 0 };
                            let _ = swarm.behaviour_mut().msg.send_response(channel, encode_frame(&refuse));
                        }
                    },
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = pending.remove(&request_id) {
                            let _ = reply.send(Err(error.to_string()));
                        }
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(RawBehaviourEvent::Control(ControlReport { event, .. })) => match event {
                    ControlEvent::Rtt { sample, .. } => record(&mut |s| {
                        s.pongs += 1;
                        s.max_rtt = s.max_rtt.max(sample.rtt);
                    }),
                    ControlEvent::Dead { .. } => record(&mut |s| s.dead = true),
                    ControlEvent::FlowControl(_) => record(&mut |s| s.flow_controls += 1),
                    ControlEvent::WindowUpdate(_) => record(&mut |s| s.window_updates += 1),
                    _ => {}
                },
                SwarmEvent::ConnectionClosed { num_established: 0, cause, .. } => {
                    let why = cause.map(|c| c.to_string()).unwrap_or_else(|| "closed".into());
                    record(&mut |s| s.closed = Some(why.clone()));
                    for (_, reply) in pending.drain() {
                        let _ = reply.send(Err(format!("connection closed: {why}")));
                    }
                }
                _ => {}
            }
        }
    }
}

/// The encoded body length a frame prefix announces, for building malformed frames.
pub fn prefix(len: u32) -> Vec<u8> {
    len.to_be_bytes().to_vec()
}

/// The largest frame the messaging protocol allows.
pub const MAX_MSG_FRAME: usize = <MsgMessage as Message>::MAX_FRAME;
