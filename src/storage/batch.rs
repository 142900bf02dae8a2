//! Kafka v2 record batches as bytes: the 61-byte header read through a `zerocopy` view,
//! validation (length, magic, CRC-32C), and the in-place rewrite of `baseOffset` and
//! `partitionLeaderEpoch`, both of which lie outside the CRC. Records are never unpacked here.

use std::ops::{ControlFlow, Range};

use zerocopy::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the v2 batch header, from `baseOffset` to `recordsCount` inclusive.
pub const BATCH_HEADER_SIZE_BYTES: usize = 61;
/// `baseOffset` and `batchLength` precede what `batchLength` counts.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// The CRC covers everything from `attributes` to the end of the batch.
const CRC_START_BYTES: usize = 21;
pub const MAGIC_V2: i8 = 2;

/// Attribute bits (Kafka `RecordBatch`).
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_CONTROL: i16 = 0x20;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C, packed)]
pub struct BatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub records_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == BATCH_HEADER_SIZE_BYTES);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{available_bytes} bytes is too short for a batch header")]
    TruncatedHeader { available_bytes: usize },
    #[error("batch length {batch_length} is impossible")]
    BadLength { batch_length: i32 },
    #[error("batch declares {size_bytes} bytes but only {available_bytes} are present")]
    TruncatedBatch {
        size_bytes: usize,
        available_bytes: usize,
    },
    #[error("unsupported magic {magic}, only v2 record batches are accepted")]
    BadMagic { magic: i8 },
    #[error("CRC-32C mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
    #[error("bad record count {records_count} for last offset delta {last_offset_delta}")]
    BadRecordCount {
        records_count: i32,
        last_offset_delta: i32,
    },
    #[error("empty record set")]
    Empty,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset.get() + i64::from(self.last_offset_delta.get())
    }

    pub fn size_bytes(&self) -> usize {
        // Validated to be non-negative before any caller sees a header.
        self.batch_length.get() as usize + BATCH_LENGTH_PREFIX_BYTES
    }

    pub fn compression_codec(&self) -> i16 {
        self.attributes.get() & ATTR_COMPRESSION_MASK
    }

    pub fn is_control(&self) -> bool {
        self.attributes.get() & ATTR_CONTROL != 0
    }

    /// Sets the timestamp-type bit and the max timestamp of a `LogAppendTime` batch. Both lie
    /// inside the CRC: `set_log_append_time` rewrites it too.
    pub fn stamp_log_append_time(&mut self, now_ms: i64) {
        self.attributes
            .set(self.attributes.get() | ATTR_LOG_APPEND_TIME);
        self.max_timestamp.set(now_ms);
    }

    /// The batch's timestamps are the broker's append time (`LogAppendTime`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes.get() & ATTR_LOG_APPEND_TIME != 0
    }
}

/// The header view of the batch starting at `bytes[0]`, after checking only that the header is
/// there and its length field is sane. Does not look at the CRC.
pub fn peek_header(bytes: &[u8]) -> Result<&BatchHeader, BatchError> {
    let (header, _) =
        BatchHeader::ref_from_prefix(bytes).map_err(|_| BatchError::TruncatedHeader {
            available_bytes: bytes.len(),
        })?;
    let batch_length = header.batch_length.get();
    if batch_length < (BATCH_HEADER_SIZE_BYTES - BATCH_LENGTH_PREFIX_BYTES) as i32 {
        return Err(BatchError::BadLength { batch_length });
    }
    Ok(header)
}

/// `peek_header`, writable.
pub fn peek_header_mut(bytes: &mut [u8]) -> Result<&mut BatchHeader, BatchError> {
    peek_header(bytes)?;
    let (header, _) = BatchHeader::mut_from_prefix(bytes).expect("peek_header read it");
    Ok(header)
}

/// Validates the batch at the start of `bytes` (which may hold more after it) and returns its
/// header. Checks length, magic, record count and the CRC-32C over attributes..end.
pub fn validate(bytes: &[u8]) -> Result<&BatchHeader, BatchError> {
    let header = validate_header(bytes)?;
    let expected = header.crc.get();
    let actual = crc32c::crc32c(&bytes[CRC_START_BYTES..header.size_bytes()]);
    if expected != actual {
        return Err(BatchError::BadCrc { expected, actual });
    }
    Ok(header)
}

