//! What shards ask each other over the mesh. Every request carries the oneshot its answer
//! travels back on; payloads are `Bytes` and `Arc`s, moved, never copied.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::cluster::{ClusterMetadata, ConfigChange, TopicMetadata};
use crate::partition::{FetchOutcome, OffsetAnswer, ProduceOutcome, TopicPartition};

pub enum ShardRequest {
    /// Append one partition's record set on its owner.
    Produce {
        partition: TopicPartition,
        records: Bytes,
        acks: i16,
        timeout_ms: u64,
        reply: oneshot::Sender<ProduceOutcome>,
    },
    /// Read several partitions owned by the receiving shard.
    Fetch {
        reads: Vec<(TopicPartition, ReadAt)>,
        reply: oneshot::Sender<Vec<FetchOutcome>>,
    },
    /// Answer once any of these partitions has data past its offset, or after the timeout.
    WaitForData {
        waits: Vec<(TopicPartition, i64)>,
        timeout_ms: u64,
        reply: oneshot::Sender<()>,
    },
    ListOffsets {
        queries: Vec<(TopicPartition, i64)>,
        reply: oneshot::Sender<Vec<OffsetAnswer>>,
    },
    /// DeleteRecords on partitions owned by the receiving shard: move each log start offset.
    DeleteRecords {
        deletions: Vec<(TopicPartition, i64)>,
        reply: oneshot::Sender<Vec<RecordsDeleted>>,
    },
    /// OffsetForLeaderEpoch on partitions owned by the receiving shard.
    EpochEndOffsets {
        queries: Vec<(TopicPartition, i32)>,
        reply: oneshot::Sender<Vec<EpochEndOffset>>,
    },
    /// One of the sender's partitions went offline (`Some(reason)`) or came back (`None`).
    PartitionOffline {
        partition: TopicPartition,
        reason: Option<String>,
    },
    /// A new metadata snapshot: open, close or reconfigure partitions to match, then answer.
    ApplyMetadata {
        snapshot: Arc<ClusterMetadata>,
        reply: oneshot::Sender<()>,
    },
    /// A consumer-group operation for the coordinator of offsets partition
    /// `offsets_partition`, which the receiving shard owns.
    Group {
        offsets_partition: i32,
        op: crate::group::ops::GroupOp,
        reply: oneshot::Sender<crate::group::ops::GroupReply>,
    },
    /// A metadata change, for shard 0 (the controller).
    Controller {
        op: ControllerOp,
        reply: oneshot::Sender<ControllerReply>,
    },
}

/// Where to read a partition from, and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAt {
    pub offset: i64,
    pub max_bytes: usize,
}

/// One partition's answer to DeleteRecords: its new log start offset.
#[derive(Debug, Clone, Copy)]
pub struct RecordsDeleted {
    pub error_code: i16,
    /// -1 with an error.
    pub low_watermark: i64,
}

/// One partition's answer to OffsetForLeaderEpoch; -1/-1 (Kafka's UNDEFINED) for an epoch the
/// log does not know.
#[derive(Debug, Clone, Copy)]
pub struct EpochEndOffset {
    pub error_code: i16,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

#[derive(Debug, Clone)]
pub enum ControllerOp {
    CreateTopic {
        name: String,
        partition_count: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
        validate_only: bool,
    },
    AllocateProducerIds {
        count: u64,
    },
    /// Deletes a topic; with `id`, only if the topic of that name still has this id.
    DeleteTopic {
        name: String,
        id: Option<uuid::Uuid>,
    },
    /// Grows a topic to `new_total` partitions.
    CreatePartitions {
        name: String,
        new_total: i32,
        validate_only: bool,
    },
    /// IncrementalAlterConfigs: the changes apply in order to the topic's overrides.
    AlterConfigs {
        name: String,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    },
    /// AlterConfigs: `all_configs` replaces every override of the topic.
    ReplaceConfigs {
        name: String,
        all_configs: Vec<(String, String)>,
        validate_only: bool,
    },
}

/// A controller failure, as the Kafka error code and message a client gets.
#[derive(Debug, Clone)]
pub struct ControllerError {
    pub code: i16,
    pub message: String,
}

#[derive(Debug)]
pub enum ControllerReply {
    Topic(Result<Arc<TopicMetadata>, ControllerError>),
    ProducerIds(Result<Range<i64>, ControllerError>),
}

impl ControllerReply {
    /// The outcome of a topic operation; a reply of another kind (the controller failing
    /// before it ran the operation) counts as its error.
    pub fn into_topic(self) -> Result<Arc<TopicMetadata>, ControllerError> {
        match self {
            ControllerReply::Topic(result) => result,
            ControllerReply::ProducerIds(Err(error)) => Err(error),
            ControllerReply::ProducerIds(Ok(_)) => Err(ControllerError {
                code: crate::protocol::codes::UNKNOWN_SERVER_ERROR,
                message: "the controller answered a topic operation with producer ids".into(),
            }),
        }
    }
}
