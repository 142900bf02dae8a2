//! One segment of a partition log: `<base offset>.log` holding record batches exactly as they
//! travel on the wire, with its sparse `.index` and `.timeindex`. The last segment of a log is
//! active (appended to through an `Appender`); the others are sealed: synced, cut to their
//! exact size, immutable.
//!
//! Index entries reach their files only after the log bytes they point at are durable, so a
//! valid index entry found at recovery proves the log before it is whole: recovery validates
//! the last entries, then scans the log only from there.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::sync::Semaphore;

use super::appender::{Appender, CopyCheck};
use super::batch::{self, BATCH_HEADER_SIZE_BYTES};
use super::config::LogConfig;
use super::error::{Result, StorageError};
use super::file::{self, DirectFile};
use super::index::{
    self, IndexFiles, OffsetEntry, SegmentIndex, TimeEntry, OFFSET_ENTRY_SIZE_BYTES,
    TIME_ENTRY_SIZE_BYTES,
};
use super::scan::{self, ScanStop};

mod open;
mod read;

pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Largest single disk read for a fetch.
const READ_SIZE_MAX_BYTES: usize = 16 * 1024 * 1024;

pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset named by a segment's `.log` file name.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(LOG_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    log: DirectFile,
    appender: RefCell<Option<Rc<Appender>>>,
    index: RefCell<SegmentIndex>,
    state: RefCell<SegmentState>,
    /// Appended batches not yet wholly on disk, oldest first, served to readers from memory.
    /// Bounded by the appender's unwritten bytes (writes in flight plus the unflushed tail).
    pending: RefCell<VecDeque<PendingBatch>>,
    /// Serialises appends to the index files (from syncs and from sealing).
    index_write_lock: Semaphore,
    /// Index entries already handed to the index files.
    persisted: Cell<(usize, usize)>,
    /// Whether a damaged stored batch was logged already.
    damage_reported: Cell<bool>,
}

#[derive(Debug, Clone)]
struct SegmentState {
    size_bytes: u64,
    next_offset: i64,
    /// Largest batch max timestamp; `i64::MIN` while empty.
    max_timestamp_ms: i64,
    bytes_since_index: u64,
    /// When the first batch arrived, for `segment.ms`.
    first_append_ms: Option<i64>,
    sealed: bool,
}

/// The append path checks record-set CRCs while copying the bytes to the file.
impl CopyCheck for batch::RecordSetCrc<'_> {
    fn update(&mut self, block: &[u8]) {
        batch::RecordSetCrc::update(self, block);
    }

    fn finish(&self) -> Result<()> {
        Ok(batch::RecordSetCrc::finish(self)?)
    }
}

struct PendingBatch {
    end_position: u64,
    base_offset: i64,
    last_offset: i64,
    bytes: Bytes,
}

/// What recovery found in the active segment.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub scanned_bytes: u64,
    pub truncated_bytes: u64,
    pub invalid_reason: Option<String>,
    /// Leader epochs of the scanned batches, in log order: (epoch, first offset).
    pub epochs: Vec<(i32, i64)>,
}

impl RecoveryReport {
    /// Adds what recovering a later segment found: `open` may recover several in log order.
    pub fn absorb(&mut self, later: RecoveryReport) {
        self.scanned_bytes += later.scanned_bytes;
        self.truncated_bytes += later.truncated_bytes;
        self.invalid_reason = self.invalid_reason.take().or(later.invalid_reason);
        self.epochs.extend(later.epochs);
    }
}

/// Whether `Segment::append` checks the record set's CRCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcCheck {
    /// While copying the bytes to the file: one pass over them for both.
    DuringCopy,
    /// The caller checked them (a `LogAppendTime` log must, before it re-signs the batches).
    AlreadyDone,
}

/// What a new segment reserves of its log file when it is created.
#[derive(Debug, Clone, Copy)]
pub enum Reservation {
    /// Nothing until the first append: a segment nobody is waiting to write to (a new or
    /// truncated log, a roll by time) takes no disk space yet.
    Nothing,
    /// The first preallocation step, larger when the segment before was `hot` (see
    /// `Appender::reserve_first_step`): a roll made by an append that is waiting for it.
    FirstStep { hot: bool },
}

