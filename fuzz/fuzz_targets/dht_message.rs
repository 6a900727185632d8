//! Decodes arbitrary bytes as a `DhtMessage` frame and as a bare body. A decoded frame must
//! re-encode to bytes that decode to an equal message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_wire::dht::DhtMessage;
use zmesh_wire::{Message, decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = decode_frame::<DhtMessage>(data) {
        assert!(used <= data.len(), "used {used} of {} bytes", data.len());
        let bytes = encode_frame(&msg);
        // Decoders ignore trailing bytes inside a body, so compare messages, not bytes.
        match decode_frame::<DhtMessage>(&bytes) {
            Ok(Some((again, again_used))) => {
                assert_eq!(again_used, bytes.len(), "re-encoding not consumed whole");
                assert_eq!(again, msg, "re-encoding decodes to a different message");
            }
            other => panic!("re-encoding of {msg:?} does not decode: {other:?}"),
        }
    }
    let _ = DhtMessage::decode_body(data);
});
