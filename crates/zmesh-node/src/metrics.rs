//! Prometheus metrics of a node, served as text at `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric a node exports. Cheap to clone: the metrics are shared handles.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub peers_active: Gauge,
    pub connections: Gauge,
    pub connections_pending: Gauge,
    pub routing_table_size: Gauge,
    pub connections_denied: Family<Labels, Counter>,
    pub handshakes: Family<Labels, Counter>,
    pub peers_dead: Family<Labels, Counter>,
    pub pex_requests: Family<Labels, Counter>,
    pub pex_peers_learned: Counter,
    pub pex_verify_failed: Counter,
    pub dht_lookups: Family<Labels, Counter>,
    pub dht_lookup_rounds: Histogram,
    pub dht_lookup_seconds: Histogram,
    pub peer_rtt_seconds: Histogram,
    pub storage_requests: Family<Vec<(&'static str, String)>, Counter>,
    pub storage_gc_removed: Counter,
    pub storage_bytes_used: Gauge,
    pub storage_shards: Gauge,
    pub repair_chunks_watched: Gauge,
    pub repair_chunks_wardened: Gauge,
    pub repair_scans: Counter,
    pub repair_events: Family<Labels, Counter>,
    pub repair_bytes: Family<Labels, Counter>,
    pub repair_shards_rebuilt: Counter,
    pub repair_expiries_verified: Counter,
    pub repair_expiry_violations: Counter,
    pub repair_spot_check_failures: Counter,
    pub audit_shards_checked: Counter,
    pub audit_damaged: Counter,
    pub throttled: Family<Labels, Counter>,
    pub peers_banned: Counter,
    pub malformed: Counter,
    pub early_requests: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new() -> (Metrics, Registry) {
        let mut r = Registry::with_prefix("zmesh");
        let m = Metrics {
            peers_active: Gauge::default(),
            connections: Gauge::default(),
            connections_pending: Gauge::default(),
            routing_table_size: Gauge::default(),
            connections_denied: Family::default(),
            handshakes: Family::default(),
            peers_dead: Family::default(),
            pex_requests: Family::default(),
            pex_peers_learned: Counter::default(),
            pex_verify_failed: Counter::default(),
            dht_lookups: Family::default(),
            dht_lookup_rounds: Histogram::new(linear_buckets(1.0, 1.0, 12)),
            dht_lookup_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            peer_rtt_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            storage_requests: Family::default(),
            storage_gc_removed: Counter::default(),
            storage_bytes_used: Gauge::default(),
            storage_shards: Gauge::default(),
            repair_chunks_watched: Gauge::default(),
            repair_chunks_wardened: Gauge::default(),
            repair_scans: Counter::default(),
            repair_events: Family::default(),
            repair_bytes: Family::default(),
            repair_shards_rebuilt: Counter::default(),
            repair_expiries_verified: Counter::default(),
            repair_expiry_violations: Counter::default(),
            repair_spot_check_failures: Counter::default(),
            audit_shards_checked: Counter::default(),
            audit_damaged: Counter::default(),
            throttled: Family::default(),
            peers_banned: Counter::default(),
            malformed: Counter::default(),
            early_requests: Family::default(),
        };
        r.register(
            "peers_active",
            "Peers with a completed zmesh handshake",
            m.peers_active.clone(),
        );
        r.register("connections", "Established connections", m.connections.clone());
        r.register(
            "connections_pending",
            "Connections being set up",
            m.connections_pending.clone(),
        );
        r.register(
            "routing_table_size",
            "Peers in the Kademlia routing table",
            m.routing_table_size.clone(),
        );
        r.register(
            "connections_denied",
            "Connections refused by a limit",
            m.connections_denied.clone(),
        );
        r.register("handshakes", "zmesh handshakes by result", m.handshakes.clone());
        r.register("peers_dead", "Peers declared dead, by reason", m.peers_dead.clone());
        r.register("pex_requests", "PEX requests by direction and result", m.pex_requests.clone());
        r.register(
            "pex_peers_learned",
            "Peers learned through PEX and verified",
            m.pex_peers_learned.clone(),
        );
        r.register(
            "pex_verify_failed",
            "Peers learned through PEX that failed verification",
            m.pex_verify_failed.clone(),
        );
        r.register("dht_lookups", "Closest-peer lookups by result", m.dht_lookups.clone());
        r.register(
            "dht_lookup_rounds",
            "Rounds per closest-peer lookup",
            m.dht_lookup_rounds.clone(),
        );
        r.register(
            "dht_lookup_seconds",
            "Duration of closest-peer lookups",
            m.dht_lookup_seconds.clone(),
        );
        r.register("peer_rtt_seconds", "Keep-alive round-trip times", m.peer_rtt_seconds.clone());
        r.register(
            "storage_requests",
            "Storage requests served, by operation and status",
            m.storage_requests.clone(),
        );
        r.register("storage_gc_removed", "Expired shards deleted", m.storage_gc_removed.clone());
        r.register("storage_bytes_used", "Bytes of shards held", m.storage_bytes_used.clone());
        r.register("storage_shards", "Shards held", m.storage_shards.clone());
        r.register(
            "repair_chunks_watched",
            "Chunks this node holds shards of and watches",
            m.repair_chunks_watched.clone(),
        );
        r.register(
            "repair_chunks_wardened",
            "Chunks this node is first in line to scan",
            m.repair_chunks_wardened.clone(),
        );
        r.register("repair_scans", "Chunk health scans run", m.repair_scans.clone());
        r.register("repair_events", "Repair outcomes by kind (repair, failure, unrecoverable, expiry_verified, expiry_violation)", m.repair_events.clone());
        r.register(
            "repair_bytes",
            "Repair traffic in shard bytes, by direction (fetched, stored)",
            m.repair_bytes.clone(),
        );
        r.register(
            "repair_shards_rebuilt",
            "Shards rebuilt and placed by repair",
            m.repair_shards_rebuilt.clone(),
        );
        r.register(
            "repair_expiries_verified",
            "Expired chunks verified deleted on every reachable holder",
            m.repair_expiries_verified.clone(),
        );
        r.register(
            "repair_expiry_violations",
            "Expired shards found still held",
            m.repair_expiry_violations.clone(),
        );
        r.register(
            "repair_spot_check_failures",
            "Shards a holder called healthy that failed their signed checksum",
            m.repair_spot_check_failures.clone(),
        );
        r.register(
            "audit_shards_checked",
            "Shards re-read and checked by audits",
            m.audit_shards_checked.clone(),
        );
        r.register("audit_damaged", "Damaged shards dropped by audits", m.audit_damaged.clone());
        r.register(
            "throttled",
            "Messaging requests answered THROTTLED, by reason (rate_limit, buffer_full)",
            m.throttled.clone(),
        );
        r.register(
            "malformed_requests",
            "Malformed requests read (each closed its stream)",
            m.malformed.clone(),
        );
        r.register(
            "requests_before_handshake",
            "Requests dropped unanswered because the peer had not completed the handshake",
            m.early_requests.clone(),
        );
        r.register(
            "peers_banned",
            "Peers disconnected and banned for ignoring rate limits",
            m.peers_banned.clone(),
        );
        (m, r)
    }
}

pub fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

/// Prometheus text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}
