use super::*;
use proptest::prelude::*;

/// A Curve25519 public key of full order (X25519 of a fixed scalar with the base point).
fn curve_key(seed: u8) -> [u8; 32] {
    x25519_dalek::x25519([seed; 32], x25519_dalek::X25519_BASEPOINT_BYTES)
}

fn device_keys(seed: u8) -> DeviceKeys {
    DeviceKeys {
        curve25519: curve_key(seed),
        ed25519: *SigningIdentity::from_secret_bytes(&[seed; 32]).public().as_bytes(),
        sealing: curve_key(seed.wrapping_add(1)),
    }
}

fn bundle(n: u8) -> (SigningIdentity, PrekeyBundle) {
    let id = SigningIdentity::from_secret_bytes(&[9; 32]);
    let otks = (0..n).map(|i| curve_key(100 + i)).collect();
    let bundle = PrekeyBundle::sign(&id, device_keys(1), otks, 1_700_000_000_000).unwrap();
    (id, bundle)
}

#[test]
fn bundle_round_trips_and_verifies() {
    let (id, b) = bundle(5);
    let bytes = b.to_bytes();
    assert_eq!(bytes.len(), 1 + 128 + 8 + 2 + 5 * 32 + 64);
    let again = PrekeyBundle::from_bytes(&bytes).unwrap();
    assert_eq!(again, b);
    assert_eq!(again.verify().unwrap(), id.public());
    assert_eq!(again.created_at_ms(), 1_700_000_000_000);
    assert_eq!(again.one_time_keys().len(), 5);
}

#[test]
fn largest_bundle_is_max_len() {
    let (_, b) = bundle(MAX_ONE_TIME_KEYS as u8);
    assert_eq!(b.to_bytes().len(), MAX_BUNDLE_LEN);
    b.verify().unwrap();
    let id = SigningIdentity::from_secret_bytes(&[9; 32]);
    let too_many = vec![curve_key(3); MAX_ONE_TIME_KEYS + 1];
    assert!(matches!(
        PrekeyBundle::sign(&id, device_keys(1), too_many, 0),
        Err(CryptoError::TooLong { len: 101, .. })
    ));
}

#[test]
fn every_flipped_byte_fails() {
    let (_, b) = bundle(2);
    let bytes = b.to_bytes();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let ok = PrekeyBundle::from_bytes(&bad).and_then(|b| b.verify());
        assert!(ok.is_err(), "flip at {i} still verifies");
    }
}

#[test]
fn flipped_signature_byte_is_bad_signature() {
    let (_, b) = bundle(3);
    let mut bytes = b.to_bytes();
    let last = bytes.len() - 1;
    bytes[last - 10] ^= 0x80;
    let err = PrekeyBundle::from_bytes(&bytes).unwrap().verify().unwrap_err();
    assert_eq!(err, CryptoError::BadSignature);
}

#[test]
fn count_above_bound_is_rejected_before_reading_keys() {
    let (_, b) = bundle(0);
    let mut bytes = b.to_bytes();
    let at = 1 + 128 + 8;
    bytes[at..at + 2].copy_from_slice(&101_u16.to_be_bytes());
    assert!(matches!(PrekeyBundle::from_bytes(&bytes), Err(CryptoError::TooLong { len: 101, .. })));
    bytes[at..at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(PrekeyBundle::from_bytes(&bytes), Err(CryptoError::TooLong { .. })));
}

#[test]
fn trailing_and_truncated_are_rejected() {
    let (_, b) = bundle(1);
    let mut bytes = b.to_bytes();
    bytes.push(0);
    assert_eq!(
        PrekeyBundle::from_bytes(&bytes),
        Err(CryptoError::TrailingBytes { what: "prekey bundle", extra: 1 })
    );
    bytes.truncate(bytes.len() - 2);
    assert_eq!(PrekeyBundle::from_bytes(&bytes), Err(CryptoError::Truncated("bundle signature")));
    assert_eq!(PrekeyBundle::from_bytes(&[]), Err(CryptoError::Truncated("prekey bundle")));
    assert_eq!(PrekeyBundle::from_bytes(&[2]), Err(CryptoError::UnsupportedVersion(2)));
}

#[test]
fn weak_keys_are_rejected_even_when_signed() {
    let id = SigningIdentity::from_secret_bytes(&[9; 32]);
    let mut keys = device_keys(1);
    keys.curve25519 = [0; 32];
    let b = PrekeyBundle::sign(&id, keys, vec![], 0).unwrap();
    assert_eq!(b.verify(), Err(CryptoError::LowOrderKey));

    let mut one = [0_u8; 32];
    one[0] = 1; // u = 1, in libsodium's blocklist of low-order points.
    let b = PrekeyBundle::sign(&id, device_keys(1), vec![curve_key(5), one], 0).unwrap();
    assert_eq!(b.verify(), Err(CryptoError::LowOrderKey));

    let mut keys = device_keys(1);
    keys.ed25519 = [0; 32];
    let b = PrekeyBundle::sign(&id, keys, vec![], 0).unwrap();
    assert_eq!(b.verify(), Err(CryptoError::WeakPublicKey));
}

