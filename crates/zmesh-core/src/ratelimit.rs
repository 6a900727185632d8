//! Per-connection rate limits (seed 001, "Rate Limiting per Connection"): a token bucket per
//! kind of traffic, strikes for a peer that keeps going over, and short bans for repeat
//! offenders.
//!
//! A bucket holds up to `burst` tokens and refills at `limit` per `window`; each request takes
//! one. A request with no token is refused with how long until one is back, which the driver
//! sends as FLOW_CONTROL (RATE_LIMIT, retry-after). A request that comes before the retry-after
//! the peer was given is a strike: the peer ignored the signal. Requests already on their way
//! when the first refusal went out are not held against it: strikes count only from
//! [`STRIKE_GRACE`] after that refusal. A peer with
//! [`RateConfig::max_strikes`] strikes within [`RateConfig::strike_window`] is disconnected and
//! banned for [`RateConfig::ban`]; one that waits as told is never punished, however busy.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long after its first refusal a peer's requests are not yet strikes: what it sent
/// before the refusal reached it is still arriving.
pub const STRIKE_GRACE: Duration = Duration::from_secs(1);

/// What a request is, for rate limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficClass {
    /// User messages (send, sync, ack, deliveries between relays).
    Message,
    /// Key material: prekey bundle fetches and publishes.
    KeyRequest,
    /// Peer exchange.
    Pex,
    /// Presence records.
    Presence,
}

impl TrafficClass {
    pub const ALL: [TrafficClass; 4] = [
        TrafficClass::Message,
        TrafficClass::KeyRequest,
        TrafficClass::Pex,
        TrafficClass::Presence,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TrafficClass::Message => "message",
            TrafficClass::KeyRequest => "key_request",
            TrafficClass::Pex => "pex",
            TrafficClass::Presence => "presence",
        }
    }
}

/// `limit` requests per `window`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub window: Duration,
    pub burst: u32,
}

impl Rate {
    pub const fn per_minute(limit: u32, burst: u32) -> Rate {
        Rate { limit, window: Duration::from_secs(60), burst }
    }
}

/// The limits of one kind of connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    pub message: Rate,
    pub key_request: Rate,
    pub pex: Rate,
    pub presence: Rate,
    /// Requests ignoring a retry-after, within `strike_window`, that get a peer disconnected
    /// and banned.
    pub max_strikes: u32,
    pub strike_window: Duration,
    pub ban: Duration,
}

impl RateConfig {
    /// A user's connection to its relay: the seed's table (per 60 s: messages 100, burst 20;
    /// key requests 20, burst 5; PEX 1, burst 1; presence 10, burst 3).
    pub const CLIENT: RateConfig = RateConfig {
        message: Rate::per_minute(100, 20),
        key_request: Rate::per_minute(20, 5),
        pex: Rate::per_minute(1, 1),
        presence: Rate::per_minute(10, 3),
        max_strikes: 10,
        strike_window: Duration::from_secs(60),
        ban: Duration::from_secs(300),
    };

    /// A connection between two nodes, which carries many users' traffic: a relay forwarding
    /// for thousands of users, or appending to mailboxes for them, must not be held to one
    /// user's allowance.
    pub const NODE: RateConfig = RateConfig {
        message: Rate::per_minute(6_000_000, 100_000),
        key_request: Rate::per_minute(600_000, 10_000),
        pex: Rate::per_minute(10, 5),
        presence: Rate::per_minute(600_000, 10_000),
        max_strikes: 100,
        strike_window: Duration::from_secs(60),
        ban: Duration::from_secs(60),
    };

    pub fn rate(&self, class: TrafficClass) -> Rate {
        match class {
            TrafficClass::Message => self.message,
            TrafficClass::KeyRequest => self.key_request,
            TrafficClass::Pex => self.pex,
            TrafficClass::Presence => self.presence,
        }
    }
}

/// A token bucket. Tokens are kept in thousandths so slow refills lose nothing to rounding.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    millitokens: u64,
    last: Instant,
}

