//! Storage on a node: the holder (shards kept for owners) and the relay (client requests turned
//! into placement, erasure coding and shard requests to holders).

pub mod custody;
pub mod holder;
pub mod relay;
pub mod repair;

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use zmesh_types::{Key256, NodeId};
use zmesh_wire::store::StoreMessage;

use crate::node::Command;
pub use holder::{Holder, StorageReport};

/// A peer with the addresses to reach it.
pub type PeerAddrs = (PeerId, Vec<Multiaddr>);

/// What relay flows need from the network: closest-peer lookups and storage requests. Requests
/// to the local node go straight to its holder.
#[derive(Debug, Clone)]
pub struct StorageNet {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) local: PeerId,
    pub(crate) holder: Arc<Holder>,
}

/// The `count` nodes nearest `key` (this one included), by a lookup on the node task.
pub(crate) async fn closest_peers(
    commands: &mpsc::Sender<Command>,
    key: Key256,
    count: usize,
) -> Result<Vec<(PeerId, NodeId, Vec<Multiaddr>)>, String> {
    let (tx, rx) = oneshot::channel();
    commands
        .send(Command::ClosestPeers(key, count, tx))
        .await
        .map_err(|_| "node stopped".to_string())?;
    rx.await.map_err(|_| "node stopped".to_string())?.map_err(|e| e.to_string())
}

impl StorageNet {
    pub async fn closest(
        &self,
        key: Key256,
        count: usize,
    ) -> Result<Vec<(PeerId, NodeId, Vec<Multiaddr>)>, String> {
        closest_peers(&self.commands, key, count).await
    }

    pub async fn request(
        &self,
        peer: PeerAddrs,
        message: StoreMessage,
        timeout: Duration,
    ) -> Result<StoreMessage, String> {
        if peer.0 == self.local {
            let holder = self.holder.clone();
            let local = self.local;
            return tokio::task::spawn_blocking(move || holder.handle(&local, message))
                .await
                .map_err(|e| format!("local holder: {e}"));
        }
        let make = |reply| Command::StoreRequest {
            peer: peer.0,
            addrs: peer.1,
            message: Box::new(message),
            reply,
        };
        request_through(&self.commands, make, timeout).await
    }
}

/// Has the node task send a request to a peer (`make` builds the command around the reply
/// channel) and waits at most `timeout` for its answer.
pub(crate) async fn request_through<T>(
    commands: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
    timeout: Duration,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    commands.send(make(tx)).await.map_err(|_| "node stopped".to_string())?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err("node stopped".into()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
