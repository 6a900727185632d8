//! Node configuration: `DIR/zmesh.toml`. Every key is optional; [`DEFAULT_CONFIG`] is the
//! documented file `zmesh node init` writes, and a test keeps it equal to [`NodeConfig::default`].

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zmesh_types::ProtocolVersion;
use zmesh_types::constants::SUPPORTED_VERSIONS;

use crate::NodeError;

mod rate_limits;
pub use rate_limits::{RateLimitsSection, RateSetting};

/// The file `zmesh node init` writes: every key, its default, and what it does.
pub const DEFAULT_CONFIG: &str = r#"# zmesh Full Node configuration.
# Every key is optional: the values below are the defaults. Durations take a unit:
# "250ms", "30s", "10m", "1h". Override any key from the command line with
# `--set section.key=value` (e.g. `--set keepalive.ping_interval=1s`).

[node]
# A name for logs and the status API; it is not sent to other nodes.
name = ""

[network]
# Multiaddrs to listen on: TCP and QUIC.
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
# Peers to join the mesh through: multiaddrs ending in /p2p/<peer id>.
bootstrap = []
# Protocol versions offered in the handshake (MAJOR.MINOR). The highest version both sides
# speak with the same MAJOR is used; leave as is unless testing interoperability.
protocol_versions = ["1.0"]
# How long a new connection may take to complete the zmesh handshake.
handshake_timeout = "10s"
# How long to wait between attempts to reach the bootstrap peers while no peer is connected.
bootstrap_retry = "5s"

[api]
# Address of the local HTTP API. Keep it on loopback: it is unauthenticated.
listen = "127.0.0.1:7070"

[dht]
# Take part in the Kademlia DHT (server mode, k = 20, alpha = 3).
enabled = true
# How often to refresh the routing table's buckets.
refresh_interval = "5m"
# How long a peer may take to answer one lookup request.
request_timeout = "10s"

[keepalive]
# PING every interval plus a random 0..=jitter, so peers do not ping in step.
ping_interval = "30s"
ping_jitter = "5s"
# A PING unanswered this long is a miss; max_missed misses in a row mean the peer is dead.
pong_timeout = "10s"
max_missed = 3

[limits]
# Connections allowed per remote peer, in total, per remote IP (inbound), and still being set up.
max_per_peer = 3
max_total = 200
max_per_ip = 5
max_pending = 20

[pex]
# Exchange known peers with other nodes.
enabled = true
# Ask other nodes not to share this node's address (privacy opt-out).
private = false
# How often to ask connected peers for more peers.
interval = "5m"
# A peer may ask this node at most once per this interval.
min_request_interval = "1m"
# Only peers connected at least this long, and heard from within max_silence, are shared.
min_uptime = "10m"
max_silence = "1h"

[storage]
# Hold shards of other users' encrypted chunks and relay clients' store requests.
enabled = true
# Most bytes of shards this node holds, headers included. A full node refuses new shards with
# "insufficient storage" and reports no capacity, so placement goes around it.
max_bytes = 10737418240
# How often expired shards are deleted. Expired shards are never served, even before this runs.
gc_interval = "1m"
# Moves this node's storage clock forward, to see expiry without waiting: for tests and demos
# only. Leave at "0s" on a real node.
clock_offset = "0s"

[repair]
# Scan the chunks this node is warden of, rebuild lost shards and verify expired ones are gone.
enabled = true
# How often the warden (the holder closest to a chunk's key) checks each chunk's health. The
# next holder in line waits half a period longer per rank before taking over a silent warden.
scan_interval = "1h"
# Repair a chunk with fewer healthy shards than this (of 15). Every missing shard is rebuilt.
threshold = 13
# Shards per chunk and scan fetched whole and checked against the owner's signed checksum, so a
# holder cannot just claim to be healthy. 0 trusts health reports.
spot_checks = 1
# Chunks scanned at once. Scans mostly wait on other nodes, so this can be well above the cores.
max_concurrent = 16
# How often this node re-reads every shard it holds and drops any that fails its checksum.
audit_interval = "6h"

