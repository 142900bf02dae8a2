//! The partition log: an ordered sequence of segments with a log start offset, a log end
//! offset and a high watermark kept apart from it. Appends validate and assign offsets in place,
//! then go to the active segment and the shard's batch cache; durability comes from a group
//! commit (one fdatasync for every append waiting when it starts). Housekeeping (`tick`) rolls
//! segments by age, applies retention, flushes by `flush.ms` and writes idle tails.
//!
//! Owned by one shard. Appends, rolls, retention and truncation are serialised by one async
//! lock; reads, durability waits and the background seal of a rolled segment run beside them.
//! No `RefCell` borrow crosses an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;

use super::batch;
use super::cache::{BatchCache, LogUid};
use super::checkpoint::{PartitionCheckpoint, EPOCHS_MAX};
use super::config::LogConfig;
use super::error::{Result, StorageError};
use super::file;
use super::notify::Notify;
use super::now_ms;
use super::segment::{self, CrcCheck, RecoveryReport, Reservation, Segment};
use super::space::{self, SpaceGuard};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp_ms: i64,
    pub log_start_offset: i64,
    pub batch_count: usize,
    pub records_count: i64,
    pub size_bytes: usize,
    /// The time the batches were stamped with, for a log with `log_append_time`.
    pub log_append_time_ms: Option<i64>,
}

/// What a read returns: whole batches as stored, and the log's bounds at the time.
#[derive(Debug, Clone, Default)]
pub struct ReadData {
    pub batches: Vec<Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl ReadData {
    pub fn size_bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}

#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub segment_count: usize,
    pub recovery: RecoveryReport,
}

/// Bounds on a read: offsets below `end_offset_exclusive`, about `max_bytes` (the first batch
/// always comes whole so a consumer can make progress).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub end_offset_exclusive: i64,
    pub max_bytes: usize,
}

pub struct PartitionLog {
    dir: PathBuf,
    uid: LogUid,
    config: RefCell<LogConfig>,
    segments: RefCell<BTreeMap<i64, Rc<Segment>>>,
    state: RefCell<LogState>,
    /// Serialises appends, rolls, retention and truncation.
    append_lock: Semaphore,
    /// Serialises writes of the checkpoint file: a background seal records its recovery point
    /// without the append lock (a roll holding it may be waiting for that seal).
    checkpoint_lock: Semaphore,
    /// Signalled when `durable_offset` moves or the log fails.
    durable_changed: Notify,
    cache: Rc<BatchCache>,
    space: Rc<SpaceGuard>,
    write_behind_scheduled: Cell<bool>,
}

/// Appended bytes reach the file (not yet synced) this soon after an append, so that like
/// Kafka's page cache they survive a crash of the process. Appends within the delay share one
/// write of the changed tail pages.
const WRITE_BEHIND_DELAY: Duration = Duration::from_millis(5);
/// Group commits of one log that may run at once. Two let the next commit's fdatasync start
/// while the previous one's is at the device; each in flight costs the device a flush.
const GROUP_COMMITS_IN_FLIGHT_MAX: u32 = 2;

#[derive(Debug, Clone)]
struct LogState {
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    /// Every offset below this is durable (fdatasync'd).
    durable_offset: i64,
    /// A rolled segment is being sealed in the background; it ends at this offset.
    sealing_end: Option<i64>,
    /// The recovery point as the checkpoint file should say (see `PartitionCheckpoint`).
    recovery_point: Option<i64>,
    unflushed_messages: u64,
    last_flush_ms: i64,
    epochs: Vec<(i32, i64)>,
    /// Group commits running now, at most `GROUP_COMMITS_IN_FLIGHT_MAX`.
    syncs_in_flight: u32,
    /// The log end offset when the latest group commit started: what the running ones cover.
    sync_started_offset: i64,
    flush_requested_offset: i64,
    /// Group commits done (each one fdatasync of the active segment).
    group_commit_count: u64,
    fdatasync_count: u64,
    failure: Option<String>,
    /// A group commit failed for lack of space (the log stays usable: space may return):
    /// every request up to this offset when it failed, and why. Their waiters get the error
    /// instead of waiting for a commit that nobody retries; a later request starts a new one.
    failed_commit: Option<(i64, String)>,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it from disk.
    pub async fn open(
        dir: &Path,
        config: LogConfig,
        cache: Rc<BatchCache>,
        space: Rc<SpaceGuard>,
    ) -> Result<(Rc<Self>, OpenReport)> {
        file::create_dir_all(dir).await?;
        let names = file::list_dir(dir).await?;
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|name| segment::parse_log_file_name(name))
            .collect();
        bases.sort_unstable();
        for name in &names {
            if is_orphan_index(name, &bases) || name.ends_with(".tmp") {
                file::remove_file(&dir.join(name)).await?;
            }
        }
        let checkpoint = PartitionCheckpoint::load(dir).await?.unwrap_or_default();

