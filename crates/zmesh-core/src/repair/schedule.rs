//! When this node scans each chunk it holds.
//!
//! A holder's *rank* for a chunk is its position among the chunk's placement, ordered by XOR
//! distance to the storage key (0 = closest = the warden). A chunk is due when nothing has been
//! heard from any warden for `period + rank × takeover_step` (plus a per-chunk jitter below
//! `jitter`): the warden scans every period, and its health checks reset everyone else's clock,
//! so rank 1 acts only after the warden missed a full takeover step, rank 2 after rank 1 did too,
//! and so on. Nodes outside the placement (rank `None`) never scan.
//!
//! Only checks from a closer-ranked holder count as "heard from a warden": a node further down
//! the line checking the chunk must not silence the warden itself. And a holder whose deadline
//! passed while a closer holder still answers defers to it (the warden may just be busy), up to
//! [`MAX_DEFERRALS`] times in a row, after which it acts anyway.
//!
//! Time is the node's storage clock in Unix milliseconds, passed in by the caller.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use zmesh_types::{Key256, NodeId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// How often the warden scans a chunk.
    pub period_ms: u64,
    /// How much longer each next rank waits before taking over.
    pub takeover_step_ms: u64,
    /// Largest per-chunk jitter added to every deadline, so scans spread out.
    pub jitter_ms: u64,
}

impl ScheduleConfig {
    /// Takeover after half a period per rank, jitter up to a tenth of a period: the warden's next
    /// scan (at most `period + jitter`) always comes before rank 1's deadline
    /// (`period + period / 2`).
    pub fn from_period(period_ms: u64) -> Self {
        ScheduleConfig { period_ms, takeover_step_ms: period_ms / 2, jitter_ms: period_ms / 10 }
    }
}

/// Times in a row a holder leaves a due chunk to a closer holder that answers but does not scan.
pub const MAX_DEFERRALS: u32 = 2;

#[derive(Debug, Clone)]
struct Watch {
    rank: Option<usize>,
    expires_at_ms: u64,
    last_heard_ms: u64,
    jitter_ms: u64,
    in_flight: bool,
    deferrals: u32,
    /// Scan at the next opportunity (a holder was lost), whatever the deadline.
    urgent: bool,
}

#[derive(Debug)]
pub struct WardenSchedule {
    config: ScheduleConfig,
    local: NodeId,
    watches: HashMap<Key256, Watch>,
}

/// This node's rank among `holders` (node ids of the placement, any order, duplicates ignored)
/// for `key`, or `None` when it is not one of them.
pub fn rank_of(key: &Key256, local: &NodeId, holders: &[NodeId]) -> Option<usize> {
    if !holders.contains(local) {
        return None;
    }
    let mut closer: Vec<&NodeId> = holders
        .iter()
        .filter(|h| *h != local && key.cmp_distance(h, local) == std::cmp::Ordering::Less)
        .collect();
    closer.sort();
    closer.dedup();
    Some(closer.len())
}

impl WardenSchedule {
    pub fn new(config: ScheduleConfig, local: NodeId) -> Self {
        WardenSchedule { config, local, watches: HashMap::new() }
    }

    pub fn config(&self) -> ScheduleConfig {
        self.config
    }

    /// Starts watching `key`, or updates its rank and expiry. A new watch counts as just heard
    /// from a warden: a node that has just learned of a chunk (or restarted) waits a full period
    /// before scanning it, rather than every holder scanning at once.
    pub fn watch(&mut self, key: Key256, rank: Option<usize>, expires_at_ms: u64, now_ms: u64) {
        let jitter_ms = self.jitter_for(&key);
        let watch = self.watches.entry(key).or_insert(Watch {
            rank,
            expires_at_ms,
            last_heard_ms: now_ms,
            jitter_ms,
            in_flight: false,
            deferrals: 0,
            urgent: false,
        });
        watch.rank = rank;
        watch.expires_at_ms = expires_at_ms;
    }

    pub fn forget(&mut self, key: &Key256) {
        self.watches.remove(key);
    }

    /// A node of rank `sender_rank` (`None`: unknown, e.g. before any record) has checked `key`.
    /// It counts only if that node is closer in line than this one.
    pub fn heard_warden(&mut self, key: &Key256, sender_rank: Option<usize>, now_ms: u64) {
        if let Some(w) = self.watches.get_mut(key) {
            let closer = match (sender_rank, w.rank) {
                (Some(sender), Some(mine)) => sender < mine,
                _ => true,
            };
            if closer {
                w.last_heard_ms = w.last_heard_ms.max(now_ms);
                w.deferrals = 0;
            }
        }
    }

    /// This node's scan found a closer holder alive: whether to leave the chunk to it this time.
    pub fn defer(&mut self, key: &Key256) -> bool {
        match self.watches.get_mut(key) {
            Some(w) if w.deferrals < MAX_DEFERRALS => {
                w.deferrals += 1;
                true
            }
            _ => false,
        }
    }

