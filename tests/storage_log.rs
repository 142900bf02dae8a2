//! Partition log behaviour on real direct-IO files: append, read, roll, reopen, recovery,
//! retention, delete_records, truncation, timestamps, disk-full and group commit.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use bytes::BytesMut;
use common::*;
use ringlog::storage::{
    batch, BatchCache, FreeSpaceSource, LogConfig, PartitionLog, ReadLimits, SpaceGuard,
    StorageError,
};

fn limits(end: i64, max_bytes: usize) -> ReadLimits {
    ReadLimits {
        end_offset_exclusive: end,
        max_bytes,
    }
}

#[test]
fn appends_get_contiguous_offsets_and_read_back_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        for uncached in [false, true] {
            let dir = dir.join(if uncached { "disk" } else { "cache" });
            let log = if uncached {
                open_uncached(&dir, small_config()).await
            } else {
                open(&dir, small_config()).await
            };
            let mut expected = Vec::new();
            let mut next = 0;
            for i in 0..300u64 {
                let records = (i % 7 + 1) as i32;
                let bytes = make_batch(i, records, 10 + (i as usize * 97) % 3000, 1_000 + i as i64);
                let info = append(&log, &bytes).await;
                assert_eq!(info.base_offset, next);
                assert_eq!(info.last_offset, next + i64::from(records) - 1);
                expected.push(assigned(&bytes, next, 0));
                next += i64::from(records);
            }
            assert_eq!(log.log_end_offset(), next);
            assert!(log.segment_count() > 1, "small segments roll");
            for max_bytes in [1, 10_000, 1 << 20] {
                assert_batches_eq(&read_all(&log, 0, max_bytes).await, &expected, "read back");
            }
            // A read starting inside a batch returns that whole batch.
            let data = log.read(2, limits(next, 1)).await.unwrap();
            assert_eq!(data.batches[0].as_ref(), expected[1].as_slice());
            // Past the end: out of range; at the end: empty.
            assert!(matches!(
                log.read(next + 1, limits(next, 100)).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            assert!(log
                .read(next, limits(next, 100))
                .await
                .unwrap()
                .batches
                .is_empty());
            log.close().await.unwrap();
        }
    });
}

#[test]
fn reopen_restores_offsets_data_and_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let mut expected = Vec::new();
        {
            let log = open(&dir, small_config()).await;
            for i in 0..200u64 {
                expected.push(append_stored(&log, &make_batch(i, 3, 2000, 5_000 + i as i64)).await);
            }
            log.close().await.unwrap();
        }
        let log = open_uncached(&dir, small_config()).await;
        assert_eq!(log.log_end_offset(), 600);
        assert_batches_eq(&read_all(&log, 0, 64 * 1024).await, &expected, "read back");
        let info = append(&log, &make_batch(999, 1, 10, 9_999)).await;
        assert_eq!(info.base_offset, 600);
        // Index files exist for sealed segments and are non-empty.
        let mut index_sizes = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "index") {
                index_sizes.push(std::fs::metadata(&path).unwrap().len());
            }
        }
        assert!(index_sizes.iter().filter(|s| **s > 0).count() >= 2);
        assert!(index_sizes.iter().all(|s| s % 8 == 0));
    });
}

#[test]
fn durable_appends_survive_a_drop_without_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let mut expected = Vec::new();
        {
            let log = open(&dir, small_config()).await;
            for i in 0..50u64 {
                let bytes = make_batch(i, 1, 777, i as i64);
                let info = append(&log, &bytes).await;
                log.wait_durable(info.last_offset + 1).await.unwrap();
                expected.push(assigned(&bytes, info.base_offset, 0));
            }
            // Dropped without close: only what was made durable counts.
        }
        let log = open_uncached(&dir, small_config()).await;
        assert_eq!(log.log_end_offset(), 50);
        assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "read back");
    });
}

/// A fresh log in `dir` holding six batches (offsets 0-29), closed: the batches as stored
/// and the log's size. Closing keeps the preallocated blocks after the data.
async fn closed_log_of_six_batches(dir: &std::path::Path) -> (Vec<Vec<u8>>, u64) {
    let log = open(dir, small_config()).await;
    let mut expected = Vec::new();
    for i in 0..6u64 {
        expected.push(append_stored(&log, &make_batch(i, 5, 3000, 100 + i as i64)).await);
    }
    log.close().await.unwrap();
    (expected, log.size_bytes())
}

/// Replaces everything after `valid_len` in `path` with `tail` and then `zeros_bytes` zeros:
/// a torn or corrupt end, or preallocated space.
fn replace_after(path: &std::path::Path, valid_len: u64, tail: &[u8], zeros_bytes: usize) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(valid_len)
        .unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(tail).unwrap();
    file.write_all(&vec![0u8; zeros_bytes]).unwrap();
}

/// Appends `next` to a recovered log ending at offset 30, then checks across a reopen that
/// the log went on from there.
async fn appends_go_on_at_30(
    log: Rc<PartitionLog>,
    dir: &std::path::Path,
    next: &[u8],
    mut expected: Vec<Vec<u8>>,
    name: &str,
) {
    let info = append(&log, next).await;
    assert_eq!(info.base_offset, 30, "{name}");
    expected.push(assigned(next, 30, 0));
    log.close().await.unwrap();
    drop(log);
    let log = open_uncached(dir, small_config()).await;
    assert_batches_eq(
        &read_all(&log, 0, 1 << 20).await,
        &expected,
        &format!("{name} after reopen"),
    );
}

