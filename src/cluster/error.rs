//! The cluster subsystem's one error type. Each variant carries the message Kafka itself would
//! send (where Kafka has one), so the protocol edge can pass `to_string()` on as the response's
//! `error_message` and `kafka_code()` as its `error_code`.

use kafka_protocol::ResponseError;

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Kafka: TOPIC_ALREADY_EXISTS.
    #[error("Topic '{name}' already exists.")]
    TopicAlreadyExists { name: String },

    /// A topic name Kafka would refuse, or one colliding with an existing topic once '.' and
    /// '_' are unified. Kafka: INVALID_TOPIC_EXCEPTION.
    #[error("{0}")]
    InvalidTopic(String),

    /// Kafka: INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),

    /// Kafka: INVALID_REPLICATION_FACTOR.
    #[error("{0}")]
    InvalidReplicationFactor(String),

    /// An unknown config name, a value failing its type or range, or an operation the config's
    /// type does not allow. Kafka: INVALID_CONFIG.
    #[error("{0}")]
    InvalidConfig(String),

    /// Kafka: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("This server does not host this topic-partition: {name}")]
    UnknownTopic { name: String },

    /// A request that is malformed as a whole (duplicate keys, reserved names, bad operation
    /// codes). Kafka: INVALID_REQUEST.
    #[error("{0}")]
    InvalidRequest(String),

    /// Over one of ringlog's limits (partitions per topic or per broker, record size). Kafka:
    /// POLICY_VIOLATION.
    #[error("{0}")]
    PolicyViolation(String),

    /// The data directory holds partitions of the name from a topic the metadata does not
    /// know; creating the topic would hide (and later risk) that data. Kafka:
    /// KAFKA_STORAGE_ERROR.
    #[error("{0}")]
    OrphanedData(String),

    /// Writing or reading the metadata log failed. Kafka: KAFKA_STORAGE_ERROR.
    #[error("metadata log: {0}")]
    Storage(#[from] StorageError),

    /// The metadata log holds a record that cannot be read or applied. Kafka: KAFKA_STORAGE_ERROR.
    #[error("metadata log is corrupt at offset {offset}: {reason}")]
    CorruptLog { offset: i64, reason: String },

    /// A change may or may not have reached the metadata log (an I/O error or a cancelled call
    /// after the append started); the store refuses changes until it is reopened, which
    /// replays the log and so decides. Kafka: KAFKA_STORAGE_ERROR.
    #[error("metadata store refuses changes until restarted: {0}")]
    StoreFailed(String),
}

impl MetadataError {
    /// The Kafka error code a client expects for this error.
    pub fn kafka_code(&self) -> i16 {
        let error = match self {
            MetadataError::TopicAlreadyExists { .. } => ResponseError::TopicAlreadyExists,
            MetadataError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            MetadataError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            MetadataError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            MetadataError::InvalidConfig(_) => ResponseError::InvalidConfig,
            MetadataError::UnknownTopic { .. } => ResponseError::UnknownTopicOrPartition,
            MetadataError::InvalidRequest(_) => ResponseError::InvalidRequest,
            MetadataError::PolicyViolation(_) => ResponseError::PolicyViolation,
            MetadataError::Storage(_)
            | MetadataError::OrphanedData(_)
            | MetadataError::CorruptLog { .. }
            | MetadataError::StoreFailed(_) => ResponseError::KafkaStorageError,
        };
        error.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_codes_match_the_protocol() {
        let cases = [
            (MetadataError::TopicAlreadyExists { name: "t".into() }, 36),
            (MetadataError::InvalidTopic(String::new()), 17),
            (MetadataError::InvalidPartitions(String::new()), 37),
            (MetadataError::InvalidReplicationFactor(String::new()), 38),
            (MetadataError::InvalidConfig(String::new()), 40),
            (MetadataError::UnknownTopic { name: "t".into() }, 3),
            (MetadataError::InvalidRequest(String::new()), 42),
            (MetadataError::PolicyViolation(String::new()), 44),
            (
                MetadataError::CorruptLog {
                    offset: 3,
                    reason: String::new(),
                },
                56,
            ),
            (MetadataError::StoreFailed(String::new()), 56),
            (
                MetadataError::Storage(StorageError::LogFailed(String::new())),
                56,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.kafka_code(), code, "{error:?}");
        }
    }
}
