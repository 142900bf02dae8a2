//! The immutable cluster metadata snapshot: topics, their ids, configs and partition-to-shard
//! table. Shard 0's `MetadataStore` makes a new one for every change; every shard reads the
//! one it was last sent, as an `Arc<ClusterMetadata>`. Nothing here changes after it is shared.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::topic_config::TopicConfigs;

/// Where one partition lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAssignment {
    pub shard: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// Random v4, never nil.
    pub id: Uuid,
    /// Index = partition number.
    pub partitions: Vec<PartitionAssignment>,
    /// Always 1 while there is one broker.
    pub replication_factor: i16,
    pub configs: TopicConfigs,
    /// The broker's own topics (names starting with `__`).
    pub is_internal: bool,
}

impl TopicMetadata {
    pub fn partition_count(&self) -> i32 {
        // Bounded by `PARTITIONS_PER_TOPIC_MAX`.
        self.partitions.len() as i32
    }

    /// What a client is told, in the response's message, when it makes a topic compacted:
    /// compaction is not implemented, so such a topic keeps its data whole.
    pub fn compaction_notice(&self) -> Option<String> {
        if self.is_internal {
            // The broker bounds its own internal topics.
            return None;
        }
        let policy = self.configs.get(super::config_defs::CLEANUP_POLICY)?;
        let mut entries = super::config_defs::split_list(policy);
        entries.any(|e| e == "compact").then(|| {
            "cleanup.policy=compact is accepted but ringlog does not compact yet: the topic is \
             kept whole (no record is removed for a newer one of its key; with 'compact' alone, \
             nothing is deleted by age or size either). Records without a key are refused."
                .to_string()
        })
    }

    /// The shard owning `partition`, `None` when the topic has no such partition.
    pub fn shard_of(&self, partition: i32) -> Option<u32> {
        let index = usize::try_from(partition).ok()?;
        self.partitions.get(index).map(|p| p.shard)
    }
}

/// Built only by the `MetadataStore`; fields are public to read. A clone whose `topics` were
/// edited by hand would disagree with `topic_by_id`, which then finds nothing rather than a
/// wrong topic. `Default` is the empty snapshot a shard holds before the first one arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Bumped by every change to the snapshot; a shard keeps the highest it has seen.
    pub version: u64,
    pub node_id: i32,
    /// Generated at the first start and kept in the metadata log ever after.
    pub cluster_id: String,
    pub shard_count: u32,
    pub topics: BTreeMap<String, Arc<TopicMetadata>>,
    /// Ids of every topic the metadata log records as deleted: a partition directory naming
    /// one of them holds dead data and may be discarded; no other may.
    pub deleted_topic_ids: BTreeSet<Uuid>,
    names_by_id: HashMap<Uuid, String>,
}

impl ClusterMetadata {
    pub(crate) fn empty(node_id: i32, shard_count: u32) -> Self {
        ClusterMetadata {
            node_id,
            shard_count,
            ..ClusterMetadata::default()
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMetadata>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMetadata>> {
        let name = self.names_by_id.get(id)?;
        self.topics.get(name).filter(|topic| topic.id == *id)
    }

    /// Partitions per shard, counting every topic; shards past `shard_count` are not counted.
    pub fn partition_count_by_shard(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.shard_count as usize];
        for topic in self.topics.values() {
            for partition in &topic.partitions {
                if let Some(count) = counts.get_mut(partition.shard as usize) {
                    *count += 1;
                }
            }
        }
        counts
    }

    pub fn partition_count_total(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }

    pub(crate) fn bump_version(&mut self) {
        self.version += 1;
    }

    /// Adds or replaces a topic; the caller has checked name and id uniqueness.
    pub(crate) fn put_topic(&mut self, topic: TopicMetadata) {
        self.names_by_id.insert(topic.id, topic.name.clone());
        self.topics.insert(topic.name.clone(), Arc::new(topic));
        debug_assert_eq!(self.names_by_id.len(), self.topics.len());
    }

    pub(crate) fn remove_topic(&mut self, id: &Uuid) -> Option<Arc<TopicMetadata>> {
        let name = self.names_by_id.remove(id)?;
        let topic = self.topics.remove(&name);
        debug_assert_eq!(self.names_by_id.len(), self.topics.len());
        topic
    }
}
