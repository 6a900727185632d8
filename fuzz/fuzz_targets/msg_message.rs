//! Fuzzes the `MsgMessage` codec: see `zmesh_fuzz::check_codec`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_wire::msg::MsgMessage;

fuzz_target!(|data: &[u8]| zmesh_fuzz::check_codec::<MsgMessage>(data));
