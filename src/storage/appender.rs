//! An append-only direct-IO file: bytes are copied into an aligned in-memory chunk, full chunks
//! are written with several writes in flight, and `flush` writes the partially filled tail
//! pages, which stay in memory and are rewritten in place as they fill. Blocks are preallocated
//! in large steps so that appends neither allocate blocks nor meet ENOSPC mid-write.
//!
//! A checked append (`append_checked`, the record-set CRCs) reads each block of the source once:
//! the check sees it just before it is copied, and nothing is written until every block passed.
//!
//! A durable append (`sync`) costs one write through an O_DSYNC twin of the file when every
//! write since the last fdatasync went that way, instead of a write and an fdatasync reaped one
//! after the other: measured here, 16 KiB went from ~200 µs to ~170 µs (fio: write+fdatasync
//! ~170 µs), 1 MiB from ~540 µs to ~500 µs (benches/README.md).
//!
//! A file that takes many small syncs has its reserved blocks zeroed ahead of its end in the
//! background (`maybe_zero_ahead`), so that its durable writes overwrite initialized blocks
//! instead of converting unwritten extents.
//!
//! Owned by one shard. Appends must not overlap (the partition log serialises them); `flush`,
//! `wait_written` and `sync` may run concurrently with appends. No `RefCell` borrow is held
//! across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};

use super::buffer_pool;
use super::error::{Result, StorageError};
use super::file::{align_down, align_up, AlignedBuffer, DirectFile, PAGE_SIZE_BYTES};
use super::notify::Notify;
use super::write_budget;

#[derive(Debug, Clone, Copy)]
pub struct AppenderConfig {
    /// Size of a full write of small appends (and of the in-memory buffers).
    pub chunk_size_bytes: usize,
    /// An append that fills more than one chunk is written in buffers of up to this size:
    /// one large write costs the device less than many chunk-sized ones (a 1 MiB batch
    /// written in 64 KiB pieces reached 60% of fio's durable bandwidth, in one piece 82-94%).
    pub large_write_bytes_max: usize,
    /// Size of the buffers (and full writes) of a file that is streaming: small appends
    /// filling buffer after buffer with no sync in between (see `STREAMING_FULL_WRITES_MIN`).
    /// A whole number of chunks, at most `large_write_bytes_max`.
    pub stream_chunk_bytes: usize,
    /// Bytes of writes in flight before an append waits.
    pub inflight_bytes_max: usize,
    pub preallocate_step_bytes: u64,
    /// Steps stop here (a segment's `segment.bytes`) unless an append needs more: blocks
    /// reserved past the size the file is cut to when sealed are freed again, and on a
    /// filesystem mounted with `discard` the truncate waits for their discard.
    pub preallocate_limit_bytes: u64,
    /// Zero reserved blocks ahead of a file that takes many small syncs (see
    /// `maybe_zero_ahead`).
    pub zero_ahead: bool,
}

pub struct Appender {
    file: DirectFile,
    /// The same file opened with O_DSYNC, by the second `sync`: a file synced once (sealed at
    /// a roll) or never (the indexes) does not hold a second descriptor.
    dsync_file: RefCell<Option<DirectFile>>,
    sync_count: Cell<u64>,
    config: AppenderConfig,
    state: RefCell<State>,
    /// Signalled when a write completes or the appender fails.
    progress: Notify,
    /// fdatasyncs in flight, oldest first: a sync whose bytes were all written before one of
    /// them started waits for it instead of issuing its own.
    fdatasyncs: RefCell<VecDeque<RunningFdatasync>>,
}

type SharedFdatasync = Shared<LocalBoxFuture<'static, Result<()>>>;

struct RunningFdatasync {
    /// Every byte below this had been written when the fdatasync started: it makes them
    /// durable.
    written_position: u64,
    future: SharedFdatasync,
}
/// Full-buffer writes since the last sync from which a file counts as streaming: its next
/// buffers are `stream_chunk_bytes` instead of a chunk. Fewer, larger writes cost less CPU per
/// byte (each direct write into preallocated blocks maps and splits an unwritten extent, and
/// is one more submission); measured with 16 KiB appends, 256 KiB buffers took the executor
/// 4.0-5.1 µs per batch where 64 KiB ones took 5.1-5.8 (benches/README.md). Files synced
/// every few appends keep chunk-sized buffers, which is also what an idle partition holds.
const STREAMING_FULL_WRITES_MIN: u32 = 4;

/// Full-buffer writes per sync interval that may go through the O_DSYNC twin, and the most
/// the previous interval may have had for them to. Each such write costs a device flush of its
/// own; 1 keeps flushes at most one more than syncs. Tried: 4 (four producers of 1 MiB
/// batches, each waiting on its own) fell from 68% to 51% of fio (benches/README.md).
const DSYNC_WRITES_PER_SYNC_MAX: u32 = 1;

/// A preallocation step used up within this long marks the file as busy: its next step is
/// `HOT_STEP_FACTOR` times the configured one (4 x 32 MiB: one background fallocate per
/// 128 MiB segment instead of three).
const HOT_STEP_INTERVAL: Duration = Duration::from_secs(1);
const HOT_STEP_FACTOR: u64 = 4;

/// Zero-ahead: preallocated blocks are unwritten extents, and a direct write into one must
/// convert it, which makes a durable write wait for a metadata write too. Measured here with
/// fio, a 16 KiB O_DSYNC write took 161 µs into fresh preallocated blocks and 88 µs over
/// written ones; ringlog's 16 KiB durable appends at queue depth 1 went from 66-73 to
/// 101-119 MB/s with the segment zeroed beforehand (benches/README.md). So a file whose syncs
/// each make less than this durable, this many times in a row, has the reserved blocks ahead
/// of its end written with zeros (and fdatasynced) in the background, `ZERO_AHEAD_BYTES`
/// ahead, one `ZERO_STEP_BYTES` write at a time. Large or rare syncs (big batches, non-durable
/// streams) never start it: for them the doubled writes would cost bandwidth and the
/// conversion is a small part of each write.
const ZERO_AHEAD_SYNC_BYTES_MAX: u64 = 256 * 1024;
const ZERO_AHEAD_STREAK_MIN: u32 = 8;
const ZERO_AHEAD_BYTES: u64 = 4 * 1024 * 1024;
const ZERO_STEP_BYTES: usize = 1024 * 1024;

