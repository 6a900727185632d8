use super::*;
use crate::olm::E2eSession;
use crate::prekeys::DeviceKeys;
use crate::sign::SigningIdentity;
use proptest::prelude::*;

struct User {
    id: SigningIdentity,
    account: E2eAccount,
}

fn user(seed: u8) -> User {
    let mut account = E2eAccount::new();
    account.generate_one_time_keys(2);
    User { id: SigningIdentity::from_secret_bytes(&[seed; 32]), account }
}

fn content(from: &User, ciphertext: OlmCiphertext) -> SealedContent {
    SealedContent {
        sender: from.account.sender_certificate(&from.id),
        message_id: [0x42; 16],
        sent_at_ms: 1_700_000_000_123,
        ciphertext,
    }
}

fn dummy(from: &User, len: usize) -> SealedContent {
    content(from, OlmCiphertext { kind: OlmKind::Normal, body: vec![0xab; len] })
}

#[test]
fn full_exchange_through_sealed_envelopes() {
    let (alice, mut bob) = (user(1), user(2));
    let mut bundle = bob.account.prekey_bundle(&bob.id, 5).unwrap();
    let mut a =
        E2eSession::outbound(&alice.account, &mut bundle, &bob.id.public().address()).unwrap();

    let sealed =
        seal(&content(&alice, a.encrypt(b"hi bob").unwrap()), &bundle.device_keys().sealing)
            .unwrap();
    assert!(sealed.len().is_multiple_of(PAD_BLOCK));
    let opened = open(&sealed, &bob.account).unwrap();
    assert_eq!(opened.sender.verify().unwrap(), alice.id.public());
    assert_eq!(opened.message_id, [0x42; 16]);
    assert_eq!(opened.sent_at_ms, 1_700_000_000_123);
    let (mut b, text) =
        E2eSession::inbound(&mut bob.account, &opened.sender, &opened.ciphertext).unwrap();
    assert_eq!(text, b"hi bob");

    // Bob answers to the sealing key from Alice's certificate: no lookup needed.
    let reply =
        seal(&content(&bob, b.encrypt(b"hi alice").unwrap()), &b.remote_device_keys().sealing)
            .unwrap();
    let opened = open(&reply, &alice.account).unwrap();
    assert_eq!(opened.sender.verify().unwrap(), bob.id.public());
    assert_eq!(a.decrypt(&opened.ciphertext).unwrap(), b"hi alice");
    // Only the recipient can open.
    assert_eq!(open(&reply, &bob.account).unwrap_err(), CryptoError::BadTag);
}

#[test]
fn lengths_are_padded_to_blocks() {
    let alice = user(1);
    let bob = user(2);
    let mut seen = std::collections::BTreeSet::new();
    for len in [0, 1, 10, 20, 21, 22, 100, 255, 256, 1000, 4096] {
        let sealed = seal(&dummy(&alice, len), &bob.account.sealing_key()).unwrap();
        assert!(sealed.len().is_multiple_of(PAD_BLOCK), "len {len}");
        assert_eq!(open(&sealed, &bob.account).unwrap(), dummy(&alice, len));
        seen.insert(sealed.len());
    }
    // Fixed overhead: 33 header + 4 length + 222 content + 16 tag = 275 bytes, so Olm bodies
    // of up to 237 bytes share the smallest size.
    assert_eq!(seal(&dummy(&alice, 0), &bob.account.sealing_key()).unwrap().len(), 512);
    assert_eq!(seal(&dummy(&alice, 237), &bob.account.sealing_key()).unwrap().len(), 512);
    assert_eq!(seal(&dummy(&alice, 238), &bob.account.sealing_key()).unwrap().len(), 768);
    assert!(seen.len() < 11);
}

#[test]
fn every_flipped_byte_fails() {
    let (alice, bob) = (user(1), user(2));
    let sealed = seal(&dummy(&alice, 40), &bob.account.sealing_key()).unwrap();
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x10;
        let err = open(&bad, &bob.account).unwrap_err();
        if i == 0 {
            assert_eq!(err, CryptoError::UnsupportedVersion(VERSION ^ 0x10));
        } else {
            assert!(
                matches!(err, CryptoError::BadTag | CryptoError::LowOrderKey),
                "byte {i}: {err}"
            );
        }
    }
}

#[test]
fn length_checks() {
    let (alice, bob) = (user(1), user(2));
    let sealed = seal(&dummy(&alice, 40), &bob.account.sealing_key()).unwrap();
    assert_eq!(
        open(&sealed[..PAD_BLOCK - 1], &bob.account),
        Err(CryptoError::TooShort { len: PAD_BLOCK - 1, min: PAD_BLOCK })
    );
    assert_eq!(
        open(&sealed[..300], &bob.account),
        Err(CryptoError::Malformed("sealed message length"))
    );
    assert_eq!(open(&sealed[..PAD_BLOCK], &bob.account), Err(CryptoError::BadTag));
    let huge = vec![VERSION; MAX_SEALED_LEN + PAD_BLOCK];
    assert!(matches!(open(&huge, &bob.account), Err(CryptoError::TooLong { .. })));
    let too_big = dummy(&alice, MAX_BODY_LEN + 1);
    assert!(matches!(seal(&too_big, &bob.account.sealing_key()), Err(CryptoError::TooLong { .. })));
    let largest = seal(&dummy(&alice, MAX_BODY_LEN), &bob.account.sealing_key()).unwrap();
    assert!(largest.len() <= MAX_SEALED_LEN);
    open(&largest, &bob.account).unwrap();
}

