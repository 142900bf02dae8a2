//! A partition as the broker serves it, owned by one shard: its log, the idempotent-producer
//! state, and a signal for fetches waiting on new data. Translates storage outcomes into what
//! Produce and Fetch answer; never parses requests and never crosses shards.

pub mod producer_state;

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;

use crate::protocol::codes;

/// ListOffsets' special timestamps.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
use crate::storage::notify::Notify;
use crate::storage::{batch, PartitionLog, ReadData, ReadLimits, StorageError};

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
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

impl ProduceOutcome {
    pub fn error(error_code: i16, message: impl Into<String>) -> Self {
        ProduceOutcome {
            error_code,
            error_message: Some(message.into()),
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
    /// Serialises the check-append-record sequence of idempotent produces.
    produce_lock: Semaphore,
    /// Signalled whenever the high watermark moves.
    data_arrived: Notify,
    leader_epoch: i32,
}

impl Partition {
    pub fn new(id: TopicPartition, log: Rc<PartitionLog>) -> Rc<Self> {
        Rc::new(Partition {
            id,
            log,
            produce_lock: Semaphore::new(1),
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
        let permit = match self.produce_lock.acquire_permit(1).await {
            Ok(permit) => permit,
            Err(_) => {
                return ProduceOutcome::error(codes::NOT_LEADER_OR_FOLLOWER, "partition is closing")
            }
        };
        let check = self.check_producer(&records);
        let info = match check {
            Err(outcome) => return outcome,
            Ok(Some(duplicate)) => return duplicate,
            Ok(None) => match self.log.append(records, self.leader_epoch).await {
                Ok(info) => info,
                Err(error) => return storage_outcome(&error),
            },
        };
        self.record_producer(&info);
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
            base_offset: info.base_offset,
            log_append_time_ms: -1,
            log_start_offset: info.log_start_offset,
        }
    }

    /// Idempotence check before an append: `Ok(None)` to append, `Ok(Some(..))` for a retried
    /// batch already in the log (answered with its original offsets), `Err` to refuse.
    fn check_producer(&self, records: &[u8]) -> Result<Option<ProduceOutcome>, ProduceOutcome> {
        let header = batch::peek_header(records)
            .map_err(|e| ProduceOutcome::error(codes::CORRUPT_MESSAGE, e.to_string()))?;
        if header.producer_id.get() < 0 {
            return Ok(None);
        }
        Ok(None)
    }

    fn record_producer(&self, _info: &crate::storage::AppendInfo) {}

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

fn storage_outcome(error: &StorageError) -> ProduceOutcome {
    ProduceOutcome::error(codes::storage_error_code(error), error.to_string())
}
