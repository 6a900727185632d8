//! The receiving side: opening the sealed layer, finding or creating the Olm session, and
//! duplicate suppression.

use zeroize::Zeroizing;
use zmesh_crypto::CryptoError;
use zmesh_crypto::olm::{E2eSession, OlmCiphertext, OlmKind};
use zmesh_crypto::prekeys::SenderCertificate;
use zmesh_crypto::sealed;
use zmesh_crypto::sign::PublicIdentity;
use zmesh_types::Key256;

use super::state::{FINGERPRINT_LEN, Fingerprint};
use super::{Incoming, Messenger, content, hex_address};
use crate::{ClientError, Result};

/// SHA-256 of the Olm message, cut to [`FINGERPRINT_LEN`] bytes.
fn fingerprint(ciphertext: &OlmCiphertext) -> Fingerprint {
    let hash = Key256::hash(&ciphertext.to_bytes());
    let mut out = [0_u8; FINGERPRINT_LEN];
    out.copy_from_slice(&hash.0[..FINGERPRINT_LEN]);
    out
}

impl Messenger {
    pub(super) fn decrypt_locked(&mut self, sealed: &[u8]) -> Result<Incoming> {
        let opened = sealed::open(sealed, &self.state.account).map_err(|e| match e {
            CryptoError::BadTag => ClientError::NotForThisIdentity,
            other => ClientError::MalformedMessage(other.to_string()),
        })?;
        let sender =
            opened.sender.verify().map_err(|e| ClientError::MalformedMessage(e.to_string()))?;
        let from = sender.address();
        if from == self.address {
            return Err(ClientError::MalformedMessage(
                "the message claims to come from this identity".into(),
            ));
        }
        let id = opened.message_id;
        let print = fingerprint(&opened.ciphertext);
        let seen = self.state.seen.get(&id).copied();
        if seen == Some(print) {
            return Ok(Incoming {
                id,
                from,
                sent_at_ms: opened.sent_at_ms,
                text: String::new(),
                duplicate: true,
            });
        }

        let plain = Zeroizing::new(self.olm_decrypt(sender, &opened.sender, &opened.ciphertext)?);
        let parsed = content::decode(&plain).and_then(|text| {
            if text.id != id || text.sent_at_ms != opened.sent_at_ms {
                Err("the sealed and the encrypted message id or time differ".to_owned())
            } else {
                Ok(text)
            }
        });
        self.state.seen.insert(id, print);
        self.save()?;
        let text = parsed.map_err(ClientError::MalformedMessage)?;
        Ok(Incoming {
            id,
            from,
            sent_at_ms: text.sent_at_ms,
            text: text.text,
            duplicate: seen.is_some(),
        })
    }

    /// Decrypts with the sender's matching session (a new inbound one for a new pre-key
    /// message), makes that session the preferred one, and records the sender's certificate.
    fn olm_decrypt(
        &mut self,
        sender: PublicIdentity,
        cert: &SenderCertificate,
        ciphertext: &OlmCiphertext,
    ) -> Result<Vec<u8>> {
        let from = sender.address();
        let undecryptable = |e: CryptoError| ClientError::UndecryptableMessage {
            from: hex_address(&from),
            reason: e.to_string(),
        };
        let keys = *cert.device_keys();
        let contact = self.state.contacts.get_mut(&from);
        let sessions = contact.map(|c| c.sessions.as_mut_slice()).unwrap_or_default();
        let mut found = None;
        let mut last_error = None;
        match ciphertext.kind {
            OlmKind::PreKey => {
                let wanted = ciphertext.session_id();
                for (i, session) in sessions.iter_mut().enumerate() {
                    if session.remote_device_keys().curve25519 == keys.curve25519
                        && Some(session.session_id()) == wanted
                    {
                        found = Some((i, session.decrypt(ciphertext).map_err(undecryptable)?));
                        break;
                    }
                }
            }
            OlmKind::Normal => {
                for (i, session) in sessions.iter_mut().enumerate() {
                    if session.remote_device_keys().curve25519 != keys.curve25519 {
                        continue;
                    }
                    // A failed decryption leaves a vodozemac session unchanged.
                    match session.decrypt(ciphertext) {
                        Ok(plain) => {
                            found = Some((i, plain));
                            break;
                        }
                        Err(e) => last_error = Some(e),
                    }
                }
            }
        }
        let plain = match found {
            Some((i, plain)) => {
                let contact = self.state.contact_entry(sender, keys, Some(*cert))?;
                if let Some(head) = contact.sessions.get_mut(..=i) {
                    head.rotate_right(1);
                }
                plain
            }
            None if ciphertext.kind == OlmKind::PreKey => {
                let (session, plain) =
                    E2eSession::inbound(&mut self.state.account, cert, ciphertext)
                        .map_err(undecryptable)?;
                self.state.contact_entry(sender, keys, Some(*cert))?.add_session(session);
                plain
            }
            None => {
                return Err(match last_error {
                    Some(e) => undecryptable(e),
                    None => ClientError::UnknownSession { from: hex_address(&from) },
                });
            }
        };
        Ok(plain)
    }
}
