use crate::{Reader, WireError, Writer};

/// Longest PeerId in bytes (a multihash of at most 64 bytes including its header).
pub const MAX_PEER_ID: usize = 64;
/// Most addresses carried for one peer.
pub const MAX_ADDRS: usize = 8;
/// Longest binary multiaddr carried.
pub const MAX_ADDR_LEN: usize = 128;

/// A peer as other peers describe it: its libp2p PeerId and binary multiaddrs. The PeerId (not
/// the node id) travels because a dialer must know the key it is about to authenticate; the
/// node id is derived from it (`SHA-256(peer_id)`). Multiaddrs (not IP + port) travel because a
/// node listens on TCP and QUIC alike. Both are checked by the node when it parses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WirePeer {
    pub peer_id: Vec<u8>,
    pub addrs: Vec<Vec<u8>>,
}

impl WirePeer {
    pub fn encode(&self, w: &mut Writer) {
        w.short_bytes(&self.peer_id);
        let addrs: Vec<&Vec<u8>> = self
            .addrs
            .iter()
            .filter(|a| !a.is_empty() && a.len() <= MAX_ADDR_LEN)
            .take(MAX_ADDRS)
            .collect();
        w.u8(addrs.len() as u8);
        for a in addrs {
            w.short_bytes(a);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let peer_id = r.short_bytes("peer id", 1, MAX_PEER_ID)?.to_vec();
        let count = r.count_u8("addresses", MAX_ADDRS)?;
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            addrs.push(r.short_bytes("address", 1, MAX_ADDR_LEN)?.to_vec());
        }
        Ok(WirePeer { peer_id, addrs })
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use proptest::prelude::*;

    pub fn wire_peer() -> impl Strategy<Value = WirePeer> {
        (
            proptest::collection::vec(any::<u8>(), 1..=MAX_PEER_ID),
            proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 1..=MAX_ADDR_LEN),
                0..=MAX_ADDRS,
            ),
        )
            .prop_map(|(peer_id, addrs)| WirePeer { peer_id, addrs })
    }
}
