//! One read round over a mailbox's replicas.
//!
//! A relay serving a sync asks the replicas it can reach for the entries after the client's
//! cursor and merges their answers. Replicas can differ: one missed an append (it was down, or
//! answered after the quorum), another already collected an acknowledged entry. Their union
//! is the mailbox; by the quorum rule every acknowledged message is in any two replicas' union.
//!
//! Each replica answers at most a batch, sorted by position, and says whether it holds more.
//! A truncated answer (`has_more`) only vouches for positions up to its last entry: beyond it,
//! that replica may hold entries no one has shown us yet. So the round is *cut* at the lowest
//! last position among truncated answers, and nothing past the cut is returned. Returning an
//! entry past the cut would move the client's cursor over an entry a replica holds but did not
//! send, and the client would never receive it.
//!
//! At or below the cut every answering replica has shown everything it holds, so an entry
//! some answering replica lacks there is truly missing from it: the round lists those copies
//! as read repair, and once the driver appends them the replicas agree on that range.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

use super::{Position, Positioned};

/// One replica's answer to a read after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaBatch<E> {
    /// Entries after the cursor, sorted by position.
    pub entries: Vec<E>,
    /// The replica holds entries after the last one in `entries`.
    pub has_more: bool,
}

/// The merged result of a read round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged<P, E> {
    /// Entries after the cursor, sorted and unique by position, none past the cut, at most
    /// `max`.
    pub entries: Vec<E>,
    /// Entries may remain after `next_cursor`: some replica said so, or the round was cut or
    /// truncated to `max`.
    pub has_more: bool,
    /// Where the next round starts: the last returned entry, or the cursor read after when
    /// nothing was returned.
    pub next_cursor: Option<Position>,
    /// `(replica, entry)`: an answering replica that lacks an entry at or below the cut. Append
    /// each entry there, as a replica would any message (a duplicate is harmless).
    pub read_repair: Vec<(P, E)>,
}

/// An entry of the union and which answers held it.
#[derive(Debug)]
struct Slot<E> {
    entry: E,
    held_by: Vec<bool>,
}

