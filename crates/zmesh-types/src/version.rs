use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A protocol version as carried on the wire: `MAJOR << 8 | MINOR` (seed 001, "Version Format").
/// PATCH never travels: patch releases must not change the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolVersion(pub u16);

impl ProtocolVersion {
    pub const fn new(major: u8, minor: u8) -> Self {
        ProtocolVersion((major as u16) << 8 | minor as u16)
    }
    pub const fn major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub const fn minor(self) -> u8 {
        (self.0 & 0xff) as u8
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

impl fmt::Debug for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{self}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protocol version {0:?}: expected MAJOR.MINOR with each part 0-255")]
pub struct ParseVersionError(pub String);

impl FromStr for ProtocolVersion {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVersionError(s.to_string());
        let (major, minor) = s.split_once('.').ok_or_else(err)?;
        Ok(ProtocolVersion::new(
            major.parse().map_err(|_| err())?,
            minor.parse().map_err(|_| err())?,
        ))
    }
}

impl Serialize for ProtocolVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProtocolVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_seed() {
        assert_eq!(ProtocolVersion::new(3, 2).0, 0x0302);
        assert_eq!("3.2".parse::<ProtocolVersion>().unwrap(), ProtocolVersion(0x0302));
        assert!("3".parse::<ProtocolVersion>().is_err());
        assert!("256.0".parse::<ProtocolVersion>().is_err());
    }
}
