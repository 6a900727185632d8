//! Entry points for fuzz targets only: decoders of bytes a node reads back from its own disk
//! that are not reachable through the public API. Not part of the API; nothing here changes how
//! the node behaves.

use zmesh_store::ChunkEntry;
use zmesh_types::Key256;

use crate::storage::custody::Custody;

/// Decodes a chunk registry entry's certificate and placement record, as a holder does when it
/// reads the entry back from disk (`None` when the certificate does not decode).
pub fn decode_custody(entry: &ChunkEntry) -> Option<Custody> {
    Custody::decode(&Key256([0; 32]), entry)
}