/// Everything `validate` checks except the CRC: that the whole batch is present, magic and
/// record count.
fn validate_header(bytes: &[u8]) -> Result<&BatchHeader, BatchError> {
    let header = peek_header(bytes)?;
    let size_bytes = header.size_bytes();
    if size_bytes > bytes.len() {
        return Err(BatchError::TruncatedBatch {
            size_bytes,
            available_bytes: bytes.len(),
        });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic {
            magic: header.magic,
        });
    }
    let last_offset_delta = header.last_offset_delta.get();
    let records_count = header.records_count.get();
    if last_offset_delta < 0 || records_count < 0 || records_count > last_offset_delta + 1 {
        return Err(BatchError::BadRecordCount {
            records_count,
            last_offset_delta,
        });
    }
    Ok(header)
}

/// Summary of one validated batch inside a record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub size_bytes: usize,
    /// Offsets the batch spans, relative to its own base offset.
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub records_count: i32,
    /// The CRC-32C the header declares.
    pub crc: u32,
}

/// Where one batch of a record set lies in it, and the offsets it takes once appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpan {
    pub bytes: Range<usize>,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Walks a record set's batches in order, the first taking `base_offset`: what the append path
/// needs to rewrite, index, keep and cache each batch.
pub struct BatchCursor {
    position: usize,
    next_offset: i64,
}

impl BatchCursor {
    pub fn new(base_offset: i64) -> Self {
        BatchCursor {
            position: 0,
            next_offset: base_offset,
        }
    }

    /// The span of the next batch, which `info` describes.
    pub fn advance(&mut self, info: &BatchInfo) -> BatchSpan {
        let span = BatchSpan {
            bytes: self.position..self.position + info.size_bytes,
            base_offset: self.next_offset,
            last_offset: self.next_offset + i64::from(info.last_offset_delta),
        };
        self.position = span.bytes.end;
        self.next_offset = span.last_offset + 1;
        span
    }
}

/// Validates every batch of a record set (one or more back-to-back batches, as a Produce
/// request carries them). A record set with trailing bytes that do not form a whole batch is
/// refused as a whole.
pub fn validate_record_set(bytes: &[u8]) -> Result<Vec<BatchInfo>, BatchError> {
    let infos = validate_record_set_headers(bytes)?;
    let mut check = RecordSetCrc::new(&infos);
    check.update(bytes);
    check.finish()?;
    Ok(infos)
}

/// `validate_record_set` without the CRCs, which a `RecordSetCrc` then checks while the bytes
/// are copied anyway (the append path: one pass over the bytes instead of two).
pub fn validate_record_set_headers(bytes: &[u8]) -> Result<Vec<BatchInfo>, BatchError> {
    if bytes.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut infos = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let header = validate_header(&bytes[position..])?;
        let info = BatchInfo {
            size_bytes: header.size_bytes(),
            last_offset_delta: header.last_offset_delta.get(),
            max_timestamp: header.max_timestamp.get(),
            records_count: header.records_count.get(),
            crc: header.crc.get(),
        };
        position += info.size_bytes;
        infos.push(info);
    }
    Ok(infos)
}

/// Checks the CRC-32C of every batch of a record set fed to it in order, in pieces of any
/// size: the appender feeds each block just before copying it, while it is in the CPU cache.
pub struct RecordSetCrc<'a> {
    infos: &'a [BatchInfo],
    /// The batch being fed, and how many of its bytes have been.
    batch_index: usize,
    batch_position: usize,
    crc: u32,
    first_error: Option<BatchError>,
}

impl<'a> RecordSetCrc<'a> {
    /// `infos` from `validate_record_set_headers` of the bytes that will be fed.
    pub fn new(infos: &'a [BatchInfo]) -> Self {
        RecordSetCrc {
            infos,
            batch_index: 0,
            batch_position: 0,
            crc: 0,
            first_error: None,
        }
    }

