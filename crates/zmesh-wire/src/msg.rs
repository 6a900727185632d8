//! The messaging protocol (`/zmesh/msg/1.0`): a client sends end-to-end-encrypted messages
//! through its relay, relays forward them to the recipient's relay or append them to the
//! recipient's mailbox on the nodes nearest its mailbox key, and a client that comes back syncs
//! its mailbox with a cursor, in order and exactly once.
//!
//! Message contents are sealed (sealed sender) before they reach this layer: relays see a
//! recipient address, an id, an order, an expiry and opaque bytes, never the sender or the text.
//! Signatures are opaque here too; see [`records`] for what they cover.
//!
//! | code | message | from → to |
//! |---|---|---|
//! | 0x60 | `Login` | client → relay (answer: `LoggedIn`) |
//! | 0x61 | `PublishRecord` | client → relay, relay → record holder (answer: `Result`) |
//! | 0x62 | `FetchRecord` | client → relay, relay → record holder (answer: `Record`) |
//! | 0x63 | `Send` | client → relay (answer: `Sent`) |
//! | 0x64 | `Sync` | client → relay (answer: `Batch`) |
//! | 0x65 | `Ack` | client → relay (answer: `Result`) |
//! | 0x66 | `Deliver` | relay → client, live push (answer: `Delivered`) |
//! | 0x67 | `Forward` | sender's relay → recipient's relay (answer: `Result`) |
//! | 0x68 | `MailboxAppend` | relay → mailbox replica (answer: `Result`) |
//! | 0x69 | `MailboxRead` | relay → mailbox replica (answer: `Batch`) |
//! | 0x6A | `MailboxAck` | relay → mailbox replica (answer: `Result`) |
//! | 0x6B | `MailboxIds` | replica → replica, reconciliation (answer: `Ids`) |
//! | 0x6C | `Resume` | client → relay after a reconnect (answer: `LoggedIn`) |
//! | 0x70 | `Result` | any answer without a payload |
//! | 0x71 | `Sent` | relay → client |
//! | 0x72 | `Record` | relay → client, holder → relay |
//! | 0x73 | `Batch` | relay → client, replica → relay |
//! | 0x74 | `Delivered` | client → relay |
//! | 0x75 | `Ids` | replica → replica |
//! | 0x76 | `LoggedIn` | relay → client |
//! | 0x77 | `Throttled` | any answer: not taken now (rate limit, window, load); try again later |
//!
//! Codes 0x60–0x6F are requests and 0x70–0x7F answers; the unused ones are reserved.

mod envelope;
pub mod records;
#[cfg(test)]
mod tests;

pub use envelope::{
    CURSOR_LEN, Cursor, ENVELOPE_FIXED_LEN, Envelope, MAX_ENVELOPE_LEN, MsgOutcome, MsgStatus,
};
pub use records::{AuthPurpose, RecordKind, SignedRecord, UserAuth};

use envelope::{decode_flag, decode_opt_cursor, decode_sealed, encode_opt_cursor, encode_sealed};

use crate::control::FlowControl;
use crate::{Message, Reader, WireError, Writer};

/// Longest sealed message (opaque). Above the crypto layer's own maximum, so any message it
/// seals fits.
pub const MAX_SEALED_LEN: usize = 80 * 1024;
/// Longest prekey bundle (opaque), carried as a [`RecordKind::Bundle`] record's value.
pub const MAX_BUNDLE_LEN: usize = 4 * 1024;
/// Longest [`SignedRecord`] value.
pub const MAX_RECORD_VALUE: usize = 4 * 1024;
/// Most messages in one `Deliver` or `Batch`.
pub const MAX_BATCH: usize = 256;
/// Most cursors in one `Ids` answer.
pub const MAX_IDS: usize = 1024;
/// Longest [`MsgOutcome::detail`] in bytes.
pub const MAX_DETAIL: usize = 255;

