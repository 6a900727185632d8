//! The client side of zmesh storage: what a user's device runs.
//!
//! - [`identity`]: the user's signing identity, kept in a passphrase-protected keystore file.
//! - [`blob`]: how a file becomes encrypted chunks and a manifest (no I/O, fully testable).
//! - [`relay`]: one libp2p connection to a relay, with the zmesh handshake, carrying
//!   `/zmesh/store/1.0` requests and `/zmesh/msg/1.0` both ways.
//! - [`ops`]: `put`, `get` and `rm` of whole blobs, built from the three above.
//! - [`messenger`]: end-to-end messaging state (Olm sessions, sealed sender), persisted, no I/O
//!   beyond its own files.
//! - [`mail`]: messaging through a relay (`/zmesh/msg/1.0`) with a [`Mailer`]: login, published
//!   records, send, mailbox sync and live deliveries.
//! - [`reconnect`]: a relay connection that comes back after it is lost (backoff, alternate
//!   relays), sending unanswered messages again.
//!
//! Nothing that leaves the device is readable by a relay or holder: every chunk is sealed with a
//! key derived from the identity's envelope secret before it is sent, and every request is signed
//! by the identity's key so holders can check ownership.

pub mod blob;
mod error;
pub mod identity;
pub mod mail;
pub mod messenger;
pub mod ops;
pub mod reconnect;
pub mod relay;

pub use blob::{BlobId, Manifest};
pub use error::{ChunkRef, ClientError, ErrorKind};
pub use identity::Identity;
pub use libp2p::Multiaddr;
pub use mail::{Inbox, Mailer, SendReport, SendStatus, SyncReport, Tally, Via};
pub use messenger::{Incoming, Messenger, Outgoing};
pub use ops::{Progress, Stored, get, put_file, put_reader, rm};
pub use reconnect::{ReconnectAttempt, ReconnectPolicy, ReconnectingRelay};
pub use relay::{ChunkStore, Deliveries, Delivery, MsgRelay, Relay};

/// `Result` with this crate's error.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
