//! Mailbox positions, carried messages and answer outcomes of `/zmesh/msg/1.0`.

use crate::{Reader, WireError, Writer};

use super::{MAX_DETAIL, MAX_SEALED_LEN};

/// Encoded length of a [`Cursor`].
pub const CURSOR_LEN: usize = 8 + 16;
/// Encoded length of an [`Envelope`] without its sealed bytes.
pub const ENVELOPE_FIXED_LEN: usize = 16 + 8 + 8 + 4;
/// Longest encoded [`Envelope`].
pub const MAX_ENVELOPE_LEN: usize = ENVELOPE_FIXED_LEN + MAX_SEALED_LEN;

/// A position in a mailbox. Mailboxes are ordered by `(order, id)`: `order` alone may repeat
/// (two relays can pick the same value), and the id breaks the tie identically on every
/// replica, so a sync cursor means the same thing whichever replica answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub order: u64,
    pub id: [u8; 16],
}

impl Cursor {
    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.order);
        w.bytes(&self.id);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Cursor { order: r.u64("cursor order")?, id: r.array("cursor id")? })
    }
}

/// One message as relays carry it. Everything but `sealed` is visible to relays, which need it
/// to order, deduplicate and expire messages; who sent it and what it says are inside `sealed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Chosen by the sender at random; the same message sent twice keeps its id, so replicas
    /// and recipients drop the copy.
    pub id: [u8; 16],
    /// Set once, by the sender's relay, and never changed afterwards, so every replica of a
    /// mailbox sorts the message into the same place.
    pub order: u64,
    /// Unix ms after which every holder drops the message (the offline-message TTL).
    pub expires_at_ms: u64,
    /// The sealed message, opaque here; at most [`MAX_SEALED_LEN`] bytes. A longer one is
    /// written as is and refused by the receiving decoder.
    pub sealed: Vec<u8>,
}

impl Envelope {
    /// Where this message sits in a mailbox.
    pub fn cursor(&self) -> Cursor {
        Cursor { order: self.order, id: self.id }
    }

    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.id);
        w.u64(self.order);
        w.u64(self.expires_at_ms);
        encode_sealed(w, &self.sealed);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Envelope {
            id: r.array("envelope id")?,
            order: r.u64("envelope order")?,
            expires_at_ms: r.u64("envelope expiry")?,
            sealed: decode_sealed(r)?,
        })
    }
}

/// A sealed message: `u32` length, then the bytes.
pub(super) fn encode_sealed(w: &mut Writer, sealed: &[u8]) {
    w.u32(sealed.len() as u32);
    w.bytes(sealed);
}

pub(super) fn decode_sealed(r: &mut Reader<'_>) -> Result<Vec<u8>, WireError> {
    let len = r.u32("sealed length")? as usize;
    if len > MAX_SEALED_LEN {
        return Err(WireError::BadLength { field: "sealed", len, min: 0, max: MAX_SEALED_LEN });
    }
    Ok(r.bytes(len, "sealed")?.to_vec())
}

/// How a request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgStatus {
    Ok,
    /// Handed to the recipient's live connection.
    Delivered,
    /// Stored in the recipient's mailbox on enough replicas (each fsynced before answering).
    Queued,
    /// The mailbox is full.
    Quota,
    /// Neither a live connection nor enough mailbox replicas could be reached.
    NoRoute,
    /// A forward target does not serve that recipient (any more); the sender's relay falls
    /// back to the mailbox.
    NotHere,
    /// Bad signature, or a key that does not own the mailbox or record.
    Unauthorized,
    /// Timestamp outside the replay window, a nonce already seen, or a record version not newer
    /// than the one held.
    Replay,
    BadRequest,
    NotFound,
    Internal,
    /// A status this build does not know; kept so it can be passed on unchanged.
    Other(u8),
}

impl MsgStatus {
    pub fn code(self) -> u8 {
        match self {
            MsgStatus::Ok => 0,
            MsgStatus::Delivered => 1,
            MsgStatus::Queued => 2,
            MsgStatus::Quota => 3,
            MsgStatus::NoRoute => 4,
            MsgStatus::NotHere => 5,
            MsgStatus::Unauthorized => 6,
            MsgStatus::Replay => 7,
            MsgStatus::BadRequest => 8,
            MsgStatus::NotFound => 9,
            MsgStatus::Internal => 10,
            MsgStatus::Other(c) => c,
        }
    }

    /// Never fails: unknown codes become [`MsgStatus::Other`], so a newer peer's statuses do not
    /// break an older one.
    pub fn from_code(c: u8) -> Self {
        match c {
            0 => MsgStatus::Ok,
            1 => MsgStatus::Delivered,
            2 => MsgStatus::Queued,
            3 => MsgStatus::Quota,
            4 => MsgStatus::NoRoute,
            5 => MsgStatus::NotHere,
            6 => MsgStatus::Unauthorized,
            7 => MsgStatus::Replay,
            8 => MsgStatus::BadRequest,
            9 => MsgStatus::NotFound,
            10 => MsgStatus::Internal,
            c => MsgStatus::Other(c),
        }
    }

