//! Sealed sender: the relay sees only who a message is for, never who sent it.
//!
//! The sender's identity travels *inside* the encryption, as a [`SenderCertificate`] next to
//! the Olm message. The outer layer is an ECIES-style box to the recipient device's sealing key
//! (see [`DeviceKeys::sealing`](crate::prekeys::DeviceKeys::sealing)):
//!
//! 1. a fresh ephemeral X25519 key `e` per message; `s = X25519(e, recipient)`, refused if it
//!    is all-zero (a small-order recipient or ephemeral key);
//! 2. `key ‖ nonce = HKDF-SHA256(ikm = s, salt = none, info = INFO ‖ e_pub ‖ recipient)`, 44
//!    bytes; both public keys in `info` bind the key to this exact exchange, and a key is
//!    never reused (fresh `e`), so a derived nonce is safe;
//! 3. AES-256-GCM (the crate's `aead` module) over the padded inner plaintext, with the
//!    header (`version ‖ e_pub`) as associated data.
//!
//! ```text
//! sealed  = version u8 (= 1) ‖ e_pub [32] ‖ AES-256-GCM(inner) ‖ tag [16]
//! inner   = content_len u32 ‖ content ‖ zero padding
//! content = sender certificate [193] ‖ message_id [16] ‖ sent_at_ms u64 ‖ olm message
//! ```
//!
//! The whole sealed message is padded to a multiple of [`PAD_BLOCK`] bytes so its length
//! says little about the text. Opening verifies the certificate and, for a pre-key message,
//! that it names the certificate's Olm key; for a normal message the caller must decrypt with
//! the session whose remote keys match the certificate (an Olm message only decrypts under the
//! session that made it, which is what finally authenticates the sender).

use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::olm::{E2eAccount, MAX_BODY_LEN, MAX_PLAINTEXT_LEN, OlmCiphertext, OlmKind};
use crate::prekeys::{CERT_LEN, Reader, SenderCertificate, is_low_order};
use crate::{CryptoError, random_bytes};

/// Format version byte.
pub const VERSION: u8 = 1;
/// Sealed messages are a multiple of this many bytes long.
pub const PAD_BLOCK: usize = 256;
/// HKDF `info` prefix; the ephemeral and the recipient public keys follow it.
const INFO: &[u8] = b"zmesh/sealed-sender/v1";
/// `version ‖ e_pub`.
const HEADER_LEN: usize = 1 + 32;
/// Fixed part of the content: certificate, message id, timestamp, Olm kind and length.
const CONTENT_FIXED_LEN: usize = CERT_LEN + 16 + 8 + 1 + 4;
/// Longest content: the fixed part and the longest Olm body.
pub const MAX_CONTENT_LEN: usize = CONTENT_FIXED_LEN + MAX_BODY_LEN;
/// Longest sealed message accepted.
pub const MAX_SEALED_LEN: usize =
    (HEADER_LEN + 4 + MAX_CONTENT_LEN + TAG_LEN).next_multiple_of(PAD_BLOCK);

// Any plaintext a session encrypts fits a sealed message.
const _: () = assert!(MAX_BODY_LEN > MAX_PLAINTEXT_LEN + 512);

/// What a sealed message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedContent {
    /// Who sent it (checked by [`open`]).
    pub sender: SenderCertificate,
    /// Sender-chosen id, for de-duplication and acknowledgements.
    pub message_id: [u8; 16],
    /// Sender's clock when sent (Unix milliseconds).
    pub sent_at_ms: u64,
    /// The end-to-end encrypted message.
    pub ciphertext: OlmCiphertext,
}

impl SealedContent {
    /// Appends the content encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.sender.encode_into(out);
        out.extend_from_slice(&self.message_id);
        out.extend_from_slice(&self.sent_at_ms.to_be_bytes());
        self.ciphertext.encode_into(out);
    }

    /// The content encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTENT_FIXED_LEN + self.ciphertext.body.len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one content encoding (no certificate check).
    ///
    /// # Errors
    /// [`CryptoError::Truncated`], [`CryptoError::TooLong`], [`CryptoError::Malformed`],
    /// [`CryptoError::UnsupportedVersion`] or [`CryptoError::TrailingBytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes);
        let sender = SenderCertificate::decode(&mut r)?;
        let message_id = r.array("message id")?;
        let sent_at_ms = r.u64("sent_at")?;
        let ciphertext = OlmCiphertext::decode(&mut r)?;
        r.finish("sealed content")?;
        Ok(Self { sender, message_id, sent_at_ms, ciphertext })
    }
}

