//! zmesh's closest-peer lookup (`/zmesh/dht/1.0`). libp2p's Kademlia hashes every lookup key,
//! so it cannot target an arbitrary 256-bit point such as a storage key; this protocol asks a
//! peer for the k nodes it knows closest to a raw key.

use zmesh_types::Key256;
use zmesh_types::constants::DHT_K;

use crate::{Message, Reader, WireError, Writer, peer::WirePeer};

pub const TYPE_FIND_NODE: u8 = 0x30;
pub const TYPE_FIND_NODE_RESPONSE: u8 = 0x31;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtMessage {
    FindNode {
        target: Key256,
    },
    /// At most k peers, closest first.
    Nodes {
        peers: Vec<WirePeer>,
    },
}

impl Message for DhtMessage {
    const MAX_FRAME: usize = 32 * 1024;

    fn encode_body(&self, w: &mut Writer) {
        match self {
            DhtMessage::FindNode { target } => {
                w.u8(TYPE_FIND_NODE);
                w.bytes(&target.0);
            }
            DhtMessage::Nodes { peers } => {
                w.u8(TYPE_FIND_NODE_RESPONSE);
                let peers = &peers[..peers.len().min(DHT_K)];
                w.u8(peers.len() as u8);
                for p in peers {
                    p.encode(w);
                }
            }
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        match r.u8("type")? {
            TYPE_FIND_NODE => Ok(DhtMessage::FindNode { target: Key256(r.array("target")?) }),
            TYPE_FIND_NODE_RESPONSE => {
                let count = r.count_u8("peers", DHT_K)?;
                let mut peers = Vec::with_capacity(count);
                for _ in 0..count {
                    peers.push(WirePeer::decode(&mut r)?);
                }
                Ok(DhtMessage::Nodes { peers })
            }
            t => Err(WireError::UnknownType(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::strategy::wire_peer;
    use crate::{decode_frame, encode_frame};
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = DhtMessage> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(|t| DhtMessage::FindNode { target: Key256(t) }),
            proptest::collection::vec(wire_peer(), 0..=DHT_K)
                .prop_map(|peers| DhtMessage::Nodes { peers }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip(m in message()) {
            let bytes = encode_frame(&m);
            prop_assert!(bytes.len() <= DhtMessage::MAX_FRAME);
            let (decoded, used) = decode_frame::<DhtMessage>(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(decoded, m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = DhtMessage::decode_body(&bytes);
        }
    }
}