    /// Whether the message reached the recipient or its mailbox.
    pub fn is_success(self) -> bool {
        matches!(self, MsgStatus::Ok | MsgStatus::Delivered | MsgStatus::Queued)
    }
}

/// A status and a one-line reason for humans (UTF-8, at most [`MAX_DETAIL`] bytes; a longer one
/// is cut at a character boundary when encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgOutcome {
    pub status: MsgStatus,
    pub detail: String,
}

impl MsgOutcome {
    pub fn ok() -> Self {
        MsgOutcome { status: MsgStatus::Ok, detail: String::new() }
    }

    pub fn new(status: MsgStatus, detail: impl Into<String>) -> Self {
        MsgOutcome { status, detail: detail.into() }
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u8(self.status.code());
        let mut end = self.detail.len().min(MAX_DETAIL);
        while !self.detail.is_char_boundary(end) {
            end -= 1;
        }
        w.short_bytes(&self.detail.as_bytes()[..end]);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let status = MsgStatus::from_code(r.u8("status")?);
        let detail = r.short_bytes("detail", 0, MAX_DETAIL)?;
        let detail = std::str::from_utf8(detail)
            .map_err(|_| WireError::BadUtf8 { field: "detail" })?
            .to_owned();
        Ok(MsgOutcome { status, detail })
    }
}

/// A boolean as one byte, 0 or 1; anything else is refused so each value has one encoding.
pub(super) fn decode_flag(r: &mut Reader<'_>, field: &'static str) -> Result<bool, WireError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(WireError::BadValue { field, value: v.into() }),
    }
}

/// An optional cursor: a flag byte, then the cursor when the flag is 1.
pub(super) fn encode_opt_cursor(w: &mut Writer, cursor: &Option<Cursor>) {
    match cursor {
        Some(c) => {
            w.u8(1);
            c.encode(w);
        }
        None => w.u8(0),
    }
}

pub(super) fn decode_opt_cursor(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<Cursor>, WireError> {
    if decode_flag(r, field)? { Ok(Some(Cursor::decode(r)?)) } else { Ok(None) }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use proptest::prelude::*;

    pub fn cursor() -> impl Strategy<Value = Cursor> {
        (any::<u64>(), any::<[u8; 16]>()).prop_map(|(order, id)| Cursor { order, id })
    }

    /// Sealed bytes are kept short here so batches stay cheap; the full length has its own test.
    pub fn envelope() -> impl Strategy<Value = Envelope> {
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..512),
        )
            .prop_map(|(id, order, expires_at_ms, sealed)| Envelope {
                id,
                order,
                expires_at_ms,
                sealed,
            })
    }

    pub fn status() -> impl Strategy<Value = MsgStatus> {
        any::<u8>().prop_map(MsgStatus::from_code)
    }

    pub fn outcome() -> impl Strategy<Value = MsgOutcome> {
        // At most 60 characters of up to 4 bytes each stay within MAX_DETAIL.
        (status(), "\\PC{0,60}").prop_map(|(status, detail)| MsgOutcome { status, detail })
    }

    proptest! {
        #[test]
        fn cursors_sort_by_order_then_id(a in cursor(), b in cursor()) {
            prop_assert_eq!(a.cmp(&b), (a.order, a.id).cmp(&(b.order, b.id)));
        }

        #[test]
        fn envelopes_round_trip(e in envelope()) {
            let mut w = Writer::default();
            e.encode(&mut w);
            prop_assert_eq!(w.0.len(), ENVELOPE_FIXED_LEN + e.sealed.len());
            prop_assert_eq!(Envelope::decode(&mut Reader::new(&w.0)).unwrap(), e);
        }

        #[test]
        fn statuses_keep_their_code(code in any::<u8>()) {
            prop_assert_eq!(MsgStatus::from_code(code).code(), code);
        }
    }

    #[test]
    fn a_long_detail_is_cut_at_a_character_boundary() {
        let outcome = MsgOutcome::new(MsgStatus::Internal, "é".repeat(200));
        let mut w = Writer::default();
        outcome.encode(&mut w);
        let decoded = MsgOutcome::decode(&mut Reader::new(&w.0)).unwrap();
        assert_eq!(decoded.detail, "é".repeat(127));
    }

    #[test]
    fn a_detail_that_is_not_utf8_is_refused() {
        let bytes = [0u8, 2, 0xC3, 0x28];
        assert_eq!(
            MsgOutcome::decode(&mut Reader::new(&bytes)),
            Err(WireError::BadUtf8 { field: "detail" })
        );
    }
}