#[test]
fn low_order_keys_are_refused() {
    let (alice, bob) = (user(1), user(2));
    assert_eq!(seal(&dummy(&alice, 1), &[0; 32]), Err(CryptoError::LowOrderKey));
    assert!(!is_valid_recipient_key(&[0; 32]));
    assert!(is_valid_recipient_key(&bob.account.sealing_key()));
    // A sealed message whose ephemeral key is all-zero.
    let mut sealed = seal(&dummy(&alice, 1), &bob.account.sealing_key()).unwrap();
    sealed[1..33].fill(0);
    assert_eq!(open(&sealed, &bob.account), Err(CryptoError::LowOrderKey));
}

/// Seals arbitrary inner bytes the way `seal` does, to test what `open` does after the AEAD.
fn seal_raw(inner: &[u8], recipient: &[u8; 32]) -> Vec<u8> {
    let ephemeral = StaticSecret::from([0x33; 32]);
    let epk = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*recipient));
    let (key, nonce) = derive(shared.as_bytes(), &epk, recipient);
    let mut out = vec![VERSION];
    out.extend_from_slice(&epk);
    out.extend_from_slice(inner);
    out.resize((out.len() + TAG_LEN).next_multiple_of(PAD_BLOCK) - TAG_LEN, 0);
    let (header, body) = out.split_at_mut(HEADER_LEN);
    let tag = aead::seal_in_place(&key, &nonce, header, body);
    out.extend_from_slice(&tag);
    out
}

fn framed(content: &[u8]) -> Vec<u8> {
    let mut inner = (content.len() as u32).to_be_bytes().to_vec();
    inner.extend_from_slice(content);
    inner
}

#[test]
fn authenticated_but_bad_inner_data_is_refused() {
    let (alice, bob, carol) = (user(1), user(2), user(3));
    let to = bob.account.sealing_key();
    let good = dummy(&alice, 8).to_bytes();
    assert_eq!(open(&seal_raw(&framed(&good), &to), &bob.account).unwrap(), dummy(&alice, 8));

    let mut inner = framed(&good);
    inner.push(1); // non-zero padding
    assert_eq!(
        open(&seal_raw(&inner, &to), &bob.account),
        Err(CryptoError::Malformed("sealed message padding"))
    );

    let mut inner = framed(&good);
    inner[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        open(&seal_raw(&inner, &to), &bob.account),
        Err(CryptoError::Malformed("sealed content length"))
    );

    // A certificate whose signature does not verify.
    let mut bad_cert = good.clone();
    bad_cert[CERT_LEN - 1] ^= 1;
    assert_eq!(
        open(&seal_raw(&framed(&bad_cert), &to), &bob.account),
        Err(CryptoError::BadSignature)
    );

    // A pre-key message that names another sender than the certificate.
    let mut bundle = bob.account.prekey_bundle(&bob.id, 0).unwrap();
    let mut s =
        E2eSession::outbound(&carol.account, &mut bundle, &bob.id.public().address()).unwrap();
    let mismatched = content(&alice, s.encrypt(b"x").unwrap());
    let sealed = seal(&mismatched, &to).unwrap();
    assert_eq!(open(&sealed, &bob.account), Err(CryptoError::SenderMismatch));

    // A pre-key message whose body is not a pre-key message.
    let garbage = content(&alice, OlmCiphertext { kind: OlmKind::PreKey, body: vec![1, 2, 3] });
    assert_eq!(
        open(&seal(&garbage, &to).unwrap(), &bob.account),
        Err(CryptoError::Malformed("olm message"))
    );

    // A certificate with a weak device key, validly signed.
    let weak = SenderCertificate::sign(
        &alice.id,
        DeviceKeys { curve25519: [0; 32], ..alice.account.device_keys() },
    );
    let c = SealedContent { sender: weak, ..dummy(&alice, 1) };
    assert_eq!(open(&seal(&c, &to).unwrap(), &bob.account), Err(CryptoError::LowOrderKey));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn content_round_trips(
        pre_key: bool,
        message_id: [u8; 16],
        sent_at_ms: u64,
        body in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let alice = user(1);
        let kind = if pre_key { OlmKind::PreKey } else { OlmKind::Normal };
        let c = SealedContent {
            sender: alice.account.sender_certificate(&alice.id),
            message_id,
            sent_at_ms,
            ciphertext: OlmCiphertext { kind, body },
        };
        let bytes = c.to_bytes();
        prop_assert_eq!(SealedContent::from_bytes(&bytes).unwrap(), c.clone());
        if !pre_key {
            let bob = user(2);
            let sealed = seal(&c, &bob.account.sealing_key()).unwrap();
            prop_assert_eq!(sealed.len() % PAD_BLOCK, 0);
            prop_assert_eq!(open(&sealed, &bob.account).unwrap(), c);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let bob = user(2);
        if let Ok(c) = SealedContent::from_bytes(&bytes) {
            prop_assert_eq!(c.to_bytes(), bytes.clone());
        }
        let _ = open(&bytes, &bob.account);
        let mut versioned = bytes;
        versioned.resize(512, 0);
        versioned[0] = VERSION;
        prop_assert!(open(&versioned, &bob.account).is_err());
    }

    #[test]
    fn authenticated_garbage_never_panics(inner in proptest::collection::vec(any::<u8>(), 0..700)) {
        let bob = user(2);
        let _ = open(&seal_raw(&inner, &bob.account.sealing_key()), &bob.account);
    }
}
