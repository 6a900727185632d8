//! Fuzzes the codecs of the values `zmesh-store` reads back from disk: shard records, mailbox
//! entries and chunk registry entries. A damaged disk must give errors, never panics; a value
//! that decodes must encode to exactly the bytes it came from (each format has one encoding per
//! value and no trailing bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_store::fuzzing::{
    decode_chunk_entry, decode_mailbox_entry, decode_shard_record, encode_chunk_entry,
    encode_mailbox_entry, encode_shard_record,
};

fuzz_target!(|data: &[u8]| {
    if let Ok((meta, shard)) = decode_shard_record(data) {
        let bytes = encode_shard_record(&meta, shard).expect("a decoded record encodes");
        assert_eq!(bytes, data, "shard record re-encodes differently");
    }
    if let Ok((expires_at_ms, body)) = decode_mailbox_entry(data) {
        let bytes = encode_mailbox_entry(expires_at_ms, body).expect("a decoded entry encodes");
        assert_eq!(bytes, data, "mailbox entry re-encodes differently");
    }
    if let Ok(entry) = decode_chunk_entry(data) {
        let bytes = encode_chunk_entry(&entry).expect("a decoded registry entry encodes");
        assert_eq!(bytes, data, "chunk registry entry re-encodes differently");
    }
});
