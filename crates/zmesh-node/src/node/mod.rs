//! The node: one task that owns the libp2p swarm, feeds protocol events to the state machines
//! and answers the API's commands. Protocol decisions live in `zmesh-core`; this module only
//! connects them to the network.

mod lookup;
mod msg;
mod pex;
pub mod reports;
mod store;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, kad, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use zmesh_core::handshake::LocalOffer;
use zmesh_core::pex::RequestLimiter;
use zmesh_core::repair::ScheduleConfig;
use zmesh_types::{Capabilities, Key256, NodeId};
use zmesh_wire::control::Feature;
use zmesh_wire::dht::DhtMessage;
use zmesh_wire::msg::MsgMessage;
use zmesh_wire::pex::PexMessage;
use zmesh_wire::store::StoreMessage;

use crate::control::{self, ControlEvent, ControlReport};
use crate::framing::FrameCodec;
use crate::limits::{self, LimitHit};
use crate::messaging::MessageRelay;
use crate::messaging::mailbox::MailboxHolder;
use crate::messaging::net::MsgNet;
use crate::messaging::records::RecordStore;
use crate::messaging::stats::MessagingStats;
use crate::metrics::{Metrics, label};
use crate::peers::PeerTable;
use crate::storage::relay::Relay;
use crate::storage::repair::RepairService;
use crate::storage::{Holder, StorageNet};
use crate::{NodeConfig, NodeError, identity};
use lookup::{ClosestPeers, LookupReply};
use reports::{LookupReport, PeerReport, PeersReport, StatusReport};

pub const PEX_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/pex/1.0");
pub const DHT_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/dht/1.0");
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/kad/1.0.0");
pub const STORE_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/store/1.0");
pub const MSG_PROTOCOL: StreamProtocol = StreamProtocol::new("/zmesh/msg/1.0");
/// HELLO feature announcing the PEX privacy opt-out.
pub const FEATURE_PEX_PRIVATE: &str = "pex_private";
/// The runtime file a running node writes into its directory.
pub const RUNTIME_FILE: &str = "node.json";

type PexBehaviour = request_response::Behaviour<FrameCodec<PexMessage>>;
type DhtBehaviour = request_response::Behaviour<FrameCodec<DhtMessage>>;
type StoreBehaviour = request_response::Behaviour<FrameCodec<StoreMessage>>;
type MsgBehaviour = request_response::Behaviour<FrameCodec<MsgMessage>>;
/// An answer to a storage request, computed off the event loop.
type StoreAnswer = (ResponseChannel<StoreMessage>, StoreMessage);
/// An answer to a messaging request, computed off the event loop.
type MsgAnswer = (libp2p::swarm::ConnectionId, ResponseChannel<MsgMessage>, MsgMessage);

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // First, so connections over a limit are refused before other protocols see them.
    limits: limits::Behaviour,
    control: control::Behaviour,
    identify: identify::Behaviour,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pex: Toggle<PexBehaviour>,
    dht: Toggle<DhtBehaviour>,
    store: Toggle<StoreBehaviour>,
    msg: Toggle<MsgBehaviour>,
}

/// Requests from the API to the node task.
#[derive(Debug)]
pub enum Command {
    Status(oneshot::Sender<StatusReport>),
    Peers(oneshot::Sender<PeersReport>),
    Closest(Key256, oneshot::Sender<Result<LookupReport, NodeError>>),
    /// The `count` nodes closest to a key, for storage placement.
    ClosestPeers(Key256, usize, oneshot::Sender<Result<ClosestPeers, NodeError>>),
    /// A storage request to another node.
    StoreRequest {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: Box<StoreMessage>,
        reply: oneshot::Sender<Result<StoreMessage, String>>,
    },
    /// A messaging request to another node or a connected client.
    MsgRequest {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: Box<MsgMessage>,
        reply: oneshot::Sender<Result<MsgMessage, String>>,
    },
}