const MILLI: u64 = 1000;

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        TokenBucket { rate, millitokens: u64::from(rate.burst) * MILLI, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let cap = u128::from(self.rate.burst) * u128::from(MILLI);
        if u128::from(self.millitokens) >= cap {
            self.last = now;
            return;
        }
        let elapsed_ns = now.saturating_duration_since(self.last).as_nanos();
        let window_ns = self.rate.window.as_nanos().max(1);
        let per_window = u128::from(self.rate.limit) * u128::from(MILLI);
        let gained = elapsed_ns * per_window / window_ns;
        if gained == 0 {
            // Keep `last`: frequent calls must not throw away the time that is refilling.
            return;
        }
        let total = u128::from(self.millitokens) + gained;
        if total >= cap {
            self.millitokens = u64::try_from(cap).unwrap_or(u64::MAX);
            self.last = now;
        } else {
            self.millitokens = u64::try_from(total).unwrap_or(u64::MAX);
            // Advance only by the time the tokens gained account for; the rest carries over.
            let used_ns = gained * window_ns / per_window;
            self.last += Duration::from_nanos(u64::try_from(used_ns).unwrap_or(u64::MAX));
        }
    }

    /// Takes a token, or says how long until one is back.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.millitokens >= MILLI {
            self.millitokens -= MILLI;
            return Ok(());
        }
        if self.rate.limit == 0 {
            return Err(self.rate.window);
        }
        let missing = MILLI - self.millitokens;
        let window_ms = self.rate.window.as_millis().max(1);
        let wait_ms = (u128::from(missing) * window_ms)
            .div_ceil(u128::from(self.rate.limit) * u128::from(MILLI));
        Err(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX).max(1)))
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse it; the peer may try again after this long.
    Limited {
        retry_after: Duration,
    },
    /// Refuse it and disconnect: the peer kept going over. Ban it for `ban`.
    Disconnect {
        ban: Duration,
    },
}

/// The limits of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    config: RateConfig,
    buckets: [TokenBucket; 4],
    strikes: Vec<Instant>,
    /// When the peer was last told it may try again.
    retry_at: Option<Instant>,
    /// When the current run of refusals began: the first refusal after a strike window
    /// without any.
    limited_since: Option<Instant>,
    last_refusal: Option<Instant>,
}

fn index(class: TrafficClass) -> usize {
    match class {
        TrafficClass::Message => 0,
        TrafficClass::KeyRequest => 1,
        TrafficClass::Pex => 2,
        TrafficClass::Presence => 3,
    }
}

impl ConnectionLimiter {
    pub fn new(config: RateConfig, now: Instant) -> Self {
        let buckets = TrafficClass::ALL.map(|c| TokenBucket::new(config.rate(c), now));
        ConnectionLimiter {
            config,
            buckets,
            strikes: Vec::new(),
            retry_at: None,
            limited_since: None,
            last_refusal: None,
        }
    }

    /// Judges one request of `class` at `now`.
    pub fn check(&mut self, class: TrafficClass, now: Instant) -> Verdict {
        match self.buckets[index(class)].try_take(now) {
            Ok(()) => Verdict::Allow,
            Err(retry_after) => {
                let window = self.config.strike_window;
                let new_run =
                    self.last_refusal.is_none_or(|t| now.saturating_duration_since(t) >= window);
                if new_run {
                    self.limited_since = Some(now);
                }
                self.last_refusal = Some(now);
                let since = self.limited_since.unwrap_or(now);
                let in_grace = now.saturating_duration_since(since) < STRIKE_GRACE;
                let ignored = !in_grace && self.retry_at.is_some_and(|t| now < t);
                let retry_at = now + retry_after;
                self.retry_at = Some(self.retry_at.map_or(retry_at, |t| t.max(retry_at)));
                if ignored {
                    self.strikes.retain(|t| now.saturating_duration_since(*t) < window);
                    self.strikes.push(now);
                    if self.strikes.len() >= self.config.max_strikes as usize {
                        return Verdict::Disconnect { ban: self.config.ban };
                    }
                }
                Verdict::Limited { retry_after }
            }
        }
    }

    /// Requests that ignored a retry-after, within the strike window so far.
    pub fn strikes(&self) -> usize {
        self.strikes.len()
    }
}

/// Peers (or addresses) banned until a time. Bounded: when full, the ban ending soonest goes.
#[derive(Debug, Clone)]
pub struct BanList<K> {
    until: HashMap<K, Instant>,
    capacity: usize,
}

impl<K: Clone + Eq + Hash> BanList<K> {
    pub fn new(capacity: usize) -> Self {
        BanList { until: HashMap::new(), capacity: capacity.max(1) }
    }

    pub fn ban(&mut self, who: K, now: Instant, duration: Duration) {
        self.until.retain(|_, t| *t > now);
        if self.until.len() >= self.capacity
            && !self.until.contains_key(&who)
            && let Some(soonest) =
                self.until.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
        {
            self.until.remove(&soonest);
        }
        let end = now + duration;
        let entry = self.until.entry(who).or_insert(end);
        *entry = (*entry).max(end);
    }

    /// How long `who` stays banned, if it is.
    pub fn banned(&self, who: &K, now: Instant) -> Option<Duration> {
        self.until.get(who).filter(|t| **t > now).map(|t| t.saturating_duration_since(now))
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_seed_message_limit_allows_a_burst_then_100_a_minute() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(RateConfig::CLIENT.message, t0);
        for _ in 0..20 {
            assert_eq!(bucket.try_take(t0), Ok(()));
        }
        // 100 per 60 s is one per 600 ms.
        assert_eq!(bucket.try_take(t0), Err(Duration::from_millis(600)));
        let almost = bucket.try_take(t0 + Duration::from_millis(599)).unwrap_err();
        assert!(almost <= Duration::from_millis(2), "{almost:?}");
        assert_eq!(bucket.try_take(t0 + Duration::from_millis(600)), Ok(()));
        // Over 60 s after the burst, 100 more and no more.
        let mut taken = 0;
        let mut t = t0 + Duration::from_millis(600);
        while t < t0 + Duration::from_millis(60_600) {
            t += Duration::from_millis(50);
            if bucket.try_take(t).is_ok() {
                taken += 1;
            }
        }
        assert_eq!(taken, 100);
    }

