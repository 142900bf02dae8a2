//! What shards ask each other over the mesh. Every request carries the oneshot its answer
//! travels back on; payloads are `Bytes` and `Arc`s, moved, never copied.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::cluster::{ClusterMetadata, TopicMetadata};
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
        reads: Vec<PartitionRead>,
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
    /// A new metadata snapshot: open, close or reconfigure partitions to match, then answer.
    ApplyMetadata {
        snapshot: Arc<ClusterMetadata>,
        reply: oneshot::Sender<()>,
    },
    /// A metadata change, for shard 0 (the controller).
    Controller {
        op: ControllerOp,
        reply: oneshot::Sender<ControllerReply>,
    },
}

#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub partition: TopicPartition,
    pub offset: i64,
    pub max_bytes: usize,
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
