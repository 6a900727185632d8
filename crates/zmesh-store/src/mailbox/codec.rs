//! Keys and values of the mailbox tables.
//!
//! An entry key is `mailbox(32) ‖ order(8, big-endian) ‖ id(16)`, so byte order is (mailbox,
//! order, id) order: the entries of one mailbox are one range, already sorted by [`Cursor`].
//!
//! An entry value:
//!
//! ```text
//! offset  len  field
//!      0    1  format version (1)
//!      1    8  expires_at_ms, big-endian
//!      9    4  body length, big-endian
//!     13    n  body (sealed ciphertext, opaque)
//! ```
//!
//! The length field repeats what the value length already says, so a truncated or spliced value
//! is detected instead of served.

use zmesh_types::Key256;

use super::Cursor;
use crate::StoreError;

const VERSION: u8 = 1;

pub(super) const MAILBOX_LEN: usize = 32;
pub(super) const ID_LEN: usize = 16;
pub(super) const ENTRY_KEY_LEN: usize = MAILBOX_LEN + 8 + ID_LEN;
pub(super) const ID_KEY_LEN: usize = MAILBOX_LEN + ID_LEN;
pub(super) const VALUE_HEADER_LEN: usize = 1 + 8 + 4;

/// `mailbox ‖ order ‖ id`.
pub(super) type EntryKey = [u8; ENTRY_KEY_LEN];
/// `mailbox ‖ id`.
pub(super) type IdKey = [u8; ID_KEY_LEN];
pub(super) type MailboxKey = [u8; MAILBOX_LEN];

/// Bytes an entry takes besides its body: its key and value header in `mailbox_entries`, its
/// row in `mailbox_ids` (key and 8-byte order) and its row in `mailbox_ttl` (8-byte expiry and
/// entry key).
pub const MAILBOX_ENTRY_OVERHEAD: u64 =
    (ENTRY_KEY_LEN + VALUE_HEADER_LEN + ID_KEY_LEN + 8 + 8 + ENTRY_KEY_LEN) as u64;

/// What an entry whose stored value is `value_len` bytes long is charged. Derived from the value
/// length alone, so even an undecodable value is accounted exactly.
pub(super) fn charged(value_len: usize) -> u64 {
    MAILBOX_ENTRY_OVERHEAD - VALUE_HEADER_LEN as u64 + value_len as u64
}

pub(super) fn entry_key(mailbox: &Key256, cursor: &Cursor) -> EntryKey {
    let mut raw = [0u8; ENTRY_KEY_LEN];
    raw[..MAILBOX_LEN].copy_from_slice(&mailbox.0);
    raw[MAILBOX_LEN..MAILBOX_LEN + 8].copy_from_slice(&cursor.order.to_be_bytes());
    raw[MAILBOX_LEN + 8..].copy_from_slice(&cursor.id);
    raw
}

/// The first and last possible entry keys of `mailbox`.
pub(super) fn mailbox_bounds(mailbox: &Key256) -> (EntryKey, EntryKey) {
    let first = entry_key(mailbox, &Cursor { order: 0, id: [0; ID_LEN] });
    let last = entry_key(mailbox, &Cursor { order: u64::MAX, id: [u8::MAX; ID_LEN] });
    (first, last)
}

pub(super) fn id_key(mailbox: &MailboxKey, id: &[u8; ID_LEN]) -> IdKey {
    let mut raw = [0u8; ID_KEY_LEN];
    raw[..MAILBOX_LEN].copy_from_slice(mailbox);
    raw[MAILBOX_LEN..].copy_from_slice(id);
    raw
}

/// Splits an entry key into its mailbox and cursor. Every 56-byte key splits; nothing to fail.
pub(super) fn split_key(raw: &EntryKey) -> (MailboxKey, Cursor) {
    let mut mailbox = [0u8; MAILBOX_LEN];
    mailbox.copy_from_slice(&raw[..MAILBOX_LEN]);
    let mut order = [0u8; 8];
    order.copy_from_slice(&raw[MAILBOX_LEN..MAILBOX_LEN + 8]);
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&raw[MAILBOX_LEN + 8..]);
    (mailbox, Cursor { order: u64::from_be_bytes(order), id })
}

/// Encodes a value. The caller has bounded `body` by the limits; the 4-byte length field is
/// checked here as well.
pub(super) fn encode(expires_at_ms: u64, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    let len = u32::try_from(body.len()).map_err(|_| StoreError::BodyTooLarge {
        len: body.len() as u64,
        max: u64::from(u32::MAX),
    })?;
    let mut out = Vec::with_capacity(VALUE_HEADER_LEN + body.len());
    out.push(VERSION);
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Decodes a value into its expiry and a view of its body. Never panics and never allocates:
/// the length field is checked against the bytes actually present.
pub(super) fn decode(value: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let (header, body) = value.split_first_chunk::<VALUE_HEADER_LEN>().ok_or_else(|| {
        StoreError::Corrupt(format!(
            "mailbox entry of {} bytes is shorter than its header",
            value.len()
        ))
    })?;
    let [version, e0, e1, e2, e3, e4, e5, e6, e7, l0, l1, l2, l3] = *header;
    if version != VERSION {
        return Err(StoreError::Corrupt(format!("unknown mailbox entry version {version}")));
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    if u64::from(len) != body.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "mailbox entry says {len} body bytes but holds {}",
            body.len()
        )));
    }
    Ok((u64::from_be_bytes([e0, e1, e2, e3, e4, e5, e6, e7]), body))
}

/// The expiry of a stored value, reading only its header.
pub(super) fn expires_at(value: &[u8]) -> Result<u64, StoreError> {
    decode(value).map(|(expires_at_ms, _)| expires_at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_overhead() {
        let value = encode(1234, b"sealed").unwrap();
        assert_eq!(charged(value.len()), MAILBOX_ENTRY_OVERHEAD + 6);
        assert_eq!(decode(&value).unwrap(), (1234, &b"sealed"[..]));
        let cursor = Cursor { order: 7, id: [3; 16] };
        let key = entry_key(&Key256([9; 32]), &cursor);
        assert_eq!(split_key(&key), ([9; 32], cursor));
    }

    #[test]
    fn rejects_bad_version_and_lengths() {
        let mut value = encode(1, b"hello").unwrap();
        assert!(matches!(decode(&value[..value.len() - 1]), Err(StoreError::Corrupt(_))));
        value.push(0);
        assert!(matches!(decode(&value), Err(StoreError::Corrupt(_))));
        value.pop();
        value[0] = 2;
        assert!(matches!(decode(&value), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(&[]), Err(StoreError::Corrupt(_))));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn key_order_is_cursor_order(a in any::<(u64, [u8; 16])>(), b in any::<(u64, [u8; 16])>()) {
            let (ca, cb) = (Cursor { order: a.0, id: a.1 }, Cursor { order: b.0, id: b.1 });
            let mailbox = Key256([1; 32]);
            prop_assert_eq!(entry_key(&mailbox, &ca).cmp(&entry_key(&mailbox, &cb)), ca.cmp(&cb));
        }
    }
}
