//! The partition log: direct-IO segment files holding Kafka v2 record batches exactly as they
//! travel on the wire, with sparse offset and time indexes, a shard-local batch cache, group
//! commit, crash recovery, retention and truncation.
//!
//! Everything here is owned by one shard and must never block its thread: file I/O goes through
//! glommio (`file`), blocking filesystem calls through its blocking pool. Protocol parsing stays
//! out: storage sees record batches as bytes and header views, nothing more.

mod appender;
pub mod batch;
mod buffer_pool;
pub mod cache;
pub mod checkpoint;
pub mod codecs;
pub mod config;
mod error;
pub mod fifo_lock;
pub mod file;
mod index;
mod log;
pub mod notify;
mod scan;
pub mod segment;
pub mod space;
pub mod write_budget;

pub use buffer_pool::pooled_bytes as write_buffer_pool_bytes;
pub use cache::{BatchCache, CacheStats};
pub use config::LogConfig;
pub use error::{Result, StorageError};
pub use log::{AppendInfo, OpenReport, PartitionLog, ReadData, ReadLimits};
pub use segment::RecoveryReport;
pub use space::{FreeSpaceSource, SpaceGuard};

/// Wall-clock milliseconds since the Unix epoch, the unit of Kafka timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
