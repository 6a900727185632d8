//! The signed structures of `/zmesh/msg/1.0`: records a user publishes (presence, prekey
//! bundle) and the user's authorisation of a login or mailbox operation.
//!
//! Signatures are opaque 64-byte Ed25519 signatures here; this crate only lays out the bytes a
//! signature covers ([`SignedRecord::signed_bytes`], [`UserAuth::signed_bytes`]), and the crates
//! that hold keys sign and verify them. Each structure has its own domain prefix, so a
//! signature made for one can never pass as another.

use crate::{Reader, WireError, Writer};

use super::MAX_RECORD_VALUE;

/// Domain separation for [`SignedRecord`] signatures.
pub const RECORD_DOMAIN: &[u8] = b"zmesh/record/v1\0";
/// Domain separation for [`UserAuth`] signatures.
pub const USER_AUTH_DOMAIN: &[u8] = b"zmesh/user-auth/v1\0";
/// Encoded length of a [`SignedRecord`] without its value.
pub const RECORD_FIXED_LEN: usize = 1 + 32 + 8 + 8 + 4 + 64;
/// Longest encoded [`SignedRecord`].
pub const MAX_RECORD_LEN: usize = RECORD_FIXED_LEN + MAX_RECORD_VALUE;
/// Encoded length of a [`UserAuth`].
pub const USER_AUTH_LEN: usize = 32 + 1 + 32 + 8 + 16 + 64;

/// What a [`SignedRecord`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Which relay currently serves the user, so other relays can forward to it.
    Presence = 1,
    /// The user's prekey bundle, which senders need to open a session.
    Bundle = 2,
}

impl RecordKind {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Unknown kinds are refused: a holder must not store what it cannot check.
    pub fn from_code(c: u8) -> Result<Self, WireError> {
        match c {
            1 => Ok(RecordKind::Presence),
            2 => Ok(RecordKind::Bundle),
            v => Err(WireError::BadValue { field: "record kind", value: v.into() }),
        }
    }
}

/// A value a user publishes in the DHT, signed by the user's identity key so any holder or
/// reader can check it without trusting the relay that stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    pub kind: RecordKind,
    /// Ed25519 public key; the owner address is its SHA-256.
    pub owner_key: [u8; 32],
    /// A holder replaces its copy only with a higher version, so an old record cannot be
    /// replayed over a new one.
    pub version: u64,
    /// Unix ms after which holders drop the record.
    pub expires_at_ms: u64,
    /// Opaque here (a presence entry or a prekey bundle); at most [`MAX_RECORD_VALUE`] bytes.
    pub value: Vec<u8>,
    pub signature: [u8; 64],
}

impl SignedRecord {
    /// The bytes the owner signs: the domain, then every field but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer(RECORD_DOMAIN.to_vec());
        self.encode_unsigned(&mut w);
        w.0
    }

    fn encode_unsigned(&self, w: &mut Writer) {
        w.u8(self.kind.code());
        w.bytes(&self.owner_key);
        w.u64(self.version);
        w.u64(self.expires_at_ms);
        // The full length is written even past the limit: cutting the value would change what
        // the signature covers. The receiving decoder refuses such a record.
        w.u32(self.value.len() as u32);
        w.bytes(&self.value);
    }

    pub fn encode(&self, w: &mut Writer) {
        self.encode_unsigned(w);
        w.bytes(&self.signature);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let kind = RecordKind::from_code(r.u8("record kind")?)?;
        let owner_key = r.array("owner key")?;
        let version = r.u64("record version")?;
        let expires_at_ms = r.u64("record expiry")?;
        let len = r.u32("record value length")? as usize;
        if len > MAX_RECORD_VALUE {
            return Err(WireError::BadLength {
                field: "record value",
                len,
                min: 0,
                max: MAX_RECORD_VALUE,
            });
        }
        let value = r.bytes(len, "record value")?.to_vec();
        let signature = r.array("record signature")?;
        Ok(SignedRecord { kind, owner_key, version, expires_at_ms, value, signature })
    }
}

/// What a [`UserAuth`] allows; part of the signed bytes, so an authorisation for one operation
/// cannot be used for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthPurpose {
    /// Log in to one relay.
    Login = 1,
    /// Read one mailbox.
    MailboxRead = 2,
    /// Acknowledge (and so delete) messages of one mailbox.
    MailboxAck = 3,
}

impl AuthPurpose {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Result<Self, WireError> {
        match c {
            1 => Ok(AuthPurpose::Login),
            2 => Ok(AuthPurpose::MailboxRead),
            3 => Ok(AuthPurpose::MailboxAck),
            v => Err(WireError::BadValue { field: "auth purpose", value: v.into() }),
        }
    }
}

