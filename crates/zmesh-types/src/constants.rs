//! Protocol constants. These are part of the protocol, not operator settings: every node must
//! agree on them (DESIGN.md, "Protocol numbers").

use crate::ProtocolVersion;

/// Kademlia bucket size and lookup result size.
pub const DHT_K: usize = 20;
/// Kademlia lookup parallelism.
pub const DHT_ALPHA: usize = 3;

/// The protocol versions this build speaks, highest first.
pub const SUPPORTED_VERSIONS: &[ProtocolVersion] = &[ProtocolVersion::new(1, 0)];

/// Most peers in one PEX response.
pub const PEX_MAX_PEERS: usize = 50;

/// Round-trip-time class boundaries in milliseconds: excellent, good, fair, poor; above is critical.
pub const RTT_CLASS_BOUNDS_MS: [u64; 4] = [50, 150, 500, 1000];
