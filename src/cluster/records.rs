//! The metadata log's records and the state they build. Replay at open and every live change
//! go through the same `MetadataState::apply`, so a change that applies live always replays.
//!
//! On-disk format: the log `<data_dir>/__cluster_metadata-0` is an ordinary partition log of
//! Kafka v2 record batches, one batch per change (`batch::build_batch`: one record, no
//! producer, base timestamp = time of the change). The batch's "records" are not Kafka records
//! but one UTF-8 JSON document right after the 61-byte batch header:
//!
//! ```json
//! {"version":1,"record":{"type":"TopicCreated","name":"orders","id":"<uuid>",
//!   "partition_shards":[0,1,2],"replication_factor":1,"configs":{"retention.ms":"60000"}}}
//! ```
//!
//! Record types (`type`): `ClusterIdSet{id}`, `TopicCreated{name,id,partition_shards,
//! replication_factor,configs}`, `TopicDeleted{id}`, `PartitionsAdded{id,partition_shards}`
//! (shards of the new partitions, in partition order), `ConfigsChanged{id,configs}` (the whole
//! new override set), `PartitionsMoved{id,partition_shards}` (the whole new table) and
//! `ProducerIdBlockAllocated{next}` (the first producer id not yet handed out). Unknown
//! versions, types or fields are errors, never skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::metadata::{ClusterMetadata, PartitionAssignment, TopicMetadata};
use super::naming;
use super::topic_config::TopicConfigs;

/// The format written; the only one read.
pub const RECORD_FORMAT_VERSION: u32 = 1;

/// A topic never has more partitions than this (Kafka's per-request limit).
pub const PARTITIONS_PER_TOPIC_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum MetadataRecord {
    ClusterIdSet {
        id: String,
    },
    TopicCreated {
        name: String,
        id: Uuid,
        partition_shards: Vec<u32>,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    TopicDeleted {
        id: Uuid,
    },
    PartitionsAdded {
        id: Uuid,
        partition_shards: Vec<u32>,
    },
    ConfigsChanged {
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    PartitionsMoved {
        id: Uuid,
        partition_shards: Vec<u32>,
    },
    ProducerIdBlockAllocated {
        next: i64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    version: u32,
    record: MetadataRecord,
}

pub fn encode(record: &MetadataRecord) -> Vec<u8> {
    #[derive(Serialize)]
    struct EnvelopeRef<'a> {
        version: u32,
        record: &'a MetadataRecord,
    }
    serde_json::to_vec(&EnvelopeRef {
        version: RECORD_FORMAT_VERSION,
        record,
    })
    .expect("metadata records serialise: plain strings, numbers and maps")
}

pub fn decode(payload: &[u8]) -> Result<MetadataRecord, String> {
    let envelope: Envelope =
        serde_json::from_slice(payload).map_err(|e| format!("unreadable record: {e}"))?;
    if envelope.version != RECORD_FORMAT_VERSION {
        return Err(format!(
            "record format version {} is not supported (this build reads {RECORD_FORMAT_VERSION})",
            envelope.version
        ));
    }
    Ok(envelope.record)
}

/// What the metadata log says: the snapshot plus what only the store needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataState {
    pub metadata: Arc<ClusterMetadata>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// Topics created so far, deleted or not; rotates the allocator's starting shard.
    pub topics_created_count: u64,
}

impl MetadataState {
    pub fn new(node_id: i32, shard_count: u32) -> Self {
        MetadataState {
            metadata: Arc::new(ClusterMetadata::empty(node_id, shard_count)),
            next_producer_id: 0,
            topics_created_count: 0,
        }
    }

    fn topic(&self, id: &Uuid) -> Result<&Arc<TopicMetadata>, String> {
        self.metadata
            .topic_by_id(id)
            .ok_or_else(|| format!("no topic with id {id}"))
    }

    /// Applies one record, or explains why it cannot apply (and changes nothing).
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), String> {
        match record {
            MetadataRecord::ClusterIdSet { id } => {
                if !naming::is_valid_cluster_id(id) {
                    return Err(format!("malformed cluster id {id:?}"));
                }
                let current = &self.metadata.cluster_id;
                if !current.is_empty() && current != id {
                    return Err(format!("cluster id {id} replaces {current}"));
                }
                let metadata = Arc::make_mut(&mut self.metadata);
                metadata.cluster_id = id.clone();
                metadata.bump_version();
            }
            MetadataRecord::TopicCreated {
                name,
                id,
                partition_shards,
                replication_factor,
                configs,
            } => {
                naming::validate_topic_name(name).map_err(|e| e.to_string())?;
                if self.metadata.topic(name).is_some() {
                    return Err(format!("topic {name} already exists"));
                }
                if id.is_nil() || self.metadata.topic_by_id(id).is_some() {
                    return Err(format!("topic id {id} is nil or taken"));
                }
                check_partition_count(partition_shards.len())?;
                if *replication_factor != 1 {
                    return Err(format!("replication factor {replication_factor}"));
                }
                let configs = TopicConfigs::from_map(configs.clone()).map_err(|e| e.to_string())?;
                let metadata = Arc::make_mut(&mut self.metadata);
                metadata.put_topic(TopicMetadata {
                    name: name.clone(),
                    id: *id,
                    partitions: assignments(partition_shards),
                    replication_factor: *replication_factor,
                    configs,
                    is_internal: naming::is_internal_topic(name),
                });
                metadata.bump_version();
                self.topics_created_count += 1;
            }
            MetadataRecord::TopicDeleted { id } => {
                self.topic(id)?;
                let metadata = Arc::make_mut(&mut self.metadata);
                metadata.remove_topic(id);
                metadata.deleted_topic_ids.insert(*id);
                metadata.bump_version();
            }
            MetadataRecord::PartitionsAdded {
                id,
                partition_shards,
            } => {
                let topic = self.topic(id)?;
                if partition_shards.is_empty() {
                    return Err("no partitions added".into());
                }
                check_partition_count(topic.partitions.len() + partition_shards.len())?;
                let mut topic = TopicMetadata::clone(topic);
                topic.partitions.extend(assignments(partition_shards));
                self.put(topic);
            }
            MetadataRecord::ConfigsChanged { id, configs } => {
                let mut topic = TopicMetadata::clone(self.topic(id)?);
                topic.configs =
                    TopicConfigs::from_map(configs.clone()).map_err(|e| e.to_string())?;
                self.put(topic);
            }
            MetadataRecord::PartitionsMoved {
                id,
                partition_shards,
            } => {
                let topic = self.topic(id)?;
                if partition_shards.len() != topic.partitions.len() {
                    return Err(format!(
                        "{} shards for {} partitions",
                        partition_shards.len(),
                        topic.partitions.len()
                    ));
                }
                let mut topic = TopicMetadata::clone(topic);
                topic.partitions = assignments(partition_shards);
                self.put(topic);
            }
            MetadataRecord::ProducerIdBlockAllocated { next } => {
                if *next <= self.next_producer_id {
                    return Err(format!(
                        "producer ids would go back from {} to {next}",
                        self.next_producer_id
                    ));
                }
                self.next_producer_id = *next;
            }
        }
        Ok(())
    }

    fn put(&mut self, topic: TopicMetadata) {
        let metadata = Arc::make_mut(&mut self.metadata);
        metadata.put_topic(topic);
        metadata.bump_version();
    }
}

