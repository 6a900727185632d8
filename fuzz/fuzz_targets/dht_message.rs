//! Fuzzes the `DhtMessage` codec: see `zmesh_fuzz::check_codec`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_wire::dht::DhtMessage;

fuzz_target!(|data: &[u8]| zmesh_fuzz::check_codec::<DhtMessage>(data));
