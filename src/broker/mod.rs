//! The broker on one shard: the shard's state (its partitions, its copy of the cluster
//! metadata, shard 0's controller), one handler per Kafka API, and the routing of each
//! partition's work to the shard that owns it. Handlers split requests by partition, send the
//! parts to their owners over the mesh (or serve them in place) and gather the answers.

mod alter_configs;
mod api_versions;
mod config_resource;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod fetch_session;
mod find_coordinator;
mod group_admin;
mod group_membership;
mod group_metrics;
mod group_offsets;
mod group_route;
mod incremental_alter_configs;
mod init_producer_id;
mod list_offsets;
pub mod messages;
mod metadata;
mod offset_for_leader_epoch;
mod produce;
mod scatter;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use glommio::sync::Semaphore;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use crate::cluster::partition_dirs;
use crate::cluster::{ClusterMetadata, MetadataError, MetadataStore, TopicMetadata};
use crate::config::ServerConfig;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::net::connection::Outcome;
use crate::partition::{Partition, TopicPartition};
use crate::protocol::{codes, encode_response, versions, ChunkedBuf, RequestFrame};
use crate::runtime::mesh::{Mesh, MeshError};
use crate::storage::notify::Notify;
use crate::storage::{BatchCache, PartitionLog, SpaceGuard};

use crate::partition::OffsetAnswer;
use messages::{ControllerError, ControllerOp, ControllerReply, ShardRequest};

/// Cross-shard requests handled at once per shard; senders wait beyond this.
const MESH_INFLIGHT_MAX: usize = 4096;
/// Partitions a shard opens at once when metadata gives it new ones.
const PARTITION_OPENS_CONCURRENT_MAX: usize = 64;
/// Producer ids a shard takes from the controller at a time.
const PRODUCER_ID_BLOCK: u64 = 1000;
/// How often group timers are checked; session timeouts are 6 s or more, so 100 ms is precise
/// enough and cheap.
const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often consumer lag is computed for the metrics: a scrape interval's worth.
const GROUP_METRICS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a shard waits for another to answer a metadata change or a controller call.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<ServerConfig>,
    pub mesh: Mesh<ShardRequest>,
    metadata: RefCell<Arc<ClusterMetadata>>,
    metadata_ready: Cell<bool>,
    metadata_changed: Notify,
    /// Shard 0 only: the durable metadata.
    store: Option<Rc<MetadataStore>>,
    /// Shard 0: one metadata change at a time, each applied on every shard before the next.
    controller_lock: Semaphore,
    partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    /// Every partition of the broker that cannot serve, whichever shard owns it, with why:
    /// owners tell every shard, so Metadata answers it as offline wherever it is asked.
    offline: RefCell<HashMap<TopicPartition, Rc<str>>>,
    cache: Rc<BatchCache>,
    space: Rc<SpaceGuard>,
    producer_ids: RefCell<Range<i64>>,
    fetch_sessions: fetch_session::FetchSessions,
    mesh_permits: Rc<Semaphore>,
    /// The consumer groups whose offsets partitions this shard owns.
    groups: Rc<GroupCoordinator>,
    /// Groups whose lag this shard exported last time, to withdraw those that went away.
    lag_reported_groups: RefCell<HashSet<String>>,
}

