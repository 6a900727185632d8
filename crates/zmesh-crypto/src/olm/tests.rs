use super::*;
use proptest::prelude::*;

const PICKLE_KEY: [u8; 32] = [0x11; 32];

struct User {
    id: SigningIdentity,
    account: E2eAccount,
}

impl User {
    fn new(seed: u8) -> Self {
        let mut account = E2eAccount::new();
        account.generate_one_time_keys(5);
        Self { id: SigningIdentity::from_secret_bytes(&[seed; 32]), account }
    }

    fn address(&self) -> [u8; 32] {
        self.id.public().address()
    }

    fn bundle(&mut self) -> PrekeyBundle {
        let b = self.account.prekey_bundle(&self.id, 1).unwrap();
        self.account.mark_published();
        b
    }

    fn cert(&self) -> SenderCertificate {
        self.account.sender_certificate(&self.id)
    }
}

/// Alice starts a session with Bob; Bob creates his side from Alice's first message.
fn establish(alice: &mut User, bob: &mut User) -> (E2eSession, E2eSession) {
    let mut bundle = bob.bundle();
    let mut a = E2eSession::outbound(&alice.account, &mut bundle, &bob.address()).unwrap();
    let first = a.encrypt(b"hello bob").unwrap();
    assert_eq!(first.kind, OlmKind::PreKey);
    let (b, plaintext) = E2eSession::inbound(&mut bob.account, &alice.cert(), &first).unwrap();
    assert_eq!(plaintext, b"hello bob");
    assert_eq!(a.session_id(), b.session_id());
    (a, b)
}

#[test]
fn alice_bob_alice_over_several_ratchet_steps() {
    let (mut alice, mut bob) = (User::new(1), User::new(2));
    let (mut a, mut b) = establish(&mut alice, &mut bob);
    assert_eq!(b.remote_identity(), alice.id.public());
    assert_eq!(a.remote_identity(), bob.id.public());
    assert_eq!(a.remote_device_keys(), &bob.account.device_keys());

    for round in 0..5_u8 {
        for i in 0..3_u8 {
            let text = [round, i, 0xb0];
            let m = b.encrypt(&text).unwrap();
            assert_eq!(m.kind, OlmKind::Normal);
            assert_eq!(a.decrypt(&m).unwrap(), text);
        }
        let text = [round, 0xa0];
        let m = a.encrypt(&text).unwrap();
        // Once Bob's reply has arrived, Alice's messages are normal ones.
        assert_eq!(m.kind, OlmKind::Normal);
        assert_eq!(b.decrypt(&m).unwrap(), text);
    }
    assert!(a.has_received_message() && b.has_received_message());
}

#[test]
fn pre_key_messages_continue_until_a_reply() {
    let (mut alice, mut bob) = (User::new(1), User::new(2));
    let (mut a, mut b) = establish(&mut alice, &mut bob);
    let second = a.encrypt(b"again").unwrap();
    assert_eq!(second.kind, OlmKind::PreKey);
    assert_eq!(second.session_id().unwrap(), b.session_id());
    assert_eq!(second.sender_curve_key().unwrap(), alice.account.curve25519_key());
    assert_eq!(b.decrypt(&second).unwrap(), b"again");
    // Creating a second inbound session from it fails: the one-time key is used up.
    assert!(matches!(
        E2eSession::inbound(&mut bob.account, &alice.cert(), &second),
        Err(CryptoError::Olm(_))
    ));
}

#[test]
fn out_of_order_delivery() {
    let (mut alice, mut bob) = (User::new(1), User::new(2));
    let (mut a, mut b) = establish(&mut alice, &mut bob);
    let msgs: Vec<_> = (0..6_u8).map(|i| (i, b.encrypt(&[i]).unwrap())).collect();
    for &j in &[3_usize, 0, 5, 1, 4, 2] {
        let (i, m) = &msgs[j];
        assert_eq!(a.decrypt(m).unwrap(), [*i]);
    }
    // A replay fails: its message key is gone.
    assert!(matches!(a.decrypt(&msgs[3].1), Err(CryptoError::Olm(_))));
    // A message from an older chain, delivered after the ratchet turned, still decrypts.
    let old = b.encrypt(b"old chain").unwrap();
    let turn = a.encrypt(b"turn").unwrap();
    b.decrypt(&turn).unwrap();
    let new = b.encrypt(b"new chain").unwrap();
    assert_eq!(a.decrypt(&new).unwrap(), b"new chain");
    assert_eq!(a.decrypt(&old).unwrap(), b"old chain");
}

#[test]
fn tampered_message_fails() {
    let (mut alice, mut bob) = (User::new(1), User::new(2));
    let (mut a, mut b) = establish(&mut alice, &mut bob);
    let mut m = b.encrypt(b"secret").unwrap();
    let last = m.body.len() - 1;
    m.body[last] ^= 1;
    assert!(a.decrypt(&m).is_err());
    m.body.truncate(3);
    assert!(a.decrypt(&m).is_err());
}