[messaging]
# Relay clients' end-to-end-encrypted messages, hold offline mailboxes (each on the 3 nodes
# nearest its key) and the records users publish (presence, prekey bundles). Needs [dht].
enabled = true
# Messages one offline mailbox may hold, and its bytes (sealed bytes plus a small overhead per
# message). A full mailbox refuses new messages and the sender is told QUOTA.
mailbox_max_messages = 10000
mailbox_max_bytes = 67108864
# Bytes of all mailboxes on this node together.
max_total_bytes = 1073741824
# How long a relay waits for a connected client to take a live message before queueing it in
# the recipient's offline mailbox instead.
deliver_timeout = "10s"
# How long another node may take to answer one messaging request (forward, mailbox, record).
request_timeout = "10s"
# How long a relay reuses the nodes it found nearest a mailbox or record key, and a recipient's
# presence, before looking them up again. Failures drop the entry at once.
route_cache = "30s"
# How often expired offline messages are deleted. Expired messages are never delivered, even
# before this runs.
gc_interval = "1m"
# Moves this node's message-expiry clock forward, to see the 30-day expiry without waiting: for
# tests and demos only. Signatures are always checked against the real clock.
clock_offset = "0s"

[rate_limits]
# Per-connection limits on messaging requests: token buckets of LIMIT/DURATION on average and
# at most BURST at once. A request over a limit, or beyond the connection's window of
# unanswered requests, is answered THROTTLED with a retry-after and has no effect; a peer that
# sends max_strikes more before its retry-after (within a minute) is disconnected and banned.
enabled = true
# A user's connection to this relay (seed 001's table). Messages: send, sync, ack. Key requests:
# prekey bundles published or fetched. Presence: logins and presence records.
client_messages = "100/1m"
client_messages_burst = 20
client_key_requests = "20/1m"
client_key_requests_burst = 5
client_presence = "10/1m"
client_presence_burst = 3
# A connection from another node: it carries many users' forwards, mailbox writes and record
# lookups, so its limits are far larger (a ceiling against a broken or hostile node).
node_messages = "6000000/1m"
node_messages_burst = 100000
node_key_requests = "600000/1m"
node_key_requests_burst = 10000
node_presence = "600000/1m"
node_presence_burst = 10000
# Requests sent before their retry-after, within a minute, that get a peer disconnected, and
# how long it is then refused.
max_strikes = 10
ban = "5m"
# Unanswered requests one connection may have (seed 001: 1000; 100 to 10000).
window = 1000

[log]
# Log filter (tracing EnvFilter syntax); RUST_LOG overrides it. libp2p's Kademlia warns about
# routine start-up conditions (e.g. an empty routing table), so it is quieter by default.
level = "info,libp2p_kad=error"
"#;

/// A duration written with a unit in the config: "250ms", "30s", "10m", "1h".
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConfigDuration(pub Duration);