#[test]
fn torn_and_garbage_tails_are_cut_at_the_last_valid_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let good = make_batch(1, 5, 3000, 100);
        // (name, what to put after the valid batches)
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("half-batch", good[..good.len() / 2].to_vec()),
            ("header-only", good[..40].to_vec()),
            (
                "garbage",
                (0..5000u32).map(|i| (i * 31 % 251) as u8).collect(),
            ),
            ("bad-crc", {
                let mut b = assigned(&good, 30, 0);
                let n = b.len();
                b[n - 1] ^= 0x55;
                b
            }),
            ("wrong-offset", assigned(&good, 999, 0)),
        ];
        for (name, tail) in cases {
            let dir = root.join(name);
            let (expected, valid_len) = closed_log_of_six_batches(&dir).await;
            let log_path = dir.join(format!("{:020}.log", 0));
            // The damage goes right after the data, in place of the preallocated blocks.
            replace_after(&log_path, valid_len, &tail, 10_000);
            let log = open_uncached(&dir, small_config()).await;
            assert_eq!(log.log_end_offset(), 30, "{name}");
            assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "{name}");
            assert_eq!(
                std::fs::metadata(&log_path).unwrap().len(),
                valid_len,
                "{name}: cut"
            );
            // The log goes on from the cut.
            appends_go_on_at_30(log, &dir, &good, expected, name).await;
        }
    });
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let mut expected = Vec::new();
        {
            let log = open(&dir, small_config()).await;
            for i in 0..600u64 {
                expected
                    .push(append_stored(&log, &make_batch(i, 2, 1500, 10_000 + i as i64)).await);
            }
            log.close().await.unwrap();
        }
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        assert!(logs.len() >= 3);
        // First segment: index gone. Second: garbage index. Last (active): garbage entries.
        std::fs::remove_file(logs[0].with_extension("index")).unwrap();
        std::fs::remove_file(logs[0].with_extension("timeindex")).unwrap();
        std::fs::write(logs[1].with_extension("index"), [0xffu8; 64]).unwrap();
        std::fs::write(
            logs[2].with_extension("index"),
            [0x00u8, 0, 0, 9, 0, 0, 0, 1],
        )
        .unwrap();
        let last = logs.last().unwrap();
        std::fs::write(last.with_extension("index"), [0x7fu8; 80]).unwrap();

        let log = open_uncached(&dir, small_config()).await;
        assert_eq!(log.log_end_offset(), 1200);
        assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "read back");
        for offset in [0, 1, 77, 301, 599, 1199] {
            let data = log.read(offset, limits(1200, 1)).await.unwrap();
            let header = batch::validate(&data.batches[0]).unwrap();
            assert!(header.base_offset.get() <= offset && offset <= header.last_offset());
        }
        assert!(
            std::fs::metadata(logs[0].with_extension("index"))
                .unwrap()
                .len()
                > 0
        );
        // Timestamps still resolve through rebuilt time indexes.
        let (offset, timestamp) = log.find_offset_by_timestamp(10_050).await.unwrap().unwrap();
        assert_eq!((offset, timestamp), (100, 10_050));
    });
}

#[test]
fn timestamps_find_the_first_batch_at_or_after() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let log = open_uncached(&dir, small_config()).await;
        // Timestamps rise by 10 per batch, with one out-of-order batch.
        for i in 0..400i64 {
            let ts = if i == 200 { 5 } else { 1_000 + i * 10 };
            append(&log, &make_batch(i as u64, 1, 900, ts)).await;
        }
        assert_eq!(
            log.find_offset_by_timestamp(0).await.unwrap(),
            Some((0, 1_000))
        );
        assert_eq!(
            log.find_offset_by_timestamp(1_005).await.unwrap(),
            Some((1, 1_010))
        );
        assert_eq!(
            log.find_offset_by_timestamp(3_000).await.unwrap(),
            Some((201, 3_010))
        );
        assert_eq!(
            log.find_offset_by_timestamp(4_990).await.unwrap(),
            Some((399, 4_990))
        );
        assert_eq!(log.find_offset_by_timestamp(5_000).await.unwrap(), None);
    });
}

#[test]
fn retention_deletes_whole_closed_segments_by_bytes_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let now = ringlog::storage::now_ms();
        // By bytes.
        let config = LogConfig {
            retention_bytes: Some(600 * 1024),
            retention_ms: None,
            ..small_config()
        };
        let log = open(&root.join("bytes-0"), config).await;
        for i in 0..1000u64 {
            append(&log, &make_batch(i, 1, 2000, now)).await;
        }
        let before = log.segment_count();
        let deleted = log.enforce_retention(now).await.unwrap();
        assert!(deleted > 0 && log.segment_count() == before - deleted);
        assert!(log.size_bytes() >= 600 * 1024 - 256 * 1024 && log.size_bytes() < 900 * 1024);
        let start = log.log_start_offset();
        assert_eq!(start, log.segment_base_offsets()[0]);
        assert!(matches!(
            log.read(start - 1, limits(1000, 100)).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            read_all(&log, start, 1 << 20).await.len() as i64,
            1000 - start
        );

        // By time: old batches go, the active segment too once it has expired entirely.
        let config = LogConfig {
            retention_ms: Some(60_000),
            ..small_config()
        };
        let log = open(&root.join("time-0"), config).await;
        for i in 0..300u64 {
            append(&log, &make_batch(i, 1, 2000, now - 3_600_000)).await;
        }
        for i in 0..10u64 {
            append(&log, &make_batch(i, 1, 2000, now)).await;
        }
        log.enforce_retention(now).await.unwrap();
        assert_eq!(
            log.segment_count(),
            1,
            "only the segment with fresh data is left"
        );
        assert!(log.log_start_offset() > 0 && log.log_start_offset() <= 300);

        let config = LogConfig {
            retention_ms: Some(60_000),
            ..small_config()
        };
        let log = open(&root.join("all-old-0"), config).await;
        for i in 0..50u64 {
            append(&log, &make_batch(i, 1, 2000, now - 3_600_000)).await;
        }
        log.enforce_retention(now).await.unwrap();
        assert_eq!(log.log_start_offset(), 50);
        assert_eq!(log.log_end_offset(), 50);
        assert_eq!(
            append(&log, &make_batch(1, 1, 10, now)).await.base_offset,
            50
        );
    });
}

