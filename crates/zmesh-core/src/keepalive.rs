//! PING / PONG keep-alive, RTT and dead-peer detection (seed 001, "Keep-Alive and Heartbeat").
//!
//! One PING is outstanding at a time. A PING unanswered within `pong_timeout` is a miss, and the
//! next PING goes out at once, so a peer that stopped answering is declared dead
//! `max_missed × pong_timeout` after the first unanswered PING: with the seed's numbers within
//! 35 s + 30 s, about two PING intervals after it died.

use std::time::{Duration, Instant};

use zmesh_types::constants::RTT_CLASS_BOUNDS_MS;
use zmesh_wire::control::{Ping, Pong};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveConfig {
    pub interval: Duration,
    /// Extra random delay, 0..=jitter, added to every interval so peers do not ping in step.
    pub jitter: Duration,
    pub pong_timeout: Duration,
    pub max_missed: u32,
}

impl Default for KeepAliveConfig {
    fn default() -> Self {
        KeepAliveConfig {
            interval: Duration::from_secs(30),
            jitter: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(10),
            max_missed: 3,
        }
    }
}

/// Connection quality by smoothed RTT (seed 001, "Connection Quality Assessment").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quality {
    Excellent,
    Good,
    Fair,
    Poor,
    Critical,
}

impl Quality {
    pub fn from_rtt(rtt: Duration) -> Quality {
        let ms = rtt.as_millis() as u64;
        let [excellent, good, fair, poor] = RTT_CLASS_BOUNDS_MS;
        match ms {
            m if m < excellent => Quality::Excellent,
            m if m < good => Quality::Good,
            m if m < fair => Quality::Fair,
            m if m < poor => Quality::Poor,
            _ => Quality::Critical,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Excellent => "excellent",
            Quality::Good => "good",
            Quality::Fair => "fair",
            Quality::Poor => "poor",
            Quality::Critical => "critical",
        }
    }
}

/// One measured round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttSample {
    pub rtt: Duration,
    /// RTT minus the time the responder held the PING.
    pub network_rtt: Duration,
}

