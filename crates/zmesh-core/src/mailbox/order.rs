//! The `order` a relay stamps on each message it accepts for a mailbox.
//!
//! It is a Unix millisecond time, so messages from different relays interleave roughly as they
//! were sent, and it is assigned once: every replica stores the same value, which is what makes
//! a cursor portable between replicas. One relay's orders must also strictly increase, or a
//! message it accepts later could sort before one a recipient has already read past and
//! acknowledged, and would never be delivered.

/// Hands out strictly increasing orders that follow the wall clock when it moves forward.
#[derive(Debug, Clone, Default)]
pub struct OrderClock {
    last: Option<u64>,
}

impl OrderClock {
    pub fn new() -> Self {
        OrderClock { last: None }
    }

    /// A clock that continues after `last`, e.g. the highest order a relay had handed out before
    /// a restart, so a clock that stepped back meanwhile cannot repeat or undercut it.
    pub fn resume(last: u64) -> Self {
        OrderClock { last: Some(last) }
    }

    /// The order for a message accepted at `now_ms`: `max(now_ms, last + 1)`. A stalled or
    /// stepped-back clock still yields a larger value than every earlier one; the orders run
    /// ahead of the clock until it catches up. At `u64::MAX` (half a billion years from now) the
    /// value stays put instead of wrapping.
    pub fn next(&mut self, now_ms: u64) -> u64 {
        let order = match self.last {
            Some(last) => now_ms.max(last.saturating_add(1)),
            None => now_ms,
        };
        self.last = Some(order);
        order
    }

    /// The last order handed out, to persist for [`resume`](Self::resume).
    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_clock_when_it_moves_forward() {
        let mut c = OrderClock::new();
        assert_eq!(c.next(1_000), 1_000);
        assert_eq!(c.next(1_005), 1_005);
        assert_eq!(c.next(2_000), 2_000);
        assert_eq!(c.last(), Some(2_000));
    }

    #[test]
    fn strictly_increases_when_the_clock_stalls_or_steps_back() {
        let mut c = OrderClock::new();
        assert_eq!(c.next(1_000), 1_000);
        assert_eq!(c.next(1_000), 1_001);
        assert_eq!(c.next(1_000), 1_002);
        assert_eq!(c.next(500), 1_003, "a clock stepped back does not pull orders back");
        assert_eq!(c.next(1_001), 1_004);
        assert_eq!(c.next(3_000), 3_000, "and the clock takes over again once it is ahead");
    }

    #[test]
    fn resumes_after_the_last_persisted_order() {
        let mut c = OrderClock::resume(5_000);
        assert_eq!(c.next(4_000), 5_001);
        assert_eq!(c.next(0), 5_002);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let mut c = OrderClock::resume(u64::MAX);
        assert_eq!(c.next(0), u64::MAX);
        let mut c = OrderClock::new();
        assert_eq!(c.next(u64::MAX), u64::MAX);
        assert_eq!(c.next(0), u64::MAX);
    }

    #[test]
    fn never_decreases_whatever_the_clock_does() {
        let mut c = OrderClock::new();
        let mut prev = None;
        let mut t: u64 = 10_000;
        for step in 0..1_000u64 {
            // Forward, stalled and backward steps mixed.
            t = match step % 5 {
                0 => t + 3,
                1 => t,
                2 => t.saturating_sub(7),
                3 => t + 1,
                _ => t.saturating_sub(1),
            };
            let o = c.next(t);
            if let Some(p) = prev {
                assert!(o > p, "step {step}: {o} after {p}");
            }
            assert!(o >= t);
            prev = Some(o);
        }
    }
}
