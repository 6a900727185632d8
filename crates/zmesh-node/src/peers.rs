//! What the node knows about its peers: connections, their handshake results and RTTs, and
//! the addresses peers listen on. A peer is *active* while at least one of its connections has
//! completed the zmesh handshake.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use zmesh_core::handshake::Negotiated;
use zmesh_core::keepalive::{Quality, RttSample};
use zmesh_types::{Capabilities, NodeId};

use crate::clock::unix_ms;
use crate::identity::node_id;

/// How the node first came to know a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerSource {
    Bootstrap,
    Inbound,
    Dht,
    Pex,
}

#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Multiaddr,
    pub inbound: bool,
    pub negotiated: Option<Negotiated>,
    pub last_rtt: Option<RttSample>,
    pub smoothed_rtt: Option<Duration>,
    pub quality: Option<Quality>,
}

#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub node_id: NodeId,
    pub connections: HashMap<ConnectionId, ConnInfo>,
    /// Addresses the peer says it listens on (identify).
    pub listen_addrs: Vec<Multiaddr>,
    pub connected_since: Instant,
    pub last_seen: Instant,
    pub source: PeerSource,
}

impl PeerInfo {
    /// The negotiation of the peer's first handshaken connection.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.connections.values().find_map(|c| c.negotiated.as_ref())
    }

    pub fn is_active(&self) -> bool {
        self.negotiated().is_some()
    }

    pub fn capabilities(&self) -> Capabilities {
        self.negotiated().map(|n| n.capabilities).unwrap_or(Capabilities::empty())
    }

    /// Best (lowest) smoothed RTT over the peer's connections.
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.connections.values().filter_map(|c| c.smoothed_rtt).min()
    }

    pub fn last_rtt(&self) -> Option<RttSample> {
        self.connections.values().filter_map(|c| c.last_rtt).min_by_key(|s| s.rtt)
    }

    /// Addresses others could dial: what the peer listens on, else where an outbound
    /// connection reached it.
    pub fn dialable_addrs(&self) -> Vec<Multiaddr> {
        if !self.listen_addrs.is_empty() {
            return self.listen_addrs.clone();
        }
        self.connections.values().filter(|c| !c.inbound).map(|c| c.remote.clone()).collect()
    }
}

/// A peer recently declared dead, kept briefly so operators and tests can see why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadPeer {
    pub peer_id: String,
    pub node_id: NodeId,
    pub reason: String,
    pub at_unix_ms: u64,
}

/// Recent deaths kept for the API.
const DEAD_HISTORY: usize = 256;
/// PEX-learned peers awaiting verification, at most.
pub const MAX_PEX_CANDIDATES: usize = 256;

#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerId, PeerInfo>,
    dead: VecDeque<DeadPeer>,
    /// Peers learned through PEX, dialled, not yet verified by a handshake.
    pub pex_candidates: HashMap<PeerId, Instant>,
    /// Peers whose last connection dropped, dialled once to tell a broken connection from a
    /// death: why it dropped, and since when.
    pub probing: HashMap<PeerId, (String, Instant)>,
    /// Peers declared dead and not connected since, with when: requests to them fail at once
    /// instead of waiting for a dial to time out.
    dead_since: HashMap<PeerId, Instant>,
}

/// How long a dead peer is presumed dead without news of it.
const PRESUMED_DEAD: Duration = Duration::from_secs(600);

impl PeerTable {
    pub fn get(&self, peer: &PeerId) -> Option<&PeerInfo> {
        self.peers.get(peer)
    }

    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut PeerInfo> {
        self.peers.get_mut(peer)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.peers.iter()
    }

    pub fn active(&self) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.peers.iter().filter(|(_, p)| p.is_active())
    }

    pub fn active_count(&self) -> usize {
        self.active().count()
    }

    pub fn connection_opened(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        remote: Multiaddr,
        inbound: bool,
        now: Instant,
    ) {
        self.dead_since.remove(&peer);
        let source = if self.pex_candidates.contains_key(&peer) {
            PeerSource::Pex
        } else if inbound {
            PeerSource::Inbound
        } else {
            PeerSource::Dht
        };
        let info = self.peers.entry(peer).or_insert_with(|| PeerInfo {
            node_id: node_id(&peer),
            connections: HashMap::new(),
            listen_addrs: Vec::new(),
            connected_since: now,
            last_seen: now,
            source,
        });
        info.connections.insert(
            id,
            ConnInfo {
                remote,
                inbound,
                negotiated: None,
                last_rtt: None,
                smoothed_rtt: None,
                quality: None,
            },
        );
    }

    /// Forgets a connection. If it was the peer's last one, forgets the peer and returns its
    /// info as it was before the close (that connection included), so callers can still ask
    /// whether it was active and where it listened.
    pub fn connection_closed(&mut self, peer: &PeerId, id: ConnectionId) -> Option<PeerInfo> {
        let info = self.peers.get_mut(peer)?;
        if info.connections.len() == 1 && info.connections.contains_key(&id) {
            return self.peers.remove(peer);
        }
        info.connections.remove(&id);
        None
    }

    pub fn connection_mut(&mut self, peer: &PeerId, id: ConnectionId) -> Option<&mut ConnInfo> {
        self.peers.get_mut(peer)?.connections.get_mut(&id)
    }

    /// Whether `peer` was declared dead (within the last ten minutes) and has not connected since.
    pub fn is_presumed_dead(&self, peer: &PeerId) -> bool {
        self.dead_since.get(peer).is_some_and(|t| t.elapsed() < PRESUMED_DEAD)
    }

    pub fn mark_dead(&mut self, peer: &PeerId, reason: String) {
        let now = Instant::now();
        self.dead_since.retain(|_, t| now.duration_since(*t) < PRESUMED_DEAD);
        self.dead_since.insert(*peer, now);
        if self.dead.len() >= DEAD_HISTORY {
            self.dead.pop_front();
        }
        self.dead.push_back(DeadPeer {
            peer_id: peer.to_string(),
            node_id: node_id(peer),
            reason,
            at_unix_ms: unix_ms(),
        });
    }

    pub fn recently_dead(&self) -> impl Iterator<Item = &DeadPeer> {
        self.dead.iter().rev()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_the_last_connection_returns_the_peer_as_it_was() {
        let mut table = PeerTable::default();
        let peer = PeerId::random();
        let now = Instant::now();
        let (a, b) = (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2));
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        table.connection_opened(peer, a, addr.clone(), true, now);
        table.connection_opened(peer, b, addr, false, now);
        table.connection_mut(&peer, a).unwrap().negotiated = Some(Negotiated {
            version: zmesh_types::ProtocolVersion::new(1, 0),
            capabilities: Capabilities::DHT,
            remote_capabilities: Capabilities::DHT,
            remote_features: vec![],
        });
        assert!(table.connection_closed(&peer, b).is_none());
        let last = table.connection_closed(&peer, a).expect("last connection");
        assert!(last.is_active());
        assert!(table.get(&peer).is_none());
        assert!(table.connection_closed(&peer, a).is_none());
    }
}