/// A cloneable handle the API uses to reach the node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    pub registry: Arc<Registry>,
    /// The shard store, when storage is enabled.
    pub storage: Option<Arc<Holder>>,
    /// The anti-entropy service, when storage and repair are enabled.
    pub repair: Option<Arc<RepairService>>,
    /// The message relay, when messaging is enabled.
    pub messaging: Option<Arc<MessageRelay>>,
}

impl NodeHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    pub async fn status(&self) -> Result<StatusReport, NodeError> {
        self.ask(Command::Status).await
    }

    pub async fn peers(&self) -> Result<PeersReport, NodeError> {
        self.ask(Command::Peers).await
    }

    pub async fn closest(&self, key: Key256) -> Result<LookupReport, NodeError> {
        self.ask(|tx| Command::Closest(key, tx)).await?
    }
}

/// What `node.json` holds while a node runs: enough for tools to find and talk to it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RuntimeInfo {
    pub peer_id: String,
    pub node_id: NodeId,
    pub multiaddrs: Vec<String>,
    pub api: String,
    pub dir: PathBuf,
    pub pid: u32,
}

pub(crate) struct Node {
    swarm: Swarm<Behaviour>,
    config: NodeConfig,
    local_peer: PeerId,
    local_node_id: NodeId,
    capabilities: Capabilities,
    api_addr: SocketAddr,
    started: Instant,
    peers: PeerTable,
    metrics: Metrics,
    pex_out: RequestLimiter<PeerId>,
    pex_in: RequestLimiter<PeerId>,
    last_pex_round: Instant,
    last_bootstrap_dial: Option<Instant>,
    /// Peers we declared dead and disconnected; their closing connections need no probe.
    dead_closing: HashSet<PeerId>,
    holder: Option<Arc<Holder>>,
    relay: Option<Arc<Relay>>,
    repair: Option<Arc<RepairService>>,
    store_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<StoreMessage, String>>>,
    store_answers: mpsc::Sender<StoreAnswer>,
    messaging: Option<Arc<MessageRelay>>,
    msg_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<MsgMessage, String>>>,
    msg_answers: mpsc::Sender<MsgAnswer>,
    msg_flows: HashMap<libp2p::swarm::ConnectionId, msg::ConnectionFlow>,
    msg_gate: zmesh_core::priority::PriorityGate<msg::MsgJob>,
    /// Banned peers whose connections close once their last answers had time to go out.
    banned_closing: Vec<(PeerId, Instant)>,
    last_gc: Instant,
    last_msg_gc: Instant,
    lookups: HashMap<u64, lookup::ActiveLookup>,
    lookup_requests: HashMap<OutboundRequestId, (u64, PeerId)>,
    next_lookup_id: u64,
    routing_seeded: bool,
}

fn local_offer(config: &NodeConfig) -> (LocalOffer, Capabilities) {
    let mut caps = Capabilities::empty();
    if config.dht.enabled {
        caps |= Capabilities::DHT;
    }
    if config.pex.enabled {
        caps |= Capabilities::PEX;
    }
    if config.storage.enabled {
        caps |= Capabilities::STORAGE;
    }
    let features = vec![Feature { name: FEATURE_PEX_PRIVATE.into(), enabled: config.pex.private }];
    let offer = LocalOffer {
        versions: config.network.protocol_versions.clone(),
        capabilities: caps,
        features,
    };
    (offer, caps)
}

