//! Fuzzes the decoder of the messenger's state file (its plaintext, after the envelope has
//! opened): a damaged file must give an error, never a panic, and a state that decodes must
//! encode to a plaintext that decodes to the same state (pickles are sealed again with fresh
//! nonces, so states are compared, not bytes).
//!
//! Random bytes never hold a pickle that opens, so the first input byte chooses valid parts to
//! put in front of the rest: an account pickle, then one contact (identity and device keys),
//! with or without its sender certificate and an Olm session with it. The rest of the input
//! follows those parts (more contacts, or the seen ids).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use zmesh_client::messenger::fuzzing::decode_state;
use zmesh_crypto::olm::{E2eAccount, E2eSession};
use zmesh_crypto::sign::SigningIdentity;
use zmesh_fuzz::Input;

/// The key pickles are sealed under.
const KEY: [u8; 32] = [7; 32];
/// The state format's version byte.
const STATE_VERSION: u8 = 1;

const WITH_ACCOUNT: u8 = 1;
const WITH_CONTACT: u8 = 2;
const WITH_CERT: u8 = 4;
const WITH_SESSION: u8 = 8;

/// Valid pieces of a state: the account pickle, a contact's identity and keys, its sender
/// certificate, and the pickle of an outbound session to it.
struct Parts {
    account: Vec<u8>,
    contact: Vec<u8>,
    cert: Vec<u8>,
    session: Vec<u8>,
}

static PARTS: LazyLock<Parts> = LazyLock::new(|| {
    let account = E2eAccount::new();
    let contact_identity = SigningIdentity::from_secret_bytes(&[2; 32]);
    let mut contact_account = E2eAccount::new();
    contact_account.generate_one_time_keys(1);
    let mut bundle = contact_account.prekey_bundle(&contact_identity, 1).expect("bundle");
    let address = contact_identity.public().address();
    let session = E2eSession::outbound(&account, &mut bundle, &address).expect("session");
    let keys = contact_account.device_keys();
    let mut contact = contact_identity.public().as_bytes().to_vec();
    for key in [keys.curve25519, keys.ed25519, keys.sealing] {
        contact.extend_from_slice(&key);
    }
    Parts {
        account: account.pickle(&KEY),
        contact,
        cert: contact_account.sender_certificate(&contact_identity).to_bytes(),
        session: session.pickle(&KEY),
    }
});

fn put_blob(out: &mut Vec<u8>, blob: &[u8]) {
    out.extend_from_slice(&u32::try_from(blob.len()).expect("small blob").to_be_bytes());
    out.extend_from_slice(blob);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let parts = input.u8();
    let mut plain = Vec::new();
    if parts & WITH_ACCOUNT != 0 {
        plain.push(STATE_VERSION);
        put_blob(&mut plain, &PARTS.account);
        if parts & WITH_CONTACT != 0 {
            plain.extend_from_slice(&1_u32.to_be_bytes());
            plain.extend_from_slice(&PARTS.contact);
            if parts & WITH_CERT != 0 {
                plain.push(1);
                plain.extend_from_slice(&PARTS.cert);
            } else {
                plain.push(0);
            }
            if parts & WITH_SESSION != 0 {
                plain.push(1);
                put_blob(&mut plain, &PARTS.session);
            } else {
                plain.push(0);
            }
        }
    }
    plain.extend_from_slice(input.rest());

    if let Ok((state, encoded)) = decode_state(&plain, &KEY) {
        let (again, _) = decode_state(&encoded, &KEY).expect("a re-encoded state decodes");
        assert_eq!(again, state, "re-encoded state decodes to a different state");
    }
});
