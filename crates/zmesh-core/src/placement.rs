//! Where a chunk's 15 shards go (seed 000, "Kademlia DHT Distribution"): among the nodes
//! nearest the storage key, drop those that report no capacity, and put shard *i* on the *i*-th
//! of the rest, closest first. Given the same candidates anyone computes the same placement. When
//! a holder refuses or fails, the next unused candidate takes its shard.

use std::collections::HashSet;
use std::hash::Hash;

use zmesh_types::constants::TOTAL_SHARDS;
use zmesh_types::{Key256, NodeId};

/// How many nodes placement asks the DHT for: twice the shards, so full or unreachable nodes can
/// be skipped.
pub const PLACEMENT_CANDIDATES: usize = 2 * TOTAL_SHARDS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<P> {
    pub peer: P,
    pub node_id: NodeId,
    /// The node said it can take more shards.
    pub accepting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("only {usable} nodes with free capacity near the key; {needed} are needed")]
    TooFewNodes { usable: usize, needed: usize },
    #[error("shard {index} could not be placed: every candidate refused or failed")]
    Exhausted { index: usize },
}

#[derive(Debug, Clone)]
pub struct Placement<P> {
    /// `holders[i]` holds shard `i`.
    holders: Vec<P>,
    /// Unused candidates, closest first.
    spare: Vec<P>,
    failed: HashSet<P>,
}

impl<P: Clone + Eq + Hash> Placement<P> {
    /// Plans a placement from any number of candidates (in any order, duplicates ignored).
    pub fn plan(
        storage_key: &Key256,
        mut candidates: Vec<Candidate<P>>,
    ) -> Result<Self, PlacementError> {
        candidates.sort_by(|a, b| storage_key.cmp_distance(&a.node_id, &b.node_id));
        let mut seen = HashSet::new();
        let usable: Vec<P> = candidates
            .into_iter()
            .filter(|c| c.accepting && seen.insert(c.peer.clone()))
            .map(|c| c.peer)
            .collect();
        if usable.len() < TOTAL_SHARDS {
            return Err(PlacementError::TooFewNodes { usable: usable.len(), needed: TOTAL_SHARDS });
        }
        let mut holders = usable;
        let spare = holders.split_off(TOTAL_SHARDS);
        Ok(Placement { holders, spare, failed: HashSet::new() })
    }

    /// Plans a repair: `current[i]` is the node with a healthy shard `i`, or `None` when the
    /// shard is missing. Each missing shard goes to the closest accepting candidate that holds
    /// no shard of the chunk yet, so the 15 holders stay distinct nodes.
    pub fn repair(
        storage_key: &Key256,
        current: &[Option<P>],
        mut candidates: Vec<Candidate<P>>,
    ) -> Result<Self, PlacementError> {
        candidates.sort_by(|a, b| storage_key.cmp_distance(&a.node_id, &b.node_id));
        let mut seen: HashSet<P> = current.iter().flatten().cloned().collect();
        let mut spare: Vec<P> = candidates
            .into_iter()
            .filter(|c| c.accepting && seen.insert(c.peer.clone()))
            .map(|c| c.peer)
            .collect();
        let missing = current.iter().filter(|h| h.is_none()).count();
        if spare.len() < missing {
            let healthy = current.len() - missing;
            return Err(PlacementError::TooFewNodes {
                usable: healthy + spare.len(),
                needed: current.len(),
            });
        }
        let mut fresh = spare.drain(..missing);
        let holders = current
            .iter()
            .map(|h| match h {
                Some(p) => Some(p.clone()),
                None => fresh.next(),
            })
            .collect::<Option<Vec<P>>>()
            .ok_or(PlacementError::Exhausted { index: 0 })?;
        drop(fresh);
        Ok(Placement { holders, spare, failed: HashSet::new() })
    }

    pub fn holder(&self, index: usize) -> Option<&P> {
        self.holders.get(index)
    }

    pub fn holders(&self) -> &[P] {
        &self.holders
    }

    /// The holder of shard `index` refused or failed: the closest unused candidate takes over.
    pub fn reassign(&mut self, index: usize) -> Result<&P, PlacementError> {
        let Some(current) = self.holders.get(index).cloned() else {
            return Err(PlacementError::Exhausted { index });
        };
        self.failed.insert(current);
        if self.spare.is_empty() {
            return Err(PlacementError::Exhausted { index });
        }
        let next = self.spare.remove(0);
        self.holders[index] = next;
        Ok(&self.holders[index])
    }