/// Longest `Batch` body: type, count, [`MAX_BATCH`] of the longest envelopes, `has_more` and
/// the next cursor. `Deliver` is shorter; every other message is far shorter.
pub const MAX_BATCH_BODY: usize = 1 + 2 + MAX_BATCH * MAX_ENVELOPE_LEN + 1 + 1 + CURSOR_LEN;
/// Largest frame body of this protocol (21 MiB): a full batch with room to spare for fields a
/// newer version may append.
pub const MAX_MSG_FRAME: usize = 21 * 1024 * 1024;

const _: () = assert!(MAX_BUNDLE_LEN <= MAX_RECORD_VALUE);
const _: () = assert!(MAX_MSG_FRAME >= MAX_BATCH_BODY + 64 * 1024);
// Length prefixes: record values and sealed messages use u32, batch and id counts u16.
const _: () = assert!(MAX_BATCH <= u16::MAX as usize);
const _: () = assert!(MAX_IDS <= u16::MAX as usize);

pub const TYPE_LOGIN: u8 = 0x60;
pub const TYPE_PUBLISH_RECORD: u8 = 0x61;
pub const TYPE_FETCH_RECORD: u8 = 0x62;
pub const TYPE_SEND: u8 = 0x63;
pub const TYPE_SYNC: u8 = 0x64;
pub const TYPE_ACK: u8 = 0x65;
pub const TYPE_DELIVER: u8 = 0x66;
pub const TYPE_FORWARD: u8 = 0x67;
pub const TYPE_MAILBOX_APPEND: u8 = 0x68;
pub const TYPE_MAILBOX_READ: u8 = 0x69;
pub const TYPE_MAILBOX_ACK: u8 = 0x6A;
pub const TYPE_MAILBOX_IDS: u8 = 0x6B;
pub const TYPE_RESUME: u8 = 0x6C;
pub const TYPE_RESULT: u8 = 0x70;
pub const TYPE_SENT: u8 = 0x71;
pub const TYPE_RECORD: u8 = 0x72;
pub const TYPE_BATCH: u8 = 0x73;
pub const TYPE_DELIVERED: u8 = 0x74;
pub const TYPE_IDS: u8 = 0x75;
pub const TYPE_LOGGED_IN: u8 = 0x76;
pub const TYPE_THROTTLED: u8 = 0x77;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgMessage {
    /// Client → relay: open a session as this user, so the relay delivers the user's messages
    /// here and reads the user's mailbox on the user's behalf.
    Login { auth: UserAuth },
    /// Client → relay: publish the user's prekey bundle or presence. Relays pass it on to the
    /// nodes that hold the record; each checks the signature itself.
    PublishRecord { record: SignedRecord },
    /// Client → relay, relay → holder: the newest record of this kind for this address.
    FetchRecord { kind: RecordKind, owner_address: [u8; 32] },
    /// Client → relay: deliver this sealed message to `recipient` (an address). `id` is chosen
    /// by the client and kept on retries, so a resent message is stored once.
    Send { recipient: [u8; 32], id: [u8; 16], sealed: Vec<u8> },
    /// Client → relay: the logged-in user's messages after `after` (from the start when
    /// `None`), at most `max_messages` (and never more than [`MAX_BATCH`]). `auth` (purpose
    /// MailboxRead, target the user's mailbox key) is passed on to each mailbox replica, which
    /// checks the user itself: a relay cannot read a mailbox on its own.
    Sync { auth: UserAuth, after: Option<Cursor>, max_messages: u16 },
    /// Client → relay: every message up to and including `upto` has been stored by the client
    /// and may be deleted from the mailbox; `auth` (purpose MailboxAck) goes to the replicas.
    Ack { auth: UserAuth, upto: Cursor },
    /// Relay → client: messages for a live session, in mailbox order. At most [`MAX_BATCH`]
    /// are encoded; the rest follow in another `Deliver`.
    Deliver { messages: Vec<Envelope> },
    /// Sender's relay → recipient's relay (found through the recipient's presence record).
    Forward { recipient: [u8; 32], envelope: Envelope },
    /// Relay → mailbox replica: keep this message until acked or expired; the replica answers
    /// only after it is durably stored.
    MailboxAppend { mailbox: [u8; 32], envelope: Envelope },
    /// Relay → mailbox replica, on behalf of the mailbox owner.
    MailboxRead { auth: UserAuth, after: Option<Cursor>, max_messages: u16 },
    /// Relay → mailbox replica, on behalf of the mailbox owner: delete up to `upto`.
    MailboxAck { auth: UserAuth, upto: Cursor },
    /// Replica → replica: which cursors after `after` do you hold? Lets replicas find and copy
    /// each other's missing messages without sending the messages themselves.
    MailboxIds { mailbox: [u8; 32], after: Option<Cursor>, limit: u16 },
    /// Client → relay, after a reconnect: restore the session the token names (the same user,
    /// now on this connection) without a fresh signature. An unknown or expired token is
    /// answered `LoggedIn` with `NotFound`: log in again and sync the mailbox.
    Resume { session_token: [u8; 32] },
    /// The answer to PublishRecord, Ack, Forward, MailboxAppend, MailboxAck, and to any request
    /// that failed before it could be answered in kind.
    Result { outcome: MsgOutcome },
    /// The answer to Send: Delivered, Queued, or why neither.
    Sent { id: [u8; 16], outcome: MsgOutcome },
    /// The answer to FetchRecord.
    Record { outcome: MsgOutcome, record: Option<SignedRecord> },
    /// The answer to Sync and MailboxRead, in mailbox order. `next_cursor` is where the next
    /// read starts; `has_more` says whether there is one to make now. At most [`MAX_BATCH`]
    /// messages are encoded.
    Batch { messages: Vec<Envelope>, has_more: bool, next_cursor: Option<Cursor> },
    /// Client → relay, the answer to Deliver: the last message the client kept and how many it
    /// took, so the relay can ack the mailbox for it.
    Delivered { upto: Option<Cursor>, count: u16 },
    /// The answer to MailboxIds, in mailbox order. At most [`MAX_IDS`] are encoded.
    Ids { cursors: Vec<Cursor> },
    /// The answer to Login. The token lets the client resume the session after a reconnect
    /// without signing a fresh login.
    LoggedIn { outcome: MsgOutcome, session_token: [u8; 32] },
    /// The answer to any request this node did not take now: the connection is over its rate
    /// limit, its window, or the node is loaded. The request had no effect; send it again after
    /// `flow.retry_after_ms`, within `flow.new_window` unanswered requests.
    Throttled { flow: FlowControl },
}

