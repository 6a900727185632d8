//! The per-connection control stream (`/zmesh/hello/1.0`): HELLO / HELLO_ACK once, then
//! PING / PONG for the life of the connection (seed 001, "Handshake Protocol", "Keep-Alive"),
//! and the flow-control signals FLOW_CONTROL / WINDOW_UPDATE ("Backpressure Handling").

use zmesh_types::{Capabilities, ProtocolVersion};

use crate::{Message, Reader, WireError, Writer};

pub const TYPE_HELLO: u8 = 0x01;
pub const TYPE_HELLO_ACK: u8 = 0x02;
pub const TYPE_PING: u8 = 0x06;
pub const TYPE_PONG: u8 = 0x07;
pub const TYPE_FLOW_CONTROL: u8 = 0x10;
pub const TYPE_WINDOW_UPDATE: u8 = 0x11;

/// Most versions a HELLO may offer.
pub const MAX_VERSIONS: usize = 16;
/// Most feature flags either side may announce.
pub const MAX_FEATURES: usize = 32;
/// Longest feature-flag name in bytes.
pub const MAX_FEATURE_NAME: usize = 64;

/// A named feature flag (seed 001, "Feature Flags"), e.g. `pex_private = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: String,
    pub enabled: bool,
}

/// The client's opening frame: what it speaks and what it can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Supported versions, any order; the server picks.
    pub versions: Vec<ProtocolVersion>,
    pub min_version: ProtocolVersion,
    pub capabilities: Capabilities,
    pub features: Vec<Feature>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloStatus {
    Ok,
    /// No common version with an equal MAJOR.
    VersionMismatch,
    /// Refused for another reason (e.g. limits); the connection will close.
    Refused,
    /// A status this build does not know; treated as a refusal.
    Other(u8),
}

impl HelloStatus {
    fn to_byte(self) -> u8 {
        match self {
            HelloStatus::Ok => 0,
            HelloStatus::VersionMismatch => 1,
            HelloStatus::Refused => 2,
            HelloStatus::Other(b) => b,
        }
    }
    fn from_byte(b: u8) -> Self {
        match b {
            0 => HelloStatus::Ok,
            1 => HelloStatus::VersionMismatch,
            2 => HelloStatus::Refused,
            b => HelloStatus::Other(b),
        }
    }
}

/// The server's answer to HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAck {
    pub status: HelloStatus,
    /// Meaningful only when `status` is `Ok`.
    pub selected_version: ProtocolVersion,
    /// The server's own capabilities; both sides AND them with the client's.
    pub capabilities: Capabilities,
    pub features: Vec<Feature>,
}

/// Keep-alive probe. 20 bytes of fields, as in the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Sender's wall clock, Unix milliseconds.
    pub timestamp_ms: u64,
    pub nonce: u64,
    pub sequence: u32,
}

/// Keep-alive answer: the PING's fields echoed, plus the responder's receive time and how long
/// it held the PING before answering. The seed's formula subtracts the two peers' wall clocks
/// from each other, which is meaningless without synchronized clocks; `hold_us` is measured on
/// one clock, so `network RTT = RTT − hold` is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    pub timestamp_ms: u64,
    pub nonce: u64,
    pub sequence: u32,
    /// Responder's wall clock when the PING arrived, Unix milliseconds.
    pub receive_time_ms: u64,
    /// Microseconds between receiving the PING and sending this PONG.
    pub hold_us: u32,
}

/// Why a receiver sent FLOW_CONTROL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowReasonCode {
    BufferFull,
    RateLimit,
    SystemLoad,
    /// A reason this version does not know; treated as a plain pause.
    Other(u8),
}

impl FlowReasonCode {
    pub fn to_byte(self) -> u8 {
        match self {
            FlowReasonCode::BufferFull => 0x01,
            FlowReasonCode::RateLimit => 0x02,
            FlowReasonCode::SystemLoad => 0x03,
            FlowReasonCode::Other(b) => b,
        }
    }

    pub fn from_byte(b: u8) -> Self {
        match b {
            0x01 => FlowReasonCode::BufferFull,
            0x02 => FlowReasonCode::RateLimit,
            0x03 => FlowReasonCode::SystemLoad,
            b => FlowReasonCode::Other(b),
        }
    }
}

/// FLOW_CONTROL (0x10), as in the seed: the sender's window from now on, how many messages the
/// receiver has consumed in total (wrapping), why, and how long to wait before sending more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowControl {
    pub new_window: u32,
    pub consumed: u32,
    pub reason: FlowReasonCode,
    pub retry_after_ms: u32,
}