    /// The keys due for a scan at `now_ms`, most overdue first, at most `limit`; each is marked
    /// in flight until [`finished`](Self::finished).
    pub fn due(&mut self, now_ms: u64, limit: usize) -> Vec<Key256> {
        let config = self.config;
        let mut due: Vec<(u64, Key256)> = self
            .watches
            .iter()
            .filter(|(_, w)| !w.in_flight)
            .filter_map(|(k, w)| deadline(&config, w).map(|d| (d, *k)))
            .filter(|(d, _)| *d <= now_ms)
            .collect();
        due.sort();
        due.truncate(limit);
        for (_, key) in &due {
            if let Some(w) = self.watches.get_mut(key) {
                w.in_flight = true;
                w.urgent = false;
            }
        }
        due.into_iter().map(|(_, k)| k).collect()
    }

    /// A holder of `key` was lost, or a repair failed: scan it now rather than at the deadline
    /// (if this node scans it at all). Called during a scan, it asks for another right after.
    pub fn expedite(&mut self, key: &Key256) {
        if let Some(w) = self.watches.get_mut(key) {
            w.urgent = true;
        }
    }

    /// The scan of `key` ended (whatever its outcome): it counts as a warden's check.
    pub fn finished(&mut self, key: &Key256, now_ms: u64) {
        if let Some(w) = self.watches.get_mut(key) {
            w.in_flight = false;
            w.last_heard_ms = w.last_heard_ms.max(now_ms);
        }
    }

    /// The earliest deadline of any watched chunk not in flight.
    pub fn next_deadline(&self) -> Option<u64> {
        self.watches
            .values()
            .filter(|w| !w.in_flight)
            .filter_map(|w| deadline(&self.config, w))
            .min()
    }

    pub fn rank(&self, key: &Key256) -> Option<usize> {
        self.watches.get(key).and_then(|w| w.rank)
    }

    pub fn expires_at(&self, key: &Key256) -> Option<u64> {
        self.watches.get(key).map(|w| w.expires_at_ms)
    }

    /// Chunks watched, and of those, the ones this node is the first-ranked warden of.
    pub fn counts(&self) -> (usize, usize) {
        let wardened = self.watches.values().filter(|w| w.rank == Some(0)).count();
        (self.watches.len(), wardened)
    }

    /// Spreads deadlines with a jitter that is fixed per (node, chunk): reproducible in tests,
    /// different across the holders of a chunk.
    fn jitter_for(&self, key: &Key256) -> u64 {
        if self.config.jitter_ms == 0 {
            return 0;
        }
        let h = Sha256::new().chain_update(self.local.0).chain_update(key.0).finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        u64::from_be_bytes(first) % self.config.jitter_ms
    }
}

