//! Receiving: opening envelopes in order, live deliveries, and the mailbox sync loop.

use zmesh_core::mailbox::SyncSession;
use zmesh_wire::msg::{AuthPurpose, Envelope, MsgMessage, MsgStatus};

use super::{
    Entry, Inbox, Mailer, SyncReport, Tally, Via, expect_ok, refused, to_cursor, to_position,
};
use crate::relay::{Delivery, MsgRelay};
use crate::{ClientError, Result};

/// Errors that belong to one message (it is skipped), as opposed to the device's state (which
/// stops everything, so nothing is acknowledged that was not handled).
fn is_bad_message(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::NotForThisIdentity
            | ClientError::MalformedMessage(_)
            | ClientError::UnknownSession { .. }
            | ClientError::UndecryptableMessage { .. }
    )
}

impl<R: MsgRelay> Mailer<R> {
    /// Opens one envelope the session or delivery has not seen, and hands it up unless it is a
    /// copy of an earlier message.
    fn open_one(
        &mut self,
        envelope: &Envelope,
        via: Via,
        inbox: &mut impl Inbox,
        tally: &mut Tally,
    ) -> Result<()> {
        match self.messenger.decrypt(&envelope.sealed) {
            Ok(message) if message.duplicate => tally.duplicates += 1,
            Ok(message) => {
                inbox.message(&message, via)?;
                tally.messages += 1;
            }
            Err(e) if is_bad_message(&e) => {
                inbox.rejected(&envelope.id, via, &e);
                tally.rejected += 1;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Hands a live delivery's messages to `inbox` in order, then answers the relay with the
    /// last one handled, so the relay acknowledges exactly those in the mailbox.
    ///
    /// # Errors
    /// What `inbox` or the messaging state returned; the relay is then told only about the
    /// messages before the failure (it keeps the rest in the mailbox).
    pub fn take_delivery(&mut self, delivery: Delivery, inbox: &mut impl Inbox) -> Result<Tally> {
        let mut tally = Tally::default();
        let mut taken = None;
        let mut count: u16 = 0;
        let mut failure = None;
        for envelope in &delivery.messages {
            if self.seen.insert(envelope.id) {
                if let Err(e) = self.open_one(envelope, Via::Live, inbox, &mut tally) {
                    failure = Some(e);
                    break;
                }
            } else {
                tally.duplicates += 1;
            }
            taken = Some(envelope.cursor());
            count = count.saturating_add(1);
        }
        delivery.answer(taken, count);
        match failure {
            Some(e) => Err(e),
            None => Ok(tally),
        }
    }

    /// Reads the whole mailbox in order and hands every message not seen before to `inbox`,
    /// acknowledging each batch once `inbox` has taken it (acknowledged messages are deleted).
    ///
    /// # Errors
    /// [`ClientError::MsgRefused`] (a refused read or ack), what `inbox` or the messaging state
    /// returned, transport errors. Batches handled before the error stay acknowledged.
    pub async fn sync(&mut self, inbox: &mut impl Inbox) -> Result<SyncReport> {
        // Each sync starts at the head of what is left: acknowledged messages are gone, so this
        // costs little, and it catches a message stored behind the last cursor while the
        // previous sync ran. Copies of what was read already are dropped by id.
        let mut session = SyncSession::with_seen(None, std::mem::take(&mut self.seen));
        let result = self.sync_session(&mut session, inbox).await;
        self.seen = session.into_seen();
        result
    }

    async fn sync_session(
        &mut self,
        session: &mut SyncSession,
        inbox: &mut impl Inbox,
    ) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let mailbox = self.mailbox();
        while !session.done() {
            let (after, max_messages) = session.request();
            let auth = self.auth(AuthPurpose::MailboxRead, &mailbox)?;
            let request = MsgMessage::Sync { auth, after: after.map(to_cursor), max_messages };
            let (messages, has_more, next_cursor) = match self.relay.request(request).await? {
                MsgMessage::Batch { messages, has_more, next_cursor } => {
                    (messages, has_more, next_cursor)
                }
                // A mailbox that was never written to is empty.
                MsgMessage::Result { outcome } if outcome.status == MsgStatus::NotFound => {
                    (Vec::new(), false, None)
                }
                MsgMessage::Result { outcome } => return Err(refused("mailbox sync", outcome)),
                _ => return Err(ClientError::UnexpectedResponse { request: "Sync" }),
            };
            report.batches += 1;
            let before = session.cursor();
            let read = messages.len();
            let entries = messages.into_iter().map(Entry).collect();
            let fresh = session.on_batch(entries, has_more, next_cursor.map(to_position));
            // What the session dropped was read before (here, or live).
            report.tally.duplicates += read - fresh.len();
            for Entry(envelope) in &fresh {
                self.open_one(envelope, Via::Mailbox, inbox, &mut report.tally)?;
            }
            if let Some(upto) = session.ack_position().filter(|_| session.cursor() != before) {
                let auth = self.auth(AuthPurpose::MailboxAck, &mailbox)?;
                let answer =
                    self.relay.request(MsgMessage::Ack { auth, upto: to_cursor(upto) }).await?;
                expect_ok("mailbox ack", answer)?;
            }
        }
        report.stalled = session.stalled();
        Ok(report)
    }
}
