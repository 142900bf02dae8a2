//! Idempotent-producer state of one partition (KIP-98): for each producer id, its epoch and the
//! metadata of its last [`BATCHES_RETAINED_MAX`] appended batches, so that a retried batch is
//! acknowledged with its original offsets instead of being appended twice, a gap in sequence
//! numbers is refused, and a producer with an older epoch is fenced.
//!
//! Owns the per-producer table, its bounds (at most `producers_max` producers, least recently
//! appended evicted first; producers idle for `producer_id_expiration_ms` expire) and the binary
//! snapshot format that carries the table across a restart.
//!
//! Lives on the shard that owns the partition and is never shared across cores. It must never do
//! I/O (the caller writes and reads snapshot files and scans the log), block, or panic on a batch
//! header or on snapshot bytes; it validates them and returns an error instead.
//!
//! Call order on the produce path: [`ProducerStateTable::check`] the batch, assign its offsets,
//! then [`ProducerStateTable::record`] it in the same synchronous step, before anything else can
//! check a batch of this partition. A client pipelines up to five requests per producer, so a
//! check that runs while an earlier batch is checked but not yet recorded would see a gap.
//! `record` every appended batch, idempotent or not, so that
//! [`ProducerStateTable::snapshot_offset`] follows the log end offset and a restart replays only
//! what the snapshot lacks.
//!
//! Transactions (ongoing transaction offsets, coordinator epochs, the last stable offset) are not
//! tracked here; control batches met while replaying the log only update the producer's epoch.

use std::collections::{BTreeMap, HashMap, VecDeque};

use kafka_protocol::ResponseError;

use crate::storage::batch::BatchHeader;

