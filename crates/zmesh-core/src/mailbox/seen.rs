//! A bounded memory of message ids already delivered.
//!
//! Mailbox positions are unique per `(order, id)`, but the same message can sit in a mailbox
//! twice under different orders: a sender that retries through another relay after a timeout
//! keeps the id and gets a new order. Replicas drop a second copy by id when they both see it,
//! but two replicas can each have taken a different copy. Whoever hands messages onwards (the
//! client, or a relay delivering live) therefore drops ids it has seen recently. The memory is
//! bounded so a long-lived client or a busy relay does not grow without limit; the oldest ids go
//! first, and a copy old enough to be forgotten has long been read past by the cursor.

use std::collections::{HashSet, VecDeque};

/// Default capacity: ten times the messages a mailbox holds at a time under the default store
/// limits (10 000), for 1.6 MB of ids (a few MB with the set and the queue).
pub const SEEN_IDS_CAPACITY: usize = 100_000;

#[derive(Debug, Clone)]
pub struct SeenIds {
    capacity: usize,
    set: HashSet<[u8; 16]>,
    /// Insertion order, oldest first.
    queue: VecDeque<[u8; 16]>,
}

impl Default for SeenIds {
    fn default() -> Self {
        SeenIds::new(SEEN_IDS_CAPACITY)
    }
}

impl SeenIds {
    /// Remembers at most `capacity` ids, evicting the oldest first. With a capacity of zero it
    /// remembers nothing and every id counts as new.
    pub fn new(capacity: usize) -> Self {
        SeenIds { capacity, set: HashSet::new(), queue: VecDeque::new() }
    }

    /// Records `id`; `true` if it was not remembered (a message to deliver), `false` for a
    /// duplicate. Seeing an id again does not refresh it: eviction is by first sighting.
    pub fn insert(&mut self, id: [u8; 16]) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        if self.capacity == 0 {
            return true;
        }
        while self.queue.len() >= self.capacity {
            match self.queue.pop_front() {
                Some(old) => {
                    self.set.remove(&old);
                }
                None => break,
            }
        }
        self.set.insert(id);
        self.queue.push_back(id);
        true
    }

    pub fn contains(&self, id: &[u8; 16]) -> bool {
        self.set.contains(id)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn a_second_sighting_is_a_duplicate() {
        let mut s = SeenIds::default();
        assert_eq!(s.capacity(), SEEN_IDS_CAPACITY);
        assert!(s.is_empty());
        assert!(s.insert(id(1)));
        assert!(!s.insert(id(1)));
        assert!(s.contains(&id(1)));
        assert!(!s.contains(&id(2)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn the_oldest_ids_are_evicted_first() {
        let mut s = SeenIds::new(3);
        for n in 1..=3 {
            assert!(s.insert(id(n)));
        }
        // Seeing 1 again does not make it younger.
        assert!(!s.insert(id(1)));
        assert!(s.insert(id(4)));
        assert_eq!(s.len(), 3);
        assert!(!s.contains(&id(1)), "first in, first out");
        assert!(s.contains(&id(2)) && s.contains(&id(3)) && s.contains(&id(4)));
        assert!(s.insert(id(1)), "a forgotten id counts as new again");
        assert!(!s.contains(&id(2)));
    }

    #[test]
    fn stays_within_capacity_under_many_inserts() {
        let mut s = SeenIds::new(100);
        for n in 0..10_000 {
            s.insert(id(n));
            assert!(s.len() <= 100);
        }
        assert!((9_900..10_000).all(|n| s.contains(&id(n))));
        assert!(!s.contains(&id(9_899)));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut s = SeenIds::new(0);
        assert!(s.insert(id(1)));
        assert!(s.insert(id(1)));
        assert!(s.is_empty());
    }
}