fn check_partition_count(count: usize) -> Result<(), String> {
    if count == 0 || count > PARTITIONS_PER_TOPIC_MAX {
        return Err(format!("{count} partitions"));
    }
    Ok(())
}

fn assignments(shards: &[u32]) -> Vec<PartitionAssignment> {
    shards
        .iter()
        .map(|shard| PartitionAssignment { shard: *shard })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str, id: Uuid, shards: &[u32]) -> MetadataRecord {
        MetadataRecord::TopicCreated {
            name: name.into(),
            id,
            partition_shards: shards.to_vec(),
            replication_factor: 1,
            configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        }
    }

    #[test]
    fn records_round_trip_through_json() {
        let id = Uuid::new_v4();
        let records = [
            MetadataRecord::ClusterIdSet {
                id: naming::generate_cluster_id(),
            },
            created("orders", id, &[0, 1, 2]),
            MetadataRecord::PartitionsAdded {
                id,
                partition_shards: vec![3],
            },
            MetadataRecord::ConfigsChanged {
                id,
                configs: BTreeMap::new(),
            },
            MetadataRecord::PartitionsMoved {
                id,
                partition_shards: vec![0, 0, 0, 0],
            },
            MetadataRecord::ProducerIdBlockAllocated { next: 1000 },
            MetadataRecord::TopicDeleted { id },
        ];
        for record in records {
            let bytes = encode(&record);
            assert_eq!(decode(&bytes), Ok(record));
        }
        let text = String::from_utf8(encode(&MetadataRecord::ProducerIdBlockAllocated {
            next: 5,
        }))
        .unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"record":{"type":"ProducerIdBlockAllocated","next":5}}"#
        );
    }

    #[test]
    fn unknown_versions_types_and_fields_are_refused() {
        for bad in [
            r#"{"version":2,"record":{"type":"ProducerIdBlockAllocated","next":5}}"#,
            r#"{"version":1,"record":{"type":"TopicRenamed","id":"x"}}"#,
            r#"{"version":1,"record":{"type":"ProducerIdBlockAllocated","next":5,"extra":1}}"#,
            r#"{"version":1,"record":{"type":"ProducerIdBlockAllocated"}}"#,
            r#"{"version":1}"#,
            "not json",
            "",
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn apply_builds_the_snapshot_and_refuses_inconsistent_records() {
        let mut state = MetadataState::new(0, 4);
        let id = Uuid::new_v4();
        state.apply(&created("orders", id, &[0, 1])).unwrap();
        assert_eq!(state.metadata.version, 1);
        assert_eq!(state.topics_created_count, 1);
        let topic = state.metadata.topic_by_id(&id).unwrap();
        assert_eq!(topic.name, "orders");
        assert_eq!(topic.configs.get("retention.ms"), Some("1000"));

        let before = state.clone();
        for bad in [
            created("orders", Uuid::new_v4(), &[0]),
            created("other", id, &[0]),
            created("nil", Uuid::nil(), &[0]),
            created("bad name", Uuid::new_v4(), &[0]),
            created("empty", Uuid::new_v4(), &[]),
            MetadataRecord::TopicDeleted { id: Uuid::new_v4() },
            MetadataRecord::PartitionsMoved {
                id,
                partition_shards: vec![0],
            },
            MetadataRecord::ConfigsChanged {
                id,
                configs: BTreeMap::from([("nope".to_string(), "1".to_string())]),
            },
            MetadataRecord::ProducerIdBlockAllocated { next: 0 },
            MetadataRecord::ClusterIdSet { id: "short".into() },
        ] {
            assert!(state.apply(&bad).is_err(), "{bad:?}");
            assert_eq!(state, before, "a refused record changes nothing");
        }

        state
            .apply(&MetadataRecord::ProducerIdBlockAllocated { next: 10 })
            .unwrap();
        assert_eq!(
            state.metadata.version, 1,
            "producer ids are not in snapshots"
        );
        state.apply(&MetadataRecord::TopicDeleted { id }).unwrap();
        assert!(state.metadata.topics.is_empty());
        assert!(state.metadata.topic_by_id(&id).is_none());
    }
}
