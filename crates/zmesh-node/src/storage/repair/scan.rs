//! One scan of one chunk: health round, spot checks, then a repair, a record update or an expiry
//! verdict.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use libp2p::PeerId;
use zmesh_core::placement::{Candidate, PLACEMENT_CANDIDATES};
use zmesh_core::repair::{Assessment, ChunkRepair, Decision, HolderReport, RepairStep};
use zmesh_core::{erasure, storage_auth};
use zmesh_types::Key256;
use zmesh_types::constants::TOTAL_SHARDS;
use zmesh_wire::repair::PlacementRecord;
use zmesh_wire::shard::Shard;
use zmesh_wire::store::{OwnerAuth, Status, StoreMessage};

use super::RepairService;
use crate::identity::node_id;
use crate::lock;
use crate::storage::custody::{Custody, record_contains, record_peers};

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
const CAPACITY_TIMEOUT: Duration = Duration::from_secs(5);
const SHARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed repairs of one chunk retried at once (with a fresh health check) before waiting for
/// the next period.
const IMMEDIATE_RETRIES: u32 = 3;

type Slots = Vec<Option<PeerId>>;

/// Whether `shard` is exactly shard `index` of the chunk the certificate signs for.
fn is_signed_shard(shard: &Shard, key: &Key256, index: u8, certificate: &OwnerAuth) -> bool {
    shard.header.storage_key == *key
        && shard.header.index == index
        && storage_auth::is_signed_shard(certificate, shard)
}

