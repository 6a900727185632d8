//! Identifiers, capabilities, versions and protocol constants shared by every zmesh crate.
//!
//! Nothing here does I/O; everything is plain data with total, panic-free constructors.

mod caps;
pub mod constants;
mod data_type;
mod id;
mod version;

pub use caps::Capabilities;
pub use data_type::{DataType, ParseDataTypeError};
pub use id::{Distance, Key256, NodeId, ParseKeyError};
pub use version::{ParseVersionError, ProtocolVersion};
