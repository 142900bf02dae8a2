//! The metadata store: the one owner of cluster metadata, on shard 0. Every change is planned
//! against the current state, written to the metadata log as one record and made durable, and
//! only then installed as the new snapshot, so a crash never shows a change that is not on
//! disk. At open the whole log is replayed (format in `records`).
//!
//! Single-threaded but not single-task: changes are serialised by one async lock, so each
//! validates against the state the previous one left; no `RefCell` borrow crosses an `.await`.
//! Callers should let a change run to completion: one dropped after its append started leaves
//! the log ahead of the snapshot, and the store then refuses changes until it is reopened.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use glommio::sync::{Permit, Semaphore};

use super::error::MetadataError;
use super::metadata::{ClusterMetadata, TopicMetadata};
use super::naming::{self, METADATA_TOPIC_NAME};
use super::partition_dirs::{self, OrphanDir};
use super::placement::place_partitions;
use super::records::{self, MetadataRecord, MetadataState, PARTITIONS_PER_TOPIC_MAX};
use super::topic_config::{ConfigChange, TopicConfigs};
use crate::storage::batch::{self, BATCH_HEADER_SIZE_BYTES};
use crate::storage::config::MIB;
use crate::storage::file;
use crate::storage::{
    now_ms, BatchCache, LogConfig, PartitionLog, ReadLimits, SpaceGuard, StorageError,
};

/// `<data_dir>/__cluster_metadata-0`, like KRaft's metadata log.
pub const METADATA_LOG_DIR_NAME: &str = "__cluster_metadata-0";

/// All topics of the broker together hold at most this many partitions.
pub const PARTITIONS_PER_BROKER_MAX: usize = 100_000;

/// Kafka's default `num.partitions`.
pub const DEFAULT_PARTITION_COUNT: i32 = 1;

/// Largest block of producer ids one call hands out.
pub const PRODUCER_ID_BLOCK_SIZE_MAX: u64 = 1 << 20;

/// Largest record payload; the limits on partitions and config values keep every record far
/// below it (10 000 partitions take about 50 KiB).
const RECORD_SIZE_MAX_BYTES: usize = MIB as usize;

/// Bytes read per request while replaying the log.
const REPLAY_READ_BYTES: usize = MIB as usize;

const RESERVED_NAME_MESSAGE: &str = "Creation of internal topic __cluster_metadata is prohibited.";

/// The metadata log's own settings: never deleted by age or size, small preallocation.
fn metadata_log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * MIB,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        max_message_bytes: (RECORD_SIZE_MAX_BYTES + BATCH_HEADER_SIZE_BYTES) as u64,
        flush_messages: None,
        flush_ms: None,
        preallocate_bytes: MIB,
        ..LogConfig::default()
    }
}

/// Who opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The broker: a damaged log, or an empty one beside partitions, stops the start.
    Serve,
    /// `ringlog recover-metadata`: keeps what can be read, then adopts what it finds.
    Recover,
}

pub struct MetadataStore {
    log: Rc<PartitionLog>,
    state: RefCell<MetadataState>,
    /// Serialises changes.
    write_lock: Semaphore,
    /// Set once a change may have reached the log without reaching the snapshot.
    failure: RefCell<Option<String>>,
    /// Kafka's `num.partitions`: what a partition count of -1 means.
    default_partition_count: Cell<i32>,
    /// Partition directories found at open that the metadata does not explain: their data is
    /// kept, and no topic of their name is created over them.
    orphans: Vec<OrphanDir>,
}

impl MetadataStore {
    /// Opens (or creates) the metadata log under `data_dir` and replays it. A first open
    /// generates and persists the cluster id; partitions placed on shards that no longer exist
    /// (the broker now runs fewer) are moved, durably, to the least loaded ones.
    pub async fn open(
        data_dir: &Path,
        node_id: i32,
        shard_count: u32,
        cache: Rc<BatchCache>,
        space: Rc<SpaceGuard>,
    ) -> Result<Rc<Self>, MetadataError> {
        Self::open_as(
            data_dir,
            node_id,
            shard_count,
            cache,
            space,
            OpenMode::Serve,
        )
        .await
    }