thread_local! {
    /// One zero-filled buffer per shard for every zero-ahead write: it is never written to.
    static ZEROS: RefCell<Option<Rc<AlignedBuffer>>> = const { RefCell::new(None) };
}

struct State {
    /// Holds file bytes [buffer_position, buffer_position + buffer_fill).
    buffer: AlignedBuffer,
    buffer_position: u64,
    buffer_fill: usize,
    /// `buffer_fill` as of the last tail write, to skip flushes that would write nothing new.
    tail_written_fill: usize,
    /// A partial (tail) write of the current buffer is in flight, and its id. Writes of the
    /// same pages must not be in flight together, or an older one could land last: a later
    /// tail write waits for it, and the full write of the same buffer is issued after it.
    tail_write_inflight: bool,
    tail_write_id: u64,
    inflight: VecDeque<InflightWrite>,
    inflight_bytes: usize,
    next_write_id: u64,
    /// Every byte below this is on disk (written, not necessarily synced).
    written_position: u64,
    allocated_bytes: u64,
    failure: Option<String>,
    appending: bool,
    /// A background fallocate is in flight (see `reserve`).
    preallocating: bool,
    /// When the last preallocation step was reserved: a step used up within
    /// `HOT_STEP_INTERVAL` makes the next one `HOT_STEP_FACTOR` times larger.
    last_reserved_at: Option<Instant>,
    /// Writes issued through the plain descriptor, and how many of the first ones an
    /// fdatasync that started after they completed has made durable. While the two are
    /// equal, every byte written is durable once its write completes.
    plain_write_count: u64,
    plain_writes_synced: u64,
    /// Full-buffer writes since the last `sync` began, and in the interval before it. When
    /// syncs come at most one full write apart (one producer waiting on every batch), the
    /// first full write after a sync goes through the O_DSYNC twin, so the next sync needs no
    /// fdatasync; at most one extra device flush per sync, never more flushes than syncs.
    full_writes_since_sync: u32,
    full_writes_last_sync_interval: u32,
    /// Zero-ahead has written (or data has) every reserved block below this.
    zeroed_position: u64,
    /// A zero-ahead write and its fdatasync are in flight over this range. No other write may
    /// overlap it: one landing first would be overwritten with zeros.
    zeroing: Option<(u64, u64)>,
    /// Syncs in a row that each made less than `ZERO_AHEAD_SYNC_BYTES_MAX` durable, and where
    /// the last one ended.
    small_sync_streak: u32,
    last_sync_position: u64,
    /// A truncate is cutting the file: no zero-ahead write may start.
    zeroing_paused: bool,
    /// Writes that waited for a zero-ahead write over their range.
    writes_held_for_zeroing: u64,
}

/// Shown every byte of a checked append, in order and in blocks, just before each block is
/// copied; decides afterwards whether the append may go ahead.
pub trait CopyCheck {
    fn update(&mut self, block: &[u8]);
    /// Called once every byte has been shown.
    fn finish(&self) -> Result<()>;
}

/// The check of an unchecked append.
struct NoCheck;

impl CopyCheck for NoCheck {
    fn update(&mut self, _block: &[u8]) {}

    fn finish(&self) -> Result<()> {
        Ok(())
    }
}

/// A checked append copies and checks in blocks this large: each is read from memory once,
/// by the check, and copied from the L1 cache. Measured on 1 MiB batches not in any cache:
/// CRC-32C then copy 101-112 µs, in 4 KiB blocks 75-79 µs, in 16 KiB blocks 108-118 µs.
const CHECK_BLOCK_BYTES: usize = 4096;

/// Bytes copied by `copy_in` but not yet part of the file.
struct Copied {
    /// Buffers after the current one: every one but the last is full.
    next_buffers: Vec<AlignedBuffer>,
    /// The fill of the last buffer reached (the current one when `next_buffers` is empty).
    fill_after: usize,
}

impl Copied {
    /// Drops copied bytes: the logical end never moved, so what they overwrote past the
    /// current buffer's fill was never part of the file.
    fn discard(self, appender: &Appender) {
        for buffer in self.next_buffers {
            appender.recycle(buffer);
        }
    }
}

/// What a `sync` made durable, and how.
#[derive(Debug, Clone, Copy)]
pub struct Synced {
    /// Every byte below this is durable.
    pub position: u64,
    /// It issued an fdatasync; otherwise O_DSYNC writes alone made it durable, or an
    /// fdatasync another sync had issued after those bytes were written.
    pub fdatasynced: bool,
}

/// What a tail write issued for a sync leaves to do.
struct SyncPoint {
    /// The logical end that is on its way to disk.
    position: u64,
    /// Every write since the last fdatasync went through the O_DSYNC twin: once they complete,
    /// everything below `position` is durable without an fdatasync.
    durable_when_written: bool,
    /// `plain_write_count` when the tail write was issued; an fdatasync after
    /// `wait_written(position)` covers these.
    plain_write_count: u64,
}

impl State {
    /// Logical end: the position the next append lands at.
    fn end_position(&self) -> u64 {
        self.buffer_position + self.buffer_fill as u64
    }
}

struct InflightWrite {
    id: u64,
    end_position: u64,
    size_bytes: usize,
    done: bool,
}

/// Ends an append. An append dropped halfway (its task cancelled) leaves part of the bytes in
/// the buffer: the file is then marked failed, so the log refuses writes until it is reopened
/// and recovered, instead of going on from an inconsistent end.
struct AppendGuard<'a> {
    appender: &'a Appender,
    finished: bool,
}

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.appender.state.borrow_mut();
        state.appending = false;
        if !self.finished {
            state
                .failure
                .get_or_insert_with(|| "an append was cancelled halfway".to_string());
        }
    }
}