fn build_swarm(
    keypair: libp2p::identity::Keypair,
    config: &NodeConfig,
) -> Result<Swarm<Behaviour>, NodeError> {
    let net = |e: &dyn std::fmt::Display| NodeError::Network(e.to_string());
    let peer = keypair.public().to_peer_id();
    let (offer, _) = local_offer(config);
    let control_config = control::ControlConfig {
        offer: Arc::new(offer),
        keepalive: config.keepalive(),
        handshake_timeout: config.network.handshake_timeout.0,
    };
    let rr_config = request_response::Config::default()
        .with_request_timeout(config.dht.request_timeout.0)
        .with_max_concurrent_streams(256);
    let dht_on = config.dht.enabled;
    let pex_on = config.pex.enabled;
    let store_on = config.storage.enabled;
    let msg_on = config.messaging.enabled;
    // Relays wait on other nodes and on clients; many users' messages share one connection
    // between relays.
    let msg_config = request_response::Config::default()
        .with_request_timeout(Duration::from_secs(60))
        .with_max_concurrent_streams(1024);
    // Chunks are up to 4 MiB: allow a client time to send one over a slow link, and bound how many
    // a connection may have in flight, since each is read whole into memory.
    let store_config = request_response::Config::default()
        .with_request_timeout(Duration::from_secs(120))
        .with_max_concurrent_streams(32);
    let refresh = config.dht.refresh_interval.0;
    let query_timeout = config.dht.request_timeout.0 * 3;
    let limits_config = config.limits();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| net(&e))?
        .with_quic()
        .with_behaviour(|key| {
            let kad = dht_on.then(|| {
                let mut cfg = kad::Config::new(KAD_PROTOCOL);
                cfg.set_replication_factor(
                    NonZeroUsize::new(zmesh_types::constants::DHT_K).expect("k > 0"),
                );
                cfg.set_parallelism(
                    NonZeroUsize::new(zmesh_types::constants::DHT_ALPHA).expect("alpha > 0"),
                );
                // Only peers that completed the zmesh handshake enter the routing table.
                cfg.set_kbucket_inserts(kad::BucketInserts::Manual);
                cfg.set_periodic_bootstrap_interval(Some(refresh));
                cfg.set_query_timeout(query_timeout);
                let mut kad =
                    kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), cfg);
                kad.set_mode(Some(kad::Mode::Server));
                kad
            });
            let rr = |protocol| [(protocol, ProtocolSupport::Full)];
            Behaviour {
                limits: limits::Behaviour::new(limits_config),
                control: control::Behaviour::new(control_config),
                identify: identify::Behaviour::new(
                    identify::Config::new("/zmesh/1".into(), key.public())
                        .with_agent_version(format!("zmesh/{}", env!("CARGO_PKG_VERSION"))),
                ),
                kad: kad.into(),
                pex: pex_on.then(|| PexBehaviour::new(rr(PEX_PROTOCOL), rr_config.clone())).into(),
                dht: dht_on.then(|| DhtBehaviour::new(rr(DHT_PROTOCOL), rr_config.clone())).into(),
                store: store_on
                    .then(|| StoreBehaviour::new(rr(STORE_PROTOCOL), store_config))
                    .into(),
                msg: msg_on.then(|| MsgBehaviour::new(rr(MSG_PROTOCOL), msg_config)).into(),
            }
        })
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

