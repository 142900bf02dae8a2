//! Free-space guard for one data directory: writes are refused with a typed error while free
//! space is below a threshold, before the disk is truly full, and allowed again by themselves
//! once space returns. Reads are never refused. Shard-local: each shard refreshes its own view.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::error::{Result, StorageError};
use super::file;

/// Where the free-space figure comes from. Tests drive the guard with a fixed figure.
pub enum FreeSpaceSource {
    Filesystem(PathBuf),
    Fixed(Rc<Cell<u64>>),
}

pub struct SpaceGuard {
    source: FreeSpaceSource,
    threshold_bytes: u64,
    free_bytes: Cell<u64>,
    refreshed_at: Cell<Option<Instant>>,
    refreshing: Cell<bool>,
}

/// How stale a free-space reading may be before a write refreshes it.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(500);

impl SpaceGuard {
    pub fn new(source: FreeSpaceSource, threshold_bytes: u64) -> Self {
        SpaceGuard {
            source,
            threshold_bytes,
            free_bytes: Cell::new(u64::MAX),
            refreshed_at: Cell::new(None),
            refreshing: Cell::new(false),
        }
    }

    /// A guard that never refuses (threshold 0).
    pub fn unlimited() -> Self {
        SpaceGuard::new(FreeSpaceSource::Fixed(Rc::new(Cell::new(u64::MAX))), 0)
    }

    pub fn for_dir(dir: &Path, threshold_bytes: u64) -> Self {
        SpaceGuard::new(
            FreeSpaceSource::Filesystem(dir.to_path_buf()),
            threshold_bytes,
        )
    }

    pub fn threshold_bytes(&self) -> u64 {
        self.threshold_bytes
    }

    pub fn free_bytes(&self) -> u64 {
        match &self.source {
            FreeSpaceSource::Fixed(free) => free.get(),
            FreeSpaceSource::Filesystem(_) => self.free_bytes.get(),
        }
    }

    /// Re-reads free space (statvfs, off the shard thread) if the last reading is older than
    /// `max_age`. Concurrent callers share one reading.
    pub async fn refresh(&self, max_age: Duration) -> Result<()> {
        let FreeSpaceSource::Filesystem(dir) = &self.source else {
            return Ok(());
        };
        let fresh = self
            .refreshed_at
            .get()
            .is_some_and(|at| at.elapsed() < max_age);
        if fresh || self.refreshing.replace(true) {
            return Ok(());
        }
        let reading = file::free_space_bytes(dir).await;
        self.refreshing.set(false);
        self.free_bytes.set(reading?);
        self.refreshed_at.set(Some(Instant::now()));
        Ok(())
    }

    pub fn check_writable(&self) -> Result<()> {
        let free_bytes = self.free_bytes();
        if free_bytes < self.threshold_bytes {
            return Err(StorageError::DiskFull {
                free_bytes,
                threshold_bytes: self.threshold_bytes,
            });
        }
        Ok(())
    }
}
