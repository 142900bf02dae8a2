//! OffsetForLeaderEpoch (v0-4): for each partition, the largest leader epoch at or below the
//! one asked for and the offset where it ended (the log end offset for the latest epoch), read
//! from the log's epoch history on the partition's owner. An epoch older than the history is
//! answered -1/-1, Kafka's UNDEFINED. kafka-protocol knows v2+ only; `legacy` encodes v0-1.

mod legacy;

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset as KafkaEpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::messages::{EpochEndOffset, ShardRequest};
use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::partition::TopicPartition;
use crate::protocol::{codes, RequestFrame};

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let version = request.api_version();
    let body: OffsetForLeaderEpochRequest = if version >= legacy::FIRST_CRATE_VERSION {
        request.decode()?
    } else {
        legacy::decode_request(&request.body)?
    };
    let mut queries = Vec::new();
    for topic in &body.topics {
        for partition in &topic.partitions {
            queries.push((
                TopicPartition::new(topic.topic.0.to_string(), partition.partition),
                partition.leader_epoch,
            ));
        }
    }
    let mut answers = shard.epoch_end_offsets(queries).await.into_iter();
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in &body.topics {
        let mut topic_result = OffsetForLeaderTopicResult::default();
        topic_result.topic = topic.topic.clone();
        for partition in &topic.partitions {
            let answer = answers.next().expect("one answer per partition");
            let mut result = KafkaEpochEndOffset::default();
            result.partition = partition.partition;
            result.error_code = answer.error_code;
            result.leader_epoch = answer.leader_epoch;
            result.end_offset = answer.end_offset;
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    if version >= legacy::FIRST_CRATE_VERSION {
        respond(request, &response)
    } else {
        respond(request, &legacy::Response(response))
    }
}

fn failed(error_code: i16) -> EpochEndOffset {
    EpochEndOffset {
        error_code,
        leader_epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_OFFSET,
    }
}

impl Shard {
    /// Looks up every partition's epoch on its owner; answers in the order asked.
    async fn epoch_end_offsets(
        self: &Rc<Self>,
        queries: Vec<(TopicPartition, i32)>,
    ) -> Vec<EpochEndOffset> {
        self.on_owners(
            queries,
            failed,
            |shard, queries| async move { shard.epoch_end_offsets_local(&queries) },
            |queries, reply| ShardRequest::EpochEndOffsets { queries, reply },
        )
        .await
    }

    /// OffsetForLeaderEpoch on partitions of this shard.
    pub(crate) fn epoch_end_offsets_local(
        &self,
        queries: &[(TopicPartition, i32)],
    ) -> Vec<EpochEndOffset> {
        queries
            .iter()
            .map(|(id, epoch)| match self.partition(id) {
                None => failed(self.absent_partition_code(id)),
                Some(partition) => match partition.log.end_offset_for_epoch(*epoch) {
                    Some((leader_epoch, end_offset)) => EpochEndOffset {
                        error_code: codes::NONE,
                        leader_epoch,
                        end_offset,
                    },
                    None => failed(codes::NONE),
                },
            })
            .collect()
    }
}