#[test]
fn low_order_points_are_detected() {
    assert!(is_low_order(&[0; 32]));
    let mut one = [0_u8; 32];
    one[0] = 1;
    assert!(is_low_order(&one));
    // An order-8 point (RFC 7748 test data, also in libsodium's blocklist).
    let order8: [u8; 32] = [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ];
    assert!(is_low_order(&order8));
    // u = p - 1 = -1 is on the twist: refused although the ladder would accept it.
    let mut minus_one = [0xff_u8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    assert!(is_low_order(&minus_one));
    // Every honest key passes.
    for seed in 0..=255 {
        assert!(!is_low_order(&curve_key(seed)));
    }
    assert!(!is_low_order(&curve_key(1)));
    assert!(!is_low_order(&x25519_dalek::X25519_BASEPOINT_BYTES));
}

#[test]
fn take_one_time_key_never_repeats_and_keeps_signature() {
    let (_, mut b) = bundle(10);
    let mut taken = Vec::new();
    while let Some(key) = b.take_one_time_key() {
        assert!(!taken.contains(&key));
        taken.push(key);
        b.verify().unwrap();
    }
    assert_eq!(taken.len(), 10);
    assert_eq!(b.unused_one_time_keys(), 0);
    // The encoding still carries the whole signed list.
    assert_eq!(PrekeyBundle::from_bytes(&b.to_bytes()).unwrap().unused_one_time_keys(), 10);
}

#[test]
fn certificate_round_trips_and_verifies() {
    let id = SigningIdentity::from_secret_bytes(&[4; 32]);
    let cert = SenderCertificate::sign(&id, device_keys(2));
    let bytes = cert.to_bytes();
    assert_eq!(bytes.len(), CERT_LEN);
    let again = SenderCertificate::from_bytes(&bytes).unwrap();
    assert_eq!(again, cert);
    assert_eq!(again.verify().unwrap(), id.public());
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x04;
        assert!(SenderCertificate::from_bytes(&bad).and_then(|c| c.verify()).is_err(), "byte {i}");
    }
}

#[test]
fn certificate_and_bundle_signatures_are_not_interchangeable() {
    let id = SigningIdentity::from_secret_bytes(&[4; 32]);
    let cert = SenderCertificate::sign(&id, device_keys(2));
    let b = PrekeyBundle::sign(&id, device_keys(2), vec![], 0).unwrap();
    let mut forged = b.clone();
    forged.signature = cert.signature;
    assert_eq!(forged.verify(), Err(CryptoError::BadSignature));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn bundle_encoding_round_trips(
        seed in 1_u8..200,
        created: u64,
        otks in proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_ONE_TIME_KEYS),
    ) {
        let id = SigningIdentity::from_secret_bytes(&[seed; 32]);
        let b = PrekeyBundle::sign(&id, device_keys(seed), otks, created).unwrap();
        let bytes = b.to_bytes();
        prop_assert!(bytes.len() <= MAX_BUNDLE_LEN);
        let again = PrekeyBundle::from_bytes(&bytes).unwrap();
        prop_assert_eq!(again.to_bytes(), bytes);
        prop_assert_eq!(again, b);
    }

    #[test]
    fn certificate_encoding_round_trips(seed: u8, keys: [[u8; 32]; 3]) {
        let id = SigningIdentity::from_secret_bytes(&[seed; 32]);
        let keys = DeviceKeys { curve25519: keys[0], ed25519: keys[1], sealing: keys[2] };
        let cert = SenderCertificate::sign(&id, keys);
        prop_assert_eq!(SenderCertificate::from_bytes(&cert.to_bytes()).unwrap(), cert);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4000)) {
        if let Ok(b) = PrekeyBundle::from_bytes(&bytes) {
            prop_assert_eq!(b.to_bytes(), bytes.clone());
            let _ = b.verify();
        }
        if let Ok(c) = SenderCertificate::from_bytes(&bytes) {
            prop_assert_eq!(c.to_bytes(), bytes);
            let _ = c.verify();
        }
    }

    #[test]
    fn plausible_garbage_never_panics(
        count: u16,
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (_, b) = bundle(0);
        let mut bytes = b.to_bytes()[..1 + 128 + 8].to_vec();
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(&tail);
        let _ = PrekeyBundle::from_bytes(&bytes);
    }
}