/// Starts a node from `dir` (identity and config already there) and runs it until `shutdown`
/// resolves. `on_ready` receives the runtime info once the node listens and serves its API.
pub async fn run(
    dir: &Path,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let keypair = identity::load(&dir.join(identity::IDENTITY_FILE))?;
    let local_peer = keypair.public().to_peer_id();
    let mut swarm = build_swarm(keypair, &config)?;
    for addr in &config.network.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Network(format!("cannot listen on {addr}: {e}")))?;
    }
    let api_listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|e| NodeError::io(format!("binding the API to {}", config.api.listen), e))?;
    let api_addr = api_listener.local_addr().map_err(|e| NodeError::io("API address", e))?;

    let holder = if config.storage.enabled {
        let schedule =
            ScheduleConfig::from_period(config.repair.scan_interval.0.as_millis() as u64);
        Some(Arc::new(Holder::open(
            dir,
            config.storage.max_bytes,
            config.storage.clock_offset.0,
            local_peer,
            schedule,
        )?))
    } else {
        None
    };
    let (metrics, mut registry) = Metrics::new();
    let (tx, mut commands) = mpsc::channel(1024);
    let messaging = if config.messaging.enabled {
        let offset = config.messaging.clock_offset.0.as_millis() as u64;
        let mailbox = MailboxHolder::open(dir, config.messaging.mailbox_limits())
            .map_err(|e| NodeError::Config(e.to_string()))?
            .with_expiry_offset(offset);
        let stats = MessagingStats::default();
        stats.register(&mut registry);
        let net = MsgNet { commands: tx.clone(), local: local_peer };
        let records = Arc::new(std::sync::Mutex::new(RecordStore::new()));
        Some(MessageRelay::new(net, config.messaging.clone(), Arc::new(mailbox), records, stats))
    } else {
        None
    };
    let storage_net = holder.as_ref().map(|holder| StorageNet {
        commands: tx.clone(),
        local: local_peer,
        holder: holder.clone(),
    });
    let relay = storage_net.clone().map(|net| Arc::new(Relay::new(net)));
    let repair = storage_net
        .filter(|_| config.repair.enabled)
        .map(|net| RepairService::new(net, config.repair.clone(), metrics.clone()));
    let (store_answers, mut store_answers_rx) = mpsc::channel::<StoreAnswer>(64);
    let (msg_answers, mut msg_answers_rx) = mpsc::channel::<MsgAnswer>(1024);
    let handle = NodeHandle {
        commands: tx,
        registry: Arc::new(registry),
        storage: holder.clone(),
        repair: repair.clone(),
        messaging: messaging.clone(),
    };
    tokio::spawn(crate::api::serve(api_listener, handle));

    let (_, capabilities) = local_offer(&config);
    let now = Instant::now();
    let mut node = Node {
        swarm,
        local_peer,
        local_node_id: identity::node_id(&local_peer),
        capabilities,
        api_addr,
        started: now,
        peers: PeerTable::default(),
        metrics,
        pex_out: RequestLimiter::new(config.pex.min_request_interval.0),
        pex_in: RequestLimiter::new(config.pex.min_request_interval.0),
        last_pex_round: now,
        last_bootstrap_dial: None,
        dead_closing: HashSet::new(),
        holder,
        relay,
        repair: repair.clone(),
        store_requests: HashMap::new(),
        store_answers,
        messaging,
        msg_requests: HashMap::new(),
        msg_answers,
        msg_flows: HashMap::new(),
        banned_closing: Vec::new(),
        msg_gate: zmesh_core::priority::PriorityGate::new(msg::MAX_RUNNING, msg::MAX_WAITING),
        last_gc: now,
        last_msg_gc: now,
        lookups: HashMap::new(),
        lookup_requests: HashMap::new(),
        next_lookup_id: 0,
        routing_seeded: false,
        config,
    };
    node.wait_for_listeners().await?;
    node.write_runtime_file(dir)?;
    tracing::info!(
        peer_id = %node.local_peer,
        node_id = %node.local_node_id,
        api = %node.api_addr,
        "node started"
    );
    node.dial_bootstrap();
    if let Some(repair) = &repair {
        repair.start();
    }

    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            event = node.swarm.select_next_some() => node.on_swarm_event(event),
            Some(command) = commands.recv() => node.on_command(command),
            Some((channel, answer)) = store_answers_rx.recv() => node.answer_store(channel, answer),
            Some((connection, channel, answer)) = msg_answers_rx.recv() => {
                node.answer_msg(connection, channel, answer)
            }
            _ = tick.tick() => node.on_tick(),
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: closing {} connections", node.swarm.network_info().num_peers());
    let _ = std::fs::remove_file(dir.join(RUNTIME_FILE));
    Ok(())
}

