//! Frames and codecs of zmesh's own protocols.
//!
//! Every frame on a stream is `length: u32 BE` followed by `length` bytes of body; the body's
//! first byte is the message type. Each protocol has its own maximum frame size, checked before
//! any allocation. Decoders ignore trailing bytes after the fields they know, so a newer peer
//! may append optional fields (seed 001, "Backward Compatibility").

mod codec;
pub mod control;
pub mod dht;
mod error;
pub mod msg;
mod peer;
pub mod pex;
pub mod repair;
pub mod shard;
pub mod store;

pub use codec::{Message, Reader, Writer, decode_frame, encode_frame, frame_body_len};
pub use error::WireError;
pub use peer::{MAX_ADDR_LEN, MAX_ADDRS, MAX_PEER_ID, WirePeer};

/// Bytes of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;
