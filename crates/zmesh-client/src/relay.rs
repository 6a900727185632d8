//! One connection to a relay: a small libp2p swarm (TCP or QUIC, Noise, Yamux) running the zmesh
//! handshake and `/zmesh/store/1.0` request-response, driven by a background task.
//!
//! The swarm uses a fresh transport key for every connection: the relay authenticates the user
//! by the signatures on requests, not by the connection, so there is no reason to link a user's
//! sessions at the transport layer. Requests are sent only after the relay's handshake completed,
//! as a relay serves storage to handshaken peers only.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
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
use zmesh_wire::store::StoreMessage;

use crate::{ClientError, Result};

/// The storage protocol.
pub const STORE_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/store/1.0");
/// How long one storage request may take: a relay codes and places 15 shards of up to 4 MiB.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long dialling and the handshake may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Anything that answers storage requests: a [`Relay`], or a fake in tests.
pub trait ChunkStore {
    /// Sends one request and waits for its answer.
    fn call(&self, request: StoreMessage) -> impl Future<Output = Result<StoreMessage>> + Send;
}

#[derive(NetworkBehaviour)]
struct ClientBehaviour {
    control: control::Behaviour,
    store: request_response::Behaviour<FrameCodec<StoreMessage>>,
}

struct Command {
    request: StoreMessage,
    reply: oneshot::Sender<Result<StoreMessage>>,
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
}

impl ChunkStore for Relay {
    fn call(&self, request: StoreMessage) -> impl Future<Output = Result<StoreMessage>> + Send {
        let commands = self.commands.clone();
        async move {
            let gone = || ClientError::Transport("the relay connection has ended".into());
            let (reply, answer) = oneshot::channel();
            commands.send(Command { request, reply }).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        }
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
                ControlEvent::Rtt { .. } => {}
            },
            _ => {}
        }
    }
}

/// Owns the swarm: sends requests from `commands`, routes answers back, and fails every request
/// once the connection is gone. Ends when the [`Relay`] (every clone) is dropped.
async fn drive(
    mut swarm: Swarm<ClientBehaviour>,
    peer: PeerId,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut pending: HashMap<OutboundRequestId, oneshot::Sender<Result<StoreMessage>>> =
        HashMap::new();
    let mut lost: Option<String> = None;
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(Command { request, reply }) = command else { break };
                match &lost {
                    Some(reason) => {
                        let _ = reply.send(Err(ClientError::Transport(reason.clone())));
                    }
                    None => {
                        let id = swarm.behaviour_mut().store.send_request(&peer, request);
                        pending.insert(id, reply);
                    }
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(ClientBehaviourEvent::Store(event)) => match event {
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    } => {
                        if let Some(reply) = pending.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = pending.remove(&request_id) {
                            let reason = lost.clone().unwrap_or_else(|| error.to_string());
                            let _ = reply.send(Err(ClientError::Transport(reason)));
                        }
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
                    for (_, reply) in pending.drain() {
                        let _ = reply.send(Err(ClientError::Transport(reason.clone())));
                    }
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
