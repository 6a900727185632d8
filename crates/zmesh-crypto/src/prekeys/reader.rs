//! Bounded reading of untrusted bytes, shared by every decoder of this crate's message formats.

use crate::CryptoError;

/// A cursor over untrusted bytes: every read checks the remaining length first, so a decoder
/// built on it cannot read past the end or allocate more than it was given.
#[derive(Debug)]
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    pub(crate) fn bytes(
        &mut self,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], CryptoError> {
        if self.0.len() < len {
            return Err(CryptoError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], CryptoError> {
        let mut out = [0_u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CryptoError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, CryptoError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CryptoError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, CryptoError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// The unread rest.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.0
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), CryptoError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CryptoError::TrailingBytes { what, extra: self.0.len() })
        }
    }
}
