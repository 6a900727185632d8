//! One chunk's repair as a state machine: fetch exactly enough healthy shards to decode, then put
//! each rebuilt shard on a node that holds none of the chunk, moving on to the next candidate
//! when one refuses. The driver does the I/O and the decoding; this decides what to ask whom.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

use zmesh_types::Key256;
use zmesh_types::constants::DATA_SHARDS;

use super::assess::Assessment;
use crate::placement::{Candidate, Placement, PlacementError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    #[error("only {fetched} of the {DATA_SHARDS} shards needed could be fetched")]
    NotEnoughSources { fetched: usize },
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairStep<P> {
    /// Ask for these shards `(index, from)`; report each answer with [`ChunkRepair::fetched`].
    Fetch(Vec<(u8, P)>),
    /// Enough shards are in: rebuild them, then store these `(index, on)` and report each answer
    /// with [`ChunkRepair::stored`]. Returned again for replacements of refusing nodes.
    Store(Vec<(u8, P)>),
    /// Answers are outstanding.
    Wait,
    /// Every rebuilt shard is placed; the chunk's holders by index.
    Done(Vec<P>),
    Failed(RepairError),
}

#[derive(Debug)]
pub struct ChunkRepair<P> {
    placement: Placement<P>,
    rebuild: Vec<u8>,
    /// Healthy shards not asked for yet, the local one first.
    sources: VecDeque<(u8, P)>,
    fetching: usize,
    fetched: usize,
    /// Rebuilt shards to send (again) and the ones on their way.
    to_store: Vec<u8>,
    storing: HashSet<u8>,
    stored: HashSet<u8>,
    failed: Option<RepairError>,
}

impl<P: Clone + Eq + Hash> ChunkRepair<P> {
    /// Plans the repair of every missing shard of `assessment`. `candidates` are nodes near the
    /// key, with `accepting` false for those that are full or penalised; `local` is this node,
    /// whose own shard (if healthy) is read first because it costs no traffic.
    pub fn new(
        storage_key: &Key256,
        assessment: &Assessment<P>,
        candidates: Vec<Candidate<P>>,
        local: &P,
    ) -> Result<Self, RepairError> {
        let placement = Placement::repair(storage_key, &assessment.healthy, candidates)?;
        let mut sources: Vec<(u8, P)> = assessment
            .healthy
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.clone().map(|p| (i as u8, p)))
            .collect();
        sources.sort_by_key(|(i, p)| (p != local, *i));
        Ok(ChunkRepair {
            placement,
            rebuild: assessment.missing(),
            sources: sources.into(),
            fetching: 0,
            fetched: 0,
            to_store: assessment.missing(),
            storing: HashSet::new(),
            stored: HashSet::new(),
            failed: None,
        })
    }

    /// The chunk's holders by index as planned now (new holders included).
    pub fn holders(&self) -> &[P] {
        self.placement.holders()
    }

    /// The shards this repair rebuilds.
    pub fn rebuilding(&self) -> &[u8] {
        &self.rebuild
    }

    pub fn poll(&mut self) -> RepairStep<P> {
        if let Some(e) = &self.failed {
            return RepairStep::Failed(e.clone());
        }
        if self.fetched < DATA_SHARDS {
            let wanted = DATA_SHARDS - self.fetched - self.fetching;
            let batch: Vec<(u8, P)> = (0..wanted).map_while(|_| self.sources.pop_front()).collect();
            self.fetching += batch.len();
            if !batch.is_empty() {
                return RepairStep::Fetch(batch);
            }
            if self.fetching == 0 {
                let e = RepairError::NotEnoughSources { fetched: self.fetched };
                self.failed = Some(e.clone());
                return RepairStep::Failed(e);
            }
            return RepairStep::Wait;
        }
        if self.stored.len() == self.rebuild.len() {
            return RepairStep::Done(self.placement.holders().to_vec());
        }
        if self.to_store.is_empty() {
            return RepairStep::Wait;
        }
        let batch: Vec<(u8, P)> = std::mem::take(&mut self.to_store)
            .into_iter()
            .filter_map(|i| {
                self.storing.insert(i);
                self.placement.holder(usize::from(i)).cloned().map(|p| (i, p))
            })
            .collect();
        RepairStep::Store(batch)
    }

    /// The answer to a fetch: `ok` only for a shard that passed its checks.
    pub fn fetched(&mut self, ok: bool) {
        self.fetching = self.fetching.saturating_sub(1);
        if ok {
            self.fetched += 1;
        }
    }

    /// The answer to a store of shard `index`.
    pub fn stored(&mut self, index: u8, ok: bool) {
        if !self.storing.remove(&index) {
            return;
        }
        if ok {
            self.stored.insert(index);
            return;
        }
        match self.placement.reassign(usize::from(index)) {
            Ok(_) => self.to_store.push(index),
            Err(e) => self.failed = Some(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repair::assess::HolderReport;
    use zmesh_wire::repair::{ShardHealth, ShardState};

    /// Shards 0..15 on nodes 0..15, with `missing` ones gone; nodes 15..30 hold nothing.
    fn setup(missing: &[u8]) -> (Key256, Assessment<u32>, Vec<Candidate<u32>>) {
        let key = Key256::hash(b"chunk");
        let record: Vec<Option<u32>> = (0..15).map(Some).collect();
        let reports: Vec<(u32, HolderReport)> = (0..15u32)
            .map(|i| {
                let report = if missing.contains(&(i as u8)) {
                    HolderReport::Unreachable
                } else {
                    HolderReport::Answered(vec![ShardHealth {
                        index: i as u8,
                        state: ShardState::Healthy,
                        expires_at_ms: 1,
                    }])
                };
                (i, report)
            })
            .collect();
        let candidates = (0..30u32)
            .map(|i| Candidate {
                peer: i,
                node_id: Key256::hash(&i.to_be_bytes()),
                accepting: !missing.contains(&(i as u8)) || i >= 15,
            })
            .collect();
        (key, Assessment::from_reports(&record, &reports), candidates)
    }

    #[test]
    fn fetches_ten_local_first_then_stores_every_missing_shard_on_new_nodes() {
        let (key, assessment, candidates) = setup(&[1, 4, 6, 11, 13]);
        let mut repair = ChunkRepair::new(&key, &assessment, candidates, &7).unwrap();
        let RepairStep::Fetch(asked) = repair.poll() else { panic!("fetch first") };
        assert_eq!(asked.len(), 10);
        assert_eq!(asked[0], (7, 7), "the local shard first");
        assert_eq!(repair.poll(), RepairStep::Wait);
        for _ in 0..10 {
            repair.fetched(true);
        }
        let RepairStep::Store(targets) = repair.poll() else { panic!("store next") };
        let indices: Vec<u8> = targets.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, vec![1, 4, 6, 11, 13]);
        assert!(targets.iter().all(|(_, p)| *p >= 15), "only nodes holding nothing: {targets:?}");
        for (i, _) in &targets {
            repair.stored(*i, true);
        }
        let RepairStep::Done(holders) = repair.poll() else { panic!("done") };
        let distinct: HashSet<u32> = holders.iter().copied().collect();
        assert_eq!(distinct.len(), 15);
    }

    #[test]
    fn a_failed_fetch_is_replaced_and_never_more_than_ten_succeed() {
        let (key, assessment, candidates) = setup(&[0, 1]);
        let mut repair = ChunkRepair::new(&key, &assessment, candidates, &99).unwrap();
        let RepairStep::Fetch(first) = repair.poll() else { panic!() };
        assert_eq!(first.len(), 10);
        repair.fetched(false);
        for _ in 0..9 {
            repair.fetched(true);
        }
        let RepairStep::Fetch(again) = repair.poll() else { panic!("one more source") };
        assert_eq!(again.len(), 1);
        assert!(!first.contains(&again[0]));
        repair.fetched(true);
        assert!(matches!(repair.poll(), RepairStep::Store(t) if t.len() == 2));
    }

    #[test]
    fn running_out_of_sources_fails_cleanly() {
        let (key, assessment, candidates) = setup(&[0, 1, 2, 3, 4]);
        let mut repair = ChunkRepair::new(&key, &assessment, candidates, &99).unwrap();
        let RepairStep::Fetch(first) = repair.poll() else { panic!() };
        for _ in &first {
            repair.fetched(false);
        }
        assert_eq!(repair.poll(), RepairStep::Failed(RepairError::NotEnoughSources { fetched: 0 }));
    }

    #[test]
    fn a_refusing_new_holder_is_replaced_by_another_empty_node() {
        let (key, assessment, candidates) = setup(&[3]);
        let mut repair = ChunkRepair::new(&key, &assessment, candidates, &0).unwrap();
        let RepairStep::Fetch(asked) = repair.poll() else { panic!() };
        asked.iter().for_each(|_| repair.fetched(true));
        let RepairStep::Store(first) = repair.poll() else { panic!() };
        repair.stored(3, false);
        let RepairStep::Store(second) = repair.poll() else { panic!("retry elsewhere") };
        assert_eq!(second.len(), 1);
        assert_ne!(second[0].1, first[0].1);
        assert!(second[0].1 >= 15);
        repair.stored(3, true);
        assert!(matches!(repair.poll(), RepairStep::Done(_)));
    }
}