/// What the driver must do after a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    SendPing(Ping),
    /// `max_missed` PINGs in a row went unanswered: close the connection.
    Dead {
        missed: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PongError {
    #[error("PONG for no outstanding PING")]
    Unsolicited,
    #[error("PONG does not match the outstanding PING (sequence {got}, expected {expected})")]
    Mismatch { got: u32, expected: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    ping: Ping,
    sent_at: Instant,
    deadline: Instant,
}

#[derive(Debug, Clone)]
pub struct KeepAlive {
    config: KeepAliveConfig,
    next_ping_at: Instant,
    outstanding: Option<Outstanding>,
    sequence: u32,
    missed: u32,
    dead: bool,
    srtt: Option<Duration>,
    last: Option<RttSample>,
    rng: u64,
}

impl KeepAlive {
    /// `seed` drives jitter and nonces; pass a random value in production, a constant in tests.
    /// The first PING goes out after one (jittered) interval.
    pub fn new(config: KeepAliveConfig, now: Instant, seed: u64) -> Self {
        let mut ka = KeepAlive {
            config,
            next_ping_at: now,
            outstanding: None,
            sequence: 0,
            missed: 0,
            dead: false,
            srtt: None,
            last: None,
            rng: seed | 1,
        };
        ka.next_ping_at = now + ka.jittered_interval();
        ka
    }

    /// When the driver must call [`KeepAlive::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        match self.outstanding {
            Some(o) => o.deadline,
            None => self.next_ping_at,
        }
    }

    /// Advances time. `wall_ms` is the Unix time in milliseconds put into PINGs.
    pub fn handle_timeout(&mut self, now: Instant, wall_ms: u64) -> Option<KeepAliveAction> {
        if self.dead {
            return None;
        }
        if let Some(o) = self.outstanding {
            if now < o.deadline {
                return None;
            }
            self.outstanding = None;
            self.missed += 1;
            if self.missed >= self.config.max_missed {
                self.dead = true;
                return Some(KeepAliveAction::Dead { missed: self.missed });
            }
            // Retry at once: a missed PING is evidence, not a reason to wait a full interval.
            return Some(self.send_ping(now, wall_ms));
        }
        if now >= self.next_ping_at {
            return Some(self.send_ping(now, wall_ms));
        }
        None
    }

    fn send_ping(&mut self, now: Instant, wall_ms: u64) -> KeepAliveAction {
        self.sequence = self.sequence.wrapping_add(1);
        let ping =
            Ping { timestamp_ms: wall_ms, nonce: self.next_random(), sequence: self.sequence };
        self.outstanding =
            Some(Outstanding { ping, sent_at: now, deadline: now + self.config.pong_timeout });
        KeepAliveAction::SendPing(ping)
    }

    /// Handles a PONG. A matching PONG resets the miss count and yields an RTT sample.
    pub fn handle_pong(&mut self, now: Instant, pong: &Pong) -> Result<RttSample, PongError> {
        let o = self.outstanding.ok_or(PongError::Unsolicited)?;
        if pong.nonce != o.ping.nonce || pong.sequence != o.ping.sequence {
            return Err(PongError::Mismatch { got: pong.sequence, expected: o.ping.sequence });
        }
        self.outstanding = None;
        self.missed = 0;
        let rtt = now.saturating_duration_since(o.sent_at);
        let hold = Duration::from_micros(pong.hold_us.into());
        let sample = RttSample { rtt, network_rtt: rtt.saturating_sub(hold) };
        // RFC 6298 smoothing (alpha = 1/8), so one slow sample does not flip the quality class.
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        self.last = Some(sample);
        self.next_ping_at = now + self.jittered_interval();
        Ok(sample)
    }

    /// The PONG to answer a PING with. `hold` is how long the PING waited before this answer.
    pub fn answer(ping: &Ping, receive_time_ms: u64, hold: Duration) -> Pong {
        Pong {
            timestamp_ms: ping.timestamp_ms,
            nonce: ping.nonce,
            sequence: ping.sequence,
            receive_time_ms,
            hold_us: u32::try_from(hold.as_micros()).unwrap_or(u32::MAX),
        }
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }
    pub fn missed(&self) -> u32 {
        self.missed
    }
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.srtt
    }
    pub fn last_sample(&self) -> Option<RttSample> {
        self.last
    }
    pub fn quality(&self) -> Option<Quality> {
        self.srtt.map(Quality::from_rtt)
    }

    fn jittered_interval(&mut self) -> Duration {
        let jitter_ms = self.config.jitter.as_millis() as u64;
        let extra = if jitter_ms == 0 { 0 } else { self.next_random() % (jitter_ms + 1) };
        self.config.interval + Duration::from_millis(extra)
    }

    /// xorshift64*: a deterministic stream for jitter and nonces. Nonces only match PONGs to
    /// PINGs on an already authenticated stream, so they need not be unpredictable.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KeepAliveConfig {
        KeepAliveConfig {
            interval: Duration::from_secs(30),
            jitter: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(10),
            max_missed: 3,
        }
    }

    fn expect_ping(action: Option<KeepAliveAction>) -> Ping {
        match action {
            Some(KeepAliveAction::SendPing(p)) => p,
            other => panic!("expected a PING, got {other:?}"),
        }
    }

    #[test]
    fn first_ping_waits_a_jittered_interval() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(config(), t0, 7);
        let due = ka.poll_timeout();
        assert!(due >= t0 + Duration::from_secs(30) && due <= t0 + Duration::from_secs(35));
        assert_eq!(ka.handle_timeout(t0 + Duration::from_secs(29), 0), None);
        expect_ping(ka.handle_timeout(due, 0));
    }

    #[test]
    fn pong_yields_rtt_and_resets_misses() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(config(), t0, 1);
        let due = ka.poll_timeout();
        let ping = expect_ping(ka.handle_timeout(due, 1_000));
        let pong = KeepAlive::answer(&ping, 1_010, Duration::from_millis(2));
        let sample = ka.handle_pong(due + Duration::from_millis(20), &pong).unwrap();
        assert_eq!(sample.rtt, Duration::from_millis(20));
        assert_eq!(sample.network_rtt, Duration::from_millis(18));
        assert_eq!(ka.quality(), Some(Quality::Excellent));
        assert_eq!(ka.handle_pong(due, &pong), Err(PongError::Unsolicited));
    }

    #[test]
    fn mismatched_pong_is_rejected() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(config(), t0, 1);
        let ping = expect_ping(ka.handle_timeout(ka.poll_timeout(), 0));
        let mut pong = KeepAlive::answer(&ping, 0, Duration::ZERO);
        pong.nonce ^= 1;
        assert!(matches!(ka.handle_pong(t0, &pong), Err(PongError::Mismatch { .. })));
    }

    #[test]
    fn three_misses_mean_dead_within_the_bound() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(config(), t0, 3);
        let mut now = ka.poll_timeout();
        let first_ping_at = now;
        expect_ping(ka.handle_timeout(now, 0));
        for missed in 1..3 {
            now = ka.poll_timeout();
            expect_ping(ka.handle_timeout(now, 0));
            assert_eq!(ka.missed(), missed);
        }
        now = ka.poll_timeout();
        assert_eq!(ka.handle_timeout(now, 0), Some(KeepAliveAction::Dead { missed: 3 }));
        assert!(ka.is_dead());
        assert_eq!(now - first_ping_at, Duration::from_secs(30));
        assert_eq!(ka.handle_timeout(now + Duration::from_secs(100), 0), None);
    }

    #[test]
    fn quality_classes_follow_the_seed_table() {
        let q = |ms| Quality::from_rtt(Duration::from_millis(ms));
        assert_eq!(q(49), Quality::Excellent);
        assert_eq!(q(50), Quality::Good);
        assert_eq!(q(150), Quality::Fair);
        assert_eq!(q(500), Quality::Poor);
        assert_eq!(q(1000), Quality::Critical);
    }
}