    pub fn has_failed(&self, peer: &P) -> bool {
        self.failed.contains(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(n: usize) -> Vec<Candidate<usize>> {
        (0..n)
            .map(|i| Candidate { peer: i, node_id: Key256::hash(&[i as u8]), accepting: true })
            .collect()
    }

    #[test]
    fn closest_accepting_nodes_get_the_shards_in_order() {
        let key = Key256::hash(b"k");
        let mut all = candidates(30);
        all[3].accepting = false;
        let p = Placement::plan(&key, all.clone()).unwrap();
        let mut expected: Vec<&Candidate<usize>> = all.iter().filter(|c| c.accepting).collect();
        expected.sort_by(|a, b| key.cmp_distance(&a.node_id, &b.node_id));
        let expected: Vec<usize> = expected.iter().take(15).map(|c| c.peer).collect();
        assert_eq!(p.holders(), &expected[..]);
        assert!(!p.holders().contains(&3));
        // Order of the input does not matter: anyone recomputes the same placement.
        all.reverse();
        assert_eq!(Placement::plan(&key, all).unwrap().holders(), &expected[..]);
    }

    #[test]
    fn too_few_nodes_is_a_clear_error() {
        let key = Key256::hash(b"k");
        let err = Placement::plan(&key, candidates(14)).unwrap_err();
        assert_eq!(err, PlacementError::TooFewNodes { usable: 14, needed: 15 });
        assert_eq!(err.to_string(), "only 14 nodes with free capacity near the key; 15 are needed");
        let mut dupes = candidates(15);
        dupes[14] = dupes[0].clone();
        assert!(Placement::plan(&key, dupes).is_err());
    }

    #[test]
    fn a_refusing_holder_is_replaced_by_the_next_candidate() {
        let key = Key256::hash(b"k");
        let mut p = Placement::plan(&key, candidates(17)).unwrap();
        let first = *p.holder(4).unwrap();
        let next = *p.reassign(4).unwrap();
        assert_ne!(first, next);
        assert!(p.has_failed(&first));
        let distinct: HashSet<usize> = p.holders().iter().copied().collect();
        assert_eq!(distinct.len(), 15);
        p.reassign(4).unwrap();
        assert_eq!(p.reassign(4), Err(PlacementError::Exhausted { index: 4 }));
    }

    #[test]
    fn repair_fills_only_missing_slots_with_nodes_holding_nothing() {
        let key = Key256::hash(b"k");
        let all = candidates(30);
        let original = Placement::plan(&key, all.clone()).unwrap();
        let mut current: Vec<Option<usize>> =
            original.holders().iter().copied().map(Some).collect();
        for i in [0, 3, 7, 8, 14] {
            current[i] = None;
        }
        let dead: HashSet<usize> =
            [0, 3, 7, 8, 14].iter().map(|&i| original.holders()[i]).collect();
        // The dead nodes do not answer capacity queries.
        let alive: Vec<Candidate<usize>> = all
            .iter()
            .cloned()
            .map(|mut c| {
                c.accepting = !dead.contains(&c.peer);
                c
            })
            .collect();
        let mut repaired = Placement::repair(&key, &current, alive).unwrap();
        for (i, h) in current.iter().enumerate() {
            if let Some(h) = h {
                assert_eq!(repaired.holders()[i], *h, "healthy shard {i} stays put");
            } else {
                assert!(!dead.contains(&repaired.holders()[i]));
            }
        }
        let distinct: HashSet<usize> = repaired.holders().iter().copied().collect();
        assert_eq!(distinct.len(), 15);
        // A refusing new holder is replaced by another node that holds nothing yet.
        let next = *repaired.reassign(3).unwrap();
        assert!(!current.contains(&Some(next)));
        // Only two nodes besides the ten healthy holders: five missing shards cannot all go.
        let mut few: Vec<Candidate<usize>> =
            all.iter().filter(|c| current.contains(&Some(c.peer))).cloned().collect();
        few.extend(all.iter().filter(|c| !original.holders().contains(&c.peer)).take(2).cloned());
        let err = Placement::repair(&key, &current, few).unwrap_err();
        assert_eq!(err, PlacementError::TooFewNodes { usable: 12, needed: 15 });
    }
}