#[test]
fn outbound_checks_the_bundle() {
    let (alice, mut bob, carol) = (User::new(1), User::new(2), User::new(3));
    let mut bundle = bob.bundle();
    // Asked for Carol, served Bob's (validly signed) bundle.
    assert_eq!(
        E2eSession::outbound(&alice.account, &mut bundle, &carol.address()).unwrap_err(),
        CryptoError::IdentityMismatch
    );
    let mut bytes = bundle.to_bytes();
    bytes[40] ^= 1; // inside the Olm curve25519 key
    let mut forged = PrekeyBundle::from_bytes(&bytes).unwrap();
    assert_eq!(
        E2eSession::outbound(&alice.account, &mut forged, &bob.address()).unwrap_err(),
        CryptoError::BadSignature
    );
    for _ in 0..5 {
        E2eSession::outbound(&alice.account, &mut bundle, &bob.address()).unwrap();
    }
    assert_eq!(
        E2eSession::outbound(&alice.account, &mut bundle, &bob.address()).unwrap_err(),
        CryptoError::NoOneTimeKey
    );
}

#[test]
fn inbound_checks_the_sender() {
    let (alice, mut bob, carol) = (User::new(1), User::new(2), User::new(3));
    let mut bundle = bob.bundle();
    let mut a = E2eSession::outbound(&alice.account, &mut bundle, &bob.address()).unwrap();
    let first = a.encrypt(b"hi").unwrap();
    // Carol's certificate does not name the Olm key the message was made with.
    assert_eq!(
        E2eSession::inbound(&mut bob.account, &carol.cert(), &first).unwrap_err(),
        CryptoError::SenderMismatch
    );
    let normal = OlmCiphertext { kind: OlmKind::Normal, body: first.body.clone() };
    assert!(E2eSession::inbound(&mut bob.account, &alice.cert(), &normal).is_err());
    let garbage = OlmCiphertext { kind: OlmKind::PreKey, body: vec![3, 1, 2] };
    assert_eq!(
        E2eSession::inbound(&mut bob.account, &alice.cert(), &garbage).unwrap_err(),
        CryptoError::Malformed("olm message")
    );
    // The failures above did not use up the one-time key.
    E2eSession::inbound(&mut bob.account, &alice.cert(), &first).unwrap();
}

#[test]
fn account_pickle_round_trips() {
    let mut bob = User::new(2);
    let before = bob.account.device_keys();
    let unpublished = bob.account.unpublished_one_time_keys();
    let bytes = bob.account.pickle(&PICKLE_KEY);
    let restored = E2eAccount::from_pickle(&bytes, &PICKLE_KEY).unwrap();
    assert_eq!(restored.device_keys(), before);
    assert_eq!(restored.unpublished_one_time_keys(), unpublished);
    assert_eq!(restored.one_time_key_count(), 5);

    // The restored account can still accept a session made from the old bundle.
    let alice = User::new(1);
    let mut bundle = bob.bundle();
    bob.account = restored;
    let mut a = E2eSession::outbound(&alice.account, &mut bundle, &bob.address()).unwrap();
    let first = a.encrypt(b"after restore").unwrap();
    let (_, text) = E2eSession::inbound(&mut bob.account, &alice.cert(), &first).unwrap();
    assert_eq!(text, b"after restore");
}

#[test]
fn pickles_need_the_right_key_and_kind() {
    let (mut alice, mut bob) = (User::new(1), User::new(2));
    let account = alice.account.pickle(&PICKLE_KEY);
    assert_eq!(E2eAccount::from_pickle(&account, &[0x12; 32]).unwrap_err(), CryptoError::BadTag);
    let (a, _) = establish(&mut alice, &mut bob);
    let session = a.pickle(&PICKLE_KEY);
    // Contexts differ: a session pickle is not an account pickle and vice versa.
    assert_eq!(E2eAccount::from_pickle(&session, &PICKLE_KEY).unwrap_err(), CryptoError::BadTag);
    assert_eq!(E2eSession::from_pickle(&account, &PICKLE_KEY).unwrap_err(), CryptoError::BadTag);
    assert!(E2eSession::from_pickle(&session[..10], &PICKLE_KEY).is_err());
}