        // A roll seals the old segment in the background while the new one fills, so a crash
        // can leave unsealed segments before the last: every one after the recovery point is
        // recovered (at most one seal runs at a time).
        let trusted_count = match checkpoint.recovery_point {
            Some(point) => bases.windows(2).take_while(|pair| pair[1] <= point).count(),
            None => bases.len().saturating_sub(2),
        };
        let mut segments = BTreeMap::new();
        let mut report = OpenReport::default();
        for pair in bases.windows(2).take(trusted_count) {
            let segment = Segment::open_sealed(dir, pair[0], pair[1], &config).await?;
            segments.insert(pair[0], segment);
        }
        for (index, &base) in bases.iter().enumerate().skip(trusted_count) {
            let (segment, recovery) = Segment::open_active(dir, base, &config).await?;
            if let Some(reason) = &recovery.invalid_reason {
                tracing::warn!(dir = %dir.display(), base_offset = base, truncated_bytes = recovery.truncated_bytes,
                    "recovery cut the log at a torn or corrupt batch {reason}");
            }
            report.recovery.absorb(recovery);
            let end = segment.next_offset();
            segments.insert(base, Rc::clone(&segment));
            let Some(&next_base) = bases.get(index + 1) else {
                break;
            };
            if end == next_base {
                // Whole: only its seal was cut short.
                segment.seal().await?;
                continue;
            }
            if end > next_base {
                return Err(StorageError::LogFailed(format!(
                    "segment {base} of {} runs to offset {end}, past the next segment's base \
                     {next_base}",
                    dir.display()
                )));
            }
            // The segment lost its unsynced tail, so the offsets up to the next segment are
            // gone: the segments after it would follow a gap. None of their offsets was
            // durable (that waits for this seal); Kafka drops them too.
            let dropped = &bases[index + 1..];
            tracing::warn!(dir = %dir.display(), base_offset = base, end_offset = end, next_base,
                dropped_segments = dropped.len(),
                "a crash cut a segment short before its seal; dropping the segments after it");
            for &later in dropped {
                Segment::remove_files(dir, later).await?;
            }
            file::sync_dir(dir).await?;
            break;
        }
        if segments.is_empty() {
            let base = checkpoint.log_start_offset.max(0);
            segments.insert(
                base,
                Segment::create(dir, base, &config, Reservation::Nothing).await?,
            );
        }
        report.segment_count = segments.len();

        let first_base = *segments.keys().next().expect("at least one segment");
        let log_end_offset = segments.values().next_back().expect("one").next_offset();
        // A start past the end cannot be written (DeleteRecords stops at the high watermark):
        // a damaged checkpoint, which must not hide every record.
        let checkpoint_start = if checkpoint.log_start_offset > log_end_offset {
            tracing::error!(dir = %dir.display(), checkpoint_start = checkpoint.log_start_offset,
                log_end_offset, "partition.state puts the log start past the log end; ignoring it");
            first_base
        } else {
            checkpoint.log_start_offset
        };
        let log_start_offset = checkpoint_start.max(first_base).min(log_end_offset);
        let mut epochs: Vec<(i32, i64)> = checkpoint
            .epochs
            .iter()
            .copied()
            .filter(|(_, start)| *start < log_end_offset)
            .collect();
        for (epoch, start) in &report.recovery.epochs {
            if epochs.last().is_none_or(|(last, _)| epoch > last) {
                epochs.push((*epoch, *start));
            }
        }
        let last_base = *segments.keys().next_back().expect("one");
        // Only a log of several segments has any to trust.
        let recovery_point = (segments.len() > 1).then_some(last_base);
        let log = Rc::new(PartitionLog {
            dir: dir.to_path_buf(),
            uid: cache.register_log(),
            config: RefCell::new(config),
            segments: RefCell::new(segments),
            state: RefCell::new(LogState {
                log_start_offset,
                log_end_offset,
                // A lone replica's committed data is all of its log; replication will restore a
                // checkpointed high watermark instead.
                high_watermark: log_end_offset,
                // Recovery synced what it kept.
                durable_offset: log_end_offset,
                sealing_end: None,
                recovery_point,
                unflushed_messages: 0,
                last_flush_ms: now_ms(),
                epochs,
                syncs_in_flight: 0,
                sync_started_offset: 0,
                flush_requested_offset: 0,
                group_commit_count: 0,
                fdatasync_count: 0,
                failure: None,
                failed_commit: None,
            }),
            append_lock: Semaphore::new(1),
            checkpoint_lock: Semaphore::new(1),
            durable_changed: Notify::default(),
            cache,
            space,
            write_behind_scheduled: Cell::new(false),
        });
        if recovery_point.is_some() && recovery_point != checkpoint.recovery_point {
            log.store_checkpoint().await?;
        }
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Applies new topic settings; they take effect from the next append or housekeeping pass.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.borrow_mut() = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.state.borrow().log_end_offset
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    pub fn durable_offset(&self) -> i64 {
        self.state.borrow().durable_offset
    }

