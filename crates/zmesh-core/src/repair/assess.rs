//! What one round of health reports says about a chunk.

use std::collections::HashSet;
use std::hash::Hash;

use zmesh_types::constants::{DATA_SHARDS, TOTAL_SHARDS};
use zmesh_wire::repair::{ShardHealth, ShardState};

/// One node's answer to a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderReport {
    /// No answer in time, or a refusal.
    Unreachable,
    Answered(Vec<ShardHealth>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment<P> {
    /// `healthy[i]`: the node with a healthy shard `i`. Each node counts for one shard at most,
    /// so the count is of shards on *distinct* nodes.
    pub healthy: Vec<Option<P>>,
    /// Nodes that did not answer.
    pub unreachable: Vec<P>,
    /// Shards a holder found damaged (and dropped).
    pub corrupt: Vec<(P, u8)>,
    /// Expired shards a holder still had on disk when asked.
    pub lingering: Vec<(P, u8)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// At least the threshold of shards is healthy.
    Healthy,
    /// Rebuild these shards.
    Repair { rebuild: Vec<u8> },
    /// Fewer than `DATA_SHARDS` healthy: nothing can be rebuilt now (holders may come back).
    Unrecoverable { healthy: usize },
    /// Expired, and no node keeps any shard of it: the expiry guarantee holds.
    ExpiryVerified,
    /// Expired, but these nodes still had shards when asked.
    ExpiryViolated,
}

impl<P: Clone + Eq + Hash> Assessment<P> {
    /// Combines the reports. `record[i]` is the node the placement record names for shard `i`;
    /// when several nodes report the same healthy shard, the recorded one keeps it.
    pub fn from_reports(record: &[Option<P>], reports: &[(P, HolderReport)]) -> Self {
        let mut unreachable = Vec::new();
        let mut corrupt = Vec::new();
        let mut lingering = Vec::new();
        let mut offers: Vec<Vec<P>> = vec![Vec::new(); TOTAL_SHARDS];
        for (peer, report) in reports {
            let HolderReport::Answered(shards) = report else {
                unreachable.push(peer.clone());
                continue;
            };
            for s in shards {
                let i = usize::from(s.index);
                if i >= TOTAL_SHARDS {
                    continue;
                }
                match s.state {
                    ShardState::Healthy => offers[i].push(peer.clone()),
                    ShardState::Corrupt => corrupt.push((peer.clone(), s.index)),
                    ShardState::Expired => lingering.push((peer.clone(), s.index)),
                }
            }
        }
        let mut used: HashSet<P> = HashSet::new();
        let mut healthy = vec![None; TOTAL_SHARDS];
        // Recorded holders first, so a known-good placement is kept as it is.
        for (i, offer) in offers.iter().enumerate() {
            if let Some(Some(p)) = record.get(i)
                && offer.contains(p)
                && used.insert(p.clone())
            {
                healthy[i] = Some(p.clone());
            }
        }
        for (i, offer) in offers.iter().enumerate() {
            if healthy[i].is_none()
                && let Some(p) = offer.iter().find(|p| !used.contains(*p))
            {
                used.insert(p.clone());
                healthy[i] = Some(p.clone());
            }
        }
        Assessment { healthy, unreachable, corrupt, lingering }
    }

    pub fn healthy_count(&self) -> usize {
        self.healthy.iter().flatten().count()
    }

    pub fn missing(&self) -> Vec<u8> {
        (0..TOTAL_SHARDS as u8).filter(|&i| self.healthy[usize::from(i)].is_none()).collect()
    }

    /// Repair below `threshold` healthy shards, verify deletion once `expired`.
    pub fn decide(&self, threshold: usize, expired: bool) -> Decision {
        if expired {
            let still_held = self.healthy_count() > 0 || !self.lingering.is_empty();
            return if still_held { Decision::ExpiryViolated } else { Decision::ExpiryVerified };
        }
        let healthy = self.healthy_count();
        if healthy >= threshold.min(TOTAL_SHARDS) {
            Decision::Healthy
        } else if healthy < DATA_SHARDS {
            Decision::Unrecoverable { healthy }
        } else {
            Decision::Repair { rebuild: self.missing() }
        }
    }

    /// The nodes still keeping an expired chunk's shards.
    pub fn still_holding(&self) -> Vec<(P, u8)> {
        let mut out: Vec<(P, u8)> = self
            .healthy
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.clone().map(|p| (p, i as u8)))
            .collect();
        out.extend(self.lingering.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(indices: &[u8]) -> HolderReport {
        HolderReport::Answered(
            indices
                .iter()
                .map(|&index| ShardHealth { index, state: ShardState::Healthy, expires_at_ms: 9 })
                .collect(),
        )
    }

    fn full_record() -> Vec<Option<u32>> {
        (0..15).map(Some).collect()
    }

    #[test]
    fn all_fifteen_healthy_needs_nothing() {
        let reports: Vec<(u32, HolderReport)> = (0..15).map(|i| (i, healthy(&[i as u8]))).collect();
        let a = Assessment::from_reports(&full_record(), &reports);
        assert_eq!(a.healthy_count(), 15);
        assert_eq!(a.decide(13, false), Decision::Healthy);
    }

    #[test]
    fn below_the_threshold_every_missing_shard_is_rebuilt() {
        let mut reports: Vec<(u32, HolderReport)> =
            (0..15).map(|i| (i, healthy(&[i as u8]))).collect();
        reports[2].1 = HolderReport::Unreachable;
        reports[5].1 = HolderReport::Answered(vec![ShardHealth {
            index: 5,
            state: ShardState::Corrupt,
            expires_at_ms: 9,
        }]);
        reports[9].1 = HolderReport::Answered(Vec::new());
        let a = Assessment::from_reports(&full_record(), &reports);
        assert_eq!(a.healthy_count(), 12);
        assert_eq!(a.unreachable, vec![2]);
        assert_eq!(a.corrupt, vec![(5, 5)]);
        assert_eq!(a.decide(13, false), Decision::Repair { rebuild: vec![2, 5, 9] });
        assert_eq!(a.decide(12, false), Decision::Healthy);
    }

    #[test]
    fn a_node_counts_once_and_a_recorded_holder_keeps_its_shard() {
        // Node 0 claims shards 0 and 1; node 20 (not recorded) also has shard 0.
        let reports = vec![(0u32, healthy(&[0, 1])), (20, healthy(&[0]))];
        let a = Assessment::from_reports(&full_record(), &reports);
        assert_eq!(a.healthy[0], Some(0));
        assert_eq!(a.healthy[1], None, "node 0 already counts for shard 0");
        assert_eq!(a.healthy_count(), 1);
        let reports = vec![(20u32, healthy(&[0])), (0, healthy(&[1]))];
        let a = Assessment::from_reports(&full_record(), &reports);
        assert_eq!(a.healthy[0], Some(20));
        assert_eq!(a.healthy[1], Some(0));
    }

    #[test]
    fn too_few_is_unrecoverable_not_repaired() {
        let reports: Vec<(u32, HolderReport)> = (0..9).map(|i| (i, healthy(&[i as u8]))).collect();
        let a = Assessment::from_reports(&full_record(), &reports);
        assert_eq!(a.decide(13, false), Decision::Unrecoverable { healthy: 9 });
    }

    #[test]
    fn expiry_is_verified_only_when_nobody_keeps_anything() {
        let gone: Vec<(u32, HolderReport)> =
            (0..15).map(|i| (i, HolderReport::Answered(Vec::new()))).collect();
        let a = Assessment::from_reports(&full_record(), &gone);
        assert_eq!(a.decide(13, true), Decision::ExpiryVerified);
        let mut lingering = gone.clone();
        lingering[4].1 = HolderReport::Answered(vec![ShardHealth {
            index: 4,
            state: ShardState::Expired,
            expires_at_ms: 1,
        }]);
        let a = Assessment::from_reports(&full_record(), &lingering);
        assert_eq!(a.decide(13, true), Decision::ExpiryViolated);
        assert_eq!(a.still_holding(), vec![(4, 4)]);
    }
}
