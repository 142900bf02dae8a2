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

    /// The last reading is younger than `max_age`.
    fn is_fresh(&self, max_age: Duration) -> bool {
        self.refreshed_at
            .get()
            .is_some_and(|at| at.elapsed() < max_age)
    }

    /// Re-reads free space (statvfs, off the shard thread) if the last reading is older than
    /// `max_age`. Concurrent callers share one reading.
    pub async fn refresh(&self, max_age: Duration) -> Result<()> {
        let FreeSpaceSource::Filesystem(dir) = &self.source else {
            return Ok(());
        };
        if self.is_fresh(max_age) || self.refreshing.replace(true) {
            return Ok(());
        }
        let reading = file::free_space_bytes(dir).await;
        self.refreshing.set(false);
        let free_bytes = reading?;
        let was_refusing = self.free_bytes.get() < self.threshold_bytes;
        self.free_bytes.set(free_bytes);
        self.refreshed_at.set(Some(Instant::now()));
        let refusing = free_bytes < self.threshold_bytes;
        // One line at each change, so that an operator sees when produce stopped and
        // started being refused, without a line per refused request.
        if refusing && !was_refusing {
            tracing::warn!(dir = %dir.display(), free_bytes, threshold_bytes = self.threshold_bytes,
                "disk almost full: produce is refused (KAFKA_STORAGE_ERROR) until space returns; reads go on");
        } else if was_refusing && !refusing {
            tracing::info!(dir = %dir.display(), free_bytes, threshold_bytes = self.threshold_bytes,
                "disk space returned: produce is accepted again");
        }
        Ok(())
    }

    /// `refresh` for a write: once a first reading exists, a stale one is re-read in a task of
    /// its own and the write goes on with the last one. The reading runs on the executor's
    /// blocking thread, which a retention delete (tens of ms on a disk mounted with `discard`)
    /// or a directory sync can hold; a write must not queue behind those.
    pub async fn refresh_for_write(self: &Rc<Self>, max_age: Duration) -> Result<()> {
        if self.refreshed_at.get().is_none() {
            return self.refresh(max_age).await;
        }
        if self.is_fresh(max_age) || self.refreshing.get() {
            return Ok(());
        }
        let guard = Rc::clone(self);
        crate::runtime::spawn_local(async move {
            if let Err(error) = guard.refresh(max_age).await {
                tracing::warn!(%error, "free-space check failed; using the last reading");
            }
        })
        .detach();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_reads_free_space_first_and_then_never_waits_for_a_fresh_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        crate::runtime::run_on_executor("space-test", move || async move {
            let guard = Rc::new(SpaceGuard::for_dir(&path, 0));
            guard.refresh_for_write(Duration::ZERO).await.unwrap();
            let first = guard
                .refreshed_at
                .get()
                .expect("the first write waits for a reading");
            assert!(guard.free_bytes() < u64::MAX);

            // A stale reading is re-read beside the write, not before it goes on.
            guard.refresh_for_write(Duration::ZERO).await.unwrap();
            assert_eq!(guard.refreshed_at.get(), Some(first));
            let deadline = Instant::now() + Duration::from_secs(10);
            while guard.refreshed_at.get() == Some(first) {
                assert!(
                    Instant::now() < deadline,
                    "the background reading never came"
                );
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            // A fresh one is not re-read at all.
            let second = guard.refreshed_at.get();
            guard
                .refresh_for_write(Duration::from_secs(60))
                .await
                .unwrap();
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert_eq!(guard.refreshed_at.get(), second);
        })
        .unwrap();
    }
}
