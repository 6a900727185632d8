//! Anti-entropy repair (seed 000, "Self-Healing"), as sans-IO pieces a node drives:
//!
//! - [`schedule`]: which chunks this node scans, and when. Every holder of a chunk keeps its
//!   owner's certificate and placement record; the holder closest to the storage key is the
//!   chunk's *warden* and scans it every period. The next in line scans only after the warden has
//!   been silent for longer than its period, so one warden acts at a time without any
//!   coordination beyond the health checks themselves.
//! - [`assess`]: what a round of health reports says about a chunk: healthy shards on distinct
//!   nodes, missing ones, corrupt or expired copies, and the decision that follows.
//! - [`plan`]: one repair as a state machine: fetch 10 healthy shards (never more successful
//!   fetches than decoding needs), then store each rebuilt shard on a new node, replacing any
//!   node that refuses.
//! - [`reputation`]: nodes that fail audits or stay unreachable lose placement preference.

pub mod assess;
pub mod plan;
pub mod reputation;
pub mod schedule;

pub use assess::{Assessment, Decision, HolderReport};
pub use plan::{ChunkRepair, RepairStep};
pub use reputation::Reputation;
pub use schedule::{ScheduleConfig, WardenSchedule};

/// Default repair threshold: a chunk with fewer healthy shards than this is repaired. 13 of 15
/// leaves three failures of margin above the 10 needed while a repair is in flight, and does
/// not spend repair traffic on a single lost shard.
pub const DEFAULT_REPAIR_THRESHOLD: usize = 13;
