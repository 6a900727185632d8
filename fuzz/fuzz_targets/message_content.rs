//! Fuzzes the decoder of a message's content (the plaintext inside the Olm message, which any
//! sender controls): it must return an error, never panic, and a decoded content must encode
//! to exactly the input (the format has one encoding per message).

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_client::messenger::fuzzing::{decode_content, encode_content};

fuzz_target!(|data: &[u8]| {
    if let Ok((id, sent_at_ms, text)) = decode_content(data) {
        assert_eq!(encode_content(&id, sent_at_ms, &text), data, "re-encoding differs");
    }
});