    /// Feeds the next bytes of the record set.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let info = self
                .infos
                .get(self.batch_index)
                .expect("a record set is fed no more bytes than its batches hold");
            let taken = (info.size_bytes - self.batch_position).min(bytes.len());
            let skipped = CRC_START_BYTES
                .saturating_sub(self.batch_position)
                .min(taken);
            self.crc = crc32c::crc32c_append(self.crc, &bytes[skipped..taken]);
            self.batch_position += taken;
            bytes = &bytes[taken..];
            if self.batch_position == info.size_bytes {
                if self.crc != info.crc && self.first_error.is_none() {
                    self.first_error = Some(BatchError::BadCrc {
                        expected: info.crc,
                        actual: self.crc,
                    });
                }
                self.batch_index += 1;
                self.batch_position = 0;
                self.crc = 0;
            }
        }
    }

    /// The first batch whose CRC did not match, once every byte has been fed.
    pub fn finish(&self) -> Result<(), BatchError> {
        assert!(
            self.batch_index == self.infos.len(),
            "a record set's CRCs are checked only once all of it has been fed"
        );
        match &self.first_error {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

/// Rewrites the two fields the broker owns. Neither is covered by the CRC.
pub fn assign(bytes: &mut [u8], base_offset: i64, leader_epoch: i32) {
    let (header, _) =
        BatchHeader::mut_from_prefix(bytes).expect("assign is only called on validated batches");
    header.base_offset.set(base_offset);
    header.partition_leader_epoch.set(leader_epoch);
}

/// Attribute bit: every record's timestamp is the batch's max timestamp (LogAppendTime).
const ATTR_LOG_APPEND_TIME: i16 = 0x08;

/// Stamps a validated batch with the broker's clock, as Kafka does for a topic with
/// `message.timestamp.type=LogAppendTime`: sets the timestamp-type bit and the max timestamp,
/// both inside the CRC, and rewrites the CRC-32C. Returns the new CRC.
pub fn set_log_append_time(bytes: &mut [u8], now_ms: i64) -> u32 {
    BatchHeader::mut_from_prefix(bytes)
        .expect("log append time is only set on validated batches")
        .0
        .stamp_log_append_time(now_ms);
    write_crc(bytes)
}

/// Computes the CRC-32C of the whole batch at the start of `bytes` (attributes..end, as its
/// length field says) and stores it in the header. Returns it.
fn write_crc(bytes: &mut [u8]) -> u32 {
    let (header, _) =
        BatchHeader::ref_from_prefix(bytes).expect("a CRC is only written for a whole batch");
    let crc = crc32c::crc32c(&bytes[CRC_START_BYTES..header.size_bytes()]);
    BatchHeader::mut_from_prefix(bytes)
        .expect("read above")
        .0
        .crc
        .set(crc);
    crc
}

/// Reads a zigzag varint of at most `max_bytes` bytes from the front of `bytes`.
fn read_varlong(bytes: &mut &[u8], max_bytes: usize) -> Option<i64> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(max_bytes).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// The first record of a validated batch whose timestamp is at least `target_ms`, as
/// (offset, timestamp), or `None` when the batch's max timestamp is below it. Records are
/// walked in uncompressed batches; for a compressed batch, or records that do not parse, the
/// answer is the batch itself (base offset, max timestamp).
pub fn first_record_at_or_after(bytes: &[u8], target_ms: i64) -> Option<(i64, i64)> {
    let header = peek_header(bytes).ok()?;
    let base_offset = header.base_offset.get();
    let max_timestamp = header.max_timestamp.get();
    if max_timestamp < target_ms {
        return None;
    }
    let batch_answer = Some((base_offset, max_timestamp));
    if header.is_log_append_time() || header.compression_codec() != 0 {
        return batch_answer;
    }
    let found = walk_records(bytes, header, |offset_delta, timestamp, _| {
        if timestamp >= target_ms {
            ControlFlow::Break(
                base_offset
                    .checked_add(offset_delta)
                    .map(|offset| (offset, timestamp)),
            )
        } else {
            ControlFlow::Continue(())
        }
    });
    match found {
        Some(Some(answer)) => answer,
        Some(None) => None,
        None => batch_answer,
    }
}

/// Most bytes a compressed batch may decompress to when the broker looks inside it.
pub const DECOMPRESSED_BATCH_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The indexes (within the record set, as Kafka's KIP-467 `batch_index` counts them) of the
/// records without a key, across the validated batches of `record_set`. Compressed batches are
/// decompressed to look, as Kafka does; one that cannot be is an error.
pub fn keyless_records(record_set: &[u8]) -> Result<Vec<i32>, String> {
    let mut keyless = Vec::new();
    let mut index_base = 0i32;
    let mut position = 0;
    while let Ok(header) = peek_header(&record_set[position..]) {
        let size_bytes = header.size_bytes();
        let Some(batch) = record_set.get(position..position + size_bytes) else {
            break;
        };
        let mut index = index_base;
        let mut visit = |_, _, key_length: i64| {
            if key_length < 0 {
                keyless.push(index);
            }
            index += 1;
            ControlFlow::<()>::Continue(())
        };
        match header.compression_codec() {
            0 => {
                walk_records(batch, header, &mut visit);
            }
            codec => {
                let records = crate::storage::codecs::decompress(
                    codec,
                    &batch[BATCH_HEADER_SIZE_BYTES..],
                    DECOMPRESSED_BATCH_SIZE_MAX_BYTES,
                )
                .map_err(|reason| format!("batch at offset delta {index_base}: {reason}"))?;
                walk_record_bytes(&records, header, &mut visit);
            }
        }
        index_base = index_base.saturating_add(header.records_count.get());
        position += size_bytes;
    }
    Ok(keyless)
}

/// Where a `CreateTime` timestamp may lie, in ms since the epoch, both ends included: the
/// broker's clock less `message.timestamp.before.max.ms` to it plus
/// `message.timestamp.after.max.ms` (`LogConfig::create_time_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampWindow {
    pub min_ms: i64,
    pub max_ms: i64,
}

impl TimestampWindow {
    fn admits(&self, timestamp_ms: i64) -> bool {
        // Kafka's NO_TIMESTAMP: a record without one is not checked.
        timestamp_ms == NO_TIMESTAMP || (self.min_ms..=self.max_ms).contains(&timestamp_ms)
    }
}

/// Kafka's `RecordBatch.NO_TIMESTAMP`.
const NO_TIMESTAMP: i64 = -1;

/// The first timestamp of the batch at the start of `bytes` that lies outside `window`, as
/// Kafka's LogValidator checks every record of a `CreateTime` batch. The records of an
/// uncompressed batch are each checked; a compressed batch (which the broker never unpacks),
/// or records that do not parse (the CRC check refuses those that are damaged), is checked by
/// its header's first and max timestamps.
pub fn timestamp_outside(bytes: &[u8], window: TimestampWindow) -> Option<i64> {
    let header = peek_header(bytes).ok()?;
    if header.compression_codec() == 0 {
        let outside = walk_records(bytes, header, |_, timestamp, _| {
            if window.admits(timestamp) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(timestamp)
            }
        });
        if let Some(outside) = outside {
            return outside;
        }
    }
    [header.base_timestamp.get(), header.max_timestamp.get()]
        .into_iter()
        .find(|timestamp| !window.admits(*timestamp))
}

/// Calls `visit` with (offset delta, timestamp, key length; -1 for no key) of each record of
/// an uncompressed batch, in order, until it breaks. `None` when the records do not parse;
/// `Some(None)` when `visit` never broke.
fn walk_records<T>(
    bytes: &[u8],
    header: &BatchHeader,
    visit: impl FnMut(i64, i64, i64) -> ControlFlow<T>,
) -> Option<Option<T>> {
    let end = header.size_bytes().min(bytes.len());
    walk_record_bytes(bytes.get(BATCH_HEADER_SIZE_BYTES..end)?, header, visit)
}

/// `walk_records` over the records themselves: the bytes after an uncompressed batch's header,
/// or a compressed batch's records once decompressed.
fn walk_record_bytes<T>(
    mut records: &[u8],
    header: &BatchHeader,
    mut visit: impl FnMut(i64, i64, i64) -> ControlFlow<T>,
) -> Option<Option<T>> {
    for _ in 0..header.records_count.get() {
        let length = usize::try_from(read_varlong(&mut records, 5)?).ok()?;
        if length > records.len() {
            return None;
        }
        let (record, rest) = records.split_at(length);
        records = rest;
        let mut fields = record.get(1..)?; // after the attributes byte
        let timestamp = header
            .base_timestamp
            .get()
            .checked_add(read_varlong(&mut fields, 10)?)?;
        let offset_delta = read_varlong(&mut fields, 5)?;
        let key_length = read_varlong(&mut fields, 5)?;
        if let ControlFlow::Break(found) = visit(offset_delta, timestamp, key_length) {
            return Some(Some(found));
        }
    }
    Some(None)
}

/// Appends a zigzag varint (as v2 records encode lengths and deltas) to `out`; `read_varlong`
/// reads it back.
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// Appends one v2 record to `out`, length prefix first: attributes 0, the timestamp and offset
/// deltas, the key and value (`None` is null), no headers. `build_batch` wraps such records.
pub fn put_record(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let mut body = vec![0u8]; // attributes
    put_varlong(&mut body, timestamp_delta);
    put_varlong(&mut body, offset_delta);
    for field in [key, value] {
        match field {
            Some(bytes) => {
                put_varlong(&mut body, bytes.len() as i64);
                body.extend_from_slice(bytes);
            }
            None => put_varlong(&mut body, -1),
        }
    }
    put_varlong(&mut body, 0); // headers
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

/// Builds a valid v2 batch around `records_count` opaque records of `payload`, for tests and
/// benchmarks that need well-formed batches without a Kafka client.
pub fn build_batch(
    base_timestamp_ms: i64,
    records_count: i32,
    payload: &[u8],
    producer: Option<(i64, i16, i32)>,
) -> Vec<u8> {
    assert!(records_count >= 1);
    let size_bytes = BATCH_HEADER_SIZE_BYTES + payload.len();
    let mut bytes = vec![0u8; size_bytes];
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let header = BatchHeader {
        base_offset: 0.into(),
        batch_length: ((size_bytes - BATCH_LENGTH_PREFIX_BYTES) as i32).into(),
        partition_leader_epoch: 0.into(),
        magic: MAGIC_V2,
        crc: 0.into(),
        attributes: 0.into(),
        last_offset_delta: (records_count - 1).into(),
        base_timestamp: base_timestamp_ms.into(),
        max_timestamp: base_timestamp_ms.into(),
        producer_id: producer_id.into(),
        producer_epoch: producer_epoch.into(),
        base_sequence: base_sequence.into(),
        records_count: records_count.into(),
    };
    bytes[..BATCH_HEADER_SIZE_BYTES].copy_from_slice(header.as_bytes());
    bytes[BATCH_HEADER_SIZE_BYTES..].copy_from_slice(payload);
    write_crc(&mut bytes);
    bytes
}

/// Builds a valid v2 batch of real records, one per entry of `timestamp_deltas` (each record's
/// timestamp relative to `base_timestamp_ms`), with a null key and a one-byte value: for tests
/// that need records a consumer or the record walk can read.
pub fn build_batch_of_records(base_timestamp_ms: i64, timestamp_deltas: &[i64]) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, delta) in timestamp_deltas.iter().enumerate() {
        put_record(&mut records, *delta, i as i64, None, Some(b"v"));
    }
    let records_count = i32::try_from(timestamp_deltas.len()).expect("a test-sized batch");
    let mut bytes = build_batch(base_timestamp_ms, records_count, &records, None);
    let max = base_timestamp_ms + timestamp_deltas.iter().copied().max().unwrap_or(0);
    peek_header_mut(&mut bytes)
        .expect("just built")
        .max_timestamp
        .set(max);
    write_crc(&mut bytes);
    bytes
}

