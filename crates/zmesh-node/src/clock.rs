//! The one place zmesh reads the wall clock. Protocol logic never calls it: state machines in
//! `zmesh-core` and the store take `now` as an argument, so tests can inject time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is set before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
