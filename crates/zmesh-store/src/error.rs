use crate::mailbox::QuotaLimit;

/// Errors of the store. `kind()` gives the coarse class the node maps to API statuses
/// (`insufficient_storage` becomes HTTP 507).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The shard would push the store past its byte quota. `needed` is how many more bytes the
    /// write would take (for a replacement, only the growth), `free` what the quota has left.
    #[error("insufficient storage: need {needed} bytes, {free} free")]
    InsufficientStorage { needed: u64, free: u64 },
    /// A live shard under that key belongs to another owner.
    #[error("the shard belongs to another owner")]
    OwnerMismatch,
    /// The shard's expiry is not in the future.
    #[error("the shard has already expired")]
    Expired,
    /// The caller's shard is malformed: index out of range, data too long, or a checksum that
    /// does not match the data. The store's own state is fine.
    #[error("invalid shard: {0}")]
    Invalid(String),
    /// What is on disk cannot be decoded or fails its checksum.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A mailbox append would pass a limit: `used` of `max` is taken and the entry needs
    /// `needed` more (1 message, or its charged bytes). A relay answers the sender with a quota
    /// refusal; for [`QuotaLimit::TotalBytes`] another replica may still have room.
    #[error("mailbox quota exceeded ({limit}): {used} used + {needed} needed > {max}")]
    QuotaExceeded { limit: QuotaLimit, used: u64, needed: u64, max: u64 },
    /// A mailbox message body is longer than the store accepts.
    #[error("message body of {len} bytes exceeds the limit of {max}")]
    BodyTooLarge { len: u64, max: u64 },
    /// The database or the file system below it failed.
    #[error("database: {0}")]
    Db(String),
}

impl StoreError {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::InsufficientStorage { .. } => "insufficient_storage",
            StoreError::OwnerMismatch => "forbidden",
            StoreError::Expired => "expired",
            StoreError::Invalid(_) => "invalid",
            StoreError::QuotaExceeded { .. } => "quota",
            StoreError::BodyTooLarge { .. } => "too_large",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Db(_) => "io",
        }
    }
}

/// redb reports damage it detects itself as `Corrupted`; keep that class so callers can tell a
/// damaged file from a failing disk.
fn from_redb(err: redb::Error) -> StoreError {
    match err {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        other => StoreError::Db(other.to_string()),
    }
}

macro_rules! from_redb_errors {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for StoreError {
            fn from(err: $t) -> Self {
                from_redb(err.into())
            }
        }
    )*};
}

from_redb_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);
