//! What the fuzz targets share: the check every codec target runs, and a reader that turns the
//! fuzzer's bytes into the fields of a structured input.

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

/// Reads fields off the fuzzer's bytes, front to back. Past the end every field reads as zeros,
/// so any input gives a whole structured value.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input(data)
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let head = self.take(N);
        out[..head.len()].copy_from_slice(head);
        out
    }

    pub fn u8(&mut self) -> u8 {
        u8::from_be_bytes(self.array())
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
