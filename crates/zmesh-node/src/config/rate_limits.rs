//! `[rate_limits]`: per-connection limits on messaging requests, one set for users'
//! connections to their relay (the seed's table) and one, much larger, for connections between
//! nodes, which carry many users' traffic.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zmesh_core::flow::{MAX_WINDOW, MIN_WINDOW};
use zmesh_core::ratelimit::{Rate, RateConfig};

use super::{ConfigDuration, secs};

/// `LIMIT/DURATION`, e.g. `"100/60s"`: at most LIMIT requests per DURATION on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting {
    pub limit: u32,
    pub per: Duration,
}

impl RateSetting {
    fn with_burst(self, burst: u32) -> Rate {
        Rate { limit: self.limit, window: self.per, burst }
    }
}

impl FromStr for RateSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid rate {s:?}: expected LIMIT/DURATION, e.g. \"100/60s\"");
        let (limit, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = limit.trim().parse().map_err(|_| bad())?;
        let per: ConfigDuration = per.parse()?;
        if per.0.is_zero() {
            return Err(format!("invalid rate {s:?}: the duration must be above zero"));
        }
        Ok(RateSetting { limit, per: per.0 })
    }
}

impl fmt::Display for RateSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, ConfigDuration(self.per))
    }
}

impl Serialize for RateSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsSection {
    pub enabled: bool,
    pub client_messages: RateSetting,
    pub client_messages_burst: u32,
    pub client_key_requests: RateSetting,
    pub client_key_requests_burst: u32,
    pub client_presence: RateSetting,
    pub client_presence_burst: u32,
    pub node_messages: RateSetting,
    pub node_messages_burst: u32,
    pub node_key_requests: RateSetting,
    pub node_key_requests_burst: u32,
    pub node_presence: RateSetting,
    pub node_presence_burst: u32,
    pub max_strikes: u32,
    pub ban: ConfigDuration,
    pub window: u32,
}

impl Default for RateLimitsSection {
    fn default() -> Self {
        let client = RateConfig::CLIENT;
        let node = RateConfig::NODE;
        let setting = |r: Rate| RateSetting { limit: r.limit, per: r.window };
        RateLimitsSection {
            enabled: true,
            client_messages: setting(client.message),
            client_messages_burst: client.message.burst,
            client_key_requests: setting(client.key_request),
            client_key_requests_burst: client.key_request.burst,
            client_presence: setting(client.presence),
            client_presence_burst: client.presence.burst,
            node_messages: setting(node.message),
            node_messages_burst: node.message.burst,
            node_key_requests: setting(node.key_request),
            node_key_requests_burst: node.key_request.burst,
            node_presence: setting(node.presence),
            node_presence_burst: node.presence.burst,
            max_strikes: client.max_strikes,
            ban: secs(client.ban.as_secs()),
            window: zmesh_core::flow::INITIAL_WINDOW,
        }
    }
}

impl RateLimitsSection {
    /// The limits of a user's connection.
    pub fn client(&self) -> RateConfig {
        RateConfig {
            message: self.client_messages.with_burst(self.client_messages_burst),
            key_request: self.client_key_requests.with_burst(self.client_key_requests_burst),
            pex: RateConfig::CLIENT.pex,
            presence: self.client_presence.with_burst(self.client_presence_burst),
            max_strikes: self.max_strikes,
            strike_window: RateConfig::CLIENT.strike_window,
            ban: self.ban.0,
        }
    }

    /// The limits of a connection from another node.
    pub fn node(&self) -> RateConfig {
        RateConfig {
            message: self.node_messages.with_burst(self.node_messages_burst),
            key_request: self.node_key_requests.with_burst(self.node_key_requests_burst),
            pex: RateConfig::NODE.pex,
            presence: self.node_presence.with_burst(self.node_presence_burst),
            max_strikes: self.max_strikes.max(RateConfig::NODE.max_strikes),
            strike_window: RateConfig::NODE.strike_window,
            ban: self.ban.0.min(RateConfig::NODE.ban),
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&self.window) {
            return Err(format!(
                "rate_limits.window must be between {MIN_WINDOW} and {MAX_WINDOW}"
            ));
        }
        if self.max_strikes == 0 {
            return Err("rate_limits.max_strikes must be at least 1".into());
        }
        let bursts = [
            self.client_messages_burst,
            self.client_key_requests_burst,
            self.client_presence_burst,
            self.node_messages_burst,
            self.node_key_requests_burst,
            self.node_presence_burst,
        ];
        if bursts.contains(&0) {
            return Err("every rate_limits.*_burst must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let r: RateSetting = "100/60s".parse().unwrap();
        assert_eq!(r, RateSetting { limit: 100, per: Duration::from_secs(60) });
        assert_eq!(r.to_string(), "100/1m");
        assert_eq!("5/250ms".parse::<RateSetting>().unwrap().per, Duration::from_millis(250));
        for bad in ["100", "x/1s", "10/0s", "10/1y", "-1/1s"] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_the_seed_table_for_clients() {
        let s = RateLimitsSection::default();
        assert_eq!(s.client(), RateConfig::CLIENT);
        assert_eq!(s.node(), RateConfig::NODE);
        assert!(s.validate().is_ok());
    }
}