impl FlowControl {
    /// Encoded length: window, consumed, reason, retry-after.
    pub const LEN: usize = 4 + 4 + 1 + 4;

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.new_window);
        w.u32(self.consumed);
        w.u8(self.reason.to_byte());
        w.u32(self.retry_after_ms);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(FlowControl {
            new_window: r.u32("new_window")?,
            consumed: r.u32("consumed")?,
            reason: FlowReasonCode::from_byte(r.u8("reason")?),
            retry_after_ms: r.u32("retry_after")?,
        })
    }
}

/// Every frame of the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlFrame {
    Hello(Hello),
    HelloAck(HelloAck),
    Ping(Ping),
    Pong(Pong),
    FlowControl(FlowControl),
    /// WINDOW_UPDATE (0x11): the receiver's consumed total (wrapping), sent once half a window
    /// has been consumed since the last one.
    WindowUpdate {
        consumed: u32,
    },
}

fn encode_features(w: &mut Writer, features: &[Feature]) {
    let features = &features[..features.len().min(MAX_FEATURES)];
    w.u8(features.len() as u8);
    for f in features {
        w.short_bytes(f.name.as_bytes());
        w.u8(f.enabled as u8);
    }
}

fn decode_features(r: &mut Reader<'_>) -> Result<Vec<Feature>, WireError> {
    let count = r.count_u8("features", MAX_FEATURES)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.short_bytes("feature name", 1, MAX_FEATURE_NAME)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| WireError::BadUtf8 { field: "feature name" })?
            .to_owned();
        let enabled = match r.u8("feature value")? {
            0 => false,
            1 => true,
            v => return Err(WireError::BadValue { field: "feature value", value: v.into() }),
        };
        out.push(Feature { name, enabled });
    }
    Ok(out)
}

impl Message for ControlFrame {
    const MAX_FRAME: usize = 4096;