    /// How many group commits (syncs of the active segment) the flusher has done.
    pub fn group_commit_count(&self) -> u64 {
        self.state.borrow().group_commit_count
    }

    /// How many of those group commits issued an fdatasync; the others were made durable by
    /// their O_DSYNC writes alone, or by another commit's fdatasync that started after their
    /// writes completed.
    pub fn fdatasync_count(&self) -> u64 {
        self.state.borrow().fdatasync_count
    }

    pub fn segment_count(&self) -> usize {
        self.segments.borrow().len()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments
            .borrow()
            .values()
            .map(|s| s.size_bytes())
            .sum()
    }

    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.borrow().keys().copied().collect()
    }

    /// The largest batch timestamp in the log, if any batch has one.
    pub fn max_timestamp_ms(&self) -> Option<i64> {
        let log_start_offset = self.log_start_offset();
        self.segments
            .borrow()
            .values()
            .filter(|s| s.next_offset() > log_start_offset)
            .map(|s| s.max_timestamp_ms())
            .filter(|ts| *ts >= 0)
            .max()
    }

    /// The leader-epoch history: (epoch, first offset written in it).
    pub fn epochs(&self) -> Vec<(i32, i64)> {
        self.state.borrow().epochs.clone()
    }

    /// Moves the high watermark; it never passes the log end offset nor goes below the start.
    pub fn set_high_watermark(&self, offset: i64) {
        let mut state = self.state.borrow_mut();
        state.high_watermark = offset.clamp(state.log_start_offset, state.log_end_offset);
        debug_assert!(state.high_watermark <= state.log_end_offset);
    }

    fn check_failed(&self) -> Result<()> {
        match &self.state.borrow().failure {
            Some(reason) => Err(StorageError::LogFailed(reason.clone())),
            None => Ok(()),
        }
    }

    fn fail(&self, error: &StorageError) {
        if error.is_storage_failure() && !error.is_disk_full() {
            self.record_failure(error.to_string());
        }
        self.durable_changed.notify_all();
    }

    /// Why the log refuses writes, once it has failed.
    pub fn failure(&self) -> Option<String> {
        self.state.borrow().failure.clone()
    }

    /// Fails the log for `reason` unless it has failed already: writes are refused and
    /// durability waiters get the reason, until the log is reopened.
    fn record_failure(&self, reason: String) {
        let mut state = self.state.borrow_mut();
        if state.failure.is_none() {
            tracing::error!(dir = %self.dir.display(), %reason, "partition log failed; writes refused until it is reopened");
            state.failure = Some(reason);
        }
    }

    fn active_segment(&self) -> Rc<Segment> {
        Rc::clone(
            self.segments
                .borrow()
                .values()
                .next_back()
                .expect("a log always has a segment"),
        )
    }

    async fn lock(&self) -> Result<glommio::sync::Permit<'_>> {
        self.append_lock
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::LogFailed("log closed".into()))
    }

    /// Appends a record set (one or more v2 batches, as a Produce request carries them) written
    /// in `leader_epoch`. The batch headers are validated, then their `baseOffset` and
    /// `partitionLeaderEpoch` are rewritten in place; the bytes are not otherwise copied until
    /// they go to disk, and that copy checks their CRCs. A refused append changes nothing
    /// (though a roll it needed may have happened).
    pub async fn append(
        self: &Rc<Self>,
        mut record_set: BytesMut,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        if let Err(error) = self.space.refresh_for_write(space::REFRESH_INTERVAL).await {
            tracing::warn!(%error, "free-space check failed; using the last reading");
        }
        self.space.check_writable()?;
        let config = self.config();
        // Stamping the append time rewrites the CRCs, so the producer's must be checked first;
        // otherwise the copy to the file checks them.
        let mut infos = if config.log_append_time {
            batch::validate_record_set(&record_set)?
        } else {
            batch::validate_record_set_headers(&record_set)?
        };
        for info in &infos {
            if info.size_bytes as u64 > config.max_message_bytes {
                return Err(StorageError::BatchTooLarge {
                    size_bytes: info.size_bytes,
                    limit_bytes: config.max_message_bytes as usize,
                });
            }
        }
        if let Some(window) = config.create_time_window(now_ms()) {
            let mut cursor = batch::BatchCursor::new(0);
            for (batch_index, info) in infos.iter().enumerate() {
                let span = cursor.advance(info);
                if let Some(timestamp_ms) =
                    batch::timestamp_outside(&record_set[span.bytes], window)
                {
                    return Err(StorageError::InvalidTimestamp {
                        batch_index,
                        timestamp_ms,
                        min_ms: window.min_ms,
                        max_ms: window.max_ms,
                    });
                }
            }
        }
        let size_bytes = record_set.len();
        let offset_span: i64 = infos
            .iter()
            .map(|i| i64::from(i.last_offset_delta) + 1)
            .sum();

        let _permit = self.lock().await?;
        self.check_failed()?;
        let now = now_ms();
        self.record_epoch(leader_epoch).await?;
        let base_offset = self.log_end_offset();
        let active = self.active_segment();
        let segment_expired = config
            .segment_ms
            .zip(active.first_append_ms())
            .is_some_and(|(segment_ms, first)| now - first >= segment_ms as i64);
        let active = if active.is_sealed()
            || segment_expired
            || !active.has_room(
                size_bytes as u64,
                base_offset + offset_span - 1,
                config.segment_bytes,
            ) {
            self.roll_locked(&config, true).await?
        } else {
            active
        };
        active.reserve(size_bytes).await?;

        let mut cursor = batch::BatchCursor::new(base_offset);
        for info in &mut infos {
            let span = cursor.advance(info);
            let batch_bytes = &mut record_set[span.bytes];
            batch::assign(batch_bytes, span.base_offset, leader_epoch);
            if config.log_append_time {
                info.crc = batch::set_log_append_time(batch_bytes, now);
                info.max_timestamp = now;
            }
        }
        let record_set = record_set.freeze();
        let crc_check = if config.log_append_time {
            CrcCheck::AlreadyDone
        } else {
            CrcCheck::DuringCopy
        };
        if let Err(error) = active
            .append(&record_set, &infos, base_offset, crc_check, &config, now)
            .await
        {
            self.fail(&error);
            return Err(error);
        }
        let mut cursor = batch::BatchCursor::new(base_offset);
        for info in &infos {
            let span = cursor.advance(info);
            self.cache.insert(
                self.uid,
                span.base_offset,
                span.last_offset,
                record_set.slice(span.bytes),
            );
        }
        let next_offset = base_offset + offset_span;

        let records_count: i64 = infos.iter().map(|i| i64::from(i.records_count)).sum();
        let (log_start_offset, flush_due) = {
            let mut state = self.state.borrow_mut();
            state.log_end_offset = next_offset;
            state.unflushed_messages += records_count as u64;
            let flush_due = config
                .flush_messages
                .is_some_and(|n| state.unflushed_messages >= n);
            (state.log_start_offset, flush_due)
        };
        if flush_due {
            self.request_flush(next_offset);
        } else {
            self.schedule_write_behind();
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            max_timestamp_ms: infos.iter().map(|i| i.max_timestamp).max().unwrap_or(-1),
            log_start_offset,
            batch_count: infos.len(),
            records_count,
            size_bytes,
            log_append_time_ms: config.log_append_time.then_some(now),
        })
    }

    fn schedule_write_behind(self: &Rc<Self>) {
        if self.write_behind_scheduled.replace(true) {
            return;
        }
        // Weak: a pending write-behind must not keep a dropped log alive, with its cache and
        // the request buffers the cached batches point into (an executor that exits first
        // never drops the task at all).
        let log = Rc::downgrade(self);
        crate::runtime::spawn_local(async move {
            glommio::timer::sleep(WRITE_BEHIND_DELAY).await;
            let Some(log) = log.upgrade() else {
                return;
            };
            log.write_behind_scheduled.set(false);
            // A truncation may be replacing every segment right now: then there is no tail.
            let active = log.segments.borrow().values().next_back().cloned();
            let Some(active) = active else {
                return;
            };
            if let Err(error) = active.write_behind().await {
                tracing::debug!(dir = %log.dir.display(), %error, "write-behind failed");
            }
        })
        .detach();
    }

    /// Remembers the first offset of a new leader epoch, durably, before anything is written
    /// in it.
    async fn record_epoch(&self, leader_epoch: i32) -> Result<()> {
        {
            let mut state = self.state.borrow_mut();
            if state
                .epochs
                .last()
                .is_some_and(|(last, _)| *last >= leader_epoch)
            {
                return Ok(());
            }
            let start = state.log_end_offset;
            state.epochs.push((leader_epoch, start));
            if state.epochs.len() > EPOCHS_MAX {
                state.epochs.remove(0);
            }
        }
        self.store_checkpoint().await
    }

    /// Writes the checkpoint file from the state as it is when the write starts: of two
    /// writers, the later one's file holds both changes.
    async fn store_checkpoint(&self) -> Result<()> {
        let _permit = self
            .checkpoint_lock
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::LogFailed("checkpoint lock closed".into()))?;
        let checkpoint = {
            let state = self.state.borrow();
            PartitionCheckpoint {
                log_start_offset: state.log_start_offset,
                epochs: state.epochs.clone(),
                recovery_point: state.recovery_point,
            }
        };
        checkpoint.store(&self.dir).await
    }

    /// Starts a new segment at the log end offset and seals the active one in the background
    /// (data durable, index files finished, log cut to size), as Kafka flushes a rolled
    /// segment asynchronously: appends go on in the new segment meanwhile, and offsets past
    /// the old one become durable only once its seal has. Holds the lock. With `for_append`
    /// an append waits for the new segment: its first preallocation step is reserved now.
    ///
    /// At most one seal runs: a roll first waits for the previous one. The recovery point
    /// moves past a segment once its seal is done, so a crash meanwhile has `open` recover it.
    async fn roll_locked(
        self: &Rc<Self>,
        config: &LogConfig,
        for_append: bool,
    ) -> Result<Rc<Segment>> {
        self.wait_seal_finished().await?;
        let active = self.active_segment();
        let base_offset = self.log_end_offset();
        let reservation = if for_append {
            Reservation::FirstStep {
                hot: active.preallocation_hot(),
            }
        } else {
            Reservation::Nothing
        };
        if !active.is_sealed() {
            if active.is_empty() {
                return Ok(active);
            }
            self.start_seal(Rc::clone(&active), base_offset);
        }
        let segment = match Segment::create(&self.dir, base_offset, config, reservation).await {
            Ok(segment) => segment,
            Err(error) => {
                // The old segment stays the active one: once sealed, the next append rolls
                // again instead of appending to it.
                let _ = self.wait_seal_finished().await;
                return Err(error);
            }
        };
        self.segments
            .borrow_mut()
            .insert(base_offset, Rc::clone(&segment));
        tracing::debug!(dir = %self.dir.display(), base_offset, "rolled segment");
        Ok(segment)
    }

    /// Seals `segment`, which ends at `end_offset`, in a task of its own. A failed seal fails
    /// the log, even for lack of space: the segment's data may not be durable, and offsets
    /// after it must never be reported durable.
    fn start_seal(self: &Rc<Self>, segment: Rc<Segment>, end_offset: i64) {
        self.state.borrow_mut().sealing_end = Some(end_offset);
        let log = Rc::clone(self);
        crate::runtime::spawn_local(async move {
            match segment.seal().await {
                Ok(()) => {
                    {
                        let mut state = log.state.borrow_mut();
                        state.durable_offset = state.durable_offset.max(end_offset);
                        state.recovery_point = Some(end_offset);
                    }
                    log.durable_changed.notify_all();
                    if let Err(error) = log.store_checkpoint().await {
                        tracing::warn!(dir = %log.dir.display(), %error,
                            "could not record the recovery point; the next open recovers the sealed segment again");
                    }
                }
                Err(error) => {
                    log.record_failure(format!("sealing segment {}: {error}", segment.base_offset()))
                }
            }
            log.state.borrow_mut().sealing_end = None;
            log.durable_changed.notify_all();
        })
        .detach();
    }

    /// Waits until no seal runs (its recovery point recorded too), then fails if the log has.
    async fn wait_seal_finished(&self) -> Result<()> {
        self.durable_changed
            .wait_for(|| self.state.borrow().sealing_end.is_none().then_some(()))
            .await;
        self.check_failed()
    }

    /// Waits until the segment being sealed, if any, is durable: what lies after it is only
    /// durable once it is.
    async fn wait_sealed_data_durable(&self) -> Result<()> {
        self.durable_changed
            .wait_for(|| {
                let state = self.state.borrow();
                if let Some(reason) = &state.failure {
                    return Some(Err(StorageError::LogFailed(reason.clone())));
                }
                state
                    .sealing_end
                    .is_none_or(|end| state.durable_offset >= end)
                    .then_some(Ok(()))
            })
            .await
    }

    /// Waits until every offset below `offset_exclusive` is durable, sharing one fdatasync
    /// with every other waiter (group commit).
    pub async fn wait_durable(self: &Rc<Self>, offset_exclusive: i64) -> Result<()> {
        self.request_flush(offset_exclusive);
        self.durable_changed
            .wait_for(|| {
                let state = self.state.borrow();
                if state.durable_offset >= offset_exclusive {
                    return Some(Ok(()));
                }
                state
                    .failure
                    .as_ref()
                    .map(|reason| Err(StorageError::LogFailed(reason.clone())))
                    .or_else(|| match &state.failed_commit {
                        Some((covered, reason)) if offset_exclusive <= *covered => {
                            Some(Err(StorageError::NoSpace {
                                context: format!("group commit: {reason}"),
                            }))
                        }
                        _ => None,
                    })
            })
            .await
    }

    /// Makes everything appended so far durable.
    pub async fn flush(self: &Rc<Self>) -> Result<()> {
        self.wait_durable(self.log_end_offset()).await
    }

    /// Starts a group commit when offsets up to `offset_exclusive` are neither durable nor
    /// covered by a running one; appends arriving during a commit share the next one.
    fn request_flush(self: &Rc<Self>, offset_exclusive: i64) {
        {
            let mut state = self.state.borrow_mut();
            state.flush_requested_offset = state.flush_requested_offset.max(offset_exclusive);
            if state.syncs_in_flight >= GROUP_COMMITS_IN_FLIGHT_MAX || !state.sync_needed() {
                return;
            }
            state.syncs_in_flight += 1;
        }
        let log = Rc::clone(self);
        crate::runtime::spawn_local(async move { log.sync_loop().await }).detach();
    }

    /// Runs group commits while requests are ahead of what is durable or being made durable.
    /// A second loop may run beside this one: its fdatasync starts while this one's is still
    /// at the device, instead of waiting for it (appends that arrive during a commit are
    /// acknowledged one device flush sooner). Whichever finishes first, each covers every byte
    /// written before it started, so the durable offset only moves forward.
    async fn sync_loop(&self) {
        loop {
            let (target_offset, segment) = {
                let mut state = self.state.borrow_mut();
                if !state.sync_needed() || state.failure.is_some() {
                    state.syncs_in_flight -= 1;
                    drop(state);
                    self.durable_changed.notify_all();
                    return;
                }
                state.sync_started_offset = state.log_end_offset;
                state.failed_commit = None;
                (state.log_end_offset, self.active_segment())
            };
            let result = match segment.sync().await {
                Ok(fdatasync) => self.wait_sealed_data_durable().await.map(|()| fdatasync),
                Err(error) => Err(error),
            };
            match result {
                Ok(fdatasync) => {
                    let mut state = self.state.borrow_mut();
                    state.fdatasync_count += u64::from(fdatasync);
                    state.durable_offset = state.durable_offset.max(target_offset);
                    state.unflushed_messages = 0;
                    state.last_flush_ms = now_ms();
                    state.group_commit_count += 1;
                }
                Err(error) => {
                    if error.is_disk_full() {
                        let mut state = self.state.borrow_mut();
                        // Not retried here (it would spin while the disk stays full): the
                        // waiters get the error, and the next request starts over.
                        state.failed_commit =
                            Some((state.flush_requested_offset, error.to_string()));
                        state.flush_requested_offset = state.durable_offset;
                        state.sync_started_offset = state.durable_offset;
                    }
                    self.fail(&error);
                }
            }
            self.durable_changed.notify_all();
        }
    }

    /// Waits until no group commit is running.
    async fn wait_syncs_finished(&self) {
        self.durable_changed
            .wait_for(|| (self.state.borrow().syncs_in_flight == 0).then_some(()))
            .await;
    }
}

