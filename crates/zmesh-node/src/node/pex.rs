//! Peer exchange on the node: answering requests under [`zmesh_core::pex`]'s rules and
//! verifying learned peers (dial + zmesh handshake) before they are used or shared.

use std::time::{Duration, Instant};

use libp2p::request_response::{self, Message};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use zmesh_core::pex::{PexCandidate, select_shareable};
use zmesh_types::Capabilities;
use zmesh_wire::WirePeer;
use zmesh_wire::pex::{PexMessage, PexPeer, PexStatus};

use super::{FEATURE_PEX_PRIVATE, Node};
use crate::clock::unix_ms;
use crate::metrics::label;
use crate::peers::MAX_PEX_CANDIDATES;

/// Parses a peer as another node described it; `None` unless the PeerId is an Ed25519 key
/// (so its node id is defined) and at least one address is a valid multiaddr.
pub(super) fn parse_wire_peer(peer: &WirePeer) -> Option<(PeerId, Vec<Multiaddr>)> {
    let id = PeerId::from_bytes(&peer.peer_id).ok()?;
    if !is_ed25519(&id) {
        return None;
    }
    let addrs: Vec<Multiaddr> = peer
        .addrs
        .iter()
        .filter_map(|bytes| Multiaddr::try_from(bytes.clone()).ok())
        .map(|a| strip_p2p(a, &id))
        .collect::<Option<_>>()?;
    (!addrs.is_empty()).then_some((id, addrs))
}

fn is_ed25519(peer: &PeerId) -> bool {
    let mh = peer.as_ref();
    mh.code() == 0x00
        && libp2p::identity::PublicKey::try_decode_protobuf(mh.digest())
            .is_ok_and(|k| k.key_type() == libp2p::identity::KeyType::Ed25519)
}

/// Removes a trailing `/p2p/<id>`; `None` if it names a different peer.
fn strip_p2p(mut addr: Multiaddr, id: &PeerId) -> Option<Multiaddr> {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) if p == *id => {
            addr.pop();
            Some(addr)
        }
        Some(libp2p::multiaddr::Protocol::P2p(_)) => None,
        _ => Some(addr),
    }
}

pub(super) fn to_wire_peer(peer: &PeerId, addrs: &[Multiaddr]) -> WirePeer {
    WirePeer {
        peer_id: peer.to_bytes(),
        addrs: addrs.iter().take(zmesh_wire::MAX_ADDRS).map(|a| a.to_vec()).collect(),
    }
}

impl Node {
    /// Asks `peer` for peers if PEX is on for both of us and we have not asked it recently.
    pub(super) fn request_pex(&mut self, peer: PeerId) {
        let Some(info) = self.peers.get(&peer) else { return };
        if !info.capabilities().contains(Capabilities::PEX) {
            return;
        }
        if !self.pex_out.try_acquire(peer, Instant::now()) {
            return;
        }
        let Some(pex) = self.swarm.behaviour_mut().pex.as_mut() else { return };
        pex.send_request(&peer, PexMessage::Request { request_id: rand::random() });
        self.metrics.pex_requests.get_or_create(&label("result", "sent")).inc();
    }