    fn encode_body(&self, w: &mut Writer) {
        match self {
            ControlFrame::Hello(h) => {
                w.u8(TYPE_HELLO);
                let versions = &h.versions[..h.versions.len().min(MAX_VERSIONS)];
                w.u8(versions.len() as u8);
                for v in versions {
                    w.u16(v.0);
                }
                w.u16(h.min_version.0);
                w.u32(h.capabilities.bits());
                encode_features(w, &h.features);
            }
            ControlFrame::HelloAck(a) => {
                w.u8(TYPE_HELLO_ACK);
                w.u8(a.status.to_byte());
                w.u16(a.selected_version.0);
                w.u32(a.capabilities.bits());
                encode_features(w, &a.features);
            }
            ControlFrame::Ping(p) => {
                w.u8(TYPE_PING);
                w.u64(p.timestamp_ms);
                w.u64(p.nonce);
                w.u32(p.sequence);
            }
            ControlFrame::Pong(p) => {
                w.u8(TYPE_PONG);
                w.u64(p.timestamp_ms);
                w.u64(p.nonce);
                w.u32(p.sequence);
                w.u64(p.receive_time_ms);
                w.u32(p.hold_us);
            }
            ControlFrame::FlowControl(f) => {
                w.u8(TYPE_FLOW_CONTROL);
                f.encode(w);
            }
            ControlFrame::WindowUpdate { consumed } => {
                w.u8(TYPE_WINDOW_UPDATE);
                w.u32(*consumed);
            }
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        match r.u8("type")? {
            TYPE_HELLO => {
                let count = r.count_u8("versions", MAX_VERSIONS)?;
                if count == 0 {
                    return Err(WireError::BadLength {
                        field: "versions",
                        len: 0,
                        min: 1,
                        max: MAX_VERSIONS,
                    });
                }
                let mut versions = Vec::with_capacity(count);
                for _ in 0..count {
                    versions.push(ProtocolVersion(r.u16("version")?));
                }
                Ok(ControlFrame::Hello(Hello {
                    versions,
                    min_version: ProtocolVersion(r.u16("min_version")?),
                    capabilities: Capabilities::from_bits_retain(r.u32("capabilities")?),
                    features: decode_features(&mut r)?,
                }))
            }
            TYPE_HELLO_ACK => Ok(ControlFrame::HelloAck(HelloAck {
                status: HelloStatus::from_byte(r.u8("status")?),
                selected_version: ProtocolVersion(r.u16("selected_version")?),
                capabilities: Capabilities::from_bits_retain(r.u32("capabilities")?),
                features: decode_features(&mut r)?,
            })),
            TYPE_PING => Ok(ControlFrame::Ping(Ping {
                timestamp_ms: r.u64("timestamp")?,
                nonce: r.u64("nonce")?,
                sequence: r.u32("sequence")?,
            })),
            TYPE_PONG => Ok(ControlFrame::Pong(Pong {
                timestamp_ms: r.u64("timestamp")?,
                nonce: r.u64("nonce")?,
                sequence: r.u32("sequence")?,
                receive_time_ms: r.u64("receive_time")?,
                hold_us: r.u32("hold_us")?,
            })),
            TYPE_FLOW_CONTROL => Ok(ControlFrame::FlowControl(FlowControl::decode(&mut r)?)),
            TYPE_WINDOW_UPDATE => Ok(ControlFrame::WindowUpdate { consumed: r.u32("consumed")? }),
            t => Err(WireError::UnknownType(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_frame, encode_frame};
    use proptest::prelude::*;

    fn feature() -> impl Strategy<Value = Feature> + Clone {
        ("[a-z_0-9]{1,64}", any::<bool>()).prop_map(|(name, enabled)| Feature { name, enabled })
    }

    fn frame() -> impl Strategy<Value = ControlFrame> {
        let version = any::<u16>().prop_map(ProtocolVersion);
        let caps = any::<u32>().prop_map(Capabilities::from_bits_retain);
        let features = proptest::collection::vec(feature(), 0..=MAX_FEATURES);
        let status = any::<u8>().prop_map(HelloStatus::from_byte);
        prop_oneof![
            (
                proptest::collection::vec(version.clone(), 1..=MAX_VERSIONS),
                version.clone(),
                caps.clone(),
                features.clone()
            )
                .prop_map(|(versions, min_version, capabilities, features)| {
                    ControlFrame::Hello(Hello { versions, min_version, capabilities, features })
                }),
            (status, version, caps, features).prop_map(
                |(status, selected_version, capabilities, features)| {
                    ControlFrame::HelloAck(HelloAck {
                        status,
                        selected_version,
                        capabilities,
                        features,
                    })
                }
            ),
            (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
                |(timestamp_ms, nonce, sequence)| {
                    ControlFrame::Ping(Ping { timestamp_ms, nonce, sequence })
                }
            ),
            (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
                |(timestamp_ms, nonce, sequence, receive_time_ms, hold_us)| {
                    ControlFrame::Pong(Pong {
                        timestamp_ms,
                        nonce,
                        sequence,
                        receive_time_ms,
                        hold_us,
                    })
                }
            ),
            (any::<u32>(), any::<u32>(), any::<u8>(), any::<u32>()).prop_map(
                |(new_window, consumed, reason, retry_after_ms)| {
                    ControlFrame::FlowControl(FlowControl {
                        new_window,
                        consumed,
                        reason: FlowReasonCode::from_byte(reason),
                        retry_after_ms,
                    })
                }
            ),
            any::<u32>().prop_map(|consumed| ControlFrame::WindowUpdate { consumed }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(f in frame()) {
            let bytes = encode_frame(&f);
            prop_assert!(bytes.len() <= ControlFrame::MAX_FRAME + crate::LEN_PREFIX);
            let (decoded, used) = decode_frame::<ControlFrame>(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(decoded, f);
        }

        #[test]
        fn every_prefix_is_incomplete_or_an_error(f in frame(), cut in 0usize..200) {
            let bytes = encode_frame(&f);
            let cut = cut.min(bytes.len().saturating_sub(1));
            // A strict prefix never decodes to a frame, and never panics.
            prop_assert!(!matches!(decode_frame::<ControlFrame>(&bytes[..cut]), Ok(Some(_))));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_frame::<ControlFrame>(&bytes);
            let _ = ControlFrame::decode_body(&bytes);
        }
    }

    #[test]
    fn ping_and_pong_sizes_match_seed() {
        let ping =
            encode_frame(&ControlFrame::Ping(Ping { timestamp_ms: 1, nonce: 2, sequence: 3 }));
        assert_eq!(ping.len(), 4 + 1 + 20);
        let pong = ControlFrame::Pong(Pong {
            timestamp_ms: 1,
            nonce: 2,
            sequence: 3,
            receive_time_ms: 4,
            hold_us: 5,
        });
        assert_eq!(encode_frame(&pong).len(), 4 + 1 + 28 + 4);
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let huge = (ControlFrame::MAX_FRAME as u32 + 1).to_be_bytes();
        assert!(matches!(
            decode_frame::<ControlFrame>(&huge),
            Err(WireError::FrameTooLarge { .. })
        ));
        let unknown = [0, 0, 0, 1, 0x7f];
        let err = decode_frame::<ControlFrame>(&unknown).unwrap_err();
        assert!(err.is_unknown_type());
        let no_versions = [0, 0, 0, 2, TYPE_HELLO, 0];
        assert!(decode_frame::<ControlFrame>(&no_versions).is_err());
    }
}