/// Batches remembered per producer: Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`, and the
/// most requests an idempotent client keeps in flight per connection.
pub const BATCHES_RETAINED_MAX: usize = 5;
pub const PRODUCERS_MAX_DEFAULT: usize = 10_000;
/// Kafka's `producer.id.expiration.ms` default: one day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 86_400_000;

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`: a producer entry that has not seen an epoch yet.
const NO_PRODUCER_EPOCH: i16 = -1;
/// Kafka's `RecordBatch.NO_SEQUENCE`: the last sequence of a producer with no batch retained.
const NO_SEQUENCE: i32 = -1;
/// Sequence numbers run from 0 to `i32::MAX` and then wrap to 0.
const SEQUENCE_MODULUS: i64 = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStateConfig {
    /// Producer ids tracked at most; 0 tracks none, which turns duplicate detection off.
    pub producers_max: usize,
    /// A producer that has appended nothing for this long is forgotten.
    pub producer_id_expiration_ms: i64,
}

impl Default for ProducerStateConfig {
    fn default() -> Self {
        ProducerStateConfig {
            producers_max: PRODUCERS_MAX_DEFAULT,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
        }
    }
}

/// What to do with a batch, decided before it is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// A retry of a batch already in the log: answer with these values and append nothing.
    /// `timestamp_ms` is the original batch's max timestamp, which Kafka returns as the
    /// response's `log_append_time_ms`.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
        timestamp_ms: i64,
    },
}

/// Why a batch from an idempotent producer is refused. Nothing has been appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {sequence_base} does not follow the last \
         appended sequence {sequence_last}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        sequence_base: i32,
        sequence_last: i32,
    },
    #[error(
        "producer {producer_id}: new epoch {epoch} (current {epoch_current}) must start at \
         sequence 0, not {sequence_base}"
    )]
    NewEpochNotAtZero {
        producer_id: i64,
        epoch: i16,
        epoch_current: i16,
        sequence_base: i32,
    },
    #[error(
        "producer {producer_id}: epoch {epoch} is older than the current epoch {epoch_current}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        epoch_current: i16,
    },
    #[error("producer {producer_id}: invalid base sequence {sequence_base}")]
    InvalidSequence {
        producer_id: i64,
        sequence_base: i32,
    },
}

impl ProducerError {
    /// The error code a Kafka client expects in the partition's produce response.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ProducerError::OutOfOrderSequence { .. } | ProducerError::NewEpochNotAtZero { .. } => {
                ResponseError::OutOfOrderSequenceNumber.code()
            }
            ProducerError::InvalidProducerEpoch { .. } => {
                ResponseError::InvalidProducerEpoch.code()
            }
            // Kafka's LogValidator refuses a negative sequence with INVALID_RECORD.
            ProducerError::InvalidSequence { .. } => ResponseError::InvalidRecord.code(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot needs {needed_bytes} bytes but only {available_bytes} are present")]
    Truncated {
        needed_bytes: usize,
        available_bytes: usize,
    },
    #[error("not a producer state snapshot (magic {magic:02x?})")]
    BadMagic { magic: [u8; 4] },
    #[error("unsupported producer state snapshot version {version}")]
    UnsupportedVersion { version: u16 },
    #[error("snapshot CRC-32C mismatch: stored {expected:#010x}, bytes give {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
    #[error("corrupt snapshot: {reason}")]
    Corrupt { reason: &'static str },
    #[error("{trailing_bytes} bytes follow the last producer entry")]
    TrailingBytes { trailing_bytes: usize },
}

/// One appended batch of a producer, as remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMetadata {
    sequence_first: i32,
    sequence_last: i32,
    offset_first: i64,
    offset_last: i64,
    timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first, at most `BATCHES_RETAINED_MAX`, all of `epoch`: a new epoch clears them.
    batches: VecDeque<BatchMetadata>,
    /// Last offset of the last batch applied for this producer, data or control.
    offset_last: i64,
    /// Broker time of the last append; the batch's max timestamp when replayed from the log.
    append_time_ms: i64,
    /// This entry's key in `ProducerStateTable::lru`.
    lru_tick: u64,
}

impl ProducerEntry {
    fn empty() -> Self {
        ProducerEntry {
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::with_capacity(BATCHES_RETAINED_MAX),
            offset_last: -1,
            append_time_ms: i64::MIN,
            lru_tick: 0,
        }
    }

    fn sequence_last(&self) -> i32 {
        self.batches
            .back()
            .map_or(NO_SEQUENCE, |batch| batch.sequence_last)
    }

    fn find_batch(&self, sequence_first: i32, sequence_last: i32) -> Option<&BatchMetadata> {
        self.batches.iter().find(|batch| {
            batch.sequence_first == sequence_first && batch.sequence_last == sequence_last
        })
    }

    /// Kafka's `ProducerStateEntry.addBatch` (data) and `update` (control marker): a different
    /// epoch forgets the batches of the old one.
    fn apply(
        &mut self,
        epoch: i16,
        batch: Option<BatchMetadata>,
        offset_last: i64,
        append_time_ms: i64,
    ) {
        if self.epoch != epoch {
            self.batches.clear();
            self.epoch = epoch;
        }
        if let Some(batch) = batch {
            if self.batches.len() >= BATCHES_RETAINED_MAX {
                self.batches.pop_front();
            }
            self.batches.push_back(batch);
        }
        self.offset_last = offset_last;
        self.append_time_ms = append_time_ms;
    }
}

/// The idempotent-producer state of one partition. Owned by the partition's shard.
#[derive(Debug)]
pub struct ProducerStateTable {
    config: ProducerStateConfig,
    producers: HashMap<i64, ProducerEntry>,
    /// `lru_tick` → producer id, least recently appended first. Same keys as `producers`.
    lru: BTreeMap<u64, i64>,
    lru_tick_next: u64,
    /// The first offset not reflected here (exclusive end of what has been applied).
    offset_end: i64,
}

impl Default for ProducerStateTable {
    fn default() -> Self {
        ProducerStateTable::new(ProducerStateConfig::default())
    }
}

impl ProducerStateTable {
    pub fn new(config: ProducerStateConfig) -> Self {
        ProducerStateTable {
            config,
            producers: HashMap::new(),
            lru: BTreeMap::new(),
            lru_tick_next: 0,
            offset_end: 0,
        }
    }

    pub fn config(&self) -> ProducerStateConfig {
        self.config
    }

    /// Producer ids currently tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The first offset this state does not reflect: a snapshot taken now covers the log below
    /// it, and after loading that snapshot the log is replayed from here with
    /// [`ProducerStateTable::rebuild_from`].
    pub fn snapshot_offset(&self) -> i64 {
        self.offset_end
    }

    /// Decides, before appending, whether a batch is new, a retry of one of the producer's last
    /// [`BATCHES_RETAINED_MAX`] batches, or refused. Batches without a producer id are always
    /// appended. Follows Kafka's `UnifiedLog.analyzeAndValidateProducerState` and
    /// `ProducerAppendInfo.checkProducerEpoch` / `checkSequence` for client appends:
    ///
    /// 1. Same epoch and the same first and last sequence as a retained batch: `Duplicate`,
    ///    checked before anything else.
    /// 2. An epoch older than the producer's: `INVALID_PRODUCER_EPOCH` (fenced; Kafka 2.7+
    ///    answers this rather than `PRODUCER_FENCED`).
    /// 3. A newer epoch must start at sequence 0, else `OUT_OF_ORDER_SEQUENCE_NUMBER`. Epochs
    ///    compare as plain signed numbers: they never wrap, because a client whose epoch
    ///    reaches `i16::MAX` takes a new producer id instead (and the transaction coordinator
    ///    does so at `i16::MAX - 1`).
    /// 4. The same epoch must continue at the last sequence + 1, wrapping from `i32::MAX` to 0,
    ///    else `OUT_OF_ORDER_SEQUENCE_NUMBER` (a gap, or a retry older than the retained batches).
    ///
    /// An unknown producer (never seen, expired, evicted, or forgotten after `truncate_to`) is
    /// accepted at any sequence and any epoch. This is Kafka's behaviour since 2.5 (KIP-360,
    /// KAFKA-8710): the broker no longer answers `UNKNOWN_PRODUCER_ID` on produce, and current
    /// clients rely on being accepted after their records were deleted by retention. The same
    /// holds for a known producer whose epoch is still unset.
    ///
    /// A producer idle for `producer_id_expiration_ms` at `now_ms` counts as unknown even
    /// before [`ProducerStateTable::expire`] removes it. A negative base sequence is refused
    /// with `INVALID_RECORD`, as Kafka's `LogValidator` does. Control batches must be refused
    /// before this (Kafka: clients may not write control records); they are not looked at here.
    pub fn check(&self, header: &BatchHeader, now_ms: i64) -> Result<SequenceCheck, ProducerError> {
        let producer_id = header.producer_id.get();
        if producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let epoch = header.producer_epoch.get();
        let sequence_base = header.base_sequence.get();
        if sequence_base < 0 {
            return Err(ProducerError::InvalidSequence {
                producer_id,
                sequence_base,
            });
        }
        let Some(entry) = self.live_producer(producer_id, now_ms) else {
            return Ok(SequenceCheck::Append);
        };
        let sequence_last = sequence_add(sequence_base, offset_delta(header));
        if epoch == entry.epoch {
            if let Some(batch) = entry.find_batch(sequence_base, sequence_last) {
                return Ok(SequenceCheck::Duplicate {
                    base_offset: batch.offset_first,
                    last_offset: batch.offset_last,
                    timestamp_ms: batch.timestamp_ms,
                });
            }
        }
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id,
                epoch,
                epoch_current: entry.epoch,
            });
        }
        if entry.epoch == NO_PRODUCER_EPOCH {
            return Ok(SequenceCheck::Append);
        }
        if epoch != entry.epoch {
            if sequence_base != 0 {
                return Err(ProducerError::NewEpochNotAtZero {
                    producer_id,
                    epoch,
                    epoch_current: entry.epoch,
                    sequence_base,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let sequence_last_appended = entry.sequence_last();
        if !sequence_follows(sequence_last_appended, sequence_base) {
            return Err(ProducerError::OutOfOrderSequence {
                producer_id,
                epoch,
                sequence_base,
                sequence_last: sequence_last_appended,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch just given offsets from `base_offset`, after `check` answered `Append`.
    /// Call it for every appended batch: one without a producer id only moves
    /// [`ProducerStateTable::snapshot_offset`]. `now_ms` is the broker's clock; expiry counts
    /// from it.
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64, now_ms: i64) {
        debug_assert!(
            base_offset >= self.offset_end,
            "offsets go backwards: batch at {base_offset}, state already at {}",
            self.offset_end
        );
        self.apply(header, base_offset, now_ms);
    }

    /// Replays a batch header scanned from the log after loading a snapshot. Batches below
    /// [`ProducerStateTable::snapshot_offset`] are already reflected and skipped, so the scan
    /// may start at a segment boundary. Without a broker clock for the past, the batch's max
    /// timestamp stands in for its append time, as in Kafka; call
    /// [`ProducerStateTable::expire`] once the scan is done.
    pub fn rebuild_from(&mut self, header: &BatchHeader, base_offset: i64) {
        if base_offset < self.offset_end {
            return;
        }
        self.apply(header, base_offset, header.max_timestamp.get());
    }

    /// Forgets producers that have appended nothing for `producer_id_expiration_ms`
    /// (Kafka's `removeExpiredProducers`; Kafka runs it every ten minutes).
    pub fn expire(&mut self, now_ms: i64) {
        let expiration_ms = self.config.producer_id_expiration_ms;
        let lru = &mut self.lru;
        self.producers.retain(|_, entry| {
            let expired = is_expired(entry, now_ms, expiration_ms);
            if expired {
                lru.remove(&entry.lru_tick);
            }
            !expired
        });
        self.debug_check_bounds();
    }

    /// The log was truncated to end before `offset`: forgets the batches at or past it.
    ///
    /// Kafka reloads the state from the latest snapshot below the truncation point and replays
    /// the log (`truncateAndReload`); for that exact result, load such a snapshot and use
    /// `rebuild_from`. In memory, this keeps a producer's epoch and last sequence exact as long
    /// as one of its retained batches lies below `offset` (older batches already pushed out of
    /// the window are not recovered, so fewer retries are recognised). A producer left with no
    /// batch below `offset` is forgotten, so it is accepted as unknown at its next append.
    pub fn truncate_to(&mut self, offset: i64) {
        self.offset_end = self.offset_end.min(offset);
        let lru = &mut self.lru;
        self.producers.retain(|_, entry| {
            if entry.offset_last < offset {
                return true;
            }
            while entry
                .batches
                .back()
                .is_some_and(|batch| batch.offset_last >= offset)
            {
                entry.batches.pop_back();
            }
            match entry.batches.back() {
                Some(batch) => {
                    entry.offset_last = batch.offset_last;
                    true
                }
                None => {
                    lru.remove(&entry.lru_tick);
                    false
                }
            }
        });
        self.debug_check_bounds();
    }

    /// The log start offset moved to `log_start_offset` (retention, DeleteRecords). As Kafka
    /// since 2.5 (KIP-360, KAFKA-7190), producers and their retained batches are kept: a
    /// producer whose records were all deleted keeps its sequence, and a retry of a deleted
    /// batch is still acknowledged with its original offsets. Only the snapshot offset moves up,
    /// since nothing below the log start can be replayed (Kafka's `onLogStartOffsetIncremented`).
    pub fn remove_before(&mut self, log_start_offset: i64) {
        self.offset_end = self.offset_end.max(log_start_offset);
    }

    /// The state as snapshot bytes, covering the log below
    /// [`ProducerStateTable::snapshot_offset`]. See [`snapshot_format`] for the layout.
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot_format::write(self)
    }

    /// Loads a snapshot with the default configuration. See
    /// [`ProducerStateTable::from_snapshot_with_config`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Self::from_snapshot_with_config(bytes, ProducerStateConfig::default())
    }

    /// Loads a snapshot. If it holds more than `producers_max` producers, the most recently
    /// appended are kept. Expired producers are kept until [`ProducerStateTable::expire`]. If
    /// the log now ends below the snapshot's offset (its tail was lost in a crash), call
    /// [`ProducerStateTable::truncate_to`] with the log end offset before appending.
    pub fn from_snapshot_with_config(
        bytes: &[u8],
        config: ProducerStateConfig,
    ) -> Result<Self, SnapshotError> {
        snapshot_format::read(bytes, config)
    }

    fn live_producer(&self, producer_id: i64, now_ms: i64) -> Option<&ProducerEntry> {
        self.producers
            .get(&producer_id)
            .filter(|entry| !is_expired(entry, now_ms, self.config.producer_id_expiration_ms))
    }

    fn apply(&mut self, header: &BatchHeader, base_offset: i64, append_time_ms: i64) {
        let delta = offset_delta(header);
        let offset_last = base_offset.saturating_add(i64::from(delta));
        self.offset_end = self.offset_end.max(offset_last.saturating_add(1));
        let producer_id = header.producer_id.get();
        if producer_id < 0 {
            return;
        }
        let batch = (!header.is_control()).then(|| {
            let sequence_first = header.base_sequence.get();
            BatchMetadata {
                sequence_first,
                sequence_last: sequence_add(sequence_first, delta),
                offset_first: base_offset,
                offset_last,
                timestamp_ms: header.max_timestamp.get(),
            }
        });
        let expiration_ms = self.config.producer_id_expiration_ms;
        let Some(entry) = self.touch(producer_id) else {
            return;
        };
        if is_expired(entry, append_time_ms, expiration_ms) {
            // `check` treated it as unknown; start afresh rather than continue a stale window.
            let lru_tick = entry.lru_tick;
            *entry = ProducerEntry::empty();
            entry.lru_tick = lru_tick;
        }
        entry.apply(
            header.producer_epoch.get(),
            batch,
            offset_last,
            append_time_ms,
        );
        self.debug_check_bounds();
    }

    /// The entry of `producer_id`, created if needed, moved to the most recently used end.
    /// `None` only when `producers_max` is 0.
    fn touch(&mut self, producer_id: i64) -> Option<&mut ProducerEntry> {
        if let Some(entry) = self.producers.get(&producer_id) {
            self.lru.remove(&entry.lru_tick);
        } else {
            if self.config.producers_max == 0 {
                return None;
            }
            while self.producers.len() >= self.config.producers_max {
                let Some((_, evicted_id)) = self.lru.pop_first() else {
                    break;
                };
                self.producers.remove(&evicted_id);
            }
        }
        let lru_tick = self.lru_tick_next;
        self.lru_tick_next += 1;
        self.lru.insert(lru_tick, producer_id);
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(ProducerEntry::empty);
        entry.lru_tick = lru_tick;
        Some(entry)
    }

    /// Constant-time invariants, checked after every change in debug builds.
    fn debug_check_bounds(&self) {
        debug_assert_eq!(self.lru.len(), self.producers.len());
        debug_assert!(self.producers.len() <= self.config.producers_max);
    }

    /// Every invariant, entry by entry; for tests.
    #[cfg(test)]
    fn assert_invariants(&self) {
        self.debug_check_bounds();
        for (producer_id, entry) in &self.producers {
            assert!(entry.batches.len() <= BATCHES_RETAINED_MAX);
            assert_eq!(self.lru.get(&entry.lru_tick), Some(producer_id));
        }
    }
}

fn is_expired(entry: &ProducerEntry, now_ms: i64, expiration_ms: i64) -> bool {
    now_ms.saturating_sub(entry.append_time_ms) >= expiration_ms
}

/// Offsets a batch spans past its first; a negative delta (refused by batch validation) counts
/// as 0 so that nothing here depends on validation having run.
fn offset_delta(header: &BatchHeader) -> i32 {
    header.last_offset_delta.get().max(0)
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX` to 0.
fn sequence_add(sequence: i32, increment: i32) -> i32 {
    // The remainder lies in [0, 2^31), so it fits an i32.
    (i64::from(sequence) + i64::from(increment)).rem_euclid(SEQUENCE_MODULUS) as i32
}

