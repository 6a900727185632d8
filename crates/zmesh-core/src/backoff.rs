//! Reconnecting after a lost connection (seed 001, "Connection Recovery Strategy"): wait 1 s,
//! 2 s, 4 s … at most 30 s before each attempt, and try the alternate endpoints in turn.
//!
//! Delays carry ±25 % jitter, so clients that lost the same relay at the same instant do not
//! all come back at the same instant. The random value comes in as a parameter: this module
//! draws nothing itself, so schedules are reproducible in tests.

use std::time::Duration;

/// The delay before the first attempt after a success.
pub const BASE_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// How far a delay may stray from its nominal value, in percent either way.
pub const JITTER_PERCENT: u32 = 25;

/// Exponential backoff: `base`, `2 × base`, `4 × base` … at most `max`, each jittered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Attempts since the last success: the exponent.
    attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    /// [`BASE_DELAY`] doubling up to [`MAX_DELAY`].
    pub fn new() -> Self {
        Backoff::with_range(BASE_DELAY, MAX_DELAY)
    }

    /// `base` doubling up to `max` (taken as `base` if smaller).
    pub fn with_range(base: Duration, max: Duration) -> Self {
        Backoff { base, max: max.max(base), attempts: 0 }
    }

    /// Attempts made since the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt, before jitter.
    pub fn nominal(&self) -> Duration {
        // 2^31 × 1 ns already exceeds any sensible maximum; the shift must not overflow.
        self.base.saturating_mul(1 << self.attempts.min(31)).min(self.max)
    }

    /// The delay before the next attempt, jittered by `random` (uniform over all `u32`) within
    /// ±[`JITTER_PERCENT`] and kept within `base..=max`; counts the attempt.
    pub fn next_delay(&mut self, random: u32) -> Duration {
        let delay = jitter(self.nominal(), random).clamp(self.base, self.max);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// A connection succeeded: the next loss starts again from `base`.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// `nominal` moved by up to ±[`JITTER_PERCENT`]: `random` 0 gives the shortest, `u32::MAX` the
/// longest.
pub fn jitter(nominal: Duration, random: u32) -> Duration {
    let nanos = nominal.as_nanos();
    let span = nanos * u128::from(JITTER_PERCENT) / 100;
    let low = nanos - span;
    let offset = 2 * span * u128::from(random) / u128::from(u32::MAX);
    duration_from_nanos(low + offset)
}

fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

/// Endpoints tried in turn, wrapping around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundRobin<T> {
    items: Vec<T>,
    next: usize,
}

impl<T> RoundRobin<T> {
    /// Starts with the first item.
    pub fn new(items: Vec<T>) -> Self {
        RoundRobin { items, next: 0 }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// Makes item `index` (modulo the length) the next one.
    pub fn set_next(&mut self, index: usize) {
        self.next = if self.items.is_empty() { 0 } else { index % self.items.len() };
    }

    /// The next item and its index, then moves on; `None` when there are none.
    pub fn next_item(&mut self) -> Option<(usize, &T)> {
        let index = self.next;
        let item = self.items.get(index)?;
        self.next = (index + 1) % self.items.len();
        Some((index, item))
    }
}

/// One planned reconnection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt<'a, T> {
    /// 1 for the first attempt after a loss.
    pub number: u32,
    /// Which endpoint, and its index in the list.
    pub endpoint: &'a T,
    pub index: usize,
    /// How long to wait before making it.
    pub delay: Duration,
}

/// The reconnection schedule of one client: which endpoint to try next and after how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect<T> {
    backoff: Backoff,
    endpoints: RoundRobin<T>,
}

impl<T> Reconnect<T> {
    /// A schedule over `endpoints`, the first attempt going to `endpoints[current]` (the one in
    /// use: a brief outage is most often over by the first attempt).
    pub fn new(endpoints: Vec<T>, current: usize, backoff: Backoff) -> Self {
        let mut endpoints = RoundRobin::new(endpoints);
        endpoints.set_next(current);
        Reconnect { backoff, endpoints }
    }

    pub fn endpoints(&self) -> &[T] {
        self.endpoints.items()
    }

