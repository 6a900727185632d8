//! The client's side of one mailbox sync.
//!
//! On reconnecting to any relay, a client asks for its mailbox after its cursor, batch by batch,
//! until the relay says nothing is left. Every message must reach the client's user exactly once
//! and in order, although the relay may merge several replicas, a batch may repeat what an
//! earlier one (or an earlier sync through another relay) delivered, and the same message may
//! sit in the mailbox twice under different orders. The session therefore drops entries at or
//! before its cursor and ids it has already delivered, and never moves the cursor back.

use super::seen::SeenIds;
use super::{Position, Positioned};

/// Entries asked for per batch: a typical mailbox drains in a round trip or two, and a client
/// hands one batch up while the next is on its way. A relay may answer fewer (a batch of large
/// messages must still fit its frame limit); `has_more` tells the client to ask again.
pub const SYNC_BATCH_MAX: u16 = 100;

#[derive(Debug, Clone)]
pub struct SyncSession {
    cursor: Option<Position>,
    max: u16,
    seen: SeenIds,
    done: bool,
    stalled: bool,
}

impl SyncSession {
    /// A sync after `cursor` (`None`: from the start of the mailbox), with a fresh memory of
    /// delivered ids.
    pub fn new(cursor: Option<Position>) -> Self {
        SyncSession::with_seen(cursor, SeenIds::default())
    }

    /// A sync that also drops the ids in `seen`: a client keeps its memory across syncs, so a
    /// copy of a message under a later order is not delivered again.
    pub fn with_seen(cursor: Option<Position>, seen: SeenIds) -> Self {
        SyncSession { cursor, max: SYNC_BATCH_MAX, seen, done: false, stalled: false }
    }

    /// Asks for `max` entries per batch instead of [`SYNC_BATCH_MAX`] (at least one).
    pub fn with_batch_max(mut self, max: u16) -> Self {
        self.max = max.max(1);
        self
    }

    /// The next request: entries after this cursor, at most this many.
    pub fn request(&self) -> (Option<Position>, u16) {
        (self.cursor, self.max)
    }

