//! Iterative closest-peer lookup (Kademlia, k = 20, α = 3) as a round-based state machine.
//!
//! Each round queries the α closest candidates not yet asked and waits for all of them. When a
//! round brings no candidate closer than the closest one seen before it, the next round asks every
//! remaining candidate among the k closest at once; the lookup ends when the k closest
//! candidates have all answered or failed. The local node takes part as an answered candidate,
//! so the result is the k closest nodes of the network, the local node included if it is one.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use zmesh_types::constants::{DHT_ALPHA, DHT_K};
use zmesh_types::{Distance, Key256, NodeId};

/// Rounds after which a lookup stops even if peers keep naming unseen candidates.
pub const MAX_ROUNDS: u32 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotAsked,
    InFlight,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate<P> {
    peer: P,
    node_id: NodeId,
    state: State,
}

#[derive(Debug)]
pub struct Lookup<P> {
    target: Key256,
    k: usize,
    alpha: usize,
    by_distance: BTreeMap<Distance, Candidate<P>>,
    distance_of: HashMap<P, Distance>,
    in_flight: usize,
    rounds: u32,
    queried: u32,
    best_before_round: Option<Distance>,
    finished: bool,
}

impl<P: Clone + Eq + Hash> Lookup<P> {
    /// Starts a lookup for the k = 20 closest nodes from the local node and the peers of its
    /// routing table.
    pub fn new(
        target: Key256,
        local: (P, NodeId),
        known: impl IntoIterator<Item = (P, NodeId)>,
    ) -> Self {
        Self::with_size(target, DHT_K, local, known)
    }

    /// A lookup for the `size` closest nodes (placement asks for 30).
    pub fn with_size(
        target: Key256,
        size: usize,
        local: (P, NodeId),
        known: impl IntoIterator<Item = (P, NodeId)>,
    ) -> Self {
        let mut lookup = Lookup {
            target,
            k: size.max(1),
            alpha: DHT_ALPHA,
            by_distance: BTreeMap::new(),
            distance_of: HashMap::new(),
            in_flight: 0,
            rounds: 0,
            queried: 0,
            best_before_round: None,
            finished: false,
        };
        lookup.insert(local.0, local.1, State::Answered);
        for (peer, node_id) in known {
            lookup.insert(peer, node_id, State::NotAsked);
        }
        lookup
    }

    fn insert(&mut self, peer: P, node_id: NodeId, state: State) {
        if self.distance_of.contains_key(&peer) {
            return;
        }
        let d = self.target.distance(&node_id);
        if self.by_distance.contains_key(&d) {
            return;
        }
        self.distance_of.insert(peer.clone(), d);
        self.by_distance.insert(d, Candidate { peer, node_id, state });
    }

    /// The k closest candidates that have not failed.
    fn closest_live(&self) -> impl Iterator<Item = &Candidate<P>> {
        self.by_distance.values().filter(|c| c.state != State::Failed).take(self.k)
    }

    /// The closest candidate seen so far that has not failed.
    fn closest_seen(&self) -> Option<Distance> {
        self.by_distance.iter().find(|(_, c)| c.state != State::Failed).map(|(d, _)| *d)
    }

    /// When no query is in flight, starts the next round and returns the peers to ask. Returns
    /// `None` while a round is in flight or when the lookup has finished.
    pub fn next_round(&mut self) -> Option<Vec<P>> {
        if self.finished || self.in_flight > 0 {
            return None;
        }
        let unasked: Vec<Distance> = self
            .closest_live()
            .filter(|c| c.state == State::NotAsked)
            .map(|c| self.target.distance(&c.node_id))
            .collect();
        if unasked.is_empty() || self.rounds >= MAX_ROUNDS {
            self.finished = true;
            return None;
        }
        let best = self.closest_seen();
        let improved = match (self.best_before_round, best) {
            (None, _) => true,
            (Some(before), Some(now)) => now < before,
            (Some(_), None) => false,
        };
        let width = if improved { self.alpha } else { self.k };
        self.best_before_round = best;
        self.rounds += 1;
        let mut batch = Vec::new();
        for d in unasked.into_iter().take(width) {
            if let Some(c) = self.by_distance.get_mut(&d) {
                c.state = State::InFlight;
                batch.push(c.peer.clone());
            }
        }
        self.in_flight = batch.len();
        self.queried += batch.len() as u32;
        Some(batch)
    }

    fn settle(&mut self, peer: &P, state: State) -> bool {
        let Some(d) = self.distance_of.get(peer) else { return false };
        let Some(c) = self.by_distance.get_mut(d) else { return false };
        if c.state != State::InFlight {
            return false;
        }
        c.state = state;
        self.in_flight -= 1;
        true
    }

    /// A queried peer answered with the peers it knows closest to the target.
    pub fn on_response(&mut self, peer: &P, closer: impl IntoIterator<Item = (P, NodeId)>) {
        if self.settle(peer, State::Answered) {
            for (p, id) in closer {
                self.insert(p, id, State::NotAsked);
            }
        }
    }

