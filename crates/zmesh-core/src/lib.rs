//! Sans-IO state machines of zmesh's protocols.
//!
//! Each machine takes `now` and inputs and returns what to send and when to wake up; a driver
//! in `zmesh-node` owns the sockets and timers. Everything here is deterministic and testable
//! without a network or a real clock.

pub mod backoff;
pub mod erasure;
pub mod flow;
pub mod handshake;
pub mod keepalive;
pub mod limits;
pub mod lookup;
pub mod mailbox;
pub mod pex;
pub mod placement;
pub mod priority;
pub mod ratelimit;
pub mod repair;
pub mod storage_auth;