impl Shard {
    pub fn new(
        config: Arc<ServerConfig>,
        mesh: Mesh<ShardRequest>,
        store: Option<Rc<MetadataStore>>,
        cache: Rc<BatchCache>,
        space: Rc<SpaceGuard>,
        initial: Arc<ClusterMetadata>,
    ) -> Rc<Self> {
        let shard_id = mesh.shard_id();
        let groups = GroupCoordinator::new(config.group.clone());
        Rc::new(Shard {
            id: shard_id,
            count: mesh.shard_count(),
            config,
            mesh,
            metadata: RefCell::new(initial),
            metadata_ready: Cell::new(false),
            metadata_changed: Notify::default(),
            store,
            controller_lock: Semaphore::new(1),
            partitions: RefCell::new(HashMap::new()),
            offline: RefCell::new(HashMap::new()),
            cache,
            space,
            producer_ids: RefCell::new(0..0),
            fetch_sessions: fetch_session::FetchSessions::new(shard_id),
            mesh_permits: Rc::new(Semaphore::new(MESH_INFLIGHT_MAX as u64)),
            groups,
            lag_reported_groups: RefCell::new(HashSet::new()),
        })
    }

    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&self.metadata.borrow())
    }

    pub fn partition(&self, id: &TopicPartition) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(id).cloned()
    }

    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Shard 0: partition directories the metadata did not explain at start-up.
    pub fn orphaned_partition_dirs(&self) -> Vec<String> {
        self.store.as_ref().map_or_else(Vec::new, |store| {
            store.orphans().iter().map(|o| o.dir_name.clone()).collect()
        })
    }

    /// Why `id` cannot serve, when it cannot.
    pub fn offline_reason(&self, id: &TopicPartition) -> Option<Rc<str>> {
        self.offline.borrow().get(id).cloned()
    }

    /// The error for an operation on a partition this shard does not have open: a storage
    /// error for one that is offline, else "not here".
    pub(crate) fn absent_partition_code(&self, id: &TopicPartition) -> i16 {
        if self.offline.borrow().contains_key(id) {
            codes::KAFKA_STORAGE_ERROR
        } else {
            codes::NOT_LEADER_OR_FOLLOWER
        }
    }

    /// Marks one of this shard's partitions offline (or online again, with `None`) here and on
    /// every other shard. Logged once per new reason.
    fn set_offline(self: &Rc<Self>, id: &TopicPartition, reason: Option<String>) {
        let current = self.offline_reason(id);
        if current.as_deref() == reason.as_deref() {
            return;
        }
        match &reason {
            Some(reason) => {
                tracing::error!(partition = %id.dir_name(), %reason, "partition offline")
            }
            None => tracing::info!(partition = %id.dir_name(), "partition back online"),
        }
        self.note_offline(id.clone(), reason.clone());
        for shard in (0..self.count).filter(|s| *s != self.id) {
            let (this, partition, reason) = (Rc::clone(self), id.clone(), reason.clone());
            crate::runtime::spawn_local(async move {
                let message = ShardRequest::PartitionOffline { partition, reason };
                if let Err(error) = this.mesh.send(shard, message).await {
                    tracing::warn!(shard, %error, "cannot tell a shard about an offline partition");
                }
            })
            .detach();
        }
    }

    fn note_offline(&self, id: TopicPartition, reason: Option<String>) {
        let mut offline = self.offline.borrow_mut();
        match reason {
            Some(reason) => offline.insert(id, reason.into()),
            None => offline.remove(&id),
        };
    }

    pub(crate) fn fetch_sessions(&self) -> &fetch_session::FetchSessions {
        &self.fetch_sessions
    }

    /// Waits until this shard has applied its first metadata snapshot.
    pub async fn wait_ready(&self) {
        self.metadata_changed
            .wait_for(|| self.metadata_ready.get().then_some(()))
            .await;
    }

    /// The shard owning `partition`, or the error code for a partition that does not exist.
    pub fn owner_of(&self, partition: &TopicPartition) -> Result<usize, i16> {
        let metadata = self.metadata.borrow();
        metadata
            .topics
            .get(&partition.topic)
            .and_then(|topic| {
                usize::try_from(partition.partition)
                    .ok()
                    .and_then(|i| topic.partitions.get(i))
            })
            .map(|assignment| assignment.shard as usize)
            .ok_or(codes::UNKNOWN_TOPIC_OR_PARTITION)
    }

    /// Serves requests other shards send, each in its own task, at most `MESH_INFLIGHT_MAX`.
    pub fn serve_mesh(
        self: &Rc<Self>,
        mut receivers: glommio::channels::channel_mesh::Receivers<ShardRequest>,
    ) {
        for (_, receiver) in receivers.streams() {
            let shard = Rc::clone(self);
            crate::runtime::spawn_local(async move {
                while let Some(request) = receiver.recv().await {
                    let Ok(permit) = shard.mesh_permits.acquire_static_permit(1).await else {
                        break;
                    };
                    let shard = Rc::clone(&shard);
                    crate::runtime::spawn_local(async move {
                        shard.handle_shard_request(request).await;
                        drop(permit);
                    })
                    .detach();
                }
            })
            .detach();
        }
    }

    async fn handle_shard_request(self: &Rc<Self>, request: ShardRequest) {
        match request {
            ShardRequest::Produce {
                partition,
                records,
                acks,
                timeout_ms,
                reply,
            } => {
                let outcome = self
                    .produce_local(&partition, records, acks, Duration::from_millis(timeout_ms))
                    .await;
                let _ = reply.send(outcome);
            }
            ShardRequest::Fetch { reads, reply } => {
                let _ = reply.send(self.fetch_local(reads).await);
            }
            ShardRequest::WaitForData {
                waits,
                timeout_ms,
                reply,
            } => {
                self.wait_for_data_local(&waits, Duration::from_millis(timeout_ms))
                    .await;
                let _ = reply.send(());
            }
            ShardRequest::ListOffsets { queries, reply } => {
                let _ = reply.send(self.list_offsets_local(&queries).await);
            }
            ShardRequest::DeleteRecords { deletions, reply } => {
                let _ = reply.send(self.delete_records_local(deletions).await);
            }
            ShardRequest::EpochEndOffsets { queries, reply } => {
                let _ = reply.send(self.epoch_end_offsets_local(&queries));
            }
            ShardRequest::ApplyMetadata { snapshot, reply } => {
                self.apply_metadata(snapshot).await;
                let _ = reply.send(());
            }
            ShardRequest::Group {
                offsets_partition,
                op,
                reply,
            } => {
                let _ = reply.send(self.groups.handle(offsets_partition, op).await);
            }
            ShardRequest::Controller { op, reply } => {
                let _ = reply.send(self.run_controller_op(op).await);
            }
            ShardRequest::PartitionOffline { partition, reason } => {
                self.note_offline(partition, reason);
            }
        }
    }

    /// Opens, closes and reconfigures this shard's partitions to match `snapshot`.
    pub async fn apply_metadata(self: &Rc<Self>, snapshot: Arc<ClusterMetadata>) {
        if snapshot.version < self.metadata.borrow().version && self.metadata_ready.get() {
            return;
        }
        let mut wanted = HashSet::new();
        let mut to_open = Vec::new();
        for topic in snapshot.topics.values() {
            let log_config = topic
                .configs
                .effective_log_config(&self.config.log_defaults);
            for (index, assignment) in topic.partitions.iter().enumerate() {
                if assignment.shard as usize != self.id {
                    continue;
                }
                let id = TopicPartition::new(topic.name.clone(), index as i32);
                wanted.insert(id.clone());
                if let Some(existing) = self.partition(&id) {
                    if existing.log.config() != log_config {
                        existing.log.set_config(log_config.clone());
                    }
                    continue;
                }
                to_open.push((id, topic.id, log_config.clone()));
            }
        }
        // Each open waits on the disk (directory, marker and segment files, their syncs):
        // opened together, thousands of new partitions take seconds, not minutes.
        futures_util::stream::iter(to_open)
            .for_each_concurrent(PARTITION_OPENS_CONCURRENT_MAX, |(id, topic_id, config)| {
                self.open_partition(id, topic_id, config, &snapshot.deleted_topic_ids)
            })
            .await;
        let gone: Vec<TopicPartition> = self
            .partitions
            .borrow()
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            let partition = self.partitions.borrow_mut().remove(&id);
            if id.topic == OFFSETS_TOPIC {
                self.groups.unload(id.partition);
            }
            if let Some(partition) = partition {
                let _ = partition.close().await;
                if !snapshot.topics.contains_key(&id.topic) {
                    let dir = partition.log.dir().to_path_buf();
                    if let Err(error) = partition_dirs::discard(&dir).await {
                        tracing::warn!(dir = %dir.display(), %error, "cannot remove a deleted partition's data");
                    }
                }
            }
        }
        // Offline partitions of deleted topics are gone, whichever shard reported them.
        self.offline.borrow_mut().retain(|id, _| {
            snapshot
                .topic(&id.topic)
                .is_some_and(|topic| topic.shard_of(id.partition).is_some())
        });
        let topic_deleted = self
            .metadata
            .borrow()
            .topics
            .keys()
            .any(|name| !snapshot.topics.contains_key(name));
        *self.metadata.borrow_mut() = snapshot;
        self.metadata_ready.set(true);
        self.metadata_changed.notify_all();
        if topic_deleted {
            // Kafka drops the committed offsets of a deleted topic at once; DeleteTopics is
            // answered after every shard applied the change, so after the tombstones are
            // durable.
            self.expire_group_offsets().await;
        }
    }

    /// Opens one of this shard's partitions in its directory, or marks it offline with why.
    async fn open_partition(
        self: &Rc<Self>,
        id: TopicPartition,
        topic_id: uuid::Uuid,
        log_config: crate::storage::LogConfig,
        deleted_topic_ids: &std::collections::BTreeSet<uuid::Uuid>,
    ) {
        let dir = self.config.data_dir.join(id.dir_name());
        if let Err(refused) = partition_dirs::claim(&dir, topic_id, deleted_topic_ids).await {
            let reason = format!("directory {} cannot be used: {refused}", dir.display());
            self.set_offline(&id, Some(reason));
            return;
        }
        let opened = PartitionLog::open(
            &dir,
            log_config,
            Rc::clone(&self.cache),
            Rc::clone(&self.space),
        )
        .await;
        match opened {
            Ok((log, report)) => {
                // The storage layer warns about a torn or corrupt tail itself; a cut of
                // preallocated zeros is routine and not worth a line.
                if report.recovery.invalid_reason.is_some() {
                    tracing::info!(partition = %id.dir_name(), truncated_bytes = report.recovery.truncated_bytes, "recovered partition");
                }
                self.set_offline(&id, None);
                let partition = Partition::open(id.clone(), log, Default::default()).await;
                self.partitions
                    .borrow_mut()
                    .insert(id.clone(), Rc::clone(&partition));
                if id.topic == OFFSETS_TOPIC {
                    self.groups.load(id.partition, partition).await;
                }
            }
            Err(error) => {
                self.set_offline(&id, Some(format!("cannot open its log: {error}")));
            }
        }
    }

    pub fn close_groups(&self) {
        self.groups.close();
    }

    async fn expire_group_offsets(&self) {
        let metadata = self.metadata();
        self.groups
            .expire_offsets(|topic| metadata.topics.contains_key(topic))
            .await;
    }

    /// The coordinator's timers (session expiry, join and sync deadlines) every
    /// `GROUP_POLL_INTERVAL`, and offset expiry every `offsets.retention.check.interval.ms`.
    pub fn start_group_timers(self: &Rc<Self>) {
        let shard = Rc::downgrade(self);
        let expiry_interval =
            Duration::from_millis(self.config.group.offsets_retention_check_interval_ms);
        crate::runtime::spawn_local(async move {
            let mut since_expiry = Duration::ZERO;
            loop {
                glommio::timer::sleep(GROUP_POLL_INTERVAL).await;
                let Some(shard) = shard.upgrade() else {
                    break;
                };
                shard.groups.poll();
                since_expiry += GROUP_POLL_INTERVAL;
                if since_expiry >= expiry_interval {
                    since_expiry = Duration::ZERO;
                    crate::runtime::spawn_local(async move { shard.expire_group_offsets().await })
                        .detach();
                }
            }
        })
        .detach();
        // Apart from the timers: lag needs other shards' answers, which must not delay them.
        let shard = Rc::downgrade(self);
        crate::runtime::spawn_local(async move {
            loop {
                glommio::timer::sleep(GROUP_METRICS_INTERVAL).await;
                let Some(shard) = shard.upgrade() else {
                    break;
                };
                shard.publish_group_metrics().await;
            }
        })
        .detach();
    }

    /// Sends `snapshot` to every shard (this one included) and waits until all applied it.
    pub async fn broadcast_metadata(self: &Rc<Self>, snapshot: Arc<ClusterMetadata>) {
        let mut waits = Vec::new();
        for shard in (0..self.count).filter(|s| *s != self.id) {
            let snapshot = Arc::clone(&snapshot);
            waits.push(async move {
                let result = self
                    .mesh
                    .call(shard, CONTROL_TIMEOUT, |reply| {
                        ShardRequest::ApplyMetadata { snapshot, reply }
                    })
                    .await;
                if let Err(error) = result {
                    tracing::error!(shard, %error, "a shard did not apply new metadata");
                }
            });
        }
        self.apply_metadata(Arc::clone(&snapshot)).await;
        futures_util::future::join_all(waits).await;
    }

    /// Runs a metadata change on the controller (shard 0), wherever it is asked.
    pub async fn controller(self: &Rc<Self>, op: ControllerOp) -> ControllerReply {
        if self.id == 0 {
            return self.run_controller_op(op).await;
        }
        let fallback = match &op {
            ControllerOp::CreateTopic { .. }
            | ControllerOp::DeleteTopic { .. }
            | ControllerOp::CreatePartitions { .. }
            | ControllerOp::AlterConfigs { .. }
            | ControllerOp::ReplaceConfigs { .. } => {
                |e: MeshError| ControllerReply::Topic(Err(mesh_failure(e)))
            }
            ControllerOp::AllocateProducerIds { .. } => {
                |e: MeshError| ControllerReply::ProducerIds(Err(mesh_failure(e)))
            }
        };
        self.mesh
            .call(0, CONTROL_TIMEOUT, |reply| ShardRequest::Controller {
                op,
                reply,
            })
            .await
            .unwrap_or_else(fallback)
    }

    async fn run_controller_op(self: &Rc<Self>, op: ControllerOp) -> ControllerReply {
        let store = Rc::clone(self.store.as_ref().expect("controller ops run on shard 0"));
        let Ok(_permit) = self.controller_lock.acquire_permit(1).await else {
            return ControllerReply::ProducerIds(Err(ControllerError {
                code: codes::COORDINATOR_NOT_AVAILABLE,
                message: "shutting down".into(),
            }));
        };
        match op {
            ControllerOp::CreateTopic {
                name,
                partition_count,
                replication_factor,
                configs,
                validate_only,
            } => {
                let created = store
                    .create_topic(
                        &name,
                        partition_count,
                        replication_factor,
                        configs,
                        validate_only,
                    )
                    .await
                    .map_err(|e| ControllerError {
                        code: e.kafka_code(),
                        message: e.to_string(),
                    });
                if created.is_ok() && !validate_only {
                    self.broadcast_metadata(store.snapshot()).await;
                }
                ControllerReply::Topic(created)
            }
            ControllerOp::AllocateProducerIds { count } => {
                ControllerReply::ProducerIds(store.allocate_producer_ids(count).await.map_err(
                    |e| ControllerError {
                        code: e.kafka_code(),
                        message: e.to_string(),
                    },
                ))
            }
            ControllerOp::DeleteTopic { name, id } => {
                // A topic named by id may have been replaced by a namesake since.
                if id.is_some_and(|id| store.snapshot().topic(&name).map(|t| t.id) != Some(id)) {
                    return ControllerReply::Topic(Err(ControllerError {
                        code: codes::UNKNOWN_TOPIC_ID,
                        message: "This server does not host this topic ID.".into(),
                    }));
                }
                let deleted = store.delete_topic(&name).await;
                self.topic_changed(&store, deleted, false).await
            }
            ControllerOp::CreatePartitions {
                name,
                new_total,
                validate_only,
            } => {
                let grown = store
                    .create_partitions(&name, new_total, validate_only)
                    .await;
                self.topic_changed(&store, grown, validate_only).await
            }
            ControllerOp::AlterConfigs {
                name,
                changes,
                validate_only,
            } => {
                let altered = store.alter_configs(&name, changes, validate_only).await;
                self.topic_changed(&store, altered, validate_only).await
            }
            ControllerOp::ReplaceConfigs {
                name,
                all_configs,
                validate_only,
            } => {
                let replaced = store
                    .replace_configs(&name, all_configs, validate_only)
                    .await;
                self.topic_changed(&store, replaced, validate_only).await
            }
        }
    }

    /// Answers a topic change made on the controller, once every shard applied it.
    async fn topic_changed(
        self: &Rc<Self>,
        store: &MetadataStore,
        result: Result<Arc<TopicMetadata>, MetadataError>,
        validate_only: bool,
    ) -> ControllerReply {
        if result.is_ok() && !validate_only {
            self.broadcast_metadata(store.snapshot()).await;
        }
        ControllerReply::Topic(result.map_err(|e| ControllerError {
            code: e.kafka_code(),
            message: e.to_string(),
        }))
    }

    /// A fresh producer id from this shard's block, refilled from the controller.
    pub async fn next_producer_id(self: &Rc<Self>) -> Result<i64, ControllerError> {
        if let Some(id) = self.producer_ids.borrow_mut().next() {
            return Ok(id);
        }
        let reply = self
            .controller(ControllerOp::AllocateProducerIds {
                count: PRODUCER_ID_BLOCK,
            })
            .await;
        let block = match reply {
            ControllerReply::ProducerIds(result) => result?,
            ControllerReply::Topic(_) => unreachable!("the controller answers in kind"),
        };
        let mut ids = self.producer_ids.borrow_mut();
        *ids = block;
        ids.next().ok_or(ControllerError {
            code: codes::COORDINATOR_NOT_AVAILABLE,
            message: "empty producer id block".into(),
        })
    }

    async fn list_offsets_local(&self, queries: &[(TopicPartition, i64)]) -> Vec<OffsetAnswer> {
        let mut answers = Vec::with_capacity(queries.len());
        for (id, timestamp) in queries {
            answers.push(match self.partition(id) {
                Some(partition) => partition.list_offset(*timestamp).await,
                None => OffsetAnswer {
                    error_code: self.absent_partition_code(id),
                    offset: -1,
                    timestamp_ms: -1,
                    leader_epoch: -1,
                },
            });
        }
        answers
    }

    /// Housekeeping for every partition of this shard: flush by time, roll, retention, idle
    /// tails, free-space reading, foreign buffers.
    pub async fn tick(self: &Rc<Self>, check_retention: bool) {
        crate::storage::file::collect_foreign_garbage();
        if let Err(error) = self.space.refresh(Duration::ZERO).await {
            tracing::warn!(%error, "cannot read free disk space");
        }
        let now = crate::storage::now_ms();
        for partition in self.partitions() {
            if let Some(failure) = partition.log.failure() {
                self.set_offline(&partition.id, Some(format!("its log failed: {failure}")));
            }
            partition.tick(now).await;
            if let Err(error) = partition.log.tick(now, check_retention).await {
                tracing::warn!(partition = %partition.id.dir_name(), %error, "housekeeping failed");
            }
        }
    }

    /// Flushes and closes every partition, for a clean shutdown.
    pub async fn close_partitions(&self) {
        let partitions: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for partition in partitions {
            if let Err(error) = partition.close().await {
                tracing::error!(partition = %partition.id.dir_name(), %error, "flush at shutdown failed");
            }
        }
    }

    /// Handles one request frame from a client connection.
    pub async fn handle_frame(self: Rc<Self>, frame: Bytes, client_host: Rc<str>) -> Outcome {
        let Some((api_key, api_version, correlation_id)) = crate::protocol::frame::peek_ids(&frame)
        else {
            return Outcome::Close(format!(
                "frame of {} bytes has no request header",
                frame.len()
            ));
        };
        if api_key == ApiKey::ApiVersions as i16 && !versions::is_supported(api_key, api_version) {
            // The protocol's answer to an unknown ApiVersions version: v0 format, the error, and
            // what is supported, so the client can retry.
            return api_versions::unsupported(correlation_id);
        }
        if !versions::is_supported(api_key, api_version) {
            return Outcome::Close(format!(
                "unsupported API key {api_key} version {api_version}"
            ));
        }
        let request = match RequestFrame::parse(frame, client_host) {
            Ok(request) => request,
            Err(error) => return Outcome::Close(error.to_string()),
        };
        let result = match request.api_key {
            ApiKey::ApiVersions => api_versions::handle(&request),
            ApiKey::Metadata => metadata::handle(&self, &request).await,
            ApiKey::FindCoordinator => find_coordinator::handle(&self, &request).await,
            ApiKey::JoinGroup => group_membership::join(&self, &request).await,
            ApiKey::SyncGroup => group_membership::sync(&self, &request).await,
            ApiKey::Heartbeat => group_membership::heartbeat(&self, &request).await,
            ApiKey::LeaveGroup => group_membership::leave(&self, &request).await,
            ApiKey::OffsetCommit => group_offsets::commit(&self, &request).await,
            ApiKey::OffsetFetch => group_offsets::fetch(&self, &request).await,
            ApiKey::OffsetDelete => group_offsets::delete(&self, &request).await,
            ApiKey::ListGroups => group_admin::list(&self, &request).await,
            ApiKey::DescribeGroups => group_admin::describe(&self, &request).await,
            ApiKey::DeleteGroups => group_admin::delete(&self, &request).await,
            ApiKey::Produce => produce::handle(&self, &request).await,
            ApiKey::Fetch => fetch::handle(&self, &request).await,
            ApiKey::ListOffsets => list_offsets::handle(&self, &request).await,
            ApiKey::CreateTopics => create_topics::handle(&self, &request).await,
            ApiKey::InitProducerId => init_producer_id::handle(&self, &request).await,
            ApiKey::DeleteTopics => delete_topics::handle(&self, &request).await,
            ApiKey::CreatePartitions => create_partitions::handle(&self, &request).await,
            ApiKey::DescribeConfigs => describe_configs::handle(&self, &request),
            ApiKey::AlterConfigs => alter_configs::handle(&self, &request).await,
            ApiKey::IncrementalAlterConfigs => {
                incremental_alter_configs::handle(&self, &request).await
            }
            ApiKey::DescribeCluster => describe_cluster::handle(&self, &request),
            ApiKey::DeleteRecords => delete_records::handle(&self, &request).await,
            ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(&self, &request).await,
            other => Err(anyhow::anyhow!(
                "API {other:?} is advertised but has no handler"
            )),
        };
        result.unwrap_or_else(|error| {
            Outcome::Close(format!("{:?} v{api_version}: {error:#}", request.api_key))
        })
    }
}

fn mesh_failure(error: MeshError) -> ControllerError {
    ControllerError {
        code: codes::COORDINATOR_NOT_AVAILABLE,
        message: error.to_string(),
    }
}

/// Encodes a response to `request`.
pub(crate) fn respond<R: Encodable + HeaderVersion>(
    request: &RequestFrame,
    response: &R,
) -> anyhow::Result<Outcome> {
    respond_with(ChunkedBuf::new(), request, response)
}

/// Encodes a response whose records were registered in `buf`.
pub(crate) fn respond_with<R: Encodable + HeaderVersion>(
    buf: ChunkedBuf,
    request: &RequestFrame,
    response: &R,
) -> anyhow::Result<Outcome> {
    Ok(Outcome::Respond(encode_response(
        buf,
        request.correlation_id(),
        request.api_version(),
        response,
    )?))
}
