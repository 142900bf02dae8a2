//! DescribeConfigs (v1-4): every known config of a topic with its value and source (the
//! topic's override or the default), and the broker's own settings, read-only. Served from
//! this shard's metadata snapshot and the server config; nothing crosses shards.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::config_resource::{unsupported_resource_type, Refusal, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{respond, Shard};
use crate::cluster::{ConfigType, MetadataError, TopicConfigs};
use crate::config::ServerConfig;
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

/// Kafka's `ConfigSource` STATIC_BROKER_CONFIG: set at start-up, here by flag, file or default.
const SOURCE_STATIC_BROKER: i8 = 4;

/// Topic configs the partition log owns, with the name of the broker-wide default Kafka
/// gives each (`log.retention.ms` is the default of `retention.ms`).
const BROKER_NAMES_OF_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("max.message.bytes", "message.max.bytes"),
    ("retention.bytes", "log.retention.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
];

/// One described config, whichever resource it belongs to.
struct Row {
    name: String,
    value: String,
    source: i8,
    config_type: ConfigType,
    read_only: bool,
    is_sensitive: bool,
}

pub fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: DescribeConfigsRequest = request.decode()?;
    let version = request.api_version();
    let mut response = DescribeConfigsResponse::default();
    for resource in &body.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let rows = match resource.resource_type {
            RESOURCE_TOPIC => topic_rows(shard, &resource.resource_name),
            RESOURCE_BROKER => broker_rows(&shard.config, &resource.resource_name),
            other => Err(unsupported_resource_type(other)),
        };
        match rows {
            Ok(rows) => {
                result.error_code = codes::NONE;
                result.configs = rows
                    .into_iter()
                    .filter(|row| is_wanted(resource, &row.name))
                    .map(|row| to_kafka(row, version, body.include_synonyms))
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        response.results.push(result);
    }
    respond(request, &response)
}

/// A null or empty key list asks for every config; names the resource lacks are skipped.
fn is_wanted(resource: &DescribeConfigsResource, name: &str) -> bool {
    match &resource.configuration_keys {
        Some(keys) if !keys.is_empty() => keys.iter().any(|key| key.as_str() == name),
        _ => true,
    }
}

fn topic_rows(shard: &Shard, name: &str) -> Result<Vec<Row>, Refusal> {
    let metadata = shard.metadata();
    let Some(topic) = metadata.topic(name) else {
        let error = MetadataError::UnknownTopic { name: name.into() };
        return Err((error.kafka_code(), error.to_string()));
    };
    Ok(topic
        .configs
        .describe(&shard.config.log_defaults)
        .into_iter()
        .map(|entry| Row {
            name: entry.name.to_string(),
            source: entry.source.kafka_code(),
            value: entry.value,
            config_type: entry.config_type,
            read_only: entry.read_only,
            is_sensitive: entry.is_sensitive,
        })
        .collect())
}

/// The broker's settings for its own id; none for "" (Kafka's cluster-wide dynamic defaults,
/// which ringlog does not have); INVALID_REQUEST for another broker's id.
fn broker_rows(config: &ServerConfig, name: &str) -> Result<Vec<Row>, Refusal> {
    if name.is_empty() {
        return Ok(Vec::new());
    }
    if name.parse::<i32>().ok() != Some(config.node_id) {
        return Err((
            codes::INVALID_REQUEST,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                config.node_id
            ),
        ));
    }
    let setting = |name: &str, value: String, config_type: ConfigType| Row {
        name: name.to_string(),
        value,
        source: SOURCE_STATIC_BROKER,
        config_type,
        read_only: true,
        is_sensitive: false,
    };
    let mut rows = vec![
        setting("broker.id", config.node_id.to_string(), ConfigType::Int),
        setting("node.id", config.node_id.to_string(), ConfigType::Int),
        setting(
            "num.partitions",
            config.num_partitions.to_string(),
            ConfigType::Int,
        ),
        setting(
            "auto.create.topics.enable",
            config.auto_create_topics_enable.to_string(),
            ConfigType::Boolean,
        ),
        setting(
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
        setting(
            "log.dirs",
            config.data_dir.display().to_string(),
            ConfigType::String,
        ),
        setting(
            "listeners",
            format!("PLAINTEXT://{}", config.kafka_addr),
            ConfigType::String,
        ),
        setting(
            "advertised.listeners",
            advertised_listener(config),
            ConfigType::String,
        ),
    ];
    for entry in TopicConfigs::default().describe(&config.log_defaults) {
        if let Some((_, broker_name)) = BROKER_NAMES_OF_TOPIC_CONFIGS
            .iter()
            .find(|(topic_name, _)| *topic_name == entry.name)
        {
            rows.push(setting(broker_name, entry.value, entry.config_type));
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

fn advertised_listener(config: &ServerConfig) -> String {
    let host = &config.advertised_host;
    if host.contains(':') {
        format!("PLAINTEXT://[{host}]:{}", config.advertised_port)
    } else {
        format!("PLAINTEXT://{host}:{}", config.advertised_port)
    }
}

fn to_kafka(row: Row, version: i16, include_synonyms: bool) -> DescribeConfigsResourceResult {
    let name = StrBytes::from_string(row.name);
    let value = Some(StrBytes::from_string(row.value));
    let mut result = DescribeConfigsResourceResult::default();
    if include_synonyms {
        let mut synonym = DescribeConfigsSynonym::default();
        synonym.name = name.clone();
        synonym.value = value.clone();
        synonym.source = row.source;
        result.synonyms = vec![synonym];
    }
    result.name = name;
    result.value = value;
    result.read_only = row.read_only;
    result.config_source = row.source;
    result.is_sensitive = row.is_sensitive;
    // Config types exist from v3.
    if version >= 3 {
        result.config_type = row.config_type.kafka_code();
    }
    result
}
