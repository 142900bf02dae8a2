//! The storage subsystem's one error type. The broker maps each variant to a Kafka error code
//! once, at the protocol edge; storage itself never knows about the wire.

use std::io;
use std::sync::Arc;

/// `Clone`, so that every caller of one shared operation (a group commit's fdatasync) gets
/// the same error: the I/O error is shared, keeping its OS code for `is_disk_full`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A record batch failed validation (length, magic, CRC-32C, offsets). Kafka: CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(#[from] crate::storage::batch::BatchError),

    /// A batch larger than the topic's `max.message.bytes`. Kafka: MESSAGE_TOO_LARGE.
    #[error("record batch of {size_bytes} bytes exceeds max.message.bytes {limit_bytes}")]
    BatchTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },

    /// A `CreateTime` timestamp outside the topic's `message.timestamp.before.max.ms` /
    /// `after.max.ms` window. Kafka: INVALID_TIMESTAMP.
    #[error(
        "timestamp {timestamp_ms} of a record in batch {batch_index} is out of range: it should \
         be within [{min_ms}, {max_ms}]"
    )]
    InvalidTimestamp {
        batch_index: usize,
        timestamp_ms: i64,
        min_ms: i64,
        max_ms: i64,
    },

    /// The requested offset lies outside [log start offset, log end offset]. Kafka:
    /// OFFSET_OUT_OF_RANGE.
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },

    /// Free space fell below the configured threshold, or the disk is really full; reads keep
    /// working. Kafka: KAFKA_STORAGE_ERROR.
    #[error("disk almost full: {free_bytes} bytes free, writes refused below {threshold_bytes}")]
    DiskFull {
        free_bytes: u64,
        threshold_bytes: u64,
    },

    /// The filesystem itself ran out of space (ENOSPC) while reserving blocks; nothing was
    /// written. Kafka: KAFKA_STORAGE_ERROR.
    #[error("no space left on device: {context}")]
    NoSpace { context: String },

    /// An earlier write to this log failed; the log refuses writes until it is reopened (which
    /// recovers it from disk). Kafka: KAFKA_STORAGE_ERROR.
    #[error("log is failed after an earlier I/O error: {0}")]
    LogFailed(String),

    /// Any other I/O error from the file layer. Kafka: KAFKA_STORAGE_ERROR.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<io::Error>,
    },
}

impl StorageError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.kind() == io::ErrorKind::StorageFull
        {
            return StorageError::NoSpace {
                context: context.into(),
            };
        }
        StorageError::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// True for errors that say the disk or the log is unusable (as opposed to a bad request).
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            StorageError::DiskFull { .. }
                | StorageError::NoSpace { .. }
                | StorageError::LogFailed(_)
                | StorageError::Io { .. }
        )
    }

    /// True when the write was refused for lack of space and may succeed once space returns.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            StorageError::DiskFull { .. } | StorageError::NoSpace { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;
