//! One message written to a mailbox's replicas.
//!
//! The relay that accepted the message sends it to every replica at once, and answers its
//! sender as soon as a quorum has stored it: waiting for the slowest replica would tie every
//! send to the worst node near the key, while a quorum is already what durability and reads
//! need (see [`APPEND_QUORUM`]). Answers arriving after that are still counted, so the driver
//! can tell which replicas missed the message; read repair and anti-entropy fill them later.
//!
//! The round has no clock: a replica that does not answer in time is reported by the driver as
//! [`ReplicaReply::Failed`].
//!
//! # Fewer replicas than the quorum
//!
//! In a mesh smaller than [`MAILBOX_REPLICAS`](super::MAILBOX_REPLICAS) nodes (a devnet, the
//! first nodes of a new network) there may be fewer replicas than [`APPEND_QUORUM`]. The quorum
//! is then all of them: a message is queued once every existing replica has it, which is as
//! durable as that mesh can make it, instead of refusing offline messages outright. With no
//! replica at all nothing can be stored and the round fails at once.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use super::APPEND_QUORUM;

/// A replica's answer to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaReply {
    /// Stored and fsynced.
    Stored,
    /// It already held the message (a retry, or read repair got there first): counts as stored.
    Duplicate,
    /// The mailbox (or the replica's store) is full.
    Quota,
    /// Refused, errored, unreachable or timed out.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// At least a quorum holds the message; tell the sender it is queued. `stored` counts every
    /// replica that has it so far, and grows as late answers come in.
    Queued { stored: usize },
    /// No quorum can be reached any more and at least one replica is full: the sender learns
    /// that the recipient's mailbox is full, not that the network failed.
    Quota,
    /// No quorum can be reached any more, for any other reason.
    Failed { stored: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendStep<P> {
    /// Send the message to these replicas and report each answer with
    /// [`AppendRound::on_reply`]. Returned once.
    Send(Vec<P>),
    /// Answers are outstanding and none decides the outcome yet.
    Wait,
    /// The outcome; polling again returns it with `stored` updated by late answers.
    Done(AppendOutcome),
}

#[derive(Debug)]
pub struct AppendRound<P> {
    replicas: Vec<P>,
    quorum: usize,
    sent: bool,
    replies: HashMap<P, ReplicaReply>,
}

impl<P: Clone + Eq + Hash> AppendRound<P> {
    /// A round over `replicas` (duplicates ignored, order kept). Normally the
    /// [`MAILBOX_REPLICAS`](super::MAILBOX_REPLICAS) nodes nearest the mailbox key; more are
    /// accepted, and the quorum stays [`APPEND_QUORUM`].
    pub fn new(mut replicas: Vec<P>) -> Self {
        let mut seen = HashSet::new();
        replicas.retain(|p| seen.insert(p.clone()));
        let quorum = APPEND_QUORUM.min(replicas.len());
        AppendRound { replicas, quorum, sent: false, replies: HashMap::new() }
    }

    pub fn replicas(&self) -> &[P] {
        &self.replicas
    }

    /// How many replicas must store the message: [`APPEND_QUORUM`], or every replica when there
    /// are fewer (0 when there is none, and the round fails).
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Replicas that hold the message so far.
    pub fn stored(&self) -> usize {
        self.replies
            .values()
            .filter(|r| matches!(r, ReplicaReply::Stored | ReplicaReply::Duplicate))
            .count()
    }

    /// Replicas that have not answered yet, in the order given to [`new`](Self::new).
    pub fn pending(&self) -> Vec<P> {
        self.replicas.iter().filter(|p| !self.replies.contains_key(*p)).cloned().collect()
    }

    /// Replicas that answered but do not hold the message: candidates for a later repair.
    pub fn missing(&self) -> Vec<P> {
        self.replicas
            .iter()
            .filter(|p| {
                matches!(self.replies.get(*p), Some(ReplicaReply::Quota | ReplicaReply::Failed))
            })
            .cloned()
            .collect()
    }

    pub fn poll(&mut self) -> AppendStep<P> {
        if !self.sent && !self.replicas.is_empty() {
            self.sent = true;
            return AppendStep::Send(self.replicas.clone());
        }
        match self.outcome() {
            Some(outcome) => AppendStep::Done(outcome),
            None => AppendStep::Wait,
        }
    }

    /// The answer of `peer`. Only the first answer of each replica counts; answers from nodes
    /// that are not replicas of this round are ignored. Returns whether the answer counted.
    pub fn on_reply(&mut self, peer: &P, reply: ReplicaReply) -> bool {
        if !self.replicas.contains(peer) || self.replies.contains_key(peer) {
            return false;
        }
        self.replies.insert(peer.clone(), reply);
        true
    }

    /// The outcome once it is decided: queued as soon as a quorum stored it; failed as soon as
    /// the replicas still to answer could not make up a quorum even if all of them stored it.
    pub fn outcome(&self) -> Option<AppendOutcome> {
        let stored = self.stored();
        if self.quorum > 0 && stored >= self.quorum {
            return Some(AppendOutcome::Queued { stored });
        }
        let pending = self.replicas.len().saturating_sub(self.replies.len());
        if stored + pending >= self.quorum && self.quorum > 0 {
            return None;
        }
        if self.replies.values().any(|r| *r == ReplicaReply::Quota) {
            Some(AppendOutcome::Quota)
        } else {
            Some(AppendOutcome::Failed { stored })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(n: u32) -> AppendRound<u32> {
        AppendRound::new((0..n).collect())
    }

    #[test]
    fn queued_after_two_of_three_and_late_answers_still_count() {
        let mut r = round(3);
        assert_eq!(r.poll(), AppendStep::Send(vec![0, 1, 2]));
        assert_eq!(r.poll(), AppendStep::Wait);
        assert!(r.on_reply(&1, ReplicaReply::Stored));
        assert_eq!(r.poll(), AppendStep::Wait, "one copy is not enough");
        assert!(r.on_reply(&0, ReplicaReply::Duplicate));
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Queued { stored: 2 }));
        assert_eq!(r.pending(), vec![2]);
        assert!(r.on_reply(&2, ReplicaReply::Stored));
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Queued { stored: 3 }));
        assert!(r.missing().is_empty());
    }

    #[test]
    fn a_late_failure_does_not_undo_a_quorum() {
        let mut r = round(3);
        r.poll();
        r.on_reply(&0, ReplicaReply::Stored);
        r.on_reply(&2, ReplicaReply::Stored);
        r.on_reply(&1, ReplicaReply::Failed);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Queued { stored: 2 }));
        assert_eq!(r.missing(), vec![1]);
    }

    #[test]
    fn fails_as_soon_as_a_quorum_is_out_of_reach() {
        let mut r = round(3);
        r.poll();
        r.on_reply(&0, ReplicaReply::Failed);
        assert_eq!(r.poll(), AppendStep::Wait, "two may still store it");
        r.on_reply(&1, ReplicaReply::Failed);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Failed { stored: 0 }));
        // A late success is counted but a single copy is still no quorum.
        r.on_reply(&2, ReplicaReply::Stored);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Failed { stored: 1 }));
        assert_eq!(r.missing(), vec![0, 1]);
    }

    #[test]
    fn a_full_mailbox_is_reported_as_quota() {
        let mut r = round(3);
        r.poll();
        r.on_reply(&0, ReplicaReply::Stored);
        r.on_reply(&1, ReplicaReply::Quota);
        assert_eq!(r.poll(), AppendStep::Wait);
        r.on_reply(&2, ReplicaReply::Failed);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Quota));
        // A quota answer does not matter when a quorum stored it anyway.
        let mut r = round(3);
        r.poll();
        r.on_reply(&1, ReplicaReply::Quota);
        r.on_reply(&0, ReplicaReply::Stored);
        r.on_reply(&2, ReplicaReply::Stored);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Queued { stored: 2 }));
    }

    #[test]
    fn unknown_and_repeated_answers_are_ignored() {
        let mut r = round(3);
        r.poll();
        assert!(!r.on_reply(&9, ReplicaReply::Stored));
        assert!(r.on_reply(&0, ReplicaReply::Stored));
        assert!(!r.on_reply(&0, ReplicaReply::Stored), "one vote per replica");
        assert_eq!(r.stored(), 1);
        assert_eq!(r.poll(), AppendStep::Wait);
    }

    #[test]
    fn duplicates_in_the_replica_list_count_once() {
        let mut r = AppendRound::new(vec![5, 6, 5, 6]);
        assert_eq!(r.replicas(), &[5, 6]);
        assert_eq!(r.poll(), AppendStep::Send(vec![5, 6]));
        r.on_reply(&5, ReplicaReply::Stored);
        r.on_reply(&5, ReplicaReply::Stored);
        assert_eq!(r.poll(), AppendStep::Wait);
        r.on_reply(&6, ReplicaReply::Stored);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Queued { stored: 2 }));
    }

    #[test]
    fn with_fewer_replicas_than_the_quorum_all_of_them_must_store_it() {
        // One replica: its copy is enough.
        let mut r = round(1);
        assert_eq!(r.quorum(), 1);
        assert_eq!(r.poll(), AppendStep::Send(vec![0]));
        r.on_reply(&0, ReplicaReply::Stored);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Queued { stored: 1 }));
        let mut r = round(1);
        r.poll();
        r.on_reply(&0, ReplicaReply::Quota);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Quota));
        // Two replicas: both (the quorum is two anyway).
        let mut r = round(2);
        assert_eq!(r.quorum(), 2);
        r.poll();
        r.on_reply(&0, ReplicaReply::Stored);
        assert_eq!(r.poll(), AppendStep::Wait);
        r.on_reply(&1, ReplicaReply::Failed);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Failed { stored: 1 }));
    }

    #[test]
    fn no_replica_fails_at_once_without_sending() {
        let mut r = round(0);
        assert_eq!(r.quorum(), 0);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Failed { stored: 0 }));
        assert!(!r.on_reply(&0, ReplicaReply::Stored));
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Failed { stored: 0 }));
    }

    #[test]
    fn more_replicas_than_usual_keep_the_quorum_at_two() {
        let mut r = round(5);
        assert_eq!(r.quorum(), APPEND_QUORUM);
        r.poll();
        for p in 0..3 {
            r.on_reply(&p, ReplicaReply::Failed);
        }
        assert_eq!(r.poll(), AppendStep::Wait);
        r.on_reply(&3, ReplicaReply::Stored);
        r.on_reply(&4, ReplicaReply::Duplicate);
        assert_eq!(r.poll(), AppendStep::Done(AppendOutcome::Queued { stored: 2 }));
    }
}
