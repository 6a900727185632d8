/// Why bytes from a peer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("empty frame")]
    EmptyFrame,
    #[error("truncated: needed {needed} more bytes for {field}")]
    Truncated { field: &'static str, needed: usize },
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    #[error("{field}: {count} items exceeds the limit of {max}")]
    TooMany { field: &'static str, count: usize, max: usize },
    #[error("{field}: {len} bytes is outside {min}..={max}")]
    BadLength { field: &'static str, len: usize, min: usize, max: usize },
    #[error("{field}: not valid UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("{field}: invalid value {value}")]
    BadValue { field: &'static str, value: u64 },
}

impl WireError {
    /// Whether the frame was well-formed but of a type this build does not know. Per the
    /// versioning rules such frames are ignored, not treated as a protocol violation.
    pub fn is_unknown_type(&self) -> bool {
        matches!(self, WireError::UnknownType(_))
    }
}
