//! HELLO / HELLO_ACK negotiation (seed 001, "Protocol Version Negotiation", "Capability
//! Exchange", "Feature Flags").

use zmesh_types::{Capabilities, ProtocolVersion};
use zmesh_wire::control::{Feature, Hello, HelloAck, HelloStatus};

/// What one side offers: the versions it speaks, its capabilities and its feature flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOffer {
    pub versions: Vec<ProtocolVersion>,
    pub capabilities: Capabilities,
    pub features: Vec<Feature>,
}

/// The outcome both sides keep for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: ProtocolVersion,
    /// `client_caps AND server_caps`.
    pub capabilities: Capabilities,
    /// What the remote announced, before the AND (e.g. for its privacy flags).
    pub remote_capabilities: Capabilities,
    pub remote_features: Vec<Feature>,
}

impl Negotiated {
    /// Whether the remote announced `name = true`.
    pub fn remote_feature(&self, name: &str) -> bool {
        self.remote_features.iter().any(|f| f.name == name && f.enabled)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("no common protocol version: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch { ours: String, theirs: String },
    #[error("the peer refused the handshake (status {0:?})")]
    Refused(HelloStatus),
    #[error("the peer selected version {0}, which we did not offer")]
    BadSelection(ProtocolVersion),
}

fn list(versions: &[ProtocolVersion]) -> String {
    versions.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

/// Picks the version both sides speak. An offer of `M.m` means "speaks M.0 through M.m" (MINOR
/// releases are backward compatible), MAJOR must match exactly, and the highest common
/// `MAJOR.MINOR` at or above the client's minimum wins.
pub fn select_version(
    client: &[ProtocolVersion],
    client_min: ProtocolVersion,
    server: &[ProtocolVersion],
) -> Option<ProtocolVersion> {
    let max_minor = |list: &[ProtocolVersion], major: u8| {
        list.iter().filter(|v| v.major() == major).map(|v| v.minor()).max()
    };
    client
        .iter()
        .filter_map(|c| {
            let common = c.minor().min(max_minor(server, c.major())?);
            Some(ProtocolVersion::new(c.major(), common))
        })
        .filter(|v| *v >= client_min)
        .max()
}

impl LocalOffer {
    /// The HELLO a client opens with.
    pub fn hello(&self) -> Hello {
        Hello {
            versions: self.versions.clone(),
            // Offering M.m means speaking M.0 through M.m, so the floor is the lowest MAJOR's .0.
            min_version: self
                .versions
                .iter()
                .map(|v| ProtocolVersion::new(v.major(), 0))
                .min()
                .unwrap_or(ProtocolVersion(0)),
            capabilities: self.capabilities,
            features: self.features.clone(),
        }
    }

    /// Server side: answers a HELLO, and says what the connection negotiated.
    pub fn answer(&self, hello: &Hello) -> (HelloAck, Result<Negotiated, HandshakeError>) {
        match select_version(&hello.versions, hello.min_version, &self.versions) {
            Some(version) => (
                HelloAck {
                    status: HelloStatus::Ok,
                    selected_version: version,
                    capabilities: self.capabilities,
                    features: self.features.clone(),
                },
                Ok(Negotiated {
                    version,
                    capabilities: Capabilities::negotiate(hello.capabilities, self.capabilities),
                    remote_capabilities: hello.capabilities,
                    remote_features: hello.features.clone(),
                }),
            ),
            None => (
                HelloAck {
                    status: HelloStatus::VersionMismatch,
                    selected_version: ProtocolVersion(0),
                    capabilities: self.capabilities,
                    features: Vec::new(),
                },
                Err(HandshakeError::VersionMismatch {
                    ours: list(&self.versions),
                    theirs: list(&hello.versions),
                }),
            ),
        }
    }

    /// Client side: checks the server's HELLO_ACK against what we offered.
    pub fn accept(&self, ack: &HelloAck) -> Result<Negotiated, HandshakeError> {
        match ack.status {
            HelloStatus::Ok => {}
            HelloStatus::VersionMismatch => {
                return Err(HandshakeError::VersionMismatch {
                    ours: list(&self.versions),
                    theirs: "none in common".into(),
                });
            }
            other => return Err(HandshakeError::Refused(other)),
        }
        // The server must pick something we speak: the same MAJOR, no higher MINOR.
        let offered = self.versions.iter().any(|v| {
            v.major() == ack.selected_version.major() && v.minor() >= ack.selected_version.minor()
        });
        if !offered {
            return Err(HandshakeError::BadSelection(ack.selected_version));
        }
        Ok(Negotiated {
            version: ack.selected_version,
            capabilities: Capabilities::negotiate(self.capabilities, ack.capabilities),
            remote_capabilities: ack.capabilities,
            remote_features: ack.features.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ProtocolVersion {
        s.parse().unwrap()
    }
    fn vs(list: &[&str]) -> Vec<ProtocolVersion> {
        list.iter().map(|s| v(s)).collect()
    }

    #[test]
    fn seed_example_picks_highest_common() {
        let client = vs(&["3.2", "3.1", "3.0", "2.5"]);
        let server = vs(&["3.1", "3.0", "2.5", "2.4"]);
        assert_eq!(select_version(&client, v("2.5"), &server), Some(v("3.1")));
    }

    #[test]
    fn common_major_falls_back_to_lower_minor() {
        assert_eq!(select_version(&vs(&["1.4"]), v("1.0"), &vs(&["1.1"])), Some(v("1.1")));
        assert_eq!(select_version(&vs(&["1.1"]), v("1.0"), &vs(&["1.4"])), Some(v("1.1")));
    }

    #[test]
    fn no_common_major_is_refused() {
        assert_eq!(select_version(&vs(&["2.0"]), v("2.0"), &vs(&["1.0", "3.0"])), None);
        let server = LocalOffer {
            versions: vs(&["1.0"]),
            capabilities: Capabilities::DHT,
            features: vec![],
        };
        let client = LocalOffer {
            versions: vs(&["2.0"]),
            capabilities: Capabilities::DHT,
            features: vec![],
        };
        let (ack, result) = server.answer(&client.hello());
        assert_eq!(ack.status, HelloStatus::VersionMismatch);
        assert!(matches!(result, Err(HandshakeError::VersionMismatch { .. })));
        assert!(matches!(client.accept(&ack), Err(HandshakeError::VersionMismatch { .. })));
    }

    #[test]
    fn a_higher_minor_client_meets_an_older_server() {
        let client = LocalOffer {
            versions: vs(&["1.3"]),
            capabilities: Capabilities::DHT,
            features: vec![],
        };
        let server = LocalOffer {
            versions: vs(&["1.0"]),
            capabilities: Capabilities::DHT,
            features: vec![],
        };
        let (ack, server_side) = server.answer(&client.hello());
        assert_eq!(server_side.unwrap().version, v("1.0"));
        assert_eq!(client.accept(&ack).unwrap().version, v("1.0"));
    }

    #[test]
    fn client_minimum_is_respected() {
        assert_eq!(select_version(&vs(&["1.3"]), v("1.3"), &vs(&["1.1"])), None);
    }

    #[test]
    fn both_sides_keep_the_and_of_capabilities() {
        let pex_private = Feature { name: "pex_private".into(), enabled: true };
        let client = LocalOffer {
            versions: vs(&["1.0"]),
            capabilities: Capabilities::from_bits_retain(0x7FF),
            features: vec![pex_private],
        };
        let server = LocalOffer {
            versions: vs(&["1.0"]),
            capabilities: Capabilities::from_bits_retain(0x1F),
            features: vec![],
        };
        let (ack, server_side) = server.answer(&client.hello());
        let server_side = server_side.unwrap();
        let client_side = client.accept(&ack).unwrap();
        assert_eq!(server_side.capabilities.bits(), 0x1F);
        assert_eq!(client_side.capabilities, server_side.capabilities);
        assert_eq!(server_side.version, client_side.version);
        assert!(server_side.remote_feature("pex_private"));
        assert!(!client_side.remote_feature("pex_private"));
    }

    #[test]
    fn client_rejects_a_version_it_did_not_offer() {
        let client = LocalOffer {
            versions: vs(&["1.0"]),
            capabilities: Capabilities::DHT,
            features: vec![],
        };
        let ack = HelloAck {
            status: HelloStatus::Ok,
            selected_version: v("1.5"),
            capabilities: Capabilities::DHT,
            features: vec![],
        };
        assert_eq!(client.accept(&ack), Err(HandshakeError::BadSelection(v("1.5"))));
    }
}
