use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const DAY: u64 = 24 * 60 * 60;

/// What a stored blob is. The type fixes the blob's lifetime: TTLs are protocol constants that
/// every node enforces alike, not operator settings, so the mesh's storage stays bounded by
/// `daily ingest × longest TTL` (seed 000, "Bounded Storage Growth").
///
/// | type             | TTL      | why                                                        |
/// |------------------|----------|------------------------------------------------------------|
/// | `message-backup` | 30 days  | message history, the bulk of stored data                   |
/// | `key-backup`     | 365 days | small and critical: losing it loses access to everything   |
/// | `media`          | 7 days   | large: a short life keeps the storage footprint bounded    |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    MessageBackup,
    KeyBackup,
    Media,
}

impl DataType {
    pub const ALL: [DataType; 3] = [DataType::MessageBackup, DataType::KeyBackup, DataType::Media];

    pub const fn ttl(self) -> Duration {
        match self {
            DataType::MessageBackup => Duration::from_secs(30 * DAY),
            DataType::KeyBackup => Duration::from_secs(365 * DAY),
            DataType::Media => Duration::from_secs(7 * DAY),
        }
    }

    /// The byte that stands for this type on the wire.
    pub const fn code(self) -> u8 {
        match self {
            DataType::MessageBackup => 1,
            DataType::KeyBackup => 2,
            DataType::Media => 3,
        }
    }

    pub const fn from_code(code: u8) -> Option<DataType> {
        match code {
            1 => Some(DataType::MessageBackup),
            2 => Some(DataType::KeyBackup),
            3 => Some(DataType::Media),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            DataType::MessageBackup => "message-backup",
            DataType::KeyBackup => "key-backup",
            DataType::Media => "media",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown data type {0:?}: expected message-backup, key-backup or media")]
pub struct ParseDataTypeError(pub String);

impl FromStr for DataType {
    type Err = ParseDataTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| ParseDataTypeError(s.into()))
    }
}

impl Serialize for DataType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DataType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for t in DataType::ALL {
            assert_eq!(DataType::from_code(t.code()), Some(t));
            assert_eq!(t.name().parse::<DataType>(), Ok(t));
        }
        assert_eq!(DataType::from_code(0), None);
        assert!("video".parse::<DataType>().is_err());
        assert!(DataType::Media.ttl() < DataType::MessageBackup.ttl());
        assert!(DataType::MessageBackup.ttl() < DataType::KeyBackup.ttl());
    }
}
