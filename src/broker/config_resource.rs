//! What DescribeConfigs, AlterConfigs and IncrementalAlterConfigs share: Kafka's config
//! resource types, which of them can be changed, and running a config change on the
//! controller. Broker settings come from flags and the TOML file and are read-only here.

use std::rc::Rc;

use kafka_protocol::protocol::StrBytes;

use super::messages::ControllerOp;
use super::Shard;
use crate::protocol::codes;

/// Kafka's `ConfigResource.Type` TOPIC.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `ConfigResource.Type` BROKER.
pub const RESOURCE_BROKER: i8 = 4;

/// An error code with the message that goes with it.
pub type Refusal = (i16, String);

/// The topic an alter request may change, or why the resource cannot be changed.
/// The (name, value) pairs of a request's configs; null values are dropped, as Kafka does (the
/// config is not set, so it takes its default).
pub fn non_null_configs<'a>(
    configs: impl Iterator<Item = (&'a StrBytes, &'a Option<StrBytes>)>,
) -> Vec<(String, String)> {
    configs
        .filter_map(|(name, value)| value.as_ref().map(|v| (name.to_string(), v.to_string())))
        .collect()
}

pub fn alterable_topic(resource_type: i8, resource_name: &str) -> Result<String, Refusal> {
    match resource_type {
        RESOURCE_TOPIC => Ok(resource_name.to_string()),
        RESOURCE_BROKER => Err((
            codes::INVALID_REQUEST,
            "broker configs are read-only: set them with flags or the TOML file and restart".into(),
        )),
        other => Err(unsupported_resource_type(other)),
    }
}

pub fn unsupported_resource_type(resource_type: i8) -> Refusal {
    (
        codes::INVALID_REQUEST,
        format!("unsupported config resource type {resource_type}"),
    )
}

/// Runs a config change on the controller and answers it as an error code and message.
pub async fn alter(shard: &Rc<Shard>, op: ControllerOp) -> (i16, Option<String>) {
    match shard.controller(op).await.into_topic() {
        Ok(topic) => (codes::NONE, topic.compaction_notice()),
        Err(error) => (error.code, Some(error.message)),
    }
}