    /// `open`, for the broker or for `ringlog recover-metadata`: only recovery may cut a
    /// damaged log or start one over partitions it does not name, as it adopts them next.
    pub async fn open_as(
        data_dir: &Path,
        node_id: i32,
        shard_count: u32,
        cache: Rc<BatchCache>,
        space: Rc<SpaceGuard>,
        mode: OpenMode,
    ) -> Result<Rc<Self>, MetadataError> {
        assert!(shard_count > 0, "a broker has at least one shard");
        let dir = data_dir.join(METADATA_LOG_DIR_NAME);
        if mode == OpenMode::Serve {
            refuse_damaged_log(&dir, data_dir).await?;
        }
        let (log, report) = PartitionLog::open(&dir, metadata_log_config(), cache, space).await?;
        if let Some(reason) = &report.recovery.invalid_reason {
            tracing::warn!(dir = %dir.display(), truncated_bytes = report.recovery.truncated_bytes,
                %reason, "metadata log had a torn or corrupt tail; changes after it are lost");
        }
        if log.log_end_offset() == 0 && mode == OpenMode::Serve {
            refuse_orphaned_partitions(data_dir).await?;
        }
        let state = replay(&log, MetadataState::new(node_id, shard_count)).await?;
        let orphans = settle_partition_dirs(data_dir, &state.metadata).await?;
        let store = Rc::new(MetadataStore {
            log,
            state: RefCell::new(state),
            write_lock: Semaphore::new(1),
            failure: RefCell::new(None),
            default_partition_count: Cell::new(DEFAULT_PARTITION_COUNT),
            orphans,
        });
        store.ensure_cluster_id().await?;
        store.move_partitions_off_missing_shards().await?;
        let snapshot = store.snapshot();
        tracing::info!(
            cluster_id = %snapshot.cluster_id,
            topics = snapshot.topics.len(),
            version = snapshot.version,
            "metadata loaded"
        );
        Ok(store)
    }

    /// Partition directories the metadata did not explain at open; kept, not served.
    pub fn orphans(&self) -> &[OrphanDir] {
        &self.orphans
    }

