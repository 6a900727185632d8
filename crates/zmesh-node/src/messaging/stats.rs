//! What a relay counts about messaging: served at `GET /v1/messaging` and, as `zmesh_msg_*`,
//! at `GET /metrics`. Counts only, never who or to whom.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::Serialize;

#[derive(Debug, Clone, Default)]
pub struct MessagingStats {
    pub logins: Counter,
    /// Sends delivered to a session on this relay.
    pub direct: Counter,
    /// Sends delivered through another relay.
    pub federated: Counter,
    /// Sends stored in an offline mailbox.
    pub queued: Counter,
    /// Sends refused because the recipient's mailbox is full.
    pub quota: Counter,
    /// Sends neither delivered nor stored.
    pub failed: Counter,
    /// Messages other relays forwarded here that a session took.
    pub forwards_delivered: Counter,
    /// Messages handed to clients by mailbox syncs.
    pub synced: Counter,
    pub acks: Counter,
    /// Copies appended to replicas that lacked them, found by reads.
    pub read_repairs: Counter,
    pub records_published: Counter,
}

/// `GET /v1/messaging`.
#[derive(Debug, Clone, Serialize)]
pub struct MessagingReport {
    pub sessions: usize,
    pub records_held: usize,
    pub mailboxes: u64,
    pub mailbox_messages: u64,
    pub mailbox_bytes: u64,
    pub logins: u64,
    pub sent_direct: u64,
    pub sent_federated: u64,
    pub sent_queued: u64,
    pub sent_quota: u64,
    pub sent_failed: u64,
    pub forwards_delivered: u64,
    pub synced: u64,
    pub acks: u64,
    pub read_repairs: u64,
    pub records_published: u64,
}

impl MessagingStats {
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("msg");
        let counters: [(&str, &str, &Counter); 11] = [
            ("logins", "Users logged in at this relay", &self.logins),
            ("sent_direct", "Sends delivered to a session on this relay", &self.direct),
            ("sent_federated", "Sends delivered through another relay", &self.federated),
            ("sent_queued", "Sends stored in an offline mailbox", &self.queued),
            ("sent_quota", "Sends refused: the recipient's mailbox is full", &self.quota),
            ("sent_failed", "Sends neither delivered nor stored", &self.failed),
            (
                "forwards_delivered",
                "Forwarded messages a session here took",
                &self.forwards_delivered,
            ),
            ("synced", "Messages handed to clients by mailbox syncs", &self.synced),
            ("acks", "Mailbox acknowledgements relayed", &self.acks),
            ("read_repairs", "Mailbox copies appended by read repair", &self.read_repairs),
            ("records_published", "Records published for clients", &self.records_published),
        ];
        for (name, help, counter) in counters {
            sub.register(name, help, counter.clone());
        }
    }
}
