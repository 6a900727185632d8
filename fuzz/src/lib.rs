//! The check every codec fuzz target runs.

use std::fmt::Debug;

use zmesh_wire::{Message, decode_frame, encode_frame};

/// Decodes arbitrary bytes as a frame of `M` and as a bare body; never panics on its own. A
/// decoded frame must re-encode to bytes that decode, whole, to an equal message (decoders
/// ignore trailing bytes inside a body, so messages are compared, not bytes).
pub fn check_codec<M: Message + PartialEq + Debug>(data: &[u8]) {
    if let Ok(Some((msg, used))) = decode_frame::<M>(data) {
        assert!(used <= data.len(), "used {used} of {} bytes", data.len());
        let bytes = encode_frame(&msg);
        match decode_frame::<M>(&bytes) {
            Ok(Some((again, again_used))) => {
                assert_eq!(again_used, bytes.len(), "re-encoding not consumed whole");
                assert_eq!(again, msg, "re-encoding decodes to a different message");
            }
            other => panic!("re-encoding of {msg:?} does not decode: {other:?}"),
        }
    }
    let _ = M::decode_body(data);
}