    /// The current snapshot, to read or to send to other shards.
    pub fn snapshot(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&self.state.borrow().metadata)
    }

    /// The first producer id the next `allocate_producer_ids` hands out.
    pub fn next_producer_id(&self) -> i64 {
        self.state.borrow().next_producer_id
    }

    pub fn default_partition_count(&self) -> i32 {
        self.default_partition_count.get()
    }

    /// Sets Kafka's `num.partitions`, the partition count of topics created with -1.
    pub fn set_default_partition_count(&self, count: i32) -> Result<(), MetadataError> {
        if count < 1 || count as usize > PARTITIONS_PER_TOPIC_MAX {
            return Err(MetadataError::InvalidConfig(format!(
                "num.partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}, not {count}"
            )));
        }
        self.default_partition_count.set(count);
        Ok(())
    }

    /// Kafka's CreateTopics for one topic. `partition_count` and `replication_factor` -1 take
    /// the defaults; `configs` are the topic's overrides. With `validate_only`, returns the
    /// topic as it would be created and changes nothing.
    pub async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
        validate_only: bool,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        let _permit = self.lock().await?;
        let record = self.plan_create_topic(name, partition_count, replication_factor, configs)?;
        let state = self.change(record, validate_only).await?;
        let topic = topic_named(&state, name)?;
        if !validate_only {
            warn_if_compacted(&topic);
        }
        Ok(topic)
    }

    /// Recreates the record of a topic whose partition directories outlived their metadata:
    /// `partition_count` partitions with default configs, under `id` (the id its directories
    /// name) so that they are claimed as they are.
    pub async fn adopt_topic(
        &self,
        name: &str,
        id: uuid::Uuid,
        partition_count: i32,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        let _permit = self.lock().await?;
        if self.state.borrow().metadata.deleted_topic_ids.contains(&id) || id.is_nil() {
            return Err(MetadataError::InvalidRequest(format!(
                "topic id {id} is recorded as deleted"
            )));
        }
        let mut record =
            self.plan_create_topic_checked(name, partition_count, 1, Vec::new(), false)?;
        if let MetadataRecord::TopicCreated { id: planned, .. } = &mut record {
            *planned = id;
        }
        let state = self.change(record, false).await?;
        topic_named(&state, name)
    }

    /// Kafka's DeleteTopics for one topic. Returns the deleted topic, so that the caller can
    /// delete its partitions' data.
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicMetadata>, MetadataError> {
        refuse_internal(name, "deleted")?;
        let _permit = self.lock().await?;
        let topic = self.existing_topic(name)?;
        self.change(MetadataRecord::TopicDeleted { id: topic.id }, false)
            .await?;
        Ok(topic)
    }

    /// Kafka's CreatePartitions for one topic: grows it to `new_total` partitions, placing the
    /// new ones with the allocator.
    pub async fn create_partitions(
        &self,
        name: &str,
        new_total: i32,
        validate_only: bool,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        refuse_internal(name, "given more partitions")?;
        let _permit = self.lock().await?;
        let record = self.plan_create_partitions(name, new_total)?;
        let state = self.change(record, validate_only).await?;
        topic_named(&state, name)
    }

    /// Kafka's IncrementalAlterConfigs for one topic: the changes apply in order to its
    /// current overrides.
    pub async fn alter_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        let _permit = self.lock().await?;
        let topic = self.existing_topic(name)?;
        let configs = topic.configs.with_changes(&changes)?;
        self.set_configs(topic, configs, validate_only).await
    }

    /// Kafka's (non-incremental) AlterConfigs for one topic: `all_configs` replaces every
    /// override; a config left out returns to its default.
    pub async fn replace_configs(
        &self,
        name: &str,
        all_configs: Vec<(String, String)>,
        validate_only: bool,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        let _permit = self.lock().await?;
        let topic = self.existing_topic(name)?;
        let configs = TopicConfigs::parse(all_configs)?;
        self.set_configs(topic, configs, validate_only).await
    }

    /// Hands out `count` producer ids never handed out before, across restarts too.
    pub async fn allocate_producer_ids(&self, count: u64) -> Result<Range<i64>, MetadataError> {
        if count == 0 || count > PRODUCER_ID_BLOCK_SIZE_MAX {
            return Err(MetadataError::InvalidRequest(format!(
                "a producer id block holds 1 to {PRODUCER_ID_BLOCK_SIZE_MAX} ids, not {count}"
            )));
        }
        let _permit = self.lock().await?;
        let start = self.next_producer_id();
        let end = i64::try_from(count)
            .ok()
            .and_then(|count| start.checked_add(count))
            .ok_or_else(|| MetadataError::PolicyViolation("producer ids are exhausted".into()))?;
        self.change(
            MetadataRecord::ProducerIdBlockAllocated { next: end },
            false,
        )
        .await?;
        Ok(start..end)
    }

    /// Makes everything durable and refuses further changes, for a clean shutdown.
    pub async fn close(&self) -> Result<(), MetadataError> {
        let _permit = self.lock().await?;
        self.write_lock.close();
        self.log.close().await?;
        Ok(())
    }

    async fn lock(&self) -> Result<Permit<'_>, MetadataError> {
        self.write_lock
            .acquire_permit(1)
            .await
            .map_err(|_| MetadataError::StoreFailed("metadata store is closed".into()))
    }

    fn existing_topic(&self, name: &str) -> Result<Arc<TopicMetadata>, MetadataError> {
        self.state
            .borrow()
            .metadata
            .topic(name)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownTopic { name: name.into() })
    }

    async fn set_configs(
        &self,
        topic: Arc<TopicMetadata>,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<Arc<TopicMetadata>, MetadataError> {
        if configs == topic.configs {
            return Ok(topic);
        }
        let record = MetadataRecord::ConfigsChanged {
            id: topic.id,
            configs: configs.to_map(),
        };
        let state = self.change(record, validate_only).await?;
        let topic = topic_named(&state, &topic.name)?;
        if !validate_only {
            warn_if_compacted(&topic);
        }
        Ok(topic)
    }

    /// Checks a CreateTopics request in Kafka's order, and places its partitions.
    fn plan_create_topic(
        &self,
        name: &str,
        partition_count: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
    ) -> Result<MetadataRecord, MetadataError> {
        self.plan_create_topic_checked(name, partition_count, replication_factor, configs, true)
    }

    /// Plans a new topic; `refuse_orphaned` refuses a name whose partition directories hold
    /// data the metadata does not know (everyone but the adoption of that data).
    fn plan_create_topic_checked(
        &self,
        name: &str,
        partition_count: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
        refuse_orphaned: bool,
    ) -> Result<MetadataRecord, MetadataError> {
        let partition_count = match partition_count {
            -1 => self.default_partition_count.get(),
            count => count,
        };
        if partition_count as i64 > PARTITIONS_PER_TOPIC_MAX as i64 {
            return Err(MetadataError::PolicyViolation(
                "Excessively large number of partitions per request.".into(),
            ));
        }
        naming::validate_topic_name(name)?;
        if name == METADATA_TOPIC_NAME {
            return Err(MetadataError::InvalidRequest(RESERVED_NAME_MESSAGE.into()));
        }
        let state = self.state.borrow();
        let metadata = &state.metadata;
        if metadata.topic(name).is_some() {
            return Err(MetadataError::TopicAlreadyExists { name: name.into() });
        }
        let orphaned: Vec<&str> = self
            .orphans
            .iter()
            .filter(|o| o.topic == name)
            .map(|o| o.dir_name.as_str())
            .collect();
        if refuse_orphaned && !orphaned.is_empty() {
            return Err(MetadataError::OrphanedData(format!(
                "Topic '{name}' cannot be created: the data directory holds its partitions {} \
                 from a topic the metadata does not know. They are kept; stop the broker and run \
                 `ringlog recover-metadata` to adopt them, or move them out of the data directory.",
                orphaned.join(", ")
            )));
        }
        if name.contains(['.', '_']) {
            if let Some(existing) = metadata
                .topics
                .keys()
                .find(|existing| naming::names_collide(existing, name))
            {
                return Err(MetadataError::InvalidTopic(format!(
                    "Topic '{name}' collides with existing topic: {existing}"
                )));
            }
        }
        let configs = TopicConfigs::parse(configs)?;
        check_replication_factor(replication_factor)?;
        if partition_count < 1 {
            return Err(MetadataError::InvalidPartitions(
                "Number of partitions was set to an invalid non-positive value.".into(),
            ));
        }
        let partition_count = partition_count as usize;
        check_broker_partition_limit(metadata, partition_count)?;
        let mut loads = metadata.partition_count_by_shard();
        let start_shard = (state.topics_created_count % u64::from(metadata.shard_count)) as u32;
        Ok(MetadataRecord::TopicCreated {
            name: name.into(),
            id: naming::generate_topic_id(),
            partition_shards: place_partitions(&mut loads, start_shard, partition_count),
            replication_factor: 1,
            configs: configs.to_map(),
        })
    }

    fn plan_create_partitions(
        &self,
        name: &str,
        new_total: i32,
    ) -> Result<MetadataRecord, MetadataError> {
        let topic = self.existing_topic(name)?;
        let current = topic.partition_count();
        if new_total < current {
            return Err(MetadataError::InvalidPartitions(format!(
                "The topic {name} currently has {current} partition(s); {new_total} would not \
                 be an increase."
            )));
        }
        if new_total == current {
            return Err(MetadataError::InvalidPartitions(format!(
                "Topic already has {current} partition(s)."
            )));
        }
        if new_total as usize > PARTITIONS_PER_TOPIC_MAX {
            return Err(MetadataError::PolicyViolation(format!(
                "A topic may have at most {PARTITIONS_PER_TOPIC_MAX} partitions, not {new_total}."
            )));
        }
        let added_count = (new_total - current) as usize;
        let state = self.state.borrow();
        check_broker_partition_limit(&state.metadata, added_count)?;
        let mut loads = state.metadata.partition_count_by_shard();
        let start_shard = topic.partitions.last().map_or(0, |p| p.shard + 1);
        Ok(MetadataRecord::PartitionsAdded {
            id: topic.id,
            partition_shards: place_partitions(&mut loads, start_shard, added_count),
        })
    }

    async fn ensure_cluster_id(&self) -> Result<(), MetadataError> {
        let _permit = self.lock().await?;
        if self.snapshot().cluster_id.is_empty() {
            let id = naming::generate_cluster_id();
            tracing::info!(cluster_id = %id, "new cluster");
            self.change(MetadataRecord::ClusterIdSet { id }, false)
                .await?;
        }
        Ok(())
    }

    /// After a restart with fewer shards, moves each partition of a missing shard to the least
    /// loaded shard. The data stays where it is: partition directories do not depend on shards.
    async fn move_partitions_off_missing_shards(&self) -> Result<(), MetadataError> {
        let _permit = self.lock().await?;
        let metadata = self.snapshot();
        let shard_count = metadata.shard_count;
        let stranded: Vec<Arc<TopicMetadata>> = metadata
            .topics
            .values()
            .filter(|t| t.partitions.iter().any(|p| p.shard >= shard_count))
            .cloned()
            .collect();
        for topic in stranded {
            let mut loads = self.snapshot().partition_count_by_shard();
            let partition_shards: Vec<u32> = topic
                .partitions
                .iter()
                .map(|p| {
                    if p.shard < shard_count {
                        p.shard
                    } else {
                        place_partitions(&mut loads, 0, 1)[0]
                    }
                })
                .collect();
            tracing::warn!(
                topic = topic.name,
                shard_count,
                "moving partitions off shards this broker no longer runs"
            );
            let record = MetadataRecord::PartitionsMoved {
                id: topic.id,
                partition_shards,
            };
            self.change(record, false).await?;
        }
        Ok(())
    }

    /// Applies `record` to a copy of the state and, unless `validate_only`, persists it and
    /// installs the copy. Returns the resulting state. The caller holds the write lock.
    async fn change(
        &self,
        record: MetadataRecord,
        validate_only: bool,
    ) -> Result<MetadataState, MetadataError> {
        let mut next = self.state.borrow().clone();
        if let Err(reason) = next.apply(&record) {
            debug_assert!(false, "a planned change does not apply: {reason}");
            return Err(MetadataError::InvalidRequest(reason));
        }
        if validate_only {
            return Ok(next);
        }
        self.persist(&record).await?;
        *self.state.borrow_mut() = next.clone();
        Ok(next)
    }

    /// Appends the record as one batch and waits until it is durable.
    async fn persist(&self, record: &MetadataRecord) -> Result<(), MetadataError> {
        if let Some(reason) = self.failure.borrow().as_ref() {
            return Err(MetadataError::StoreFailed(reason.clone()));
        }
        let payload = records::encode(record);
        if payload.len() > RECORD_SIZE_MAX_BYTES {
            return Err(MetadataError::PolicyViolation(format!(
                "metadata record of {} bytes exceeds {RECORD_SIZE_MAX_BYTES}",
                payload.len()
            )));
        }
        let batch_bytes = batch::build_batch(now_ms(), 1, &payload, None);
        let mut guard = FailOnDrop {
            store: self,
            reason: Some("a metadata change was cancelled after its append started".into()),
        };
        let appended = match self.log.append(BytesMut::from(&batch_bytes[..]), 0).await {
            Ok(appended) => appended,
            Err(error) => {
                if refused_before_writing(&error) {
                    guard.reason = None;
                } else {
                    guard.reason = Some(error.to_string());
                }
                return Err(error.into());
            }
        };
        if let Err(error) = self.log.wait_durable(appended.last_offset + 1).await {
            guard.reason = Some(error.to_string());
            return Err(error.into());
        }
        self.log.set_high_watermark(self.log.log_end_offset());
        guard.reason = None;
        Ok(())
    }
}

