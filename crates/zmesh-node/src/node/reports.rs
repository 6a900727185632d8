//! JSON shapes of the node's API answers.

use serde::{Deserialize, Serialize};
use zmesh_types::{Key256, NodeId};

use crate::peers::{DeadPeer, PeerSource};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub name: String,
    pub peer_id: String,
    pub node_id: NodeId,
    pub version: String,
    pub protocol_versions: Vec<String>,
    pub capabilities: u32,
    pub capability_names: Vec<String>,
    pub listen_addrs: Vec<String>,
    pub api: String,
    pub peer_count: usize,
    pub connections: u32,
    pub routing_table_size: usize,
    pub uptime_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerReport {
    pub peer_id: String,
    pub node_id: NodeId,
    pub source: PeerSource,
    pub addrs: Vec<String>,
    pub connections: usize,
    pub version: Option<String>,
    /// Capabilities in effect on the connection: ours AND theirs.
    pub capabilities: u32,
    pub capability_names: Vec<String>,
    /// Smoothed keep-alive RTT in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Last RTT minus the time the peer held the PING, milliseconds.
    pub network_rtt_ms: Option<f64>,
    pub quality: Option<String>,
    pub connected_secs: u64,
    pub pex_private: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeersReport {
    pub peers: Vec<PeerReport>,
    /// Peers recently declared dead, newest first, with the reason.
    pub dead: Vec<DeadPeer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupPeer {
    pub peer_id: String,
    pub node_id: NodeId,
    pub distance: String,
    pub multiaddrs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupReport {
    pub key: Key256,
    /// The k closest nodes, closest first; this node is included when it is one of them.
    pub peers: Vec<LookupPeer>,
    pub rounds: u32,
    pub queried: u32,
    pub elapsed_ms: f64,
}
