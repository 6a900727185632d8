//! A relay's rounds over a mailbox's replicas: appending one message, reading a batch for the
//! mailbox's owner, and acknowledging what the owner took.
//!
//! The replicas are the [`MAILBOX_REPLICAS`] nodes nearest the mailbox key at the time. When
//! some are down, the next nearest take their place, so messages queued during an outage may
//! sit on nodes beyond the first three. Reads and acks therefore go to the [`READ_SET`] nearest
//! nodes: the replicas plus as many again. Read repair copies what a read finds onto the
//! current replicas that lack it, so the mailbox converges back to its nearest three.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use libp2p::PeerId;
use tokio::sync::mpsc;
use zmesh_core::mailbox::{
    APPEND_QUORUM, AppendOutcome, AppendRound, AppendStep, MAILBOX_REPLICAS, ReplicaBatch,
    ReplicaReply, mailbox_key, merge_batches,
};
use zmesh_types::Key256;
use zmesh_wire::msg::{
    AuthPurpose, Cursor, Envelope, MAX_BATCH, MsgMessage, MsgOutcome, MsgStatus, UserAuth,
};

use super::answer;
use super::auth::verify_user_auth;
use super::mailbox::owner_mailbox;
use super::relay::MessageRelay;
use crate::clock::unix_ms;
use crate::storage::PeerAddrs;

/// Nodes a read or ack asks: the replicas and as many stand-ins.
pub const READ_SET: usize = 2 * MAILBOX_REPLICAS;

/// How a replica's answer to an append counts.
fn replica_reply(answer: &Result<MsgMessage, String>) -> ReplicaReply {
    match answer {
        Ok(MsgMessage::Result { outcome }) if outcome.status == MsgStatus::Ok => {
            if outcome.detail == "duplicate" {
                ReplicaReply::Duplicate
            } else {
                ReplicaReply::Stored
            }
        }
        Ok(MsgMessage::Result { outcome }) if outcome.status == MsgStatus::Quota => {
            ReplicaReply::Quota
        }
        _ => ReplicaReply::Failed,
    }
}

/// Answers needed from a set of `n` nodes for a read or ack to be trusted.
fn quorum_of(n: usize) -> usize {
    APPEND_QUORUM.min(n)
}

