//! Fuzzes the Olm messages carried inside sealed messages, which any sender makes:
//! `OlmCiphertext::from_bytes`, then vodozemac's decoding of the body (`sender_curve_key`,
//! `session_id`), decryption with an established session, and creation of an inbound session
//! from a pre-key message. None may panic.
//!
//! Inputs that do not decode as an `OlmCiphertext` are taken as a kind byte and a body, so the
//! fuzzer reaches vodozemac's decoders without first finding the envelope. A decoded message
//! must re-encode to exactly the input. Random bytes never carry a valid MAC, so a message that
//! decrypts or opens a session is a bug (the only genuine message was used up at setup, and a
//! failed attempt leaves the session and account as they were).

#![no_main]

use std::sync::{LazyLock, Mutex, PoisonError};

use libfuzzer_sys::fuzz_target;
use zmesh_crypto::olm::{E2eAccount, E2eSession, MAX_BODY_LEN, OlmCiphertext, OlmKind};
use zmesh_crypto::prekeys::SenderCertificate;
use zmesh_crypto::sign::SigningIdentity;

/// The receiving side: an account with a session started by a fixed sender, and one one-time
/// key left unused (so a pre-key message naming it gets as far as the MAC).
struct Receiver {
    account: E2eAccount,
    sender: SenderCertificate,
    session: E2eSession,
}

static RECEIVER: LazyLock<Mutex<Receiver>> = LazyLock::new(|| {
    let sender_identity = SigningIdentity::from_secret_bytes(&[1; 32]);
    let receiver_identity = SigningIdentity::from_secret_bytes(&[2; 32]);
    let sender_account = E2eAccount::new();
    let mut account = E2eAccount::new();
    account.generate_one_time_keys(2);
    let mut bundle = account.prekey_bundle(&receiver_identity, 1).expect("bundle");
    let address = receiver_identity.public().address();
    let mut outbound =
        E2eSession::outbound(&sender_account, &mut bundle, &address).expect("outbound session");
    let first = outbound.encrypt(b"hello").expect("encrypt");
    let sender = sender_account.sender_certificate(&sender_identity);
    let (session, plain) = E2eSession::inbound(&mut account, &sender, &first).expect("inbound");
    assert_eq!(plain, b"hello");
    Mutex::new(Receiver { account, sender, session })
});

fuzz_target!(|data: &[u8]| {
    let message = match OlmCiphertext::from_bytes(data) {
        Ok(message) => {
            assert_eq!(message.to_bytes(), data, "olm message re-encodes differently");
            message
        }
        Err(_) => {
            let Some((kind, body)) = data.split_first() else { return };
            if body.len() > MAX_BODY_LEN {
                return;
            }
            let kind = if kind & 1 == 0 { OlmKind::PreKey } else { OlmKind::Normal };
            OlmCiphertext { kind, body: body.to_vec() }
        }
    };
    let curve_key = message.sender_curve_key();
    let session_id = message.session_id();
    assert_eq!(curve_key.is_some(), session_id.is_some(), "body decoded only once of twice");
    if message.kind == OlmKind::Normal {
        assert!(curve_key.is_none(), "a normal message names a sender key");
    }

    let mut receiver = RECEIVER.lock().unwrap_or_else(PoisonError::into_inner);
    let Receiver { account, sender, session } = &mut *receiver;
    if let Ok(plain) = session.decrypt(&message) {
        panic!("forged olm message decrypted to {} bytes", plain.len());
    }
    if message.kind == OlmKind::PreKey && E2eSession::inbound(account, sender, &message).is_ok() {
        panic!("forged pre-key message opened a session");
    }
});
