//! The one error type of this crate.
//!
//! Every variant's message is one line a user can act on and names the numbers that matter (which
//! chunk, how many shards, how many bytes), because the CLI prints it as is. [`ClientError::kind`]
//! groups the variants for callers that only need to decide what to do (retry, ask for a new
//! passphrase, give up).

use std::fmt;
use std::io;
use std::path::PathBuf;

use zmesh_wire::msg::MsgStatus;

use crate::blob::BlobId;

/// A coarse class of [`ClientError`], for deciding what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input from the user: a malformed id, no passphrase given, a file that exists.
    Usage,
    /// The identity keystore: missing, wrong passphrase, corrupt.
    Identity,
    /// Local file system.
    Io,
    /// Could not reach or keep a relay: dial, handshake, timeout, lost connection.
    Network,
    /// The relay or holders refused: no space, no placement, unauthorized, replay.
    Refused,
    /// No such blob (or chunk) for this identity.
    NotFound,
    /// The data exists but too few healthy shards are reachable now; may succeed later.
    Unavailable,
    /// Data came back but does not decrypt or does not match its manifest.
    Corrupt,
    /// The relay answered something this client does not understand.
    Protocol,
}

/// Which stored chunk of a blob an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkRef {
    /// The blob's manifest (chunk id `"{id}/m"`).
    Manifest(BlobId),
    /// Data chunk `index` (chunk id `"{id}/{index}"`).
    Data(BlobId, u64),
}

impl fmt::Display for ChunkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkRef::Manifest(id) => write!(f, "manifest of blob {id}"),
            ChunkRef::Data(id, i) => write!(f, "chunk {i} of blob {id}"),
        }
    }
}

/// Every way a client operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no passphrase: set ZMESH_PASSPHRASE or pass --passphrase-file FILE (the keystore is never unlocked from a prompt only)"
    )]
    NoPassphrase,
    #[error("passphrase file {path} is empty")]
    EmptyPassphrase { path: PathBuf },
    #[error("{path} already exists; refusing to overwrite an identity")]
    IdentityExists { path: PathBuf },
    #[error("no identity at {path}; create one with `zmesh id new`")]
    NoIdentity { path: PathBuf },
    #[error("wrong passphrase for identity {path} (or the file was altered)")]
    WrongPassphrase { path: PathBuf },
    #[error("identity {path} is not a valid keystore: {reason}")]
    BadIdentity { path: PathBuf, reason: String },
    #[error("no home directory: set HOME or pass --identity FILE")]
    NoHome,
    /// The I/O error is part of the message, not a `source`, so that printing the error chain
    /// does not repeat it.
    #[error("{context}: {error}")]
    Io { context: String, error: io::Error },
    #[error("invalid blob id {0:?}: expected 32 hex characters")]
    BadBlobId(String),
    #[error("{0}")]
    Usage(String),

    #[error("cannot connect to relay {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("handshake with relay {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("no relay in {path} answered ({tried} tried); last error: {last}")]
    NoRelay { path: PathBuf, tried: usize, last: String },
    #[error("relay request failed: {0}")]
    Transport(String),
    #[error(
        "relay lost, and no reconnection in {waited_secs} s ({attempts} attempts); last error: {last}"
    )]
    Unreachable { attempts: u32, waited_secs: u64, last: String },
    #[error("the relay kept refusing {request} for {waited_secs} s ({reason}); giving up")]
    Throttled { request: &'static str, waited_secs: u64, reason: &'static str },

    #[error("insufficient storage for {chunk}: {detail}")]
    InsufficientStorage { chunk: ChunkRef, detail: String },
    #[error("no placement for {chunk}: {detail}")]
    NoPlacement { chunk: ChunkRef, detail: String },
    #[error("unauthorized for {chunk}: {detail}")]
    Unauthorized { chunk: ChunkRef, detail: String },
    #[error("request for {chunk} refused as a replay (is this machine's clock right?): {detail}")]
    Replay { chunk: ChunkRef, detail: String },
    #[error("not found: no blob {0} for this identity")]
    BlobNotFound(BlobId),
    #[error("not found: {0} is missing (the blob is incomplete)")]
    ChunkNotFound(ChunkRef),
    #[error("{chunk}: found {found} healthy shards, need {needed}")]
    NotEnoughShards { chunk: ChunkRef, found: u16, needed: u16 },
    #[error("relay refused {chunk}: {status} {detail}")]
    Relay { chunk: ChunkRef, status: String, detail: String },

    #[error("{0} does not decrypt with this identity (wrong identity, or corrupted)")]
    Decrypt(ChunkRef),
    #[error("blob {id} is inconsistent: {reason}")]
    Inconsistent { id: BlobId, reason: String },
    #[error("relay sent an unexpected answer to a {request} request")]
    UnexpectedResponse { request: &'static str },

    #[error("messaging state {path} was written by another identity (or was altered)")]
    ForeignMessagingState { path: PathBuf },
    #[error("messaging state {path} is unreadable: {reason}")]
    CorruptMessagingState { path: PathBuf, reason: String },
    #[error("no end-to-end session with {address}: fetch the recipient's prekey bundle first")]
    NoSession { address: String },
    #[error("prekey bundle for {address} rejected: {reason}")]
    BadBundle { address: String, reason: String },
    #[error("message text is {len} bytes, at most {max} fit in one message")]
    TextTooLong { len: usize, max: usize },
    #[error("invalid identity key: {0}")]
    BadIdentityKey(String),
    #[error("too many contacts in the messaging state (at most {max})")]
    TooManyContacts { max: usize },
    #[error(
        "message does not open with this identity's keys (addressed to someone else, or altered in transit)"
    )]
    NotForThisIdentity,
    #[error(
        "message from {from} belongs to no known session (its first message was lost, or the state was reset)"
    )]
    UnknownSession { from: String },
    #[error("message from {from} does not decrypt: {reason}")]
    UndecryptableMessage { from: String, reason: String },
    #[error("malformed message: {0}")]
    MalformedMessage(String),
    #[error("end-to-end encryption failed: {0}")]
    Encryption(String),

    #[error("invalid address {0:?}: expected 64 hex characters (see `zmesh id show`)")]
    BadAddress(String),
    #[error("no prekey bundle published for {address}; has that user run `zmesh inbox` once?")]
    NoBundle { address: String },
    #[error("not delivered: the mailbox of {address} is full{}", detail_suffix(detail))]
    MailboxFull { address: String, detail: String },
    #[error("not delivered to {address}: {}{}", status_text(*status), detail_suffix(detail))]
    NotDelivered { address: String, status: MsgStatus, detail: String },
    #[error("relay refused {request}: {}{}", status_text(*status), detail_suffix(detail))]
    MsgRefused { request: &'static str, status: MsgStatus, detail: String },
}