#[test]
fn delete_records_moves_the_start_durably() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        {
            let log = open(&dir, small_config()).await;
            for i in 0..500u64 {
                append(&log, &make_batch(i, 1, 2000, 1)).await;
            }
            assert!(matches!(
                log.delete_records(501).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            assert_eq!(log.delete_records(250).await.unwrap(), 250);
            assert!(log.segment_base_offsets()[0] <= 250);
            assert!(
                log.segment_base_offsets()[0] > 0,
                "wholly deleted segments are gone"
            );
            assert!(matches!(
                log.read(249, limits(500, 100)).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            log.close().await.unwrap();
        }
        let log = open(&dir, small_config()).await;
        assert_eq!(log.log_start_offset(), 250);
        let data = log.read(250, limits(500, 1)).await.unwrap();
        assert_eq!(
            batch::validate(&data.batches[0]).unwrap().base_offset.get(),
            250
        );
    });
}

#[test]
fn truncate_to_cuts_at_a_batch_boundary_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let mut expected = Vec::new();
        {
            let log = open(&dir, small_config()).await;
            for i in 0..400u64 {
                expected.push(append_stored(&log, &make_batch(i, 2, 1500, i as i64)).await);
            }
            let segments_before = log.segment_count();
            // Offset 301 lies inside the batch 300..=301: that batch goes too.
            assert_eq!(log.truncate_to(301).await.unwrap(), 300);
            assert!(log.segment_count() < segments_before);
            expected.truncate(150);
            assert_eq!(log.log_end_offset(), 300);
            assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "read back");
            for i in 0..20u64 {
                expected.push(append_stored(&log, &make_batch(1000 + i, 1, 500, 7)).await);
            }
            log.set_high_watermark(log.log_end_offset());
            assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "read back");
            log.close().await.unwrap();
        }
        let log = open_uncached(&dir, small_config()).await;
        assert_eq!(log.log_end_offset(), 320);
        assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "read back");
        // Truncating to before the first segment empties the log and restarts it there.
        assert_eq!(log.truncate_to(0).await.unwrap(), 0);
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(append(&log, &make_batch(5, 1, 10, 1)).await.base_offset, 0);
    });
}

#[test]
fn corrupt_and_oversized_batches_are_refused_without_side_effects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let config = LogConfig {
            max_message_bytes: 10_000,
            ..small_config()
        };
        let log = open(&dir, config).await;
        append(&log, &make_batch(1, 1, 100, 1)).await;
        let mut corrupt = make_batch(2, 1, 100, 1);
        corrupt[70] ^= 1;
        assert!(matches!(
            log.append(BytesMut::from(&corrupt[..]), 0).await,
            Err(StorageError::CorruptBatch(batch::BatchError::BadCrc { .. }))
        ));
        assert!(matches!(
            log.append(BytesMut::from(&[1u8, 2, 3][..]), 0).await,
            Err(StorageError::CorruptBatch(_))
        ));
        assert!(matches!(
            log.append(BytesMut::from(&make_batch(3, 1, 20_000, 1)[..]), 0)
                .await,
            Err(StorageError::BatchTooLarge { .. })
        ));
        assert_eq!(log.log_end_offset(), 1);
        assert_eq!(append(&log, &make_batch(4, 1, 100, 1)).await.base_offset, 1);
    });
}

/// `message.timestamp.before.max.ms` / `after.max.ms`: a record set holding a batch timestamped
/// outside the window around the broker's clock is refused whole with `InvalidTimestamp`
/// (INVALID_TIMESTAMP at the edge) and changes nothing; a `LogAppendTime` log takes any.
#[test]
fn timestamps_outside_the_create_time_window_are_refused_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let hour_ms = 3_600_000;
        let config = LogConfig {
            timestamp_before_max_ms: Some(hour_ms),
            timestamp_after_max_ms: Some(hour_ms),
            ..small_config()
        };
        let log = open(&dir, config.clone()).await;
        let now = ringlog::storage::now_ms();
        append(
            &log,
            &batch::build_batch_of_records(now - hour_ms as i64 / 2, &[0, 1]),
        )
        .await;
        // The old record is the second of its batch: the walk over the records finds it.
        let old = now - 2 * hour_ms as i64;
        let record_set = [
            batch::build_batch_of_records(now, &[0]),
            batch::build_batch_of_records(now, &[0, old - now, 0]),
        ]
        .concat();
        match log.append(BytesMut::from(&record_set[..]), 0).await {
            Err(StorageError::InvalidTimestamp {
                batch_index: 1,
                timestamp_ms,
                min_ms,
                max_ms,
            }) => {
                assert_eq!(timestamp_ms, old);
                assert!(min_ms > old && max_ms >= now + hour_ms as i64);
            }
            other => panic!("expected InvalidTimestamp for batch 1, got {other:?}"),
        }
        let future = batch::build_batch_of_records(now + 2 * hour_ms as i64, &[0]);
        assert!(matches!(
            log.append(BytesMut::from(&future[..]), 0).await,
            Err(StorageError::InvalidTimestamp { batch_index: 0, .. })
        ));
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(read_all(&log, 0, 1 << 20).await.len(), 1);
        assert_eq!(
            append(&log, &make_batch(5, 1, 100, now)).await.base_offset,
            2
        );
        let untimed = batch::build_batch_of_records(-1, &[0, 0]);
        assert_eq!(append(&log, &untimed).await.base_offset, 3);

        log.set_config(LogConfig {
            log_append_time: true,
            ..config
        });
        assert_eq!(append(&log, &future).await.base_offset, 5);
        log.close().await.unwrap();
    });
}