/// Kafka's `ProducerAppendInfo.inSequence`. `NO_SEQUENCE` (-1) is followed by 0.
fn sequence_follows(sequence_last: i32, sequence_next: i32) -> bool {
    i64::from(sequence_next) == i64::from(sequence_last) + 1
        || (sequence_next == 0 && sequence_last == i32::MAX)
}

/// Snapshot layout, version 1. All integers big-endian; the three parts are `zerocopy` views.
///
/// ```text
/// SnapshotHeader (22 bytes)
///   magic             4 bytes  "RLPS"
///   version           u16      1
///   crc               u32      CRC-32C (Castagnoli) of every byte after this field
///   snapshot_offset   i64      the first offset the snapshot does not reflect
///   producer_count    u32
/// producer_count times, least recently appended first:
///   ProducerRecord (27 bytes)
///     producer_id     i64      >= 0
///     epoch           i16
///     offset_last     i64      last offset of the producer's last batch, data or control
///     append_time_ms  i64
///     batch_count     u8       0..=5
///   batch_count times, oldest first, BatchRecord (32 bytes)
///     sequence_first  i32      >= 0
///     sequence_last   i32      >= 0
///     offset_first    i64
///     offset_last     i64      >= offset_first
///     timestamp_ms    i64
/// ```
///
/// A new layout gets a new version; a reader refuses versions it does not know, and the caller
/// then rebuilds the state from the log.
pub mod snapshot_format {
    use zerocopy::big_endian::{I16, I32, I64, U16, U32};
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