impl Node {
    /// Waits until every configured listener reports its address (ports may be 0).
    async fn wait_for_listeners(&mut self) -> Result<(), NodeError> {
        let wanted = self.config.network.listen.len();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while self.swarm.listeners().count() < wanted || self.listen_addrs().len() < wanted {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = &mut deadline => {
                    return Err(NodeError::Network(format!(
                        "listeners did not come up within 10 s (have {:?})", self.listen_addrs()
                    )));
                }
            }
        }
        Ok(())
    }

    fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.swarm.listeners().cloned().collect()
    }

    fn full_addrs(&self) -> Vec<String> {
        self.listen_addrs()
            .into_iter()
            .map(|a| a.with(Protocol::P2p(self.local_peer)).to_string())
            .collect()
    }

    fn write_runtime_file(&self, dir: &Path) -> Result<(), NodeError> {
        let info = RuntimeInfo {
            peer_id: self.local_peer.to_string(),
            node_id: self.local_node_id,
            multiaddrs: self.full_addrs(),
            api: self.api_addr.to_string(),
            dir: dir.to_path_buf(),
            pid: std::process::id(),
        };
        let json =
            serde_json::to_vec_pretty(&info).map_err(|e| NodeError::Config(e.to_string()))?;
        crate::fsutil::write_atomic(&dir.join(RUNTIME_FILE), &json)
    }

    fn dial_bootstrap(&mut self) {
        self.last_bootstrap_dial = Some(Instant::now());
        for addr in self.config.network.bootstrap.clone() {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else { continue };
            if peer == self.local_peer || self.swarm.is_connected(&peer) {
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!("dialling bootstrap peer {addr}: {e}");
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.close_banned(now);
        let active = self.peers.active_count();
        if active == 0
            && !self.config.network.bootstrap.is_empty()
            && self
                .last_bootstrap_dial
                .is_none_or(|t| now - t >= self.config.network.bootstrap_retry.0)
        {
            tracing::debug!("no active peers; dialling the bootstrap peers again");
            self.dial_bootstrap();
        }
        if now - self.last_pex_round >= self.config.pex.interval.0 {
            self.last_pex_round = now;
            let peers: Vec<PeerId> = self.peers.active().map(|(p, _)| *p).collect();
            for peer in peers {
                self.request_pex(peer);
            }
            self.pex_in.prune(now);
            self.pex_out.prune(now);
        }
        self.expire_probes(now);
        if now - self.last_gc >= self.config.storage.gc_interval.0 {
            self.last_gc = now;
            self.collect_garbage();
        }
        if now - self.last_msg_gc >= self.config.messaging.gc_interval.0 {
            self.last_msg_gc = now;
            self.collect_message_garbage();
        }
        self.update_gauges();
    }

    /// A probe dial may hang (a QUIC dial to a dead host waits for its own timeout); a peer not
    /// back within keep-alive's budget (`pong_timeout × max_missed`) is dead.
    fn expire_probes(&mut self, now: Instant) {
        let budget = self.config.keepalive.pong_timeout.0 * self.config.keepalive.max_missed;
        let expired: Vec<(PeerId, String)> = self
            .peers
            .probing
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) >= budget)
            .map(|(p, (cause, _))| (*p, cause.clone()))
            .collect();
        for (peer, cause) in expired {
            self.declare_dead(
                peer,
                format!("disconnected ({cause}) and not reachable within {budget:?}"),
            );
        }
    }

    fn routing_table(&mut self) -> Vec<(PeerId, NodeId, Vec<Multiaddr>)> {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else { return Vec::new() };
        let mut out = Vec::new();
        for bucket in kad.kbuckets() {
            for entry in bucket.iter() {
                let key = entry.node.key;
                let mut id = [0u8; 32];
                id.copy_from_slice(key.hashed_bytes());
                out.push((*key.preimage(), Key256(id), entry.node.value.iter().cloned().collect()));
            }
        }
        out
    }

    fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .as_mut()
            .map(|k| k.kbuckets().map(|b| b.num_entries()).sum())
            .unwrap_or(0)
    }

    fn update_gauges(&mut self) {
        let malformed = crate::framing::malformed_requests();
        self.metrics.malformed.inc_by(malformed.saturating_sub(self.metrics.malformed.get()));
        let size = self.routing_table_size();
        let limits = &self.swarm.behaviour().limits;
        self.metrics.connections.set(limits.established().into());
        self.metrics.connections_pending.set(limits.pending().into());
        self.metrics.peers_active.set(self.peers.active_count() as i64);
        self.metrics.routing_table_size.set(size as i64);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peers_report());
            }
            Command::Closest(key, reply) => {
                self.start_lookup(key, zmesh_types::constants::DHT_K, LookupReply::Report(reply))
            }
            Command::ClosestPeers(key, count, reply) => {
                self.start_lookup(key, count, LookupReply::Peers(reply))
            }
            Command::StoreRequest { peer, addrs, message, reply } => {
                self.send_store_request(peer, addrs, *message, reply)
            }
            Command::MsgRequest { peer, addrs, message, reply } => {
                self.send_msg_request(peer, addrs, *message, reply)
            }
        }
    }

    fn status(&mut self) -> StatusReport {
        StatusReport {
            name: self.config.node.name.clone(),
            peer_id: self.local_peer.to_string(),
            node_id: self.local_node_id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol_versions: self
                .config
                .network
                .protocol_versions
                .iter()
                .map(|v| v.to_string())
                .collect(),
            capabilities: self.capabilities.bits(),
            capability_names: names(self.capabilities),
            listen_addrs: self.full_addrs(),
            api: self.api_addr.to_string(),
            peer_count: self.peers.active_count(),
            connections: self.swarm.behaviour().limits.established(),
            routing_table_size: self.routing_table_size(),
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }

    fn peers_report(&self) -> PeersReport {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut peers: Vec<PeerReport> = self
            .peers
            .active()
            .map(|(peer, info)| {
                let negotiated = info.negotiated();
                PeerReport {
                    peer_id: peer.to_string(),
                    node_id: info.node_id,
                    source: info.source,
                    addrs: info.dialable_addrs().iter().map(|a| a.to_string()).collect(),
                    connections: info.connections.len(),
                    version: negotiated.map(|n| n.version.to_string()),
                    capabilities: info.capabilities().bits(),
                    capability_names: names(info.capabilities()),
                    rtt_ms: info.smoothed_rtt().map(ms),
                    network_rtt_ms: info.last_rtt().map(|s| ms(s.network_rtt)),
                    quality: info
                        .smoothed_rtt()
                        .map(|r| zmesh_core::keepalive::Quality::from_rtt(r).as_str().to_string()),
                    connected_secs: info.connected_since.elapsed().as_secs(),
                    pex_private: negotiated.is_some_and(|n| n.remote_feature(FEATURE_PEX_PRIVATE)),
                }
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        PeersReport { peers, dead: self.peers.recently_dead().cloned().collect() }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!("listening on {}", address.with(Protocol::P2p(self.local_peer)));
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                let inbound = endpoint.is_listener();
                let remote = endpoint.get_remote_address().clone();
                tracing::debug!(%peer_id, %remote, inbound, "connection established");
                if self.peers.probing.remove(&peer_id).is_some() {
                    tracing::info!(%peer_id, "peer reachable again after its connection dropped");
                }
                let is_bootstrap = self
                    .config
                    .network
                    .bootstrap
                    .iter()
                    .any(|a| matches!(a.iter().last(), Some(Protocol::P2p(p)) if p == peer_id));
                self.peers.connection_opened(
                    peer_id,
                    connection_id,
                    remote,
                    inbound,
                    Instant::now(),
                );
                if is_bootstrap && let Some(info) = self.peers.get_mut(&peer_id) {
                    info.source = crate::peers::PeerSource::Bootstrap;
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id, connection_id, cause, num_established, ..
            } => {
                self.forget_msg_connection(connection_id);
                if num_established == 0
                    && let Some(relay) = &self.messaging
                {
                    relay.peer_gone(&peer_id);
                }
                let Some(info) = self.peers.connection_closed(&peer_id, connection_id) else {
                    return;
                };
                if self.dead_closing.remove(&peer_id) || !info.is_active() {
                    return;
                }
                if !info.capabilities().contains(Capabilities::DHT) {
                    // A client (it offers no mesh service): it comes back when it wants to.
                    tracing::debug!(%peer_id, "client disconnected");
                    return;
                }
                // The last connection dropped: one dial tells a peer that went away from one
                // whose connection merely broke.
                let cause = cause.map(|c| c.to_string()).unwrap_or_else(|| "closed".into());
                tracing::info!(%peer_id, "last connection closed ({cause}); checking whether the peer is alive");
                let opts = DialOpts::peer_id(peer_id)
                    .addresses(info.dialable_addrs())
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.peers.probing.insert(peer_id, (cause, Instant::now()));
                    }
                    Err(e) => self.declare_dead(
                        peer_id,
                        format!("disconnected ({cause}); cannot redial: {e}"),
                    ),
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                if let Some((cause, _)) = self.peers.probing.remove(&peer) {
                    self.declare_dead(
                        peer,
                        format!("disconnected ({cause}) and unreachable: {error}"),
                    );
                }
                if self.peers.pex_candidates.remove(&peer).is_some() {
                    self.metrics.pex_verify_failed.inc();
                    tracing::debug!(%peer, "peer learned through PEX is unreachable: {error}");
                }
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                tracing::debug!("incoming connection from {send_back_addr} failed: {error}");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Limits(hit) => self.on_limit_hit(hit),
            BehaviourEvent::Control(report) => self.on_control(report),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| !is_unspecified(a))
                    .take(zmesh_wire::MAX_ADDRS)
                    .collect();
                if let Some(peer) = self.peers.get_mut(&peer_id) {
                    peer.listen_addrs = addrs;
                }
                self.maybe_add_to_routing(peer_id);
            }
            BehaviourEvent::Identify(_) => {}
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, is_new_peer: true, .. }) => {
                tracing::debug!(%peer, "added to the routing table");
            }
            BehaviourEvent::Kad(_) => {}
            BehaviourEvent::Pex(event) => self.on_pex_event(event),
            BehaviourEvent::Dht(event) => self.on_dht_event(event),
            BehaviourEvent::Store(event) => self.on_store_event(event),
            BehaviourEvent::Msg(event) => self.on_msg_event(event),
        }
    }

    fn on_limit_hit(&mut self, hit: LimitHit) {
        self.metrics.connections_denied.get_or_create(&label("limit", hit.limit.kind())).inc();
        let who = match (&hit.peer, &hit.remote) {
            (Some(p), Some(r)) => format!("{p} at {r}"),
            (Some(p), None) => p.to_string(),
            (None, Some(r)) => r.to_string(),
            (None, None) => "a peer".into(),
        };
        tracing::warn!("refused connection with {who}: {}", hit.limit);
    }

    fn on_control(&mut self, ControlReport { peer, connection, event }: ControlReport) {
        let now = Instant::now();
        match event {
            ControlEvent::Negotiated(negotiated) => {
                self.metrics.handshakes.get_or_create(&label("result", "ok")).inc();
                let was_active = self.peers.get(&peer).is_some_and(|p| p.is_active());
                let (version, caps) = (negotiated.version, negotiated.capabilities);
                if let Some(conn) = self.peers.connection_mut(&peer, connection) {
                    conn.negotiated = Some(negotiated);
                }
                if let Some(info) = self.peers.get_mut(&peer) {
                    info.last_seen = now;
                }
                if !was_active {
                    tracing::info!(%peer, %version, capabilities = ?caps.names(), "peer active");
                    if self.peers.pex_candidates.remove(&peer).is_some() {
                        self.metrics.pex_peers_learned.inc();
                        tracing::info!(%peer, "verified a peer learned through PEX");
                    }
                }
                self.maybe_add_to_routing(peer);
                self.request_pex(peer);
            }
            ControlEvent::HandshakeFailed(reason) => {
                self.metrics.handshakes.get_or_create(&label("result", "failed")).inc();
                tracing::warn!(%peer, "handshake failed, closing the connection: {reason}");
                if self.peers.pex_candidates.remove(&peer).is_some() {
                    self.metrics.pex_verify_failed.inc();
                }
            }
            ControlEvent::Rtt { sample, smoothed, quality } => {
                self.metrics.peer_rtt_seconds.observe(sample.rtt.as_secs_f64());
                if let Some(info) = self.peers.get_mut(&peer) {
                    info.last_seen = now;
                }
                if let Some(conn) = self.peers.connection_mut(&peer, connection) {
                    conn.last_rtt = Some(sample);
                    conn.smoothed_rtt = Some(smoothed);
                    conn.quality = Some(quality);
                }
            }
            ControlEvent::Dead { missed } => {
                self.declare_dead(peer, format!("{missed} PINGs in a row went unanswered"));
            }
            ControlEvent::Broken(reason) => {
                tracing::info!(%peer, "control stream failed, closing the connection: {reason}");
            }
            ControlEvent::FlowControl(flow) => {
                tracing::debug!(%peer, ?flow, "peer asked to slow down");
            }
            ControlEvent::WindowUpdate(consumed) => {
                tracing::trace!(%peer, consumed, "window update");
            }
        }
    }

    /// Whether `peer` completed the zmesh handshake. Requests from a peer that has not are
    /// dropped unanswered (the stream closes): before the handshake nothing is answered at all,
    /// so no answer can be larger than its request (no amplification).
    fn handshaken(&mut self, peer: &PeerId, protocol: &'static str) -> bool {
        if self.peers.get(peer).is_some_and(|p| p.is_active()) {
            return true;
        }
        self.metrics.early_requests.get_or_create(&label("protocol", protocol)).inc();
        tracing::debug!(%peer, protocol, "request before the handshake; dropped");
        false
    }

    /// An inbound request that failed after it was read (a malformed one never gets this far:
    /// the codec logs and counts it, see [`crate::framing::malformed_requests`]).
    fn on_inbound_failure(
        &mut self,
        protocol: &'static str,
        peer: PeerId,
        error: &request_response::InboundFailure,
    ) {
        tracing::debug!(%peer, protocol, "request from peer failed: {error}");
    }

    /// A peer this node declared dead and has not reconnected with: requests to it fail at once
    /// rather than waiting out a dial (other nodes' routing tables still name it for a while).
    fn presumed_unreachable(&self, peer: &PeerId) -> bool {
        !self.swarm.is_connected(peer) && self.peers.is_presumed_dead(peer)
    }

    /// Drops a peer: out of the routing table and the active list, all connections closed.
    fn declare_dead(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, "peer is dead: {reason}");
        let kind = if reason.contains("PING") { "keepalive" } else { "unreachable" };
        self.metrics.peers_dead.get_or_create(&label("reason", kind)).inc();
        self.peers.mark_dead(&peer, reason);
        self.peers.probing.remove(&peer);
        if let Some(repair) = &self.repair {
            repair.peer_lost(peer);
        }
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            kad.remove_peer(&peer);
        }
        if self.swarm.is_connected(&peer) {
            self.dead_closing.insert(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Puts a peer in the routing table once it is handshaken, speaks the DHT and told us
    /// where it listens.
    fn maybe_add_to_routing(&mut self, peer: PeerId) {
        let Some(info) = self.peers.get(&peer) else { return };
        if !info.is_active()
            || !info.capabilities().contains(Capabilities::DHT)
            || info.listen_addrs.is_empty()
        {
            return;
        }
        let addrs = info.listen_addrs.clone();
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else { return };
        for addr in addrs {
            kad.add_address(&peer, addr);
        }
        if !self.routing_seeded {
            // First peer in the table: fill the buckets now instead of at the next refresh.
            self.routing_seeded = true;
            if let Err(e) = kad.bootstrap() {
                tracing::debug!("bootstrap: {e}");
            }
        }
    }
}

fn names(caps: Capabilities) -> Vec<String> {
    caps.names().into_iter().map(str::to_owned).collect()
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
