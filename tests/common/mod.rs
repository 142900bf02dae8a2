//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use ringlog::storage::{batch, BatchCache, LogConfig, PartitionLog, ReadLimits, SpaceGuard};

/// Runs a test body on a glommio executor.
pub fn run<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    ringlog::runtime::run_on_executor("storage-test", make).expect("executor ran");
}

/// A deterministic batch: `records` records, payload derived from `seed`, timestamp `ts`.
pub fn make_batch(seed: u64, records: i32, payload_bytes: usize, timestamp_ms: i64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let payload: Vec<u8> = (0..payload_bytes)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) as u8
        })
        .collect();
    batch::build_batch(timestamp_ms, records, &payload, None)
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 * 1024,
        index_interval_bytes: 4096,
        preallocate_bytes: 1024 * 1024,
        // Batches of a few KiB take both the chunk and the large-write path.
        write_chunk_bytes: 4096,
        write_large_max_bytes: 8192,
        ..LogConfig::default()
    }
}

pub async fn open(dir: &Path, config: LogConfig) -> Rc<PartitionLog> {
    ringlog::storage::file::prime_device(dir.parent().unwrap())
        .await
        .unwrap();
    let cache = Rc::new(BatchCache::new(64 * 1024 * 1024));
    PartitionLog::open(dir, config, cache, Rc::new(SpaceGuard::unlimited()))
        .await
        .expect("log opens")
        .0
}

/// Opens with a tiny cache so that reads go to disk.
pub async fn open_uncached(dir: &Path, config: LogConfig) -> Rc<PartitionLog> {
    ringlog::storage::file::prime_device(dir.parent().unwrap())
        .await
        .unwrap();
    let cache = Rc::new(BatchCache::new(0));
    PartitionLog::open(dir, config, cache, Rc::new(SpaceGuard::unlimited()))
        .await
        .expect("log opens")
        .0
}

/// Appends as a lone replica's leader would: the high watermark follows the log end.
pub async fn append(log: &Rc<PartitionLog>, bytes: &[u8]) -> ringlog::storage::AppendInfo {
    let info = log.append(BytesMut::from(bytes), 0).await.expect("append");
    log.set_high_watermark(log.log_end_offset());
    info
}

/// Appends `bytes` (as `append`) and returns the batch as the log stores it.
pub async fn append_stored(log: &Rc<PartitionLog>, bytes: &[u8]) -> Vec<u8> {
    let info = append(log, bytes).await;
    assigned(bytes, info.base_offset, 0)
}

/// Compares batch lists without printing megabytes of bytes on failure.
#[track_caller]
pub fn assert_batches_eq(actual: &[Vec<u8>], expected: &[Vec<u8>], context: &str) {
    assert_eq!(actual.len(), expected.len(), "{context}: batch count");
    if let Some(i) = (0..actual.len()).find(|i| actual[*i] != expected[*i]) {
        panic!(
            "{context}: batch {i} differs ({} vs {} bytes)",
            actual[i].len(),
            expected[i].len()
        );
    }
}

/// Every batch from `start` to the high watermark, read in requests of `max_bytes`.
pub async fn read_all(log: &PartitionLog, start: i64, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut batches = Vec::new();
    let mut offset = start;
    let end = log.high_watermark();
    while offset < end {
        let data = log
            .read(
                offset,
                ReadLimits {
                    end_offset_exclusive: end,
                    max_bytes,
                },
            )
            .await
            .expect("read");
        assert!(
            !data.batches.is_empty(),
            "no progress reading at {offset} (end {end})"
        );
        for bytes in data.batches {
            let header = batch::validate(&bytes).expect("stored batch is valid");
            if header.last_offset() >= offset {
                offset = header.last_offset() + 1;
                batches.push(bytes.to_vec());
            }
        }
    }
    batches
}

/// The batch as the log should store it: `baseOffset` and leader epoch assigned.
pub fn assigned(bytes: &[u8], base_offset: i64, leader_epoch: i32) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    batch::assign(&mut copy, base_offset, leader_epoch);
    copy
}
