//! Which request a busy node serves next (seed 001, "Message Queuing"): control before key
//! exchange before user messages before background traffic.
//!
//! Control frames (handshake, PING / PONG, flow control) never wait here: they have their own
//! stream per connection, answered by the connection's task. This gate orders everything else
//! a node works on: at most `running` requests are served at once; more wait in one queue per
//! priority and leave highest priority first (first in, first out within a priority); beyond
//! `queued` waiting requests, new ones are refused (the driver answers THROTTLED, SYSTEM_LOAD).
//! A flood of low-priority requests therefore fills only its own share of the waiting room and
//! never delays a higher-priority request by more than the requests already running.

use std::collections::VecDeque;

/// Priority classes, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Handshake, keep-alive, close.
    Control = 0,
    /// Prekey bundles: starting a session.
    KeyExchange = 1,
    /// User messages: send, sync, ack, forward, mailbox reads and writes.
    Message = 2,
    /// Presence, records, peer exchange.
    Background = 3,
}

impl Priority {
    pub const ALL: [Priority; 4] =
        [Priority::Control, Priority::KeyExchange, Priority::Message, Priority::Background];

    fn index(self) -> usize {
        self as usize
    }
}

/// What became of a request offered to the gate.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// Serve it now.
    Run(T),
    /// It waits; [`PriorityGate::finish`] hands it out when its turn comes.
    Queued,
    /// Too many are waiting: refuse it.
    Refused(T),
}

#[derive(Debug)]
pub struct PriorityGate<T> {
    running: usize,
    max_running: usize,
    max_queued: usize,
    queues: [VecDeque<T>; 4],
}

impl<T> PriorityGate<T> {
    pub fn new(max_running: usize, max_queued: usize) -> Self {
        PriorityGate {
            running: 0,
            max_running: max_running.max(1),
            max_queued,
            queues: [VecDeque::new(), VecDeque::new(), VecDeque::new(), VecDeque::new()],
        }
    }

    /// Offers a request of `priority`.
    pub fn admit(&mut self, priority: Priority, item: T) -> Admission<T> {
        if self.running < self.max_running && self.queued() == 0 {
            self.running += 1;
            return Admission::Run(item);
        }
        if self.queued() >= self.max_queued {
            return Admission::Refused(item);
        }
        self.queues[priority.index()].push_back(item);
        Admission::Queued
    }

    /// A running request finished; returns the next one to serve, if any waits.
    pub fn finish(&mut self) -> Option<(Priority, T)> {
        self.running = self.running.saturating_sub(1);
        for priority in Priority::ALL {
            if let Some(item) = self.queues[priority.index()].pop_front() {
                self.running += 1;
                return Some((priority, item));
            }
        }
        None
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_free_gate_runs_at_once_and_a_busy_one_queues_by_priority() {
        let mut gate = PriorityGate::new(2, 10);
        assert_eq!(gate.admit(Priority::Background, "b0"), Admission::Run("b0"));
        assert_eq!(gate.admit(Priority::Background, "b1"), Admission::Run("b1"));
        assert_eq!(gate.admit(Priority::Background, "b2"), Admission::Queued);
        assert_eq!(gate.admit(Priority::Message, "m0"), Admission::Queued);
        assert_eq!(gate.admit(Priority::KeyExchange, "k0"), Admission::Queued);
        assert_eq!(gate.admit(Priority::Message, "m1"), Admission::Queued);
        let order: Vec<&str> = std::iter::from_fn(|| gate.finish().map(|(_, i)| i)).collect();
        assert_eq!(order, ["k0", "m0", "m1", "b2"]);
        assert_eq!(gate.running(), 1, "b2 still runs");
    }

    #[test]
    fn a_full_waiting_room_refuses() {
        let mut gate = PriorityGate::new(1, 2);
        assert!(matches!(gate.admit(Priority::Message, 0), Admission::Run(0)));
        assert_eq!(gate.admit(Priority::Message, 1), Admission::Queued);
        assert_eq!(gate.admit(Priority::Message, 2), Admission::Queued);
        assert_eq!(gate.admit(Priority::Control, 3), Admission::Refused(3));
    }

    proptest! {
        /// Whatever arrives, nothing is lost or served twice, the limits hold, and a request
        /// is never handed out while one of higher priority waits.
        #[test]
        fn order_and_bounds(ops in proptest::collection::vec((0u8..4, any::<bool>()), 1..500)) {
            let mut gate = PriorityGate::new(3, 20);
            let mut waiting: Vec<(Priority, u32)> = Vec::new();
            let (mut admitted, mut refused, mut served) = (0u32, 0u32, 0u32);
            for (n, (p, finish)) in ops.into_iter().enumerate() {
                let priority = Priority::ALL[p as usize];
                if finish && gate.running() > 0 {
                    served += 1;
                    if let Some((got, item)) = gate.finish() {
                        prop_assert!(waiting.iter().all(|(w, _)| *w >= got));
                        let pos = waiting.iter().position(|(_, i)| *i == item).unwrap();
                        waiting.remove(pos);
                    }
                } else {
                    match gate.admit(priority, n as u32) {
                        Admission::Run(_) => admitted += 1,
                        Admission::Queued => {
                            admitted += 1;
                            waiting.push((priority, n as u32));
                        }
                        Admission::Refused(_) => refused += 1,
                    }
                }
                prop_assert!(gate.running() <= 3);
                prop_assert!(gate.queued() <= 20);
                prop_assert_eq!(gate.queued(), waiting.len());
                prop_assert_eq!(admitted, served + gate.running() as u32 + gate.queued() as u32);
            }
            let _ = refused;
        }
    }
}