impl FromStr for ConfigDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let n: u64 = number.parse().map_err(|_| {
            format!("invalid duration {s:?}: expected e.g. \"500ms\", \"30s\", \"10m\"")
        })?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(format!("invalid duration {s:?}: the unit must be ms, s, m or h")),
        };
        Ok(ConfigDuration(d))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            ms if ms % 3_600_000 == 0 && ms > 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 && ms > 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1000 == 0 => write!(f, "{}s", ms / 1000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

fn secs(n: u64) -> ConfigDuration {
    ConfigDuration(Duration::from_secs(n))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub network: NetworkSection,
    pub api: ApiSection,
    pub dht: DhtSection,
    pub keepalive: KeepAliveSection,
    pub limits: LimitsSection,
    pub pex: PexSection,
    pub storage: StorageSection,
    pub repair: RepairSection,
    pub messaging: MessagingSection,
    pub rate_limits: RateLimitsSection,
    pub log: LogSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub protocol_versions: Vec<ProtocolVersion>,
    pub handshake_timeout: ConfigDuration,
    pub bootstrap_retry: ConfigDuration,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/udp/4001/quic-v1".parse().expect("valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            protocol_versions: SUPPORTED_VERSIONS.to_vec(),
            handshake_timeout: secs(10),
            bootstrap_retry: secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    pub listen: SocketAddr,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection { listen: SocketAddr::from(([127, 0, 0, 1], 7070)) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhtSection {
    pub enabled: bool,
    pub refresh_interval: ConfigDuration,
    pub request_timeout: ConfigDuration,
}

impl Default for DhtSection {
    fn default() -> Self {
        DhtSection { enabled: true, refresh_interval: secs(300), request_timeout: secs(10) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepAliveSection {
    pub ping_interval: ConfigDuration,
    pub ping_jitter: ConfigDuration,
    pub pong_timeout: ConfigDuration,
    pub max_missed: u32,
}

impl Default for KeepAliveSection {
    fn default() -> Self {
        KeepAliveSection {
            ping_interval: secs(30),
            ping_jitter: secs(5),
            pong_timeout: secs(10),
            max_missed: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    pub max_per_peer: u32,
    pub max_total: u32,
    pub max_per_ip: u32,
    pub max_pending: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let d = zmesh_core::limits::LimitsConfig::default();
        LimitsSection {
            max_per_peer: d.max_per_peer,
            max_total: d.max_total,
            max_per_ip: d.max_per_ip,
            max_pending: d.max_pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PexSection {
    pub enabled: bool,
    pub private: bool,
    pub interval: ConfigDuration,
    pub min_request_interval: ConfigDuration,
    pub min_uptime: ConfigDuration,
    pub max_silence: ConfigDuration,
}

impl Default for PexSection {
    fn default() -> Self {
        PexSection {
            enabled: true,
            private: false,
            interval: secs(300),
            min_request_interval: secs(60),
            min_uptime: secs(600),
            max_silence: secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    pub enabled: bool,
    pub max_bytes: u64,
    pub gc_interval: ConfigDuration,
    pub clock_offset: ConfigDuration,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            enabled: true,
            max_bytes: 10 * 1024 * 1024 * 1024,
            gc_interval: secs(60),
            clock_offset: secs(0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepairSection {
    pub enabled: bool,
    pub scan_interval: ConfigDuration,
    pub threshold: usize,
    pub spot_checks: usize,
    pub max_concurrent: usize,
    pub audit_interval: ConfigDuration,
}

impl Default for RepairSection {
    fn default() -> Self {
        RepairSection {
            enabled: true,
            scan_interval: secs(3600),
            threshold: zmesh_core::repair::DEFAULT_REPAIR_THRESHOLD,
            spot_checks: 1,
            max_concurrent: 16,
            audit_interval: secs(6 * 3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingSection {
    pub enabled: bool,
    pub mailbox_max_messages: u64,
    pub mailbox_max_bytes: u64,
    pub max_total_bytes: u64,
    pub deliver_timeout: ConfigDuration,
    pub request_timeout: ConfigDuration,
    pub route_cache: ConfigDuration,
    pub gc_interval: ConfigDuration,
    pub clock_offset: ConfigDuration,
}

impl Default for MessagingSection {
    fn default() -> Self {
        MessagingSection {
            enabled: true,
            mailbox_max_messages: 10_000,
            mailbox_max_bytes: 64 << 20,
            max_total_bytes: 1 << 30,
            deliver_timeout: secs(10),
            request_timeout: secs(10),
            route_cache: secs(30),
            gc_interval: secs(60),
            clock_offset: secs(0),
        }
    }
}

impl MessagingSection {
    /// The mailbox store's limits. Any sealed message the protocol carries fits one body.
    pub fn mailbox_limits(&self) -> zmesh_store::MailboxLimits {
        zmesh_store::MailboxLimits {
            max_messages_per_mailbox: self.mailbox_max_messages,
            max_bytes_per_mailbox: self.mailbox_max_bytes,
            max_total_bytes: self.max_total_bytes,
            max_body_len: zmesh_wire::msg::MAX_SEALED_LEN as u64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info,libp2p_kad=error".into() }
    }
}

impl NodeConfig {
    /// Parses a config file's text.
    pub fn parse(text: &str) -> Result<Self, NodeError> {
        let config: NodeConfig =
            toml::from_str(text).map_err(|e| NodeError::Config(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects values that parse but cannot work.
    pub fn validate(&self) -> Result<(), NodeError> {
        let bad = |m: &str| Err(NodeError::Config(m.to_string()));
        if self.network.protocol_versions.is_empty() {
            return bad("network.protocol_versions must list at least one version");
        }
        if self.network.protocol_versions.len() > zmesh_wire::control::MAX_VERSIONS {
            return bad("network.protocol_versions lists too many versions (at most 16)");
        }
        if self.keepalive.max_missed == 0 {
            return bad("keepalive.max_missed must be at least 1");
        }
        if self.keepalive.ping_interval.0.is_zero() || self.keepalive.pong_timeout.0.is_zero() {
            return bad("keepalive.ping_interval and keepalive.pong_timeout must be above zero");
        }
        let r = &self.repair;
        if !(zmesh_types::constants::DATA_SHARDS..=zmesh_types::constants::TOTAL_SHARDS)
            .contains(&r.threshold)
        {
            return bad("repair.threshold must be between 10 and 15");
        }
        if r.scan_interval.0 < Duration::from_millis(100) || r.max_concurrent == 0 {
            return bad(
                "repair.scan_interval must be at least 100ms and max_concurrent at least 1",
            );
        }
        if r.audit_interval.0.is_zero() {
            return bad("repair.audit_interval must be above zero");
        }
        self.rate_limits.validate().map_err(NodeError::Config)?;
        let m = &self.messaging;
        if m.mailbox_max_messages == 0 || m.mailbox_max_bytes == 0 || m.max_total_bytes == 0 {
            return bad("messaging mailbox limits must be at least 1");
        }
        if m.deliver_timeout.0.is_zero() || m.request_timeout.0.is_zero() {
            return bad("messaging.deliver_timeout and request_timeout must be above zero");
        }
        let l = &self.limits;
        if l.max_per_peer == 0 || l.max_total == 0 || l.max_per_ip == 0 || l.max_pending == 0 {
            return bad("every limits.* value must be at least 1");
        }
        for addr in &self.network.bootstrap {
            if !matches!(addr.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
                return Err(NodeError::Config(format!(
                    "bootstrap address {addr} must end in /p2p/<peer id>"
                )));
            }
        }
        Ok(())
    }

    pub fn keepalive(&self) -> zmesh_core::keepalive::KeepAliveConfig {
        zmesh_core::keepalive::KeepAliveConfig {
            interval: self.keepalive.ping_interval.0,
            jitter: self.keepalive.ping_jitter.0,
            pong_timeout: self.keepalive.pong_timeout.0,
            max_missed: self.keepalive.max_missed,
        }
    }

    pub fn limits(&self) -> zmesh_core::limits::LimitsConfig {
        zmesh_core::limits::LimitsConfig {
            max_per_peer: self.limits.max_per_peer,
            max_total: self.limits.max_total,
            max_per_ip: self.limits.max_per_ip,
            max_pending: self.limits.max_pending,
        }
    }

    pub fn pex_policy(&self) -> zmesh_core::pex::PexPolicy {
        zmesh_core::pex::PexPolicy {
            max_peers: zmesh_types::constants::PEX_MAX_PEERS,
            min_uptime: self.pex.min_uptime.0,
            max_silence: self.pex.max_silence.0,
            min_request_interval: self.pex.min_request_interval.0,
        }
    }
}

/// Sets `key` (dotted, e.g. `keepalive.ping_interval`) to `value` in a config file's text,
/// keeping its comments. `value` is read as TOML (`3`, `true`, `["a"]`) and, failing that, as
/// a string. The result must still be a valid config.
pub fn set_key(text: &str, key: &str, value: &str) -> Result<String, NodeError> {
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e: toml_edit::TomlError| NodeError::Config(e.to_string()))?;
    let parts: Vec<&str> = key.split('.').collect();
    let (last, sections) = parts
        .split_last()
        .filter(|(l, _)| !l.is_empty())
        .ok_or_else(|| NodeError::Config(format!("invalid key {key:?}: expected section.key")))?;
    let parsed: toml_edit::Value = value.parse().unwrap_or_else(|_| toml_edit::Value::from(value));
    let mut table = doc.as_table_mut();
    for section in sections {
        let entry =
            table.entry(section).or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| NodeError::Config(format!("{section} in {key:?} is not a section")))?;
    }
    match table.get_mut(last).and_then(|item| item.as_value_mut()) {
        Some(existing) => {
            // Keep the comment that documents the key.
            let decor = existing.decor().clone();
            *existing = parsed;
            *existing.decor_mut() = decor;
        }
        None => {
            table.insert(last, toml_edit::value(parsed));
        }
    }
    let out = doc.to_string();
    NodeConfig::parse(&out).map_err(|e| NodeError::Config(format!("--set {key}={value}: {e}")))?;
    Ok(out)
}

/// Splits `KEY=VALUE` as given to `--set`.
pub fn split_assignment(arg: &str) -> Result<(&str, &str), NodeError> {
    arg.split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| NodeError::Config(format!("--set expects KEY=VALUE, got {arg:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_file_is_the_default() {
        assert_eq!(NodeConfig::parse(DEFAULT_CONFIG).unwrap(), NodeConfig::default());
        assert_eq!(NodeConfig::parse("").unwrap(), NodeConfig::default());
    }

    #[test]
    fn set_key_keeps_comments_and_validates() {
        let out = set_key(DEFAULT_CONFIG, "keepalive.ping_interval", "1s").unwrap();
        assert!(out.contains("# PING every interval"));
        let c = NodeConfig::parse(&out).unwrap();
        assert_eq!(c.keepalive.ping_interval.0, Duration::from_secs(1));
        let out = set_key(&out, "limits.max_per_ip", "50").unwrap();
        assert_eq!(NodeConfig::parse(&out).unwrap().limits.max_per_ip, 50);
        let out = set_key(&out, "network.listen", r#"["/ip4/127.0.0.1/tcp/0"]"#).unwrap();
        assert_eq!(NodeConfig::parse(&out).unwrap().network.listen.len(), 1);
        assert!(set_key(DEFAULT_CONFIG, "keepalive.no_such_key", "1").is_err());
        assert!(set_key(DEFAULT_CONFIG, "keepalive.ping_interval", "fast").is_err());
        assert!(set_key(DEFAULT_CONFIG, "limits.max_total", "0").is_err());
    }

    #[test]
    fn durations_parse_and_print() {
        for (s, d) in [("250ms", 250), ("30s", 30_000), ("10m", 600_000), ("1h", 3_600_000)] {
            let parsed: ConfigDuration = s.parse().unwrap();
            assert_eq!(parsed.0, Duration::from_millis(d));
            assert_eq!(parsed.to_string(), s);
        }
        assert!("10".parse::<ConfigDuration>().is_err());
        assert!("s".parse::<ConfigDuration>().is_err());
        assert!("5d".parse::<ConfigDuration>().is_err());
    }

    #[test]
    fn bootstrap_needs_a_peer_id() {
        let text = "[network]\nbootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n";
        assert!(NodeConfig::parse(text).is_err());
    }
}