impl LogState {
    /// Some requested offset is neither durable nor covered by a running group commit.
    fn sync_needed(&self) -> bool {
        self.flush_requested_offset > self.durable_offset.max(self.sync_started_offset)
    }
}

fn is_orphan_index(name: &str, bases: &[i64]) -> bool {
    let stem = name
        .strip_suffix(segment::INDEX_SUFFIX)
        .or_else(|| name.strip_suffix(segment::TIME_INDEX_SUFFIX));
    match stem.and_then(|s| s.parse::<i64>().ok()) {
        Some(base) => bases.binary_search(&base).is_err(),
        None => false,
    }
}

impl PartitionLog {
    /// Reads whole batches from `start_offset`: from the batch cache when the tail is there,
    /// else from the segments. The bytes are the cached `Bytes` or the DMA read buffer itself.
    pub async fn read(&self, start_offset: i64, limits: ReadLimits) -> Result<ReadData> {
        let (log_start_offset, log_end_offset, high_watermark) = {
            let state = self.state.borrow();
            (
                state.log_start_offset,
                state.log_end_offset,
                state.high_watermark,
            )
        };
        if start_offset < log_start_offset || start_offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: start_offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let mut data = ReadData {
            batches: Vec::new(),
            high_watermark,
            log_start_offset,
            log_end_offset,
        };
        let end_offset_exclusive = limits.end_offset_exclusive.min(log_end_offset);
        if start_offset >= end_offset_exclusive {
            return Ok(data);
        }
        data.batches = self.cache.read(
            self.uid,
            start_offset,
            end_offset_exclusive,
            limits.max_bytes,
        );
        if !data.batches.is_empty() {
            return Ok(data);
        }
        let config = self.config();
        let mut offset = start_offset;
        loop {
            let segment = {
                let segments = self.segments.borrow();
                let floor = segments
                    .range(..=offset)
                    .next_back()
                    .map(|(_, s)| Rc::clone(s));
                // Below the first segment (a start offset inside a deleted range) read from it.
                floor.or_else(|| segments.values().next().cloned())
            };
            let Some(segment) = segment else {
                return Ok(data);
            };
            let next_offset = segment.next_offset();
            data.batches = segment
                .read(offset, end_offset_exclusive, limits.max_bytes, &config)
                .await?;
            if !data.batches.is_empty()
                || next_offset >= end_offset_exclusive
                || next_offset <= offset
            {
                return Ok(data);
            }
            // The segment ends before `offset` has data: continue in the next one.
            offset = next_offset;
        }
    }

