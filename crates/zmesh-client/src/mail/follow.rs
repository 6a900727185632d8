//! Following: serving live deliveries, with the mailbox re-synced and presence refreshed on
//! timers.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::{DEFAULT_RESYNC, Inbox, Mailer, PRESENCE_REFRESH, Tally};
use crate::relay::{Deliveries, MsgRelay};
use crate::{ClientError, Result};

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
        let start = Instant::now();
        let mut resync = interval_at(start + options.resync, options.resync);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut presence = interval_at(start + options.presence_refresh, options.presence_refresh);
        presence.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(tally),
                delivery = deliveries.recv() => match delivery {
                    Some(delivery) => tally.add(self.take_delivery(delivery, inbox)?),
                    None => {
                        return Err(ClientError::Transport(
                            "the connection to the relay was lost".into(),
                        ));
                    }
                },
                _ = resync.tick() => match self.sync(inbox).await {
                    Ok(report) => tally.add(report.tally),
                    Err(e) if recoverable(&e) => inbox.warning(&e),
                    Err(e) => return Err(e),
                },
                _ = presence.tick() => match self.publish_presence().await {
                    Ok(()) => {}
                    Err(e) if recoverable(&e) => inbox.warning(&e),
                    Err(e) => return Err(e),
                },
            }
        }
    }
}
