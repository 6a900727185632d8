//! Prekey bundles: publishing this device's as a signed record, and checking a fetched one.

use zmesh_crypto::prekeys::PrekeyBundle;
use zmesh_crypto::sign::PublicIdentity;
use zmesh_wire::msg::{MAX_BUNDLE_LEN, RecordKind, SignedRecord};

use super::{BUNDLE_TTL_MS, MIN_UNPUBLISHED_KEYS, Messenger, hex_address};
use crate::{ClientError, Result};

/// Checks a fetched bundle record for `address` and returns the bundle inside: the record is
/// a bundle, its owner key hashes to `address`, its signature verifies, it has not expired at
/// `now_ms`, and the bundle is signed by the same identity.
///
/// # Errors
/// [`ClientError::BadBundle`] saying which check failed.
pub fn bundle_from_record(
    record: &SignedRecord,
    address: &[u8; 32],
    now_ms: u64,
) -> Result<PrekeyBundle> {
    let bad = |reason: String| ClientError::BadBundle { address: hex_address(address), reason };
    if record.kind != RecordKind::Bundle {
        return Err(bad("the record is not a prekey bundle".into()));
    }
    let owner = PublicIdentity::from_bytes(&record.owner_key).map_err(|e| bad(e.to_string()))?;
    if owner.address() != *address {
        return Err(bad("the record belongs to another address".into()));
    }
    owner
        .verify(&record.signed_bytes(), &record.signature)
        .map_err(|_| bad("the record's signature does not verify".into()))?;
    if record.expires_at_ms <= now_ms {
        return Err(bad("the record has expired".into()));
    }
    let bundle = PrekeyBundle::from_bytes(&record.value).map_err(|e| bad(e.to_string()))?;
    if bundle.identity_key() != owner.as_bytes() {
        return Err(bad("the bundle is signed by another identity than the record".into()));
    }
    bundle.verify().map_err(|e| bad(e.to_string()))?;
    Ok(bundle)
}

/// Verifies a bundle and that it belongs to `recipient`.
pub(super) fn check_bundle(
    bundle: PrekeyBundle,
    recipient: &[u8; 32],
) -> Result<(PrekeyBundle, PublicIdentity)> {
    let bad = |reason: String| ClientError::BadBundle { address: hex_address(recipient), reason };
    let identity = bundle.verify().map_err(|e| bad(e.to_string()))?;
    if identity.address() != *recipient {
        return Err(bad("it belongs to another address".into()));
    }
    Ok((bundle, identity))
}

impl Messenger {
    /// A signed [`RecordKind::Bundle`] record of this device's prekey bundle, to publish.
    /// Generates one-time keys so at least [`MIN_UNPUBLISHED_KEYS`] go out, marks them
    /// published, and saves before returning (a published key must never be lost). The record's
    /// version is `now_ms`, and it expires [`BUNDLE_TTL_MS`] later.
    ///
    /// # Errors
    /// I/O errors saving the state.
    pub fn bundle_record(&mut self, now_ms: u64) -> Result<SignedRecord> {
        self.transaction(|m| {
            let account = &mut m.state.account;
            let unpublished = account.unpublished_one_time_keys().len();
            if unpublished < MIN_UNPUBLISHED_KEYS {
                account.generate_one_time_keys(MIN_UNPUBLISHED_KEYS - unpublished);
            }
            let bundle = account
                .prekey_bundle(&m.signing, now_ms)
                .map_err(|e| ClientError::Encryption(e.to_string()))?;
            let value = bundle.to_bytes();
            if value.len() > MAX_BUNDLE_LEN {
                return Err(ClientError::Encryption(format!(
                    "prekey bundle of {} bytes, at most {MAX_BUNDLE_LEN} fit a record",
                    value.len()
                )));
            }
            let mut record = SignedRecord {
                kind: RecordKind::Bundle,
                owner_key: *m.signing.public().as_bytes(),
                version: now_ms,
                expires_at_ms: now_ms.saturating_add(BUNDLE_TTL_MS),
                value,
                signature: [0; 64],
            };
            record.signature = m.signing.sign(&record.signed_bytes());
            m.state.account.mark_published();
            m.save()?;
            Ok(record)
        })
    }
}