impl MsgMessage {
    /// The message type code that leads the frame body.
    pub fn type_code(&self) -> u8 {
        match self {
            MsgMessage::Login { .. } => TYPE_LOGIN,
            MsgMessage::PublishRecord { .. } => TYPE_PUBLISH_RECORD,
            MsgMessage::FetchRecord { .. } => TYPE_FETCH_RECORD,
            MsgMessage::Send { .. } => TYPE_SEND,
            MsgMessage::Sync { .. } => TYPE_SYNC,
            MsgMessage::Ack { .. } => TYPE_ACK,
            MsgMessage::Deliver { .. } => TYPE_DELIVER,
            MsgMessage::Forward { .. } => TYPE_FORWARD,
            MsgMessage::MailboxAppend { .. } => TYPE_MAILBOX_APPEND,
            MsgMessage::MailboxRead { .. } => TYPE_MAILBOX_READ,
            MsgMessage::MailboxAck { .. } => TYPE_MAILBOX_ACK,
            MsgMessage::MailboxIds { .. } => TYPE_MAILBOX_IDS,
            MsgMessage::Resume { .. } => TYPE_RESUME,
            MsgMessage::Result { .. } => TYPE_RESULT,
            MsgMessage::Sent { .. } => TYPE_SENT,
            MsgMessage::Record { .. } => TYPE_RECORD,
            MsgMessage::Batch { .. } => TYPE_BATCH,
            MsgMessage::Delivered { .. } => TYPE_DELIVERED,
            MsgMessage::Ids { .. } => TYPE_IDS,
            MsgMessage::LoggedIn { .. } => TYPE_LOGGED_IN,
            MsgMessage::Throttled { .. } => TYPE_THROTTLED,
        }
    }
}