    pub(super) fn on_pex_event(&mut self, event: request_response::Event<PexMessage, PexMessage>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request { .. } if !self.handshaken(&peer, "pex") => {}
                Message::Request {
                    request: PexMessage::Request { request_id }, channel, ..
                } => {
                    let response = self.answer_pex(peer, request_id);
                    if let Some(pex) = self.swarm.behaviour_mut().pex.as_mut() {
                        let _ = pex.send_response(channel, response);
                    }
                }
                Message::Request { .. } => {
                    tracing::debug!(%peer, "PEX response sent as a request; ignored");
                }
                Message::Response { response, .. } => self.on_pex_response(peer, response),
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                self.metrics.pex_requests.get_or_create(&label("result", "failed")).inc();
                tracing::debug!(%peer, "PEX request failed: {error}");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.on_inbound_failure("pex", peer, &error);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer_pex(&mut self, requester: PeerId, request_id: u32) -> PexMessage {
        let now = Instant::now();
        if !self.pex_in.try_acquire(requester, now) {
            self.metrics.pex_requests.get_or_create(&label("result", "refused_rate_limit")).inc();
            tracing::debug!(%requester, "PEX request over the rate limit");
            return PexMessage::Response {
                request_id,
                status: PexStatus::RateLimited,
                peers: Vec::new(),
            };
        }
        let policy = self.config.pex_policy();
        let candidates = self.peers.active().map(|(peer, info)| PexCandidate {
            peer: *peer,
            connected_since: info.connected_since,
            last_seen: info.last_seen,
            private: info.negotiated().is_some_and(|n| n.remote_feature(FEATURE_PEX_PRIVATE)),
            verified: info.is_active(),
            dialable: !info.dialable_addrs().is_empty(),
        });
        let chosen = select_shareable(&policy, candidates, &requester, now);
        let wall = unix_ms();
        let peers = chosen
            .iter()
            .filter_map(|c| {
                let info = self.peers.get(&c.peer)?;
                Some(PexPeer {
                    peer: to_wire_peer(&c.peer, &info.dialable_addrs()),
                    capabilities: info.negotiated()?.remote_capabilities,
                    last_seen_ms: wall
                        .saturating_sub(now.duration_since(info.last_seen).as_millis() as u64),
                    latency_ms: info
                        .smoothed_rtt()
                        .map(|r| r.as_millis().min(u16::MAX as u128) as u16)
                        .unwrap_or(u16::MAX),
                })
            })
            .collect::<Vec<_>>();
        self.metrics.pex_requests.get_or_create(&label("result", "answered")).inc();
        tracing::debug!(%requester, shared = peers.len(), "answered PEX request");
        PexMessage::Response { request_id, status: PexStatus::Ok, peers }
    }

    fn on_pex_response(&mut self, from: PeerId, response: PexMessage) {
        let PexMessage::Response { status, peers, .. } = response else {
            tracing::debug!(%from, "PEX request sent as a response; ignored");
            return;
        };
        if status != PexStatus::Ok {
            tracing::debug!(%from, ?status, "PEX request not answered");
            return;
        }
        let mut dialled = 0;
        for entry in peers {
            let Some((peer, addrs)) = parse_wire_peer(&entry.peer) else {
                tracing::debug!(%from, "PEX entry with an invalid peer id or addresses; skipped");
                continue;
            };
            if peer == self.local_peer
                || self.peers.get(&peer).is_some()
                || self.peers.pex_candidates.contains_key(&peer)
                || self.peers.pex_candidates.len() >= MAX_PEX_CANDIDATES
            {
                continue;
            }
            // Verify before use: the dial authenticates the key, the handshake the protocol.
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if self.swarm.dial(opts).is_ok() {
                self.peers.pex_candidates.insert(peer, Instant::now());
                dialled += 1;
            }
        }
        if dialled > 0 {
            tracing::debug!(%from, dialled, "verifying peers learned through PEX");
        }
        // Candidates whose dial never resolved are dropped after a while.
        let stale = Duration::from_secs(60);
        self.peers.pex_candidates.retain(|_, since| since.elapsed() < stale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_peers_are_checked() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let wire = to_wire_peer(&peer, std::slice::from_ref(&addr));
        assert_eq!(parse_wire_peer(&wire), Some((peer, vec![addr.clone()])));

        let other = PeerId::random();
        let wrong_suffix = addr.clone().with(libp2p::multiaddr::Protocol::P2p(other));
        assert_eq!(parse_wire_peer(&to_wire_peer(&peer, &[wrong_suffix])), None);
        assert_eq!(parse_wire_peer(&to_wire_peer(&peer, &[])), None);
        let garbage = WirePeer { peer_id: vec![1, 2, 3], addrs: vec![addr.to_vec()] };
        assert_eq!(parse_wire_peer(&garbage), None);
        let bad_addr = WirePeer { peer_id: peer.to_bytes(), addrs: vec![vec![0xff, 0xff]] };
        assert_eq!(parse_wire_peer(&bad_addr), None);
    }
}
