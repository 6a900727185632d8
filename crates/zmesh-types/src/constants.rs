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

/// Data shards per erasure-coded chunk: any this many healthy shards recover it.
pub const DATA_SHARDS: usize = 10;
/// Parity shards per chunk: up to this many shards may be lost or corrupt.
pub const PARITY_SHARDS: usize = 5;
/// Shards per chunk, each placed on a distinct node.
pub const TOTAL_SHARDS: usize = DATA_SHARDS + PARITY_SHARDS;
/// Largest chunk coded as one unit; larger blobs are split into chunks of this size, each coded
/// on its own. 4 MiB bounds the memory one store, fetch or repair needs (15 shards of about
/// 400 KiB) and keeps one shard a single quick transfer, while large enough that per-chunk
/// overhead (headers, placement lookups) stays small.
pub const CHUNK_SIZE: usize = 4 * 1024 * 1024;
/// Longest shard: `ceil(CHUNK_SIZE / DATA_SHARDS)` rounded up to an even number, because
/// reed-solomon-simd codes shards of an even number of bytes only.
pub const MAX_SHARD_LEN: usize = (CHUNK_SIZE.div_ceil(DATA_SHARDS) + 1) & !1;

/// Bytes of an encoded shard header (`zmesh_wire::shard::ShardHeader`); holders store whole
/// encoded shards, header included.
pub const SHARD_HEADER_LEN: usize = 75;

/// The largest encoded shard a holder stores: header plus the largest shard.
pub const MAX_ENCODED_SHARD_LEN: usize = SHARD_HEADER_LEN + MAX_SHARD_LEN;
