//! Peer exchange (`/zmesh/pex/1.0`, seed 001 "Peer Exchange Protocol"). Type 0x20 with a
//! subtype byte: 0x01 request, 0x02 response.

use zmesh_types::Capabilities;
use zmesh_types::constants::PEX_MAX_PEERS;

use crate::{Message, Reader, WireError, Writer, peer::WirePeer};

pub const TYPE_PEX: u8 = 0x20;
pub const SUBTYPE_REQUEST: u8 = 0x01;
pub const SUBTYPE_RESPONSE: u8 = 0x02;

/// One shared peer. The seed's entry has node id, IP and port; see [`WirePeer`] for why a PeerId
/// and multiaddrs travel instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PexPeer {
    pub peer: WirePeer,
    pub capabilities: Capabilities,
    /// When the sharing node last heard from this peer, Unix milliseconds.
    pub last_seen_ms: u64,
    /// Smoothed RTT the sharing node measured, milliseconds (saturating).
    pub latency_ms: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PexStatus {
    Ok,
    /// The requester asked again before the per-peer interval passed; `peers` is empty.
    RateLimited,
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PexMessage {
    Request { request_id: u32 },
    Response { request_id: u32, status: PexStatus, peers: Vec<PexPeer> },
}

impl Message for PexMessage {
    // 50 peers of at most 1 + 64 + 1 + 8 * 129 + 14 bytes each, plus the header.
    const MAX_FRAME: usize = 64 * 1024;

    fn encode_body(&self, w: &mut Writer) {
        w.u8(TYPE_PEX);
        match self {
            PexMessage::Request { request_id } => {
                w.u8(SUBTYPE_REQUEST);
                w.u32(*request_id);
                w.u16(0);
            }
            PexMessage::Response { request_id, status, peers } => {
                w.u8(SUBTYPE_RESPONSE);
                w.u32(*request_id);
                let peers = &peers[..peers.len().min(PEX_MAX_PEERS)];
                w.u16(peers.len() as u16);
                for p in peers {
                    p.peer.encode(w);
                    w.u32(p.capabilities.bits());
                    w.u64(p.last_seen_ms);
                    w.u16(p.latency_ms);
                }
                // Appended after the seed's fields so older decoders can ignore it.
                w.u8(match status {
                    PexStatus::Ok => 0,
                    PexStatus::RateLimited => 1,
                    PexStatus::Other(b) => *b,
                });
            }
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        match r.u8("type")? {
            TYPE_PEX => {}
            t => return Err(WireError::UnknownType(t)),
        }
        let subtype = r.u8("subtype")?;
        let request_id = r.u32("request id")?;
        let count = r.count_u16("peer count", PEX_MAX_PEERS)?;
        match subtype {
            SUBTYPE_REQUEST => Ok(PexMessage::Request { request_id }),
            SUBTYPE_RESPONSE => {
                let mut peers = Vec::with_capacity(count);
                for _ in 0..count {
                    peers.push(PexPeer {
                        peer: WirePeer::decode(&mut r)?,
                        capabilities: Capabilities::from_bits_retain(r.u32("capabilities")?),
                        last_seen_ms: r.u64("last seen")?,
                        latency_ms: r.u16("latency")?,
                    });
                }
                let status = match r.u8("status")? {
                    0 => PexStatus::Ok,
                    1 => PexStatus::RateLimited,
                    b => PexStatus::Other(b),
                };
                Ok(PexMessage::Response { request_id, status, peers })
            }
            s => Err(WireError::BadValue { field: "pex subtype", value: s.into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::strategy::wire_peer;
    use crate::{decode_frame, encode_frame};
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = PexMessage> {
        let peer = (wire_peer(), any::<u32>(), any::<u64>(), any::<u16>()).prop_map(
            |(peer, caps, last_seen_ms, latency_ms)| PexPeer {
                peer,
                capabilities: Capabilities::from_bits_retain(caps),
                last_seen_ms,
                latency_ms,
            },
        );
        let status = prop_oneof![
            Just(PexStatus::Ok),
            Just(PexStatus::RateLimited),
            (2u8..).prop_map(PexStatus::Other)
        ];
        prop_oneof![
            any::<u32>().prop_map(|request_id| PexMessage::Request { request_id }),
            (any::<u32>(), status, proptest::collection::vec(peer, 0..=PEX_MAX_PEERS)).prop_map(
                |(request_id, status, peers)| PexMessage::Response { request_id, status, peers }
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip(m in message()) {
            let bytes = encode_frame(&m);
            prop_assert!(bytes.len() <= PexMessage::MAX_FRAME);
            let (decoded, used) = decode_frame::<PexMessage>(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(decoded, m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = PexMessage::decode_body(&bytes);
        }
    }

    #[test]
    fn too_many_peers_is_refused_before_allocation() {
        let body = [TYPE_PEX, SUBTYPE_RESPONSE, 0, 0, 0, 1, 0xff, 0xff];
        assert!(matches!(
            PexMessage::decode_body(&body),
            Err(WireError::TooMany { count: 65535, .. })
        ));
    }
}
