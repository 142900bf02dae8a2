//! Label sets of ringlog's metric families, and the names that go into them: Kafka API keys as
//! `api="produce"` and error codes as `error="unknown_topic_or_partition"`. Every label here
//! has a bounded set of values (shards, APIs, error codes, topics, consumer groups).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardApiLabels {
    pub shard: usize,
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardApiErrorLabels {
    pub shard: usize,
    pub api: String,
    pub error: String,
}

/// `op` is one of a fixed handful: `read`, `write`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardOpLabels {
    pub shard: usize,
    pub op: &'static str,
}

/// `reason` is one of a fixed handful: `timeout`, `shard_gone` (mesh failures), the limit a
/// refused connection was over, why the broker closed a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardReasonLabels {
    pub shard: usize,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupTopicLabels {
    pub group: String,
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupTopicPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// `produce`, `api_versions`, `list_offsets`…; `unknown` for a key this build does not know.
pub fn api_name(api_key: i16) -> String {
    match ApiKey::try_from(api_key) {
        Ok(key) => snake_case(&format!("{key:?}")),
        Err(_) => "unknown".to_string(),
    }
}

/// `unknown_topic_or_partition`, `kafka_storage_error`…; `none` for 0.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "none".to_string(),
        Some(ResponseError::Unknown(_)) => "unknown_error_code".to_string(),
        Some(error) => snake_case(&format!("{error:?}")),
    }
}

fn snake_case(camel: &str) -> String {
    let mut snake = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_error_names_are_snake_case() {
        assert_eq!(api_name(0), "produce");
        assert_eq!(api_name(18), "api_versions");
        assert_eq!(api_name(2), "list_offsets");
        assert_eq!(api_name(-7), "unknown");
        assert_eq!(error_name(3), "unknown_topic_or_partition");
        assert_eq!(error_name(56), "kafka_storage_error");
        assert_eq!(error_name(0), "none");
        assert_eq!(error_name(-1), "unknown_server_error");
        assert_eq!(error_name(30000), "unknown_error_code");
    }
}
