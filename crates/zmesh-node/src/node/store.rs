//! Storage requests on the node: holder requests run on blocking tasks (they touch the disk),
//! relay requests on async tasks (they wait for other nodes); both hand their answer back to the
//! event loop, which owns the response channels.

use libp2p::request_response::{self, Message, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use zmesh_wire::store::{Status, StoreMessage};

use super::Node;

fn op_name(message: &StoreMessage) -> &'static str {
    match message {
        StoreMessage::PutChunk { .. } => "put_chunk",
        StoreMessage::GetChunk { .. } => "get_chunk",
        StoreMessage::DeleteChunk { .. } => "delete_chunk",
        StoreMessage::StoreShard { .. } => "store_shard",
        StoreMessage::FetchShards { .. } => "fetch_shards",
        StoreMessage::DeleteShards { .. } => "delete_shards",
        StoreMessage::Capacity => "capacity",
        StoreMessage::HealthCheck { .. } => "health_check",
        StoreMessage::RepairFetch { .. } => "repair_fetch",
        StoreMessage::RepairStore { .. } => "repair_store",
        _ => "other",
    }
}

fn status_of(answer: &StoreMessage) -> Option<Status> {
    match answer {
        StoreMessage::Result(o)
        | StoreMessage::Chunk { outcome: o, .. }
        | StoreMessage::Shards { outcome: o, .. }
        | StoreMessage::Health { outcome: o, .. } => Some(o.status),
        _ => None,
    }
}

impl Node {
    pub(super) fn send_store_request(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: StoreMessage,
        reply: oneshot::Sender<Result<StoreMessage, String>>,
    ) {
        if self.presumed_unreachable(&peer) {
            let _ = reply.send(Err(format!("peer {peer} was declared dead")));
            return;
        }
        let Some(store) = self.swarm.behaviour_mut().store.as_mut() else {
            let _ = reply.send(Err("storage is disabled on this node".into()));
            return;
        };
        let id = store.send_request_with_addresses(&peer, message, addrs);
        self.store_requests.insert(id, reply);
    }

    pub(super) fn answer_store(
        &mut self,
        channel: ResponseChannel<StoreMessage>,
        answer: StoreMessage,
    ) {
        if let Some(store) = self.swarm.behaviour_mut().store.as_mut() {
            let _ = store.send_response(channel, answer);
        }
    }

    pub(super) fn on_store_event(
        &mut self,
        event: request_response::Event<StoreMessage, StoreMessage>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request { .. } if !self.handshaken(&peer, "store") => {}
                Message::Request { request, channel, .. } => {
                    self.serve_store(peer, request, channel)
                }
                Message::Response { request_id, response } => {
                    if let Some(reply) = self.store_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(%peer, "storage request failed: {error}");
                if let Some(reply) = self.store_requests.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.on_inbound_failure("store", peer, &error);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_store(
        &mut self,
        peer: PeerId,
        request: StoreMessage,
        channel: ResponseChannel<StoreMessage>,
    ) {
        let op = op_name(&request);
        let answers = self.store_answers.clone();
        let requests = self.metrics.storage_requests.clone();
        let finish = move |answer: StoreMessage| {
            let status =
                status_of(&answer).map(|s| format!("{s:?}")).unwrap_or_else(|| "Ok".into());
            requests.get_or_create(&vec![("op", op.to_string()), ("status", status)]).inc();
            answer
        };
        match request {
            StoreMessage::PutChunk { .. }
            | StoreMessage::GetChunk { .. }
            | StoreMessage::DeleteChunk { .. } => {
                let Some(relay) = self.relay.clone() else { return };
                tracing::debug!(%peer, op, "relaying a storage request");
                tokio::spawn(async move {
                    let answer = finish(relay.handle(request).await);
                    let _ = answers.send((channel, answer)).await;
                });
            }
            _ => {
                let Some(holder) = self.holder.clone() else { return };
                tokio::task::spawn_blocking(move || {
                    let answer = finish(holder.handle(&peer, request));
                    let _ = answers.blocking_send((channel, answer));
                });
            }
        }
    }

    /// Deletes expired shards and refreshes the storage gauges, on a blocking task.
    pub(super) fn collect_garbage(&mut self) {
        let Some(holder) = self.holder.clone() else { return };
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            match holder.gc() {
                Ok(report) if report.removed > 0 => {
                    metrics.storage_gc_removed.inc_by(report.removed);
                    tracing::info!(
                        removed = report.removed,
                        bytes = report.bytes_freed,
                        "deleted expired shards"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!("deleting expired shards failed: {e}"),
            }
            if let Ok(usage) = holder.report() {
                metrics.storage_bytes_used.set(usage.bytes_used as i64);
                metrics.storage_shards.set(usage.shards as i64);
            }
        });
    }
}