impl Segment {
    fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base_offset, LOG_SUFFIX)),
            dir.join(file_name(base_offset, INDEX_SUFFIX)),
            dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)),
        )
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> i64 {
        self.state.borrow().next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().size_bytes
    }

    pub fn max_timestamp_ms(&self) -> i64 {
        self.state.borrow().max_timestamp_ms
    }

    pub fn first_append_ms(&self) -> Option<i64> {
        self.state.borrow().first_append_ms
    }

    pub fn is_sealed(&self) -> bool {
        self.state.borrow().sealed
    }

    pub fn is_empty(&self) -> bool {
        self.state.borrow().size_bytes == 0
    }

    /// The log file used up its last preallocation step within the last second: the
    /// segment after it should start with a larger one.
    pub fn preallocation_hot(&self) -> bool {
        self.appender
            .borrow()
            .as_ref()
            .is_some_and(|appender| appender.is_hot())
    }

    fn appender(&self) -> Result<Rc<Appender>> {
        self.appender.borrow().clone().ok_or_else(|| {
            StorageError::LogFailed(format!("segment {} is sealed", self.base_offset))
        })
    }

    /// Opens the index files for appending. With `cut`, they are cut durably to those sizes
    /// (bytes); without, appending resumes at their current sizes.
    async fn open_index_files(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        cut: Option<(u64, u64)>,
    ) -> Result<IndexFiles> {
        let (_, index_path, time_index_path) = Self::paths(dir, base_offset);
        let open = |path: PathBuf, entry_size: usize, cut_bytes: Option<u64>| async move {
            let file = DirectFile::open(&path, true).await?;
            let end = match cut_bytes {
                Some(end) => end.min(file.size_bytes().await?),
                None => file.size_bytes().await?,
            };
            let appender = Appender::open(file, config.index_appender(entry_size), end).await?;
            if cut_bytes.is_some() {
                appender.truncate(end).await?;
            }
            Ok::<_, StorageError>(appender)
        };
        // Each cut ends in a flush: the two files' flushes reach the device together.
        let (offsets, times) = futures_util::future::try_join(
            open(index_path, OFFSET_ENTRY_SIZE_BYTES, cut.map(|c| c.0)),
            open(time_index_path, TIME_ENTRY_SIZE_BYTES, cut.map(|c| c.1)),
        )
        .await?;
        Ok(IndexFiles { offsets, times })
    }

    /// Creates a new, empty active segment, reserves what `reservation` says of its log file,
    /// and makes its files' names durable. The log file and the index files are set up
    /// concurrently.
    pub async fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        reservation: Reservation,
    ) -> Result<Rc<Self>> {
        let (log_path, _, _) = Self::paths(dir, base_offset);
        let open_log = async {
            let log = DirectFile::open(&log_path, true).await?;
            log.truncate(0).await?;
            let appender = Appender::open(log.clone(), config.log_appender(), 0).await?;
            if let Reservation::FirstStep { hot } = reservation {
                // Best effort: on a nearly full disk the append that needs the space reserves
                // it itself and gets the typed error, as it would without this step.
                if let Err(error) = appender.reserve_first_step(hot).await {
                    tracing::debug!(path = %log_path.display(), %error,
                        "could not reserve a new segment's first step; the first append will");
                }
            }
            Ok::<_, StorageError>((log, appender))
        };
        let ((log, appender), files) = futures_util::future::try_join(
            open_log,
            Self::open_index_files(dir, base_offset, config, Some((0, 0))),
        )
        .await?;
        file::sync_dir(dir).await?;
        Ok(Rc::new(Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            appender: RefCell::new(Some(appender)),
            index: RefCell::new(SegmentIndex::new(Vec::new(), Vec::new(), Some(files))),
            state: RefCell::new(SegmentState {
                size_bytes: 0,
                next_offset: base_offset,
                max_timestamp_ms: i64::MIN,
                bytes_since_index: 0,
                first_append_ms: None,
                sealed: false,
            }),
            pending: RefCell::new(VecDeque::new()),
            index_write_lock: Semaphore::new(1),
            persisted: Cell::new((0, 0)),
            damage_reported: Cell::new(false),
        }))
    }

    /// Updates index and stats for a batch placed at `position`; shared by append and recovery.
    fn record_batch(
        &self,
        position: u64,
        base_offset: i64,
        last_offset: i64,
        max_timestamp_ms: i64,
        size_bytes: u64,
        index_interval_bytes: u64,
    ) {
        let mut state = self.state.borrow_mut();
        if state.bytes_since_index >= index_interval_bytes && position > 0 {
            let relative_offset = (base_offset - self.base_offset) as u32;
            let mut index = self.index.borrow_mut();
            let time = (state.max_timestamp_ms
                > index.last_time().map_or(i64::MIN, |t| t.timestamp_ms))
            .then_some(TimeEntry {
                timestamp_ms: state.max_timestamp_ms,
                relative_offset,
            });
            index.push(
                OffsetEntry {
                    relative_offset,
                    position: position as u32,
                },
                time,
            );
            state.bytes_since_index = 0;
        }
        state.bytes_since_index += size_bytes;
        state.size_bytes = position + size_bytes;
        state.next_offset = last_offset + 1;
        state.max_timestamp_ms = state.max_timestamp_ms.max(max_timestamp_ms);
    }

    /// Whether a batch of `size_bytes` spanning up to `last_offset` fits this segment.
    pub fn has_room(&self, size_bytes: u64, last_offset: i64, segment_bytes: u64) -> bool {
        let state = self.state.borrow();
        state.size_bytes == 0
            || (state.size_bytes + size_bytes <= segment_bytes
                && last_offset - self.base_offset <= i64::from(u32::MAX)
                && state.size_bytes + size_bytes <= u64::from(u32::MAX))
    }

    /// Reserves disk space for `size_bytes` more. Nothing changes when it fails.
    pub async fn reserve(&self, size_bytes: usize) -> Result<()> {
        self.appender()?.reserve(size_bytes).await
    }

    /// Appends a record set whose offsets are already assigned, starting at `base_offset`;
    /// `infos` are its batches as `batch::validate_record_set_headers` found them. With
    /// `CrcCheck::DuringCopy` their CRCs are checked while the bytes are copied to the file: a
    /// mismatch refuses the whole record set with `CorruptBatch` and changes nothing.
    pub async fn append(
        &self,
        bytes: &Bytes,
        infos: &[batch::BatchInfo],
        base_offset: i64,
        crc_check: CrcCheck,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<()> {
        let appender = self.appender()?;
        let mut position = match crc_check {
            CrcCheck::DuringCopy => {
                let mut check = batch::RecordSetCrc::new(infos);
                appender.append_checked(bytes, &mut check).await?
            }
            CrcCheck::AlreadyDone => appender.append(bytes).await?,
        };
        debug_assert_eq!(position, self.size_bytes());
        self.state
            .borrow_mut()
            .first_append_ms
            .get_or_insert(now_ms);
        self.prune_pending();
        let mut cursor = batch::BatchCursor::new(base_offset);
        for info in infos {
            let span = cursor.advance(info);
            let size_bytes = info.size_bytes as u64;
            self.record_batch(
                position,
                span.base_offset,
                span.last_offset,
                info.max_timestamp,
                size_bytes,
                config.index_interval_bytes,
            );
            position += size_bytes;
            self.pending.borrow_mut().push_back(PendingBatch {
                end_position: position,
                base_offset: span.base_offset,
                last_offset: span.last_offset,
                bytes: bytes.slice(span.bytes),
            });
        }
        Ok(())
    }

    /// Forgets pending batches whose bytes are wholly on disk now.
    fn prune_pending(&self) {
        let written = match self.appender.borrow().as_ref() {
            Some(appender) => appender.written_position(),
            None => u64::MAX,
        };
        let mut pending = self.pending.borrow_mut();
        while pending.front().is_some_and(|p| p.end_position <= written) {
            pending.pop_front();
        }
    }

    /// Writes the unflushed tail without waiting for it (no fdatasync): after this, the data
    /// survives a crash of the process, though not of the machine.
    pub async fn write_behind(&self) -> Result<()> {
        self.prune_pending();
        let appender = self.appender.borrow().clone();
        if let Some(appender) = appender {
            appender.flush().await?;
        }
        Ok(())
    }

    /// Makes every appended byte durable and persists the index entries that now point at
    /// durable data. Returns whether that took an fdatasync (else O_DSYNC writes sufficed).
    pub async fn sync(&self) -> Result<bool> {
        let appender = self.appender.borrow().clone();
        let Some(appender) = appender else {
            return Ok(false);
        };
        let synced = appender.sync().await?;
        self.prune_pending();
        self.persist_index(synced.position, false).await?;
        Ok(synced.fdatasynced)
    }

    /// Waits until nothing is in flight on the segment's log file: writes and a background
    /// preallocation step.
    pub async fn drain(&self) {
        let appender = self.appender.borrow().clone();
        if let Some(appender) = appender {
            appender.drain().await;
        }
    }

    /// Hands the index entries whose batches lie below `durable_position` to the index files;
    /// with `everything`, all entries (the segment is being sealed and is durable).
    async fn persist_index(&self, durable_position: u64, everything: bool) -> Result<()> {
        let _permit = self
            .index_write_lock
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::LogFailed("index lock closed".into()))?;
        let (offset_bytes, time_bytes, files, persisted) = {
            let index = self.index.borrow();
            let Some(files) = index.files() else {
                return Ok(());
            };
            let (mut offsets_done, mut times_done) = self.persisted.get();
            let mut offset_bytes = Vec::new();
            let mut time_bytes = Vec::new();
            let offsets = index.offsets();
            while offsets_done < offsets.len()
                && u64::from(offsets[offsets_done].position) < durable_position
            {
                let e = offsets[offsets_done];
                offset_bytes.extend_from_slice(&e.relative_offset.to_be_bytes());
                offset_bytes.extend_from_slice(&e.position.to_be_bytes());
                offsets_done += 1;
            }
            let covered = offsets_done
                .checked_sub(1)
                .map(|i| offsets[i].relative_offset);
            let times = index.times();
            while times_done < times.len()
                && (everything || covered.is_some_and(|c| times[times_done].relative_offset <= c))
            {
                let e = times[times_done];
                time_bytes.extend_from_slice(&e.timestamp_ms.to_be_bytes());
                time_bytes.extend_from_slice(&e.relative_offset.to_be_bytes());
                times_done += 1;
            }
            (
                offset_bytes,
                time_bytes,
                IndexFiles {
                    offsets: Rc::clone(&files.offsets),
                    times: Rc::clone(&files.times),
                },
                (offsets_done, times_done),
            )
        };
        if !offset_bytes.is_empty() {
            files.offsets.reserve(offset_bytes.len()).await?;
            files.offsets.append(&offset_bytes).await?;
        }
        if !time_bytes.is_empty() {
            files.times.reserve(time_bytes.len()).await?;
            files.times.append(&time_bytes).await?;
        }
        self.persisted.set(persisted);
        Ok(())
    }

    /// Writes every index entry plus a final time entry (the segment's max timestamp), syncs the
    /// index files and cuts them to size.
    async fn finish_index(&self) -> Result<()> {
        let (next_offset, max_timestamp_ms) = {
            let state = self.state.borrow();
            (state.next_offset, state.max_timestamp_ms)
        };
        {
            let mut index = self.index.borrow_mut();
            let last = index.last_time().map_or(i64::MIN, |t| t.timestamp_ms);
            if max_timestamp_ms > last && next_offset > self.base_offset {
                index.push_time(TimeEntry {
                    timestamp_ms: max_timestamp_ms,
                    relative_offset: (next_offset - self.base_offset) as u32,
                });
            }
        }
        let size_bytes = self.size_bytes();
        self.persist_index(size_bytes + 1, true).await?;
        let files = self.index.borrow_mut().take_files();
        if let Some(files) = files {
            files
                .truncate(files.offsets.end_position(), files.times.end_position())
                .await?;
        }
        Ok(())
    }

    /// Seals the active segment: data durable, indexes complete and durable, files cut to size.
    /// Once the data is durable (which index entries must follow) the index files and the log
    /// are finished together: measured here, the index part (1.2-1.8 ms) and the cut
    /// (0.2-0.3 ms) took 1.4-2.1 ms one after the other and 0.9-1.3 ms together. A roll runs it
    /// in the background while the next segment takes appends; reads go on meanwhile.
    pub async fn seal(&self) -> Result<()> {
        let appender = self.appender()?;
        appender.sync().await?;
        futures_util::future::try_join(self.finish_index(), appender.truncate(self.size_bytes()))
            .await?;
        *self.appender.borrow_mut() = None;
        self.pending.borrow_mut().clear();
        self.state.borrow_mut().sealed = true;
        Ok(())
    }

    /// Removes every batch holding `offset` or later: the segment ends before the batch that
    /// contains `offset`. Reopens a sealed segment for appending. Returns the new next offset.
    pub async fn truncate_to(&self, offset: i64, config: &LogConfig) -> Result<i64> {
        let appender = self.appender.borrow().clone();
        if let Some(appender) = appender {
            appender.sync().await?;
        }
        let mut cut = None;
        let start = self
            .index
            .borrow()
            .lookup_offset((offset.max(self.base_offset) - self.base_offset) as u32)
            .map_or((0, self.base_offset), |e| {
                (
                    u64::from(e.position),
                    self.base_offset + i64::from(e.relative_offset),
                )
            });
        scan::scan(
            &self.log,
            start.0,
            self.size_bytes(),
            false,
            None,
            usize::MAX,
            |batch| {
                if batch.header.last_offset() >= offset {
                    cut = Some((batch.position, batch.header.base_offset.get()));
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await?;
        let Some((position, next_offset)) = cut else {
            return Ok(self.next_offset());
        };
        let relative_offset = (next_offset - self.base_offset) as u32;
        let (offsets_kept, times_kept) = self
            .index
            .borrow_mut()
            .truncate(position as u32, relative_offset);

        let existing = self.appender.borrow().clone();
        let appender = match existing {
            Some(appender) => appender,
            None => {
                Appender::open(self.log.clone(), config.log_appender(), self.size_bytes()).await?
            }
        };
        appender.truncate(position).await?;
        let (persisted_offsets, persisted_times) = self.persisted.get();
        let kept = (
            offsets_kept.min(persisted_offsets),
            times_kept.min(persisted_times),
        );
        let cut = (
            (kept.0 * OFFSET_ENTRY_SIZE_BYTES) as u64,
            (kept.1 * TIME_ENTRY_SIZE_BYTES) as u64,
        );
        let existing = self.index.borrow_mut().take_files();
        let files = match existing {
            Some(files) => {
                files.truncate(cut.0, cut.1).await?;
                files
            }
            None => Self::open_index_files(&self.dir, self.base_offset, config, Some(cut)).await?,
        };
        self.persisted.set(kept);
        self.index.borrow_mut().set_files(files);
        *self.appender.borrow_mut() = Some(appender);
        self.pending
            .borrow_mut()
            .retain(|p| p.end_position <= position);
        {
            let mut state = self.state.borrow_mut();
            state.size_bytes = position;
            state.next_offset = next_offset;
            state.sealed = false;
            state.bytes_since_index = 0;
            // Only a bound now; segment max timestamps are used for retention, which waits.
            if position == 0 {
                state.max_timestamp_ms = i64::MIN;
            }
        }
        Ok(next_offset)
    }

    /// Deletes the segment's files, once nothing is in flight on its log file (an active
    /// segment's writes or background step would otherwise land in a removed file). The
    /// segment must already be out of its log's map; readers holding it keep reading through
    /// their open descriptor.
    pub async fn delete(&self) -> Result<()> {
        self.drain().await;
        Self::remove_files(&self.dir, self.base_offset).await
    }

    /// Removes the files of the segment at `base_offset` in `dir`, log file last: a crash
    /// midway leaves a log file whose missing indexes the next open rebuilds.
    pub async fn remove_files(dir: &Path, base_offset: i64) -> Result<()> {
        let (log_path, index_path, time_index_path) = Self::paths(dir, base_offset);
        file::remove_file(&index_path).await?;
        file::remove_file(&time_index_path).await?;
        file::remove_file(&log_path).await
    }
}
