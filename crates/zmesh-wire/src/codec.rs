use crate::{LEN_PREFIX, WireError};

/// A message that travels as one frame.
pub trait Message: Sized {
    /// Largest body this message type may have; larger frames are refused unread.
    const MAX_FRAME: usize;
    /// Appends the body (type byte first) to `w`.
    fn encode_body(&self, w: &mut Writer);
    /// Decodes a body. Must not panic or allocate more than the body's length on any input.
    fn decode_body(body: &[u8]) -> Result<Self, WireError>;
}

/// Encodes `msg` as a length-prefixed frame.
pub fn encode_frame<M: Message>(msg: &M) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.u32(0);
    msg.encode_body(&mut w);
    let body_len = (w.0.len() - LEN_PREFIX) as u32;
    w.0[..LEN_PREFIX].copy_from_slice(&body_len.to_be_bytes());
    w.0
}

/// Validates a frame's length prefix against `M::MAX_FRAME` before the body is read.
pub fn frame_body_len<M: Message>(prefix: [u8; LEN_PREFIX]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Err(WireError::EmptyFrame);
    }
    if len > M::MAX_FRAME {
        return Err(WireError::FrameTooLarge { len, max: M::MAX_FRAME });
    }
    Ok(len)
}

/// Decodes one frame from the front of `buf`: `Ok(None)` when more bytes are needed, else the
/// message and the number of bytes it used.
pub fn decode_frame<M: Message>(buf: &[u8]) -> Result<Option<(M, usize)>, WireError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = frame_body_len::<M>(*prefix)?;
    let Some(body) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    Ok(Some((M::decode_body(body)?, LEN_PREFIX + len)))
}

/// Big-endian writer.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// A byte string with a one-byte length; callers keep values within 255 bytes.
    pub fn short_bytes(&mut self, v: &[u8]) {
        let len = v.len().min(u8::MAX as usize);
        self.u8(len as u8);
        self.bytes(&v[..len]);
    }
}

/// Big-endian reader over a body that never reads past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated { field, needed: n - self.buf.len() });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A one-byte-length byte string whose length must lie in `min..=max`.
    pub fn short_bytes(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], WireError> {
        let len = self.u8(field)? as usize;
        if len < min || len > max {
            return Err(WireError::BadLength { field, len, min, max });
        }
        self.bytes(len, field)
    }

    /// A count prefix that must not exceed `max`; checked before any item is allocated.
    pub fn count_u8(&mut self, field: &'static str, max: usize) -> Result<usize, WireError> {
        let count = self.u8(field)? as usize;
        check_count(field, count, max)
    }

    pub fn count_u16(&mut self, field: &'static str, max: usize) -> Result<usize, WireError> {
        let count = self.u16(field)? as usize;
        check_count(field, count, max)
    }
}

fn check_count(field: &'static str, count: usize, max: usize) -> Result<usize, WireError> {
    if count > max {
        return Err(WireError::TooMany { field, count, max });
    }
    Ok(count)
}
