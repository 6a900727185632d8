use proptest::prelude::*;

use super::envelope::strategy::{cursor, envelope, outcome};
use super::records::strategy::{kind, record, user_auth};
use super::*;
use crate::control::FlowReasonCode;
use crate::{LEN_PREFIX, decode_frame, encode_frame};

const ALL_TYPES: [u8; 21] = [
    TYPE_LOGIN,
    TYPE_PUBLISH_RECORD,
    TYPE_FETCH_RECORD,
    TYPE_SEND,
    TYPE_SYNC,
    TYPE_ACK,
    TYPE_DELIVER,
    TYPE_FORWARD,
    TYPE_MAILBOX_APPEND,
    TYPE_MAILBOX_READ,
    TYPE_MAILBOX_ACK,
    TYPE_MAILBOX_IDS,
    TYPE_RESUME,
    TYPE_RESULT,
    TYPE_SENT,
    TYPE_RECORD,
    TYPE_BATCH,
    TYPE_DELIVERED,
    TYPE_IDS,
    TYPE_LOGGED_IN,
    TYPE_THROTTLED,
];

fn message() -> impl Strategy<Value = MsgMessage> {
    let sealed = proptest::collection::vec(any::<u8>(), 0..2048);
    let envelopes = || proptest::collection::vec(envelope(), 0..6);
    let after = || proptest::option::of(cursor());
    prop_oneof![
        user_auth().prop_map(|auth| MsgMessage::Login { auth }),
        record().prop_map(|record| MsgMessage::PublishRecord { record }),
        (kind(), any::<[u8; 32]>())
            .prop_map(|(kind, owner_address)| MsgMessage::FetchRecord { kind, owner_address }),
        (any::<[u8; 32]>(), any::<[u8; 16]>(), sealed)
            .prop_map(|(recipient, id, sealed)| MsgMessage::Send { recipient, id, sealed }),
        (user_auth(), after(), any::<u16>())
            .prop_map(|(auth, after, max_messages)| MsgMessage::Sync { auth, after, max_messages }),
        (user_auth(), cursor()).prop_map(|(auth, upto)| MsgMessage::Ack { auth, upto }),
        envelopes().prop_map(|messages| MsgMessage::Deliver { messages }),
        (any::<[u8; 32]>(), envelope())
            .prop_map(|(recipient, envelope)| MsgMessage::Forward { recipient, envelope }),
        (any::<[u8; 32]>(), envelope())
            .prop_map(|(mailbox, envelope)| MsgMessage::MailboxAppend { mailbox, envelope }),
        (user_auth(), after(), any::<u16>()).prop_map(|(auth, after, max_messages)| {
            MsgMessage::MailboxRead { auth, after, max_messages }
        }),
        (user_auth(), cursor()).prop_map(|(auth, upto)| MsgMessage::MailboxAck { auth, upto }),
        (any::<[u8; 32]>(), after(), any::<u16>())
            .prop_map(|(mailbox, after, limit)| MsgMessage::MailboxIds { mailbox, after, limit }),
        outcome().prop_map(|outcome| MsgMessage::Result { outcome }),
        (any::<[u8; 16]>(), outcome()).prop_map(|(id, outcome)| MsgMessage::Sent { id, outcome }),
        (outcome(), proptest::option::of(record()))
            .prop_map(|(outcome, record)| MsgMessage::Record { outcome, record }),
        (envelopes(), any::<bool>(), after()).prop_map(|(messages, has_more, next_cursor)| {
            MsgMessage::Batch { messages, has_more, next_cursor }
        }),
        (after(), any::<u16>()).prop_map(|(upto, count)| MsgMessage::Delivered { upto, count }),
        proptest::collection::vec(cursor(), 0..=MAX_IDS)
            .prop_map(|cursors| MsgMessage::Ids { cursors }),
        (outcome(), any::<[u8; 32]>()).prop_map(|(outcome, session_token)| {
            MsgMessage::LoggedIn { outcome, session_token }
        }),
        any::<[u8; 32]>().prop_map(|session_token| MsgMessage::Resume { session_token }),
        (any::<u32>(), any::<u32>(), any::<u8>(), any::<u32>()).prop_map(
            |(new_window, consumed, reason, retry_after_ms)| MsgMessage::Throttled {
                flow: FlowControl {
                    new_window,
                    consumed,
                    reason: FlowReasonCode::from_byte(reason),
                    retry_after_ms,
                },
            }
        ),
    ]
}

