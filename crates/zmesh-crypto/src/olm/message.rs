//! The Olm message type that crosses this crate's API, and its byte encoding.

use vodozemac::olm::OlmMessage;

use super::MAX_BODY_LEN;
use crate::CryptoError;
use crate::prekeys::Reader;

/// The two kinds of Olm message (numbered as vodozemac and libolm number them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OlmKind {
    /// Sent until the first reply arrives; carries what the recipient needs to create the
    /// session (sender identity key, base key, the one-time key used).
    PreKey,
    /// An established session's message.
    Normal,
}

impl OlmKind {
    fn to_u8(self) -> u8 {
        match self {
            Self::PreKey => 0,
            Self::Normal => 1,
        }
    }
}

/// An Olm message, as it travels inside a sealed envelope.
///
/// Encoding: `kind u8 (0 pre-key, 1 normal) ‖ len u32 (≤ MAX_BODY_LEN) ‖ body`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OlmCiphertext {
    /// Pre-key or normal.
    pub kind: OlmKind,
    /// vodozemac's binary encoding of the message.
    pub body: Vec<u8>,
}

impl OlmCiphertext {
    pub(super) fn from_olm(message: &OlmMessage) -> Self {
        match message {
            OlmMessage::PreKey(m) => Self { kind: OlmKind::PreKey, body: m.to_bytes() },
            OlmMessage::Normal(m) => Self { kind: OlmKind::Normal, body: m.to_bytes() },
        }
    }

    pub(super) fn to_olm(&self) -> Result<OlmMessage, CryptoError> {
        OlmMessage::from_parts(usize::from(self.kind.to_u8()), &self.body)
            .map_err(|_| CryptoError::Malformed("olm message"))
    }

    /// For a pre-key message: the sender's Olm Curve25519 identity key it names. `None` for a
    /// normal message or an undecodable body.
    pub fn sender_curve_key(&self) -> Option<[u8; 32]> {
        match self.to_olm().ok()? {
            OlmMessage::PreKey(m) => Some(m.identity_key().to_bytes()),
            OlmMessage::Normal(_) => None,
        }
    }

    /// For a pre-key message: the id of the session it belongs to, so a receiver that already
    /// created that session (more pre-key messages arrive until it replies) decrypts with it
    /// instead of creating another.
    pub fn session_id(&self) -> Option<String> {
        match self.to_olm().ok()? {
            OlmMessage::PreKey(m) => Some(m.session_id()),
            OlmMessage::Normal(_) => None,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.kind.to_u8());
        // Bodies are at most MAX_BODY_LEN when made or decoded here; a caller-built longer body
        // is refused by the decoder, never silently cut.
        out.extend_from_slice(&u32::try_from(self.body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&self.body);
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.body.len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one encoded message.
    ///
    /// # Errors
    /// [`CryptoError::Truncated`], [`CryptoError::Malformed`] (unknown kind),
    /// [`CryptoError::TooLong`] or [`CryptoError::TrailingBytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes);
        let message = Self::decode(&mut r)?;
        r.finish("olm message")?;
        Ok(message)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, CryptoError> {
        let kind = match r.u8("olm message kind")? {
            0 => OlmKind::PreKey,
            1 => OlmKind::Normal,
            _ => return Err(CryptoError::Malformed("olm message kind")),
        };
        let len = r.u32("olm message length")? as usize;
        if len > MAX_BODY_LEN {
            return Err(CryptoError::TooLong { what: "olm message", len, max: MAX_BODY_LEN });
        }
        let body = r.bytes(len, "olm message body")?.to_vec();
        Ok(Self { kind, body })
    }
}