/// Marks the store failed when a persist ends (or is dropped) with its record possibly in the
/// log but not in the snapshot.
struct FailOnDrop<'a> {
    store: &'a MetadataStore,
    reason: Option<String>,
}

impl Drop for FailOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(reason) = self.reason.take() {
            tracing::error!(%reason, "metadata store refuses changes until restarted");
            self.store.failure.borrow_mut().get_or_insert(reason);
        }
    }
}

/// Appends refused before any byte was written leave the log as it was.
fn refused_before_writing(error: &StorageError) -> bool {
    error.is_disk_full()
        || matches!(
            error,
            StorageError::CorruptBatch(_)
                | StorageError::BatchTooLarge { .. }
                | StorageError::InvalidTimestamp { .. }
        )
}

/// Compaction is not implemented; such a topic keeps all its data (see `TopicConfigs`).
/// The broker's own topics stay as it made them: deleting `__consumer_offsets` would lose every
/// committed offset, and more partitions would move groups to partitions without their data.
fn refuse_internal(name: &str, change: &str) -> Result<(), MetadataError> {
    if naming::is_internal_topic(name) {
        return Err(MetadataError::PolicyViolation(format!(
            "'{name}' is an internal topic and cannot be {change}"
        )));
    }
    Ok(())
}

fn warn_if_compacted(topic: &TopicMetadata) {
    if let Some(notice) = topic.compaction_notice() {
        tracing::warn!(topic = topic.name, "{notice}");
    }
}

