//! Messaging on the node task: `/zmesh/msg/1.0` requests in and out. Who asks decides who
//! answers: requests from mesh nodes (peers that completed the handshake offering the DHT) to
//! a record or mailbox holder go to this node's stores; client requests go to the relay, on
//! their own tasks, since they wait for other nodes. Answers come back through a channel, as
//! the event loop owns the response channels.
//!
//! Every connection has a window of unanswered requests and token buckets per kind of request
//! (`[rate_limits]`; users' connections and other nodes' have their own limits). A request
//! beyond either is answered THROTTLED with a retry-after and never runs; a peer that keeps
//! sending before its retry-after is disconnected and banned. Half a window of answers sends a
//! WINDOW_UPDATE on the connection's control stream. Admitted requests then wait their turn
//! by priority (key exchange before messages before background) when the node is busy.

use std::time::{Duration, Instant};

use futures::FutureExt;
use libp2p::request_response::{self, Message, ResponseChannel};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use zmesh_core::flow::{FlowReason, FlowSignal, InboundWindow};
use zmesh_core::priority::{Admission, Priority};
use zmesh_core::ratelimit::{ConnectionLimiter, TrafficClass, Verdict};
use zmesh_types::Capabilities;
use zmesh_wire::msg::{MsgMessage, MsgStatus, RecordKind};

use super::Node;
use crate::messaging::answer;
use crate::metrics::label;

/// How long a sender over its window is asked to wait: about one round of answers.
const WINDOW_RETRY: Duration = Duration::from_millis(100);
/// How long a banned peer's connections stay open after the ban, so the THROTTLED answers
/// saying why reach it before the connection closes.
pub(super) const BAN_GRACE: Duration = Duration::from_millis(500);

/// Requests served at once; more wait by priority (see [`zmesh_core::priority`]).
pub(super) const MAX_RUNNING: usize = 1024;
/// Requests waiting at most; beyond, THROTTLED with SYSTEM_LOAD.
pub(super) const MAX_WAITING: usize = 16_384;

/// A request admitted by its connection, waiting for its turn or running.
#[derive(Debug)]
pub(super) struct MsgJob {
    peer: PeerId,
    connection: ConnectionId,
    from_node: bool,
    request: MsgMessage,
    channel: ResponseChannel<MsgMessage>,
}

/// One connection's messaging limits.
#[derive(Debug)]
pub(super) struct ConnectionFlow {
    peer: PeerId,
    limiter: ConnectionLimiter,
    window: InboundWindow,
}

/// What kind of traffic a request is, for its rate limit.
fn traffic_class(request: &MsgMessage) -> TrafficClass {
    match request {
        MsgMessage::PublishRecord { record } if record.kind == RecordKind::Bundle => {
            TrafficClass::KeyRequest
        }
        MsgMessage::FetchRecord { kind: RecordKind::Bundle, .. } => TrafficClass::KeyRequest,
        MsgMessage::PublishRecord { .. }
        | MsgMessage::FetchRecord { .. }
        | MsgMessage::Login { .. }
        | MsgMessage::Resume { .. } => TrafficClass::Presence,
        _ => TrafficClass::Message,
    }
}

