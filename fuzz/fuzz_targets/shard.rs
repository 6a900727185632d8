//! Fuzzes the shard codec: `Shard::from_bytes` never panics on arbitrary bytes, and a decoded
//! shard re-encodes to exactly the bytes it came from (a shard has no optional fields, so the
//! encoding is canonical) and decodes again to an equal shard.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_wire::shard::Shard;

fuzz_target!(|data: &[u8]| {
    if let Ok(shard) = Shard::from_bytes(data) {
        let bytes = shard.to_bytes();
        assert_eq!(bytes, data, "re-encoding differs from the input");
        let again = Shard::from_bytes(&bytes).expect("re-encoding does not decode");
        assert_eq!(again, shard, "re-encoding decodes to a different shard");
    }
});
