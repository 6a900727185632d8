//! Which nodes repair passes over when it picks new holders.
//!
//! The rule: a node that handed out a shard failing its checksum (an audit failure) is passed
//! over for [`AUDIT_PENALTY_MS`] (24 h); a node that missed [`UNREACHABLE_STRIKES`] health checks
//! in a row is passed over until [`UNREACHABLE_PENALTY_MS`] (1 h) after its last miss. Any
//! answered check clears the misses (not an audit failure). Penalised nodes still count as
//! holders of the shards they keep; they just get no new ones while a penalty lasts.

use std::collections::HashMap;
use std::hash::Hash;

pub const AUDIT_PENALTY_MS: u64 = 24 * 3600 * 1000;
pub const UNREACHABLE_PENALTY_MS: u64 = 3600 * 1000;
pub const UNREACHABLE_STRIKES: u32 = 3;
/// Nodes remembered at most; the stalest record is dropped beyond this.
const CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    misses: u32,
    last_miss_ms: u64,
    audit_failed_ms: Option<u64>,
}

#[derive(Debug)]
pub struct Reputation<P> {
    records: HashMap<P, Record>,
}

impl<P: Clone + Eq + Hash> Default for Reputation<P> {
    fn default() -> Self {
        Reputation { records: HashMap::new() }
    }
}

impl<P: Clone + Eq + Hash> Reputation<P> {
    pub fn answered(&mut self, peer: &P) {
        if let Some(r) = self.records.get_mut(peer) {
            r.misses = 0;
        }
    }

    pub fn unreachable(&mut self, peer: &P, now_ms: u64) {
        let r = self.entry(peer);
        r.misses = r.misses.saturating_add(1);
        r.last_miss_ms = now_ms;
    }

    pub fn failed_audit(&mut self, peer: &P, now_ms: u64) {
        self.entry(peer).audit_failed_ms = Some(now_ms);
    }

    pub fn penalized(&self, peer: &P, now_ms: u64) -> bool {
        let Some(r) = self.records.get(peer) else { return false };
        let audit = r.audit_failed_ms.is_some_and(|t| now_ms < t.saturating_add(AUDIT_PENALTY_MS));
        let absent = r.misses >= UNREACHABLE_STRIKES
            && now_ms < r.last_miss_ms.saturating_add(UNREACHABLE_PENALTY_MS);
        audit || absent
    }

    pub fn penalized_count(&self, now_ms: u64) -> usize {
        self.records.keys().filter(|p| self.penalized(p, now_ms)).count()
    }

    fn entry(&mut self, peer: &P) -> &mut Record {
        if self.records.len() >= CAPACITY && !self.records.contains_key(peer) {
            let stalest = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.last_miss_ms.max(r.audit_failed_ms.unwrap_or(0)))
                .map(|(p, _)| p.clone());
            if let Some(p) = stalest {
                self.records.remove(&p);
            }
        }
        self.records.entry(peer.clone()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_misses_penalise_for_an_hour_and_an_answer_forgives() {
        let mut r = Reputation::default();
        r.unreachable(&1u32, 0);
        r.unreachable(&1, 10);
        assert!(!r.penalized(&1, 20));
        r.unreachable(&1, 30);
        assert!(r.penalized(&1, 40));
        assert!(!r.penalized(&1, 30 + UNREACHABLE_PENALTY_MS));
        r.answered(&1);
        assert!(!r.penalized(&1, 40));
    }

    #[test]
    fn an_audit_failure_lasts_a_day_whatever_else_happens() {
        let mut r = Reputation::default();
        r.failed_audit(&7u32, 100);
        r.answered(&7);
        assert!(r.penalized(&7, 100 + AUDIT_PENALTY_MS - 1));
        assert!(!r.penalized(&7, 100 + AUDIT_PENALTY_MS));
        assert_eq!(r.penalized_count(200), 1);
    }
}