impl RepairService {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::storage::Holder) -> T + Send + 'static,
    ) -> Option<T> {
        let holder = self.holder.clone();
        tokio::task::spawn_blocking(move || f(&holder)).await.ok()
    }

    async fn ask(
        &self,
        peer: PeerId,
        message: StoreMessage,
        timeout: Duration,
    ) -> Result<StoreMessage, String> {
        self.net.request((peer, self.addresses_of(&peer)), message, timeout).await
    }

    pub(super) async fn scan(&self, key: Key256) {
        let custody = match self.blocking(move |h| h.custody(&key)).await {
            Some(Ok(Some(c))) => c,
            Some(Ok(None)) => {
                lock(&self.holder.schedule).forget(&key);
                return;
            }
            _ => return,
        };
        let now = self.holder.now_ms();
        {
            let mut stats = lock(&self.stats);
            stats.scans += 1;
            stats.last_scan_unix_ms = Some(now);
        }
        self.metrics.repair_scans.inc();
        let record_slots: Slots =
            custody.record.as_ref().map(record_peers).unwrap_or_else(|| vec![None; TOTAL_SHARDS]);
        let mut members: Vec<PeerId> = record_slots.iter().flatten().copied().collect();
        if custody.record.is_none() {
            // No record yet (the first scan after a PUT): ask around the key instead.
            match self.net.closest(key, PLACEMENT_CANDIDATES).await {
                Ok(found) => {
                    let peers: Vec<_> = found.into_iter().map(|(p, _, a)| (p, a)).collect();
                    self.remember_addresses(&peers);
                    members.extend(peers.into_iter().map(|(p, _)| p));
                }
                Err(e) => tracing::warn!(%key, "scan: looking up the nearest nodes failed: {e}"),
            }
        }
        members.push(self.net.local);
        let mut seen = HashSet::new();
        members.retain(|p| seen.insert(*p));

        let version = custody.record.as_ref().map_or(0, |r| r.version);
        let (reports, newer) = self.health_round(key, &members, custody.record.clone()).await;
        if let Some(newer) = newer {
            tracing::debug!(%key, version = newer.version, "a newer placement record exists; following it");
            self.blocking(move |h| h.adopt_record(&key, &newer)).await;
            return;
        }
        if self.closer_holder_answered(&key, &reports) && lock(&self.holder.schedule).defer(&key) {
            tracing::debug!(%key, "a holder closer to the key is alive; leaving the chunk to it");
            return;
        }
        let expired = custody.expires_at_ms <= self.holder.now_ms();
        let mut assessment = Assessment::from_reports(&record_slots, &reports);
        // Holders serve repair reads only to members of the chunk's record, so spot checks
        // start once a record exists (from the second scan after a PUT on).
        if !expired && custody.record.is_some() {
            self.spot_check(&key, &custody.certificate, &mut assessment).await;
        }
        let decision = assessment.decide(self.config.threshold, expired);
        // Where shards are now (missing ones keep their last known holder, who may come back).
        // Holders learn it before any repair read, since they serve those only to its members.
        let merged: Slots =
            (0..TOTAL_SHARDS).map(|i| assessment.healthy[i].or(record_slots[i])).collect();
        let mut version = version;
        if matches!(decision, Decision::Healthy | Decision::Repair { .. })
            && (custody.record.is_none() || merged != record_slots)
        {
            version = self.publish_record(key, merged, version).await;
        }
        match decision {
            Decision::Healthy => {
                lock(&self.retries).remove(&key);
            }
            Decision::Repair { rebuild } => {
                // Nodes that hold a shard of this chunk, or may (recorded but silent), get no
                // other: one that merely missed a health check would end up with two.
                let empty_handed: HashSet<PeerId> = reports
                    .iter()
                    .filter(|(_, r)| matches!(r, HolderReport::Answered(s) if s.is_empty()))
                    .map(|(p, _)| *p)
                    .collect();
                let known: HashSet<PeerId> = record_slots
                    .iter()
                    .flatten()
                    .filter(|p| !empty_handed.contains(p))
                    .chain(assessment.healthy.iter().flatten())
                    .copied()
                    .collect();
                self.repair(key, &custody, &assessment, &known, rebuild, version).await;
            }
            Decision::Unrecoverable { healthy } => {
                lock(&self.stats).unrecoverable += 1;
                tracing::error!(%key, healthy, "chunk has too few healthy shards to rebuild; will retry");
                self.event(
                    key,
                    "unrecoverable",
                    Vec::new(),
                    0,
                    format!("{healthy} healthy shards"),
                );
            }
            Decision::ExpiryVerified => {
                lock(&self.stats).expiries_verified += 1;
                self.metrics.repair_expiries_verified.inc();
                tracing::info!(%key, asked = members.len(), "expired chunk verified deleted on every reachable holder");
                self.event(
                    key,
                    "expiry_verified",
                    Vec::new(),
                    0,
                    format!("{} holders asked", members.len()),
                );
                lock(&self.retries).remove(&key);
                self.blocking(move |h| h.forget_chunk(&key)).await;
            }
            Decision::ExpiryViolated => {
                let holding = assessment.still_holding();
                lock(&self.stats).expiry_violations += holding.len() as u64;
                self.metrics.repair_expiry_violations.inc_by(holding.len() as u64);
                let who: Vec<String> = holding.iter().map(|(p, i)| format!("{p}#{i}")).collect();
                tracing::warn!(%key, holders = ?who, "expired shards are still held");
                let shards = holding.iter().map(|(_, i)| *i).collect();
                self.event(key, "expiry_violation", shards, 0, who.join(", "));
            }
        }
    }

    /// Whether a member ranked before this node (closer to the key) answered the health check:
    /// then this node is only standing in for a warden that is alive, perhaps just busy.
    fn closer_holder_answered(&self, key: &Key256, reports: &[(PeerId, HolderReport)]) -> bool {
        if lock(&self.holder.schedule).rank(key).is_none_or(|r| r == 0) {
            return false;
        }
        let local = node_id(&self.net.local);
        reports.iter().any(|(peer, report)| {
            matches!(report, HolderReport::Answered(shards) if !shards.is_empty())
                && key.cmp_distance(&node_id(peer), &local) == std::cmp::Ordering::Less
        })
    }

    /// Asks every member for its shards of `key`. Returns the reports, and a newer placement
    /// record if a node it names has one.
    async fn health_round(
        &self,
        key: Key256,
        members: &[PeerId],
        record: Option<PlacementRecord>,
    ) -> (Vec<(PeerId, HolderReport)>, Option<PlacementRecord>) {
        let version = record.as_ref().map_or(0, |r| r.version);
        let checks = members.iter().map(|peer| {
            let message = StoreMessage::HealthCheck { storage_key: key, record: record.clone() };
            async move { (*peer, self.ask(*peer, message, CHECK_TIMEOUT).await) }
        });
        let now = self.holder.now_ms();
        let mut reports = Vec::new();
        let mut newer: Option<PlacementRecord> = None;
        for (peer, answer) in join_all(checks).await {
            match answer {
                Ok(StoreMessage::Health { outcome, shards, record, .. })
                    if outcome.status == Status::Ok =>
                {
                    lock(&self.reputation).answered(&peer);
                    reports.push((peer, HolderReport::Answered(shards)));
                    if let Some(r) = record
                        && r.version > version
                        && record_contains(&r, &peer)
                        && newer.as_ref().is_none_or(|n| r.version > n.version)
                    {
                        newer = Some(r);
                    }
                }
                other => {
                    if let Err(e) = &other {
                        tracing::debug!(%key, %peer, "health check unanswered: {e}");
                    }
                    lock(&self.reputation).unreachable(&peer, now);
                    reports.push((peer, HolderReport::Unreachable));
                }
            }
        }
        (reports, newer)
    }

    /// Fetches `spot_checks` shards that holders call healthy and checks them against the
    /// owner's signed checksums: a holder that lies about its shard fails its audit here.
    async fn spot_check(
        &self,
        key: &Key256,
        certificate: &OwnerAuth,
        assessment: &mut Assessment<PeerId>,
    ) {
        let remote: Vec<(u8, PeerId)> = assessment
            .healthy
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.filter(|p| *p != self.net.local).map(|p| (i as u8, p)))
            .collect();
        if remote.is_empty() || self.config.spot_checks == 0 {
            return;
        }
        let start = (self.holder.now_ms() as usize) % remote.len();
        for k in 0..self.config.spot_checks.min(remote.len()) {
            let (index, peer) = remote[(start + k) % remote.len()];
            let answer = self
                .ask(peer, StoreMessage::RepairFetch { storage_key: *key, index }, SHARD_TIMEOUT)
                .await;
            lock(&self.stats).spot_checks += 1;
            let passed = match &answer {
                Ok(StoreMessage::Shards { outcome, shards }) if outcome.status == Status::Ok => {
                    let bytes: u64 = shards.iter().map(|s| s.data.len() as u64).sum();
                    lock(&self.stats).bytes_fetched += bytes;
                    self.metrics
                        .repair_bytes
                        .get_or_create(&crate::metrics::label("direction", "fetched"))
                        .inc_by(bytes);
                    shards.len() == 1 && is_signed_shard(&shards[0], key, index, certificate)
                }
                Err(_) => {
                    // Unreachable now: not an audit failure, but not a healthy shard either.
                    assessment.healthy[usize::from(index)] = None;
                    continue;
                }
                // A holder that does not know our record yet is not lying about its shard.
                Ok(StoreMessage::Shards { outcome, .. })
                    if outcome.status == Status::Unauthorized =>
                {
                    continue;
                }
                _ => false,
            };
            if !passed {
                let now = self.holder.now_ms();
                lock(&self.reputation).failed_audit(&peer, now);
                lock(&self.stats).spot_check_failures += 1;
                self.metrics.repair_spot_check_failures.inc();
                assessment.healthy[usize::from(index)] = None;
                tracing::warn!(%key, %peer, index, "holder failed a spot check; its shard will be rebuilt elsewhere");
            }
        }
    }

    /// Writes a new placement record here and sends it to every holder it names.
    /// Returns the new record's version.
    async fn publish_record(&self, key: Key256, holders: Slots, old_version: u64) -> u64 {
        let record = PlacementRecord {
            version: self.holder.now_ms().max(old_version + 1),
            holders: holders.iter().map(|h| h.map(|p| p.to_bytes()).unwrap_or_default()).collect(),
        };
        let local = self.net.local;
        let mine = record.clone();
        self.blocking(move |h| h.adopt_record(&key, &mine)).await;
        let peers: HashSet<PeerId> =
            holders.into_iter().flatten().filter(|p| *p != local).collect();
        let sends = peers.into_iter().map(|peer| {
            let message =
                StoreMessage::HealthCheck { storage_key: key, record: Some(record.clone()) };
            self.ask(peer, message, CHECK_TIMEOUT)
        });
        join_all(sends).await;
        record.version
    }

    async fn repair(
        &self,
        key: Key256,
        custody: &Custody,
        assessment: &Assessment<PeerId>,
        known_holders: &HashSet<PeerId>,
        rebuild: Vec<u8>,
        version: u64,
    ) {
        let healthy = assessment.healthy_count();
        tracing::info!(%key, healthy, missing = ?rebuild, "chunk degraded; repairing");
        let fail = |detail: String| {
            lock(&self.stats).failures += 1;
            // Holders may have died since the health check: look again at once, a few times.
            let attempt = {
                let mut retries = lock(&self.retries);
                let n = retries.entry(key).or_insert(0);
                *n += 1;
                *n
            };
            let again = attempt <= IMMEDIATE_RETRIES;
            if again {
                lock(&self.holder.schedule).expedite(&key);
            }
            tracing::warn!(%key, attempt, retry_now = again, "repair failed: {detail}");
            self.event(key, "failure", rebuild.clone(), 0, detail);
        };
        let found = match self.net.closest(key, PLACEMENT_CANDIDATES).await {
            Ok(found) => found,
            Err(e) => return fail(format!("looking up the nearest nodes: {e}")),
        };
        self.remember_addresses(&found.iter().map(|(p, _, a)| (*p, a.clone())).collect::<Vec<_>>());
        let asks = found.iter().filter(|(p, _, _)| !known_holders.contains(p)).map(
            |(peer, _, _)| async move {
                let answer = self.ask(*peer, StoreMessage::Capacity, CAPACITY_TIMEOUT).await;
                (*peer, matches!(answer, Ok(StoreMessage::CapacityInfo { accepting: true, .. })))
            },
        );
        let accepting: HashMap<PeerId, bool> = join_all(asks).await.into_iter().collect();
        let now = self.holder.now_ms();
        let candidates = {
            let reputation = lock(&self.reputation);
            found
                .iter()
                .map(|(peer, node_id, _)| Candidate {
                    peer: *peer,
                    node_id: *node_id,
                    accepting: accepting.get(peer).copied().unwrap_or(false)
                        && !reputation.penalized(peer, now),
                })
                .collect()
        };
        let mut plan = match ChunkRepair::new(&key, assessment, candidates, &self.net.local) {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        let (mut fetched, mut stored) = (0u64, 0u64);
        let mut sources: Vec<Shard> = Vec::new();
        let mut rebuilt: Option<Vec<Shard>> = None;
        let outcome = loop {
            match plan.poll() {
                RepairStep::Fetch(list) => {
                    let asks = list.into_iter().map(|(index, peer)| async move {
                        let message = StoreMessage::RepairFetch { storage_key: key, index };
                        (index, peer, self.ask(peer, message, SHARD_TIMEOUT).await)
                    });
                    for (index, peer, answer) in join_all(asks).await {
                        match answer {
                            Ok(StoreMessage::Shards { outcome, mut shards })
                                if outcome.status == Status::Ok && shards.len() == 1 =>
                            {
                                let shard = shards.remove(0);
                                fetched += shard.data.len() as u64;
                                let ok = is_signed_shard(&shard, &key, index, &custody.certificate);
                                if ok {
                                    sources.push(shard);
                                } else {
                                    lock(&self.reputation).failed_audit(&peer, now);
                                }
                                plan.fetched(ok);
                            }
                            other => {
                                tracing::info!(%key, %peer, index, "could not fetch a shard for repair: {other:?}");
                                plan.fetched(false)
                            }
                        }
                    }
                }
                RepairStep::Store(list) => {
                    if rebuilt.is_none() {
                        let input = std::mem::take(&mut sources);
                        let made =
                            tokio::task::spawn_blocking(move || erasure::rebuild(key, input)).await;
                        match made {
                            Ok(Ok(shards)) => rebuilt = Some(shards),
                            Ok(Err(e)) => break Err(format!("rebuilding: {e}")),
                            Err(e) => break Err(format!("rebuilding: {e}")),
                        }
                    }
                    let Some(shards) = &rebuilt else { break Err("nothing rebuilt".into()) };
                    let record = PlacementRecord {
                        version: now.max(version + 1),
                        holders: plan.holders().iter().map(|p| p.to_bytes()).collect(),
                    };
                    let sends = list.into_iter().map(|(index, peer)| {
                        let message = StoreMessage::RepairStore {
                            certificate: custody.certificate.clone(),
                            shard: shards[usize::from(index)].clone(),
                            record: record.clone(),
                        };
                        async move { (index, peer, self.ask(peer, message, SHARD_TIMEOUT).await) }
                    });
                    for (index, peer, answer) in join_all(sends).await {
                        let ok = matches!(&answer, Ok(StoreMessage::Result(o)) if o.status == Status::Ok);
                        if ok {
                            stored += shards[usize::from(index)].data.len() as u64;
                        } else {
                            tracing::info!(%key, %peer, index, "new holder did not take the shard ({answer:?}); trying the next node");
                        }
                        plan.stored(index, ok);
                    }
                }
                RepairStep::Wait => break Err("repair stalled".into()),
                RepairStep::Done(holders) => break Ok(holders),
                RepairStep::Failed(e) => break Err(e.to_string()),
            }
        };
        {
            let mut stats = lock(&self.stats);
            stats.bytes_fetched += fetched;
            stats.bytes_stored += stored;
        }
        let bytes = |direction: &str| {
            self.metrics
                .repair_bytes
                .get_or_create(&crate::metrics::label("direction", direction))
                .clone()
        };
        bytes("fetched").inc_by(fetched);
        bytes("stored").inc_by(stored);
        match outcome {
            Ok(holders) => {
                lock(&self.retries).remove(&key);
                {
                    let mut stats = lock(&self.stats);
                    stats.repairs += 1;
                    stats.shards_rebuilt += rebuild.len() as u64;
                }
                self.metrics.repair_shards_rebuilt.inc_by(rebuild.len() as u64);
                tracing::info!(%key, rebuilt = ?rebuild, fetched, stored, "chunk repaired: 15 shards on 15 nodes");
                let detail = format!("fetched {fetched} B, stored {stored} B");
                self.event(key, "repair", rebuild.clone(), fetched + stored, detail);
                self.publish_record(key, holders.into_iter().map(Some).collect(), version).await;
            }
            Err(detail) => fail(detail),
        }
    }
}
