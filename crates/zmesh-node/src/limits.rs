//! Enforces [`zmesh_core::limits`] on the swarm: denies connections over a limit before any
//! protocol runs on them, and reports each denial so it shows in logs and metrics.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use std::time::{Duration, Instant};

use zmesh_core::limits::{ConnectionLimiter, LimitExceeded, LimitsConfig};
use zmesh_core::ratelimit::BanList;

/// Peers banned at once at most; beyond it the ban ending soonest is dropped.
const MAX_BANS: usize = 10_000;

/// A connection refused by a limit.
#[derive(Debug, Clone)]
pub struct LimitHit {
    pub peer: Option<PeerId>,
    pub remote: Option<Multiaddr>,
    pub limit: LimitExceeded,
}

#[derive(Debug)]
pub struct Behaviour {
    limiter: ConnectionLimiter<PeerId>,
    pending: HashSet<ConnectionId>,
    established: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    hits: VecDeque<LimitHit>,
    bans: BanList<PeerId>,
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl Behaviour {
    pub fn new(config: LimitsConfig) -> Self {
        Behaviour {
            limiter: ConnectionLimiter::new(config),
            pending: HashSet::new(),
            established: HashMap::new(),
            hits: VecDeque::new(),
            bans: BanList::new(MAX_BANS),
        }
    }

    /// Refuses every connection with `peer` for `duration` (the caller closes the open ones).
    pub fn ban(&mut self, peer: PeerId, duration: Duration) {
        self.bans.ban(peer, Instant::now(), duration);
    }

    /// How long `peer` stays banned, if it is.
    pub fn banned(&self, peer: &PeerId) -> Option<Duration> {
        self.bans.banned(peer, Instant::now())
    }

    pub fn established(&self) -> u32 {
        self.limiter.total()
    }

    pub fn pending(&self) -> u32 {
        self.limiter.pending()
    }

    fn deny(
        &mut self,
        peer: Option<PeerId>,
        remote: Option<&Multiaddr>,
        limit: LimitExceeded,
    ) -> ConnectionDenied {
        // Bounded: a flood of refused connections must not grow memory.
        if self.hits.len() < 1024 {
            self.hits.push_back(LimitHit { peer, remote: remote.cloned(), limit: limit.clone() });
        }
        ConnectionDenied::new(limit)
    }

    fn start_pending(
        &mut self,
        id: ConnectionId,
        remote: Option<&Multiaddr>,
    ) -> Result<(), ConnectionDenied> {
        match self.limiter.start_pending() {
            Ok(()) => {
                self.pending.insert(id);
                Ok(())
            }
            Err(limit) => Err(self.deny(None, remote, limit)),
        }
    }

    fn end_pending(&mut self, id: ConnectionId) {
        if self.pending.remove(&id) {
            self.limiter.end_pending();
        }
    }

    fn establish(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        remote: &Multiaddr,
        inbound_ip: Option<IpAddr>,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.end_pending(id);
        if let Some(left) = self.bans.banned(&peer, Instant::now()) {
            let limit = LimitExceeded::Banned { remaining_secs: left.as_secs().max(1) };
            return Err(self.deny(Some(peer), Some(remote), limit));
        }
        if let Err(limit) = self.limiter.check_established(&peer, inbound_ip) {
            return Err(self.deny(Some(peer), Some(remote), limit));
        }
        self.limiter.add_established(peer, inbound_ip);
        self.established.insert(id, (peer, inbound_ip));
        Ok(dummy::ConnectionHandler)
    }

    fn forget(&mut self, id: ConnectionId) {
        self.end_pending(id);
        if let Some((peer, ip)) = self.established.remove(&id) {
            self.limiter.remove_established(&peer, ip);
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = LimitHit;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.start_pending(id, Some(remote))
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.establish(id, peer, remote, ip_of(remote))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        _: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.start_pending(id, None)?;
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.establish(id, peer, addr, None)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(e) => self.forget(e.connection_id),
            FromSwarm::DialFailure(e) => self.forget(e.connection_id),
            FromSwarm::ListenFailure(e) => self.forget(e.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<LimitHit, THandlerInEvent<Self>>> {
        match self.hits.pop_front() {
            Some(hit) => Poll::Ready(ToSwarm::GenerateEvent(hit)),
            None => Poll::Pending,
        }
    }
}