/// The CRCs are checked while the record set is copied to the file: a bad batch anywhere in
/// it refuses the whole record set, whichever way it is copied (inside the current chunk,
/// across chunk and large-write buffers, or too large to hold back and checked first), and
/// leaves nothing of it in the log, in memory or on disk.
#[test]
fn a_record_set_with_one_corrupt_batch_is_refused_whole_at_every_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        // small_config: 4 KiB chunks and 8 KiB large writes, so up to 16 KiB is held back.
        let cases: [(&[usize], usize); 4] = [
            (&[100, 100, 100], 2),
            (&[3_000, 3_000, 3_000], 1),
            (&[7_000, 7_000], 0),
            (&[6_000, 6_000, 6_000, 6_000], 3),
        ];
        let log = open(&dir, small_config()).await;
        let mut expected = Vec::new();
        let mut next = 0;
        let mut seed = 0;
        for (durable, (payloads, corrupt_index)) in [false, true]
            .into_iter()
            .flat_map(|durable| cases.iter().map(move |case| (durable, case)))
        {
            // An odd-sized batch first, so the record set starts mid-page.
            seed += 1;
            let lead = make_batch(seed, 1, 333, 1);
            assert_eq!(append(&log, &lead).await.base_offset, next);
            expected.push(assigned(&lead, next, 0));
            next += 1;

            let batches: Vec<Vec<u8>> = payloads
                .iter()
                .map(|payload| {
                    seed += 1;
                    make_batch(seed, 2, *payload, 1)
                })
                .collect();
            let mut corrupt = batches.clone();
            let last = corrupt[*corrupt_index].len() - 1;
            corrupt[*corrupt_index][last] ^= 0x40;
            let refused = log.append(BytesMut::from(&corrupt.concat()[..]), 0).await;
            assert!(
                matches!(
                    refused,
                    Err(StorageError::CorruptBatch(batch::BatchError::BadCrc { .. }))
                ),
                "{payloads:?}: {refused:?}"
            );
            assert_eq!(log.log_end_offset(), next, "{payloads:?}: nothing appended");
            if durable {
                log.flush().await.unwrap();
            }

            let info = append(&log, &batches.concat()).await;
            assert_eq!(info.base_offset, next, "{payloads:?}");
            for bytes in &batches {
                expected.push(assigned(bytes, next, 0));
                next += 2;
            }
            if durable {
                log.flush().await.unwrap();
            }
            assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "in memory");
        }
        log.close().await.unwrap();
        let log = open_uncached(&dir, small_config()).await;
        log.set_high_watermark(log.log_end_offset());
        assert_eq!(log.log_end_offset(), next);
        assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "after reopen");
        log.close().await.unwrap();
    });
}

/// `message.timestamp.type=LogAppendTime`: each batch is stamped with the append time, its
/// CRC rewritten, on disk as in memory; a corrupt batch is still refused, not re-signed.
#[test]
fn a_log_append_time_log_stamps_batches_and_rewrites_their_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let config = LogConfig {
            log_append_time: true,
            ..small_config()
        };
        let log = open(&dir, config.clone()).await;
        let mut corrupt = make_batch(1, 2, 300, 1_000);
        corrupt[100] ^= 1;
        assert!(matches!(
            log.append(BytesMut::from(&corrupt[..]), 0).await,
            Err(StorageError::CorruptBatch(batch::BatchError::BadCrc { .. }))
        ));
        let before_ms = ringlog::storage::now_ms();
        let mut append_times = Vec::new();
        for i in 0..3u64 {
            let info = append(&log, &make_batch(i, 2, 5_000, 1_000)).await;
            let stamped = info
                .log_append_time_ms
                .expect("a LogAppendTime log says when");
            assert!(stamped >= before_ms);
            assert_eq!(info.max_timestamp_ms, stamped);
            append_times.push(stamped);
        }
        log.flush().await.unwrap();
        let check = |batches: Vec<Vec<u8>>| {
            assert_eq!(batches.len(), 3);
            for (bytes, stamped) in batches.iter().zip(&append_times) {
                let header = batch::validate(bytes).expect("a valid CRC after the rewrite");
                assert!(header.is_log_append_time());
                assert_eq!(header.max_timestamp.get(), *stamped);
                assert_eq!(header.base_timestamp.get(), 1_000);
            }
        };
        check(read_all(&log, 0, 1 << 20).await);
        log.close().await.unwrap();
        let log = open_uncached(&dir, config).await;
        log.set_high_watermark(log.log_end_offset());
        check(read_all(&log, 0, 1 << 20).await);
        log.close().await.unwrap();
    });
}

#[test]
fn low_free_space_refuses_writes_keeps_reads_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        ringlog::storage::file::prime_device(dir.parent().unwrap())
            .await
            .unwrap();
        let free = Rc::new(Cell::new(10u64 << 30));
        let space = Rc::new(SpaceGuard::new(
            FreeSpaceSource::Fixed(free.clone()),
            1 << 30,
        ));
        let (log, _) = PartitionLog::open(&dir, small_config(), Rc::new(BatchCache::new(0)), space)
            .await
            .unwrap();
        let first = make_batch(1, 1, 100, 1);
        append(&log, &first).await;
        free.set(100 << 20);
        match log
            .append(BytesMut::from(&make_batch(2, 1, 100, 1)[..]), 0)
            .await
        {
            Err(error @ StorageError::DiskFull { .. }) => assert!(error.is_storage_failure()),
            other => panic!("expected DiskFull, got {other:?}"),
        }
        assert_eq!(log.log_end_offset(), 1);
        assert_batches_eq(
            &read_all(&log, 0, 1 << 20).await,
            &[assigned(&first, 0, 0)],
            "read back",
        );
        free.set(5 << 30);
        assert_eq!(append(&log, &make_batch(3, 1, 100, 1)).await.base_offset, 1);
    });
}

#[test]
fn concurrent_durable_appends_share_fdatasyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let log = open(&dir, LogConfig::default()).await;
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let log = log.clone();
            tasks.push(ringlog::runtime::spawn_local(async move {
                let info = append(&log, &make_batch(i, 1, 1000, 1)).await;
                log.wait_durable(info.last_offset + 1).await.unwrap();
                info.base_offset
            }));
        }
        let mut offsets = Vec::new();
        for task in tasks {
            offsets.push(task.await);
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (0..200).collect::<Vec<i64>>());
        assert_eq!(log.durable_offset(), 200);
        let commits = log.group_commit_count();
        assert!(
            (1..200).contains(&commits),
            "{commits} fdatasyncs for 200 appends"
        );
    });
}

