//! CreateTopics: validated and persisted by the controller (shard 0), applied on every shard
//! before the answer goes out, so a client can produce to the topic right away.

use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::config_resource::non_null_configs;
use super::messages::{ControllerOp, ControllerReply};
use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: CreateTopicsRequest = request.decode()?;
    let mut response = CreateTopicsResponse::default();
    for topic in &body.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        let configs = non_null_configs(topic.configs.iter().map(|c| (&c.name, &c.value)));
        let partition_count = if topic.assignments.is_empty() {
            topic.num_partitions
        } else {
            topic.assignments.len() as i32
        };
        let reply = shard
            .controller(ControllerOp::CreateTopic {
                name,
                partition_count,
                replication_factor: topic.replication_factor,
                configs,
                validate_only: body.validate_only,
            })
            .await;
        match reply {
            ControllerReply::Topic(Ok(created)) => {
                result.error_code = codes::NONE;
                result.error_message = created.compaction_notice().map(StrBytes::from_string);
                result.topic_id = created.id;
                result.num_partitions = created.partitions.len() as i32;
                result.replication_factor = created.replication_factor;
                result.configs = Some(
                    created
                        .configs
                        .describe(&shard.config.log_defaults)
                        .into_iter()
                        .map(|entry| {
                            let mut config = CreatableTopicConfigs::default();
                            config.name = StrBytes::from_static_str(entry.name);
                            config.value = Some(StrBytes::from_string(entry.value));
                            config.read_only = entry.read_only;
                            config.config_source = entry.source.kafka_code();
                            config.is_sensitive = entry.is_sensitive;
                            config
                        })
                        .collect(),
                );
            }
            ControllerReply::Topic(Err(error)) => {
                result.error_code = error.code;
                result.error_message = Some(StrBytes::from_string(error.message));
            }
            ControllerReply::ProducerIds(_) => result.error_code = codes::INVALID_REQUEST,
        }
        response.topics.push(result);
    }
    respond(request, &response)
}