fn topic_named(state: &MetadataState, name: &str) -> Result<Arc<TopicMetadata>, MetadataError> {
    state
        .metadata
        .topic(name)
        .cloned()
        .ok_or_else(|| MetadataError::UnknownTopic { name: name.into() })
}

fn check_replication_factor(replication_factor: i16) -> Result<(), MetadataError> {
    match replication_factor {
        1 | -1 => Ok(()),
        factor if factor < -1 || factor == 0 => Err(MetadataError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".into(),
        )),
        factor => Err(MetadataError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {factor} time(s): The target replication factor \
             of {factor} cannot be reached because only 1 broker(s) are registered."
        ))),
    }
}

fn check_broker_partition_limit(
    metadata: &ClusterMetadata,
    added_count: usize,
) -> Result<(), MetadataError> {
    let total = metadata.partition_count_total() + added_count;
    if total > PARTITIONS_PER_BROKER_MAX {
        return Err(MetadataError::PolicyViolation(format!(
            "The broker would hold {total} partitions; its limit is {PARTITIONS_PER_BROKER_MAX}."
        )));
    }
    Ok(())
}

/// An empty metadata log beside partition directories means the log was lost or cut by
/// recovery: starting a new cluster would orphan (and a cleanup would delete) that data.
async fn refuse_orphaned_partitions(data_dir: &Path) -> Result<(), MetadataError> {
    for name in file::list_dir(data_dir).await? {
        if partition_dirs::parse_dir_name(&name).is_none() {
            continue;
        }
        // Only a directory holding segments counts; `list_dir` fails on a plain file.
        let Ok(files) = file::list_dir(&data_dir.join(&name)).await else {
            continue;
        };
        if files.iter().any(|f| f.ends_with(".log")) {
            return Err(MetadataError::CorruptLog {
                offset: 0,
                reason: format!(
                    "the metadata log is missing or empty but {} holds partition {name}; \
                     refusing to start a new cluster over existing data: stop here and run \
                     `ringlog recover-metadata --data-dir {}` to rebuild the metadata of the \
                     partitions found, or move them away",
                    data_dir.display(),
                    data_dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// Refuses to open a metadata log with damage that is not a torn tail. Each change is made
/// durable before the next is written, so only the last record can be torn by a crash: an
/// invalid batch with a valid one after it is damage, and recovery would cut every change
/// after it. The segments are small (`metadata_log_config`), so they are read whole.
async fn refuse_damaged_log(dir: &Path, data_dir: &Path) -> Result<(), MetadataError> {
    let Ok(mut names) = file::list_dir(dir).await else {
        return Ok(());
    };
    names.retain(|n| n.ends_with(".log"));
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(bytes) = file::read_small_file(&path).await? else {
            continue;
        };
        if let Some(damage) = find_damage(&bytes) {
            return Err(MetadataError::CorruptLog {
                offset: damage.base_offset_after,
                reason: format!(
                    "{} is damaged at byte {} ({}), and {} valid change record(s) follow, which \
                     starting would cut. Restore the file from a copy, or stop here and run \
                     `ringlog recover-metadata --data-dir {}`: it keeps the records before the \
                     damage and rebuilds the topics of the partition directories it finds",
                    path.display(),
                    damage.position,
                    damage.reason,
                    damage.valid_batches_after,
                    data_dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// Damage in the middle of a metadata segment.
#[derive(Debug, PartialEq, Eq)]
struct Damage {
    position: usize,
    reason: String,
    valid_batches_after: usize,
    /// Base offset of the first valid batch after the damage.
    base_offset_after: i64,
}

/// Walks the segment's batches; at the first invalid one, looks for valid batches anywhere
/// after it. A torn or zeroed tail has none.
fn find_damage(bytes: &[u8]) -> Option<Damage> {
    // Where the magic byte sits in a batch header.
    const MAGIC_POSITION: usize = 16;
    let mut position = 0;
    let reason = loop {
        match batch::validate(&bytes[position..]) {
            Ok(header) => position += header.size_bytes(),
            Err(error) => break error.to_string(),
        }
    };
    let damaged_at = position;
    let mut valid_batches_after = 0;
    let mut base_offset_after = None;
    let mut candidate = damaged_at + 1;
    while candidate + BATCH_HEADER_SIZE_BYTES <= bytes.len() {
        if bytes[candidate + MAGIC_POSITION] == batch::MAGIC_V2 as u8 {
            if let Ok(header) = batch::validate(&bytes[candidate..]) {
                valid_batches_after += 1;
                base_offset_after.get_or_insert(header.base_offset.get());
                candidate += header.size_bytes();
                continue;
            }
        }
        candidate += 1;
    }
    base_offset_after.map(|base_offset_after| Damage {
        position: damaged_at,
        reason,
        valid_batches_after,
        base_offset_after,
    })
}

/// Finishes the deletion of partition directories of deleted topics, and reports (and
/// returns) those the metadata does not explain.
async fn settle_partition_dirs(
    data_dir: &Path,
    metadata: &ClusterMetadata,
) -> Result<Vec<OrphanDir>, MetadataError> {
    let (orphans, of_deleted) = partition_dirs::find_unexplained(
        data_dir,
        |topic, partition| {
            metadata
                .topic(topic)
                .is_some_and(|t| t.shard_of(partition).is_some())
        },
        &metadata.deleted_topic_ids,
    )
    .await?;
    for dir in of_deleted {
        tracing::info!(dir = %dir.display(), "removing a deleted topic's partition directory");
        partition_dirs::discard(&dir).await?;
    }
    for orphan in &orphans {
        tracing::warn!(
            dir = %data_dir.join(&orphan.dir_name).display(),
            marker = ?orphan.marker,
            "partition directory unknown to the metadata: its data is kept and not served; \
             run `ringlog recover-metadata` with the broker stopped to adopt it"
        );
    }
    Ok(orphans)
}

async fn replay(
    log: &PartitionLog,
    mut state: MetadataState,
) -> Result<MetadataState, MetadataError> {
    let log_start_offset = log.log_start_offset();
    if log_start_offset != 0 {
        return Err(MetadataError::CorruptLog {
            offset: 0,
            reason: format!("records below offset {log_start_offset} are missing"),
        });
    }
    let log_end_offset = log.log_end_offset();
    let mut offset = 0;
    while offset < log_end_offset {
        let limits = ReadLimits {
            end_offset_exclusive: log_end_offset,
            max_bytes: REPLAY_READ_BYTES,
        };
        let data = log.read(offset, limits).await?;
        if data.batches.is_empty() {
            return Err(MetadataError::CorruptLog {
                offset,
                reason: "no batch at this offset".into(),
            });
        }
        for bytes in &data.batches {
            let record = parse_batch(bytes, offset)?;
            state
                .apply(&record)
                .map_err(|reason| MetadataError::CorruptLog { offset, reason })?;
            offset += 1;
        }
    }
    Ok(state)
}

/// The record in one batch of the metadata log, which must sit at `offset`.
fn parse_batch(bytes: &[u8], offset: i64) -> Result<MetadataRecord, MetadataError> {
    let corrupt = |reason: String| MetadataError::CorruptLog { offset, reason };
    let header = batch::validate(bytes).map_err(|e| corrupt(e.to_string()))?;
    if header.base_offset.get() != offset {
        return Err(corrupt(format!(
            "batch has base offset {}",
            header.base_offset.get()
        )));
    }
    if header.records_count.get() != 1 || header.last_offset_delta.get() != 0 {
        return Err(corrupt(format!(
            "a metadata batch holds one record, this one {}",
            header.records_count.get()
        )));
    }
    let payload = &bytes[BATCH_HEADER_SIZE_BYTES..header.size_bytes()];
    records::decode(payload).map_err(corrupt)
}

#[cfg(test)]
mod tests;