#[test]
fn write_buffers_are_pooled_by_the_shard_within_a_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        use ringlog::storage::write_buffer_pool_bytes;
        const SHARD_BOUND_BYTES: usize = 64 * 1024 * 1024;
        assert_eq!(write_buffer_pool_bytes(), 0);
        // 24 partitions with 4 MiB of 1 MiB writes in flight each, one after the other. Each
        // log takes the buffers the one before gave back, so the pool stays at about one log's
        // worth instead of growing with the partitions.
        // 8 MiB per log stays in the first half of its first 32 MiB preallocation step, so no
        // background step holds an appender when the logs are closed.
        let mut logs = Vec::new();
        let mut pooled_after_first = 0;
        for partition in 0..24u64 {
            let log = open(&root.join(format!("t-{partition}")), LogConfig::default()).await;
            for i in 0..8u64 {
                append(&log, &make_batch(i, 16, 1024 * 1024 - 2048, 1)).await;
            }
            log.flush().await.unwrap();
            let pooled = write_buffer_pool_bytes();
            assert!(pooled <= SHARD_BOUND_BYTES);
            if partition == 0 {
                pooled_after_first = pooled;
                assert!(pooled > 0, "completed writes give their buffers back");
            } else {
                assert!(
                    pooled <= pooled_after_first + 2 * 1024 * 1024,
                    "partition {partition}: {pooled} pooled bytes, {pooled_after_first} after the first: buffers are reused, not added"
                );
            }
            logs.push(log);
        }
        for log in logs.drain(..) {
            log.close().await.unwrap();
        }
        assert!(write_buffer_pool_bytes() <= SHARD_BOUND_BYTES);
    });
}

/// Each log stops at its own 4 MiB of writes in flight; the shard also stops appends while its
/// files together have more than its bound in flight, whatever the number of busy partitions.
#[test]
fn appends_wait_while_the_shard_has_its_bound_of_writes_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        use ringlog::storage::write_budget;
        const SHARD_BOUND_BYTES: usize = 2 * 1024 * 1024;
        const PARTITIONS: usize = 8;
        const BATCH_BYTES: usize = 1024 * 1024;
        write_budget::set_max_bytes(SHARD_BOUND_BYTES);
        let mut logs = Vec::new();
        for partition in 0..PARTITIONS {
            logs.push(open(&root.join(format!("t-{partition}")), LogConfig::default()).await);
        }
        let highest = Rc::new(Cell::new(0usize));
        let producers = logs.iter().enumerate().map(|(partition, log)| {
            let (log, highest) = (Rc::clone(log), Rc::clone(&highest));
            ringlog::runtime::spawn_local(async move {
                for i in 0..12u64 {
                    let seed = partition as u64 * 100 + i;
                    append(&log, &make_batch(seed, 4, BATCH_BYTES - 2048, 1)).await;
                    highest.set(highest.get().max(write_budget::inflight_bytes()));
                }
            })
        });
        futures_util::future::join_all(producers).await;
        // An append waits once its own writes are issued, so each producer may have one more
        // batch's writes in flight beyond the bound; 8 partitions at their own 4 MiB would
        // have had 32 MiB.
        let limit = SHARD_BOUND_BYTES + PARTITIONS * BATCH_BYTES;
        assert!(
            highest.get() <= limit,
            "{} bytes in flight, bound {SHARD_BOUND_BYTES}",
            highest.get()
        );
        for log in &logs {
            log.flush().await.unwrap();
            assert_eq!(log.log_end_offset(), 48);
        }
        for log in logs.drain(..) {
            log.close().await.unwrap();
        }
        assert_eq!(write_budget::inflight_bytes(), 0, "every write released");
        write_budget::set_max_bytes(write_budget::SHARD_INFLIGHT_BYTES_MAX_DEFAULT);
    });
}

#[test]
fn the_dsync_twin_is_opened_with_o_dsync_and_o_direct() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.log");
    run(move || async move {
        use ringlog::storage::file::DirectFile;
        ringlog::storage::file::prime_device(path.parent().unwrap())
            .await
            .unwrap();
        let file = DirectFile::open(&path, true).await.unwrap();
        let twin = file.open_dsync_twin().await.unwrap();
        let plain_flags = file.status_flags().unwrap();
        let twin_flags = twin.status_flags().unwrap();
        assert_ne!(plain_flags & libc::O_DIRECT, 0);
        assert_eq!(plain_flags & libc::O_DSYNC, 0);
        assert_ne!(twin_flags & libc::O_DIRECT, 0);
        assert_eq!(twin_flags & libc::O_DSYNC, libc::O_DSYNC);
    });
}

#[test]
fn durable_appends_one_at_a_time_are_synced_by_o_dsync_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let mut expected = Vec::new();
        {
            let log = open(&dir, LogConfig::default()).await;
            let durable_append = |i: u64| {
                let log = log.clone();
                async move {
                    let bytes = make_batch(i, 1, 1000, i as i64);
                    let info = append(&log, &bytes).await;
                    log.wait_durable(info.last_offset + 1).await.unwrap();
                    assigned(&bytes, info.base_offset, 0)
                }
            };
            // 200 KB: three 64 KiB chunks fill on the way, each written through the twin too.
            for i in 0..200u64 {
                expected.push(durable_append(i).await);
            }
            assert_eq!(log.group_commit_count(), 200);
            let fdatasyncs = log.fdatasync_count();
            assert!(
                (1..=2).contains(&fdatasyncs),
                "{fdatasyncs} fdatasyncs for 200 durable appends one at a time"
            );
            // A tail written behind, without a sync, is not durable: the next sync must
            // fdatasync, and the one after is a lone O_DSYNC write again.
            expected.push(append_stored(&log, &make_batch(200, 1, 1000, 200)).await);
            log.tick(ringlog::storage::now_ms(), false).await.unwrap();
            expected.push(durable_append(201).await);
            assert_eq!(log.fdatasync_count(), fdatasyncs + 1);
            expected.push(durable_append(202).await);
            assert_eq!(log.fdatasync_count(), fdatasyncs + 1);
            // Dropped without close.
        }
        let log = open_uncached(&dir, LogConfig::default()).await;
        assert_eq!(log.log_end_offset(), 203);
        assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, "read back");
        // A log reopened on bytes that may never have been synced fdatasyncs at its first sync.
        let info = append(&log, &make_batch(203, 1, 1000, 203)).await;
        log.wait_durable(info.last_offset + 1).await.unwrap();
        assert_eq!(log.fdatasync_count(), 1);
    });
}

