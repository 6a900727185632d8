//! The plaintext inside each Olm message: a small self-describing format, so that other kinds of
//! content (receipts, attachments) can follow without guessing.
//!
//! ```text
//! plain = version u8 (= 1) ‖ kind u8 (1 = text) ‖ message_id [16] ‖ sent_at_ms u64
//!         ‖ text_len u32 (≤ MAX_TEXT_LEN) ‖ text (UTF-8)
//! ```
//!
//! The id and timestamp repeat those of the sealed layer: the sealed layer is authenticated only
//! as "for this recipient" (anyone may seal to a public key), while the Olm layer is
//! authenticated as "from this sender", so the receiver checks that both agree.

use zeroize::Zeroizing;
use zmesh_crypto::olm::MAX_PLAINTEXT_LEN;
use zmesh_wire::Reader;

/// Format version this build writes and reads.
pub const CONTENT_VERSION: u8 = 1;
/// Content kind of a text message.
pub const KIND_TEXT: u8 = 1;
/// Fixed part of the plaintext: version, kind, id, timestamp, text length.
pub const CONTENT_FIXED_LEN: usize = 1 + 1 + 16 + 8 + 4;
/// Longest text (in UTF-8 bytes) one message carries.
pub const MAX_TEXT_LEN: usize = MAX_PLAINTEXT_LEN - CONTENT_FIXED_LEN;

/// A decoded text message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TextContent {
    pub id: [u8; 16],
    pub sent_at_ms: u64,
    pub text: String,
}

/// Encodes a text message; the caller has checked `text.len() <= MAX_TEXT_LEN`.
pub(super) fn encode(id: &[u8; 16], sent_at_ms: u64, text: &str) -> Zeroizing<Vec<u8>> {
    // Sized once, so no reallocation leaves a copy of the text behind.
    let mut out = Zeroizing::new(Vec::with_capacity(CONTENT_FIXED_LEN + text.len()));
    out.push(CONTENT_VERSION);
    out.push(KIND_TEXT);
    out.extend_from_slice(id);
    out.extend_from_slice(&sent_at_ms.to_be_bytes());
    // text.len() <= MAX_TEXT_LEN < u32::MAX (checked by the caller).
    out.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Decodes a plaintext made by [`encode`]; the error says what is wrong, for the user.
pub(super) fn decode(plain: &[u8]) -> Result<TextContent, String> {
    let mut r = Reader::new(plain);
    let version = r.u8("content version").map_err(|e| e.to_string())?;
    if version != CONTENT_VERSION {
        return Err(format!("unsupported content version {version}"));
    }
    let kind = r.u8("content kind").map_err(|e| e.to_string())?;
    if kind != KIND_TEXT {
        return Err(format!("unsupported content kind {kind}"));
    }
    let id = r.array::<16>("message id").map_err(|e| e.to_string())?;
    let sent_at_ms = r.u64("sent_at").map_err(|e| e.to_string())?;
    let len = r.u32("text length").map_err(|e| e.to_string())? as usize;
    if len > MAX_TEXT_LEN {
        return Err(format!("text of {len} bytes, at most {MAX_TEXT_LEN} allowed"));
    }
    let bytes = r.bytes(len, "text").map_err(|e| e.to_string())?;
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes after the text", r.remaining()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "text is not UTF-8".to_owned())?;
    Ok(TextContent { id, sent_at_ms, text: text.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let id = [7_u8; 16];
        let plain = encode(&id, 42, "héllo");
        assert_eq!(plain.len(), CONTENT_FIXED_LEN + "héllo".len());
        let text = decode(&plain).unwrap();
        assert_eq!(text, TextContent { id, sent_at_ms: 42, text: "héllo".into() });
        assert_eq!(decode(&encode(&id, 0, "")).unwrap().text, "");
        let long = "x".repeat(MAX_TEXT_LEN);
        assert!(encode(&id, 1, &long).len() <= MAX_PLAINTEXT_LEN);
        assert_eq!(decode(&encode(&id, 1, &long)).unwrap().text.len(), MAX_TEXT_LEN);
    }

    #[test]
    fn malformed_plaintexts_are_refused() {
        let good = encode(&[1; 16], 5, "text").to_vec();
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).unwrap_err().contains("trailing"));
        let mut version = good.clone();
        version[0] = 2;
        assert!(decode(&version).unwrap_err().contains("version"));
        let mut kind = good.clone();
        kind[1] = 9;
        assert!(decode(&kind).unwrap_err().contains("kind"));
        let mut huge = good.clone();
        huge[26..30].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).unwrap_err().contains("at most"));
        let mut bad_utf8 = good;
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert!(decode(&bad_utf8).unwrap_err().contains("UTF-8"));
    }
}
