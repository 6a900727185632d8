//! The anti-entropy service of a node: scans the chunks it is warden of, rebuilds lost shards,
//! verifies that expired chunks are gone, and audits the shards on its own disk. The decisions
//! (who scans when, what is healthy, whom to ask) are `zmesh_core::repair`'s; this drives them.

mod scan;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use zmesh_core::repair::Reputation;
use zmesh_types::Key256;

use super::{Holder, StorageNet};
use crate::config::RepairSection;
use crate::identity::node_id;
use crate::lock;
use crate::metrics::{Metrics, label};

/// Events kept for `GET /v1/repair`.
const RECENT_EVENTS: usize = 256;
/// Shards read per audit slice, between which the audit yields to other work.
const AUDIT_SLICE: usize = 64;
/// Addresses remembered from lookups, so wardens reach holders outside their routing table.
const ADDRESS_CACHE: usize = 10_000;

/// One thing the service did to one chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepairEvent {
    pub storage_key: Key256,
    pub at_unix_ms: u64,
    /// `repair`, `failure`, `unrecoverable`, `expiry_verified` or `expiry_violation`.
    pub kind: String,
    /// Shard indices rebuilt (repair) or still held past expiry (expiry_violation).
    pub shards: Vec<u8>,
    /// Repair traffic of this event: shard bytes fetched plus stored.
    pub bytes: u64,
    pub detail: String,
}

/// Audit figures, for operators.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditReport {
    pub passes: u64,
    pub shards_checked: u64,
    pub damaged_dropped: u64,
    pub last_pass_unix_ms: Option<u64>,
}

/// `GET /v1/repair`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepairReport {
    pub enabled: bool,
    pub scan_interval_ms: u64,
    pub threshold: usize,
    /// Chunks this node holds shards of and watches.
    pub chunks_watched: usize,
    /// Of those, the ones this node is first in line for.
    pub chunks_wardened: usize,
    pub scans: u64,
    pub last_scan_unix_ms: Option<u64>,
    pub repairs: u64,
    pub shards_rebuilt: u64,
    pub bytes_fetched: u64,
    pub bytes_stored: u64,
    pub failures: u64,
    pub unrecoverable: u64,
    pub spot_checks: u64,
    pub spot_check_failures: u64,
    pub expiries_verified: u64,
    pub expiry_violations: u64,
    /// Nodes currently passed over for new shards (failed audits or unreachable).
    pub penalized_nodes: usize,
    pub audit: AuditReport,
    pub recent: Vec<RepairEvent>,
}

#[derive(Debug, Default)]
struct Stats {
    scans: u64,
    last_scan_unix_ms: Option<u64>,
    repairs: u64,
    shards_rebuilt: u64,
    bytes_fetched: u64,
    bytes_stored: u64,
    failures: u64,
    unrecoverable: u64,
    spot_checks: u64,
    spot_check_failures: u64,
    expiries_verified: u64,
    expiry_violations: u64,
    recent: VecDeque<RepairEvent>,
}

#[derive(Debug)]
pub struct RepairService {
    net: StorageNet,
    holder: Arc<Holder>,
    config: RepairSection,
    metrics: Metrics,
    stats: Mutex<Stats>,
    reputation: Mutex<Reputation<PeerId>>,
    addresses: Mutex<HashMap<PeerId, Vec<Multiaddr>>>,
    /// Failed repairs in a row, by chunk.
    retries: Mutex<HashMap<Key256, u32>>,
}

impl RepairService {
    pub fn new(net: StorageNet, config: RepairSection, metrics: Metrics) -> Arc<Self> {
        Arc::new(RepairService {
            holder: net.holder.clone(),
            net,
            config,
            metrics,
            stats: Mutex::new(Stats::default()),
            reputation: Mutex::new(Reputation::default()),
            addresses: Mutex::new(HashMap::new()),
            retries: Mutex::new(HashMap::new()),
        })
    }

