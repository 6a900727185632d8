//! Following: serving live deliveries, with the mailbox re-synced and presence refreshed on
//! timers, and coming back after the relay is lost.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::{DEFAULT_RESYNC, Inbox, Mailer, PRESENCE_REFRESH, Rejoined, Tally};
use crate::reconnect::{Dial, Link, Reconnecting, Subscription};
use crate::relay::{Deliveries, MsgRelay};
use crate::{ClientError, ErrorKind, Result};

/// Timers of [`Mailer::follow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowOptions {
    /// How often the mailbox is synced again ([`DEFAULT_RESYNC`]).
    pub resync: Duration,
    /// How often the presence record is published again ([`PRESENCE_REFRESH`]).
    pub presence_refresh: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions { resync: DEFAULT_RESYNC, presence_refresh: PRESENCE_REFRESH }
    }
}

/// Failures a later attempt may get past: the relay refused or answered oddly once, or one
/// request timed out. A lost connection shows as the end of the deliveries instead.
fn recoverable(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::MsgRefused { .. }
            | ClientError::UnexpectedResponse { .. }
            | ClientError::Transport(_)
    )
}

impl<R: MsgRelay> Mailer<R> {
    /// Hands live deliveries to `inbox` until `shutdown` completes, syncing the mailbox every
    /// `options.resync` and publishing presence every `options.presence_refresh`. Log in,
    /// publish and sync once before (the first timers fire one period in). Deliveries still
    /// queued at shutdown are refused, so the relay keeps them in the mailbox.
    ///
    /// # Errors
    /// [`ClientError::Transport`] when the connection ends; what `inbox` or the messaging state
    /// returned. Refusals by the relay are passed to [`Inbox::warning`] and retried on the next
    /// tick.
    pub async fn follow(
        &mut self,
        deliveries: &mut Deliveries,
        inbox: &mut impl Inbox,
        options: FollowOptions,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Tally> {
        let mut tally = Tally::default();
        self.follow_into(deliveries, inbox, options, shutdown, &mut tally, false).await?;
        Ok(tally)
    }

    /// [`follow`](Self::follow), counting into `tally` as it goes (so a caller that carries on
    /// after an error keeps the count). With `presence_due`, presence is published at the first
    /// re-sync.
    async fn follow_into(
        &mut self,
        deliveries: &mut Deliveries,
        inbox: &mut impl Inbox,
        options: FollowOptions,
        shutdown: impl Future<Output = ()>,
        tally: &mut Tally,
        mut presence_due: bool,
    ) -> Result<()> {
        let start = Instant::now();
        let mut resync = interval_at(start + options.resync, options.resync);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut presence = interval_at(start + options.presence_refresh, options.presence_refresh);
        presence.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                delivery = deliveries.recv() => match delivery {
                    Some(delivery) => tally.add(self.take_delivery(delivery, inbox)?),
                    None => {
                        return Err(ClientError::Transport(
                            "the connection to the relay was lost".into(),
                        ));
                    }
                },
                _ = resync.tick() => {
                    // A presence record that did not get out is tried again at every re-sync
                    // rather than a whole refresh period later.
                    if presence_due {
                        presence_due = !self.try_presence(inbox).await?;
                    }
                    match self.sync(inbox).await {
                        Ok(report) => tally.add(report.tally),
                        Err(e) if recoverable(&e) => inbox.warning(&e),
                        Err(e) => return Err(e),
                    }
                }
                _ = presence.tick() => presence_due = !self.try_presence(inbox).await?,
            }
        }
    }

    /// Publishes presence; `false` (and a warning) if a later attempt may get it through.
    async fn try_presence(&mut self, inbox: &mut impl Inbox) -> Result<bool> {
        match self.publish_presence().await {
            Ok(()) => Ok(true),
            Err(e) if recoverable(&e) => {
                inbox.warning(&e);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

impl<D: Dial> Mailer<Reconnecting<D>> {
    /// [`follow`](Self::follow)s until `shutdown` completes; when the relay is lost, waits for a
    /// new connection (see [`Reconnecting::reconnect`]; `subscription` is the first
    /// connection's), subscribes to it, resumes the session or logs in again, publishes presence
    /// and syncs (as [`rejoin`](Self::rejoin)), and follows again. Log in, publish and sync once
    /// before, as for `follow`. Each loss and each failure that a later attempt may get past is
    /// passed to [`Inbox::warning`], each return to [`Inbox::reconnected`]. Nothing is handed up
    /// twice across connections.
    ///
    /// A relay that refuses the login, or answers it late, is asked again every
    /// `options.resync`; a presence record or sync it refuses is left to the follow timers.
    ///
    /// # Errors
    /// What `inbox` or the messaging state returned.
    pub async fn follow_reconnecting(
        &mut self,
        mut subscription: Subscription,
        inbox: &mut impl Inbox,
        options: FollowOptions,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Tally> {
        let mut tally = Tally::default();
        let mut presence_due = false;
        tokio::pin!(shutdown);
        loop {
            let followed = self
                .follow_into(
                    &mut subscription.deliveries,
                    inbox,
                    options,
                    shutdown.as_mut(),
                    &mut tally,
                    presence_due,
                )
                .await;
            match followed {
                Ok(()) => return Ok(tally),
                Err(e) if e.kind() == ErrorKind::Network => inbox.warning(&e),
                Err(e) => return Err(e),
            }
            let back = tokio::select! {
                biased;
                () = shutdown.as_mut() => return Ok(tally),
                back = async {
                    let how = self.take_up(&mut subscription, inbox, options).await?;
                    // The session is back; what is left may fail, and the follow timers retry it.
                    let due = how == Rejoined::LoggedIn && !self.try_presence(inbox).await?;
                    let synced = match self.sync(inbox).await {
                        Ok(report) => report.tally,
                        Err(e) if recoverable(&e) => {
                            inbox.warning(&e);
                            Tally::default()
                        }
                        Err(e) => return Err(e),
                    };
                    Ok((how, due, synced))
                } => back?,
            };
            let (how, due, synced) = back;
            presence_due = due;
            tally.add(synced);
            inbox.reconnected(&self.relay().addr(), how);
        }
    }

    /// Replaces the lost connection of `subscription` and takes the session up on the new one:
    /// resumed, or a fresh login. Retries until it works: a relay that refuses, or answers
    /// late, is asked again every `options.resync`.
    async fn take_up(
        &mut self,
        subscription: &mut Subscription,
        inbox: &mut impl Inbox,
        options: FollowOptions,
    ) -> Result<Rejoined> {
        let mut replace = true;
        loop {
            let relay = self.relay().clone();
            let current = relay.generation();
            // Unless another caller replaced it already, or the new one is lost too.
            if (replace && current == subscription.generation) || relay.link().is_lost() {
                relay.reconnect(current).await?;
            }
            replace = false;
            // Subscribed before the login, so no live message is turned away in between.
            *subscription = relay.subscribe().await?;
            match self.resume_or_login().await {
                Ok(how) => return Ok(how),
                Err(e) if recoverable(&e) || e.kind() == ErrorKind::Network => {
                    inbox.warning(&e);
                    if !relay.link().is_lost() {
                        tokio::time::sleep(options.resync).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