    #[test]
    fn an_idle_bucket_fills_to_its_burst_only() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(RateConfig::CLIENT.presence, t0);
        for _ in 0..3 {
            bucket.try_take(t0).unwrap();
        }
        let later = t0 + 3600 * SEC;
        for _ in 0..3 {
            assert_eq!(bucket.try_take(later), Ok(()));
        }
        assert!(bucket.try_take(later).is_err());
    }

    #[test]
    fn repeat_offenders_are_disconnected_and_well_behaved_peers_never() {
        let t0 = Instant::now();
        let mut greedy = ConnectionLimiter::new(RateConfig::CLIENT, t0);
        let mut verdicts = Vec::new();
        for _ in 0..40 {
            verdicts.push(greedy.check(TrafficClass::Message, t0));
        }
        assert!(verdicts[..20].iter().all(|v| *v == Verdict::Allow));
        // The first refusal tells it when to come back. What arrives within the grace was on
        // its way already; after it, each request before the retry-after is a strike.
        assert!(verdicts[20..].iter().all(|v| matches!(v, Verdict::Limited { .. })));
        let later = t0 + STRIKE_GRACE;
        let mut after = Vec::new();
        for _ in 0..12 {
            after.push(greedy.check(TrafficClass::Message, later));
        }
        // One token came back in that second; the next refusal sets a new retry-after, and
        // the ten requests that ignore it are the strikes.
        let ban = Verdict::Disconnect { ban: RateConfig::CLIENT.ban };
        assert_eq!(after.iter().position(|v| *v == ban), Some(11), "{after:?}");

        // A peer that waits out every retry-after is never disconnected.
        let mut polite = ConnectionLimiter::new(RateConfig::CLIENT, t0);
        let mut t = t0;
        for _ in 0..500 {
            match polite.check(TrafficClass::Message, t) {
                Verdict::Allow => {}
                Verdict::Limited { retry_after } => t += retry_after,
                Verdict::Disconnect { .. } => panic!("a polite peer was disconnected"),
            }
        }
        assert_eq!(polite.strikes(), 0);
    }

    #[test]
    fn classes_have_their_own_buckets() {
        let t0 = Instant::now();
        let mut limiter = ConnectionLimiter::new(RateConfig::CLIENT, t0);
        assert_eq!(limiter.check(TrafficClass::Pex, t0), Verdict::Allow);
        assert!(matches!(limiter.check(TrafficClass::Pex, t0), Verdict::Limited { .. }));
        assert_eq!(limiter.check(TrafficClass::Message, t0), Verdict::Allow);
        assert_eq!(limiter.check(TrafficClass::KeyRequest, t0), Verdict::Allow);
    }

    #[test]
    fn bans_end_and_the_list_stays_bounded() {
        let t0 = Instant::now();
        let mut bans = BanList::new(2);
        bans.ban("a", t0, 10 * SEC);
        assert_eq!(bans.banned(&"a", t0 + SEC), Some(9 * SEC));
        assert_eq!(bans.banned(&"a", t0 + 10 * SEC), None);
        bans.ban("b", t0, 5 * SEC);
        bans.ban("c", t0, 20 * SEC);
        assert_eq!(bans.len(), 2);
        assert_eq!(bans.banned(&"b", t0), None, "the ban ending soonest made room");
        bans.ban("c", t0, SEC);
        assert_eq!(bans.banned(&"c", t0), Some(20 * SEC), "a shorter ban never shortens one");
    }

    proptest! {
        /// However requests are spaced, a bucket never allows more than burst + rate × time.
        #[test]
        fn never_more_than_burst_plus_refill(gaps in proptest::collection::vec(0u64..2_000, 1..400)) {
            let rate = RateConfig::CLIENT.message;
            let t0 = Instant::now();
            let mut bucket = TokenBucket::new(rate, t0);
            let mut t = t0;
            let mut allowed = 0u64;
            for gap in gaps {
                t += Duration::from_millis(gap);
                if bucket.try_take(t).is_ok() {
                    allowed += 1;
                }
            }
            let elapsed_ms = t.duration_since(t0).as_millis() as u64;
            let bound = u64::from(rate.burst) + elapsed_ms * u64::from(rate.limit) / 60_000;
            prop_assert!(allowed <= bound, "{allowed} > {bound}");
        }
    }
}
