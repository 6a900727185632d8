//! Fuzzes the decoders of signed device keys on arbitrary bytes: `PrekeyBundle::from_bytes` and
//! `SenderCertificate::from_bytes` must return an error, never panic. A decoded value must
//! re-encode to exactly the input (one encoding per value), and checking its signature and keys
//! must not panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_crypto::prekeys::{PrekeyBundle, SenderCertificate};

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = PrekeyBundle::from_bytes(data) {
        assert_eq!(bundle.to_bytes(), data, "bundle re-encodes differently");
        // Random bytes essentially never carry a valid signature.
        assert!(bundle.verify().is_err(), "forged bundle verified");
    }
    if let Ok(cert) = SenderCertificate::from_bytes(data) {
        assert_eq!(cert.to_bytes(), data, "certificate re-encodes differently");
        assert!(cert.verify().is_err(), "forged certificate verified");
    }
});
