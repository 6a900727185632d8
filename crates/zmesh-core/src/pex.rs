//! Peer-exchange policy (seed 001, "Peer Sharing Rules", "Privacy Considerations"): which known
//! peers may be shared, and how often a peer may ask.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use zmesh_types::constants::PEX_MAX_PEERS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PexPolicy {
    /// Most peers in one response (never above the protocol's 50).
    pub max_peers: usize,
    /// Only peers we have been connected to for at least this long are shared.
    pub min_uptime: Duration,
    /// Only peers heard from within this window are shared.
    pub max_silence: Duration,
    /// A peer may ask at most once per this interval.
    pub min_request_interval: Duration,
}

impl Default for PexPolicy {
    fn default() -> Self {
        PexPolicy {
            max_peers: PEX_MAX_PEERS,
            min_uptime: Duration::from_secs(600),
            max_silence: Duration::from_secs(3600),
            min_request_interval: Duration::from_secs(60),
        }
    }
}

/// What the policy needs to know about one known peer.
#[derive(Debug, Clone)]
pub struct PexCandidate<P> {
    pub peer: P,
    pub connected_since: Instant,
    pub last_seen: Instant,
    /// The peer asked not to be shared (HELLO feature `pex_private`).
    pub private: bool,
    /// The peer completed the zmesh handshake with us.
    pub verified: bool,
    /// We know at least one address others could dial.
    pub dialable: bool,
}

/// Filters and orders known peers for a response to `requester`: verified, dialable, not
/// private, up long enough, seen recently; most recently seen first; at most `max_peers`.
pub fn select_shareable<P: Eq>(
    policy: &PexPolicy,
    candidates: impl IntoIterator<Item = PexCandidate<P>>,
    requester: &P,
    now: Instant,
) -> Vec<PexCandidate<P>> {
    let mut out: Vec<PexCandidate<P>> = candidates
        .into_iter()
        .filter(|c| {
            c.verified
                && c.dialable
                && !c.private
                && c.peer != *requester
                && now.saturating_duration_since(c.connected_since) >= policy.min_uptime
                && now.saturating_duration_since(c.last_seen) <= policy.max_silence
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.last_seen));
    out.truncate(policy.max_peers.min(PEX_MAX_PEERS));
    out
}

/// At most one request per peer per interval; used for inbound requests (refuse) and for our
/// own outbound ones (do not ask).
#[derive(Debug)]
pub struct RequestLimiter<P> {
    interval: Duration,
    last: HashMap<P, Instant>,
}

impl<P: Hash + Eq> RequestLimiter<P> {
    pub fn new(interval: Duration) -> Self {
        RequestLimiter { interval, last: HashMap::new() }
    }

    /// Records a request from (or to) `peer` if allowed; `false` means over the limit.
    pub fn try_acquire(&mut self, peer: P, now: Instant) -> bool {
        if let Some(last) = self.last.get(&peer)
            && now.saturating_duration_since(*last) < self.interval
        {
            return false;
        }
        self.last.insert(peer, now);
        true
    }

    /// Forgets entries older than the interval so the map stays bounded by recent peers.
    pub fn prune(&mut self, now: Instant) {
        let interval = self.interval;
        self.last.retain(|_, t| now.saturating_duration_since(*t) < interval);
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(peer: u32, now: Instant) -> PexCandidate<u32> {
        PexCandidate {
            peer,
            connected_since: now - Duration::from_secs(3600),
            last_seen: now - Duration::from_secs(peer as u64),
            private: false,
            verified: true,
            dialable: true,
        }
    }

    #[test]
    fn filters_follow_the_sharing_rules() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let policy = PexPolicy::default();
        let mut young = candidate(1, now);
        young.connected_since = now - Duration::from_secs(599);
        let mut stale = candidate(2, now);
        stale.last_seen = now - Duration::from_secs(3601);
        let mut private = candidate(3, now);
        private.private = true;
        let mut unverified = candidate(4, now);
        unverified.verified = false;
        let mut undialable = candidate(5, now);
        undialable.dialable = false;
        let ok = candidate(6, now);
        let requester = candidate(7, now);
        let picked = select_shareable(
            &policy,
            [young, stale, private, unverified, undialable, ok, requester],
            &7,
            now,
        );
        assert_eq!(picked.iter().map(|c| c.peer).collect::<Vec<_>>(), vec![6]);
    }

    #[test]
    fn at_most_fifty_most_recent_first() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let picked =
            select_shareable(&PexPolicy::default(), (1..200).map(|p| candidate(p, now)), &0, now);
        assert_eq!(picked.len(), 50);
        assert_eq!(picked[0].peer, 1);
        assert_eq!(picked[49].peer, 50);
    }

    #[test]
    fn one_request_per_interval() {
        let t0 = Instant::now();
        let mut limiter = RequestLimiter::new(Duration::from_secs(60));
        assert!(limiter.try_acquire("a", t0));
        assert!(!limiter.try_acquire("a", t0 + Duration::from_secs(59)));
        assert!(limiter.try_acquire("b", t0 + Duration::from_secs(59)));
        assert!(limiter.try_acquire("a", t0 + Duration::from_secs(60)));
        limiter.prune(t0 + Duration::from_secs(200));
        assert!(limiter.is_empty());
    }
}
