//! A partition as the broker serves it, owned by one shard: its log, the idempotent-producer
//! state, and a signal for fetches waiting on new data. Translates storage outcomes into what
//! Produce and Fetch answer; never parses requests and never crosses shards.

pub mod producer_state;

use std::cell::{Cell, RefCell};

use std::rc::Rc;
use std::time::Duration;

use crate::storage::fifo_lock::FifoLock;
use bytes::{Bytes, BytesMut};

use crate::protocol::codes;

/// ListOffsets' special timestamps.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
use crate::storage::notify::Notify;
use crate::storage::{batch, PartitionLog, ReadData, ReadLimits, StorageError};
use producer_state::{ProducerStateConfig, ProducerStateTable, SequenceCheck};

/// A partition's place: topic name and index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The partition's directory name under the data directory, as Kafka names it.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// The answer to one partition's part of a Produce request.
#[derive(Debug, Clone)]
pub struct ProduceOutcome {
    pub error_code: i16,
    pub error_message: Option<String>,
    /// KIP-467: the records (by index in the record set) that made the batch invalid, each
    /// with why; clients report them record by record.
    pub record_errors: Vec<(i32, String)>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

impl ProduceOutcome {
    pub fn error(error_code: i16, message: impl Into<String>) -> Self {
        ProduceOutcome {
            error_code,
            error_message: Some(message.into()),
            record_errors: Vec::new(),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

/// The answer to one partition's part of a ListOffsets request.
#[derive(Debug, Clone, Copy, Default)]
pub struct OffsetAnswer {
    pub error_code: i16,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub leader_epoch: i32,
}

/// The answer to one partition's part of a Fetch request.
#[derive(Debug, Clone, Default)]
pub struct FetchOutcome {
    pub error_code: i16,
    pub data: ReadData,
}

pub struct Partition {
    pub id: TopicPartition,
    pub log: Rc<PartitionLog>,
    /// Serialises the check-append-record sequence of idempotent produces: clients pipeline
    /// several requests, and a check between another batch's check and record would see a gap.
    produce_lock: FifoLock,
    producers: RefCell<ProducerStateTable>,
    /// Batches appended since the last producer-state snapshot.
    batches_since_snapshot: Cell<u64>,
    /// Signalled whenever the high watermark moves.
    data_arrived: Notify,
    leader_epoch: i32,
}

/// The producer-state snapshot file in a partition's directory.
const PRODUCER_SNAPSHOT_FILE: &str = "producer.snapshot";
/// A new snapshot after this many appended batches, so recovery after a crash replays little.
const SNAPSHOT_EVERY_BATCHES: u64 = 10_000;
/// Bytes read per step when replaying batch headers into the producer state.
const REPLAY_READ_BYTES: usize = 1024 * 1024;

impl Partition {
    /// Wraps an opened log, restoring its idempotent-producer state from the last snapshot
    /// plus the batch headers after it.
    pub async fn open(
        id: TopicPartition,
        log: Rc<PartitionLog>,
        config: ProducerStateConfig,
    ) -> Rc<Self> {
        let producers = restore_producers(&log, config).await;
        Rc::new(Partition {
            id,
            log,
            produce_lock: FifoLock::default(),
            producers: RefCell::new(producers),
            batches_since_snapshot: Cell::new(0),
            data_arrived: Notify::default(),
            leader_epoch: 0,
        })
    }

    /// Appends one Produce record set and answers per `acks` (0 and 1: once appended; -1: once
    /// durable, at most `timeout`).
    pub async fn produce(&self, records: Bytes, acks: i16, timeout: Duration) -> ProduceOutcome {
        let records = records
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        // Appends happen in the order requests reached the partition: a pipelining producer
        // relies on it, and an idempotent one would see its sequence numbers out of order.
        if self.log.config().keys_required {
            match batch::keyless_records(&records) {
                Ok(keyless) if keyless.is_empty() => {}
                Ok(keyless) => return keyless_refused(&self.id, keyless),
                Err(reason) => return ProduceOutcome::error(codes::CORRUPT_MESSAGE, reason),
            }
        }
        let permit = self.produce_lock.lock().await;
        let now = crate::storage::now_ms();
        let header_bytes = match self.check_producer(&records, now) {
            Err(outcome) => return outcome,
            Ok(ProducerVerdict::Duplicate(outcome)) => return outcome,
            Ok(ProducerVerdict::Append { header }) => header,
        };
        let info = match self.log.append(records, self.leader_epoch).await {
            Ok(info) => info,
            Err(error) => return storage_outcome(&error),
        };
        crate::metrics::topic_produced(&self.id.topic, info.records_count, info.size_bytes);
        if let Some(mut bytes) = header_bytes {
            if let Some(append_time_ms) = info.log_append_time_ms {
                // A retry is answered with the batch's timestamp as stored.
                batch::peek_header_mut(&mut bytes)
                    .expect("checked before the append")
                    .stamp_log_append_time(append_time_ms);
            }
            let header = batch::peek_header(&bytes).expect("checked before the append");
            self.producers
                .borrow_mut()
                .record(header, info.base_offset, now);
        }
        self.batches_since_snapshot
            .set(self.batches_since_snapshot.get() + info.batch_count as u64);
        drop(permit);
        self.log.set_high_watermark(self.log.log_end_offset());
        self.data_arrived.notify_all();
        if acks == -1 {
            let durable = glommio::timer::timeout(timeout, async {
                Ok(self.log.wait_durable(info.last_offset + 1).await)
            })
            .await;
            match durable {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return storage_outcome(&error),
                Err(_) => {
                    return ProduceOutcome::error(
                        codes::REQUEST_TIMED_OUT,
                        "not durable within the request timeout",
                    )
                }
            }
        }
        ProduceOutcome {
            error_code: codes::NONE,
            error_message: None,
            record_errors: Vec::new(),
            base_offset: info.base_offset,
            log_append_time_ms: info.log_append_time_ms.unwrap_or(-1),
            log_start_offset: info.log_start_offset,
        }
    }

    /// Checks a record set before it is appended: control batches are the broker's own, and an
    /// idempotent producer's batch must be next in its sequence or a retry of a recent one.
    fn check_producer(
        &self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<ProducerVerdict, ProduceOutcome> {
        let header = batch::peek_header(records)
            .map_err(|e| ProduceOutcome::error(codes::CORRUPT_MESSAGE, e.to_string()))?;
        if header.is_control() {
            return Err(ProduceOutcome::error(
                codes::INVALID_RECORD,
                "clients may not write control batches",
            ));
        }
        if header.producer_id.get() < 0 {
            return Ok(ProducerVerdict::Append { header: None });
        }
        if header.size_bytes() != records.len() {
            return Err(ProduceOutcome::error(
                codes::INVALID_RECORD,
                "an idempotent produce carries exactly one record batch",
            ));
        }
        match self.producers.borrow().check(header, now_ms) {
            Ok(SequenceCheck::Append) => Ok(ProducerVerdict::Append {
                header: Some(records[..batch::BATCH_HEADER_SIZE_BYTES].to_vec()),
            }),
            Ok(SequenceCheck::Duplicate {
                base_offset,
                timestamp_ms,
                ..
            }) => {
                Ok(ProducerVerdict::Duplicate(ProduceOutcome {
                    error_code: codes::NONE,
                    error_message: None,
                    record_errors: Vec::new(),
                    base_offset,
                    // Kafka answers a retry with the stored batch's timestamp when the topic
                    // stamps append times, and -1 otherwise.
                    log_append_time_ms: if self.log.config().log_append_time {
                        timestamp_ms
                    } else {
                        -1
                    },
                    log_start_offset: self.log.log_start_offset(),
                }))
            }
            Err(error) => Err(ProduceOutcome::error(error.kafka_code(), error.to_string())),
        }
    }

    /// Housekeeping: forget idle producers and snapshot their state now and then.
    pub async fn tick(&self, now_ms: i64) {
        self.producers.borrow_mut().expire(now_ms);
        if self.batches_since_snapshot.get() >= SNAPSHOT_EVERY_BATCHES {
            self.write_producer_snapshot().await;
        }
    }

    /// Writes the producer state as of the log end, so a restart replays nothing before it.
    pub async fn write_producer_snapshot(&self) {
        let bytes = {
            let mut producers = self.producers.borrow_mut();
            producers.remove_before(self.log.log_end_offset());
            producers.snapshot()
        };
        self.batches_since_snapshot.set(0);
        let path = self.log.dir().join(PRODUCER_SNAPSHOT_FILE);
        if let Err(error) = crate::storage::file::write_file_atomic(&path, bytes).await {
            tracing::warn!(partition = %self.id.dir_name(), %error, "cannot write the producer snapshot");
        }
    }

    /// Flushes the log and snapshots the producer state, for a clean shutdown.
    pub async fn close(&self) -> Result<(), StorageError> {
        let result = self.log.close().await;
        self.write_producer_snapshot().await;
        result
    }

    /// Reads from `offset` up to the high watermark.
    pub async fn fetch(&self, offset: i64, max_bytes: usize) -> FetchOutcome {
        let limits = ReadLimits {
            end_offset_exclusive: self.log.high_watermark(),
            max_bytes,
        };
        match self.log.read(offset, limits).await {
            Ok(data) => FetchOutcome {
                error_code: codes::NONE,
                data,
            },
            Err(error) => FetchOutcome {
                error_code: codes::storage_error_code(&error),
                data: ReadData {
                    high_watermark: self.log.high_watermark(),
                    log_start_offset: self.log.log_start_offset(),
                    log_end_offset: self.log.log_end_offset(),
                    batches: Vec::new(),
                },
            },
        }
    }

    /// ListOffsets for one partition: -2 earliest, -1 latest, -3 the batch with the largest
    /// timestamp, else the first batch at or after the timestamp.
    pub async fn list_offset(&self, timestamp_ms: i64) -> OffsetAnswer {
        let answer = |offset: i64, timestamp_ms: i64| OffsetAnswer {
            error_code: codes::NONE,
            offset,
            timestamp_ms,
            leader_epoch: self.leader_epoch,
        };
        let found = match timestamp_ms {
            LATEST_TIMESTAMP => return answer(self.log.high_watermark(), -1),
            EARLIEST_TIMESTAMP => return answer(self.log.log_start_offset(), -1),
            MAX_TIMESTAMP => match self.log.max_timestamp_ms() {
                Some(max) => self.log.find_offset_by_timestamp(max).await,
                None => return answer(-1, -1),
            },
            timestamp => self.log.find_offset_by_timestamp(timestamp).await,
        };
        match found {
            Ok(Some((offset, timestamp))) if offset < self.log.high_watermark() => {
                answer(offset, timestamp)
            }
            Ok(_) => answer(-1, -1),
            Err(error) => OffsetAnswer {
                error_code: codes::storage_error_code(&error),
                offset: -1,
                timestamp_ms: -1,
                leader_epoch: -1,
            },
        }
    }

    /// Waits until the high watermark passes `offset`, at most `timeout`.
    pub async fn wait_for_data(&self, offset: i64, timeout: Duration) {
        let _ = glommio::timer::timeout(timeout, async {
            self.data_arrived
                .wait_for(|| (self.log.high_watermark() > offset).then_some(()))
                .await;
            Ok(())
        })
        .await;
    }
}

enum ProducerVerdict {
    /// Append; for an idempotent batch, its header bytes to record afterwards.
    Append {
        header: Option<Vec<u8>>,
    },
    Duplicate(ProduceOutcome),
}

/// The producer state as of the log end: the snapshot, then every batch header after it.
async fn restore_producers(log: &PartitionLog, config: ProducerStateConfig) -> ProducerStateTable {
    let path = log.dir().join(PRODUCER_SNAPSHOT_FILE);
    let mut producers = match crate::storage::file::read_small_file(&path).await {
        Ok(Some(bytes)) => ProducerStateTable::from_snapshot_with_config(&bytes, config).unwrap_or_else(|error| {
            tracing::warn!(path = %path.display(), %error, "ignoring a damaged producer snapshot");
            ProducerStateTable::new(config)
        }),
        Ok(None) => ProducerStateTable::new(config),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the producer snapshot");
            ProducerStateTable::new(config)
        }
    };
    let end = log.log_end_offset();
    if producers.snapshot_offset() > end {
        producers.truncate_to(end);
    }
    let mut offset = producers.snapshot_offset().max(log.log_start_offset());
    while offset < end {
        let limits = ReadLimits {
            end_offset_exclusive: end,
            max_bytes: REPLAY_READ_BYTES,
        };
        let batches = match log.read(offset, limits).await {
            Ok(data) if !data.batches.is_empty() => data.batches,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(dir = %log.dir().display(), %error, "producer state replay stopped early");
                break;
            }
        };
        for bytes in batches {
            let Ok(header) = batch::peek_header(&bytes) else {
                break;
            };
            if header.last_offset() >= offset {
                producers.rebuild_from(header, header.base_offset.get());
                offset = header.last_offset() + 1;
            }
        }
    }
    producers.expire(crate::storage::now_ms());
    producers
}

/// Kafka's answer to records without a key on a compacted topic: INVALID_RECORD for the whole
/// batch, with each offending record named.
fn keyless_refused(id: &TopicPartition, keyless: Vec<i32>) -> ProduceOutcome {
    const MESSAGE: &str = "Compacted topic cannot accept message without key.";
    let mut outcome = ProduceOutcome::error(
        codes::INVALID_RECORD,
        format!(
            "One or more records have been rejected: {} record(s) without a key for compacted topic partition {}",
            keyless.len(),
            id.dir_name()
        ),
    );
    outcome.record_errors = keyless
        .into_iter()
        .map(|index| (index, MESSAGE.to_string()))
        .collect();
    outcome
}

fn storage_outcome(error: &StorageError) -> ProduceOutcome {
    ProduceOutcome::error(codes::storage_error_code(error), error.to_string())
}
