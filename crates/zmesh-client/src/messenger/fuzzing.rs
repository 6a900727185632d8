//! Entry points for fuzz targets only: the decoders of the message content (the plaintext a
//! sender encrypted, so any sender controls it) and of the state file's plaintext. Not part of
//! the API; nothing here changes how the messenger behaves.

use zmesh_crypto::prekeys::DeviceKeys;

use super::content;
use super::state::State;

/// Decodes a message's content into its id, sending time and text.
pub fn decode_content(plain: &[u8]) -> Result<([u8; 16], u64, String), String> {
    content::decode(plain).map(|c| (c.id, c.sent_at_ms, c.text))
}

/// Encodes a text message's content, as the sender does.
pub fn encode_content(id: &[u8; 16], sent_at_ms: u64, text: &str) -> Vec<u8> {
    content::encode(id, sent_at_ms, text).to_vec()
}

/// One contact of a decoded state, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSummary {
    pub address: [u8; 32],
    pub identity: [u8; 32],
    pub keys: DeviceKeys,
    pub cert: Option<Vec<u8>>,
    pub session_ids: Vec<String>,
}

/// What a decoded state holds, comparable across a re-encoding (pickles are sealed with fresh
/// nonces, so the bytes themselves differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSummary {
    /// The account's Curve25519, Ed25519 and sealing keys.
    pub account_keys: [[u8; 32]; 3],
    pub contacts: Vec<ContactSummary>,
    /// The encoded list of seen message ids (count and entries, oldest first).
    pub seen: Vec<u8>,
}

/// Decodes the plaintext of a state file under `key`, then encodes the state again; returns
/// what it holds and the new plaintext.
pub fn decode_state(plain: &[u8], key: &[u8; 32]) -> Result<(StateSummary, Vec<u8>), String> {
    let state = State::decode(plain, key)?;
    let encoded = state.encode(key).to_vec();
    let contacts = state
        .contacts
        .iter()
        .map(|(address, c)| ContactSummary {
            address: *address,
            identity: *c.identity.as_bytes(),
            keys: c.keys,
            cert: c.cert.as_ref().map(|cert| cert.to_bytes()),
            session_ids: c.sessions.iter().map(|s| s.session_id()).collect(),
        })
        .collect();
    // The seen ids close the encoding: a count, then 24 bytes each.
    let seen_len = 4 + state.seen.len() * (16 + super::state::FINGERPRINT_LEN);
    let seen = encoded.get(encoded.len().saturating_sub(seen_len)..).unwrap_or_default().to_vec();
    let account = &state.account;
    let summary = StateSummary {
        account_keys: [account.curve25519_key(), account.ed25519_key(), account.sealing_key()],
        contacts,
        seen,
    };
    Ok((summary, encoded))
}