    use super::{
        BatchMetadata, ProducerEntry, ProducerStateConfig, ProducerStateTable, SnapshotError,
        BATCHES_RETAINED_MAX,
    };

    pub const MAGIC: [u8; 4] = *b"RLPS";
    pub const VERSION: u16 = 1;
    /// The CRC covers everything after magic, version and the CRC itself.
    pub const CRC_START_BYTES: usize = 10;

    #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
    #[repr(C, packed)]
    struct SnapshotHeader {
        magic: [u8; 4],
        version: U16,
        crc: U32,
        snapshot_offset: I64,
        producer_count: U32,
    }

    #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
    #[repr(C, packed)]
    struct ProducerRecord {
        producer_id: I64,
        epoch: I16,
        offset_last: I64,
        append_time_ms: I64,
        batch_count: u8,
    }

    #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
    #[repr(C, packed)]
    struct BatchRecord {
        sequence_first: I32,
        sequence_last: I32,
        offset_first: I64,
        offset_last: I64,
        timestamp_ms: I64,
    }

    const _: () = assert!(std::mem::size_of::<SnapshotHeader>() == 22);
    const _: () = assert!(std::mem::size_of::<ProducerRecord>() == 27);
    const _: () = assert!(std::mem::size_of::<BatchRecord>() == 32);
    const _: () = assert!(std::mem::offset_of!(SnapshotHeader, snapshot_offset) == CRC_START_BYTES);

