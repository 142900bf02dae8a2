//! Property test: random sequences of appends, durable appends, reads, reopens, simulated
//! crashes, truncations, record deletions and retention, checked against a plain in-memory
//! model of the log after every step.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use ringlog::storage::{batch, LogConfig, PartitionLog, ReadLimits};

#[derive(Debug, Clone)]
enum Op {
    Append {
        batches: u8,
        records: u8,
        payload_bytes: u16,
    },
    AppendDurable {
        payload_bytes: u16,
    },
    Read {
        at_permille: u16,
        max_bytes: u32,
    },
    Reopen,
    /// Drop the log without closing it; only what was durable must survive.
    Crash,
    TruncateTo {
        at_permille: u16,
    },
    DeleteRecords {
        at_permille: u16,
    },
    Retention {
        keep_bytes: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..4, 1u8..6, 0u16..9000).prop_map(|(batches, records, payload_bytes)| Op::Append { batches, records, payload_bytes }),
        2 => (0u16..3000).prop_map(|payload_bytes| Op::AppendDurable { payload_bytes }),
        3 => (0u16..1000, 1u32..200_000).prop_map(|(at_permille, max_bytes)| Op::Read { at_permille, max_bytes }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (0u16..1000).prop_map(|at_permille| Op::TruncateTo { at_permille }),
        1 => (0u16..1000).prop_map(|at_permille| Op::DeleteRecords { at_permille }),
        1 => (0u32..400_000).prop_map(|keep_bytes| Op::Retention { keep_bytes }),
    ]
}

/// What the log must hold: batches (base, last, bytes) from the log start on.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, i64, Vec<u8>)>,
    log_start_offset: i64,
    log_end_offset: i64,
    durable_offset: i64,
}

impl Model {
    fn offset_at(&self, permille: u16) -> i64 {
        self.log_start_offset
            + (self.log_end_offset - self.log_start_offset) * i64::from(permille) / 1000
    }

    fn visible(&self) -> Vec<Vec<u8>> {
        self.batches
            .iter()
            .filter(|(_, last, _)| *last >= self.log_start_offset)
            .map(|(_, _, bytes)| bytes.clone())
            .collect()
    }
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 2048,
        preallocate_bytes: 256 * 1024,
        retention_ms: None,
        // Small writes and large writes both happen with the model's record-set sizes.
        write_chunk_bytes: 4096,
        write_large_max_bytes: 16 * 1024,
        ..LogConfig::default()
    }
}

async fn check(log: &PartitionLog, model: &Model, step: usize) {
    assert_eq!(
        log.log_end_offset(),
        model.log_end_offset,
        "step {step}: end offset"
    );
    assert_eq!(
        log.log_start_offset(),
        model.log_start_offset,
        "step {step}: start offset"
    );
    assert!(log.high_watermark() <= log.log_end_offset());
    let stored = read_all(log, model.log_start_offset, 64 * 1024).await;
    assert_batches_eq(&stored, &model.visible(), &format!("step {step}"));
}

