//! Message flow control (seed 001, "Backpressure Handling"): a sender keeps at most a window of
//! messages unconsumed at the receiver; the receiver reports what it consumed (WINDOW_UPDATE,
//! once half a window has been consumed since the last one) and can shrink the window, or pause
//! the sender, with FLOW_CONTROL (reason and retry-after).
//!
//! Counts travel as `u32` totals that wrap; both sides keep `u64` totals and reconcile the wire
//! value with serial-number arithmetic, so a long-lived connection never runs out of counts and a
//! late or repeated update never moves anything backwards.

use std::time::{Duration, Instant};

use zmesh_wire::control::{FlowControl, FlowReasonCode};

/// The window a connection starts with.
pub const INITIAL_WINDOW: u32 = 1000;
/// The smallest window a receiver may set: below it, round trips would dominate.
pub const MIN_WINDOW: u32 = 100;
/// The largest window a receiver may set: what it must be ready to buffer.
pub const MAX_WINDOW: u32 = 10_000;
/// The longest a FLOW_CONTROL may pause a sender, and the ceiling of its backoff.
pub const MAX_PAUSE: Duration = Duration::from_secs(30);
/// The first backoff step when a sender is told to wait without a retry-after.
pub const BASE_PAUSE: Duration = Duration::from_millis(100);

/// Why a receiver sent FLOW_CONTROL (its wire codes are 1, 2, 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowReason {
    BufferFull,
    RateLimit,
    SystemLoad,
}

/// A FLOW_CONTROL signal: the window from now on, how many messages the receiver has consumed
/// in total (wrapping), why, and how long the sender should wait before sending more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSignal {
    pub window: u32,
    pub consumed: u32,
    pub reason: FlowReason,
    pub retry_after: Duration,
}

impl FlowSignal {
    /// The signal a FLOW_CONTROL frame carries. An unknown reason is a plain pause.
    pub fn from_wire(frame: &FlowControl) -> FlowSignal {
        let reason = match frame.reason {
            FlowReasonCode::BufferFull => FlowReason::BufferFull,
            FlowReasonCode::RateLimit => FlowReason::RateLimit,
            FlowReasonCode::SystemLoad | FlowReasonCode::Other(_) => FlowReason::SystemLoad,
        };
        FlowSignal {
            window: frame.new_window,
            consumed: frame.consumed,
            reason,
            retry_after: Duration::from_millis(u64::from(frame.retry_after_ms)),
        }
    }

    /// The FLOW_CONTROL frame that carries this signal.
    pub fn to_wire(&self) -> FlowControl {
        let reason = match self.reason {
            FlowReason::BufferFull => FlowReasonCode::BufferFull,
            FlowReason::RateLimit => FlowReasonCode::RateLimit,
            FlowReason::SystemLoad => FlowReasonCode::SystemLoad,
        };
        FlowControl {
            new_window: self.window,
            consumed: self.consumed,
            reason,
            retry_after_ms: u32::try_from(self.retry_after.as_millis()).unwrap_or(u32::MAX),
        }
    }
}

/// Keeps a window within [`MIN_WINDOW`, `MAX_WINDOW`].
pub fn clamp_window(window: u32) -> u32 {
    window.clamp(MIN_WINDOW, MAX_WINDOW)
}

/// The `u64` total that a wrapped `u32` total `wire` stands for, given our own total `local`
/// and the most it can be ahead of it (`ahead`): the sender knows the receiver cannot have
/// consumed more than it sent. Returns `None` for a value that is behind or too far ahead.
fn reconcile(local: u64, wire: u32, ahead: u64) -> Option<u64> {
    let delta = u64::from(wire.wrapping_sub(local as u32));
    (delta <= ahead).then(|| local + delta)
}

/// The receiver's account of one peer's messages.
#[derive(Debug, Clone)]
pub struct InboundWindow {
    window: u32,
    received: u64,
    consumed: u64,
    updated_at: u64,
}

impl Default for InboundWindow {
    fn default() -> Self {
        InboundWindow::new()
    }
}

impl InboundWindow {
    pub fn new() -> Self {
        InboundWindow { window: INITIAL_WINDOW, received: 0, consumed: 0, updated_at: 0 }
    }

    pub fn window(&self) -> u32 {
        self.window
    }

    /// Messages received and not yet consumed.
    pub fn unconsumed(&self) -> u64 {
        self.received - self.consumed
    }

    /// A message arrived. A message beyond the window (the sender ignored it) is refused with
    /// the FLOW_CONTROL to send back; it does not count as received.
    pub fn on_message(&mut self, retry_after: Duration) -> Result<(), FlowSignal> {
        if self.unconsumed() >= u64::from(self.window) {
            return Err(self.signal(FlowReason::BufferFull, retry_after));
        }
        self.received += 1;
        Ok(())
    }

