//! Messaging on the node task: `/zmesh/msg/1.0` requests in and out. Who asks decides who
//! answers: requests from mesh nodes (peers that completed the handshake offering the DHT) to
//! a record or mailbox holder go to this node's stores; client requests go to the relay, on
//! their own tasks, since they wait for other nodes. Answers come back through a channel, as
//! the event loop owns the response channels.

use libp2p::request_response::{self, Message, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use zmesh_types::Capabilities;
use zmesh_wire::msg::{MsgMessage, MsgStatus};

use super::Node;
use crate::messaging::answer;

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

    pub(super) fn answer_msg(&mut self, channel: ResponseChannel<MsgMessage>, answer: MsgMessage) {
        if let Some(msg) = self.swarm.behaviour_mut().msg.as_mut() {
            let _ = msg.send_response(channel, answer);
        }
    }

    pub(super) fn on_msg_event(&mut self, event: request_response::Event<MsgMessage, MsgMessage>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request { request, channel, .. } => self.serve_msg(peer, request, channel),
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
                tracing::debug!(%peer, "messaging request from peer failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_msg(
        &mut self,
        peer: PeerId,
        request: MsgMessage,
        channel: ResponseChannel<MsgMessage>,
    ) {
        let Some(relay) = self.messaging.clone() else { return };
        let from_node = self.is_mesh_node(&peer);
        let answers = self.msg_answers.clone();
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
        if !from_node
            && matches!(request, MsgMessage::MailboxAppend { .. } | MsgMessage::MailboxIds { .. })
        {
            let refusal = answer(
                MsgStatus::Unauthorized,
                "only mesh nodes write to mailboxes; send with Send",
            );
            self.answer_msg(channel, refusal);
            return;
        }
        tokio::spawn(async move {
            let answer = if as_holder {
                relay.answer_as_holder(peer, request).await
            } else {
                relay.handle_client(peer, request).await
            };
            let _ = answers.send((channel, answer)).await;
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
