//! Fuzzes `sealed::open` with one fixed recipient account on arbitrary bytes: it must return an
//! error, never panic. Random bytes never pass the AEAD, so the input is also decoded as the
//! inner `SealedContent`; when that decodes, it is sealed to the account and opened again, which
//! drives the length, padding, certificate and Olm checks behind the AEAD.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use zmesh_crypto::olm::{E2eAccount, OlmCiphertext};
use zmesh_crypto::sealed::{self, SealedContent};

static RECIPIENT: LazyLock<E2eAccount> = LazyLock::new(E2eAccount::new);

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = sealed::open(data, &RECIPIENT) {
        panic!("forged sealed message opened: {content:?}");
    }
    let _ = OlmCiphertext::from_bytes(data);
    if let Ok(content) = SealedContent::from_bytes(data) {
        assert_eq!(content.to_bytes(), data, "content re-encodes differently");
        let sealed = sealed::seal(&content, &RECIPIENT.sealing_key()).expect("content fits");
        // The certificate inside random bytes never verifies, so opening must fail cleanly.
        assert!(sealed::open(&sealed, &RECIPIENT).is_err(), "forged certificate accepted");
    }
});
