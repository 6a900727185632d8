//! Replicated offline mailboxes (seed 000, "Offline Message Queue"), as sans-IO pieces a relay
//! and a client drive:
//!
//! - [`mailbox_key`]: where a recipient's mailbox lives in the key space; it is replicated on
//!   the [`MAILBOX_REPLICAS`] nodes nearest that key.
//! - [`OrderClock`]: the `order` a relay stamps on each message it accepts, once, so that every
//!   replica sorts the message into the same place.
//! - [`AppendRound`]: one message written to the replicas; the sender hears "queued" once
//!   [`APPEND_QUORUM`] of them have fsynced it.
//! - [`merge_batches`]: one read round over several replicas' answers: their union in order,
//!   cut where a truncated answer stops so nothing is ever skipped, plus the copies each
//!   answering replica lacks (read repair).
//! - [`SeenIds`]: a bounded memory of delivered message ids, to drop copies of a message that
//!   reached a mailbox twice (a sender's retry through another relay gets a new `order`).
//! - [`SyncSession`]: the client's side of one sync: a cursor that only moves forward, and
//!   every message handed up once.
//!
//! Entries sort by [`Position`] = `(order, id)`. Both halves are set before the message reaches
//! any replica and never change, so a position means the same place in every replica's copy
//! of a mailbox: a cursor from one relay is valid at any other.

mod append;
mod merge;
mod order;
mod seen;
mod sync;
#[cfg(test)]
mod testing;

use sha2::{Digest, Sha256};
use zmesh_types::Key256;

pub use append::{AppendOutcome, AppendRound, AppendStep, ReplicaReply};
pub use merge::{Merged, ReplicaBatch, merge_batches};
pub use order::OrderClock;
pub use seen::{SEEN_IDS_CAPACITY, SeenIds};
pub use sync::{SYNC_BATCH_MAX, SyncSession};

/// How many nodes hold each mailbox: the ones nearest its [`mailbox_key`].
///
/// Three survives the loss of any one replica with a majority (two) left, so writes and reads
/// keep working through a single crash or restart, and each message costs only three fsyncs.
pub const MAILBOX_REPLICAS: usize = 3;

/// How many replicas must have stored a message before its sender is told it is queued.
///
/// Two of three: a message acknowledged to its sender is fsynced on two nodes, so one crash
/// cannot lose it; and any two replicas share at least one node with those two, so a reader
/// that reaches two of the three replicas sees every acknowledged message.
pub const APPEND_QUORUM: usize = 2;

// A full replica set can reach the quorum, and any two quorums share a replica.
const _: () = assert!(APPEND_QUORUM <= MAILBOX_REPLICAS && 2 * APPEND_QUORUM > MAILBOX_REPLICAS);

/// A place in a mailbox: `(order, message id)`. Entries sort by it; ties in `order` (two relays
/// may stamp the same millisecond) are broken by the id, alike on every replica.
pub type Position = (u64, [u8; 16]);

/// Something stored in a mailbox, which knows its place there.
pub trait Positioned {
    fn position(&self) -> Position;
}

/// Messages on the wire know their place: relays merge replicas' batches of them, and clients
/// sync with them.
impl Positioned for zmesh_wire::msg::Envelope {
    fn position(&self) -> Position {
        (self.order, self.id)
    }
}

/// The key a recipient's mailbox is stored under: `SHA-256("zmesh/mailbox/v1\0" ‖ address)`.
///
/// The domain prefix makes the key unrelated to every other value derived from the address
/// (storage keys hash the same address), so no other protocol can be made to compute it; the
/// version lets the scheme change without old and new keys colliding. Anyone who knows the
/// address can find the mailbox, which is what a sender needs.
pub fn mailbox_key(address: &[u8; 32]) -> Key256 {
    let mut h = Sha256::new();
    h.update(b"zmesh/mailbox/v1\0");
    h.update(address);
    Key256(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_key_is_domain_separated_and_stable() {
        let address = [7u8; 32];
        let key = mailbox_key(&address);
        let mut prefixed = b"zmesh/mailbox/v1\0".to_vec();
        prefixed.extend_from_slice(&address);
        assert_eq!(key, Key256::hash(&prefixed));
        assert_eq!(key, mailbox_key(&address));
        assert_ne!(key, Key256::hash(&address));
        assert_ne!(key, mailbox_key(&[8u8; 32]));
    }
}
