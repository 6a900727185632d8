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