    /// `n` received messages were handled. Returns the consumed total to send as WINDOW_UPDATE
    /// when half a window has been consumed since the last update.
    pub fn on_consumed(&mut self, n: u32) -> Option<u32> {
        self.consumed = (self.consumed + u64::from(n)).min(self.received);
        if self.consumed - self.updated_at >= u64::from(self.window / 2) {
            self.updated_at = self.consumed;
            return Some(self.consumed as u32);
        }
        None
    }

    /// Sets a new window (clamped) and returns the FLOW_CONTROL that tells the sender.
    pub fn set_window(
        &mut self,
        window: u32,
        reason: FlowReason,
        retry_after: Duration,
    ) -> FlowSignal {
        self.window = clamp_window(window);
        self.signal(reason, retry_after)
    }

    /// A FLOW_CONTROL with the current window and consumed total.
    pub fn signal(&mut self, reason: FlowReason, retry_after: Duration) -> FlowSignal {
        self.updated_at = self.consumed;
        FlowSignal {
            window: self.window,
            consumed: self.consumed as u32,
            reason,
            retry_after: retry_after.min(MAX_PAUSE),
        }
    }
}

/// The sender's side: what may go out now.
#[derive(Debug, Clone)]
pub struct OutboundWindow {
    window: u32,
    sent: u64,
    consumed: u64,
    paused_until: Option<Instant>,
    /// FLOW_CONTROL signals in a row without progress in between: the backoff exponent.
    strikes: u32,
}

impl Default for OutboundWindow {
    fn default() -> Self {
        OutboundWindow::new()
    }
}

impl OutboundWindow {
    pub fn new() -> Self {
        OutboundWindow {
            window: INITIAL_WINDOW,
            sent: 0,
            consumed: 0,
            paused_until: None,
            strikes: 0,
        }
    }

    pub fn window(&self) -> u32 {
        self.window
    }