    /// A batch from the relay, answering the last [`request`](Self::request). Returns the
    /// entries to hand up, sorted by position: those after the cursor whose id has not been
    /// delivered before. The cursor advances to the highest position in the batch, or the
    /// relay's `next_cursor` if that is higher (the relay may have read past entries it does not
    /// send, such as expired ones, and re-reading them would never end); it never moves back.
    ///
    /// The session is done after a batch without `has_more`, and also after one that claims
    /// more but does not move the cursor: asking again would get the same answer forever, so
    /// the session stops and [`stalled`](Self::stalled) says why. A batch after that is still
    /// filtered the same way.
    pub fn on_batch<E: Positioned>(
        &mut self,
        mut entries: Vec<E>,
        has_more: bool,
        next_cursor: Option<Position>,
    ) -> Vec<E> {
        entries.sort_by_key(Positioned::position);
        let before = self.cursor;
        let mut cursor = self.cursor.max(next_cursor);
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let position = entry.position();
            if Some(position) <= before {
                continue;
            }
            cursor = cursor.max(Some(position));
            if self.seen.insert(position.1) {
                out.push(entry);
            }
        }
        self.cursor = cursor;
        if !has_more {
            self.done = true;
        } else if self.cursor == before {
            self.done = true;
            self.stalled = true;
        }
        out
    }

    /// Where the next request starts.
    pub fn cursor(&self) -> Option<Position> {
        self.cursor
    }

    /// What to acknowledge once the entries handed up are safe on the device: the replicas may
    /// then drop everything up to it. This is the cursor itself, also when this session has not
    /// moved it: acknowledging a position again is harmless, and it repeats an ack that may have
    /// been lost with a previous connection. `None` only when nothing has ever been read.
    pub fn ack_position(&self) -> Option<Position> {
        self.cursor
    }

    /// Nothing more to ask for in this session.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The session ended because a batch claimed more but made no progress; sync again later,
    /// through another relay if this one keeps doing it.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// The memory of delivered ids, to carry into the next sync.
    pub fn into_seen(self) -> SeenIds {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::testing::{Msg, msg};

    fn orders(entries: &[Msg]) -> Vec<u64> {
        entries.iter().map(|m| m.order).collect()
    }

    fn pos(order: u64) -> Option<Position> {
        Some(msg(order).position())
    }

    #[test]
    fn batches_are_delivered_in_order_until_nothing_is_left() {
        let mut s = SyncSession::new(None).with_batch_max(2);
        assert_eq!(s.request(), (None, 2));
        let got = s.on_batch(vec![msg(2), msg(1)], true, pos(2));
        assert_eq!(orders(&got), vec![1, 2], "sorted by position");
        assert!(!s.done());
        assert_eq!(s.request(), (pos(2), 2));
        let got = s.on_batch(vec![msg(3)], false, pos(3));
        assert_eq!(orders(&got), vec![3]);
        assert!(s.done() && !s.stalled());
        assert_eq!(s.ack_position(), pos(3));
    }

    #[test]
    fn duplicates_across_batches_are_dropped() {
        let mut s = SyncSession::new(None);
        assert_eq!(orders(&s.on_batch(vec![msg(1), msg(2)], true, pos(2))), vec![1, 2]);
        // The relay repeats 2 (at or before the cursor) and the same message as 1 under a later
        // order (a retried send): neither is delivered again, but the cursor passes them.
        let copy = Msg { order: 3, ..msg(1) };
        let got = s.on_batch(vec![msg(2), copy, msg(4)], false, pos(4));
        assert_eq!(orders(&got), vec![4]);
        assert_eq!(s.cursor(), pos(4));
        // A copy within one batch too.
        let mut s = SyncSession::new(None);
        let copy = Msg { order: 5, ..msg(1) };
        let got = s.on_batch(vec![msg(1), msg(1), copy.clone()], false, None);
        assert_eq!(orders(&got), vec![1]);
        assert_eq!(s.cursor(), Some(copy.position()));
    }

    #[test]
    fn the_cursor_never_moves_back() {
        let mut s = SyncSession::new(pos(10));
        assert_eq!(s.ack_position(), pos(10), "a lost ack is repeated");
        let got = s.on_batch(vec![msg(4), msg(11)], true, pos(4));
        assert_eq!(orders(&got), vec![11], "entries before the cursor are not delivered");
        assert_eq!(s.cursor(), pos(11));
        let got = s.on_batch(Vec::<Msg>::new(), false, None);
        assert!(got.is_empty());
        assert_eq!(s.cursor(), pos(11));
        assert_eq!(s.ack_position(), pos(11));
    }

    #[test]
    fn the_relay_may_move_the_cursor_past_entries_it_skipped() {
        let mut s = SyncSession::new(pos(1));
        let got = s.on_batch(vec![msg(2)], true, pos(7));
        assert_eq!(orders(&got), vec![2]);
        assert_eq!(s.cursor(), pos(7));
        assert!(!s.done());
    }

    #[test]
    fn a_batch_without_progress_ends_the_session() {
        let mut s = SyncSession::new(pos(5));
        let got = s.on_batch(vec![msg(3)], true, pos(5));
        assert!(got.is_empty());
        assert!(s.done() && s.stalled());
        assert_eq!(s.cursor(), pos(5));
    }

    #[test]
    fn the_memory_of_ids_carries_over_to_the_next_sync() {
        let mut s = SyncSession::new(None);
        s.on_batch(vec![msg(1)], false, pos(1));
        let cursor = s.cursor();
        let mut next = SyncSession::with_seen(cursor, s.into_seen());
        let got = next.on_batch(vec![Msg { order: 9, ..msg(1) }, msg(2)], false, pos(9));
        assert_eq!(orders(&got), vec![2]);
        assert_eq!(SyncSession::new(None).with_batch_max(0).request(), (None, 1));
    }
}