    /// The next attempt to make (`random` as in [`Backoff::next_delay`]); `None` without
    /// endpoints.
    pub fn next_attempt(&mut self, random: u32) -> Option<Attempt<'_, T>> {
        if self.endpoints.is_empty() {
            return None;
        }
        let number = self.backoff.attempts().saturating_add(1);
        let delay = self.backoff.next_delay(random);
        let (index, endpoint) = self.endpoints.next_item()?;
        Some(Attempt { number, endpoint, index, delay })
    }

    /// Connected through endpoint `index`: the backoff starts over, and after the next loss
    /// that endpoint is tried first.
    pub fn connected(&mut self, index: usize) {
        self.backoff.reset();
        self.endpoints.set_next(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Duration = Duration::from_secs(1);
    const MIDDLE: u32 = u32::MAX / 2;

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    #[test]
    fn delays_double_from_one_second_to_thirty() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay(MIDDLE)).collect();
        let expected = [1, 2, 4, 8, 16, 30, 30, 30].map(|s| s * SEC);
        for (got, want) in delays.iter().zip(expected) {
            assert!(close(*got, want), "{delays:?}");
        }
        assert_eq!(backoff.attempts(), 8);
        backoff.reset();
        assert!(close(backoff.next_delay(MIDDLE), SEC), "a success starts over");
    }

    #[test]
    fn jitter_spans_a_quarter_either_way_within_the_range() {
        assert_eq!(jitter(4 * SEC, 0), 3 * SEC);
        assert_eq!(jitter(4 * SEC, u32::MAX), 5 * SEC);
        assert_eq!(jitter(Duration::ZERO, u32::MAX), Duration::ZERO);
        // At the ends of the range the jitter is clamped, never outside 1..=30 s.
        assert_eq!(Backoff::new().next_delay(0), SEC);
        let mut long = Backoff::new();
        for _ in 0..10 {
            long.next_delay(0);
        }
        assert_eq!(long.next_delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn endpoints_are_tried_in_turn_from_the_one_in_use() {
        let mut plan = Reconnect::new(vec!["a", "b", "c"], 1, Backoff::new());
        let tried: Vec<(&str, u32)> = (0..5)
            .map(|_| {
                let attempt = plan.next_attempt(MIDDLE).unwrap();
                (*attempt.endpoint, attempt.number)
            })
            .collect();
        assert_eq!(tried, [("b", 1), ("c", 2), ("a", 3), ("b", 4), ("c", 5)]);
        plan.connected(2);
        let attempt = plan.next_attempt(MIDDLE).unwrap();
        assert_eq!((*attempt.endpoint, attempt.index, attempt.number), ("c", 2, 1));
        assert!(close(attempt.delay, SEC));

        let mut none: Reconnect<&str> = Reconnect::new(vec![], 3, Backoff::new());
        assert!(none.next_attempt(0).is_none());
    }

    proptest! {
        #[test]
        fn every_delay_is_within_the_jitter_and_the_range(
            base_ms in 1u64..5_000,
            max_ms in 1u64..120_000,
            randoms in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms).max(base);
            let mut backoff = Backoff::with_range(base, max);
            let mut last_nominal = Duration::ZERO;
            for random in randoms {
                let nominal = backoff.nominal();
                prop_assert!(nominal >= last_nominal, "the nominal delay never shrinks");
                prop_assert!(nominal >= base && nominal <= max);
                last_nominal = nominal;
                let delay = backoff.next_delay(random);
                prop_assert!(delay >= base && delay <= max);
                let (low, high) = (nominal * 3 / 4, nominal * 5 / 4 + Duration::from_nanos(1));
                prop_assert!(delay >= low && delay <= high);
            }
        }

        #[test]
        fn a_round_visits_every_endpoint_once(n in 1usize..20, start in 0usize..40) {
            let mut plan = Reconnect::new((0..n).collect(), start, Backoff::new());
            let mut seen: Vec<usize> =
                (0..n).map(|_| *plan.next_attempt(0).unwrap().endpoint).collect();
            prop_assert_eq!(seen[0], start % n);
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