    /// Messages sent and not yet reported consumed.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.consumed
    }

    /// Whether a message may be sent at `now`.
    pub fn can_send(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|t| now >= t) && self.in_flight() < u64::from(self.window)
    }

    /// When a paused sender may send again (`None` when not paused).
    pub fn resume_at(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|t| *t > now)
    }

    pub fn on_sent(&mut self) {
        self.sent += 1;
    }

    /// A message the receiver refused (it will be sent again): it no longer counts as in
    /// flight.
    pub fn on_refused(&mut self) {
        self.sent = self.sent.saturating_sub(1).max(self.consumed);
    }

    /// WINDOW_UPDATE: the receiver's consumed total. Progress ends any backoff.
    pub fn on_update(&mut self, consumed: u32) {
        if let Some(total) = reconcile(self.consumed, consumed, self.in_flight())
            && total > self.consumed
        {
            self.consumed = total;
            self.strikes = 0;
        }
    }

    /// FLOW_CONTROL: take the new window and consumed total, and pause for the retry-after or,
    /// without one, for an exponential backoff (100 ms doubling to [`MAX_PAUSE`]).
    pub fn on_signal(&mut self, signal: &FlowSignal, now: Instant) {
        self.window = clamp_window(signal.window);
        if let Some(total) = reconcile(self.consumed, signal.consumed, self.in_flight()) {
            self.consumed = total;
        }
        let backoff = BASE_PAUSE.saturating_mul(1 << self.strikes.min(16)).min(MAX_PAUSE);
        self.strikes = self.strikes.saturating_add(1);
        let pause = if signal.retry_after.is_zero() { backoff } else { signal.retry_after };
        let until = now + pause.min(MAX_PAUSE);
        self.paused_until = Some(self.paused_until.map_or(until, |t| t.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_sender_stops_at_the_window_and_resumes_at_half() {
        let now = Instant::now();
        let mut tx = OutboundWindow::new();
        let mut rx = InboundWindow::new();
        let mut sent = 0;
        while tx.can_send(now) {
            tx.on_sent();
            rx.on_message(MS).unwrap();
            sent += 1;
        }
        assert_eq!(sent, INITIAL_WINDOW);
        // Consuming 499 sends nothing; the 500th triggers the update.
        assert_eq!(rx.on_consumed(499), None);
        let update = rx.on_consumed(1).unwrap();
        assert_eq!(update, 500);
        assert!(!tx.can_send(now));
        tx.on_update(update);
        assert_eq!(tx.in_flight(), 500);
        assert!(tx.can_send(now));
    }

    #[test]
    fn a_sender_that_ignores_the_window_is_refused_with_buffer_full() {
        let mut rx = InboundWindow::new();
        for _ in 0..INITIAL_WINDOW {
            rx.on_message(MS).unwrap();
        }
        let signal = rx.on_message(50 * MS).unwrap_err();
        assert_eq!(signal.reason, FlowReason::BufferFull);
        assert_eq!(
            (signal.window, signal.consumed, signal.retry_after),
            (INITIAL_WINDOW, 0, 50 * MS)
        );
        assert_eq!(rx.unconsumed(), u64::from(INITIAL_WINDOW), "the refused one did not count");
    }

    #[test]
    fn flow_control_shrinks_the_window_and_pauses_with_backoff() {
        let t0 = Instant::now();
        let mut tx = OutboundWindow::new();
        let mut rx = InboundWindow::new();
        for _ in 0..300 {
            tx.on_sent();
            rx.on_message(MS).unwrap();
        }
        rx.on_consumed(100);
        let signal = rx.set_window(50, FlowReason::SystemLoad, Duration::ZERO);
        assert_eq!(signal.window, MIN_WINDOW, "clamped");
        tx.on_signal(&signal, t0);
        assert_eq!(tx.in_flight(), 200);
        assert!(!tx.can_send(t0));
        assert_eq!(tx.resume_at(t0), Some(t0 + BASE_PAUSE));
        // Repeated signals without progress back off exponentially, up to the ceiling.
        tx.on_signal(&signal, t0);
        assert_eq!(tx.resume_at(t0), Some(t0 + 2 * BASE_PAUSE));
        for _ in 0..20 {
            tx.on_signal(&signal, t0);
        }
        assert_eq!(tx.resume_at(t0), Some(t0 + MAX_PAUSE));
        // Still over the new window after the pause, until the receiver consumes more.
        let later = t0 + MAX_PAUSE;
        assert!(!tx.can_send(later));
        rx.on_consumed(150);
        tx.on_update(rx.signal(FlowReason::BufferFull, Duration::ZERO).consumed);
        assert_eq!(tx.in_flight(), 50);
        assert!(tx.can_send(later));
    }

    #[test]
    fn a_rate_limit_retry_after_is_honoured_and_capped() {
        let t0 = Instant::now();
        let mut tx = OutboundWindow::new();
        let signal = FlowSignal {
            window: 1000,
            consumed: 0,
            reason: FlowReason::RateLimit,
            retry_after: Duration::from_secs(600),
        };
        tx.on_signal(&signal, t0);
        assert_eq!(tx.resume_at(t0), Some(t0 + MAX_PAUSE));
    }

    #[test]
    fn signals_survive_the_wire() {
        for reason in [FlowReason::BufferFull, FlowReason::RateLimit, FlowReason::SystemLoad] {
            let signal = FlowSignal { window: 250, consumed: 7, reason, retry_after: 40 * MS };
            assert_eq!(FlowSignal::from_wire(&signal.to_wire()), signal);
        }
        let unknown = FlowControl {
            new_window: 100,
            consumed: 0,
            reason: FlowReasonCode::Other(9),
            retry_after_ms: 5,
        };
        assert_eq!(FlowSignal::from_wire(&unknown).reason, FlowReason::SystemLoad);
    }

    #[test]
    fn stale_or_impossible_updates_change_nothing() {
        let mut tx = OutboundWindow::new();
        for _ in 0..10 {
            tx.on_sent();
        }
        tx.on_update(6);
        tx.on_update(3);
        assert_eq!(tx.in_flight(), 4, "a late update does not move backwards");
        tx.on_update(50);
        assert_eq!(tx.in_flight(), 4, "more than was sent cannot be consumed");
    }

    proptest! {
        /// Whatever the interleaving, the receiver never holds more than a window of messages
        /// from a sender that follows the protocol, and every message is eventually consumed.
        #[test]
        fn counts_wrap_and_the_window_holds(ops in proptest::collection::vec(0u8..3, 1..3000), start in any::<u32>()) {
            let now = Instant::now();
            let mut tx = OutboundWindow::new();
            let mut rx = InboundWindow::new();
            // Start both sides near a wrap of the u32 counters.
            tx.sent = u64::from(start);
            tx.consumed = u64::from(start);
            rx.received = u64::from(start);
            rx.consumed = u64::from(start);
            rx.updated_at = u64::from(start);
            for op in ops {
                match op {
                    0 | 1 => {
                        if tx.can_send(now) {
                            tx.on_sent();
                            prop_assert!(rx.on_message(MS).is_ok());
                        }
                    }
                    _ => {
                        if rx.unconsumed() > 0 && let Some(update) = rx.on_consumed(1) {
                            tx.on_update(update);
                        }
                    }
                }
                prop_assert!(rx.unconsumed() <= u64::from(rx.window()));
                prop_assert!(tx.in_flight() >= rx.unconsumed());
            }
        }
    }
}