#[cfg(test)]
mod keyless_tests {
    use super::*;

    fn batch_of(keys: &[Option<&[u8]>]) -> Vec<u8> {
        let mut records = Vec::new();
        for (delta, key) in keys.iter().enumerate() {
            put_record(&mut records, 0, delta as i64, *key, Some(b"v"));
        }
        build_batch(1_700_000_000_000, keys.len() as i32, &records, None)
    }

    #[test]
    fn records_without_a_key_are_found_by_their_index_in_the_record_set() {
        let mut record_set = batch_of(&[Some(b"a"), None, Some(b"c")]);
        record_set.extend(batch_of(&[None, Some(b"e")]));
        assert_eq!(keyless_records(&record_set).unwrap(), vec![1, 3]);
        assert!(keyless_records(&batch_of(&[Some(b"a")]))
            .unwrap()
            .is_empty());
        assert!(keyless_records(b"not a batch").unwrap().is_empty());
    }

    #[test]
    fn compressed_batches_are_looked_into_with_every_codec() {
        for codec in 1..=4i16 {
            let keys: [Option<&[u8]>; 3] = [Some(b"a"), None, Some(b"c")];
            let mut records = Vec::new();
            for (delta, key) in keys.iter().enumerate() {
                put_record(&mut records, 0, delta as i64, *key, Some(b"v"));
            }
            let compressed = crate::storage::codecs::tests::compress(codec, &records);
            let mut batch = build_batch(1_700_000_000_000, 3, &compressed, None);
            let header = peek_header_mut(&mut batch).unwrap();
            header.attributes = codec.into();
            let mut record_set = batch_of(&[None]);
            record_set.extend(&batch);
            assert_eq!(
                keyless_records(&record_set).unwrap(),
                vec![0, 2],
                "codec {codec}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn built_batch_validates_and_reports_offsets() {
        let bytes = build_batch(1_000, 5, b"hello world", None);
        let header = validate(&bytes).unwrap();
        assert_eq!(header.records_count.get(), 5);
        assert_eq!(header.last_offset(), 4);
        assert_eq!(header.size_bytes(), bytes.len());
    }

    #[test]
    fn log_append_time_stamps_the_batch_and_keeps_it_valid() {
        let mut bytes = build_batch(1_000, 3, b"abc", None);
        let crc = set_log_append_time(&mut bytes, 99_000);
        let header = validate(&bytes).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp.get(), 99_000);
        assert_eq!(header.base_timestamp.get(), 1_000);
        assert_eq!(header.crc.get(), crc);
    }

    #[test]
    fn assign_keeps_crc_valid() {
        let mut bytes = build_batch(1_000, 3, b"abc", None);
        assign(&mut bytes, 42, 7);
        let header = validate(&bytes).unwrap();
        assert_eq!(header.base_offset.get(), 42);
        assert_eq!(header.partition_leader_epoch.get(), 7);
        assert_eq!(header.last_offset(), 44);
    }

    #[test]
    fn rejects_bad_magic_crc_and_lengths() {
        let good = build_batch(0, 1, b"x", None);
        let mut bad_magic = good.clone();
        bad_magic[16] = 1;
        assert!(matches!(
            validate(&bad_magic),
            Err(BatchError::BadMagic { .. })
        ));
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 0xff;
        assert!(matches!(validate(&bad_crc), Err(BatchError::BadCrc { .. })));
        assert!(matches!(
            validate(&good[..good.len() - 1]),
            Err(BatchError::TruncatedBatch { .. })
        ));
        assert!(matches!(
            validate(&good[..10]),
            Err(BatchError::TruncatedHeader { .. })
        ));
        let mut bad_len = good.clone();
        bad_len[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate(&bad_len),
            Err(BatchError::BadLength { .. })
        ));
        assert_eq!(validate_record_set(&[]), Err(BatchError::Empty));
    }