impl MessageRelay {
    /// Writes `envelope` to `recipient`'s mailbox; decided once a quorum stored it. If the
    /// first replicas cannot make a quorum, one more round goes to the next nearest nodes.
    pub(super) async fn append(
        self: &Arc<Self>,
        recipient: &[u8; 32],
        envelope: Envelope,
    ) -> AppendOutcome {
        let key = mailbox_key(recipient);
        let set = match self.nearest(key, READ_SET).await {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!("no mailbox nodes found: {e}");
                return AppendOutcome::Failed { stored: 0 };
            }
        };
        let first: Vec<PeerAddrs> = set.iter().take(MAILBOX_REPLICAS).cloned().collect();
        let (outcome, failed) = self.append_round(key, first, &envelope).await;
        if !matches!(outcome, AppendOutcome::Failed { .. }) {
            return outcome;
        }
        self.forget_nearest(&key);
        let second: Vec<PeerAddrs> =
            set.into_iter().filter(|p| !failed.contains(&p.0)).take(MAILBOX_REPLICAS).collect();
        if second.is_empty() {
            return outcome;
        }
        tracing::debug!(failed = failed.len(), "mailbox replicas failed; trying the next nearest");
        self.append_round(key, second, &envelope).await.0
    }

    /// One round; returns its outcome and the replicas that failed so far.
    async fn append_round(
        self: &Arc<Self>,
        key: Key256,
        replicas: Vec<PeerAddrs>,
        envelope: &Envelope,
    ) -> (AppendOutcome, HashSet<PeerId>) {
        let mut round = AppendRound::new(replicas.iter().map(|p| p.0).collect());
        let mut failed = HashSet::new();
        if !matches!(round.poll(), AppendStep::Send(_)) {
            return (AppendOutcome::Failed { stored: 0 }, failed);
        }
        let (tx, mut rx) = mpsc::channel(replicas.len());
        for replica in replicas {
            let relay = self.clone();
            let tx = tx.clone();
            let message = MsgMessage::MailboxAppend { mailbox: key.0, envelope: envelope.clone() };
            // Each request runs to its end even after the round is decided, so a late replica
            // still gets the message.
            tokio::spawn(async move {
                let reply = replica_reply(&relay.ask(&replica, message).await);
                let _ = tx.send((replica.0, reply)).await;
            });
        }
        drop(tx);
        loop {
            match round.poll() {
                AppendStep::Done(outcome) => return (outcome, failed),
                AppendStep::Send(_) | AppendStep::Wait => match rx.recv().await {
                    Some((peer, reply)) => {
                        if reply == ReplicaReply::Failed {
                            failed.insert(peer);
                        }
                        round.on_reply(&peer, reply);
                    }
                    None => {
                        let stored = round.stored();
                        return (AppendOutcome::Failed { stored }, failed);
                    }
                },
            }
        }
    }

    /// A batch of the owner's mailbox after `after`, merged from every node of the read set
    /// that answers; needs a quorum of answers.
    pub(super) async fn sync(
        self: &Arc<Self>,
        auth: UserAuth,
        after: Option<Cursor>,
        max_messages: u16,
    ) -> MsgMessage {
        let (key, set) = match self.owner_read_set(&auth, AuthPurpose::MailboxRead).await {
            Ok(found) => found,
            Err(outcome) => return MsgMessage::Result { outcome },
        };
        let max = usize::from(max_messages).clamp(1, MAX_BATCH);
        let read = MsgMessage::MailboxRead { auth, after, max_messages: max as u16 };
        let answers = join_all(set.iter().map(|p| self.ask(p, read.clone()))).await;
        let mut replies = Vec::new();
        for (peer, a) in set.iter().zip(answers) {
            match a {
                Ok(MsgMessage::Batch { messages, has_more, .. }) => {
                    replies.push((peer.0, ReplicaBatch { entries: messages, has_more }));
                }
                Ok(MsgMessage::Result { outcome }) if !outcome.status.is_success() => {
                    // The owner's signature is judged the same everywhere: pass a refusal on.
                    if matches!(outcome.status, MsgStatus::Unauthorized | MsgStatus::Replay) {
                        return MsgMessage::Result { outcome };
                    }
                }
                _ => {}
            }
        }
        if replies.len() < quorum_of(set.len()) {
            self.forget_nearest(&key);
            return answer(
                MsgStatus::NoRoute,
                format!("only {} of {} mailbox nodes answered", replies.len(), set.len()),
            );
        }
        let after_position = after.map(|c| (c.order, c.id));
        let merged = merge_batches(after_position, replies, max);
        self.repair(key, &set, merged.read_repair);
        self.stats.synced.inc_by(merged.entries.len() as u64);
        MsgMessage::Batch {
            messages: merged.entries,
            has_more: merged.has_more,
            next_cursor: merged.next_cursor.map(|(order, id)| Cursor { order, id }),
        }
    }

    /// Copies entries a read found onto the current replicas that lack them, in the background.
    fn repair(self: &Arc<Self>, key: Key256, set: &[PeerAddrs], copies: Vec<(PeerId, Envelope)>) {
        let replicas: Vec<PeerAddrs> = set.iter().take(MAILBOX_REPLICAS).cloned().collect();
        let copies: Vec<(PeerAddrs, Envelope)> = copies
            .into_iter()
            .filter_map(|(peer, e)| replicas.iter().find(|r| r.0 == peer).map(|r| (r.clone(), e)))
            .collect();
        if copies.is_empty() {
            return;
        }
        self.stats.read_repairs.inc_by(copies.len() as u64);
        let relay = self.clone();
        tokio::spawn(async move {
            for (replica, envelope) in copies {
                let message = MsgMessage::MailboxAppend { mailbox: key.0, envelope };
                if let Err(e) = relay.ask(&replica, message).await {
                    tracing::debug!(replica = %replica.0, "mailbox read repair failed: {e}");
                }
            }
        });
    }

    /// Deletes the owner's messages up to `upto` on every node of the read set that answers.
    pub(super) async fn ack(self: &Arc<Self>, auth: UserAuth, upto: Cursor) -> MsgMessage {
        let (key, set) = match self.owner_read_set(&auth, AuthPurpose::MailboxAck).await {
            Ok(found) => found,
            Err(outcome) => return MsgMessage::Result { outcome },
        };
        let message = MsgMessage::MailboxAck { auth, upto };
        let answers = join_all(set.iter().map(|p| self.ask(p, message.clone()))).await;
        let acked = answers
            .iter()
            .filter(|a| matches!(a, Ok(MsgMessage::Result { outcome }) if outcome.status == MsgStatus::Ok))
            .count();
        if acked < quorum_of(set.len()) {
            self.forget_nearest(&key);
            return answer(
                MsgStatus::NoRoute,
                format!("only {acked} of {} mailbox nodes took the ack", set.len()),
            );
        }
        self.stats.acks.inc();
        answer(MsgStatus::Ok, format!("acknowledged on {acked} nodes"))
    }

    /// The owner's mailbox key and its read set, once the authorisation checks out.
    async fn owner_read_set(
        &self,
        auth: &UserAuth,
        purpose: AuthPurpose,
    ) -> Result<(Key256, Vec<PeerAddrs>), MsgOutcome> {
        let key = self.check_owner(auth, purpose)?;
        let set = self.nearest(key, READ_SET).await.map_err(|e| {
            MsgOutcome::new(MsgStatus::Internal, format!("finding the mailbox nodes: {e}"))
        })?;
        Ok((key, set))
    }

    /// Checks the owner's authorisation here before it fans out (the replicas check it again):
    /// returns the mailbox key, or the answer refusing it.
    fn check_owner(&self, auth: &UserAuth, purpose: AuthPurpose) -> Result<Key256, MsgOutcome> {
        let key = owner_mailbox(auth);
        let mut guard = crate::lock(&self.guard);
        verify_user_auth(auth, purpose, &key.0, unix_ms(), &mut guard)
            .map(|_| key)
            .map_err(|e| MsgOutcome::new(e.status(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_answers_count_as_the_round_expects() {
        let result = |status, detail: &str| {
            Ok(MsgMessage::Result { outcome: MsgOutcome::new(status, detail) })
        };
        assert_eq!(replica_reply(&result(MsgStatus::Ok, "stored")), ReplicaReply::Stored);
        assert_eq!(replica_reply(&result(MsgStatus::Ok, "duplicate")), ReplicaReply::Duplicate);
        assert_eq!(replica_reply(&result(MsgStatus::Quota, "full")), ReplicaReply::Quota);
        assert_eq!(replica_reply(&result(MsgStatus::Internal, "")), ReplicaReply::Failed);
        assert_eq!(replica_reply(&Err("timeout".into())), ReplicaReply::Failed);
        assert_eq!(replica_reply(&Ok(MsgMessage::Ids { cursors: vec![] })), ReplicaReply::Failed);
    }

    #[test]
    fn small_meshes_need_every_node() {
        assert_eq!(quorum_of(0), 0);
        assert_eq!(quorum_of(1), 1);
        assert_eq!(quorum_of(6), APPEND_QUORUM);
    }
}