    /// The first batch whose max timestamp is at least `timestamp_ms`, as (offset, timestamp);
    /// `None` when every batch is older. The offset is that batch's base offset.
    pub async fn find_offset_by_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        let segments: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        let log_start_offset = self.log_start_offset();
        for segment in segments {
            if segment.next_offset() <= log_start_offset
                || segment.max_timestamp_ms() < timestamp_ms
            {
                continue;
            }
            if let Some((offset, timestamp)) = segment.find_by_timestamp(timestamp_ms).await? {
                return Ok(Some((offset.max(log_start_offset), timestamp)));
            }
        }
        Ok(None)
    }

    /// Kafka's OffsetForLeaderEpoch (`LeaderEpochFileCache.endOffsetFor`): for the latest
    /// epoch, (it, log end offset); for an older one, the largest known epoch at or below it
    /// with the start offset of the next higher epoch, or the requested epoch itself when it
    /// predates every known one; `None` (UNDEFINED) for an epoch newer than the latest.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.state.borrow();
        let &(latest, _) = state.epochs.last()?;
        if epoch == latest {
            return Some((latest, state.log_end_offset));
        }
        let index = state.epochs.partition_point(|(e, _)| *e <= epoch);
        let &(_, higher_start) = state.epochs.get(index)?;
        let floor_epoch = index.checked_sub(1).map_or(epoch, |i| state.epochs[i].0);
        Some((floor_epoch, higher_start))
    }

    /// Housekeeping, called periodically by the shard: write idle tails, flush by `flush.ms`,
    /// roll by `segment.ms`, and with `check_retention` apply retention (Kafka checks every
    /// `log.retention.check.interval.ms`, 5 minutes by default).
    pub async fn tick(self: &Rc<Self>, now_ms: i64, check_retention: bool) -> Result<()> {
        let config = self.config();
        let (flush_due, log_end_offset) = {
            let state = self.state.borrow();
            let due = config
                .flush_ms
                .is_some_and(|ms| now_ms - state.last_flush_ms >= ms as i64)
                && state.durable_offset < state.log_end_offset;
            (due, state.log_end_offset)
        };
        if flush_due {
            self.request_flush(log_end_offset);
        } else if self.state.borrow().syncs_in_flight == 0 {
            self.active_segment().write_behind().await?;
        }
        let active = self.active_segment();
        let roll_due = config
            .segment_ms
            .zip(active.first_append_ms())
            .is_some_and(|(ms, first)| now_ms - first >= ms as i64);
        if roll_due && !active.is_empty() {
            let _permit = self.lock().await?;
            // Re-check under the lock: an append may have rolled meanwhile.
            if Rc::ptr_eq(&active, &self.active_segment()) {
                self.roll_locked(&config, false).await?;
            }
        }
        if check_retention {
            self.enforce_retention(now_ms).await?;
        }
        Ok(())
    }

    /// Deletes whole closed segments past `retention.ms` / `retention.bytes` or wholly below the
    /// log start offset, never past the high watermark. Returns how many were deleted.
    pub async fn enforce_retention(self: &Rc<Self>, now_ms: i64) -> Result<usize> {
        let config = self.config();
        let _permit = self.lock().await?;
        // Only sealed segments are deleted: not the one being sealed.
        self.wait_seal_finished().await?;
        let (high_watermark, log_start_offset) = {
            let state = self.state.borrow();
            (state.high_watermark, state.log_start_offset)
        };
        let expired = |segment: &Segment| {
            config
                .retention_ms
                .is_some_and(|ms| segment.max_timestamp_ms() < now_ms.saturating_sub(ms as i64))
        };
        // A wholly expired active segment is rolled so that it can go too, as Kafka does.
        let active = self.active_segment();
        if !active.is_empty() && expired(&active) && active.next_offset() <= high_watermark {
            self.roll_locked(&config, false).await?;
            self.wait_seal_finished().await?;
        }
        let mut total_size_bytes = self.size_bytes();
        let mut doomed = Vec::new();
        {
            let segments = self.segments.borrow();
            let sealed_count = segments.len() - 1;
            for segment in segments.values().take(sealed_count) {
                let over_size = config
                    .retention_bytes
                    .is_some_and(|limit| total_size_bytes - segment.size_bytes() >= limit);
                let deletable = segment.next_offset() <= high_watermark
                    && (expired(segment) || over_size || segment.next_offset() <= log_start_offset);
                if !deletable {
                    break;
                }
                total_size_bytes -= segment.size_bytes();
                doomed.push(Rc::clone(segment));
            }
        }
        self.delete_segments_locked(&doomed).await?;
        Ok(doomed.len())
    }

    async fn delete_segments_locked(&self, doomed: &[Rc<Segment>]) -> Result<()> {
        if doomed.is_empty() {
            return Ok(());
        }
        let new_start = {
            let mut segments = self.segments.borrow_mut();
            for segment in doomed {
                segments.remove(&segment.base_offset());
            }
            *segments
                .keys()
                .next()
                .expect("the active segment is never deleted")
        };
        {
            let mut state = self.state.borrow_mut();
            state.log_start_offset = state.log_start_offset.max(new_start);
        }
        self.cache
            .invalidate_before(self.uid, self.log_start_offset());
        for segment in doomed {
            segment.delete().await?;
            tracing::debug!(dir = %self.dir.display(), base_offset = segment.base_offset(), "deleted segment");
        }
        file::sync_dir(&self.dir).await
    }

    /// Kafka's DeleteRecords: moves the log start offset up to `offset` (at most the high
    /// watermark) durably, and deletes the segments wholly below it. Returns the new start.
    pub async fn delete_records(self: &Rc<Self>, offset: i64) -> Result<i64> {
        // The new start must never lie past what a crash would leave: make the log durable up
        // to it first, so the recovered log end is never below the recorded start.
        if offset <= self.high_watermark() {
            self.wait_durable(offset).await?;
        }
        let _permit = self.lock().await?;
        // The segments deleted below may include the one being sealed.
        self.wait_seal_finished().await?;
        {
            let mut state = self.state.borrow_mut();
            if offset > state.high_watermark || offset < 0 {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    log_end_offset: state.log_end_offset,
                });
            }
            if offset <= state.log_start_offset {
                return Ok(state.log_start_offset);
            }
            state.log_start_offset = offset;
        }
        self.store_checkpoint().await?;
        let doomed: Vec<Rc<Segment>> = {
            let segments = self.segments.borrow();
            let sealed_count = segments.len() - 1;
            segments
                .values()
                .take(sealed_count)
                .take_while(|s| s.next_offset() <= offset)
                .cloned()
                .collect()
        };
        self.delete_segments_locked(&doomed).await?;
        self.cache.invalidate_before(self.uid, offset);
        Ok(self.log_start_offset())
    }

    /// Removes every batch that holds `offset` or a later one (for replication: a follower
    /// cutting its log back to the leader's). The log then ends at a batch boundary at or below
    /// `offset`. Returns the new log end offset.
    pub async fn truncate_to(self: &Rc<Self>, offset: i64) -> Result<i64> {
        let _permit = self.lock().await?;
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        // Let running group commits and a seal finish: they may be waiting on bytes about to
        // be cut.
        self.wait_seal_finished().await?;
        self.wait_syncs_finished().await;
        let config = self.config();
        let first_base = *self.segments.borrow().keys().next().expect("one segment");
        let doomed: Vec<Rc<Segment>> = self
            .segments
            .borrow()
            .values()
            .filter(|s| s.base_offset() >= offset.max(first_base + 1) || offset <= first_base)
            .cloned()
            .collect();
        for segment in &doomed {
            self.segments.borrow_mut().remove(&segment.base_offset());
        }
        for segment in &doomed {
            segment.delete().await?;
        }
        let new_end = if self.segments.borrow().is_empty() {
            let base = offset.max(0);
            let segment = Segment::create(&self.dir, base, &config, Reservation::Nothing).await?;
            self.segments.borrow_mut().insert(base, segment);
            base
        } else {
            file::sync_dir(&self.dir).await?;
            let last = self.active_segment();
            match last.truncate_to(offset, &config).await {
                Ok(end) => end,
                Err(error) => {
                    self.fail(&error);
                    return Err(error);
                }
            }
        };
        let last_base = self.active_segment().base_offset();
        {
            let mut state = self.state.borrow_mut();
            // The last segment takes appends again: it is no longer sealed, so the recovery
            // point must not cover it once a roll puts another segment after it.
            state.recovery_point = state.recovery_point.map(|point| point.min(last_base));
            state.log_end_offset = new_end;
            state.log_start_offset = state.log_start_offset.min(new_end);
            if self.segments.borrow().len() == 1 && offset <= first_base {
                state.log_start_offset = new_end;
            }
            state.high_watermark = state.high_watermark.min(new_end);
            state.durable_offset = state.durable_offset.min(new_end);
            state.flush_requested_offset = state.flush_requested_offset.min(new_end);
            state.sync_started_offset = state.sync_started_offset.min(new_end);
            state.epochs.retain(|(_, start)| *start < new_end);
        }
        self.cache.invalidate_from(self.uid, new_end);
        self.store_checkpoint().await?;
        Ok(new_end)
    }

    /// Makes everything durable and the index files complete, for a clean shutdown. Appends
    /// after this are refused.
    pub async fn close(self: &Rc<Self>) -> Result<()> {
        let _permit = self.lock().await?;
        self.flush().await?;
        self.wait_seal_finished().await?;
        self.wait_syncs_finished().await;
        let active = self.active_segment();
        active.sync().await?;
        active.drain().await;
        self.append_lock.close();
        Ok(())
    }
}