async fn run_ops(dir: std::path::PathBuf, segment_bytes: u64, ops: Vec<Op>) {
    let mut log: Rc<PartitionLog> = open(&dir, config(segment_bytes)).await;
    let mut model = Model::default();
    let mut seed = 0u64;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append {
                batches,
                records,
                payload_bytes,
            } => {
                let mut set = Vec::new();
                let mut parts = Vec::new();
                for _ in 0..batches {
                    seed += 1;
                    let one = make_batch(
                        seed,
                        i32::from(records),
                        usize::from(payload_bytes),
                        seed as i64,
                    );
                    parts.push(one.clone());
                    set.extend_from_slice(&one);
                }
                let info = append(&log, &set).await;
                assert_eq!(info.base_offset, model.log_end_offset);
                let mut base = info.base_offset;
                for part in parts {
                    let last = base + i64::from(records) - 1;
                    model.batches.push((base, last, assigned(&part, base, 0)));
                    base = last + 1;
                }
                model.log_end_offset = base;
                assert_eq!(info.last_offset + 1, base);
            }
            Op::AppendDurable { payload_bytes } => {
                seed += 1;
                let one = make_batch(seed, 1, usize::from(payload_bytes), seed as i64);
                let info = append(&log, &one).await;
                log.wait_durable(info.last_offset + 1).await.unwrap();
                model.batches.push((
                    info.base_offset,
                    info.last_offset,
                    assigned(&one, info.base_offset, 0),
                ));
                model.log_end_offset = info.last_offset + 1;
                model.durable_offset = model.log_end_offset;
            }
            Op::Read {
                at_permille,
                max_bytes,
            } => {
                let offset = model.offset_at(at_permille);
                let data = log
                    .read(
                        offset,
                        ReadLimits {
                            end_offset_exclusive: model.log_end_offset,
                            max_bytes: max_bytes as usize,
                        },
                    )
                    .await
                    .unwrap();
                if offset < model.log_end_offset {
                    let first = batch::validate(&data.batches[0]).unwrap();
                    assert!(
                        first.base_offset.get() <= offset && offset <= first.last_offset(),
                        "step {step}"
                    );
                    let size: usize = data.batches.iter().map(|b| b.len()).sum();
                    assert!(
                        data.batches.len() == 1 || size <= max_bytes as usize,
                        "step {step}: read limit"
                    );
                } else {
                    assert!(data.batches.is_empty());
                }
            }
            Op::Reopen => {
                log.close().await.unwrap();
                drop(log);
                log = open_uncached(&dir, config(segment_bytes)).await;
                model.durable_offset = model.log_end_offset;
            }
            Op::Crash => {
                drop(log);
                // Let writes already handed to the kernel land, as they would after a crash.
                glommio::timer::sleep(Duration::from_millis(5)).await;
                log = open_uncached(&dir, config(segment_bytes)).await;
                let end = log.log_end_offset();
                assert!(
                    end >= model.durable_offset,
                    "step {step}: durable data lost ({end} < {})",
                    model.durable_offset
                );
                assert!(end <= model.log_end_offset);
                // What survived must be a prefix of what was written, at a batch boundary.
                assert!(
                    end == model.log_start_offset.max(0) && model.batches.is_empty()
                        || model.batches.iter().any(|(_, last, _)| last + 1 == end)
                        || end == model.batches.first().map_or(0, |b| b.0)
                );
                model.batches.retain(|(_, last, _)| *last < end);
                model.log_end_offset = end;
                model.log_start_offset = model.log_start_offset.min(end);
                model.durable_offset = end;
            }
            Op::TruncateTo { at_permille } => {
                let offset = model.offset_at(at_permille);
                let end = log.truncate_to(offset).await.unwrap();
                log.set_high_watermark(end);
                model.batches.retain(|(_, last, _)| *last < offset);
                let expected_end = model
                    .batches
                    .last()
                    .map_or(offset.min(model.log_start_offset.max(offset)), |b| b.1 + 1);
                if model.batches.is_empty() {
                    model.log_start_offset = end;
                } else {
                    assert_eq!(end, expected_end, "step {step}: truncate end");
                }
                model.log_end_offset = end;
                model.log_start_offset = model.log_start_offset.min(end);
                model.durable_offset = model.durable_offset.min(end);
            }
            Op::DeleteRecords { at_permille } => {
                let offset = model.offset_at(at_permille);
                let start = log.delete_records(offset).await.unwrap();
                model.log_start_offset = model.log_start_offset.max(offset);
                assert_eq!(start, model.log_start_offset, "step {step}");
            }
            Op::Retention { keep_bytes } => {
                let mut retained = log.config();
                retained.retention_bytes = Some(u64::from(keep_bytes));
                log.set_config(retained);
                log.enforce_retention(ringlog::storage::now_ms())
                    .await
                    .unwrap();
                let mut restored = log.config();
                restored.retention_bytes = None;
                log.set_config(restored);
                let start = log.log_start_offset();
                assert!(start >= model.log_start_offset && start <= model.log_end_offset);
                assert!(
                    start == model.log_start_offset
                        || model.batches.iter().any(|(base, _, _)| *base == start)
                        || start == model.log_end_offset,
                    "step {step}: retention moved the start off a batch boundary"
                );
                model.log_start_offset = start;
                model.batches.retain(|(_, last, _)| *last >= start);
            }
        }
        check(&log, &model, step).await;
    }
    log.close().await.unwrap();
    drop(log);
    let log = open_uncached(&dir, config(segment_bytes)).await;
    check(&log, &model, usize::MAX).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(segment_bytes in prop_oneof![Just(16 * 1024u64), Just(64 * 1024), Just(1 << 20)],
                         ops in proptest::collection::vec(op(), 1..40)) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("model-0");
        run(move || run_ops(dir, segment_bytes, ops));
    }
}