    #[test]
    fn record_set_with_trailing_garbage_is_refused() {
        let mut set = build_batch(0, 2, b"ab", None);
        set.extend_from_slice(&build_batch(1, 1, b"c", None));
        assert_eq!(validate_record_set(&set).unwrap().len(), 2);
        set.extend_from_slice(&[0, 0, 0]);
        assert!(validate_record_set(&set).is_err());
    }

    /// A batch of records with the given timestamp deltas, encoded as a Kafka client would.
    #[test]
    fn finds_the_first_record_at_or_after_a_timestamp() {
        let mut bytes = build_batch_of_records(1_000, &[0, 10, 5, 20]);
        assign(&mut bytes, 100, 0);
        assert!(validate(&bytes).is_ok());
        assert_eq!(first_record_at_or_after(&bytes, 0), Some((100, 1_000)));
        assert_eq!(first_record_at_or_after(&bytes, 1_001), Some((101, 1_010)));
        assert_eq!(first_record_at_or_after(&bytes, 1_011), Some((103, 1_020)));
        assert_eq!(first_record_at_or_after(&bytes, 1_021), None);
    }

    #[test]
    fn every_record_of_a_create_time_batch_is_held_to_the_window() {
        let window = TimestampWindow {
            min_ms: 1_000,
            max_ms: 2_000,
        };
        let inside = build_batch_of_records(1_000, &[0, 500, 1_000]);
        assert_eq!(timestamp_outside(&inside, window), None);
        // A record in the middle older than the first: only the walk sees it.
        let old_middle = build_batch_of_records(1_200, &[0, -300, 100]);
        assert_eq!(timestamp_outside(&old_middle, window), Some(900));
        let too_new = build_batch_of_records(1_500, &[0, 501]);
        assert_eq!(timestamp_outside(&too_new, window), Some(2_001));
        // Records without a timestamp are not checked, as in Kafka.
        let untimed = build_batch_of_records(NO_TIMESTAMP, &[0, 0]);
        assert_eq!(timestamp_outside(&untimed, window), None);

        // A compressed batch is judged by its header's first and max timestamps.
        let mut compressed = build_batch_of_records(1_200, &[0, -300, 100]);
        BatchHeader::mut_from_prefix(&mut compressed[..])
            .unwrap()
            .0
            .attributes
            .set(1);
        assert_eq!(timestamp_outside(&compressed, window), None);
        let mut compressed_old = build_batch_of_records(900, &[0, 100]);
        BatchHeader::mut_from_prefix(&mut compressed_old[..])
            .unwrap()
            .0
            .attributes
            .set(4);
        assert_eq!(timestamp_outside(&compressed_old, window), Some(900));
        // Opaque records that do not parse fall back to the header too.
        let opaque = build_batch(2_500, 3, b"not records", None);
        assert_eq!(timestamp_outside(&opaque, window), Some(2_500));
    }

