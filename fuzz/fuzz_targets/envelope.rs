//! Fuzzes `envelope::open` on arbitrary bytes: it must return an error, never panic. Also checks
//! that sealing the same bytes opens to them again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_crypto::envelope;

const SECRET: [u8; 32] = [0x5a; 32];

fuzz_target!(|data: &[u8]| {
    // Random bytes essentially never carry a valid tag, so anything that opens is a bug.
    if let Ok(plaintext) = envelope::open(&SECRET, b"fuzz", b"aad", data) {
        panic!("forged blob opened to {} bytes", plaintext.len());
    }
    let blob = envelope::seal(&SECRET, b"fuzz", b"aad", data);
    assert_eq!(envelope::open(&SECRET, b"fuzz", b"aad", &blob).as_deref(), Ok(data));
});