impl Appender {
    /// Resumes appending at `end_position`; the bytes before it are already on disk.
    pub async fn open(
        file: DirectFile,
        config: AppenderConfig,
        end_position: u64,
    ) -> Result<Rc<Self>> {
        assert!(config.chunk_size_bytes as u64 % PAGE_SIZE_BYTES == 0);
        let allocated_bytes = file.size_bytes().await?.max(end_position);
        let buffer_position = align_down(end_position);
        let buffer_fill = (end_position - buffer_position) as usize;
        let mut buffer = file.alloc_buffer(config.chunk_size_bytes);
        if buffer_fill > 0 {
            let tail = file.read_at(buffer_position, buffer_fill).await?;
            if tail.len() != buffer_fill {
                return Err(StorageError::LogFailed(format!(
                    "{}: file shorter than its recovered end {end_position}",
                    file.path().display()
                )));
            }
            buffer.as_bytes_mut()[..buffer_fill].copy_from_slice(&tail);
        }
        Ok(Rc::new(Appender {
            file,
            dsync_file: RefCell::new(None),
            sync_count: Cell::new(0),
            config,
            state: RefCell::new(State {
                buffer,
                buffer_position,
                buffer_fill,
                tail_written_fill: buffer_fill,
                tail_write_inflight: false,
                tail_write_id: 0,
                inflight: VecDeque::new(),
                inflight_bytes: 0,
                next_write_id: 0,
                written_position: end_position,
                allocated_bytes,
                failure: None,
                appending: false,
                preallocating: false,
                last_reserved_at: None,
                // Bytes found on disk may never have been synced (a process that died
                // between a write and its fdatasync): the first sync must fdatasync.
                plain_write_count: u64::from(end_position > 0),
                plain_writes_synced: 0,
                full_writes_since_sync: 0,
                full_writes_last_sync_interval: u32::MAX,
                zeroed_position: end_position,
                zeroing: None,
                small_sync_streak: 0,
                last_sync_position: end_position,
                zeroing_paused: false,
                writes_held_for_zeroing: 0,
            }),
            progress: Notify::default(),
            fdatasyncs: RefCell::new(VecDeque::new()),
        }))
    }

    /// Logical end: the position the next append lands at.
    pub fn end_position(&self) -> u64 {
        self.state.borrow().end_position()
    }

    pub fn written_position(&self) -> u64 {
        self.state.borrow().written_position
    }

