//! The node's side of messaging (`/zmesh/msg/1.0`).
//!
//! Holders, as handlers that take a request and the time and return the answer (no network):
//!
//! - [`auth`]: checks a user's signed authorisation ([`zmesh_wire::msg::UserAuth`]) the way
//!   storage requests are checked: purpose, target, a ±2 minute window, a valid owner key, a
//!   strict signature, and a nonce used once.
//! - [`records`]: signed records users publish (presence and prekey bundles), checked and kept
//!   in a bounded memory store by the nodes nearest their record key.
//! - [`mailbox`]: one replica of an offline mailbox on top of the durable
//!   [`zmesh_store::MailboxStore`]: appends from relays, reads and acks on the owner's signed
//!   word, and cursor listings for replica reconciliation.
//!
//! The relay, which talks to other nodes through [`net`] (the node task owns the swarm):
//!
//! - [`relay`]: logins, sends (direct, federated, mailbox), record publishing and fetching.
//! - [`replicas`]: quorum rounds over a mailbox's nodes: append, read with read repair, ack.
//! - [`sessions`]: logged-in users and the ordered, batched push of their live messages.
//! - [`routes`]: a short-lived cache of nearest nodes and presences.
//! - [`stats`]: counters for the API and `/metrics`.
//!
//! Every handler verifies what it is given itself, whoever relayed it: a holder trusts the
//! owner's signature, never the peer that passed the request on.
//!
//! # Decisions
//!
//! - Time is a parameter (`now_ms`) everywhere, so tests drive expiry and replay windows
//!   without sleeping. The driver passes the wall clock: the replay window must match the
//!   clocks of the users who sign, so a storage clock offset does not apply here.
//! - The skew allowed for clocks ([`CLOCK_SKEW_MS`]) is the storage replay window, so all
//!   signed requests of a node live by one rule.
//! - `MailboxIds` and `MailboxAppend` carry no user signature (a sender is anonymous and
//!   replicas reconcile among themselves); the swarm driver takes them only from mesh nodes
//!   (peers that completed the handshake offering the DHT). Per-peer rate limits are not
//!   applied yet.

pub mod auth;
pub mod mailbox;
pub mod net;
pub mod records;
pub mod relay;
pub mod replicas;
pub mod routes;
pub mod sessions;
pub mod stats;

pub use relay::MessageRelay;

use zmesh_store::StoreError;
use zmesh_wire::msg::{MsgMessage, MsgOutcome, MsgStatus};

use auth::AuthFailure;
use records::RecordError;

/// How far a signed time may be from this node's clock, either way. The same window as
/// storage requests: honest clocks agree within seconds.
pub const CLOCK_SKEW_MS: u64 = zmesh_core::storage_auth::REPLAY_WINDOW_MS;

/// Errors of the messaging handlers. Handlers answer peers with a [`MsgStatus`]; this type is
/// for callers that need a `Result` (opening stores, GC) and reports a coarse `kind()`.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Auth(#[from] AuthFailure),
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl MessagingError {
    pub(crate) fn store(context: impl Into<String>, source: StoreError) -> Self {
        MessagingError::Store { context: context.into(), source }
    }

    /// The coarse class the CLI and API report.
    pub fn kind(&self) -> &'static str {
        match self {
            MessagingError::Store { source, .. } => source.kind(),
            MessagingError::Auth(e) => e.kind(),
            MessagingError::Record(e) => e.kind(),
        }
    }

    /// The status a peer is answered with.
    pub fn status(&self) -> MsgStatus {
        match self {
            MessagingError::Store { source, .. } => store_status(source),
            MessagingError::Auth(e) => e.status(),
            MessagingError::Record(e) => e.status(),
        }
    }
}

/// How a store failure is reported to a peer: a full mailbox is the sender's to know; a
/// refused entry is a bad request; anything else is this node's problem.
pub(crate) fn store_status(e: &StoreError) -> MsgStatus {
    match e {
        StoreError::QuotaExceeded { .. } | StoreError::InsufficientStorage { .. } => {
            MsgStatus::Quota
        }
        StoreError::Expired | StoreError::BodyTooLarge { .. } | StoreError::Invalid(_) => {
            MsgStatus::BadRequest
        }
        StoreError::OwnerMismatch => MsgStatus::Unauthorized,
        StoreError::Corrupt(_) | StoreError::Db(_) => MsgStatus::Internal,
    }
}

/// A `Result` answer.
pub(crate) fn answer(status: MsgStatus, detail: impl Into<String>) -> MsgMessage {
    MsgMessage::Result { outcome: MsgOutcome::new(status, detail) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_report_a_kind_and_a_status() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the store file should be: opening fails as an I/O problem.
        std::fs::create_dir(dir.path().join(mailbox::MAILBOX_FILE)).unwrap();
        let e = mailbox::MailboxHolder::open(dir.path(), Default::default()).unwrap_err();
        assert_eq!(e.kind(), "io");
        assert_eq!(e.status(), MsgStatus::Internal);
        assert!(e.to_string().contains(mailbox::MAILBOX_FILE), "{e}");

        let e = MessagingError::from(AuthFailure::Replayed);
        assert_eq!((e.kind(), e.status()), ("replay", MsgStatus::Replay));
        let e = MessagingError::from(AuthFailure::BadSignature);
        assert_eq!((e.kind(), e.status()), ("unauthorized", MsgStatus::Unauthorized));
        let e = MessagingError::from(RecordError::Full);
        assert_eq!((e.kind(), e.status()), ("quota", MsgStatus::Quota));
        let e = MessagingError::from(RecordError::Expired);
        assert_eq!((e.kind(), e.status()), ("invalid", MsgStatus::BadRequest));
    }
}