/// A messaging status as words, for error messages.
pub(crate) fn status_text(status: MsgStatus) -> String {
    match status {
        MsgStatus::Ok => "ok".into(),
        MsgStatus::Delivered => "delivered".into(),
        MsgStatus::Queued => "queued".into(),
        MsgStatus::Quota => "over quota".into(),
        MsgStatus::NoRoute => "no route (neither the recipient nor its mailbox reachable)".into(),
        MsgStatus::NotHere => "not served here".into(),
        MsgStatus::Unauthorized => "unauthorized".into(),
        MsgStatus::Replay => "refused as a replay (is this machine's clock right?)".into(),
        MsgStatus::BadRequest => "bad request".into(),
        MsgStatus::NotFound => "not found".into(),
        MsgStatus::Internal => "internal error".into(),
        MsgStatus::Other(code) => format!("status {code}"),
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(" ({detail})") }
}

/// Statuses that say "not now" rather than "no".
fn transient(status: MsgStatus) -> bool {
    matches!(status, MsgStatus::NoRoute | MsgStatus::Internal)
}

impl ClientError {
    /// The coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        use ClientError::*;
        match self {
            NoPassphrase
            | EmptyPassphrase { .. }
            | IdentityExists { .. }
            | BadBlobId(_)
            | Usage(_)
            | NoHome
            | TextTooLong { .. }
            | BadIdentityKey(_)
            | BadAddress(_) => ErrorKind::Usage,
            NoIdentity { .. }
            | WrongPassphrase { .. }
            | BadIdentity { .. }
            | ForeignMessagingState { .. } => ErrorKind::Identity,
            Io { .. } => ErrorKind::Io,
            Connect { .. }
            | Handshake { .. }
            | NoRelay { .. }
            | Transport(_)
            | Unreachable { .. } => ErrorKind::Network,
            InsufficientStorage { .. }
            | NoPlacement { .. }
            | Unauthorized { .. }
            | Replay { .. }
            | Relay { .. }
            | TooManyContacts { .. }
            | MailboxFull { .. } => ErrorKind::Refused,
            NotDelivered { status, .. } | MsgRefused { status, .. } => {
                if transient(*status) {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::Refused
                }
            }
            BlobNotFound(_) | ChunkNotFound(_) | NoSession { .. } | NoBundle { .. } => {
                ErrorKind::NotFound
            }
            NotEnoughShards { .. } | Throttled { .. } => ErrorKind::Unavailable,
            Decrypt(_)
            | Inconsistent { .. }
            | CorruptMessagingState { .. }
            | BadBundle { .. }
            | NotForThisIdentity
            | UnknownSession { .. }
            | UndecryptableMessage { .. }
            | MalformedMessage(_)
            | Encryption(_) => ErrorKind::Corrupt,
            UnexpectedResponse { .. } => ErrorKind::Protocol,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ClientError::Io { context: context.into(), error: source }
    }
}