impl Node {
    /// A peer that completed the handshake as a mesh node, not a client.
    fn is_mesh_node(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.is_active() && p.capabilities().contains(Capabilities::DHT))
    }

    pub(super) fn send_msg_request(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: MsgMessage,
        reply: oneshot::Sender<Result<MsgMessage, String>>,
    ) {
        if self.presumed_unreachable(&peer) {
            let _ = reply.send(Err(format!("peer {peer} was declared dead")));
            return;
        }
        let Some(msg) = self.swarm.behaviour_mut().msg.as_mut() else {
            let _ = reply.send(Err("messaging is disabled on this node".into()));
            return;
        };
        let id = msg.send_request_with_addresses(&peer, message, addrs);
        self.msg_requests.insert(id, reply);
    }

    /// The answer of a request that ran: it goes out, and the next waiting request runs.
    pub(super) fn answer_msg(
        &mut self,
        connection: ConnectionId,
        channel: ResponseChannel<MsgMessage>,
        answer: MsgMessage,
    ) {
        self.respond_admitted(connection, channel, answer);
        if let Some((_, job)) = self.msg_gate.finish() {
            self.run_msg(job);
        }
    }

    /// Answers a request admitted to its connection's window, and counts it consumed.
    fn respond_admitted(
        &mut self,
        connection: ConnectionId,
        channel: ResponseChannel<MsgMessage>,
        answer: MsgMessage,
    ) {
        if let Some(msg) = self.swarm.behaviour_mut().msg.as_mut() {
            let _ = msg.send_response(channel, answer);
        }
        let Some(flow) = self.msg_flows.get_mut(&connection) else { return };
        if let Some(consumed) = flow.window.on_consumed(1) {
            let peer = flow.peer;
            self.swarm.behaviour_mut().control.send_window_update(peer, connection, consumed);
        }
    }

    /// Answers a request that was never admitted (it does not count against the window).
    fn refuse_msg(&mut self, channel: ResponseChannel<MsgMessage>, answer: MsgMessage) {
        if let Some(msg) = self.swarm.behaviour_mut().msg.as_mut() {
            let _ = msg.send_response(channel, answer);
        }
    }

    /// Checks one request against its connection's rate limits and window. `Err` carries the
    /// signal for the THROTTLED answer; a peer that keeps ignoring retry-afters is disconnected and banned.
    fn admit_msg(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        from_node: bool,
        request: &MsgMessage,
    ) -> Result<(), FlowSignal> {
        let limits = &self.config.rate_limits;
        if !limits.enabled {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(left) = self.swarm.behaviour().limits.banned(&peer) {
            // Banned, and about to be disconnected: refuse without counting anything.
            return Err(FlowSignal {
                window: limits.window,
                consumed: 0,
                reason: FlowReason::RateLimit,
                retry_after: left,
            });
        }
        let flow = self.msg_flows.entry(connection).or_insert_with(|| {
            let config = if from_node { limits.node() } else { limits.client() };
            let mut window = InboundWindow::new();
            window.set_window(limits.window, FlowReason::SystemLoad, Duration::ZERO);
            ConnectionFlow { peer, limiter: ConnectionLimiter::new(config, now), window }
        });
        let class = traffic_class(request);
        let signal = match flow.limiter.check(class, now) {
            Verdict::Allow => match flow.window.on_message(WINDOW_RETRY) {
                Ok(()) => return Ok(()),
                Err(signal) => {
                    self.metrics.throttled.get_or_create(&label("reason", "buffer_full")).inc();
                    tracing::debug!(%peer, window = signal.window, "window overrun");
                    signal
                }
            },
            Verdict::Limited { retry_after } => {
                self.metrics.throttled.get_or_create(&label("reason", "rate_limit")).inc();
                tracing::debug!(%peer, class = class.name(), ?retry_after, "rate limited");
                flow.window.signal(FlowReason::RateLimit, retry_after)
            }
            Verdict::Disconnect { ban } => {
                self.metrics.peers_banned.inc();
                tracing::warn!(
                    %peer,
                    class = class.name(),
                    "peer kept ignoring its rate limit; disconnecting and banning it for {ban:?}"
                );
                let signal = flow.window.signal(FlowReason::RateLimit, ban);
                self.swarm.behaviour_mut().limits.ban(peer, ban);
                self.banned_closing.push((peer, now + BAN_GRACE));
                return Err(signal);
            }
        };
        self.swarm.behaviour_mut().control.send_flow(peer, connection, signal.to_wire());
        Err(signal)
    }

    /// Closes the connections of peers banned at least [`BAN_GRACE`] ago.
    pub(super) fn close_banned(&mut self, now: Instant) {
        let due: Vec<PeerId> =
            self.banned_closing.iter().filter(|(_, at)| *at <= now).map(|(p, _)| *p).collect();
        self.banned_closing.retain(|(_, at)| *at > now);
        for peer in due {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// A connection closed: its limits go with it.
    pub(super) fn forget_msg_connection(&mut self, connection: ConnectionId) {
        self.msg_flows.remove(&connection);
    }

    pub(super) fn on_msg_event(&mut self, event: request_response::Event<MsgMessage, MsgMessage>) {
        match event {
            request_response::Event::Message { peer, connection_id, message } => match message {
                Message::Request { .. } if !self.handshaken(&peer, "msg") => {}
                Message::Request { request, channel, .. } => {
                    self.serve_msg(peer, connection_id, request, channel)
                }
                Message::Response { request_id, response } => {
                    if let Some(reply) = self.msg_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(%peer, "messaging request failed: {error}");
                if let Some(reply) = self.msg_requests.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.on_inbound_failure("msg", peer, &error);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_msg(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        request: MsgMessage,
        channel: ResponseChannel<MsgMessage>,
    ) {
        if self.messaging.is_none() {
            return;
        }
        let from_node = self.is_mesh_node(&peer);
        if let Err(signal) = self.admit_msg(peer, connection, from_node, &request) {
            self.refuse_msg(channel, MsgMessage::Throttled { flow: signal.to_wire() });
            return;
        }
        if !from_node
            && matches!(request, MsgMessage::MailboxAppend { .. } | MsgMessage::MailboxIds { .. })
        {
            let refusal = answer(
                MsgStatus::Unauthorized,
                "only mesh nodes write to mailboxes; send with Send",
            );
            self.respond_admitted(connection, channel, refusal);
            return;
        }
        let priority = match traffic_class(&request) {
            TrafficClass::KeyRequest => Priority::KeyExchange,
            TrafficClass::Message => Priority::Message,
            TrafficClass::Presence | TrafficClass::Pex => Priority::Background,
        };
        let job = MsgJob { peer, connection, from_node, request, channel };
        match self.msg_gate.admit(priority, job) {
            Admission::Run(job) => self.run_msg(job),
            Admission::Queued => {}
            Admission::Refused(job) => {
                self.metrics.throttled.get_or_create(&label("reason", "system_load")).inc();
                let signal = FlowSignal {
                    window: self.config.rate_limits.window,
                    consumed: 0,
                    reason: FlowReason::SystemLoad,
                    retry_after: WINDOW_RETRY,
                };
                let refusal = MsgMessage::Throttled { flow: signal.to_wire() };
                self.respond_admitted(job.connection, job.channel, refusal);
            }
        }
    }

    /// Serves one admitted request on its own task; its answer comes back to
    /// [`answer_msg`](Self::answer_msg).
    fn run_msg(&mut self, job: MsgJob) {
        let Some(relay) = self.messaging.clone() else { return };
        let answers = self.msg_answers.clone();
        let MsgJob { peer, connection, from_node, request, channel } = job;
        let as_holder = match &request {
            // Reads and acks carry the owner's signature: whoever passes them on.
            MsgMessage::MailboxRead { .. } | MsgMessage::MailboxAck { .. } => true,
            // Appends and listings are between nodes; records from a node are stored here,
            // from a client they are published to (or fetched from) their holders.
            MsgMessage::MailboxAppend { .. }
            | MsgMessage::MailboxIds { .. }
            | MsgMessage::PublishRecord { .. }
            | MsgMessage::FetchRecord { .. } => from_node,
            _ => false,
        };
        tokio::spawn(async move {
            let work = async {
                if as_holder {
                    relay.answer_as_holder(peer, request).await
                } else {
                    relay.handle_client(peer, request).await
                }
            };
            // Every admitted request must come back, or its window and gate slots stay taken:
            // a handler that panics still gets an answer.
            let result = std::panic::AssertUnwindSafe(work).catch_unwind().await;
            let answer = result.unwrap_or_else(|_| {
                tracing::error!(%peer, "a messaging handler panicked");
                answer(MsgStatus::Internal, "the request failed on this node")
            });
            let _ = answers.send((connection, channel, answer)).await;
        });
    }

    /// Deletes expired offline messages and records, off the event loop.
    pub(super) fn collect_message_garbage(&mut self) {
        let Some(relay) = self.messaging.clone() else { return };
        tokio::task::spawn_blocking(move || match relay.collect_garbage() {
            Ok((messages, records)) if messages + records > 0 => {
                tracing::info!(messages, records, "deleted expired offline messages and records");
            }
            Ok(_) => {}
            Err(e) => tracing::error!("deleting expired offline messages failed: {e}"),
        });
    }
}
