//! OffsetCommit, OffsetFetch and OffsetDelete: committed offsets of a group, kept by the
//! group's coordinator. A commit for a partition that does not exist is refused here, before
//! it reaches the coordinator, as Kafka does.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Shard};
use crate::group::ops::{self, CommitOffset, FetchedOffset, GroupOp, GroupReply};
use crate::net::connection::Outcome;
use crate::partition::TopicPartition;
use crate::protocol::{codes, RequestFrame};

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub async fn commit(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: OffsetCommitRequest = request.decode()?;
    let version = request.api_version();
    let mut answers: Vec<(TopicPartition, i16)> = Vec::new();
    let mut offsets = Vec::new();
    let mut places = Vec::new();
    for topic in &body.topics {
        for partition in &topic.partitions {
            let id = TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
            let code = match shard.owner_of(&id) {
                Ok(_) => {
                    places.push(answers.len());
                    offsets.push((
                        id.clone(),
                        CommitOffset {
                            offset: partition.committed_offset,
                            leader_epoch: if version >= 6 {
                                partition.committed_leader_epoch
                            } else {
                                -1
                            },
                            metadata: partition
                                .committed_metadata
                                .as_ref()
                                .map(|m| m.to_string())
                                .unwrap_or_default(),
                        },
                    ));
                    codes::NONE
                }
                Err(code) => code,
            };
            answers.push((id, code));
        }
    }
    if !offsets.is_empty() {
        let op = GroupOp::Commit(ops::CommitRequest {
            group_id: body.group_id.0.to_string(),
            generation_id: body.generation_id_or_member_epoch,
            member_id: body.member_id.to_string(),
            group_instance_id: body.group_instance_id.as_ref().map(|s| s.to_string()),
            offsets,
        });
        let codes_out = match shard.group_call(op).await {
            GroupReply::Commit(codes_out) => codes_out,
            _ => Vec::new(),
        };
        for (place, code) in places.iter().zip(
            codes_out
                .into_iter()
                .chain(std::iter::repeat(codes::UNKNOWN_SERVER_ERROR)),
        ) {
            answers[*place].1 = code;
        }
    }
    let mut by_topic: BTreeMap<String, Vec<OffsetCommitResponsePartition>> = BTreeMap::new();
    for (id, code) in answers {
        let mut partition = OffsetCommitResponsePartition::default();
        partition.partition_index = id.partition;
        partition.error_code = code;
        by_topic.entry(id.topic).or_default().push(partition);
    }
    let mut response = OffsetCommitResponse::default();
    response.topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = OffsetCommitResponseTopic::default();
            topic.name = topic_name(&name);
            topic.partitions = partitions;
            topic
        })
        .collect();
    respond(request, &response)
}

/// One group's part of an OffsetFetch: every committed offset, or those of `partitions`.
async fn fetch_group(
    shard: &Rc<Shard>,
    group_id: String,
    partitions: Option<Vec<TopicPartition>>,
) -> ops::OffsetFetchResponse {
    match shard
        .group_call(GroupOp::FetchOffsets {
            group_id,
            partitions,
        })
        .await
    {
        GroupReply::FetchOffsets(reply) => reply,
        _ => ops::OffsetFetchResponse {
            error_code: codes::UNKNOWN_SERVER_ERROR,
            offsets: Vec::new(),
        },
    }
}

/// The partitions an OffsetFetch names, from its (topic, partition indexes) pairs; v8 and
/// the versions before it carry them in different types.
fn requested<'a>(topics: impl Iterator<Item = (&'a TopicName, &'a [i32])>) -> Vec<TopicPartition> {
    topics
        .flat_map(|(name, indexes)| {
            indexes
                .iter()
                .map(move |p| TopicPartition::new(name.0.to_string(), *p))
        })
        .collect()
}

