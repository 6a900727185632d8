use serde::{Deserialize, Deserializer, Serialize, Serializer};

bitflags::bitflags! {
    /// Capability bitfield exchanged in HELLO (seed 001, "Capability Exchange").
    ///
    /// Both ends keep `client_caps AND server_caps`; bits 11–31 are reserved and survive a
    /// round trip untouched so newer peers can add features without breaking older ones.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Capabilities: u32 {
        const RELAY = 1 << 0;
        const EXIT = 1 << 1;
        const GUARD = 1 << 2;
        const KYBER = 1 << 3;
        const PADDING = 1 << 4;
        const PEX = 1 << 5;
        const DHT = 1 << 6;
        const STORAGE = 1 << 7;
        const VOICE = 1 << 8;
        const VIDEO = 1 << 9;
        const GROUPS = 1 << 10;
        // Unknown bits are kept as they are (see `from_bits_retain`).
        const _ = !0;
    }
}

impl Capabilities {
    /// The capabilities both sides can use on a connection.
    pub fn negotiate(client: Capabilities, server: Capabilities) -> Capabilities {
        client & server
    }

    /// Names of the known capability bits that are set, for logs and the API.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter_names().map(|(name, _)| name).collect()
    }
}

impl Serialize for Capabilities {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.bits())
    }
}

impl<'de> Deserialize<'de> for Capabilities {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Capabilities::from_bits_retain(u32::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_is_bitwise_and() {
        let client = Capabilities::from_bits_retain(0x0000_07FF);
        let server = Capabilities::from_bits_retain(0x0000_001F);
        assert_eq!(Capabilities::negotiate(client, server).bits(), 0x1F);
        let reserved = Capabilities::from_bits_retain(1 << 20);
        assert_eq!(reserved.bits(), 1 << 20);
        assert_eq!((Capabilities::DHT | Capabilities::PEX).names(), vec!["PEX", "DHT"]);
    }
}
