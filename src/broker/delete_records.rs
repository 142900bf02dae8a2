//! DeleteRecords (v0-2): moves each partition's log start offset (its low watermark) up to an
//! offset, on the shard that owns the partition; offset -1 means the high watermark. The log
//! makes the move durable and drops the segments wholly below it.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::messages::{RecordsDeleted, ShardRequest};
use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::partition::TopicPartition;
use crate::protocol::{codes, RequestFrame};

/// Kafka's DeleteRecords offset meaning "up to the high watermark".
const HIGH_WATERMARK_OFFSET: i64 = -1;

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: DeleteRecordsRequest = request.decode()?;
    let mut deletions = Vec::new();
    for topic in &body.topics {
        for partition in &topic.partitions {
            deletions.push((
                TopicPartition::new(topic.name.0.to_string(), partition.partition_index),
                partition.offset,
            ));
        }
    }
    let mut answers = shard.delete_records(deletions).await.into_iter();
    let mut response = DeleteRecordsResponse::default();
    for topic in &body.topics {
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name.clone();
        for partition in &topic.partitions {
            let answer = answers.next().expect("one answer per partition");
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = partition.partition_index;
            result.error_code = answer.error_code;
            result.low_watermark = answer.low_watermark;
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    respond(request, &response)
}

fn failed(error_code: i16) -> RecordsDeleted {
    RecordsDeleted {
        error_code,
        low_watermark: -1,
    }
}

impl Shard {
    /// Deletes records on every partition's owner; answers in the order asked.
    async fn delete_records(
        self: &Rc<Self>,
        deletions: Vec<(TopicPartition, i64)>,
    ) -> Vec<RecordsDeleted> {
        self.on_owners(
            deletions,
            failed,
            |shard, deletions| async move { shard.delete_records_local(deletions).await },
            |deletions, reply| ShardRequest::DeleteRecords { deletions, reply },
        )
        .await
    }

    /// DeleteRecords on partitions of this shard, one after another.
    pub(crate) async fn delete_records_local(
        &self,
        deletions: Vec<(TopicPartition, i64)>,
    ) -> Vec<RecordsDeleted> {
        let mut answers = Vec::with_capacity(deletions.len());
        for (id, offset) in deletions {
            let Some(partition) = self.partition(&id) else {
                answers.push(failed(self.absent_partition_code(&id)));
                continue;
            };
            let offset = match offset {
                HIGH_WATERMARK_OFFSET => partition.log.high_watermark(),
                offset if offset < 0 => {
                    answers.push(failed(codes::OFFSET_OUT_OF_RANGE));
                    continue;
                }
                offset => offset,
            };
            answers.push(match partition.log.delete_records(offset).await {
                Ok(low_watermark) => RecordsDeleted {
                    error_code: codes::NONE,
                    low_watermark,
                },
                Err(error) => failed(codes::storage_error_code(&error)),
            });
        }
        answers
    }
}