fn by_topic(offsets: Vec<FetchedOffset>) -> BTreeMap<String, Vec<FetchedOffset>> {
    let mut topics: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
    for offset in offsets {
        topics
            .entry(offset.partition.topic.clone())
            .or_default()
            .push(offset);
    }
    topics
}

pub async fn fetch(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: OffsetFetchRequest = request.decode()?;
    let version = request.api_version();
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in &body.groups {
            let partitions = group.topics.as_ref().map(|topics| {
                requested(
                    topics
                        .iter()
                        .map(|t| (&t.name, t.partition_indexes.as_slice())),
                )
            });
            let reply = fetch_group(shard, group.group_id.0.to_string(), partitions).await;
            let mut answer = OffsetFetchResponseGroup::default();
            answer.group_id = GroupId(group.group_id.0.clone());
            answer.error_code = reply.error_code;
            answer.topics = by_topic(reply.offsets)
                .into_iter()
                .map(|(name, offsets)| {
                    let mut topic = OffsetFetchResponseTopics::default();
                    topic.name = topic_name(&name);
                    topic.partitions = offsets
                        .into_iter()
                        .map(|o| {
                            let mut p = OffsetFetchResponsePartitions::default();
                            p.partition_index = o.partition.partition;
                            p.committed_offset = o.offset;
                            p.committed_leader_epoch = o.leader_epoch;
                            p.metadata = Some(StrBytes::from_string(o.metadata));
                            p.error_code = o.error_code;
                            p
                        })
                        .collect();
                    topic
                })
                .collect();
            response.groups.push(answer);
        }
        return respond(request, &response);
    }
    let partitions = body.topics.as_ref().map(|topics| {
        requested(
            topics
                .iter()
                .map(|t| (&t.name, t.partition_indexes.as_slice())),
        )
    });
    let reply = fetch_group(shard, body.group_id.0.to_string(), partitions).await;
    if version >= 2 {
        response.error_code = reply.error_code;
    }
    response.topics = by_topic(reply.offsets)
        .into_iter()
        .map(|(name, offsets)| {
            let mut topic = OffsetFetchResponseTopic::default();
            topic.name = topic_name(&name);
            topic.partitions = offsets
                .into_iter()
                .map(|o| {
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = o.partition.partition;
                    p.committed_offset = o.offset;
                    if version >= 5 {
                        p.committed_leader_epoch = o.leader_epoch;
                    }
                    p.metadata = Some(StrBytes::from_string(o.metadata));
                    // Before v2 a group-level failure shows on every partition.
                    p.error_code = if version < 2 && reply.error_code != codes::NONE {
                        reply.error_code
                    } else {
                        o.error_code
                    };
                    p
                })
                .collect();
            topic
        })
        .collect();
    respond(request, &response)
}

pub async fn delete(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: OffsetDeleteRequest = request.decode()?;
    let partitions: Vec<TopicPartition> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let op = GroupOp::DeleteOffsets {
        group_id: body.group_id.0.to_string(),
        partitions: partitions.clone(),
    };
    let (group_code, codes_out) = match shard.group_call(op).await {
        GroupReply::DeleteOffsets(code, codes_out) => (code, codes_out),
        _ => (codes::UNKNOWN_SERVER_ERROR, Vec::new()),
    };
    let mut response = OffsetDeleteResponse::default();
    response.error_code = group_code;
    if group_code == codes::NONE {
        let mut topics: BTreeMap<String, Vec<OffsetDeleteResponsePartition>> = BTreeMap::new();
        for (id, code) in partitions.into_iter().zip(codes_out) {
            let mut partition = OffsetDeleteResponsePartition::default();
            partition.partition_index = id.partition;
            partition.error_code = code;
            topics.entry(id.topic).or_default().push(partition);
        }
        response.topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = OffsetDeleteResponseTopic::default();
                topic.name = topic_name(&name);
                topic.partitions = partitions;
                topic
            })
            .collect();
    }
    respond(request, &response)
}