#[test]
fn leader_epochs_are_stamped_and_remembered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        {
            let log = open(&dir, small_config()).await;
            for (i, epoch) in [0, 0, 3, 3, 7].into_iter().enumerate() {
                let bytes = make_batch(i as u64, 2, 100, 1);
                log.append(BytesMut::from(&bytes[..]), epoch).await.unwrap();
                log.set_high_watermark(log.log_end_offset());
            }
            assert_eq!(log.epochs(), vec![(0, 0), (3, 4), (7, 8)]);
            assert_eq!(log.end_offset_for_epoch(3), Some((3, 8)));
            assert_eq!(log.end_offset_for_epoch(5), Some((3, 8)));
            assert_eq!(log.end_offset_for_epoch(7), Some((7, 10)));
            assert_eq!(
                log.end_offset_for_epoch(9),
                None,
                "newer than the latest: undefined"
            );
            assert_eq!(
                log.end_offset_for_epoch(-5),
                Some((-5, 0)),
                "older than the first"
            );
            let data = log.read(8, limits(10, 1)).await.unwrap();
            assert_eq!(
                batch::validate(&data.batches[0])
                    .unwrap()
                    .partition_leader_epoch
                    .get(),
                7
            );
            log.close().await.unwrap();
        }
        let log = open(&dir, small_config()).await;
        assert_eq!(log.epochs(), vec![(0, 0), (3, 4), (7, 8)]);
        log.truncate_to(6).await.unwrap();
        assert_eq!(log.epochs(), vec![(0, 0), (3, 4)]);
    });
}

#[test]
fn segment_ms_rolls_and_tick_writes_idle_tails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let config = LogConfig {
            segment_ms: Some(1),
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        let now = ringlog::storage::now_ms();
        append(&log, &make_batch(1, 1, 100, now)).await;
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        log.tick(ringlog::storage::now_ms(), true).await.unwrap();
        assert_eq!(log.segment_count(), 2);
        append(&log, &make_batch(2, 1, 100, now)).await;
        assert_eq!(log.segment_count(), 2, "the new segment has not aged yet");
    });
}

/// Appends `batch_count` batches of 256 KiB at once to a fresh log in `dir` with
/// `segment_mib` MiB segments and `step_mib` MiB preallocation steps, closes it (which waits
/// for a background step), and returns the log's size and the length of its segment file: the
/// bytes written and the bytes preallocated.
async fn appended_and_preallocated_bytes(
    dir: &std::path::Path,
    segment_mib: u64,
    step_mib: u64,
    batch_count: u64,
) -> (u64, u64) {
    const MIB: u64 = 1024 * 1024;
    let config = LogConfig {
        segment_bytes: segment_mib * MIB,
        preallocate_bytes: step_mib * MIB,
        ..LogConfig::default()
    };
    let log = open(dir, config).await;
    for i in 0..batch_count {
        append(&log, &make_batch(i, 16, 256 * 1024 - 2048, 1)).await;
    }
    log.close().await.unwrap();
    let on_disk = std::fs::metadata(dir.join(format!("{:020}.log", 0)))
        .unwrap()
        .len();
    (log.size_bytes(), on_disk)
}

#[test]
fn preallocation_stops_at_segment_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        const MIB: u64 = 1024 * 1024;
        // 7.5 MiB: less than half a step left, where a step past the segment's end used to be
        // reserved (and freed again by the seal's cut).
        let (size_bytes, on_disk) = appended_and_preallocated_bytes(&dir, 8, 4, 30).await;
        assert!(size_bytes > 7 * MIB);
        assert_eq!(
            on_disk,
            8 * MIB,
            "preallocated up to segment.bytes, not past it"
        );
    });
}

#[test]
fn a_busy_log_reserves_larger_preallocation_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        const MIB: u64 = 1024 * 1024;
        // 3.5 MiB in well under a second: the first 4 MiB step is used up at once, so the next
        // one, reserved when less than half a step is left, is 4 steps long.
        let (_, on_disk) = appended_and_preallocated_bytes(&dir, 64, 4, 14).await;
        assert_eq!(on_disk, 20 * MIB, "4 MiB, then a step of 4 x 4 MiB");
    });
}