    pub(super) fn write(table: &ProducerStateTable) -> Vec<u8> {
        let producer_count = u32::try_from(table.producers.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(
            size_of::<SnapshotHeader>()
                + table.producers.len()
                    * (size_of::<ProducerRecord>() + 2 * size_of::<BatchRecord>()),
        );
        let header = SnapshotHeader {
            magic: MAGIC,
            version: VERSION.into(),
            crc: 0.into(),
            snapshot_offset: table.offset_end.into(),
            producer_count: producer_count.into(),
        };
        out.extend_from_slice(header.as_bytes());
        let entries = table
            .lru
            .values()
            .filter_map(|producer_id| Some((*producer_id, table.producers.get(producer_id)?)))
            .take(producer_count as usize);
        for (producer_id, entry) in entries {
            let producer = ProducerRecord {
                producer_id: producer_id.into(),
                epoch: entry.epoch.into(),
                offset_last: entry.offset_last.into(),
                append_time_ms: entry.append_time_ms.into(),
                // At most BATCHES_RETAINED_MAX, which fits a u8.
                batch_count: entry.batches.len() as u8,
            };
            out.extend_from_slice(producer.as_bytes());
            for batch in &entry.batches {
                let batch = BatchRecord {
                    sequence_first: batch.sequence_first.into(),
                    sequence_last: batch.sequence_last.into(),
                    offset_first: batch.offset_first.into(),
                    offset_last: batch.offset_last.into(),
                    timestamp_ms: batch.timestamp_ms.into(),
                };
                out.extend_from_slice(batch.as_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[CRC_START_BYTES..]);
        if let Ok((header, _)) = SnapshotHeader::mut_from_prefix(&mut out[..]) {
            header.crc.set(crc);
        }
        out
    }

    pub(super) fn read(
        bytes: &[u8],
        config: ProducerStateConfig,
    ) -> Result<ProducerStateTable, SnapshotError> {
        let (header, mut rest) = take::<SnapshotHeader>(bytes, bytes.len())?;
        if header.magic != MAGIC {
            return Err(SnapshotError::BadMagic {
                magic: header.magic,
            });
        }
        let version = header.version.get();
        if version != VERSION {
            return Err(SnapshotError::UnsupportedVersion { version });
        }
        let expected = header.crc.get();
        let actual = crc32c::crc32c(&bytes[CRC_START_BYTES..]);
        if expected != actual {
            return Err(SnapshotError::BadCrc { expected, actual });
        }
        let mut table = ProducerStateTable::new(config);
        table.offset_end = header.snapshot_offset.get();
        for _ in 0..header.producer_count.get() {
            let (producer_id, entry) = read_producer(&mut rest, bytes.len())?;
            if table.producers.contains_key(&producer_id) {
                return Err(corrupt("producer id listed twice"));
            }
            if let Some(slot) = table.touch(producer_id) {
                *slot = ProducerEntry {
                    lru_tick: slot.lru_tick,
                    ..entry
                };
            }
        }
        if !rest.is_empty() {
            return Err(SnapshotError::TrailingBytes {
                trailing_bytes: rest.len(),
            });
        }
        table.debug_check_bounds();
        Ok(table)
    }

    fn read_producer(
        rest: &mut &[u8],
        total_bytes: usize,
    ) -> Result<(i64, ProducerEntry), SnapshotError> {
        let (producer, after) = take::<ProducerRecord>(rest, total_bytes)?;
        *rest = after;
        let producer_id = producer.producer_id.get();
        if producer_id < 0 {
            return Err(corrupt("negative producer id"));
        }
        let batch_count = usize::from(producer.batch_count);
        if batch_count > BATCHES_RETAINED_MAX {
            return Err(corrupt("more batches than a producer retains"));
        }
        let mut entry = ProducerEntry::empty();
        entry.epoch = producer.epoch.get();
        entry.offset_last = producer.offset_last.get();
        entry.append_time_ms = producer.append_time_ms.get();
        for _ in 0..batch_count {
            let (batch, after) = take::<BatchRecord>(rest, total_bytes)?;
            *rest = after;
            let batch = BatchMetadata {
                sequence_first: batch.sequence_first.get(),
                sequence_last: batch.sequence_last.get(),
                offset_first: batch.offset_first.get(),
                offset_last: batch.offset_last.get(),
                timestamp_ms: batch.timestamp_ms.get(),
            };
            if batch.sequence_first < 0 || batch.sequence_last < 0 {
                return Err(corrupt("negative batch sequence"));
            }
            if batch.offset_first > batch.offset_last {
                return Err(corrupt("batch ends before it starts"));
            }
            entry.batches.push_back(batch);
        }
        Ok((producer_id, entry))
    }

    /// The `T` at the start of `rest`, and what follows it.
    fn take<T: FromBytes + KnownLayout + Immutable + Unaligned>(
        rest: &[u8],
        total_bytes: usize,
    ) -> Result<(&T, &[u8]), SnapshotError> {
        T::ref_from_prefix(rest).map_err(|_| SnapshotError::Truncated {
            needed_bytes: total_bytes - rest.len() + size_of::<T>(),
            available_bytes: total_bytes,
        })
    }

    fn corrupt(reason: &'static str) -> SnapshotError {
        SnapshotError::Corrupt { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{build_batch, peek_header, validate};
    use proptest::prelude::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn batch(producer: Option<(i64, i16, i32)>, records_count: i32, timestamp_ms: i64) -> Vec<u8> {
        build_batch(timestamp_ms, records_count, b"payload", producer)
    }

    fn header(bytes: &[u8]) -> &BatchHeader {
        validate(bytes).expect("test batches are valid")
    }

    /// A partition log reduced to what producer state sees: the next offset and the table.
    struct Partition {
        table: ProducerStateTable,
        offset_next: i64,
        /// Every appended batch with its base offset, for replay.
        appended: Vec<(Vec<u8>, i64)>,
    }

    impl Partition {
        fn new(config: ProducerStateConfig) -> Self {
            Partition {
                table: ProducerStateTable::new(config),
                offset_next: 0,
                appended: Vec::new(),
            }
        }

        /// The produce path: check, then append and record the batch if it is new.
        fn produce(
            &mut self,
            producer: (i64, i16, i32),
            records_count: i32,
            now_ms: i64,
        ) -> Result<SequenceCheck, ProducerError> {
            self.produce_bytes(batch(Some(producer), records_count, now_ms), now_ms)
        }

        fn assert_appended(&mut self, producer: (i64, i16, i32), records_count: i32) {
            let check = self.produce(producer, records_count, NOW_MS);
            assert_eq!(check, Ok(SequenceCheck::Append), "{producer:?}");
        }

        fn produce_bytes(
            &mut self,
            bytes: Vec<u8>,
            now_ms: i64,
        ) -> Result<SequenceCheck, ProducerError> {
            let check = self.table.check(header(&bytes), now_ms)?;
            if check == SequenceCheck::Append {
                let base_offset = self.offset_next;
                self.table.record(header(&bytes), base_offset, now_ms);
                self.offset_next = header(&bytes).last_offset_delta.get() as i64 + base_offset + 1;
                self.appended.push((bytes, base_offset));
            }
            Ok(check)
        }
    }

    fn limits(producers_max: usize, producer_id_expiration_ms: i64) -> ProducerStateConfig {
        ProducerStateConfig {
            producers_max,
            producer_id_expiration_ms,
        }
    }

    fn code_of(result: Result<SequenceCheck, ProducerError>) -> i16 {
        result.expect_err("expected a refusal").kafka_code()
    }

    /// The state without LRU ticks, least recently appended first, for comparing tables.
    fn contents(table: &ProducerStateTable) -> (i64, Vec<(i64, ProducerEntry)>) {
        let producers = table
            .lru
            .values()
            .map(|producer_id| {
                let entry = ProducerEntry {
                    lru_tick: 0,
                    ..table.producers[producer_id].clone()
                };
                (*producer_id, entry)
            })
            .collect();
        (table.offset_end, producers)
    }

    #[test]
    fn batches_without_producer_id_always_append_and_move_snapshot_offset() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        for _ in 0..3 {
            let bytes = batch(None, 4, NOW_MS);
            assert_eq!(
                partition.produce_bytes(bytes, NOW_MS),
                Ok(SequenceCheck::Append)
            );
        }
        assert!(partition.table.is_empty());
        assert_eq!(partition.table.snapshot_offset(), 12);
    }

    #[test]
    fn retry_of_each_of_last_five_batches_returns_original_offsets() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition
            .produce_bytes(batch(None, 10, NOW_MS), NOW_MS)
            .unwrap();
        let mut originals = Vec::new();
        let mut sequence = 0;
        for index in 0..BATCHES_RETAINED_MAX as i32 {
            let records_count = index + 1;
            let timestamp_ms = NOW_MS + i64::from(index);
            let base_offset = partition.offset_next;
            let check = partition.produce((7, 0, sequence), records_count, timestamp_ms);
            assert_eq!(check, Ok(SequenceCheck::Append));
            originals.push((sequence, records_count, base_offset, timestamp_ms));
            sequence += records_count;
        }
        let log_end_offset = partition.offset_next;
        for (sequence, records_count, base_offset, timestamp_ms) in originals {
            let check = partition.produce((7, 0, sequence), records_count, NOW_MS + 100);
            assert_eq!(
                check,
                Ok(SequenceCheck::Duplicate {
                    base_offset,
                    last_offset: base_offset + i64::from(records_count) - 1,
                    timestamp_ms,
                })
            );
        }
        assert_eq!(partition.offset_next, log_end_offset);
    }

    #[test]
    fn retry_older_than_the_retained_batches_is_out_of_order() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        for sequence in 0..=BATCHES_RETAINED_MAX as i32 {
            partition.produce((7, 0, sequence), 1, NOW_MS).unwrap();
        }
        assert_eq!(code_of(partition.produce((7, 0, 0), 1, NOW_MS)), 45);
        assert!(matches!(
            partition.produce((7, 0, 1), 1, NOW_MS),
            Ok(SequenceCheck::Duplicate { base_offset: 1, .. })
        ));
    }

    #[test]
    fn retry_with_a_different_sequence_range_is_not_a_duplicate() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.produce((7, 0, 0), 4, NOW_MS).unwrap();
        assert_eq!(code_of(partition.produce((7, 0, 0), 2, NOW_MS)), 45);
    }

    #[test]
    fn sequence_gap_is_out_of_order() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.produce((7, 0, 0), 3, NOW_MS).unwrap();
        let refused = partition.produce((7, 0, 4), 1, NOW_MS);
        assert_eq!(
            refused,
            Err(ProducerError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 0,
                sequence_base: 4,
                sequence_last: 2,
            })
        );
        assert_eq!(code_of(refused), 45);
        partition.assert_appended((7, 0, 3), 1);
    }

    #[test]
    fn older_epoch_is_fenced_even_for_a_retry() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.produce((7, 0, 0), 2, NOW_MS).unwrap();
        partition.produce((7, 1, 0), 2, NOW_MS).unwrap();
        let refused = partition.produce((7, 0, 0), 2, NOW_MS);
        assert_eq!(
            refused,
            Err(ProducerError::InvalidProducerEpoch {
                producer_id: 7,
                epoch: 0,
                epoch_current: 1,
            })
        );
        assert_eq!(code_of(refused), 47);
        assert_eq!(code_of(partition.produce((7, 0, 2), 1, NOW_MS)), 47);
    }

    #[test]
    fn new_epoch_must_restart_at_zero_and_forgets_old_batches() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.produce((7, 0, 0), 5, NOW_MS).unwrap();
        let refused = partition.produce((7, 1, 5), 1, NOW_MS);
        assert!(matches!(
            refused,
            Err(ProducerError::NewEpochNotAtZero { .. })
        ));
        assert_eq!(code_of(refused), 45);
        partition.assert_appended((7, 1, 0), 2);
        assert_eq!(partition.table.producers[&7].batches.len(), 1);
        partition.assert_appended((7, 1, 2), 1);
        // Epochs only move forward; a jump of several is fine.
        partition.assert_appended((7, 9, 0), 1);
    }

    #[test]
    fn unknown_producer_is_accepted_at_any_sequence() {
        // KIP-360: no UNKNOWN_PRODUCER_ID on produce since Kafka 2.5.
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.assert_appended((7, 3, 1_000), 1);
        assert_eq!(code_of(partition.produce((7, 3, 1_002), 1, NOW_MS)), 45);
        partition.assert_appended((7, 3, 1_001), 1);
    }

    #[test]
    fn negative_sequence_is_an_invalid_record() {
        let partition = Partition::new(ProducerStateConfig::default());
        let bytes = batch(Some((7, 0, -5)), 1, NOW_MS);
        assert_eq!(
            partition
                .table
                .check(header(&bytes), NOW_MS)
                .unwrap_err()
                .kafka_code(),
            87
        );
    }

    #[test]
    fn sequence_wraps_from_i32_max_to_zero() {
        assert_eq!(sequence_add(i32::MAX, 1), 0);
        assert_eq!(sequence_add(i32::MAX - 1, 3), 1);
        assert_eq!(sequence_add(5, 0), 5);
        assert!(sequence_follows(i32::MAX, 0));
        assert!(sequence_follows(NO_SEQUENCE, 0));
        assert!(!sequence_follows(i32::MAX, 1));

        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.produce((7, 0, i32::MAX - 1), 1, NOW_MS).unwrap();
        // Sequences MAX, 0 and 1: the batch straddles the wrap.
        let base_offset = partition.offset_next;
        partition.assert_appended((7, 0, i32::MAX), 3);
        assert_eq!(partition.table.producers[&7].sequence_last(), 1);
        assert_eq!(
            partition.produce((7, 0, i32::MAX), 3, NOW_MS),
            Ok(SequenceCheck::Duplicate {
                base_offset,
                last_offset: base_offset + 2,
                timestamp_ms: NOW_MS,
            })
        );
        assert_eq!(code_of(partition.produce((7, 0, 0), 1, NOW_MS)), 45);
        partition.assert_appended((7, 0, 2), 1);

        let mut exact = Partition::new(ProducerStateConfig::default());
        exact.produce((8, 0, i32::MAX), 1, NOW_MS).unwrap();
        exact.assert_appended((8, 0, 0), 1);
    }

    #[test]
    fn least_recently_appended_producer_is_evicted_at_the_bound() {
        let config = limits(3, PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let mut partition = Partition::new(config);
        for producer_id in 1..=3 {
            partition.produce((producer_id, 0, 0), 1, NOW_MS).unwrap();
        }
        partition.produce((1, 0, 1), 1, NOW_MS).unwrap();
        partition.produce((4, 0, 0), 1, NOW_MS).unwrap();
        assert_eq!(partition.table.len(), 3);
        assert!(!partition.table.producers.contains_key(&2));
        // Producer 2 is unknown now, so any sequence is accepted; producer 1 is still checked.
        partition.assert_appended((2, 0, 50), 1);
        assert!(!partition.table.producers.contains_key(&3));
        assert_eq!(code_of(partition.produce((1, 0, 50), 1, NOW_MS)), 45);

        for producer_id in 100..1_000 {
            partition.produce((producer_id, 0, 0), 1, NOW_MS).unwrap();
            assert!(partition.table.len() <= 3);
        }
    }

    #[test]
    fn zero_producers_max_tracks_nobody() {
        let config = limits(0, PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let mut partition = Partition::new(config);
        partition.produce((1, 0, 0), 1, NOW_MS).unwrap();
        assert!(partition.table.is_empty());
        assert_eq!(partition.table.snapshot_offset(), 1);
    }

    #[test]
    fn idle_producers_expire() {
        let config = limits(PRODUCERS_MAX_DEFAULT, 1_000);
        let mut partition = Partition::new(config);
        partition.produce((1, 0, 0), 1, NOW_MS).unwrap();
        partition.produce((2, 0, 0), 1, NOW_MS + 500).unwrap();

        // Just before the expiration, producer 1 is still checked.
        assert_eq!(code_of(partition.produce((1, 0, 9), 1, NOW_MS + 999)), 45);
        // At the expiration it counts as unknown even before `expire` runs.
        let late_ms = NOW_MS + 1_000;
        let probe = batch(Some((1, 0, 9)), 1, late_ms);
        assert_eq!(
            partition.table.check(header(&probe), late_ms),
            Ok(SequenceCheck::Append)
        );

        partition.table.expire(late_ms);
        assert_eq!(partition.table.len(), 1);
        assert!(partition.table.producers.contains_key(&2));
        partition.table.expire(NOW_MS + 1_500);
        assert!(partition.table.is_empty());
        assert!(partition.table.lru.is_empty());
    }

    #[test]
    fn recording_over_an_expired_entry_starts_afresh() {
        let config = limits(PRODUCERS_MAX_DEFAULT, 1_000);
        let mut partition = Partition::new(config);
        partition.produce((1, 0, 0), 1, NOW_MS).unwrap();
        partition.produce((1, 0, 40), 1, NOW_MS + 2_000).unwrap();
        assert_eq!(partition.table.producers[&1].batches.len(), 1);
    }

    fn busy_partition() -> Partition {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition
            .produce_bytes(batch(None, 3, NOW_MS), NOW_MS)
            .unwrap();
        for round in 0..8 {
            for producer_id in [1, 2, 3] {
                let epoch = if producer_id == 3 && round >= 4 { 1 } else { 0 };
                let sequence = if producer_id == 3 && round >= 4 {
                    (round - 4) * 2
                } else {
                    round * 2
                };
                partition
                    .produce((producer_id, epoch, sequence), 2, NOW_MS + i64::from(round))
                    .unwrap();
            }
        }
        partition.produce((4, 0, i32::MAX), 2, NOW_MS).unwrap();
        partition
    }

    #[test]
    fn snapshot_round_trip_keeps_state_and_order() {
        let mut partition = busy_partition();
        let bytes = partition.table.snapshot();
        let loaded = ProducerStateTable::from_snapshot(&bytes).unwrap();
        assert_eq!(contents(&loaded), contents(&partition.table));
        assert_eq!(loaded.snapshot_offset(), partition.offset_next);

        // Duplicates are still recognised and sequences still checked after a restart.
        partition.table = loaded;
        assert!(matches!(
            partition.produce((1, 0, 14), 2, NOW_MS),
            Ok(SequenceCheck::Duplicate { .. })
        ));
        assert_eq!(code_of(partition.produce((2, 0, 20), 2, NOW_MS)), 45);
        assert_eq!(code_of(partition.produce((3, 0, 0), 2, NOW_MS)), 47);

        let empty = ProducerStateTable::default().snapshot();
        let loaded_empty = ProducerStateTable::from_snapshot(&empty).unwrap();
        assert!(loaded_empty.is_empty());
    }

    #[test]
    fn loading_into_a_smaller_table_keeps_the_most_recent_producers() {
        let partition = busy_partition();
        let config = limits(2, PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let loaded =
            ProducerStateTable::from_snapshot_with_config(&partition.table.snapshot(), config)
                .unwrap();
        let kept: Vec<i64> = loaded.lru.values().copied().collect();
        assert_eq!(kept, vec![3, 4]);
    }

    #[test]
    fn damaged_snapshots_are_refused() {
        let bytes = busy_partition().table.snapshot();
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            ProducerStateTable::from_snapshot(&flipped),
            Err(SnapshotError::BadCrc { .. })
        ));
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert!(matches!(
            ProducerStateTable::from_snapshot(&bad_magic),
            Err(SnapshotError::BadMagic { .. })
        ));
        let mut bad_version = bytes.clone();
        bad_version[5] = 9;
        assert_eq!(
            ProducerStateTable::from_snapshot(&bad_version).unwrap_err(),
            SnapshotError::UnsupportedVersion { version: 9 }
        );
        assert!(matches!(
            ProducerStateTable::from_snapshot(&bytes[..5]),
            Err(SnapshotError::Truncated { .. })
        ));
        let truncated = with_fixed_crc(bytes[..bytes.len() - 3].to_vec());
        assert!(matches!(
            ProducerStateTable::from_snapshot(&truncated),
            Err(SnapshotError::Truncated { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        let longer = with_fixed_crc(longer);
        assert_eq!(
            ProducerStateTable::from_snapshot(&longer).unwrap_err(),
            SnapshotError::TrailingBytes { trailing_bytes: 1 }
        );
    }

    fn with_fixed_crc(mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.len() >= snapshot_format::CRC_START_BYTES {
            let crc = crc32c::crc32c(&bytes[snapshot_format::CRC_START_BYTES..]);
            bytes[6..10].copy_from_slice(&crc.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn snapshot_plus_replay_equals_the_live_state() {
        let live = busy_partition();
        let (_, middle_offset) = live.appended[live.appended.len() / 2];
        let mut at_snapshot = Partition::new(ProducerStateConfig::default());
        for (bytes, base_offset) in &live.appended {
            if *base_offset < middle_offset {
                let header = header(bytes);
                at_snapshot
                    .table
                    .record(header, *base_offset, header.max_timestamp.get());
            }
        }
        assert_eq!(at_snapshot.table.snapshot_offset(), middle_offset);
        let mut restarted =
            ProducerStateTable::from_snapshot(&at_snapshot.table.snapshot()).unwrap();
        // The scan starts a little early, as from a segment boundary: those batches are skipped.
        for (bytes, base_offset) in &live.appended[1..] {
            restarted.rebuild_from(peek_header(bytes).unwrap(), *base_offset);
        }
        let mut replayed_live = ProducerStateTable::default();
        for (bytes, base_offset) in &live.appended {
            replayed_live.rebuild_from(header(bytes), *base_offset);
        }
        assert_eq!(contents(&restarted), contents(&replayed_live));
        let (offset_end, producers) = contents(&restarted);
        assert_eq!(offset_end, live.offset_next);
        let live_producers = contents(&live.table).1;
        let strip =
            |producers: Vec<(i64, ProducerEntry)>| -> Vec<(i64, i16, VecDeque<BatchMetadata>)> {
                producers
                    .into_iter()
                    .map(|(id, entry)| (id, entry.epoch, entry.batches))
                    .collect()
            };
        assert_eq!(strip(producers), strip(live_producers));
    }

    #[test]
    fn replayed_control_batch_with_new_epoch_fences_and_clears() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.produce((7, 0, 0), 2, NOW_MS).unwrap();
        let mut marker = batch(Some((7, 1, -1)), 1, NOW_MS);
        // attributes: bit 5 is the control flag (peek_header does not check the CRC).
        marker[22] |= 0x20;
        let marker_header = peek_header(&marker).unwrap();
        assert!(marker_header.is_control());
        partition
            .table
            .rebuild_from(marker_header, partition.offset_next);
        partition.offset_next += 1;
        let entry = &partition.table.producers[&7];
        assert_eq!((entry.epoch, entry.batches.len()), (1, 0));
        assert_eq!(code_of(partition.produce((7, 0, 2), 1, NOW_MS)), 47);
        // Same epoch with no batch retained: the next sequence must be 0, as in Kafka.
        assert_eq!(code_of(partition.produce((7, 1, 3), 1, NOW_MS)), 45);
        partition.assert_appended((7, 1, 0), 1);
    }

    #[test]
    fn truncate_to_forgets_batches_at_and_past_the_offset() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.produce((1, 0, 0), 2, NOW_MS).unwrap(); // offsets 0-1
        partition.produce((1, 0, 2), 2, NOW_MS).unwrap(); // 2-3
        partition.produce((2, 0, 0), 2, NOW_MS).unwrap(); // 4-5
        partition.produce((1, 0, 4), 2, NOW_MS).unwrap(); // 6-7
        partition.produce((3, 0, 0), 1, NOW_MS).unwrap(); // 8

        partition.table.truncate_to(4);
        partition.offset_next = 4;
        assert_eq!(partition.table.snapshot_offset(), 4);
        let entry = &partition.table.producers[&1];
        assert_eq!((entry.batches.len(), entry.offset_last), (2, 3));
        assert!(!partition.table.producers.contains_key(&2));
        assert!(!partition.table.producers.contains_key(&3));
        assert_eq!(partition.table.lru.len(), 1);

        // The truncated batch is new again and must follow the retained ones.
        partition.assert_appended((1, 0, 4), 2);
        assert!(matches!(
            partition.produce((1, 0, 2), 2, NOW_MS),
            Ok(SequenceCheck::Duplicate { base_offset: 2, .. })
        ));
        // Producer 2 was forgotten, so it is accepted wherever it resumes.
        partition.assert_appended((2, 0, 2), 1);
    }

    #[test]
    fn remove_before_keeps_producers_and_moves_snapshot_offset() {
        let mut partition = Partition::new(ProducerStateConfig::default());
        partition.produce((1, 0, 0), 2, NOW_MS).unwrap();
        partition.table.remove_before(2);
        assert!(matches!(
            partition.produce((1, 0, 0), 2, NOW_MS),
            Ok(SequenceCheck::Duplicate { base_offset: 0, .. })
        ));
        assert_eq!(code_of(partition.produce((1, 0, 5), 1, NOW_MS)), 45);

        let mut fresh = ProducerStateTable::default();
        fresh.remove_before(1_000);
        assert_eq!(fresh.snapshot_offset(), 1_000);
    }

    #[derive(Debug, Clone)]
    enum Operation {
        Produce {
            producer: (i64, i16, i32),
            records_count: i32,
            elapsed_ms: i64,
        },
        Expire,
        Truncate {
            back: i64,
        },
        RemoveBefore {
            forward: i64,
        },
        Reload,
    }

    impl Partition {
        /// One step of the model test, then what must hold after any step.
        fn run(&mut self, operation: Operation, now_ms: &mut i64) {
            match operation {
                Operation::Produce {
                    producer,
                    records_count,
                    elapsed_ms,
                } => {
                    *now_ms += elapsed_ms;
                    let _ = self.produce(producer, records_count, *now_ms);
                }
                Operation::Expire => self.table.expire(*now_ms),
                Operation::Truncate { back } => {
                    let offset = (self.offset_next - back).max(0);
                    self.table.truncate_to(offset);
                    self.offset_next = self.offset_next.min(offset);
                }
                Operation::RemoveBefore { forward } => {
                    self.table.remove_before(self.offset_next.min(forward));
                }
                Operation::Reload => {
                    let bytes = self.table.snapshot();
                    let loaded =
                        ProducerStateTable::from_snapshot_with_config(&bytes, self.table.config())
                            .expect("a snapshot of our own loads");
                    assert_eq!(contents(&loaded), contents(&self.table));
                    self.table = loaded;
                }
            }
            self.table.assert_invariants();
            assert_eq!(self.table.snapshot_offset(), self.offset_next);
        }
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            8 => (0i64..6, 0i16..3, 0i32..12, 1i32..4, 0i64..400).prop_map(
                |(producer_id, epoch, sequence, records_count, elapsed_ms)| Operation::Produce {
                    producer: (producer_id, epoch, sequence),
                    records_count,
                    elapsed_ms,
                }
            ),
            1 => Just(Operation::Expire),
            1 => (0i64..10).prop_map(|back| Operation::Truncate { back }),
            1 => (0i64..10).prop_map(|forward| Operation::RemoveBefore { forward }),
            1 => Just(Operation::Reload),
        ]
    }

    proptest! {
        #[test]
        fn garbage_snapshots_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ProducerStateTable::from_snapshot(&bytes);
            let mut prefixed = snapshot_format::MAGIC.to_vec();
            prefixed.extend_from_slice(&snapshot_format::VERSION.to_be_bytes());
            prefixed.extend_from_slice(&[0; 4]);
            prefixed.extend_from_slice(&bytes);
            let _ = ProducerStateTable::from_snapshot(&with_fixed_crc(prefixed));
        }

        #[test]
        fn damaged_snapshots_with_a_valid_crc_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = busy_partition().table.snapshot();
            for (index_seed, value) in edits {
                let index = index_seed % bytes.len();
                bytes[index] = value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            if let Ok(table) = ProducerStateTable::from_snapshot(&with_fixed_crc(bytes)) {
                table.assert_invariants();
                prop_assert!(table.len() <= PRODUCERS_MAX_DEFAULT);
            }
        }

        #[test]
        fn any_operation_sequence_keeps_the_table_bounded(
            operations in proptest::collection::vec(operation(), 1..80),
        ) {
            let mut partition = Partition::new(limits(4, 1_000));
            let mut now_ms = NOW_MS;
            for operation in operations {
                partition.run(operation, &mut now_ms);
            }
        }
    }
}
