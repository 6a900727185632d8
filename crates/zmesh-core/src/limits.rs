//! Connection limits (seed 001, "Connection Limits"): per peer, total, per remote IP and
//! pending. Generic over the peer key so it needs no networking types.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    pub max_per_peer: u32,
    pub max_total: u32,
    pub max_per_ip: u32,
    pub max_pending: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { max_per_peer: 3, max_total: 200, max_per_ip: 5, max_pending: 20 }
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("peer already has {limit} connections (limits.max_per_peer)")]
    PerPeer { limit: u32 },
    #[error("{limit} connections are open in total (limits.max_total)")]
    Total { limit: u32 },
    #[error("{ip} already has {limit} inbound connections (limits.max_per_ip)")]
    PerIp { ip: IpAddr, limit: u32 },
    #[error("{limit} connections are still being set up (limits.max_pending)")]
    Pending { limit: u32 },
    #[error("peer is banned for {remaining_secs} s more (it kept ignoring rate limits)")]
    Banned { remaining_secs: u64 },
}

impl LimitExceeded {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LimitExceeded::PerPeer { .. } => "per_peer",
            LimitExceeded::Total { .. } => "total",
            LimitExceeded::PerIp { .. } => "per_ip",
            LimitExceeded::Pending { .. } => "pending",
            LimitExceeded::Banned { .. } => "banned",
        }
    }
}

/// Counts connections and decides whether another may be opened. The per-IP limit applies to
/// inbound connections only: it protects a node from one address flooding it, while a node's own
/// outbound dials to several peers behind one address are its own choice.
#[derive(Debug)]
pub struct ConnectionLimiter<P> {
    config: LimitsConfig,
    per_peer: HashMap<P, u32>,
    per_ip: HashMap<IpAddr, u32>,
    total: u32,
    pending: u32,
}

impl<P: Hash + Eq + Clone> ConnectionLimiter<P> {
    pub fn new(config: LimitsConfig) -> Self {
        ConnectionLimiter {
            config,
            per_peer: HashMap::new(),
            per_ip: HashMap::new(),
            total: 0,
            pending: 0,
        }
    }

    /// A connection starts its setup (transport + security handshake).
    pub fn start_pending(&mut self) -> Result<(), LimitExceeded> {
        if self.pending >= self.config.max_pending {
            return Err(LimitExceeded::Pending { limit: self.config.max_pending });
        }
        self.pending += 1;
        Ok(())
    }

    /// A pending connection finished setting up or failed; call once per `start_pending`.
    pub fn end_pending(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// Checks whether an authenticated connection may be kept, without recording it.
    pub fn check_established(
        &self,
        peer: &P,
        inbound_ip: Option<IpAddr>,
    ) -> Result<(), LimitExceeded> {
        if self.total >= self.config.max_total {
            return Err(LimitExceeded::Total { limit: self.config.max_total });
        }
        if self.per_peer.get(peer).copied().unwrap_or(0) >= self.config.max_per_peer {
            return Err(LimitExceeded::PerPeer { limit: self.config.max_per_peer });
        }
        if let Some(ip) = inbound_ip
            && self.per_ip.get(&ip).copied().unwrap_or(0) >= self.config.max_per_ip
        {
            return Err(LimitExceeded::PerIp { ip, limit: self.config.max_per_ip });
        }
        Ok(())
    }

    /// Records an established connection (after [`Self::check_established`] allowed it).
    pub fn add_established(&mut self, peer: P, inbound_ip: Option<IpAddr>) {
        self.total += 1;
        *self.per_peer.entry(peer).or_default() += 1;
        if let Some(ip) = inbound_ip {
            *self.per_ip.entry(ip).or_default() += 1;
        }
    }

    /// Forgets an established connection.
    pub fn remove_established(&mut self, peer: &P, inbound_ip: Option<IpAddr>) {
        self.total = self.total.saturating_sub(1);
        decrement(&mut self.per_peer, peer);
        if let Some(ip) = inbound_ip {
            decrement(&mut self.per_ip, &ip);
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }
    pub fn pending(&self) -> u32 {
        self.pending
    }
}

fn decrement<K: Hash + Eq>(map: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn per_peer_limit() {
        let mut l = ConnectionLimiter::new(LimitsConfig::default());
        for _ in 0..3 {
            l.check_established(&"a", None).unwrap();
            l.add_established("a", None);
        }
        assert_eq!(l.check_established(&"a", None), Err(LimitExceeded::PerPeer { limit: 3 }));
        l.check_established(&"b", None).unwrap();
        l.remove_established(&"a", None);
        l.check_established(&"a", None).unwrap();
    }

    #[test]
    fn per_ip_limit_counts_inbound_only() {
        let mut l = ConnectionLimiter::new(LimitsConfig::default());
        for peer in 0..5 {
            l.check_established(&peer, ip(1)).unwrap();
            l.add_established(peer, ip(1));
        }
        assert!(matches!(l.check_established(&9, ip(1)), Err(LimitExceeded::PerIp { .. })));
        l.check_established(&9, ip(2)).unwrap();
        l.check_established(&9, None).unwrap();
    }

    #[test]
    fn total_limit() {
        let config = LimitsConfig { max_total: 4, ..LimitsConfig::default() };
        let mut l = ConnectionLimiter::new(config);
        for peer in 0..4 {
            l.add_established(peer, ip(peer as u8));
        }
        assert_eq!(l.check_established(&10, ip(10)), Err(LimitExceeded::Total { limit: 4 }));
        l.remove_established(&0, ip(0));
        assert_eq!(l.total(), 3);
        l.check_established(&10, ip(10)).unwrap();
    }

    #[test]
    fn pending_limit() {
        let mut l: ConnectionLimiter<u8> =
            ConnectionLimiter::new(LimitsConfig { max_pending: 2, ..LimitsConfig::default() });
        l.start_pending().unwrap();
        l.start_pending().unwrap();
        assert_eq!(l.start_pending(), Err(LimitExceeded::Pending { limit: 2 }));
        l.end_pending();
        l.start_pending().unwrap();
        assert_eq!(l.pending(), 2);
    }
}