    proptest! {
        #[test]
        fn record_walk_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..256), target in any::<i64>()) {
            let bytes = build_batch(0, 3, &payload, None);
            let _ = first_record_at_or_after(&bytes, target);
            let _ = timestamp_outside(&bytes, TimestampWindow { min_ms: target, max_ms: target });
        }

        #[test]
        fn validation_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = validate_record_set(&bytes);
        }

        #[test]
        fn any_single_bit_flip_in_crc_range_is_caught(
            payload in proptest::collection::vec(any::<u8>(), 0..128),
            bit in 0usize..8,
            index_seed in any::<usize>(),
        ) {
            let mut bytes = build_batch(5, 1, &payload, None);
            let index = CRC_START_BYTES + index_seed % (bytes.len() - CRC_START_BYTES);
            bytes[index] ^= 1 << bit;
            prop_assert!(validate(&bytes).is_err());
        }

        /// Fed in pieces of any size, the streaming check finds exactly the first batch whose
        /// CRC `validate` refuses.
        #[test]
        fn record_set_crc_in_pieces_agrees_with_validate(
            payloads in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..300), 1..4),
            corrupt in proptest::option::of((any::<usize>(), any::<usize>(), 0usize..8)),
            piece_sizes in proptest::collection::vec(1usize..200, 1..20),
        ) {
            let batches: Vec<Vec<u8>> = payloads
                .iter()
                .map(|p| build_batch(0, 1, p, None))
                .collect();
            let mut record_set: Vec<u8> = batches.concat();
            if let Some((batch_seed, byte_seed, bit)) = corrupt {
                let batch = batch_seed % batches.len();
                let start: usize = batches[..batch].iter().map(Vec::len).sum();
                let len = batches[batch].len();
                let index = start + CRC_START_BYTES + byte_seed % (len - CRC_START_BYTES);
                record_set[index] ^= 1 << bit;
            }
            let expected = {
                // Sizes come from the untouched batches: a flip may hit a header field.
                let mut position = 0;
                let mut first_error = None;
                for size in batches.iter().map(Vec::len) {
                    if let Err(error) = validate(&record_set[position..position + size]) {
                        first_error.get_or_insert(error);
                    }
                    position += size;
                }
                first_error
            };
            let infos = match validate_record_set_headers(&record_set) {
                Ok(infos) => infos,
                // The flip hit a checked header field (the record count).
                Err(error) => {
                    prop_assert_eq!(validate_record_set(&record_set).err(), Some(error));
                    return Ok(());
                }
            };
            let mut check = RecordSetCrc::new(&infos);
            let mut rest = &record_set[..];
            for size in piece_sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, after) = rest.split_at((*size).min(rest.len()));
                check.update(piece);
                rest = after;
            }
            prop_assert_eq!(check.finish().err(), expected.clone());
            prop_assert_eq!(validate_record_set(&record_set).err(), expected);
        }
    }
}
