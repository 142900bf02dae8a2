//! Opening a segment from disk: a sealed one (its indexes checked, or rebuilt from the log,
//! and its tail checked against the next segment's base) and the active one (recovered from
//! its last index entry, cut at the first invalid batch).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;
use std::rc::Rc;

use glommio::sync::Semaphore;

use super::*;

impl Segment {
    async fn read_index_entries(
        dir: &Path,
        base_offset: i64,
    ) -> Result<(Vec<OffsetEntry>, Vec<TimeEntry>)> {
        let (_, index_path, time_index_path) = Self::paths(dir, base_offset);
        let offsets = file::read_small_file(&index_path)
            .await?
            .unwrap_or_default();
        let times = file::read_small_file(&time_index_path)
            .await?
            .unwrap_or_default();
        Ok((
            index::parse_offset_entries(&offsets),
            index::parse_time_entries(&times),
        ))
    }

    /// Opens a sealed segment whose successor starts at `next_offset`. Its index is checked
    /// against the log's size and rebuilt from the log when missing or damaged.
    pub async fn open_sealed(
        dir: &Path,
        base_offset: i64,
        next_offset: i64,
        config: &LogConfig,
    ) -> Result<Rc<Self>> {
        let (log_path, _, _) = Self::paths(dir, base_offset);
        let log = DirectFile::open(&log_path, false).await?;
        let size_bytes = log.size_bytes().await?;
        let (offsets, times) = Self::read_index_entries(dir, base_offset).await?;
        let relative_end = next_offset - base_offset;
        let index_plausible = offsets.last().is_none_or(|last| {
            u64::from(last.position) < size_bytes && i64::from(last.relative_offset) < relative_end
        }) && times
            .last()
            .is_some_and(|last| i64::from(last.relative_offset) <= relative_end)
            && (size_bytes <= 2 * config.index_interval_bytes || !offsets.is_empty());
        let segment = Rc::new(Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            appender: RefCell::new(None),
            index: RefCell::new(SegmentIndex::new(offsets, times, None)),
            state: RefCell::new(SegmentState {
                size_bytes,
                next_offset,
                max_timestamp_ms: i64::MIN,
                bytes_since_index: 0,
                first_append_ms: None,
                sealed: true,
            }),
            pending: RefCell::new(VecDeque::new()),
            index_write_lock: Semaphore::new(1),
            persisted: Cell::new((0, 0)),
            damage_reported: Cell::new(false),
        });
        if index_plausible || size_bytes == 0 {
            let max_timestamp_ms = segment
                .index
                .borrow()
                .last_time()
                .map_or(i64::MIN, |t| t.timestamp_ms);
            segment.state.borrow_mut().max_timestamp_ms = max_timestamp_ms;
        } else {
            tracing::warn!(dir = %dir.display(), base_offset, "index missing or damaged, rebuilding from the log");
            segment.rebuild_sealed_index(config).await?;
        }
        segment.check_sealed_tail(next_offset, config).await?;
        Ok(segment)
    }

    /// Checks that a sealed segment's last batches, from its last index entry, are whole and
    /// end at the offset the next segment starts from. A segment cut short, damaged near its
    /// end, or followed by a deleted one would otherwise leave offsets the log claims but
    /// cannot read, and consumers would stall there without a word. One small read.
    async fn check_sealed_tail(
        self: &Rc<Self>,
        next_offset: i64,
        config: &LogConfig,
    ) -> Result<()> {
        let mut problem = self.sealed_tail_problem(next_offset, config).await?;
        if problem.is_some() && self.index.borrow().last_offset_entry().is_some() {
            // The scan started at the last index entry, which may itself be what is wrong: a
            // rebuilt index says (its full scan fails on a damaged log).
            tracing::warn!(dir = %self.dir.display(), base_offset = self.base_offset,
                "sealed segment's tail does not check out from its index; rebuilding the index");
            self.rebuild_sealed_index(config).await?;
            problem = self.sealed_tail_problem(next_offset, config).await?;
        }
        match problem {
            None => Ok(()),
            Some(problem) => Err(StorageError::LogFailed(format!(
                "sealed segment {}/{:020}.log is inconsistent: {problem}; the partition stays \
                 offline with its data",
                self.dir.display(),
                self.base_offset
            ))),
        }
    }

    /// What is wrong with the batches from the last index entry to the end, if anything.
    async fn sealed_tail_problem(
        &self,
        next_offset: i64,
        config: &LogConfig,
    ) -> Result<Option<String>> {
        let (start, expected_offset) = match self.index.borrow().last_offset_entry() {
            Some(entry) => (u64::from(entry.position), None),
            None => (0, Some(self.base_offset)),
        };
        let batch_size_max = config.segment_bytes.max(config.max_message_bytes) as usize;
        let outcome = scan::scan(
            &self.log,
            start,
            self.size_bytes(),
            true,
            expected_offset,
            batch_size_max,
            |_| ControlFlow::Continue(()),
        )
        .await?;
        Ok(match (&outcome.stop, outcome.next_offset) {
            (ScanStop::Invalid { position, reason }, _) => {
                Some(format!("a damaged batch at byte {position}: {reason}"))
            }
            (_, Some(end)) if end != next_offset => Some(format!(
                "its batches end at offset {end} but the next segment starts at {next_offset}: \
                 offsets {end}..{next_offset} are missing (a segment deleted or cut short)"
            )),
            (_, None) if next_offset != self.base_offset => Some(format!(
                "it holds no batch but the next segment starts at {next_offset}"
            )),
            _ => None,
        })
    }

    /// Rebuilds a sealed segment's indexes with one full validating scan of its log.
    async fn rebuild_sealed_index(self: &Rc<Self>, config: &LogConfig) -> Result<()> {
        *self.index.borrow_mut() = SegmentIndex::new(Vec::new(), Vec::new(), None);
        let size_bytes = self.size_bytes();
        let outcome = self
            .scan_into_index(0, size_bytes, self.base_offset, config, &mut Vec::new())
            .await?;
        if let ScanStop::Invalid { position, reason } = &outcome.stop {
            return Err(StorageError::LogFailed(format!(
                "sealed segment {}/{} is corrupt at {position}: {reason}",
                self.dir.display(),
                self.base_offset
            )));
        }
        let files =
            Self::open_index_files(&self.dir, self.base_offset, config, Some((0, 0))).await?;
        self.index.borrow_mut().set_files(files);
        self.persisted.set((0, 0));
        self.finish_index().await
    }

    /// Scans `[start, end)` with full validation, recording index entries and stats as appends
    /// would. Collects the epochs seen.
    async fn scan_into_index(
        &self,
        start_position: u64,
        end_position: u64,
        expected_offset: i64,
        config: &LogConfig,
        epochs: &mut Vec<(i32, i64)>,
    ) -> Result<scan::ScanOutcome> {
        let batch_size_max = (config.segment_bytes.max(config.max_message_bytes) as usize)
            .max(BATCH_HEADER_SIZE_BYTES);
        scan::scan(
            &self.log,
            start_position,
            end_position,
            true,
            Some(expected_offset),
            batch_size_max,
            |batch| {
                let header = batch.header;
                let epoch = header.partition_leader_epoch.get();
                if epochs.last().is_none_or(|(last, _)| epoch > *last) {
                    epochs.push((epoch, header.base_offset.get()));
                }
                self.record_batch(
                    batch.position,
                    header.base_offset.get(),
                    header.last_offset(),
                    header.max_timestamp.get(),
                    batch.bytes.len() as u64,
                    config.index_interval_bytes,
                );
                ControlFlow::Continue(())
            },
        )
        .await
    }

    /// Opens the last segment of a log for appending: validates the index's last entries, scans
    /// the log from the last good one, and cuts the log and its indexes at the first torn or
    /// corrupt batch.
    pub async fn open_active(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
    ) -> Result<(Rc<Self>, RecoveryReport)> {
        let (log_path, _, _) = Self::paths(dir, base_offset);
        let log = DirectFile::open(&log_path, true).await?;
        let file_size_bytes = log.size_bytes().await?;
        let (mut offsets, mut times) = Self::read_index_entries(dir, base_offset).await?;

        // The last index entry that points at a valid batch with the offset it names.
        let mut start = None;
        while let Some(entry) = offsets.last().copied() {
            if u64::from(entry.position) < file_size_bytes
                && Self::entry_is_valid(&log, entry, base_offset, config).await?
            {
                start = Some(entry);
                break;
            }
            offsets.pop();
        }
        let (start_position, start_offset) = match start {
            Some(entry) => (
                u64::from(entry.position),
                base_offset + i64::from(entry.relative_offset),
            ),
            None => (0, base_offset),
        };
        let start_relative = (start_offset - base_offset) as u32;
        times.retain(|t| t.relative_offset <= start_relative);
        let max_timestamp_before = times.last().map_or(i64::MIN, |t| t.timestamp_ms);
        let kept = (offsets.len(), times.len());

        let segment = Rc::new(Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log: log.clone(),
            appender: RefCell::new(None),
            index: RefCell::new(SegmentIndex::new(offsets, times, None)),
            state: RefCell::new(SegmentState {
                size_bytes: start_position,
                next_offset: start_offset,
                max_timestamp_ms: max_timestamp_before,
                bytes_since_index: 0,
                first_append_ms: None,
                sealed: false,
            }),
            pending: RefCell::new(VecDeque::new()),
            index_write_lock: Semaphore::new(1),
            persisted: Cell::new(kept),
            damage_reported: Cell::new(false),
        });
        let mut report = RecoveryReport::default();
        let outcome = segment
            .scan_into_index(
                start_position,
                file_size_bytes,
                start_offset,
                config,
                &mut report.epochs,
            )
            .await?;
        let valid_end = outcome.end_position;
        report.scanned_bytes = valid_end - start_position;
        if let ScanStop::Invalid { position, reason } = &outcome.stop {
            // Zeros after the data are preallocated space, not damage.
            let tail = log
                .read_at(*position, (file_size_bytes - position).min(4096) as usize)
                .await?;
            if tail.iter().any(|b| *b != 0) {
                report.invalid_reason = Some(format!("at position {position}: {reason}"));
            }
        }
        report.truncated_bytes = file_size_bytes - valid_end;

        // Cut everything past the valid end, so nothing stale can ever follow new appends.
        let appender = Appender::open(log, config.log_appender(), valid_end).await?;
        appender.truncate(valid_end).await?;
        let cut = (
            (kept.0 * OFFSET_ENTRY_SIZE_BYTES) as u64,
            (kept.1 * TIME_ENTRY_SIZE_BYTES) as u64,
        );
        let files = Self::open_index_files(dir, base_offset, config, Some(cut)).await?;
        segment.index.borrow_mut().set_files(files);
        *segment.appender.borrow_mut() = Some(appender);
        if !segment.is_empty() {
            segment.state.borrow_mut().first_append_ms = Some(crate::storage::now_ms());
        }
        // Everything that survived is durable now: persist the rebuilt entries.
        segment.persist_index(valid_end, false).await?;
        Ok((segment, report))
    }

    async fn entry_is_valid(
        log: &DirectFile,
        entry: OffsetEntry,
        base_offset: i64,
        config: &LogConfig,
    ) -> Result<bool> {
        let header_bytes = log
            .read_at(u64::from(entry.position), BATCH_HEADER_SIZE_BYTES)
            .await?;
        let Ok(header) = batch::peek_header(&header_bytes) else {
            return Ok(false);
        };
        let size = header.size_bytes();
        if header.base_offset.get() != base_offset + i64::from(entry.relative_offset)
            || size as u64 > config.segment_bytes.max(config.max_message_bytes)
        {
            return Ok(false);
        }
        let whole = log.read_at(u64::from(entry.position), size).await?;
        Ok(batch::validate(&whole).is_ok())
    }
}