#[test]
fn a_roll_interrupted_by_a_crash_recovers_the_unsealed_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        // A roll creates the next segment and seals the old one in the background. What a
        // crash can leave: the old segment with its preallocated zeros and perhaps a torn batch
        // after its data, and the new segment's files, preallocated, holding a torn first
        // batch, or holding batches appended meanwhile.
        let torn = make_batch(9, 5, 3000, 100);
        let after = make_batch(11, 5, 3000, 150);
        let cases: Vec<(&str, Vec<u8>, Vec<u8>, i64)> = vec![
            ("zeros", Vec::new(), vec![0u8; 1 << 20], 30),
            (
                "torn-old",
                torn[..torn.len() / 2].to_vec(),
                vec![0u8; 1 << 20],
                30,
            ),
            (
                "torn-new",
                Vec::new(),
                assigned(&torn, 30, 0)[..2000].to_vec(),
                30,
            ),
            ("empty-new", Vec::new(), Vec::new(), 30),
            (
                "appended-new",
                Vec::new(),
                [assigned(&after, 30, 0), vec![0u8; 1 << 16]].concat(),
                35,
            ),
        ];
        for (name, old_tail, new_log, end) in cases {
            let dir = root.join(name);
            let (mut expected, valid_len) = closed_log_of_six_batches(&dir).await;
            let old_log = dir.join(format!("{:020}.log", 0));
            replace_after(&old_log, valid_len, &old_tail, 64 * 1024);
            let new_paths: Vec<_> = ["log", "index", "timeindex"]
                .iter()
                .map(|suffix| dir.join(format!("{:020}.{suffix}", 30)))
                .collect();
            std::fs::write(&new_paths[0], &new_log).unwrap();
            std::fs::write(&new_paths[1], []).unwrap();
            std::fs::write(&new_paths[2], []).unwrap();

            let log = open_uncached(&dir, small_config()).await;
            assert_eq!(log.log_end_offset(), end, "{name}");
            assert_eq!(log.segment_count(), 2, "{name}: the new segment stays");
            assert_eq!(
                std::fs::metadata(&old_log).unwrap().len(),
                valid_len,
                "{name}: the old segment is sealed, cut after its data"
            );
            if end == 35 {
                expected.push(assigned(&after, 30, 0));
            }
            log.set_high_watermark(end);
            assert_batches_eq(&read_all(&log, 0, 1 << 20).await, &expected, name);
            log.close().await.unwrap();
        }
    });
}

/// A crash before a rolled segment's seal made its tail durable can leave that segment short
/// of the next one's base while the next holds batches: offsets would jump, so the segments
/// after it are dropped (none of their offsets had been acknowledged as durable: that waits
/// for the seal), and the log goes on from the shortened segment.
#[test]
fn a_segment_cut_short_before_its_seal_drops_the_segments_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let (expected, _) = closed_log_of_six_batches(&dir).await;
        let kept_len: usize = expected[..4].iter().map(Vec::len).sum();
        let old_log = dir.join(format!("{:020}.log", 0));
        replace_after(&old_log, kept_len as u64, &[], 64 * 1024);
        let appended = [
            assigned(&make_batch(12, 5, 3000, 160), 30, 0),
            assigned(&make_batch(13, 5, 3000, 170), 35, 0),
        ]
        .concat();
        std::fs::write(dir.join(format!("{:020}.log", 30)), &appended).unwrap();
        std::fs::write(dir.join(format!("{:020}.index", 30)), []).unwrap();
        std::fs::write(dir.join(format!("{:020}.timeindex", 30)), []).unwrap();

        let log = open_uncached(&dir, small_config()).await;
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(log.segment_count(), 1);
        for suffix in ["log", "index", "timeindex"] {
            let path = dir.join(format!("{:020}.{suffix}", 30));
            assert!(!path.exists(), "{} removed", path.display());
        }
        assert_batches_eq(
            &read_all(&log, 0, 1 << 20).await,
            &expected[..4],
            "after recovery",
        );
        let next = make_batch(14, 5, 3000, 200);
        assert_eq!(append(&log, &next).await.base_offset, 20);
        log.close().await.unwrap();
        drop(log);
        let log = open_uncached(&dir, small_config()).await;
        assert_batches_eq(
            &read_all(&log, 0, 1 << 20).await,
            &[&expected[..4], &[assigned(&next, 20, 0)]].concat(),
            "after reopen",
        );
    });
}

/// Rolls seal in the background and then record the recovery point: `open` trusts the
/// segments that end at or below it and recovers the ones after, as Kafka does.
#[test]
fn the_recovery_point_decides_which_segments_open_recovers() {
    use ringlog::storage::checkpoint::PartitionCheckpoint;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let log = open(&dir, small_config()).await;
        let mut expected = Vec::new();
        for i in 0..300u64 {
            expected.push(append_stored(&log, &make_batch(i, 5, 3000, 100 + i as i64)).await);
        }
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "small segments roll: {bases:?}");
        log.close().await.unwrap();
        drop(log);
        let checkpoint = PartitionCheckpoint::load(&dir).await.unwrap().unwrap();
        assert_eq!(
            checkpoint.recovery_point,
            bases.last().copied(),
            "every seal finished"
        );

        // An unsealed segment with its preallocated zeros after the data, and the recovery
        // point at its base: two segments before the last, where the rule for a checkpoint
        // without a recovery point (the last two) would have trusted it.
        let unsealed = bases[bases.len() - 3];
        let path = dir.join(format!("{unsealed:020}.log"));
        let sealed_len = std::fs::metadata(&path).unwrap().len();
        replace_after(&path, sealed_len, &[], 64 * 1024);
        PartitionCheckpoint {
            recovery_point: Some(unsealed),
            ..checkpoint
        }
        .store(&dir)
        .await
        .unwrap();

        let log = open_uncached(&dir, small_config()).await;
        assert_eq!(log.segment_base_offsets(), bases);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            sealed_len,
            "recovered and sealed again"
        );
        log.set_high_watermark(log.log_end_offset());
        assert_batches_eq(&read_all(&log, 0, 64 << 20).await, &expected, "reopened");
        log.close().await.unwrap();
        let checkpoint = PartitionCheckpoint::load(&dir).await.unwrap().unwrap();
        assert_eq!(checkpoint.recovery_point, bases.last().copied());
    });
}

#[test]
fn a_busy_log_starts_its_next_segment_with_a_larger_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        const MIB: u64 = 1024 * 1024;
        let config = LogConfig {
            segment_bytes: 8 * MIB,
            preallocate_bytes: MIB,
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        // About 8 MiB in well under a second fills the first segment; the next append rolls,
        // and the new segment reserves 4 steps at once, as the hot segment before it would
        // have next.
        let mut i = 0;
        while log.segment_count() < 2 {
            append(&log, &make_batch(i, 16, 256 * 1024 - 2048, 1)).await;
            i += 1;
        }
        let second = log.segment_base_offsets()[1];
        log.close().await.unwrap();
        let on_disk = std::fs::metadata(dir.join(format!("{second:020}.log")))
            .unwrap()
            .len();
        assert_eq!(
            on_disk,
            4 * MIB,
            "the new segment's first step is 4 x 1 MiB"
        );
    });
}