/// Merges the answers of the replicas that replied to a read after `after`, returning at most
/// `max` entries.
///
/// Never panics and copes with answers that break the rules: entries at or before `after` are
/// ignored, unsorted batches are sorted, repeated positions within a batch count once, and a
/// second answer from the same replica is ignored. A truncated answer with no entry after
/// `after` vouches for nothing, so it holds the whole round at `after` (no entries, `has_more`
/// true, `next_cursor == after`): the caller sees a round that made no progress and should
/// drop that replica's answer, or ask it again, rather than loop. Among different entries at
/// the same position (which honest replicas never hold) the first answer's copy is kept.
pub fn merge_batches<P, E>(
    after: Option<Position>,
    replies: Vec<(P, ReplicaBatch<E>)>,
    max: usize,
) -> Merged<P, E>
where
    P: Clone + Eq + Hash,
    E: Positioned + Clone,
{
    let mut peers: Vec<P> = Vec::with_capacity(replies.len());
    let mut batches: Vec<(Vec<E>, bool)> = Vec::with_capacity(replies.len());
    let mut seen_peers = HashSet::new();
    for (peer, batch) in replies {
        if !seen_peers.insert(peer.clone()) {
            continue;
        }
        let mut entries: Vec<E> =
            batch.entries.into_iter().filter(|e| Some(e.position()) > after).collect();
        entries.sort_by_key(Positioned::position);
        entries.dedup_by_key(|e| e.position());
        peers.push(peer);
        batches.push((entries, batch.has_more));
    }

    // The cut: the lowest last position of any truncated answer. `None` means no truncated
    // answer, so no cut; `Some(after)` means a truncated answer vouched for nothing.
    let mut cut: Option<Option<Position>> = None;
    for (entries, has_more) in &batches {
        if *has_more {
            let last = entries.last().map(Positioned::position).or(after);
            cut = Some(match cut {
                Some(c) => c.min(last),
                None => last,
            });
        }
    }
    let within = |p: Position| cut.is_none_or(|c| Some(p) <= c);

    let answers = batches.len();
    let mut beyond_cut = false;
    let mut union: BTreeMap<Position, Slot<E>> = BTreeMap::new();
    for (i, (entries, _)) in batches.into_iter().enumerate() {
        for entry in entries {
            let position = entry.position();
            if !within(position) {
                beyond_cut = true;
                continue;
            }
            let slot = union
                .entry(position)
                .or_insert_with(|| Slot { entry, held_by: vec![false; answers] });
            if let Some(held) = slot.held_by.get_mut(i) {
                *held = true;
            }
        }
    }

    let mut read_repair = Vec::new();
    for slot in union.values() {
        for (peer, held) in peers.iter().zip(&slot.held_by) {
            if !held {
                read_repair.push((peer.clone(), slot.entry.clone()));
            }
        }
    }

    let truncated = union.len() > max;
    let entries: Vec<E> = union.into_values().take(max).map(|s| s.entry).collect();
    let any_more = cut.is_some();
    let next_cursor = entries.last().map(Positioned::position).or(after);
    Merged { entries, has_more: any_more || beyond_cut || truncated, next_cursor, read_repair }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::mailbox::testing::{Msg, msg};

    fn batch(positions: &[u64], has_more: bool) -> ReplicaBatch<Msg> {
        ReplicaBatch { entries: positions.iter().map(|&o| msg(o)).collect(), has_more }
    }

    fn orders(entries: &[Msg]) -> Vec<u64> {
        entries.iter().map(|m| m.order).collect()
    }

    fn repairs(m: &Merged<char, Msg>) -> Vec<(char, u64)> {
        let mut r: Vec<(char, u64)> = m.read_repair.iter().map(|(p, e)| (*p, e.order)).collect();
        r.sort();
        r
    }

    #[test]
    fn complete_answers_merge_into_their_union_with_repairs() {
        let m = merge_batches(
            None,
            vec![('a', batch(&[1, 2, 4], false)), ('b', batch(&[2, 3, 4], false))],
            10,
        );
        assert_eq!(orders(&m.entries), vec![1, 2, 3, 4]);
        assert!(!m.has_more);
        assert_eq!(m.next_cursor, Some(msg(4).position()));
        assert_eq!(repairs(&m), vec![('a', 3), ('b', 1)]);
    }

    #[test]
    fn a_truncated_answer_cuts_the_round_at_its_last_entry() {
        // `a` stopped at 3 and may hold 4 or 5: nothing past 3 may be returned, even though `b`
        // shows 6 and 7.
        let m = merge_batches(
            None,
            vec![('a', batch(&[1, 3], true)), ('b', batch(&[2, 3, 6, 7], false))],
            10,
        );
        assert_eq!(orders(&m.entries), vec![1, 2, 3]);
        assert!(m.has_more);
        assert_eq!(m.next_cursor, Some(msg(3).position()));
        // Only entries at or below the cut are repaired: `b` may lack 6 and 7 on `a` or not.
        assert_eq!(repairs(&m), vec![('a', 2), ('b', 1)]);
        // The next round from the cursor picks up what `a` holds after 3.
        let next = merge_batches(
            m.next_cursor,
            vec![('a', batch(&[5, 6], false)), ('b', batch(&[6, 7], false))],
            10,
        );
        assert_eq!(orders(&next.entries), vec![5, 6, 7]);
        assert!(!next.has_more);
    }

    #[test]
    fn the_lowest_truncation_wins() {
        let m = merge_batches(
            Some(msg(10).position()),
            vec![
                ('a', batch(&[11, 12, 15], true)),
                ('b', batch(&[11, 13], true)),
                ('c', batch(&[14], false)),
            ],
            10,
        );
        assert_eq!(orders(&m.entries), vec![11, 12, 13]);
        assert!(m.has_more);
        assert_eq!(repairs(&m), vec![('a', 13), ('b', 12), ('c', 11), ('c', 12), ('c', 13)]);
    }

    #[test]
    fn max_truncates_and_keeps_has_more() {
        let m = merge_batches(
            None,
            vec![('a', batch(&[1, 2, 3], false)), ('b', batch(&[4], false))],
            2,
        );
        assert_eq!(orders(&m.entries), vec![1, 2]);
        assert!(m.has_more);
        assert_eq!(m.next_cursor, Some(msg(2).position()));
        // Repairs cover the whole range answered in full, not only what is returned.
        assert_eq!(repairs(&m), vec![('a', 4), ('b', 1), ('b', 2), ('b', 3)]);
        let none = merge_batches(None, vec![('a', batch(&[1], false))], 0);
        assert!(none.entries.is_empty() && none.has_more && none.next_cursor.is_none());
    }

    #[test]
    fn nothing_to_read_ends_where_it_started() {
        let after = Some(msg(5).position());
        let m = merge_batches::<char, Msg>(after, vec![('a', batch(&[], false))], 10);
        assert!(m.entries.is_empty() && !m.has_more && m.read_repair.is_empty());
        assert_eq!(m.next_cursor, after);
        let m = merge_batches::<char, Msg>(None, vec![], 10);
        assert!(m.entries.is_empty() && !m.has_more && m.next_cursor.is_none());
    }

    #[test]
    fn a_truncated_empty_answer_holds_the_round() {
        let after = Some(msg(5).position());
        let m =
            merge_batches(after, vec![('a', batch(&[], true)), ('b', batch(&[6, 7], false))], 10);
        assert!(m.entries.is_empty());
        assert!(m.has_more);
        assert_eq!(m.next_cursor, after, "no progress: the caller drops or re-asks `a`");
        assert!(m.read_repair.is_empty());
    }

    #[test]
    fn malformed_answers_are_tolerated() {
        let after = Some(msg(2).position());
        let m = merge_batches(
            after,
            vec![
                // Unsorted, repeated, and with entries at or before the cursor.
                ('a', batch(&[5, 1, 3, 3, 2], false)),
                ('b', batch(&[4], false)),
                // A second answer from `a` is ignored.
                ('a', batch(&[9], false)),
            ],
            10,
        );
        assert_eq!(orders(&m.entries), vec![3, 4, 5]);
        assert!(!m.has_more);
        assert_eq!(repairs(&m), vec![('a', 4), ('b', 3), ('b', 5)]);
    }

    #[test]
    fn ties_in_order_are_broken_by_id_alike_everywhere() {
        let x = Msg { order: 7, id: [1; 16], tag: 0 };
        let y = Msg { order: 7, id: [2; 16], tag: 0 };
        let m = merge_batches(
            None,
            vec![
                ('a', ReplicaBatch { entries: vec![y.clone()], has_more: false }),
                ('b', ReplicaBatch { entries: vec![x.clone()], has_more: false }),
            ],
            10,
        );
        assert_eq!(m.entries, vec![x, y]);
    }

    #[test]
    fn the_first_copy_of_a_position_is_kept() {
        let first = Msg { tag: 1, ..msg(3) };
        let other = Msg { tag: 2, ..msg(3) };
        let m = merge_batches(
            None,
            vec![
                ('a', ReplicaBatch { entries: vec![first.clone()], has_more: false }),
                ('b', ReplicaBatch { entries: vec![other], has_more: false }),
            ],
            10,
        );
        assert_eq!(m.entries, vec![first]);
        assert!(m.read_repair.is_empty(), "both hold the position");
    }

    /// A tiny deterministic generator, so a proptest seed drives every choice of a scenario.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n.max(1) as u64) as usize
        }
    }

    /// A replica's answer to a read after `after`: the first `limit` of its entries there.
    fn answer(
        held: &BTreeSet<Position>,
        after: Option<Position>,
        limit: usize,
    ) -> ReplicaBatch<Msg> {
        let mut rest = held.iter().filter(|p| Some(**p) > after);
        let entries: Vec<Msg> =
            rest.by_ref().take(limit).map(|&(order, id)| Msg { order, id, tag: 0 }).collect();
        ReplicaBatch { entries, has_more: rest.next().is_some() }
    }

    /// The global set: `n` positions whose orders repeat, so ties are decided by the id.
    fn global(n: usize, rng: &mut Rng) -> Vec<Position> {
        let mut all: BTreeSet<Position> = BTreeSet::new();
        for i in 0..n {
            let mut id = [0u8; 16];
            id[0] = rng.below(256) as u8;
            id[8..].copy_from_slice(&(i as u64).to_be_bytes());
            all.insert((rng.below(n / 3 + 1) as u64, id));
        }
        all.into_iter().collect()
    }

    /// Syncs a whole mailbox round after round, each round answered by the replicas `ask`
    /// picks, and checks each round on the way. Returns everything read, in order.
    fn sync_all(
        replicas: &mut [BTreeSet<Position>],
        max: usize,
        rng: &mut Rng,
        ask: impl Fn(&mut Rng) -> Vec<usize>,
    ) -> Result<Vec<Position>, TestCaseError> {
        let total: usize = replicas.iter().map(BTreeSet::len).sum();
        let (mut cursor, mut read) = (None, Vec::new());
        for _ in 0..=total + 1 {
            let asked = ask(rng);
            let replies: Vec<(usize, ReplicaBatch<Msg>)> = asked
                .iter()
                .map(|&r| (r, answer(&replicas[r], cursor, 1 + rng.below(max))))
                .collect();
            let m = merge_batches(cursor, replies, max);
            let got: Vec<Position> = m.entries.iter().map(Positioned::position).collect();
            prop_assert!(got.len() <= max);
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted and unique: {:?}", got);
            prop_assert!(got.iter().all(|p| Some(*p) > cursor), "only after the cursor");
            // Read repair only fills gaps, and afterwards the answering replicas agree on the
            // range this round covered.
            for (r, e) in &m.read_repair {
                prop_assert!(asked.contains(r), "only answering replicas are repaired");
                prop_assert!(replicas[*r].insert(e.position()), "{:?} already on {}", e, r);
            }
            let covered = |p: &&Position| Some(**p) > cursor && Some(**p) <= m.next_cursor;
            let union: BTreeSet<Position> =
                asked.iter().flat_map(|&r| replicas[r].iter().filter(covered).copied()).collect();
            for &r in &asked {
                let mine: BTreeSet<Position> =
                    replicas[r].iter().filter(covered).copied().collect();
                prop_assert_eq!(&mine, &union, "replica {} after repair", r);
            }
            prop_assert!(m.next_cursor >= cursor, "the cursor never moves back");
            read.extend(got);
            cursor = m.next_cursor;
            if !m.has_more {
                return Ok(read);
            }
        }
        Err(TestCaseError::fail("the sync did not finish"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every replica answers every round, each truncating at random: the rounds return the
        /// union of all replicas, each entry exactly once, in order.
        #[test]
        fn rounds_return_the_union_exactly_once_in_order(
            seed in 1u64..u64::MAX, n in 0usize..60, replicas in 1usize..5, max in 1usize..9,
        ) {
            let mut rng = Rng(seed);
            let all = global(n, &mut rng);
            let mut held: Vec<BTreeSet<Position>> = (0..replicas)
                .map(|_| all.iter().filter(|_| rng.below(3) > 0).copied().collect())
                .collect();
            let union: Vec<Position> =
                held.iter().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();
            let read = sync_all(&mut held, max, &mut rng, |_| (0..replicas).collect())?;
            prop_assert_eq!(read, union);
            // Every round repaired what it covered, and the rounds covered everything.
            let first = &held[0];
            prop_assert!(held.iter().all(|h| h == first), "replicas converged");
        }

        /// Each entry is on at least two of three replicas (a quorum append) and each round
        /// reaches only a random two or three of them: still every entry, once, in order.
        #[test]
        fn any_two_of_three_replicas_suffice_for_quorum_written_entries(
            seed in 1u64..u64::MAX, n in 0usize..60, max in 1usize..9,
        ) {
            let mut rng = Rng(seed);
            let all = global(n, &mut rng);
            let mut held: Vec<BTreeSet<Position>> = vec![BTreeSet::new(); 3];
            for p in &all {
                let skip = rng.below(4); // 3: on all three
                for (r, h) in held.iter_mut().enumerate() {
                    if r != skip {
                        h.insert(*p);
                    }
                }
            }
            let read = sync_all(&mut held, max, &mut rng, |rng| match rng.below(4) {
                3 => vec![0, 1, 2],
                down => (0..3).filter(|r| *r != down).collect(),
            })?;
            prop_assert_eq!(read, all);
        }
    }

    #[test]
    fn rounds_never_pass_an_entry_a_truncated_replica_has_not_shown() {
        // `a` holds 1..=20 and answers two at a time; `b` holds only 20 and answers in full.
        let a: BTreeSet<Position> = (1..=20).map(|o| msg(o).position()).collect();
        let b: BTreeSet<Position> = [msg(20).position()].into();
        let (mut cursor, mut read, mut rounds) = (None, Vec::new(), 0);
        loop {
            let m = merge_batches(
                cursor,
                vec![('a', answer(&a, cursor, 2)), ('b', answer(&b, cursor, 100))],
                100,
            );
            assert!(m.entries.len() <= 2, "cut at `a`'s last entry each round");
            read.extend(orders(&m.entries));
            rounds += 1;
            cursor = m.next_cursor;
            if !m.has_more {
                break;
            }
        }
        assert_eq!(read, (1..=20).collect::<Vec<u64>>());
        assert_eq!(rounds, 10);
    }
}
