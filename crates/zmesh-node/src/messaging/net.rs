//! What the message relay needs from the network: nearest-node lookups and `/zmesh/msg/1.0`
//! requests to other nodes and to connected clients. The node task owns the swarm; this handle
//! only sends it commands.

use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::mpsc;
use zmesh_types::Key256;
use zmesh_wire::msg::MsgMessage;

use crate::node::Command;
use crate::storage::{PeerAddrs, closest_peers, request_through};

#[derive(Debug, Clone)]
pub struct MsgNet {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) local: PeerId,
}

impl MsgNet {
    /// This node's peer id.
    pub fn local(&self) -> PeerId {
        self.local
    }

    /// The `count` nodes nearest `key`, this one included when it is among them.
    pub async fn closest(&self, key: Key256, count: usize) -> Result<Vec<PeerAddrs>, String> {
        let found = closest_peers(&self.commands, key, count).await?;
        Ok(found.into_iter().map(|(peer, _, addrs)| (peer, addrs)).collect())
    }

    /// Sends `message` to `peer` (a node, or a client on its open connection) and waits at most
    /// `timeout` for the answer.
    pub async fn request(
        &self,
        peer: PeerAddrs,
        message: MsgMessage,
        timeout: Duration,
    ) -> Result<MsgMessage, String> {
        let make = |reply| Command::MsgRequest {
            peer: peer.0,
            addrs: peer.1,
            message: Box::new(message),
            reply,
        };
        request_through(&self.commands, make, timeout).await
    }
}