/// A user's signed, single-use authorisation of one operation on one target. The target binds
/// it to one relay or one mailbox, the timestamp and nonce to one moment, so a relay that sees
/// it cannot replay it elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuth {
    /// Ed25519 public key; the user's address is its SHA-256.
    pub owner_key: [u8; 32],
    pub purpose: AuthPurpose,
    /// Login: SHA-256 of the relay's PeerId bytes. Mailbox operations: the mailbox key.
    pub target: [u8; 32],
    pub timestamp_ms: u64,
    /// Random; checkers refuse a nonce seen within the replay window.
    pub nonce: [u8; 16],
    pub signature: [u8; 64],
}

impl UserAuth {
    /// The bytes the user signs: the domain, then every field but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer(USER_AUTH_DOMAIN.to_vec());
        self.encode_unsigned(&mut w);
        w.0
    }

    fn encode_unsigned(&self, w: &mut Writer) {
        w.bytes(&self.owner_key);
        w.u8(self.purpose.code());
        w.bytes(&self.target);
        w.u64(self.timestamp_ms);
        w.bytes(&self.nonce);
    }

    pub fn encode(&self, w: &mut Writer) {
        self.encode_unsigned(w);
        w.bytes(&self.signature);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(UserAuth {
            owner_key: r.array("owner key")?,
            purpose: AuthPurpose::from_code(r.u8("auth purpose")?)?,
            target: r.array("auth target")?,
            timestamp_ms: r.u64("auth timestamp")?,
            nonce: r.array("auth nonce")?,
            signature: r.array("auth signature")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use proptest::prelude::*;

    pub fn kind() -> impl Strategy<Value = RecordKind> {
        prop_oneof![Just(RecordKind::Presence), Just(RecordKind::Bundle)]
    }

    fn signature() -> impl Strategy<Value = [u8; 64]> {
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&a);
            sig[32..].copy_from_slice(&b);
            sig
        })
    }

    pub fn record() -> impl Strategy<Value = SignedRecord> {
        (
            kind(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_RECORD_VALUE),
            signature(),
        )
            .prop_map(|(kind, owner_key, version, expires_at_ms, value, signature)| {
                SignedRecord { kind, owner_key, version, expires_at_ms, value, signature }
            })
    }

    pub fn purpose() -> impl Strategy<Value = AuthPurpose> {
        prop_oneof![
            Just(AuthPurpose::Login),
            Just(AuthPurpose::MailboxRead),
            Just(AuthPurpose::MailboxAck)
        ]
    }

    pub fn user_auth() -> impl Strategy<Value = UserAuth> {
        (
            any::<[u8; 32]>(),
            purpose(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<[u8; 16]>(),
            signature(),
        )
            .prop_map(|(owner_key, purpose, target, timestamp_ms, nonce, signature)| {
                UserAuth { owner_key, purpose, target, timestamp_ms, nonce, signature }
            })
    }

    fn encoded_record(r: &SignedRecord) -> Vec<u8> {
        let mut w = Writer::default();
        r.encode(&mut w);
        w.0
    }

    fn encoded_auth(a: &UserAuth) -> Vec<u8> {
        let mut w = Writer::default();
        a.encode(&mut w);
        w.0
    }

    /// Every single-field change of `r`, one per field but the signature.
    fn record_changes(r: &SignedRecord, pick: usize, bit: u32) -> Vec<SignedRecord> {
        let mut out = Vec::new();
        let mut c = r.clone();
        c.kind = match r.kind {
            RecordKind::Presence => RecordKind::Bundle,
            RecordKind::Bundle => RecordKind::Presence,
        };
        out.push(c);
        let mut c = r.clone();
        c.owner_key[pick % 32] ^= 1 << (bit % 8);
        out.push(c);
        let mut c = r.clone();
        c.version ^= 1 << (bit % 64);
        out.push(c);
        let mut c = r.clone();
        c.expires_at_ms ^= 1 << (bit % 64);
        out.push(c);
        let mut c = r.clone();
        match c.value.len() {
            0 => c.value.push(0),
            n => c.value[pick % n] ^= 1 << (bit % 8),
        }
        out.push(c);
        let mut c = r.clone();
        if c.value.pop().is_none() {
            c.value.push(0);
        }
        out.push(c);
        out
    }

    /// Every single-field change of `a`, one per field but the signature.
    fn auth_changes(a: &UserAuth, pick: usize, bit: u32) -> Vec<UserAuth> {
        let mut out = Vec::new();
        let mut c = a.clone();
        c.owner_key[pick % 32] ^= 1 << (bit % 8);
        out.push(c);
        for purpose in [AuthPurpose::Login, AuthPurpose::MailboxRead, AuthPurpose::MailboxAck] {
            if purpose != a.purpose {
                let mut c = a.clone();
                c.purpose = purpose;
                out.push(c);
            }
        }
        let mut c = a.clone();
        c.target[pick % 32] ^= 1 << (bit % 8);
        out.push(c);
        let mut c = a.clone();
        c.timestamp_ms ^= 1 << (bit % 64);
        out.push(c);
        let mut c = a.clone();
        c.nonce[pick % 16] ^= 1 << (bit % 8);
        out.push(c);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn records_round_trip(r in record()) {
            let bytes = encoded_record(&r);
            prop_assert_eq!(bytes.len(), RECORD_FIXED_LEN + r.value.len());
            prop_assert_eq!(SignedRecord::decode(&mut Reader::new(&bytes)).unwrap(), r);
        }

        #[test]
        fn auths_round_trip(a in user_auth()) {
            let bytes = encoded_auth(&a);
            prop_assert_eq!(bytes.len(), USER_AUTH_LEN);
            prop_assert_eq!(UserAuth::decode(&mut Reader::new(&bytes)).unwrap(), a);
        }

        #[test]
        fn a_record_signature_covers_every_field(
            r in record(), pick in any::<usize>(), bit in any::<u32>(),
        ) {
            let signed = r.signed_bytes();
            prop_assert!(signed.starts_with(RECORD_DOMAIN));
            // The encoding is the signed fields (after the domain) followed by the signature.
            let bytes = encoded_record(&r);
            prop_assert_eq!(&bytes[..bytes.len() - 64], &signed[RECORD_DOMAIN.len()..]);
            prop_assert_eq!(&bytes[bytes.len() - 64..], &r.signature[..]);
            for changed in record_changes(&r, pick, bit) {
                prop_assert_ne!(changed.signed_bytes(), signed.clone(), "{:?}", changed);
            }
            let mut resigned = r.clone();
            resigned.signature[pick % 64] ^= 1;
            prop_assert_eq!(resigned.signed_bytes(), signed);
        }

        #[test]
        fn an_auth_signature_covers_every_field(
            a in user_auth(), pick in any::<usize>(), bit in any::<u32>(),
        ) {
            let signed = a.signed_bytes();
            prop_assert!(signed.starts_with(USER_AUTH_DOMAIN));
            let bytes = encoded_auth(&a);
            prop_assert_eq!(&bytes[..bytes.len() - 64], &signed[USER_AUTH_DOMAIN.len()..]);
            prop_assert_eq!(&bytes[bytes.len() - 64..], &a.signature[..]);
            for changed in auth_changes(&a, pick, bit) {
                prop_assert_ne!(changed.signed_bytes(), signed.clone(), "{:?}", changed);
            }
            let mut resigned = a.clone();
            resigned.signature[pick % 64] ^= 1;
            prop_assert_eq!(resigned.signed_bytes(), signed);
        }

        #[test]
        fn garbage_records_and_auths_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let _ = SignedRecord::decode(&mut Reader::new(&bytes));
            let _ = UserAuth::decode(&mut Reader::new(&bytes));
        }
    }

    #[test]
    fn unknown_kinds_and_purposes_are_refused() {
        for c in [0u8, 3, 0xFF] {
            assert!(matches!(RecordKind::from_code(c), Err(WireError::BadValue { .. })));
        }
        for c in [0u8, 4, 0xFF] {
            assert!(matches!(AuthPurpose::from_code(c), Err(WireError::BadValue { .. })));
        }
    }

    #[test]
    fn record_and_auth_signatures_never_collide() {
        assert!(!RECORD_DOMAIN.starts_with(USER_AUTH_DOMAIN));
        assert!(!USER_AUTH_DOMAIN.starts_with(RECORD_DOMAIN));
    }

    #[test]
    fn an_oversized_record_value_is_refused_before_allocation() {
        let mut w = Writer::default();
        w.u8(RecordKind::Bundle.code());
        w.bytes(&[0; 32]);
        w.u64(1);
        w.u64(2);
        w.u32(u32::MAX);
        assert!(matches!(
            SignedRecord::decode(&mut Reader::new(&w.0)),
            Err(WireError::BadLength { field: "record value", .. })
        ));
    }
}