#[test]
fn session_pickle_keeps_the_session_working() {
    let (mut alice, mut bob) = (User::new(1), User::new(2));
    let (a, mut b) = establish(&mut alice, &mut bob);
    let reply = b.encrypt(b"reply").unwrap();
    let mut a = E2eSession::from_pickle(&a.pickle(&PICKLE_KEY), &PICKLE_KEY).unwrap();
    assert_eq!(a.decrypt(&reply).unwrap(), b"reply");
    let mut b = E2eSession::from_pickle(&b.pickle(&PICKLE_KEY), &PICKLE_KEY).unwrap();
    assert_eq!(b.remote_identity(), alice.id.public());
    assert_eq!(b.remote_device_keys(), &alice.account.device_keys());
    for i in 0..4_u8 {
        let m = a.encrypt(&[i]).unwrap();
        assert_eq!(b.decrypt(&m).unwrap(), [i]);
        let m = b.encrypt(&[i, i]).unwrap();
        assert_eq!(a.decrypt(&m).unwrap(), [i, i]);
    }
    // A pickle taken before a message was decrypted cannot decrypt it twice after.
    let snapshot = b.pickle(&PICKLE_KEY);
    let m = a.encrypt(b"x").unwrap();
    b.decrypt(&m).unwrap();
    assert!(b.decrypt(&m).is_err());
    let mut older = E2eSession::from_pickle(&snapshot, &PICKLE_KEY).unwrap();
    assert_eq!(older.decrypt(&m).unwrap(), b"x");
}

#[test]
fn one_time_keys_bookkeeping() {
    let mut account = E2eAccount::new();
    assert_eq!(account.one_time_key_count(), 0);
    let created = account.generate_one_time_keys(3);
    assert_eq!(created.len(), 3);
    assert_eq!(account.unpublished_one_time_keys(), created);
    account.mark_published();
    assert!(account.unpublished_one_time_keys().is_empty());
    assert_eq!(account.one_time_key_count(), 3);
    assert_eq!(account.generate_one_time_keys(10_000).len(), MAX_ONE_TIME_KEYS);
    let text = format!("{account:?}");
    assert!(text.starts_with("E2eAccount"));
}

#[test]
fn plaintext_is_bounded() {
    let (mut alice, mut bob) = (User::new(1), User::new(2));
    let (mut a, mut b) = establish(&mut alice, &mut bob);
    let big = vec![7_u8; MAX_PLAINTEXT_LEN];
    let m = a.encrypt(&big).unwrap();
    assert!(m.body.len() <= MAX_BODY_LEN);
    assert_eq!(OlmCiphertext::from_bytes(&m.to_bytes()).unwrap(), m);
    assert_eq!(b.decrypt(&m).unwrap(), big);
    assert!(matches!(
        a.encrypt(&vec![0; MAX_PLAINTEXT_LEN + 1]),
        Err(CryptoError::TooLong { what: "plaintext", .. })
    ));
}

#[test]
fn olm_ciphertext_decoder_bounds() {
    assert_eq!(OlmCiphertext::from_bytes(&[]), Err(CryptoError::Truncated("olm message kind")));
    assert_eq!(
        OlmCiphertext::from_bytes(&[2, 0, 0, 0, 0]),
        Err(CryptoError::Malformed("olm message kind"))
    );
    assert!(matches!(
        OlmCiphertext::from_bytes(&[1, 0xff, 0xff, 0xff, 0xff]),
        Err(CryptoError::TooLong { .. })
    ));
    assert_eq!(
        OlmCiphertext::from_bytes(&[1, 0, 0, 0, 2, 9]),
        Err(CryptoError::Truncated("olm message body"))
    );
    assert_eq!(
        OlmCiphertext::from_bytes(&[1, 0, 0, 0, 0, 9]),
        Err(CryptoError::TrailingBytes { what: "olm message", extra: 1 })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn olm_ciphertext_round_trips(pre_key: bool, body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let kind = if pre_key { OlmKind::PreKey } else { OlmKind::Normal };
        let m = OlmCiphertext { kind, body };
        prop_assert_eq!(OlmCiphertext::from_bytes(&m.to_bytes()).unwrap(), m.clone());
        // Garbage bodies give errors, not panics.
        let _ = m.sender_curve_key();
        let _ = m.session_id();
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = OlmCiphertext::from_bytes(&bytes) {
            prop_assert_eq!(m.to_bytes(), bytes.clone());
        }
        let _ = E2eAccount::from_pickle(&bytes, &PICKLE_KEY);
        let _ = E2eSession::from_pickle(&bytes, &PICKLE_KEY);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn conversation_round_trips(
        script in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..12),
    ) {
        let (mut alice, mut bob) = (User::new(1), User::new(2));
        let (mut a, mut b) = establish(&mut alice, &mut bob);
        for (from_alice, text) in script {
            let (tx, rx) = if from_alice { (&mut a, &mut b) } else { (&mut b, &mut a) };
            let m = tx.encrypt(&text).unwrap();
            prop_assert_eq!(OlmCiphertext::from_bytes(&m.to_bytes()).unwrap(), m.clone());
            prop_assert_eq!(rx.decrypt(&m).unwrap(), text);
        }
    }
}