    /// A queried peer failed to answer (unreachable, timeout, bad response).
    pub fn on_failure(&mut self, peer: &P) {
        self.settle(peer, State::Failed);
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The k closest nodes that answered (the local node counts as answered), closest first.
    pub fn result(&self) -> Vec<(P, NodeId)> {
        self.by_distance
            .values()
            .filter(|c| c.state == State::Answered)
            .take(self.k)
            .map(|c| (c.peer.clone(), c.node_id))
            .collect()
    }

    pub fn rounds(&self) -> u32 {
        self.rounds
    }
    pub fn queried(&self) -> u32 {
        self.queried
    }
    pub fn target(&self) -> Key256 {
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A simulated network: each node knows a random subset of the others (always a few close
    /// ones, as Kademlia buckets guarantee) and answers with its k closest known to the target.
    struct Net {
        ids: Vec<NodeId>,
        knows: Vec<Vec<usize>>,
    }

    impl Net {
        fn new(n: usize, seed: u64) -> Net {
            let ids: Vec<NodeId> = (0..n)
                .map(|i| Key256::hash(&[seed.to_be_bytes(), (i as u64).to_be_bytes()].concat()))
                .collect();
            let knows = (0..n)
                .map(|i| {
                    // Per Kademlia: up to k per bucket, so every node knows its k closest in each bucket.
                    let mut by_bucket: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
                    for j in (0..n).filter(|j| *j != i) {
                        by_bucket
                            .entry(ids[i].distance(&ids[j]).leading_bucket())
                            .or_default()
                            .push(j);
                    }
                    by_bucket
                        .into_values()
                        .flat_map(|mut v| {
                            v.sort_by(|a, b| ids[i].cmp_distance(&ids[*a], &ids[*b]));
                            v.truncate(DHT_K);
                            v
                        })
                        .collect()
                })
                .collect();
            Net { ids, knows }
        }

        fn answer(&self, node: usize, target: &Key256) -> Vec<(usize, NodeId)> {
            let mut known: Vec<usize> = self.knows[node].clone();
            known.sort_by(|a, b| target.cmp_distance(&self.ids[*a], &self.ids[*b]));
            known.into_iter().take(DHT_K).map(|j| (j, self.ids[j])).collect()
        }

        fn true_closest(&self, target: &Key256) -> Vec<usize> {
            let mut all: Vec<usize> = (0..self.ids.len()).collect();
            all.sort_by(|a, b| target.cmp_distance(&self.ids[*a], &self.ids[*b]));
            all.truncate(DHT_K);
            all
        }

        fn lookup(&self, from: usize, target: Key256, dead: &[usize]) -> Lookup<usize> {
            let known = self.knows[from].iter().map(|j| (*j, self.ids[*j]));
            let mut l = Lookup::new(target, (from, self.ids[from]), known);
            while let Some(batch) = l.next_round() {
                for p in batch {
                    if dead.contains(&p) {
                        l.on_failure(&p);
                    } else {
                        l.on_response(&p, self.answer(p, &target));
                    }
                }
            }
            l
        }
    }

    #[test]
    fn full_knowledge_finishes_in_two_rounds() {
        let net = Net::new(20, 1);
        let target = Key256::hash(b"x");
        let l = net.lookup(0, target, &[]);
        assert!(l.is_finished());
        let got: Vec<usize> = l.result().into_iter().map(|(p, _)| p).collect();
        assert_eq!(got, net.true_closest(&target));
        assert_eq!(l.rounds(), 2);
    }

    #[test]
    fn a_larger_result_size_finds_that_many() {
        let net = Net::new(80, 3);
        let target = Key256::hash(b"z");
        let known = net.knows[0].iter().map(|j| (*j, net.ids[*j]));
        let mut l = Lookup::with_size(target, 30, (0, net.ids[0]), known);
        while let Some(batch) = l.next_round() {
            for p in batch {
                let mut answer = net.answer(p, &target);
                answer.truncate(DHT_K);
                l.on_response(&p, answer);
            }
        }
        let mut all: Vec<usize> = (0..80).collect();
        all.sort_by(|a, b| target.cmp_distance(&net.ids[*a], &net.ids[*b]));
        let got: Vec<usize> = l.result().into_iter().map(|(p, _)| p).collect();
        assert_eq!(got, all[..30].to_vec());
    }

    #[test]
    fn failed_peers_are_left_out() {
        let net = Net::new(60, 2);
        let target = Key256::hash(b"y");
        let dead = [net.true_closest(&target)[0]];
        let l = net.lookup(5, target, &dead);
        let got: Vec<usize> = l.result().into_iter().map(|(p, _)| p).collect();
        assert!(!got.contains(&dead[0]));
        let expected: Vec<usize> =
            net.true_closest(&target).into_iter().filter(|p| *p != dead[0]).collect();
        assert_eq!(&got[..expected.len()], &expected[..]);
    }

    #[test]
    fn late_or_unknown_answers_are_ignored() {
        let mut l =
            Lookup::new(Key256::ZERO, (0u32, Key256::hash(b"0")), [(1, Key256::hash(b"1"))]);
        l.on_response(&1, [(2, Key256::hash(b"2"))]); // not asked yet: ignored
        assert_eq!(l.next_round(), Some(vec![1]));
        assert_eq!(l.next_round(), None); // round in flight
        l.on_response(&1, []);
        l.on_response(&1, [(3, Key256::hash(b"3"))]); // duplicate answer: ignored
        assert_eq!(l.next_round(), None);
        assert!(l.is_finished());
        assert_eq!(l.result().len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn finds_the_true_k_closest(seed in any::<u64>(), n in 21usize..160, from in 0usize..160, t in any::<[u8; 32]>()) {
            let net = Net::new(n, seed);
            let target = Key256(t);
            let l = net.lookup(from % n, target, &[]);
            let got: Vec<usize> = l.result().into_iter().map(|(p, _)| p).collect();
            prop_assert_eq!(got, net.true_closest(&target));
            prop_assert!(l.rounds() <= 12, "rounds {}", l.rounds());
        }
    }
}