fn encode_envelopes(w: &mut Writer, messages: &[Envelope]) {
    let messages = &messages[..messages.len().min(MAX_BATCH)];
    w.u16(messages.len() as u16);
    for m in messages {
        m.encode(w);
    }
}

fn decode_envelopes(r: &mut Reader<'_>) -> Result<Vec<Envelope>, WireError> {
    let count = r.count_u16("messages", MAX_BATCH)?;
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        messages.push(Envelope::decode(r)?);
    }
    Ok(messages)
}

impl Message for MsgMessage {
    const MAX_FRAME: usize = MAX_MSG_FRAME;

    fn encode_body(&self, w: &mut Writer) {
        w.u8(self.type_code());
        match self {
            MsgMessage::Login { auth } => auth.encode(w),
            MsgMessage::PublishRecord { record } => record.encode(w),
            MsgMessage::FetchRecord { kind, owner_address } => {
                w.u8(kind.code());
                w.bytes(owner_address);
            }
            MsgMessage::Send { recipient, id, sealed } => {
                w.bytes(recipient);
                w.bytes(id);
                encode_sealed(w, sealed);
            }
            MsgMessage::Sync { auth, after, max_messages } => {
                auth.encode(w);
                encode_opt_cursor(w, after);
                w.u16(*max_messages);
            }
            MsgMessage::Ack { auth, upto } => {
                auth.encode(w);
                upto.encode(w);
            }
            MsgMessage::Deliver { messages } => encode_envelopes(w, messages),
            MsgMessage::Forward { recipient, envelope } => {
                w.bytes(recipient);
                envelope.encode(w);
            }
            MsgMessage::MailboxAppend { mailbox, envelope } => {
                w.bytes(mailbox);
                envelope.encode(w);
            }
            MsgMessage::MailboxRead { auth, after, max_messages } => {
                auth.encode(w);
                encode_opt_cursor(w, after);
                w.u16(*max_messages);
            }
            MsgMessage::MailboxAck { auth, upto } => {
                auth.encode(w);
                upto.encode(w);
            }
            MsgMessage::MailboxIds { mailbox, after, limit } => {
                w.bytes(mailbox);
                encode_opt_cursor(w, after);
                w.u16(*limit);
            }
            MsgMessage::Result { outcome } => outcome.encode(w),
            MsgMessage::Sent { id, outcome } => {
                w.bytes(id);
                outcome.encode(w);
            }
            MsgMessage::Record { outcome, record } => {
                outcome.encode(w);
                match record {
                    Some(record) => {
                        w.u8(1);
                        record.encode(w);
                    }
                    None => w.u8(0),
                }
            }
            MsgMessage::Batch { messages, has_more, next_cursor } => {
                encode_envelopes(w, messages);
                w.u8(u8::from(*has_more));
                encode_opt_cursor(w, next_cursor);
            }
            MsgMessage::Delivered { upto, count } => {
                encode_opt_cursor(w, upto);
                w.u16(*count);
            }
            MsgMessage::Ids { cursors } => {
                let cursors = &cursors[..cursors.len().min(MAX_IDS)];
                w.u16(cursors.len() as u16);
                for c in cursors {
                    c.encode(w);
                }
            }
            MsgMessage::LoggedIn { outcome, session_token } => {
                outcome.encode(w);
                w.bytes(session_token);
            }
            MsgMessage::Resume { session_token } => w.bytes(session_token),
            MsgMessage::Throttled { flow } => flow.encode(w),
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let r = &mut r;
        Ok(match r.u8("type")? {
            TYPE_LOGIN => MsgMessage::Login { auth: UserAuth::decode(r)? },
            TYPE_PUBLISH_RECORD => MsgMessage::PublishRecord { record: SignedRecord::decode(r)? },
            TYPE_FETCH_RECORD => MsgMessage::FetchRecord {
                kind: RecordKind::from_code(r.u8("record kind")?)?,
                owner_address: r.array("owner address")?,
            },
            TYPE_SEND => MsgMessage::Send {
                recipient: r.array("recipient")?,
                id: r.array("message id")?,
                sealed: decode_sealed(r)?,
            },
            TYPE_SYNC => MsgMessage::Sync {
                auth: UserAuth::decode(r)?,
                after: decode_opt_cursor(r, "after flag")?,
                max_messages: r.u16("max messages")?,
            },
            TYPE_ACK => MsgMessage::Ack { auth: UserAuth::decode(r)?, upto: Cursor::decode(r)? },
            TYPE_DELIVER => MsgMessage::Deliver { messages: decode_envelopes(r)? },
            TYPE_FORWARD => MsgMessage::Forward {
                recipient: r.array("recipient")?,
                envelope: Envelope::decode(r)?,
            },
            TYPE_MAILBOX_APPEND => MsgMessage::MailboxAppend {
                mailbox: r.array("mailbox")?,
                envelope: Envelope::decode(r)?,
            },
            TYPE_MAILBOX_READ => MsgMessage::MailboxRead {
                auth: UserAuth::decode(r)?,
                after: decode_opt_cursor(r, "after flag")?,
                max_messages: r.u16("max messages")?,
            },
            TYPE_MAILBOX_ACK => {
                MsgMessage::MailboxAck { auth: UserAuth::decode(r)?, upto: Cursor::decode(r)? }
            }
            TYPE_MAILBOX_IDS => MsgMessage::MailboxIds {
                mailbox: r.array("mailbox")?,
                after: decode_opt_cursor(r, "after flag")?,
                limit: r.u16("limit")?,
            },
            TYPE_RESULT => MsgMessage::Result { outcome: MsgOutcome::decode(r)? },
            TYPE_SENT => {
                MsgMessage::Sent { id: r.array("message id")?, outcome: MsgOutcome::decode(r)? }
            }
            TYPE_RECORD => {
                let outcome = MsgOutcome::decode(r)?;
                let record = if decode_flag(r, "record flag")? {
                    Some(SignedRecord::decode(r)?)
                } else {
                    None
                };
                MsgMessage::Record { outcome, record }
            }
            TYPE_BATCH => MsgMessage::Batch {
                messages: decode_envelopes(r)?,
                has_more: decode_flag(r, "has more")?,
                next_cursor: decode_opt_cursor(r, "next cursor flag")?,
            },
            TYPE_DELIVERED => MsgMessage::Delivered {
                upto: decode_opt_cursor(r, "upto flag")?,
                count: r.u16("count")?,
            },
            TYPE_IDS => {
                let count = r.count_u16("cursors", MAX_IDS)?;
                let mut cursors = Vec::with_capacity(count);
                for _ in 0..count {
                    cursors.push(Cursor::decode(r)?);
                }
                MsgMessage::Ids { cursors }
            }
            TYPE_LOGGED_IN => MsgMessage::LoggedIn {
                outcome: MsgOutcome::decode(r)?,
                session_token: r.array("session token")?,
            },
            TYPE_RESUME => MsgMessage::Resume { session_token: r.array("session token")? },
            TYPE_THROTTLED => MsgMessage::Throttled { flow: FlowControl::decode(r)? },
            t => return Err(WireError::UnknownType(t)),
        })
    }
}
