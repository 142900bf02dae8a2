//! Cluster metadata: topics, their ids and configs, and the partition-to-shard table.
//!
//! Shard 0 owns the one `MetadataStore`, which persists every change to a small log of its own
//! (`<data_dir>/__cluster_metadata-0`, like KRaft's) before it becomes visible; every other
//! shard holds a read-only `Arc<ClusterMetadata>` snapshot sent to it. Partitions are placed on
//! shards by a balancing allocator, not a hash, so they can be moved later.
//!
//! | module | owns |
//! | --- | --- |
//! | `error` | `MetadataError` and its Kafka error codes |
//! | `naming` | topic-name rules, name collisions, cluster and topic ids |
//! | `config_defs` | the known Kafka topic configs: types, defaults, validation |
//! | `topic_config` | a topic's overrides, its effective `LogConfig`, DescribeConfigs rows, config changes |
//! | `metadata` | the immutable snapshot types |
//! | `placement` | the partition-to-shard allocator |
//! | `records` | the metadata log's record format and replay |
//! | `store` | the store on shard 0: open, replay, changes, durability |
//!
//! Never here: protocol parsing (the broker maps requests onto these calls) and file access
//! other than through the storage engine's `PartitionLog`.

mod config_defs;
mod error;
mod metadata;
mod naming;
pub mod partition_dirs;
mod placement;
mod records;
mod store;
mod topic_config;

pub use config_defs::ConfigType;
pub use error::MetadataError;
pub use metadata::{ClusterMetadata, PartitionAssignment, TopicMetadata};
pub use naming::{
    generate_topic_id, is_internal_topic, names_collide, validate_topic_name, CLUSTER_ID_LENGTH,
    METADATA_TOPIC_NAME, TOPIC_NAME_LENGTH_MAX,
};
pub use records::PARTITIONS_PER_TOPIC_MAX;
pub use store::{
    MetadataStore, OpenMode, DEFAULT_PARTITION_COUNT, METADATA_LOG_DIR_NAME,
    PARTITIONS_PER_BROKER_MAX, PRODUCER_ID_BLOCK_SIZE_MAX,
};
pub use topic_config::{
    ConfigChange, ConfigEntry, ConfigSource, TopicConfigs, CONFIG_VALUE_LENGTH_MAX_BYTES,
};