/// Derives the AES key and nonce for one exchange.
fn derive(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> (Zeroizing<[u8; KEY_LEN]>, [u8; NONCE_LEN]) {
    let mut okm = Zeroizing::new([0_u8; KEY_LEN + NONCE_LEN]);
    // Only fails for outputs over 255 hash lengths; 44 bytes is under two.
    #[allow(clippy::expect_used)]
    Hkdf::<Sha256>::new(None, shared)
        .expand_multi_info(&[INFO, ephemeral, recipient], okm.as_mut())
        .expect("44-byte HKDF output is valid");
    let mut key = Zeroizing::new([0_u8; KEY_LEN]);
    key.copy_from_slice(&okm[..KEY_LEN]);
    let mut nonce = [0_u8; NONCE_LEN];
    nonce.copy_from_slice(&okm[KEY_LEN..]);
    (key, nonce)
}

/// Seals `content` to the device whose sealing key is `recipient_sealing_key`.
///
/// # Errors
/// [`CryptoError::TooLong`] if the Olm body exceeds [`MAX_BODY_LEN`],
/// [`CryptoError::LowOrderKey`] for a small-order recipient key.
pub fn seal(
    content: &SealedContent,
    recipient_sealing_key: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    let body_len = content.ciphertext.body.len();
    if body_len > MAX_BODY_LEN {
        return Err(CryptoError::TooLong { what: "olm message", len: body_len, max: MAX_BODY_LEN });
    }
    let mut secret = Zeroizing::new([0_u8; 32]);
    random_bytes(secret.as_mut());
    let ephemeral = StaticSecret::from(*secret);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*recipient_sealing_key));
    if !shared.was_contributory() {
        return Err(CryptoError::LowOrderKey);
    }
    let (key, nonce) = derive(shared.as_bytes(), &ephemeral_public, recipient_sealing_key);

    let content_len = CONTENT_FIXED_LEN + body_len;
    let total = (HEADER_LEN + 4 + content_len + TAG_LEN).next_multiple_of(PAD_BLOCK);
    let mut out = Vec::with_capacity(total);
    out.push(VERSION);
    out.extend_from_slice(&ephemeral_public);
    // content_len ≤ MAX_CONTENT_LEN, far below u32::MAX.
    out.extend_from_slice(&(content_len as u32).to_be_bytes());
    content.encode_into(&mut out);
    out.resize(total - TAG_LEN, 0);
    let (header, inner) = out.split_at_mut(HEADER_LEN);
    let tag = aead::seal_in_place(&key, &nonce, header, inner);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens a sealed message addressed to `recipient` and checks its sender certificate (and,
/// for a pre-key message, that the Olm sender key is the certified one). The Olm message inside
/// is still encrypted: hand it to the matching [`E2eSession`](crate::olm::E2eSession).
///
/// # Errors
/// [`CryptoError::TooShort`], [`CryptoError::TooLong`], [`CryptoError::Malformed`] (length not
/// a multiple of [`PAD_BLOCK`], bad inner framing or padding), [`CryptoError::UnsupportedVersion`],
/// [`CryptoError::LowOrderKey`], [`CryptoError::BadTag`] (not for this recipient, or altered),
/// the errors of [`SealedContent::from_bytes`] and [`SenderCertificate::verify`], and
/// [`CryptoError::SenderMismatch`].
pub fn open(sealed: &[u8], recipient: &E2eAccount) -> Result<SealedContent, CryptoError> {
    if sealed.len() < PAD_BLOCK {
        return Err(CryptoError::TooShort { len: sealed.len(), min: PAD_BLOCK });
    }
    if sealed.len() > MAX_SEALED_LEN {
        return Err(CryptoError::TooLong {
            what: "sealed message",
            len: sealed.len(),
            max: MAX_SEALED_LEN,
        });
    }
    if !sealed.len().is_multiple_of(PAD_BLOCK) {
        return Err(CryptoError::Malformed("sealed message length"));
    }
    let (header, rest) = sealed.split_at(HEADER_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    if header[0] != VERSION {
        return Err(CryptoError::UnsupportedVersion(header[0]));
    }
    let mut r = Reader::new(&header[1..]);
    let ephemeral_public: [u8; 32] = r.array("ephemeral key")?;
    let tag: [u8; TAG_LEN] = Reader::new(tag).array("tag")?;
    let shared = recipient.sealing_dh(&ephemeral_public);
    if !shared.was_contributory() {
        return Err(CryptoError::LowOrderKey);
    }
    let (key, nonce) = derive(shared.as_bytes(), &ephemeral_public, &recipient.sealing_key());
    let mut inner = Zeroizing::new(ciphertext.to_vec());
    aead::open_in_place(&key, &nonce, header, &mut inner, &tag)?;

    let mut r = Reader::new(&inner);
    let content_len = r.u32("sealed content length")? as usize;
    if content_len > r.rest().len() {
        return Err(CryptoError::Malformed("sealed content length"));
    }
    let content = SealedContent::from_bytes(r.bytes(content_len, "sealed content")?)?;
    if r.rest().iter().any(|&b| b != 0) {
        return Err(CryptoError::Malformed("sealed message padding"));
    }
    content.sender.verify()?;
    if content.ciphertext.kind == OlmKind::PreKey {
        let named =
            content.ciphertext.sender_curve_key().ok_or(CryptoError::Malformed("olm message"))?;
        if named != content.sender.device_keys().curve25519 {
            return Err(CryptoError::SenderMismatch);
        }
    }
    Ok(content)
}

/// `true` if `key` can be sealed to (not of small order). [`seal`] checks this too.
pub fn is_valid_recipient_key(key: &[u8; 32]) -> bool {
    !is_low_order(key)
}

#[cfg(test)]
mod tests;