fn round_trip(m: &MsgMessage) -> MsgMessage {
    let bytes = encode_frame(m);
    assert!(bytes.len() <= MsgMessage::MAX_FRAME);
    let (decoded, used) = decode_frame::<MsgMessage>(&bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    decoded
}

/// A frame around a hand-built body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn sample_auth() -> UserAuth {
    UserAuth {
        owner_key: [1; 32],
        purpose: AuthPurpose::MailboxRead,
        target: [2; 32],
        timestamp_ms: 3,
        nonce: [4; 16],
        signature: [5; 64],
    }
}

fn sample_envelope(sealed_len: usize) -> Envelope {
    Envelope { id: [6; 16], order: 7, expires_at_ms: 8, sealed: vec![9; sealed_len] }
}

/// One message of every variant, in type-code order.
fn one_of_each() -> Vec<MsgMessage> {
    let record = SignedRecord {
        kind: RecordKind::Bundle,
        owner_key: [1; 32],
        version: 2,
        expires_at_ms: 3,
        value: vec![4; MAX_RECORD_VALUE],
        signature: [5; 64],
    };
    let cursor = Cursor { order: 10, id: [11; 16] };
    let failed = MsgOutcome::new(MsgStatus::NotHere, "not served here");
    vec![
        MsgMessage::Login { auth: sample_auth() },
        MsgMessage::PublishRecord { record: record.clone() },
        MsgMessage::FetchRecord { kind: RecordKind::Presence, owner_address: [12; 32] },
        MsgMessage::Send { recipient: [13; 32], id: [14; 16], sealed: vec![15; MAX_SEALED_LEN] },
        MsgMessage::Sync { auth: sample_auth(), after: Some(cursor), max_messages: 100 },
        MsgMessage::Ack { auth: sample_auth(), upto: cursor },
        MsgMessage::Deliver { messages: vec![sample_envelope(3), sample_envelope(0)] },
        MsgMessage::Forward { recipient: [16; 32], envelope: sample_envelope(MAX_SEALED_LEN) },
        MsgMessage::MailboxAppend { mailbox: [17; 32], envelope: sample_envelope(1) },
        MsgMessage::MailboxRead { auth: sample_auth(), after: None, max_messages: 256 },
        MsgMessage::MailboxAck { auth: sample_auth(), upto: cursor },
        MsgMessage::MailboxIds { mailbox: [18; 32], after: Some(cursor), limit: 1024 },
        MsgMessage::Resume { session_token: [21; 32] },
        MsgMessage::Result { outcome: failed.clone() },
        MsgMessage::Sent {
            id: [19; 16],
            outcome: MsgOutcome::new(MsgStatus::Queued, "3 of 3 replicas"),
        },
        MsgMessage::Record { outcome: MsgOutcome::ok(), record: Some(record) },
        MsgMessage::Batch {
            messages: vec![sample_envelope(5)],
            has_more: true,
            next_cursor: Some(cursor),
        },
        MsgMessage::Delivered { upto: Some(cursor), count: 1 },
        MsgMessage::Ids { cursors: vec![cursor; MAX_IDS] },
        MsgMessage::LoggedIn { outcome: failed, session_token: [20; 32] },
        MsgMessage::Throttled {
            flow: FlowControl {
                new_window: 100,
                consumed: 7,
                reason: FlowReasonCode::RateLimit,
                retry_after_ms: 600,
            },
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn messages_round_trip(m in message()) {
        prop_assert_eq!(round_trip(&m), m);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = MsgMessage::decode_body(&bytes);
        let _ = decode_frame::<MsgMessage>(&bytes);
    }

    /// Random bytes behind a known type code reach the field decoders, not just the dispatch.
    #[test]
    fn garbage_behind_every_type_never_panics(
        t in proptest::sample::select(ALL_TYPES.to_vec()),
        rest in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut body = vec![t];
        body.extend_from_slice(&rest);
        if let Ok(m) = MsgMessage::decode_body(&body) {
            prop_assert_eq!(m.type_code(), t);
            prop_assert_eq!(round_trip(&m), m);
        }
    }

    #[test]
    fn trailing_bytes_are_ignored(
        m in message(), tail in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut w = Writer::default();
        m.encode_body(&mut w);
        w.bytes(&tail);
        prop_assert_eq!(MsgMessage::decode_body(&w.0).unwrap(), m.clone());
        let (decoded, used) = decode_frame::<MsgMessage>(&frame(&w.0)).unwrap().unwrap();
        prop_assert_eq!(used, LEN_PREFIX + w.0.len());
        prop_assert_eq!(decoded, m);
    }

    #[test]
    fn a_truncated_frame_waits_for_more_bytes(m in message(), cut in any::<prop::sample::Index>()) {
        let bytes = encode_frame(&m);
        let cut = cut.index(bytes.len());
        prop_assert_eq!(decode_frame::<MsgMessage>(&bytes[..cut]), Ok(None));
    }
}

#[test]
fn every_variant_round_trips_with_its_own_code() {
    let all = one_of_each();
    assert_eq!(all.iter().map(MsgMessage::type_code).collect::<Vec<_>>(), ALL_TYPES);
    for m in all {
        let bytes = encode_frame(&m);
        assert_eq!(bytes[LEN_PREFIX], m.type_code());
        assert_eq!(round_trip(&m), m);
    }
}

#[test]
fn codes_split_into_requests_and_answers() {
    for t in ALL_TYPES {
        assert!((0x60..=0x7F).contains(&t), "0x{t:02x}");
    }
    assert!(ALL_TYPES[..13].iter().all(|t| (0x60..=0x6F).contains(t)));
    assert!(ALL_TYPES[13..].iter().all(|t| (0x70..=0x7F).contains(t)));
}

#[test]
fn a_full_batch_of_the_longest_envelopes_fits_a_frame() {
    let full = vec![sample_envelope(MAX_SEALED_LEN); MAX_BATCH];
    let cursor = Some(Cursor { order: u64::MAX, id: [0xFF; 16] });
    let batch = MsgMessage::Batch { messages: full.clone(), has_more: true, next_cursor: cursor };
    let bytes = encode_frame(&batch);
    assert_eq!(bytes.len() - LEN_PREFIX, MAX_BATCH_BODY);
    assert!(bytes.len() <= MsgMessage::MAX_FRAME);
    assert_eq!(round_trip(&batch), batch);
    let deliver = MsgMessage::Deliver { messages: full };
    assert!(encode_frame(&deliver).len() - LEN_PREFIX <= MsgMessage::MAX_FRAME);
}

#[test]
fn longer_lists_are_cut_to_their_limits_when_encoded() {
    let batch = MsgMessage::Deliver { messages: vec![sample_envelope(0); MAX_BATCH + 5] };
    let MsgMessage::Deliver { messages } = round_trip(&batch) else { panic!("not a Deliver") };
    assert_eq!(messages.len(), MAX_BATCH);
    let ids = MsgMessage::Ids { cursors: vec![Cursor { order: 1, id: [1; 16] }; MAX_IDS + 1] };
    let MsgMessage::Ids { cursors } = round_trip(&ids) else { panic!("not Ids") };
    assert_eq!(cursors.len(), MAX_IDS);
}

#[test]
fn oversized_lengths_are_refused_before_allocation() {
    // A sealed message claiming 4 GiB.
    let mut w = Writer::default();
    w.u8(TYPE_SEND);
    w.bytes(&[0; 32 + 16]);
    w.u32(u32::MAX);
    assert!(matches!(
        decode_frame::<MsgMessage>(&frame(&w.0)),
        Err(WireError::BadLength { field: "sealed", len, .. }) if len == u32::MAX as usize
    ));
    // One byte over the sealed limit, inside an envelope.
    let mut w = Writer::default();
    w.u8(TYPE_FORWARD);
    w.bytes(&[0; 32 + 16 + 8 + 8]);
    w.u32(MAX_SEALED_LEN as u32 + 1);
    assert!(matches!(
        MsgMessage::decode_body(&w.0),
        Err(WireError::BadLength { field: "sealed", .. })
    ));
    // Batches and id lists claiming 65535 entries.
    for (t, field, max) in [
        (TYPE_DELIVER, "messages", MAX_BATCH),
        (TYPE_BATCH, "messages", MAX_BATCH),
        (TYPE_IDS, "cursors", MAX_IDS),
    ] {
        let body = [t, 0xFF, 0xFF];
        assert_eq!(
            decode_frame::<MsgMessage>(&frame(&body)),
            Err(WireError::TooMany { field, count: 0xFFFF, max })
        );
    }
    // A record value claiming 4 GiB.
    let mut w = Writer::default();
    w.u8(TYPE_PUBLISH_RECORD);
    w.u8(RecordKind::Presence.code());
    w.bytes(&[0; 32 + 8 + 8]);
    w.u32(u32::MAX);
    assert!(matches!(
        MsgMessage::decode_body(&w.0),
        Err(WireError::BadLength { field: "record value", .. })
    ));
    // A length prefix over the frame limit is refused before the body is read.
    let prefix = (MsgMessage::MAX_FRAME as u32 + 1).to_be_bytes();
    assert!(matches!(decode_frame::<MsgMessage>(&prefix), Err(WireError::FrameTooLarge { .. })));
}

#[test]
fn unknown_type_codes_are_reported_as_such() {
    for t in 0..=u8::MAX {
        if ALL_TYPES.contains(&t) {
            continue;
        }
        let err = decode_frame::<MsgMessage>(&frame(&[t, 0, 0, 0])).unwrap_err();
        assert_eq!(err, WireError::UnknownType(t));
        assert!(err.is_unknown_type());
    }
}

#[test]
fn unknown_statuses_decode_as_other_and_keep_their_code() {
    for code in [11u8, 0x42, 0xFF] {
        let body = [TYPE_RESULT, code, 0];
        let m = MsgMessage::decode_body(&body).unwrap();
        assert_eq!(
            m,
            MsgMessage::Result {
                outcome: MsgOutcome { status: MsgStatus::Other(code), detail: String::new() }
            }
        );
        assert_eq!(&encode_frame(&m)[LEN_PREFIX..], &body);
    }
}

#[test]
fn flags_other_than_zero_or_one_are_refused() {
    let mut w = Writer::default();
    w.u8(TYPE_SYNC);
    sample_auth().encode(&mut w);
    w.u8(2);
    w.bytes(&[0; CURSOR_LEN + 2]);
    let sync = w.0;
    assert!(matches!(
        MsgMessage::decode_body(&sync),
        Err(WireError::BadValue { field: "after flag", value: 2 })
    ));
    let record = [TYPE_RECORD, 0, 0, 7];
    assert!(matches!(
        MsgMessage::decode_body(&record),
        Err(WireError::BadValue { field: "record flag", value: 7 })
    ));
    let batch = [TYPE_BATCH, 0, 0, 2, 0];
    assert!(matches!(
        MsgMessage::decode_body(&batch),
        Err(WireError::BadValue { field: "has more", value: 2 })
    ));
}

#[test]
fn unknown_record_kinds_and_purposes_are_refused_in_frames() {
    let fetch = [TYPE_FETCH_RECORD, 9];
    assert!(matches!(
        MsgMessage::decode_body(&fetch),
        Err(WireError::BadValue { field: "record kind", value: 9 })
    ));
    let mut login = vec![TYPE_LOGIN];
    login.extend_from_slice(&[0; 32]);
    login.push(0);
    assert!(matches!(
        MsgMessage::decode_body(&login),
        Err(WireError::BadValue { field: "auth purpose", value: 0 })
    ));
}
