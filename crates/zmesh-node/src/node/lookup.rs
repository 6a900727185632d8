//! Closest-peer lookups on the node: drives [`zmesh_core::lookup::Lookup`] over the
//! `/zmesh/dht/1.0` protocol, and answers other nodes' FIND_NODE from the routing table.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::request_response::{self, Message};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use zmesh_core::lookup::Lookup;
use zmesh_types::Key256;
use zmesh_types::constants::DHT_K;
use zmesh_wire::dht::DhtMessage;

use super::Node;
use super::pex::{parse_wire_peer, to_wire_peer};
use super::reports::{LookupPeer, LookupReport};
use crate::NodeError;
use crate::identity::node_id;
use crate::metrics::label;

/// The closest peers with their node ids and addresses.
pub type ClosestPeers = Vec<(PeerId, zmesh_types::NodeId, Vec<Multiaddr>)>;

/// Who waits for a lookup: the API (a report) or a node-internal flow (the peers themselves).
pub enum LookupReply {
    Report(oneshot::Sender<Result<LookupReport, NodeError>>),
    Peers(oneshot::Sender<Result<ClosestPeers, NodeError>>),
}

impl LookupReply {
    fn fail(self, e: NodeError) {
        match self {
            LookupReply::Report(tx) => {
                let _ = tx.send(Err(e));
            }
            LookupReply::Peers(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

pub(super) struct ActiveLookup {
    lookup: Lookup<PeerId>,
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    started: Instant,
    reply: LookupReply,
}

impl Node {
    /// Starts a lookup for the `size` nodes closest to `target`.
    pub(super) fn start_lookup(&mut self, target: Key256, size: usize, reply: LookupReply) {
        if self.swarm.behaviour().dht.as_ref().is_none() {
            reply.fail(NodeError::DhtDisabled);
            return;
        }
        let table = self.routing_table();
        let known = table.iter().map(|(p, id, _)| (*p, *id));
        let lookup = Lookup::with_size(target, size, (self.local_peer, self.local_node_id), known);
        let addrs = table.into_iter().map(|(p, _, a)| (p, a)).collect();
        let id = self.next_lookup_id;
        self.next_lookup_id += 1;
        self.lookups.insert(id, ActiveLookup { lookup, addrs, started: Instant::now(), reply });
        self.drive_lookup(id);
    }

    /// Sends the next round's requests, or finishes the lookup.
    fn drive_lookup(&mut self, id: u64) {
        let Some(active) = self.lookups.get_mut(&id) else { return };
        if let Some(batch) = active.lookup.next_round() {
            let target = active.lookup.target();
            // Peers this node saw die count as failed at once rather than after a dial timeout
            // (other nodes' routing tables still name them for a while).
            let (dead, alive): (Vec<PeerId>, Vec<PeerId>) =
                batch.into_iter().partition(|p| self.presumed_unreachable(p));
            let Some(active) = self.lookups.get_mut(&id) else { return };
            for peer in &dead {
                active.lookup.on_failure(peer);
            }
            if alive.is_empty() {
                return self.drive_lookup(id);
            }
            let requests: Vec<(PeerId, Vec<Multiaddr>)> = alive
                .into_iter()
                .map(|p| (p, active.addrs.get(&p).cloned().unwrap_or_default()))
                .collect();
            let Some(dht) = self.swarm.behaviour_mut().dht.as_mut() else { return };
            for (peer, addrs) in requests {
                let request_id =
                    dht.send_request_with_addresses(&peer, DhtMessage::FindNode { target }, addrs);
                self.lookup_requests.insert(request_id, (id, peer));
            }
            return;
        }
        if !active.lookup.is_finished() {
            return; // a round is in flight
        }
        let Some(active) = self.lookups.remove(&id) else { return };
        let elapsed = active.started.elapsed();
        let target = active.lookup.target();
        self.metrics.dht_lookups.get_or_create(&label("result", "ok")).inc();
        self.metrics.dht_lookup_rounds.observe(active.lookup.rounds().into());
        self.metrics.dht_lookup_seconds.observe(elapsed.as_secs_f64());
        let reply = match active.reply {
            LookupReply::Report(tx) => tx,
            LookupReply::Peers(tx) => {
                let own = self.listen_addrs();
                let peers = active
                    .lookup
                    .result()
                    .into_iter()
                    .map(|(p, id)| {
                        let addrs = if p == self.local_peer {
                            own.clone()
                        } else {
                            active.addrs.get(&p).cloned().unwrap_or_default()
                        };
                        (p, id, addrs)
                    })
                    .collect();
                let _ = tx.send(Ok(peers));
                return;
            }
        };
        let own_addrs = self.full_addrs();
        let peers = active
            .lookup
            .result()
            .into_iter()
            .map(|(peer, node)| LookupPeer {
                peer_id: peer.to_string(),
                node_id: node,
                distance: target.distance(&node).to_hex(),
                multiaddrs: if peer == self.local_peer {
                    own_addrs.clone()
                } else {
                    active.addrs.get(&peer).into_iter().flatten().map(|a| a.to_string()).collect()
                },
            })
            .collect();
        let report = LookupReport {
            key: target,
            peers,
            rounds: active.lookup.rounds(),
            queried: active.lookup.queried(),
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        };
        tracing::debug!(key = %target, rounds = report.rounds, queried = report.queried, "lookup finished");
        let _ = reply.send(Ok(report));
    }

    pub(super) fn on_dht_event(&mut self, event: request_response::Event<DhtMessage, DhtMessage>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request { .. } if !self.handshaken(&peer, "dht") => {}
                Message::Request { request: DhtMessage::FindNode { target }, channel, .. } => {
                    let peers = self.closest_known(&target, &peer);
                    if let Some(dht) = self.swarm.behaviour_mut().dht.as_mut() {
                        let _ = dht.send_response(channel, DhtMessage::Nodes { peers });
                    }
                }
                Message::Request { .. } => {
                    tracing::debug!(%peer, "DHT response sent as a request; ignored")
                }
                Message::Response { request_id, response } => {
                    let Some((id, from)) = self.lookup_requests.remove(&request_id) else { return };
                    let Some(active) = self.lookups.get_mut(&id) else { return };
                    match response {
                        DhtMessage::Nodes { peers } => {
                            let mut found = Vec::with_capacity(peers.len());
                            for wire in &peers {
                                if let Some((p, addrs)) = parse_wire_peer(wire) {
                                    active.addrs.entry(p).or_insert(addrs);
                                    found.push((p, node_id(&p)));
                                }
                            }
                            active.lookup.on_response(&from, found);
                        }
                        DhtMessage::FindNode { .. } => active.lookup.on_failure(&from),
                    }
                    self.drive_lookup(id);
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                tracing::debug!(%peer, "FIND_NODE failed: {error}");
                let Some((id, from)) = self.lookup_requests.remove(&request_id) else { return };
                if let Some(active) = self.lookups.get_mut(&id) {
                    active.lookup.on_failure(&from);
                }
                self.drive_lookup(id);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.on_inbound_failure("dht", peer, &error);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// The k peers of the routing table closest to `target`, without the requester.
    fn closest_known(&mut self, target: &Key256, requester: &PeerId) -> Vec<zmesh_wire::WirePeer> {
        let mut table = self.routing_table();
        table.retain(|(p, _, addrs)| p != requester && !addrs.is_empty());
        table.sort_by(|a, b| target.cmp_distance(&a.1, &b.1));
        table.iter().take(DHT_K).map(|(p, _, addrs)| to_wire_peer(p, addrs)).collect()
    }
}
