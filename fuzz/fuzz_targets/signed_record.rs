//! Fuzzes the checks of the signed records users publish in the DHT (presence and prekey
//! bundle), whose bytes come from any peer: `PresenceValue::from_bytes`, the holder's
//! `verify_record` and the fetching client's `bundle_from_record`. None may panic.
//!
//! The input is decoded as a presence value on its own (a decoded value must re-encode to bytes
//! that decode to an equal value), then read as the fields of a record. Random bytes never
//! carry a valid signature, so a flag has the record signed by a fixed identity, which drives
//! the time checks and the value decoders behind the signature; another flag puts a valid
//! bundle of that identity in the value. A record the holder accepts must be filed under its
//! owner's record key, and a bundle record the holder accepts must be accepted by clients too.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use zmesh_client::messenger::bundle_from_record;
use zmesh_crypto::olm::E2eAccount;
use zmesh_crypto::sign::{PublicIdentity, SigningIdentity};
use zmesh_fuzz::Input;
use zmesh_node::messaging::records::{PresenceValue, record_key, sign_record, verify_record};
use zmesh_wire::msg::{RecordKind, SignedRecord};

static OWNER: LazyLock<SigningIdentity> =
    LazyLock::new(|| SigningIdentity::from_secret_bytes(&[0x42; 32]));

/// A valid prekey bundle of [`OWNER`].
static BUNDLE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut account = E2eAccount::new();
    account.generate_one_time_keys(4);
    account.prekey_bundle(&OWNER, 1).expect("a fresh account makes a bundle").to_bytes()
});

const BUNDLE_KIND: u8 = 1;
const SIGN: u8 = 2;
const VALID_BUNDLE: u8 = 4;
/// Version and expiry are offsets from `now_ms` (behind it and ahead of it), so the fuzzer
/// reaches the value checks without guessing a time window.
const RELATIVE_TIMES: u8 = 8;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = PresenceValue::from_bytes(data) {
        let again = PresenceValue::from_bytes(&value.to_bytes()).expect("re-encoding decodes");
        assert_eq!(again, value, "re-encoding decodes to a different presence value");
    }

    let mut input = Input::new(data);
    let flags = input.u8();
    let kind = if flags & BUNDLE_KIND == 0 { RecordKind::Presence } else { RecordKind::Bundle };
    let now_ms = input.u64();
    let (mut version, mut expires_at_ms) = (input.u64(), input.u64());
    if flags & RELATIVE_TIMES != 0 {
        version = now_ms.saturating_sub(version & 0xffff_ffff);
        expires_at_ms = now_ms.saturating_add(expires_at_ms & 0xff_ffff_ffff);
    }
    let owner_key = input.array::<32>();
    let signature = input.array::<64>();
    let value = if flags & VALID_BUNDLE != 0 { BUNDLE.clone() } else { input.rest().to_vec() };
    let record = if flags & SIGN != 0 {
        sign_record(&OWNER, kind, value, version, expires_at_ms)
    } else {
        SignedRecord { kind, owner_key, version, expires_at_ms, value, signature }
    };

    let address =
        PublicIdentity::from_bytes(&record.owner_key).map_or([0; 32], |owner| owner.address());
    let fetched = bundle_from_record(&record, &address, now_ms);
    if let Ok(verified) = verify_record(&record, now_ms) {
        assert_eq!(verified.address, address, "accepted under another address");
        assert_eq!(verified.key, record_key(kind, &address), "accepted under another key");
        match kind {
            RecordKind::Presence => {
                assert!(PresenceValue::from_bytes(&record.value).is_ok(), "bad presence accepted");
            }
            RecordKind::Bundle => {
                if let Err(e) = fetched {
                    panic!("a holder accepts a bundle record that clients refuse: {e}");
                }
            }
        }
    }
});