/// A write-behind still pending when the log is closed and dropped does not keep the log
/// alive, nor its cache and the request buffers cached batches point into: an executor that
/// exits before the timer fires never drops the task, and those bytes would leak with it.
#[test]
fn a_pending_write_behind_does_not_keep_a_dropped_log_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let log = open(&dir, small_config()).await;
        append(&log, &make_batch(1, 2, 500, 1)).await;
        log.close().await.unwrap();
        let weak = Rc::downgrade(&log);
        drop(log);
        assert!(weak.upgrade().is_none(), "the log outlived its last owner");
    });
}

/// Damage to sealed segments that would leave offsets the log claims but cannot read (a
/// deleted segment, one cut at a batch boundary, a damaged length near its end) fails the open
/// with the reason, instead of a log whose consumers stall without a word. A checkpointed log
/// start past the end is ignored rather than hiding every record.
#[test]
fn sealed_segment_damage_fails_the_open_and_a_start_past_the_end_is_ignored() {
    use ringlog::storage::checkpoint::PartitionCheckpoint;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let pristine = root.join("pristine-0");
        let log = open(&pristine, small_config()).await;
        for i in 0..300u64 {
            append_stored(&log, &make_batch(i, 5, 3000, 100 + i as i64)).await;
        }
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "small segments roll: {bases:?}");
        let end = log.log_end_offset();
        log.close().await.unwrap();
        drop(log);
        let copy = |name: &str| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for entry in std::fs::read_dir(&pristine).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
            dir
        };
        let open_error = |dir: std::path::PathBuf| async move {
            let cache = Rc::new(BatchCache::new(1 << 20));
            match PartitionLog::open(
                &dir,
                small_config(),
                cache,
                Rc::new(SpaceGuard::unlimited()),
            )
            .await
            {
                Ok(_) => panic!("{} opened", dir.display()),
                Err(error) => error.to_string(),
            }
        };

        let deleted = copy("deleted-0");
        for extension in ["log", "index", "timeindex"] {
            std::fs::remove_file(deleted.join(format!("{:020}.{extension}", bases[1]))).unwrap();
        }
        let error = open_error(deleted).await;
        assert!(error.contains("are missing"), "{error}");

        let cut = copy("cut-0");
        let path = cut.join(format!("{:020}.log", bases[0]));
        let bytes = std::fs::read(&path).unwrap();
        let mut position = 0;
        let mut last_start = 0;
        while let Ok(header) = batch::validate(&bytes[position..]) {
            last_start = position;
            position += header.size_bytes();
        }
        std::fs::write(&path, &bytes[..last_start]).unwrap();
        let error = open_error(cut).await;
        assert!(error.contains("are missing"), "{error}");

        let damaged = copy("damaged-0");
        let path = damaged.join(format!("{:020}.log", bases[0]));
        let mut bytes = std::fs::read(&path).unwrap();
        // The last batch's length field (bytes 8..12 of its header).
        bytes[last_start + 9] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let error = open_error(damaged).await;
        assert!(error.contains("is corrupt at"), "{error}");

        let started_late = copy("late-0");
        let checkpoint = PartitionCheckpoint::load(&started_late)
            .await
            .unwrap()
            .unwrap();
        PartitionCheckpoint {
            log_start_offset: end + 1_000,
            ..checkpoint
        }
        .store(&started_late)
        .await
        .unwrap();
        let log = open(&started_late, small_config()).await;
        assert_eq!(log.log_start_offset(), 0);
        assert_eq!(log.log_end_offset(), end);
        log.close().await.unwrap();
    });
}

/// Bytes flipped inside a record of a sealed segment: a read from the device checks each
/// batch's CRC, so the damaged batch is refused (the partition answers KAFKA_STORAGE_ERROR)
/// instead of served, and the batches around it still read.
#[test]
fn a_damaged_stored_batch_is_refused_when_read_from_the_device() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run(move || async move {
        let log = open(&dir, small_config()).await;
        let mut expected = Vec::new();
        for i in 0..300u64 {
            expected.push(append_stored(&log, &make_batch(i, 5, 3000, 100 + i as i64)).await);
        }
        assert!(log.segment_count() >= 3);
        log.close().await.unwrap();
        drop(log);
        let path = dir.join(format!("{:020}.log", 0));
        let mut bytes = std::fs::read(&path).unwrap();
        let second = batch::validate(&bytes).unwrap().size_bytes();
        // Inside the second batch's records (offsets 5..10), past its 61-byte header.
        bytes[second + 200] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();

        let log = open_uncached(&dir, small_config()).await;
        let first = log.read(0, limits(300 * 5, 1)).await.unwrap();
        let as_vecs =
            |batches: &[bytes::Bytes]| batches.iter().map(|b| b.to_vec()).collect::<Vec<_>>();
        assert_batches_eq(
            &as_vecs(&first.batches),
            &expected[..1],
            "the batch before the damage",
        );
        match log.read(5, limits(300 * 5, 1 << 20)).await {
            Err(StorageError::LogFailed(reason)) => {
                assert!(reason.contains("damaged"), "{reason}");
                assert_eq!(
                    ringlog::protocol::codes::storage_error_code(&StorageError::LogFailed(reason)),
                    56
                );
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(data) => panic!("served {} damaged batch(es)", data.batches.len()),
        }
        // A read that starts before the damage stops short of it.
        let before = log.read(0, limits(300 * 5, 1 << 20)).await.unwrap();
        assert_eq!(before.batches.len(), 1);
        let after = log.read(10, limits(300 * 5, 1)).await.unwrap();
        assert_batches_eq(
            &as_vecs(&after.batches),
            &expected[2..3],
            "the batch after the damage",
        );
        log.close().await.unwrap();
    });
}