fn deadline(config: &ScheduleConfig, w: &Watch) -> Option<u64> {
    let rank = w.rank? as u64;
    if w.urgent {
        return Some(0);
    }
    Some(
        w.last_heard_ms
            .saturating_add(config.period_ms)
            .saturating_add(rank.saturating_mul(config.takeover_step_ms))
            .saturating_add(w.jitter_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: u64 = 10_000;
    const T0: u64 = 1_800_000_000_000;

    fn ids(n: u8) -> Vec<NodeId> {
        (0..n).map(|i| Key256::hash(&[i])).collect()
    }

    /// The holders of `key` ordered by rank.
    fn ranked(key: &Key256, holders: &[NodeId]) -> Vec<NodeId> {
        let mut sorted = holders.to_vec();
        sorted.sort_by(|a, b| key.cmp_distance(a, b));
        sorted
    }

    #[test]
    fn rank_is_position_by_distance_and_none_outside_the_placement() {
        let key = Key256::hash(b"chunk");
        let holders = ids(15);
        for (expected, id) in ranked(&key, &holders).iter().enumerate() {
            assert_eq!(rank_of(&key, id, &holders), Some(expected));
        }
        assert_eq!(rank_of(&key, &Key256::hash(b"stranger"), &holders), None);
    }

    /// Simulates every holder's schedule with injected time. Returns who scanned when.
    fn simulate(
        holders: &[NodeId],
        alive: impl Fn(usize, u64) -> bool,
        until: u64,
    ) -> Vec<(u64, usize)> {
        let key = Key256::hash(b"chunk");
        let config = ScheduleConfig::from_period(PERIOD);
        let mut schedules: Vec<WardenSchedule> = holders
            .iter()
            .map(|id| {
                let mut s = WardenSchedule::new(config, *id);
                s.watch(key, rank_of(&key, id, holders), u64::MAX, T0);
                s
            })
            .collect();
        let mut scans = Vec::new();
        let mut now = T0;
        while now < until {
            now += 100;
            for i in 0..holders.len() {
                if !alive(i, now) {
                    continue;
                }
                if !schedules[i].due(now, 10).is_empty() {
                    let my_rank = schedules[i].rank(&key);
                    // The scan's health checks reach every live holder; a closer live holder
                    // answers, so this one defers to it (up to MAX_DEFERRALS times).
                    let closer_alive = (0..holders.len())
                        .any(|j| alive(j, now) && schedules[j].rank(&key) < my_rank);
                    if closer_alive && schedules[i].defer(&key) {
                        schedules[i].finished(&key, now);
                        continue;
                    }
                    scans.push((now, i));
                    for (j, s) in schedules.iter_mut().enumerate() {
                        if alive(j, now) {
                            s.heard_warden(&key, my_rank, now);
                        }
                    }
                    schedules[i].finished(&key, now);
                }
            }
        }
        scans
    }

    #[test]
    fn only_the_warden_scans_while_it_lives_once_per_period() {
        let key = Key256::hash(b"chunk");
        let holders = ids(15);
        let warden = ranked(&key, &holders)[0];
        let scans = simulate(&holders, |_, _| true, T0 + 20 * PERIOD);
        assert!(scans.iter().all(|(_, i)| holders[*i] == warden), "{scans:?}");
        assert!((18..=20).contains(&scans.len()), "{} scans in 20 periods", scans.len());
        for pair in scans.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!((PERIOD..=PERIOD + PERIOD / 10).contains(&gap), "gap {gap}");
        }
    }

    #[test]
    fn the_next_in_line_takes_over_when_the_warden_dies_and_no_two_scan_in_one_period() {
        let key = Key256::hash(b"chunk");
        let holders = ids(15);
        let order = ranked(&key, &holders);
        let index_of = |id: &NodeId| holders.iter().position(|h| h == id).unwrap();
        let (first, second) = (index_of(&order[0]), index_of(&order[1]));
        let death = T0 + 5 * PERIOD + 300;
        let second_death = T0 + 12 * PERIOD;
        let alive = move |i: usize, now: u64| {
            !(i == first && now >= death || i == second && now >= second_death)
        };
        let scans = simulate(&holders, alive, T0 + 25 * PERIOD);
        let after_death: Vec<_> = scans.iter().filter(|(t, _)| *t > death).collect();
        assert_eq!(after_death[0].1, second, "rank 1 takes over");
        // It waited period + takeover step (+ jitter) since the warden's last scan.
        let last_by_warden = scans.iter().rfind(|(_, i)| *i == first).unwrap().0;
        let waited = after_death[0].0 - last_by_warden;
        assert!((PERIOD + PERIOD / 2..=2 * PERIOD).contains(&waited), "waited {waited}");
        let third = index_of(&order[2]);
        assert!(scans.iter().any(|(t, i)| *t > second_death && *i == third), "rank 2 follows");
        for pair in scans.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= PERIOD, "two scans within a period: {pair:?}");
        }
    }

    #[test]
    fn a_busy_warden_is_not_preempted_and_others_cannot_silence_it() {
        let key = Key256::hash(b"chunk");
        let config = ScheduleConfig::from_period(PERIOD);
        let mut warden = WardenSchedule::new(config, Key256::hash(b"w"));
        let mut second = WardenSchedule::new(config, Key256::hash(b"s"));
        warden.watch(key, Some(0), u64::MAX, T0);
        second.watch(key, Some(1), u64::MAX, T0);
        // Rank 1's checks do not push the warden's deadline back.
        let before = warden.next_deadline();
        warden.heard_warden(&key, Some(1), T0 + 5_000);
        assert_eq!(warden.next_deadline(), before);
        // The warden is alive but late: rank 1 defers twice, then acts.
        let mut now = second.next_deadline().unwrap();
        for _ in 0..MAX_DEFERRALS {
            assert_eq!(second.due(now, 1), vec![key]);
            assert!(second.defer(&key));
            second.finished(&key, now);
            now = second.next_deadline().unwrap();
        }
        assert_eq!(second.due(now, 1), vec![key]);
        assert!(!second.defer(&key), "acts after {MAX_DEFERRALS} deferrals");
        // A check by the warden resets the count.
        second.finished(&key, now);
        second.heard_warden(&key, Some(0), now + 1);
        assert!(second.defer(&key));
    }

    #[test]
    fn a_new_watch_waits_a_period_and_outsiders_never_scan() {
        let key = Key256::hash(b"chunk");
        let mut s = WardenSchedule::new(ScheduleConfig::from_period(PERIOD), Key256::hash(b"me"));
        s.watch(key, Some(0), u64::MAX, T0);
        assert!(s.due(T0 + PERIOD - 1, 10).is_empty());
        let deadline = s.next_deadline().unwrap();
        assert!((T0 + PERIOD..T0 + PERIOD + PERIOD / 10).contains(&deadline));
        assert_eq!(s.due(deadline, 10), vec![key]);
        assert!(s.due(deadline + 1, 10).is_empty(), "in flight until finished");
        s.finished(&key, deadline);
        s.expedite(&key);
        assert_eq!(s.due(deadline + 1, 10), vec![key], "a lost holder makes it due at once");
        s.finished(&key, deadline + 1);
        assert!(s.due(deadline + 2, 10).is_empty());
        s.watch(key, None, u64::MAX, deadline);
        s.expedite(&key);
        assert_eq!(s.next_deadline(), None);
        assert!(s.due(u64::MAX, 10).is_empty());
        assert_eq!(s.counts(), (1, 0));
    }
}
