//! Entry points for fuzz targets only: the codecs of values this store reads back from disk,
//! which must refuse damaged bytes with an error and never panic. Not part of the API; nothing
//! here changes how the store behaves.

use crate::{ChunkEntry, ShardMeta, StoreError};

/// Decodes a `shards` table value (a shard record) into its meta and data.
pub fn decode_shard_record(bytes: &[u8]) -> Result<(ShardMeta, &[u8]), StoreError> {
    crate::record::decode(bytes)
}

/// Encodes a shard record, as `put` stores it.
pub fn encode_shard_record(meta: &ShardMeta, data: &[u8]) -> Result<Vec<u8>, StoreError> {
    crate::record::encode(meta, data)
}

/// Decodes a `mailbox_entries` table value into its expiry and body.
pub fn decode_mailbox_entry(value: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    crate::mailbox::decode_entry_value(value)
}

/// Encodes a `mailbox_entries` table value, as an append stores it.
pub fn encode_mailbox_entry(expires_at_ms: u64, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    crate::mailbox::encode_entry_value(expires_at_ms, body)
}

/// Decodes a `chunks` table value (a chunk registry entry).
pub fn decode_chunk_entry(bytes: &[u8]) -> Result<ChunkEntry, StoreError> {
    ChunkEntry::decode(bytes)
}

/// Encodes a chunk registry entry, as `put_chunk` stores it.
pub fn encode_chunk_entry(entry: &ChunkEntry) -> Result<Vec<u8>, StoreError> {
    entry.encode()
}
