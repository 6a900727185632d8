//! A relay's short memory of where things are: the nodes nearest a mailbox or record key, and
//! the relay a recipient was last seen at. Every send would otherwise pay a DHT lookup (several
//! milliseconds) before its first byte moves. Entries live `ttl` at most, a presence no longer
//! than its record, and a failure drops the entry at once, so a stale route costs one failed
//! request, never a lost message (the relay falls back to the mailbox).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use zmesh_types::Key256;

use crate::storage::PeerAddrs;

/// Entries kept per map; beyond it, expired ones go first and then everything, so a flood of
/// one-off recipients costs lookups, not memory.
pub const MAX_ROUTES: usize = 100_000;

#[derive(Debug)]
pub struct RouteCache {
    ttl: Duration,
    nearest: HashMap<(Key256, usize), (Vec<PeerAddrs>, Instant)>,
    presence: HashMap<[u8; 32], (PeerAddrs, Instant)>,
}

fn make_room<K, V>(map: &mut HashMap<K, (V, Instant)>, now: Instant) {
    if map.len() >= MAX_ROUTES {
        map.retain(|_, (_, until)| *until > now);
    }
    if map.len() >= MAX_ROUTES {
        map.clear();
    }
}

impl RouteCache {
    pub fn new(ttl: Duration) -> Self {
        RouteCache { ttl, nearest: HashMap::new(), presence: HashMap::new() }
    }

    /// The `count` nodes nearest `key`, if looked up within the last `ttl`.
    pub fn nearest(&self, key: &Key256, count: usize, now: Instant) -> Option<Vec<PeerAddrs>> {
        self.nearest
            .get(&(*key, count))
            .filter(|(_, until)| *until > now)
            .map(|(peers, _)| peers.clone())
    }

    pub fn put_nearest(&mut self, key: Key256, count: usize, peers: Vec<PeerAddrs>, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        make_room(&mut self.nearest, now);
        self.nearest.insert((key, count), (peers, now + self.ttl));
    }

    /// Forgets every lookup of `key`: one of its nodes failed, so look again.
    pub fn forget_nearest(&mut self, key: &Key256) {
        self.nearest.retain(|(k, _), _| k != key);
    }

    /// The relay `address` was last seen at, if still fresh.
    pub fn presence(&self, address: &[u8; 32], now: Instant) -> Option<PeerAddrs> {
        self.presence.get(address).filter(|(_, until)| *until > now).map(|(relay, _)| relay.clone())
    }

    /// Remembers `relay` for `address` for `ttl`, or until `valid_for` runs out if sooner (the
    /// record's own expiry).
    pub fn put_presence(
        &mut self,
        address: [u8; 32],
        relay: PeerAddrs,
        valid_for: Duration,
        now: Instant,
    ) {
        let keep = self.ttl.min(valid_for);
        if keep.is_zero() {
            return;
        }
        make_room(&mut self.presence, now);
        self.presence.insert(address, (relay, now + keep));
    }

    pub fn forget_presence(&mut self, address: &[u8; 32]) {
        self.presence.remove(address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::PeerId;

    fn peers(n: usize) -> Vec<PeerAddrs> {
        (0..n).map(|_| (PeerId::random(), vec![])).collect()
    }

    #[test]
    fn entries_live_their_ttl_and_failures_drop_them() {
        let t0 = Instant::now();
        let mut cache = RouteCache::new(Duration::from_secs(30));
        let key = Key256([7; 32]);
        let found = peers(3);
        cache.put_nearest(key, 3, found.clone(), t0);
        assert_eq!(cache.nearest(&key, 3, t0 + Duration::from_secs(29)), Some(found));
        assert_eq!(cache.nearest(&key, 6, t0), None, "another count is another lookup");
        assert_eq!(cache.nearest(&key, 3, t0 + Duration::from_secs(30)), None);
        cache.put_nearest(key, 3, peers(3), t0);
        cache.forget_nearest(&key);
        assert_eq!(cache.nearest(&key, 3, t0), None);
    }

    #[test]
    fn a_presence_never_outlives_its_record() {
        let t0 = Instant::now();
        let mut cache = RouteCache::new(Duration::from_secs(30));
        let relay = peers(1).remove(0);
        cache.put_presence([1; 32], relay.clone(), Duration::from_secs(5), t0);
        assert_eq!(cache.presence(&[1; 32], t0 + Duration::from_secs(4)), Some(relay.clone()));
        assert_eq!(cache.presence(&[1; 32], t0 + Duration::from_secs(5)), None);
        cache.put_presence([1; 32], relay, Duration::from_secs(60), t0);
        assert!(cache.presence(&[1; 32], t0 + Duration::from_secs(29)).is_some());
        cache.forget_presence(&[1; 32]);
        assert_eq!(cache.presence(&[1; 32], t0), None);
    }

    #[test]
    fn a_zero_ttl_caches_nothing_and_the_maps_stay_bounded() {
        let t0 = Instant::now();
        let mut off = RouteCache::new(Duration::ZERO);
        off.put_nearest(Key256([1; 32]), 3, peers(1), t0);
        assert_eq!(off.nearest(&Key256([1; 32]), 3, t0), None);

        let mut cache = RouteCache::new(Duration::from_secs(30));
        let relay = peers(1).remove(0);
        for i in 0..MAX_ROUTES as u32 + 10 {
            let mut address = [0u8; 32];
            address[..4].copy_from_slice(&i.to_be_bytes());
            cache.put_presence(address, relay.clone(), Duration::from_secs(60), t0);
        }
        assert!(cache.presence.len() <= MAX_ROUTES);
    }
}
