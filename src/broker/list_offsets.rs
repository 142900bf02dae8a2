//! ListOffsets: the earliest (-2), latest (-1) and max-timestamp (-3) offsets of partitions,
//! or the first offset at or after a timestamp, asked of each partition's owner.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::messages::ShardRequest;
use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::partition::{OffsetAnswer, TopicPartition};
use crate::protocol::RequestFrame;

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: ListOffsetsRequest = request.decode()?;
    let mut queries = Vec::new();
    for topic in &body.topics {
        for partition in &topic.partitions {
            queries.push((
                TopicPartition::new(topic.name.0.to_string(), partition.partition_index),
                partition.timestamp,
            ));
        }
    }
    let answers = shard.list_offsets(&queries).await;
    let mut answers = answers.into_iter();
    let mut response = ListOffsetsResponse::default();
    for topic in &body.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name.clone();
        for partition in &topic.partitions {
            let answer = answers.next().expect("one answer per partition");
            let mut entry = ListOffsetsPartitionResponse::default();
            entry.partition_index = partition.partition_index;
            entry.error_code = answer.error_code;
            entry.timestamp = answer.timestamp_ms;
            entry.offset = answer.offset;
            // Leader epochs exist in ListOffsets from v4.
            entry.leader_epoch = if request.api_version() >= 4 {
                answer.leader_epoch
            } else {
                -1
            };
            topic_response.partitions.push(entry);
        }
        response.topics.push(topic_response);
    }
    respond(request, &response)
}

/// A partition and the timestamp asked for.
type OffsetQuery = (TopicPartition, i64);

fn failed(error_code: i16) -> OffsetAnswer {
    OffsetAnswer {
        error_code,
        offset: -1,
        timestamp_ms: -1,
        leader_epoch: -1,
    }
}

impl Shard {
    pub(crate) async fn list_offsets(
        self: &Rc<Self>,
        queries: &[OffsetQuery],
    ) -> Vec<OffsetAnswer> {
        self.on_owners(
            queries.to_vec(),
            failed,
            |shard, queries| async move { shard.list_offsets_local(&queries).await },
            |queries, reply| ShardRequest::ListOffsets { queries, reply },
        )
        .await
    }
}
