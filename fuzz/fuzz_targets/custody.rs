//! Fuzzes what a holder decodes from its chunk registry on disk: the registry entry, then the
//! owner's certificate and the placement record inside it (`Custody`), then the PeerIds the
//! record names. Also decodes the input as a bare placement record, as wardens and holders
//! exchange and store it. None may panic; a decoded certificate or record must re-encode to
//! bytes that decode to an equal value, and to a prefix of the bytes it came from (decoders
//! ignore trailing bytes, the encoding is otherwise unique).

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_node::fuzzing::decode_custody;
use zmesh_node::storage::custody::{record_node_ids, record_peers};
use zmesh_store::fuzzing::decode_chunk_entry;
use zmesh_wire::repair::PlacementRecord;
use zmesh_wire::store::OwnerAuth;
use zmesh_wire::{Reader, Writer};

fn check_record(bytes: &[u8]) {
    let Ok(record) = PlacementRecord::from_bytes(bytes) else { return };
    let again = record.to_bytes();
    assert!(bytes.starts_with(&again), "placement record re-encodes differently");
    assert_eq!(PlacementRecord::from_bytes(&again).ok(), Some(record.clone()));
    let peers = record_peers(&record);
    assert_eq!(peers.len(), record.holders.len());
    let named = record.holders.iter().filter(|h| !h.is_empty()).count();
    assert_eq!(record_node_ids(&record).len(), named);
}

fuzz_target!(|data: &[u8]| {
    check_record(data);
    let Ok(entry) = decode_chunk_entry(data) else { return };
    let Some(custody) = decode_custody(&entry) else { return };
    assert_eq!(custody.expires_at_ms, entry.expires_at_ms);
    let mut w = Writer::default();
    custody.certificate.encode(&mut w);
    assert!(entry.certificate.starts_with(&w.0), "certificate re-encodes differently");
    let again = OwnerAuth::decode(&mut Reader::new(&w.0)).expect("re-encoding decodes");
    assert_eq!(again, custody.certificate);
    match &custody.record {
        Some(record) => {
            assert_eq!(PlacementRecord::from_bytes(&entry.record).ok().as_ref(), Some(record));
            check_record(&entry.record);
        }
        None => {
            assert!(entry.record.is_empty() || PlacementRecord::from_bytes(&entry.record).is_err())
        }
    }
});
