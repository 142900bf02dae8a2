//! Metadata: the broker, the cluster id and the topics with their partitions. Unknown topics
//! are created on first use when the client allows it and `auto.create.topics.enable` is on.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::messages::{ControllerOp, ControllerReply};
use super::{respond, Shard};
use crate::cluster::TopicMetadata;
use crate::net::connection::Outcome;
use crate::partition::TopicPartition;
use crate::protocol::{codes, RequestFrame};

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// What Kafka reports without an authorizer: every topic operation...
const TOPIC_OPERATIONS_ALL: i32 = 3576;
/// ...and every cluster operation.
const CLUSTER_OPERATIONS_ALL: i32 = 8096;

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: MetadataRequest = request.decode()?;
    let version = request.api_version();
    // v0 asks for every topic with an empty list; later versions with null.
    let wanted: Option<Vec<(Option<String>, uuid::Uuid)>> = match body.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
    };
    let auto_create =
        shard.config.auto_create_topics_enable && (version < 4 || body.allow_auto_topic_creation);
    let topic_operations = if version >= 8 && body.include_topic_authorized_operations {
        TOPIC_OPERATIONS_ALL
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let mut topics = Vec::new();
    match wanted {
        None => {
            let metadata = shard.metadata();
            for topic in metadata.topics.values() {
                topics.push(topic_entry(shard, topic));
            }
        }
        Some(wanted) => {
            for (name, id) in wanted {
                topics.push(lookup(shard, name, id, auto_create).await);
            }
        }
    }
    for topic in &mut topics {
        if topic.error_code == codes::NONE {
            topic.topic_authorized_operations = topic_operations;
        }
    }
    let metadata = shard.metadata();
    let mut response = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(shard.config.node_id);
    broker.host = StrBytes::from_string(shard.config.advertised_host.clone());
    broker.port = shard.config.advertised_port;
    response.brokers = vec![broker];
    response.cluster_id = Some(StrBytes::from_string(metadata.cluster_id.clone()));
    response.controller_id = BrokerId(shard.config.node_id);
    response.topics = topics;
    response.cluster_authorized_operations =
        if (8..=10).contains(&version) && body.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS_ALL
        } else {
            OPERATIONS_NOT_REQUESTED
        };
    respond(request, &response)
}

async fn lookup(
    shard: &Rc<Shard>,
    name: Option<String>,
    id: uuid::Uuid,
    auto_create: bool,
) -> MetadataResponseTopic {
    let metadata = shard.metadata();
    let Some(name) = name else {
        return match metadata.topic_by_id(&id) {
            Some(topic) => topic_entry(shard, topic),
            None => error_entry(None, id, codes::UNKNOWN_TOPIC_ID),
        };
    };
    if let Some(topic) = metadata.topics.get(&name) {
        return topic_entry(shard, topic);
    }
    if !auto_create {
        return error_entry(Some(name), id, codes::UNKNOWN_TOPIC_OR_PARTITION);
    }
    match create(shard, &name).await {
        Ok(topic) => topic_entry(shard, &topic),
        Err(code) => error_entry(Some(name), id, code),
    }
}

/// Creates a topic with the broker defaults; a concurrent creation of the same topic counts as
/// success.
pub async fn create(shard: &Rc<Shard>, name: &str) -> Result<Arc<TopicMetadata>, i16> {
    if name == crate::group::OFFSETS_TOPIC {
        return shard.offsets_topic().await;
    }
    create_with(shard, name, shard.config.num_partitions, Vec::new()).await
}

/// Creates a topic with `partition_count` partitions and these config overrides; a concurrent
/// creation of the same topic counts as success.
pub async fn create_with(
    shard: &Rc<Shard>,
    name: &str,
    partition_count: i32,
    configs: Vec<(String, String)>,
) -> Result<Arc<TopicMetadata>, i16> {
    let reply = shard
        .controller(ControllerOp::CreateTopic {
            name: name.to_string(),
            partition_count,
            replication_factor: -1,
            configs,
            validate_only: false,
        })
        .await;
    match reply {
        ControllerReply::Topic(Ok(topic)) => Ok(topic),
        ControllerReply::Topic(Err(error)) if error.code == codes::TOPIC_ALREADY_EXISTS => shard
            .metadata()
            .topics
            .get(name)
            .cloned()
            .ok_or(codes::LEADER_NOT_AVAILABLE),
        ControllerReply::Topic(Err(error)) => Err(error.code),
        ControllerReply::ProducerIds(_) => Err(codes::LEADER_NOT_AVAILABLE),
    }
}

fn error_entry(name: Option<String>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    let mut entry = MetadataResponseTopic::default();
    entry.error_code = code;
    entry.name = name.map(|n| TopicName(StrBytes::from_string(n)));
    entry.topic_id = id;
    entry.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
    entry
}

fn topic_entry(shard: &Shard, topic: &TopicMetadata) -> MetadataResponseTopic {
    let node = BrokerId(shard.config.node_id);
    let mut entry = MetadataResponseTopic::default();
    entry.error_code = codes::NONE;
    entry.name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    entry.topic_id = topic.id;
    entry.is_internal = topic.is_internal;
    entry.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
    entry.partitions = (0..topic.partitions.len())
        .map(|index| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index as i32;
            partition.leader_epoch = 0;
            partition.replica_nodes = vec![node];
            let id = TopicPartition::new(topic.name.clone(), index as i32);
            if shard.offline_reason(&id).is_some() {
                // As Kafka answers a partition whose only replica's log directory failed.
                partition.error_code = codes::LEADER_NOT_AVAILABLE;
                partition.leader_id = BrokerId(-1);
                partition.offline_replicas = vec![node];
            } else {
                partition.error_code = codes::NONE;
                partition.leader_id = node;
                partition.isr_nodes = vec![node];
            }
            partition
        })
        .collect();
    entry
}