    fn check_failed(&self) -> Result<()> {
        match &self.state.borrow().failure {
            Some(reason) => Err(StorageError::LogFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Reserves disk blocks for `size_bytes` more bytes. Fails (typically with `DiskFull`)
    /// without changing anything, so a refused append leaves the file as it was.
    ///
    /// The next step is reserved in the background once less than half a step is left: an
    /// fallocate waits for every direct write in flight on the file (ext4, XFS), and awaited
    /// here it would also stop this shard from preparing the next writes meanwhile. Even in the
    /// background it is a stall of the file's writes (1.6-4.5 ms each here, for 32 MiB, every
    /// 13 ms at 2.5 GB/s), so a file that used up its last step within `HOT_STEP_INTERVAL`
    /// reserves a larger one: fewer stalls for a busy partition, while an idle one keeps
    /// little reserved and unwritten space.
    pub async fn reserve(self: &Rc<Self>, size_bytes: usize) -> Result<()> {
        self.check_failed()?;
        let needed = self.end_position() + size_bytes as u64;
        let step = self.step_bytes(false);
        let limit = self.config.preallocate_limit_bytes;
        loop {
            let (allocated_bytes, preallocating) = {
                let state = self.state.borrow();
                (state.allocated_bytes, state.preallocating)
            };
            if needed <= allocated_bytes {
                if allocated_bytes - needed < step / 2 && !preallocating {
                    let next_step_end =
                        (allocated_bytes + self.step_bytes(self.is_hot())).min(limit);
                    if next_step_end > allocated_bytes {
                        self.preallocate_in_background(next_step_end);
                    }
                }
                return Ok(());
            }
            if !preallocating {
                break;
            }
            // The step in flight may cover this append; if it failed, try in the foreground.
            self.wait_preallocation().await;
        }
        let target = (needed.div_ceil(step) * step).min(limit).max(needed);
        if let Err(error) = self.file.preallocate(target).await {
            self.give_back_partial_step().await;
            return Err(error);
        }
        let mut state = self.state.borrow_mut();
        state.allocated_bytes = state.allocated_bytes.max(target);
        state.last_reserved_at = Some(Instant::now());
        Ok(())
    }

    /// One preallocation step; `HOT_STEP_FACTOR` of them for a `hot` file.
    fn step_bytes(&self, hot: bool) -> u64 {
        let step = self.config.preallocate_step_bytes.max(PAGE_SIZE_BYTES);
        if hot {
            step * HOT_STEP_FACTOR
        } else {
            step
        }
    }

    /// The file used up its last preallocation step within `HOT_STEP_INTERVAL`.
    pub fn is_hot(&self) -> bool {
        self.state
            .borrow()
            .last_reserved_at
            .is_some_and(|at| at.elapsed() < HOT_STEP_INTERVAL)
    }

    /// Reserves a new file's first step: `HOT_STEP_FACTOR` steps when the file it follows
    /// (the segment rolled away from) was hot, so that a busy partition's new segment does not
    /// start with plain steps again.
    pub async fn reserve_first_step(self: &Rc<Self>, hot: bool) -> Result<()> {
        let bytes = self
            .step_bytes(hot)
            .min(self.config.preallocate_limit_bytes);
        self.reserve(bytes as usize).await
    }

    /// After a failed fallocate: ext4 keeps the blocks it got before running out, and grows
    /// the file over them. On an almost full disk they would then be missing for other files
    /// (the disk-full test saw a new segment's partial first step starve its index files).
    /// Nothing is written past the reserved end or the tail page, so cutting the file back
    /// there gives them back.
    async fn give_back_partial_step(&self) {
        let keep_bytes = self
            .state
            .borrow()
            .allocated_bytes
            .max(align_up(self.end_position()));
        if let Err(error) = self.file.truncate(keep_bytes).await {
            tracing::debug!(path = %self.file.path().display(), %error,
                "could not give back a partly reserved preallocation step");
        }
    }

    /// Waits until no background preallocation is in flight, whether it succeeded or not.
    async fn wait_preallocation(&self) {
        self.progress
            .wait_for(|| (!self.state.borrow().preallocating).then_some(()))
            .await;
    }

    /// Reserves blocks up to `target` without anyone waiting. A failure (a full disk) is only
    /// logged: the append that needs the space reserves it itself and gets the typed error.
    fn preallocate_in_background(self: &Rc<Self>, target: u64) {
        self.state.borrow_mut().preallocating = true;
        let appender = Rc::clone(self);
        crate::runtime::spawn_local(async move {
            let result = appender.file.preallocate(target).await;
            if result.is_err() {
                // Before `preallocating` clears: a foreground step must not run beside the cut.
                appender.give_back_partial_step().await;
            }
            {
                let mut state = appender.state.borrow_mut();
                state.preallocating = false;
                match result {
                    Ok(()) => {
                        state.allocated_bytes = state.allocated_bytes.max(target);
                        state.last_reserved_at = Some(Instant::now());
                    }
                    Err(error) => {
                        // Likely a nearly full disk: the next try is a plain step again.
                        state.last_reserved_at = None;
                        tracing::debug!(
                            path = %appender.file.path().display(),
                            %error,
                            "background preallocation failed; the next append reserves its own space"
                        );
                    }
                }
            }
            appender.progress.notify_all();
        })
        .detach();
    }

    /// Appends `data` and returns the position it starts at. Call `reserve` first.
    pub async fn append(self: &Rc<Self>, data: &[u8]) -> Result<u64> {
        self.append_checked(data, &mut NoCheck).await
    }

    /// `append`, but only if `check`, shown every byte of `data` in order, finds them good;
    /// otherwise it returns the check's error and nothing changes. Up to
    /// `held_back_bytes_max` bytes are checked block by block as they are copied, while each
    /// block is in the CPU cache, and written once all are checked; a larger append is checked
    /// in a pass of its own first.
    pub async fn append_checked(
        self: &Rc<Self>,
        data: &[u8],
        check: &mut dyn CopyCheck,
    ) -> Result<u64> {
        self.check_failed()?;
        {
            let mut state = self.state.borrow_mut();
            assert!(!state.appending, "appends to one file must not overlap");
            state.appending = true;
        }
        let mut guard = AppendGuard {
            appender: self,
            finished: false,
        };
        let result = self.append_inner(data, check).await;
        guard.finished = true;
        result
    }

    async fn append_inner(self: &Rc<Self>, data: &[u8], check: &mut dyn CopyCheck) -> Result<u64> {
        let start = self.end_position();
        let held_back_bytes_max = self.held_back_bytes_max();
        if data.len() <= held_back_bytes_max {
            let copied = self.copy_in(data, Some(check));
            if let Err(error) = check.finish() {
                copied.discard(self);
                return Err(error);
            }
            self.write_out(copied).await?;
        } else {
            check.update(data);
            check.finish()?;
            for piece in data.chunks(held_back_bytes_max) {
                let copied = self.copy_in(piece, None);
                self.write_out(copied).await?;
            }
        }
        Ok(start)
    }

    /// The most bytes of one append copied before any of them is written: two large writes.
    fn held_back_bytes_max(&self) -> usize {
        2 * self
            .config
            .large_write_bytes_max
            .max(self.config.chunk_size_bytes)
    }

    /// Copies `data` after the current buffer's fill, into fresh buffers past its end, without
    /// changing the logical end: `write_out` makes it part of the file, `Copied::discard` drops
    /// it. When the bytes would fill a smaller buffer up to a large write, it is first swapped
    /// for a large buffer (with the bytes it holds), so that they go out in one large write.
    /// Buffers after it are chunks, or stream buffers once the file streams (see
    /// `STREAMING_FULL_WRITES_MIN`): only these three sizes are used, which the shard's pool
    /// reuses.
    fn copy_in(&self, data: &[u8], mut check: Option<&mut dyn CopyCheck>) -> Copied {
        let chunk = self.config.chunk_size_bytes;
        let large = self.config.large_write_bytes_max;
        debug_assert_eq!(large % chunk, 0, "large writes keep chunk alignment");
        let mut state = self.state.borrow_mut();
        let next_chunk_bytes = if state.full_writes_since_sync >= STREAMING_FULL_WRITES_MIN {
            self.config.stream_chunk_bytes
        } else {
            chunk
        };
        let mut fill = state.buffer_fill;
        if state.buffer.len() < large && fill + data.len() >= large {
            let mut grown = self.take_buffer(large);
            grown.as_bytes_mut()[..fill].copy_from_slice(&state.buffer.as_bytes()[..fill]);
            let small = std::mem::replace(&mut state.buffer, grown);
            self.recycle(small);
        }
        let mut next_buffers: Vec<AlignedBuffer> = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let target = next_buffers.last_mut().unwrap_or(&mut state.buffer);
            let taken = (target.len() - fill).min(rest.len());
            let (piece, after) = rest.split_at(taken);
            let destination = &mut target.as_bytes_mut()[fill..fill + taken];
            match check.as_deref_mut() {
                Some(check) => {
                    for (to, from) in destination
                        .chunks_mut(CHECK_BLOCK_BYTES)
                        .zip(piece.chunks(CHECK_BLOCK_BYTES))
                    {
                        check.update(from);
                        to.copy_from_slice(from);
                    }
                }
                None => destination.copy_from_slice(piece),
            }
            fill += taken;
            rest = after;
            if fill == target.len() {
                let size_bytes = if large > chunk && rest.len() >= large {
                    large
                } else {
                    next_chunk_bytes
                };
                next_buffers.push(self.take_buffer(size_bytes));
                fill = 0;
            }
        }
        Copied {
            next_buffers,
            fill_after: fill,
        }
    }

    /// Makes copied bytes part of the file: every buffer they filled is written, and the last
    /// one they reached becomes the current buffer. Waits while more than
    /// `inflight_bytes_max` are in flight, and while the shard has more than its bound in
    /// flight over all its files (`write_budget`).
    async fn write_out(self: &Rc<Self>, copied: Copied) -> Result<()> {
        let mut writes = Vec::with_capacity(copied.next_buffers.len());
        {
            let mut state = self.state.borrow_mut();
            for next in copied.next_buffers {
                let full = std::mem::replace(&mut state.buffer, next);
                // The full write goes after a tail write of the same buffer still in flight:
                // the append goes on at once, so that producers waiting on a sync keep
                // appending meanwhile.
                let after = state.tail_write_inflight.then_some(state.tail_write_id);
                // Only with nothing else in flight, as for one producer waiting on each
                // batch: beside other writes (several producers, each waiting on its own)
                // every O_DSYNC write adds a device flush that a shared fdatasync saves.
                // Measured with four producers of 1 MiB: 1056-1124 device flushes per GiB
                // with them, 954-978 without.
                let dsync = state.full_writes_since_sync < DSYNC_WRITES_PER_SYNC_MAX
                    && state.full_writes_last_sync_interval <= DSYNC_WRITES_PER_SYNC_MAX
                    && state.inflight.is_empty()
                    && self.dsync_file.borrow().is_some();
                state.full_writes_since_sync = state.full_writes_since_sync.saturating_add(1);
                let position = state.buffer_position;
                let written_fill = std::mem::take(&mut state.tail_written_fill);
                state.buffer_position += full.len() as u64;
                writes.push((full, position, written_fill, dsync, after));
            }
            state.buffer_fill = copied.fill_after;
        }
        for (full, position, written_fill, dsync, after) in writes {
            self.submit_full_buffer(full, position, written_fill, dsync, after);
        }
        let inflight_bytes_max = self.config.inflight_bytes_max;
        self.wait_until(|state| state.inflight_bytes <= inflight_bytes_max)
            .await?;
        write_budget::wait_within_bound().await;
        Ok(())
    }

    /// Hands a chunk or large buffer no write holds any more to the shard's pool. Other sizes
    /// (tail copies, whose sizes vary) are freed.
    fn recycle(&self, buffer: AlignedBuffer) {
        let size_bytes = buffer.len();
        if size_bytes == self.config.chunk_size_bytes
            || size_bytes == self.config.stream_chunk_bytes
            || size_bytes == self.config.large_write_bytes_max
        {
            buffer_pool::give_back(buffer);
        }
    }

    /// A buffer of `size_bytes` from the shard's pool, or fresh when it holds none.
    fn take_buffer(&self, size_bytes: usize) -> AlignedBuffer {
        buffer_pool::take(size_bytes).unwrap_or_else(|| self.file.alloc_buffer(size_bytes))
    }

    /// Writes a full buffer that holds file bytes from `position`, of which the first
    /// `written_fill` went out in the last tail write.
    fn submit_full_buffer(
        self: &Rc<Self>,
        buffer: AlignedBuffer,
        position: u64,
        written_fill: usize,
        dsync: bool,
        after: Option<u64>,
    ) {
        let end_position = position + buffer.len() as u64;
        // Pages wholly before the last tail write are on disk already (durable appends flush
        // the tail after each batch): write only from the first page that changed since,
        // instead of the whole buffer again. That costs a copy into a buffer of its own, so
        // when those pages are a small part of the buffer (a large write after a tail flush)
        // rewriting them, unchanged, is cheaper than copying the rest.
        let from = align_down(written_fill as u64) as usize;
        if from <= buffer.len() / 4 {
            self.submit(buffer, position, end_position, false, dsync, after);
        } else {
            let mut rest = self.file.alloc_buffer(buffer.len() - from);
            rest.as_bytes_mut()
                .copy_from_slice(&buffer.as_bytes()[from..]);
            self.recycle(buffer);
            self.submit(
                rest,
                position + from as u64,
                end_position,
                false,
                dsync,
                after,
            );
        }
    }

    /// Writes the tail pages that changed since the last tail write (the last one zero padded),
    /// if there are any. Returns the logical position that is on its way to disk.
    pub async fn flush(self: &Rc<Self>) -> Result<u64> {
        Ok(self.flush_tail(false).await?.position)
    }

    /// `flush`; for a sync, through the O_DSYNC twin when every earlier write is durable
    /// already or went through it too.
    async fn flush_tail(self: &Rc<Self>, for_sync: bool) -> Result<SyncPoint> {
        self.wait_until(|state| !state.tail_write_inflight).await?;
        let dsync_open = self.dsync_file.borrow().is_some();
        let (copy, position, end_position, dsync) = {
            let mut state = self.state.borrow_mut();
            let end_position = state.end_position();
            let clean = state.plain_write_count == state.plain_writes_synced;
            if state.buffer_fill == state.tail_written_fill {
                return Ok(SyncPoint {
                    position: end_position,
                    durable_when_written: clean,
                    plain_write_count: state.plain_write_count,
                });
            }
            // Pages wholly before the last tail write are on disk and have not changed since.
            let from = align_down(state.tail_written_fill as u64) as usize;
            let fill = state.buffer_fill;
            let padded = align_up(fill as u64) as usize;
            let mut copy = self.file.alloc_buffer(padded - from);
            let bytes = copy.as_bytes_mut();
            bytes[..fill - from].copy_from_slice(&state.buffer.as_bytes()[from..fill]);
            bytes[fill - from..].fill(0);
            state.tail_written_fill = fill;
            state.tail_write_inflight = true;
            let dsync = for_sync && clean && dsync_open;
            (
                copy,
                state.buffer_position + from as u64,
                end_position,
                dsync,
            )
        };
        let id = self.submit(copy, position, end_position, true, dsync, None);
        self.state.borrow_mut().tail_write_id = id;
        Ok(SyncPoint {
            position: end_position,
            durable_when_written: dsync,
            plain_write_count: self.state.borrow().plain_write_count,
        })
    }

    /// Issues a write, after the write `after` completes if that is given. Returns its id.
    fn submit(
        self: &Rc<Self>,
        buffer: AlignedBuffer,
        position: u64,
        end_position: u64,
        tail: bool,
        dsync: bool,
        after: Option<u64>,
    ) -> u64 {
        let size_bytes = buffer.len();
        let file = if dsync {
            self.dsync_file
                .borrow()
                .clone()
                .expect("O_DSYNC writes are chosen only once the twin is open")
        } else {
            self.file.clone()
        };
        let id = {
            let mut state = self.state.borrow_mut();
            if !dsync {
                state.plain_write_count += 1;
            }
            let id = state.next_write_id;
            state.next_write_id += 1;
            state.inflight.push_back(InflightWrite {
                id,
                end_position,
                size_bytes,
                done: false,
            });
            state.inflight_bytes += size_bytes;
            id
        };
        write_budget::add(size_bytes);
        let appender = Rc::clone(self);
        let buffer = Rc::new(buffer);
        let write_end = position + size_bytes as u64;
        crate::runtime::spawn_local(async move {
            let ready = match after {
                Some(before) => {
                    appender
                        .wait_until(|state| {
                            !state.inflight.iter().any(|w| w.id == before && !w.done)
                        })
                        .await
                }
                None => Ok(()),
            };
            let clear = move |state: &State| {
                state
                    .zeroing
                    .is_none_or(|(from, to)| write_end <= from || position >= to)
            };
            let ready = match ready {
                Ok(()) if !clear(&appender.state.borrow()) => {
                    appender.state.borrow_mut().writes_held_for_zeroing += 1;
                    appender.wait_until(clear).await
                }
                other => other,
            };
            let result = match ready {
                Ok(()) => file.write_rc_at(Rc::clone(&buffer), position).await,
                Err(error) => Err(error),
            };
            if let Ok(buffer) = Rc::try_unwrap(buffer) {
                appender.recycle(buffer);
            }
            appender.complete(id, tail, result);
        })
        .detach();
        id
    }

    fn complete(&self, id: u64, tail: bool, result: Result<()>) {
        {
            let mut state = self.state.borrow_mut();
            if tail {
                state.tail_write_inflight = false;
            }
            if let Err(error) = result {
                tracing::error!(path = %self.file.path().display(), %error, "direct write failed");
                state.failure.get_or_insert_with(|| error.to_string());
            }
            if let Some(write) = state.inflight.iter_mut().find(|w| w.id == id) {
                write.done = true;
                write_budget::release(write.size_bytes);
            }
            while state.inflight.front().is_some_and(|w| w.done) {
                let write = state.inflight.pop_front().expect("front exists");
                state.inflight_bytes -= write.size_bytes;
                // A tail write's logical end can lie below a later full write's: keep the max.
                state.written_position = state.written_position.max(write.end_position);
            }
        }
        self.progress.notify_all();
    }

    /// Waits until every byte below `position` is written (not necessarily synced).
    pub async fn wait_written(&self, position: u64) -> Result<()> {
        self.wait_until(|state| state.written_position >= position)
            .await
    }

    /// Makes every byte below the current end durable: flush the tail, wait, and fdatasync
    /// unless every write since the last one went through the O_DSYNC twin.
    pub async fn sync(self: &Rc<Self>) -> Result<Synced> {
        self.sync_count.set(self.sync_count.get() + 1);
        if self.sync_count.get() > 1 && self.dsync_file.borrow().is_none() {
            let twin = self.file.open_dsync_twin().await?;
            self.dsync_file.borrow_mut().get_or_insert(twin);
        }
        {
            let mut state = self.state.borrow_mut();
            state.full_writes_last_sync_interval =
                std::mem::take(&mut state.full_writes_since_sync);
            let end = state.end_position();
            let made_durable = end.saturating_sub(state.last_sync_position);
            if made_durable >= ZERO_AHEAD_SYNC_BYTES_MAX {
                state.small_sync_streak = 0;
            } else if made_durable > 0 {
                state.small_sync_streak = state.small_sync_streak.saturating_add(1);
            }
            state.last_sync_position = state.last_sync_position.max(end);
        }
        let point = self.flush_tail(true).await?;
        self.wait_written(point.position).await?;
        let mut fdatasynced = false;
        if !point.durable_when_written {
            fdatasynced = self.fdatasync_covering(point.position).await?;
            let mut state = self.state.borrow_mut();
            state.plain_writes_synced = state.plain_writes_synced.max(point.plain_write_count);
        }
        self.maybe_zero_ahead();
        Ok(Synced {
            position: point.position,
            fdatasynced,
        })
    }

    /// Makes every byte below `position`, all written already, durable: by an fdatasync in
    /// flight that started after they were written, or else by a new one. Two group commits
    /// that wait for the same write completion would otherwise both issue one at once (a
    /// quarter of the fdatasyncs of four producers of 1 MiB did), and each costs the device
    /// a journal commit or a flush. Returns whether it issued one.
    async fn fdatasync_covering(&self, position: u64) -> Result<bool> {
        let running = {
            let mut fdatasyncs = self.fdatasyncs.borrow_mut();
            // A finished one is dropped even if its issuer was cancelled before doing so: a
            // failed one must not answer the retry of a sync it failed.
            fdatasyncs.retain(|running| running.future.peek().is_none());
            fdatasyncs
                .iter()
                .rev()
                .find(|running| running.written_position >= position)
                .map(|running| running.future.clone())
        };
        if let Some(future) = running {
            return future.await.map(|()| false);
        }
        let file = self.file.clone();
        let future = async move { file.sync().await }.boxed_local().shared();
        let written_position = self.state.borrow().written_position;
        self.fdatasyncs.borrow_mut().push_back(RunningFdatasync {
            written_position,
            future: future.clone(),
        });
        let result = future.clone().await;
        // Joiners hold their own clones; the list only serves syncs still to come.
        self.fdatasyncs
            .borrow_mut()
            .retain(|running| !running.future.ptr_eq(&future));
        result.map(|()| true)
    }

    /// Starts the next zero-ahead write when the file takes small syncs and the zeroed blocks
    /// reach less than `ZERO_AHEAD_BYTES` past its end. Zeroes only reserved blocks, and only
    /// past the current buffer's end, beyond every write issued so far; later writes into the
    /// range wait for it (`submit`). A failed one is not retried until the streak of small
    /// syncs builds up again: zero-ahead only saves time, it is never needed.
    fn maybe_zero_ahead(self: &Rc<Self>) {
        if !self.config.zero_ahead {
            return;
        }
        let (from, to) = {
            let mut state = self.state.borrow_mut();
            if state.zeroing.is_some()
                || state.zeroing_paused
                || state.failure.is_some()
                || state.small_sync_streak < ZERO_AHEAD_STREAK_MIN
            {
                return;
            }
            let end = state.end_position();
            let frontier = state.buffer_position + state.buffer.len() as u64;
            let from = state.zeroed_position.max(frontier);
            let to = from + ZERO_STEP_BYTES as u64;
            if from >= end + ZERO_AHEAD_BYTES || to > state.allocated_bytes {
                return;
            }
            state.zeroing = Some((from, to));
            (from, to)
        };
        let zeros = ZEROS.with(|zeros| {
            Rc::clone(zeros.borrow_mut().get_or_insert_with(|| {
                let mut buffer = self.file.alloc_buffer(ZERO_STEP_BYTES);
                buffer.as_bytes_mut().fill(0);
                Rc::new(buffer)
            }))
        });
        write_budget::add(ZERO_STEP_BYTES);
        let appender = Rc::clone(self);
        crate::runtime::spawn_local(async move {
            let result = match appender.file.write_rc_at(zeros, from).await {
                // The blocks' new state must be durable too, or an O_DSYNC write landing there
                // would still wait for it.
                Ok(()) => appender.file.sync().await,
                Err(error) => Err(error),
            };
            write_budget::release(ZERO_STEP_BYTES);
            {
                let mut state = appender.state.borrow_mut();
                state.zeroing = None;
                match &result {
                    Ok(()) => {
                        state.zeroed_position = state.zeroed_position.max(to);
                        crate::metrics::zero_ahead_written(to - from);
                    }
                    Err(error) => {
                        tracing::debug!(path = %appender.file.path().display(), %error,
                            "zero-ahead write failed; appends go on into unwritten blocks");
                        state.small_sync_streak = 0;
                    }
                }
            }
            appender.progress.notify_all();
            if result.is_ok() {
                appender.maybe_zero_ahead();
            }
        })
        .detach();
    }

    /// Waits for every write, zero-ahead write and background preallocation in flight, failed
    /// or not: after it, nothing is in flight on the file (a step reserved or zeroed after a
    /// cut would grow the file again).
    pub async fn drain(&self) {
        self.progress
            .wait_for(|| {
                let state = self.state.borrow();
                (state.inflight.is_empty() && !state.preallocating && state.zeroing.is_none())
                    .then_some(())
            })
            .await;
    }

    /// Durably cuts the file to exactly `end_position` bytes (no preallocated tail), and keeps
    /// appending from there. Used when a segment is sealed and by `truncate_to`.
    pub async fn truncate(self: &Rc<Self>, end_position: u64) -> Result<()> {
        self.state.borrow_mut().zeroing_paused = true;
        self.flush().await?;
        self.drain().await;
        self.check_failed()?;
        assert!(end_position <= self.end_position());
        let reload_from_disk = end_position < self.state.borrow().buffer_position;
        if reload_from_disk {
            let buffer_position = align_down(end_position);
            let fill = (end_position - buffer_position) as usize;
            let mut buffer = self.take_buffer(self.config.chunk_size_bytes);
            let tail = self.file.read_at(buffer_position, fill).await?;
            if tail.len() != fill {
                return Err(StorageError::LogFailed(format!(
                    "{}: short read while truncating",
                    self.file.path().display()
                )));
            }
            buffer.as_bytes_mut()[..fill].copy_from_slice(&tail);
            let mut state = self.state.borrow_mut();
            state.buffer = buffer;
            state.buffer_position = buffer_position;
            state.buffer_fill = fill;
        } else {
            let mut state = self.state.borrow_mut();
            state.buffer_fill = (end_position - state.buffer_position) as usize;
        }
        {
            let mut state = self.state.borrow_mut();
            state.tail_written_fill = state.buffer_fill;
            state.written_position = end_position;
            state.allocated_bytes = end_position;
            state.zeroed_position = end_position;
            state.last_sync_position = end_position;
        }
        let plain_write_count = self.state.borrow().plain_write_count;
        self.file.truncate(end_position).await?;
        self.file.sync().await?;
        let mut state = self.state.borrow_mut();
        state.plain_writes_synced = state.plain_writes_synced.max(plain_write_count);
        state.zeroing_paused = false;
        Ok(())
    }

    async fn wait_until(&self, mut ready: impl FnMut(&State) -> bool) -> Result<()> {
        self.progress
            .wait_for(|| {
                let state = self.state.borrow();
                if let Some(reason) = &state.failure {
                    return Some(Err(StorageError::LogFailed(reason.clone())));
                }
                ready(&state).then_some(Ok(()))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file;

    fn config() -> AppenderConfig {
        AppenderConfig {
            chunk_size_bytes: 4096,
            large_write_bytes_max: 8192,
            stream_chunk_bytes: 8192,
            inflight_bytes_max: 64 * 1024,
            preallocate_step_bytes: 1 << 20,
            preallocate_limit_bytes: 1 << 20,
            zero_ahead: false,
        }
    }

    /// Runs `test` on an executor with an appender over a fresh file in a temporary directory,
    /// and that file's path (to read back what reached the disk).
    fn with_appender<F, Fut>(config: AppenderConfig, test: F)
    where
        F: FnOnce(Rc<Appender>, std::path::PathBuf) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        crate::runtime::run_on_executor("appender-test", move || async move {
            file::prime_device(path.parent().unwrap()).await.unwrap();
            let file = DirectFile::open(&path, true).await.unwrap();
            let appender = Appender::open(file, config, 0).await.unwrap();
            test(appender, path).await;
        })
        .unwrap();
    }

    /// Small syncs in a row start zero-ahead: reserved blocks past the end are written with
    /// zeros in the background; appends that reach a range being zeroed wait for it, so every
    /// byte reads back as appended, the zeros stay after the end, and a cut leaves none.
    #[test]
    fn small_syncs_zero_ahead_without_ever_zeroing_appended_bytes() {
        let config = AppenderConfig {
            preallocate_step_bytes: 8 << 20,
            preallocate_limit_bytes: 16 << 20,
            zero_ahead: true,
            ..config()
        };
        with_appender(config, |appender, path| async move {
            let pattern = |i: usize, len: usize| -> Vec<u8> {
                (0..len).map(|j| (i * 31 + j * 7 % 251) as u8 | 1).collect()
            };
            let mut expected = Vec::new();
            for i in 0..(ZERO_AHEAD_STREAK_MIN as usize + 8) {
                let bytes = pattern(i, 3000);
                appender.reserve(bytes.len()).await.unwrap();
                appender.append(&bytes).await.unwrap();
                appender.sync().await.unwrap();
                expected.extend_from_slice(&bytes);
            }
            let zeroing_started = appender.state.borrow().zeroing.is_some()
                || appender.state.borrow().zeroed_position > appender.end_position();
            assert!(zeroing_started, "small syncs start zero-ahead");
            // Large appends right away run into the ranges being zeroed.
            for i in 0..6 {
                let bytes = pattern(100 + i, 700_000);
                appender.reserve(bytes.len()).await.unwrap();
                appender.append(&bytes).await.unwrap();
                expected.extend_from_slice(&bytes);
            }
            appender.sync().await.unwrap();
            appender.drain().await;
            let end = appender.end_position();
            assert_eq!(end, expected.len() as u64);
            let zeroed = appender.state.borrow().zeroed_position;
            assert!(zeroed > end, "zeroed up to {zeroed}, end {end}");
            assert!(
                appender.state.borrow().writes_held_for_zeroing > 0,
                "the large appends reached a range being zeroed"
            );
            let file = DirectFile::open(&path, false).await.unwrap();
            let on_disk = file.read_at(0, zeroed as usize).await.unwrap();
            assert!(
                on_disk[..end as usize] == expected[..],
                "appended bytes intact"
            );
            assert!(on_disk[end as usize..].iter().all(|b| *b == 0));

            appender.truncate(end).await.unwrap();
            assert_eq!(file.size_bytes().await.unwrap(), end);
        });
    }

    /// A file synced every append keeps chunk buffers; one filling buffer after buffer with no
    /// sync streams into larger ones; an append reaching a large write still goes out in one.
    /// The bytes read back as appended whatever the buffer sizes were.
    #[test]
    fn streaming_appends_use_stream_buffers_and_synced_ones_chunks() {
        let config = AppenderConfig {
            stream_chunk_bytes: 8192,
            large_write_bytes_max: 16384,
            ..config()
        };
        with_appender(config, |appender, path| async move {
            let mut expected = Vec::new();
            let buffer_len = || appender.state.borrow().buffer.len();
            for i in 0..20u8 {
                let bytes = vec![i | 1; 1000];
                appender.reserve(bytes.len()).await.unwrap();
                appender.append(&bytes).await.unwrap();
                appender.sync().await.unwrap();
                expected.extend_from_slice(&bytes);
                assert_eq!(buffer_len(), 4096, "synced appends keep chunk buffers");
            }
            for i in 0..60u8 {
                let bytes = vec![i | 0x80; 1000];
                appender.reserve(bytes.len()).await.unwrap();
                appender.append(&bytes).await.unwrap();
                expected.extend_from_slice(&bytes);
            }
            assert_eq!(buffer_len(), 8192, "a streaming file fills stream buffers");
            let large = vec![0x5a; 20_000];
            appender.reserve(large.len()).await.unwrap();
            appender.append(&large).await.unwrap();
            expected.extend_from_slice(&large);
            appender.sync().await.unwrap();
            appender.drain().await;
            let end = appender.end_position();
            assert_eq!(end, expected.len() as u64);
            let file = DirectFile::open(&path, false).await.unwrap();
            assert!(file.read_at(0, end as usize).await.unwrap() == expected[..]);
        });
    }

    #[test]
    fn syncs_of_bytes_written_before_an_fdatasync_started_share_it() {
        with_appender(config(), |appender, _path| async move {
            appender.reserve(10_000).await.unwrap();
            appender.append(&[7; 10_000]).await.unwrap();
            let end = appender.flush().await.unwrap();
            appender.wait_written(end).await.unwrap();

            // The second finds the first in flight, started after its bytes were written.
            let (first, second) = futures_util::join!(
                appender.fdatasync_covering(end),
                appender.fdatasync_covering(end)
            );
            assert_eq!((first.unwrap(), second.unwrap()), (true, false));
            // A finished one is not joined: the next sync issues its own.
            assert!(appender.fdatasync_covering(end).await.unwrap());

            // Bytes written after an fdatasync started are not covered by it.
            let running = appender.fdatasync_covering(end);
            futures_util::pin_mut!(running);
            assert!(futures_util::poll!(running.as_mut()).is_pending());
            appender.reserve(5_000).await.unwrap();
            appender.append(&[8; 5_000]).await.unwrap();
            let later_end = appender.flush().await.unwrap();
            appender.wait_written(later_end).await.unwrap();
            // Polled first, while the earlier one is still listed as running.
            let (later, earlier) =
                futures_util::join!(appender.fdatasync_covering(later_end), running);
            assert!(earlier.unwrap());
            assert!(
                later.unwrap(),
                "a sync of later bytes issues its own fdatasync"
            );
        });
    }
}