    /// Starts the scan loop and the audit loop; both run until the runtime stops.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().scan_loop());
        tokio::spawn(self.clone().audit_loop());
        tracing::info!(
            scan_interval = ?self.config.scan_interval.0,
            threshold = self.config.threshold,
            "repair service started"
        );
    }

    async fn scan_loop(self: Arc<Self>) {
        let mut running: JoinSet<()> = JoinSet::new();
        loop {
            let now = self.holder.now_ms();
            let free = self.config.max_concurrent.saturating_sub(running.len());
            let (due, next) = {
                let mut schedule = lock(&self.holder.schedule);
                (schedule.due(now, free), schedule.next_deadline())
            };
            for key in due {
                let service = self.clone();
                running.spawn(async move {
                    service.scan(key).await;
                    let done = service.holder.now_ms();
                    lock(&service.holder.schedule).finished(&key, done);
                });
            }
            let (watched, wardened) = lock(&self.holder.schedule).counts();
            self.metrics.repair_chunks_watched.set(watched as i64);
            self.metrics.repair_chunks_wardened.set(wardened as i64);
            let wait_ms = next.map_or(1000, |d| d.saturating_sub(now)).clamp(20, 1000);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
    }

    async fn audit_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.config.audit_interval.0);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let mut after = None;
            let mut damaged = 0usize;
            loop {
                let holder = self.holder.clone();
                let slice =
                    tokio::task::spawn_blocking(move || holder.audit(after, AUDIT_SLICE)).await;
                let slice = match slice {
                    Ok(Ok(slice)) => slice,
                    Ok(Err(e)) => {
                        tracing::error!("audit stopped: {e}");
                        break;
                    }
                    Err(e) => {
                        tracing::error!("audit task failed: {e}");
                        break;
                    }
                };
                self.metrics.audit_shards_checked.inc_by(slice.checked);
                self.metrics.audit_damaged.inc_by(slice.damaged.len() as u64);
                damaged += slice.damaged.len();
                for key in &slice.damaged {
                    tracing::warn!(key = %key.storage_key, index = key.index, "audit dropped a damaged shard");
                }
                match slice.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
                tokio::task::yield_now().await;
            }
            let counters = &self.holder.audit;
            counters.passes.fetch_add(1, Ordering::Relaxed);
            counters.last_pass_unix_ms.store(self.holder.now_ms(), Ordering::Relaxed);
            tracing::info!(damaged, "audit pass finished");
        }
    }

    /// A peer was declared dead: the chunks it held are scanned now by their warden (or, if it
    /// was the warden, by the next in line) instead of at their next deadline.
    pub fn peer_lost(self: &Arc<Self>, peer: PeerId) {
        let service = self.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(chunks) = service.holder.chunks_held_with(&peer) else { return };
            let lost = node_id(&peer);
            let mut schedule = lock(&service.holder.schedule);
            let mut expedited = 0;
            for (key, ids) in chunks {
                let mine = schedule.rank(&key);
                let theirs = zmesh_core::repair::schedule::rank_of(&key, &lost, &ids);
                if mine == Some(0) || (mine == Some(1) && theirs == Some(0)) {
                    schedule.expedite(&key);
                    expedited += 1;
                }
            }
            if expedited > 0 {
                tracing::info!(%peer, chunks = expedited, "holder lost; scanning its chunks now");
            }
        });
    }

    fn record_event(&self, event: RepairEvent) {
        let mut stats = lock(&self.stats);
        if stats.recent.len() >= RECENT_EVENTS {
            stats.recent.pop_front();
        }
        stats.recent.push_back(event);
    }

    fn event(&self, key: Key256, kind: &str, shards: Vec<u8>, bytes: u64, detail: String) {
        self.metrics.repair_events.get_or_create(&label("kind", kind)).inc();
        self.record_event(RepairEvent {
            storage_key: key,
            at_unix_ms: self.holder.now_ms(),
            kind: kind.into(),
            shards,
            bytes,
            detail,
        });
    }

    fn remember_addresses(&self, peers: &[(PeerId, Vec<Multiaddr>)]) {
        let mut cache = lock(&self.addresses);
        if cache.len() > ADDRESS_CACHE {
            cache.clear();
        }
        for (peer, addrs) in peers {
            if !addrs.is_empty() {
                cache.insert(*peer, addrs.clone());
            }
        }
    }

    fn addresses_of(&self, peer: &PeerId) -> Vec<Multiaddr> {
        lock(&self.addresses).get(peer).cloned().unwrap_or_default()
    }

    pub fn report(&self) -> RepairReport {
        let now = self.holder.now_ms();
        let (chunks_watched, chunks_wardened) = lock(&self.holder.schedule).counts();
        let penalized_nodes = lock(&self.reputation).penalized_count(now);
        let audit = &self.holder.audit;
        let last_pass = audit.last_pass_unix_ms.load(Ordering::Relaxed);
        let stats = lock(&self.stats);
        RepairReport {
            enabled: true,
            scan_interval_ms: self.config.scan_interval.0.as_millis() as u64,
            threshold: self.config.threshold,
            chunks_watched,
            chunks_wardened,
            scans: stats.scans,
            last_scan_unix_ms: stats.last_scan_unix_ms,
            repairs: stats.repairs,
            shards_rebuilt: stats.shards_rebuilt,
            bytes_fetched: stats.bytes_fetched,
            bytes_stored: stats.bytes_stored,
            failures: stats.failures,
            unrecoverable: stats.unrecoverable,
            spot_checks: stats.spot_checks,
            spot_check_failures: stats.spot_check_failures,
            expiries_verified: stats.expiries_verified,
            expiry_violations: stats.expiry_violations,
            penalized_nodes,
            audit: AuditReport {
                passes: audit.passes.load(Ordering::Relaxed),
                shards_checked: audit.shards_checked.load(Ordering::Relaxed),
                damaged_dropped: audit.damaged_dropped.load(Ordering::Relaxed),
                last_pass_unix_ms: (last_pass > 0).then_some(last_pass),
            },
            recent: stats.recent.iter().cloned().collect(),
        }
    }
}
