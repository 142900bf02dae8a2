//! CreatePartitions (v0-3): grows a topic on the controller; the new partitions are placed on
//! shards by the allocator and opened there (through the metadata broadcast) before the answer
//! goes out, so a client can produce to them right away. Manual assignments may only name
//! this broker, once per partition.

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::config_resource::Refusal;
use super::messages::ControllerOp;
use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: CreatePartitionsRequest = request.decode()?;
    let mut mentions: HashMap<&str, usize> = HashMap::new();
    for topic in &body.topics {
        *mentions.entry(topic.name.0.as_str()).or_default() += 1;
    }
    let mut response = CreatePartitionsResponse::default();
    for topic in &body.topics {
        let outcome = if mentions[topic.name.0.as_str()] > 1 {
            Err((codes::INVALID_REQUEST, "Duplicate topic in request.".into()))
        } else {
            grow(shard, topic, body.validate_only).await
        };
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        match outcome {
            Ok(()) => result.error_code = codes::NONE,
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        response.results.push(result);
    }
    respond(request, &response)
}

async fn grow(
    shard: &Rc<Shard>,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = topic.name.0.to_string();
    check_assignments(shard, &name, topic)?;
    let op = ControllerOp::CreatePartitions {
        name,
        new_total: topic.count,
        validate_only,
    };
    match shard.controller(op).await.into_topic() {
        Ok(_) => Ok(()),
        Err(error) => Err((error.code, error.message)),
    }
}

/// With one broker and replication factor 1, an assignment must name this broker alone, one
/// per new partition. Counts that do not grow the topic are left to the controller to refuse.
fn check_assignments(
    shard: &Shard,
    name: &str,
    topic: &CreatePartitionsTopic,
) -> Result<(), Refusal> {
    let Some(assignments) = &topic.assignments else {
        return Ok(());
    };
    let current = match shard.metadata().topic(name) {
        Some(existing) => existing.partition_count(),
        None => return Ok(()),
    };
    if topic.count <= current {
        return Ok(());
    }
    let added_count = i64::from(topic.count) - i64::from(current);
    if assignments.len() as i64 != added_count {
        return Err((
            codes::INVALID_REPLICA_ASSIGNMENT,
            format!(
                "Increasing the number of partitions by {added_count} but {} assignments \
                 provided.",
                assignments.len()
            ),
        ));
    }
    let node_id = shard.config.node_id;
    for assignment in assignments {
        match assignment.broker_ids.as_slice() {
            [only] if only.0 == node_id => {}
            [] => {
                return Err((
                    codes::INVALID_REPLICA_ASSIGNMENT,
                    "A partition assignment names no broker.".into(),
                ))
            }
            [_] => {
                let unknown: Vec<String> = assignment
                    .broker_ids
                    .iter()
                    .map(|b| b.0.to_string())
                    .collect();
                return Err((
                    codes::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "Unknown broker(s) in replica assignment: {}.",
                        unknown.join(", ")
                    ),
                ));
            }
            many => {
                return Err((
                    codes::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "Inconsistent replication factor: the topic has 1 replica per \
                         partition, an assignment names {}.",
                        many.len()
                    ),
                ))
            }
        }
    }
    Ok(())
}
