//! One shard's group coordinator: the groups whose `__consumer_offsets` partition this shard
//! owns, their committed offsets, and the records that make both durable. A commit or an
//! assignment is answered only once its record is durable in the partition's log; at
//! start-up the partition is read back to rebuild every group. Never holds a borrow of its
//! maps across an await: each step borrows, changes, lets go, then waits.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::{Semaphore, StaticPermit};

use super::config::GroupConfig;
use super::ops::{
    CommitRequest, FetchedOffset, GroupDescription, GroupListing, GroupOp, GroupReply, JoinRequest,
    JoinResponse, LeaveResponse, OffsetFetchResponse, SyncRequest, SyncResponse,
};
use super::records::{self, GroupRecord, GroupValue, OffsetValue};
use super::state::{Committed, Group, GroupState, JoinStep, Now, SyncStep};
use crate::partition::{Partition, TopicPartition};
use crate::protocol::codes;
use crate::storage::batch;

/// How long an append to the offsets log may take before the request fails.
const APPEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read at a time while loading a partition at start-up.
const LOAD_READ_BYTES: usize = 1024 * 1024;
/// Records per batch when many are written at once (deletions, expiry).
const RECORDS_PER_BATCH_MAX: usize = 5_000;
/// Longest a SyncGroup waits for the leader; the group's own sync deadline (the rebalance
/// timeout) normally answers it first.
const SYNC_WAIT_MAX: Duration = Duration::from_secs(30 * 60);

/// Writers of an offsets log each hold one permit; a rewrite takes them all.
const WRITER_PERMITS: u64 = 1 << 20;

/// One offsets partition this shard owns. Kafka compacts `__consumer_offsets`; ringlog
/// instead rewrites a partition's live state (each group's metadata and offsets) at the log's
/// end once the log has grown well past it, then moves the log start to the rewrite, so the
/// log stays a small multiple of what it holds and loading stays fast.
struct OffsetsLog {
    partition: Rc<Partition>,
    /// A commit holds a permit from its append until its offsets are in the map, so a rewrite
    /// (which copies the map) never drops an appended commit it has not seen.
    writers: Rc<Semaphore>,
    /// The log's size right after the last rewrite: about the live state's size.
    live_bytes: Cell<u64>,
    rewriting: Cell<bool>,
}

pub struct GroupCoordinator {
    config: GroupConfig,
    /// The offsets partitions this shard owns, by index.
    partitions: RefCell<HashMap<i32, Rc<OffsetsLog>>>,
    groups: RefCell<HashMap<String, Group>>,
    clock_origin: Instant,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Rc<Self> {
        Rc::new(GroupCoordinator {
            config,
            partitions: RefCell::new(HashMap::new()),
            groups: RefCell::new(HashMap::new()),
            clock_origin: Instant::now(),
        })
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn now(&self) -> Now {
        Now {
            monotonic_ms: self.clock_origin.elapsed().as_millis() as i64,
            wall_ms: crate::storage::now_ms(),
        }
    }

    pub fn group_count(&self) -> usize {
        self.groups.borrow().len()
    }

    /// (group, partition, committed offset) of every offset this shard keeps.
    pub fn committed_offsets(&self) -> Vec<(String, TopicPartition, i64)> {
        let groups = self.groups.borrow();
        let mut committed = Vec::new();
        for group in groups.values().filter(|g| g.state() != GroupState::Dead) {
            for (partition, offset) in &group.offsets {
                committed.push((group.id.clone(), partition.clone(), offset.value.offset));
            }
        }
        committed
    }

    /// Rebuilds the groups stored in offsets partition `index` and starts serving them.
    pub async fn load(&self, index: i32, partition: Rc<Partition>) {
        let started = Instant::now();
        let mut metadata: HashMap<String, Option<GroupValue>> = HashMap::new();
        let mut offsets: HashMap<String, HashMap<TopicPartition, Committed>> = HashMap::new();
        let mut offset = partition.log.log_start_offset();
        let mut record_count = 0u64;
        'read: while offset < partition.log.high_watermark() {
            let fetched = partition.fetch(offset, LOAD_READ_BYTES).await;
            if fetched.error_code != codes::NONE || fetched.data.batches.is_empty() {
                tracing::error!(
                    partition = index,
                    offset,
                    code = fetched.error_code,
                    "cannot read the offsets log; groups after this point are not restored"
                );
                break;
            }
            for bytes in &fetched.data.batches {
                let Ok(header) = batch::peek_header(bytes) else {
                    break 'read;
                };
                let (base_offset, next) = (header.base_offset.get(), header.last_offset() + 1);
                if next <= offset {
                    break 'read;
                }
                offset = next;
                if header.is_control() || header.compression_codec() != 0 {
                    continue;
                }
                let entries = match records::batch_records(bytes) {
                    Ok(entries) => entries,
                    Err(error) => {
                        tracing::warn!(partition = index, base_offset, %error, "skipping an unreadable batch of the offsets log");
                        continue;
                    }
                };
                for (delta, (key, value)) in entries.into_iter().enumerate() {
                    record_count += 1;
                    match GroupRecord::decode(key, value) {
                        Ok(Some(GroupRecord::Offset {
                            group_id,
                            partition,
                            value,
                        })) => {
                            let group = offsets.entry(group_id).or_default();
                            match value {
                                Some(value) => {
                                    let record_offset = base_offset + delta as i64;
                                    group.insert(
                                        partition,
                                        Committed {
                                            value,
                                            record_offset,
                                        },
                                    );
                                }
                                None => {
                                    group.remove(&partition);
                                }
                            }
                        }
                        Ok(Some(GroupRecord::Group { group_id, value })) => {
                            metadata.insert(group_id, value);
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(partition = index, base_offset, %error, "skipping an unreadable record of the offsets log");
                        }
                    }
                }
            }
        }
        let now = self.now();
        let mut restored = Vec::new();
        for (group_id, value) in metadata {
            let group_offsets = offsets.remove(&group_id).unwrap_or_default();
            if value.is_none() && group_offsets.is_empty() {
                continue;
            }
            let mut group = match value {
                Some(value) => Group::restore(group_id.clone(), index, value, now),
                None => Group::new(group_id.clone(), index, now),
            };
            group.offsets = group_offsets;
            restored.push(group);
        }
        for (group_id, group_offsets) in offsets {
            if group_offsets.is_empty() {
                continue;
            }
            let mut group = Group::new(group_id, index, now);
            group.offsets = group_offsets;
            restored.push(group);
        }
        let group_count = restored.len();
        {
            let mut groups = self.groups.borrow_mut();
            for group in restored {
                groups.insert(group.id.clone(), group);
            }
        }
        let live_bytes = partition.log.size_bytes();
        self.partitions.borrow_mut().insert(
            index,
            Rc::new(OffsetsLog {
                partition,
                writers: Rc::new(Semaphore::new(WRITER_PERMITS)),
                live_bytes: Cell::new(live_bytes),
                rewriting: Cell::new(false),
            }),
        );
        if record_count > 0 {
            tracing::info!(
                partition = index,
                groups = group_count,
                records = record_count,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded consumer groups"
            );
        }
    }

    /// Stops coordinating the groups of offsets partition `index` (it moved or was deleted).
    pub fn unload(&self, index: i32) {
        self.partitions.borrow_mut().remove(&index);
        let mut groups = self.groups.borrow_mut();
        groups.retain(|_, group| {
            let keep = group.offsets_partition != index;
            if !keep {
                group.shut_down(codes::NOT_COORDINATOR);
            }
            keep
        });
    }

    /// The broker is stopping: every member waiting in a join or sync is answered, and no
    /// group accepts more work. What is stored stays as it is for the next start.
    pub fn close(&self) {
        for group in self.groups.borrow_mut().values_mut() {
            group.shut_down(codes::NOT_COORDINATOR);
        }
    }

    /// Runs one group operation. `offsets_partition` is the partition the group maps to.
    pub async fn handle(self: &Rc<Self>, offsets_partition: i32, op: GroupOp) -> GroupReply {
        if let GroupOp::List { states } = &op {
            return GroupReply::List(self.list(states));
        }
        if !self.partitions.borrow().contains_key(&offsets_partition) {
            return GroupReply::failed(&op, codes::NOT_COORDINATOR);
        }
        if let Some(group_id) = GroupReply::group_of(&op) {
            self.run_group_timers(group_id);
        }
        match op {
            GroupOp::Join(request) => GroupReply::Join(self.join(offsets_partition, request).await),
            GroupOp::Sync(request) => GroupReply::Sync(self.sync(request).await),
            GroupOp::Heartbeat(request) => {
                let now = self.now();
                let code = match self.groups.borrow_mut().get_mut(&request.group_id) {
                    Some(group) => group.heartbeat(
                        &request.member_id,
                        request.group_instance_id.as_deref(),
                        request.generation_id,
                        now,
                    ),
                    None => codes::UNKNOWN_MEMBER_ID,
                };
                GroupReply::Code(code)
            }
            GroupOp::Leave { group_id, members } => {
                let now = self.now();
                let answer = match self.groups.borrow_mut().get_mut(&group_id) {
                    Some(group) => LeaveResponse {
                        error_code: codes::NONE,
                        members: group.leave(&members, now, &self.config),
                    },
                    None => LeaveResponse {
                        error_code: codes::NONE,
                        members: vec![codes::UNKNOWN_MEMBER_ID; members.len()],
                    },
                };
                self.persist_changes(&group_id);
                GroupReply::Leave(answer)
            }
            GroupOp::Commit(request) => {
                GroupReply::Commit(self.commit(offsets_partition, request).await)
            }
            GroupOp::FetchOffsets {
                group_id,
                partitions,
            } => GroupReply::FetchOffsets(self.fetch_offsets(&group_id, partitions)),
            GroupOp::Describe { group_id } => GroupReply::Describe(self.describe(&group_id)),
            GroupOp::Delete { group_id } => GroupReply::Code(self.delete(&group_id).await),
            GroupOp::DeleteOffsets {
                group_id,
                partitions,
            } => {
                let (code, per_partition) = self.delete_offsets(&group_id, partitions).await;
                GroupReply::DeleteOffsets(code, per_partition)
            }
            GroupOp::List { .. } => unreachable!("answered above"),
        }
    }

    async fn join(self: &Rc<Self>, offsets_partition: i32, request: JoinRequest) -> JoinResponse {
        let member_id = request.member_id.clone();
        if request.group_id.is_empty() {
            return JoinResponse::error(codes::INVALID_GROUP_ID, &member_id);
        }
        let session_range =
            self.config.group_min_session_timeout_ms..=self.config.group_max_session_timeout_ms;
        if !session_range.contains(&request.session_timeout_ms) {
            return JoinResponse::error(codes::INVALID_SESSION_TIMEOUT, &member_id);
        }
        let metadata_bytes: usize = request
            .protocols
            .iter()
            .map(|(name, metadata)| name.len() + metadata.len())
            .sum();
        if metadata_bytes > self.config.member_metadata_max_bytes {
            tracing::warn!(group = %request.group_id, metadata_bytes, "refusing a join with oversized protocol metadata");
            return JoinResponse::error(codes::INVALID_REQUEST, &member_id);
        }
        let wait_ms = u64::try_from(request.rebalance_timeout_ms.max(request.session_timeout_ms))
            .unwrap_or(0)
            + 5_000;
        let group_id = request.group_id.clone();
        let now = self.now();
        let step = {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(&group_id) {
                if !member_id.is_empty() {
                    return JoinResponse::error(codes::UNKNOWN_MEMBER_ID, &member_id);
                }
                if groups.len() >= self.config.groups_per_shard_max {
                    tracing::warn!(group = %group_id, "refusing a new group: this shard coordinates its maximum");
                    return JoinResponse::error(codes::COORDINATOR_NOT_AVAILABLE, &member_id);
                }
                groups.insert(
                    group_id.clone(),
                    Group::new(group_id.clone(), offsets_partition, now),
                );
            }
            let group = groups.get_mut(&group_id).expect("inserted above");
            group.join(request, now, &self.config)
        };
        self.persist_changes(&group_id);
        match step {
            JoinStep::Reply(response) => response,
            JoinStep::Wait(waiter) => {
                let answer = glommio::timer::timeout(Duration::from_millis(wait_ms), async {
                    Ok(waiter.await)
                })
                .await;
                match answer {
                    Ok(Ok(response)) => response,
                    // The group went away (deleted, unloaded) or never completed the join.
                    Ok(Err(_)) => JoinResponse::error(codes::NOT_COORDINATOR, &member_id),
                    Err(_) => JoinResponse::error(codes::REBALANCE_IN_PROGRESS, &member_id),
                }
            }
        }
    }

    async fn sync(self: &Rc<Self>, request: SyncRequest) -> SyncResponse {
        let group_id = request.group_id.clone();
        let now = self.now();
        let step = match self.groups.borrow_mut().get_mut(&group_id) {
            Some(group) => group.sync(request, now),
            None => return SyncResponse::error(codes::UNKNOWN_MEMBER_ID),
        };
        let waiter = match step {
            SyncStep::Reply(response) => return response,
            SyncStep::Wait(waiter) => waiter,
            SyncStep::Persist { generation, waiter } => {
                let record = self.groups.borrow().get(&group_id).map(|group| {
                    (
                        group.offsets_partition,
                        GroupRecord::Group {
                            group_id: group_id.clone(),
                            value: Some(group.stored_value()),
                        },
                    )
                });
                let stored = match record {
                    Some((index, record)) => self.append(index, &[record]).await.is_ok(),
                    None => false,
                };
                let now = self.now();
                if let Some(group) = self.groups.borrow_mut().get_mut(&group_id) {
                    group.complete_sync(generation, stored, now, &self.config);
                }
                waiter
            }
        };
        let answer = glommio::timer::timeout(SYNC_WAIT_MAX, async { Ok(waiter.await) }).await;
        match answer {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => SyncResponse::error(codes::NOT_COORDINATOR),
            Err(_) => SyncResponse::error(codes::REBALANCE_IN_PROGRESS),
        }
    }

    async fn commit(self: &Rc<Self>, offsets_partition: i32, request: CommitRequest) -> Vec<i16> {
        let count = request.offsets.len();
        if request.group_id.is_empty() {
            return vec![codes::INVALID_GROUP_ID; count];
        }
        let now = self.now();
        {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(&request.group_id) {
                if request.generation_id >= 0 {
                    return vec![codes::ILLEGAL_GENERATION; count];
                }
                if groups.len() >= self.config.groups_per_shard_max {
                    return vec![codes::COORDINATOR_NOT_AVAILABLE; count];
                }
                let group = Group::new(request.group_id.clone(), offsets_partition, now);
                groups.insert(request.group_id.clone(), group);
            }
            let group = groups.get_mut(&request.group_id).expect("inserted above");
            if let Err(code) = group.check_commit(
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation_id,
                now,
            ) {
                return vec![code; count];
            }
        }
        let mut answers = vec![codes::NONE; count];
        let mut written = Vec::new();
        let mut entries = Vec::new();
        for (index, (partition, commit)) in request.offsets.into_iter().enumerate() {
            if commit.metadata.len() > self.config.offset_metadata_max_bytes {
                answers[index] = codes::OFFSET_METADATA_TOO_LARGE;
                continue;
            }
            let value = OffsetValue {
                offset: commit.offset,
                leader_epoch: commit.leader_epoch,
                metadata: commit.metadata,
                commit_timestamp_ms: now.wall_ms,
            };
            entries.push(GroupRecord::Offset {
                group_id: request.group_id.clone(),
                partition: partition.clone(),
                value: Some(value.clone()),
            });
            written.push((index, partition, value));
        }
        if entries.is_empty() {
            return answers;
        }
        let Some(_permit) = self.writer_permit(offsets_partition).await else {
            return vec![codes::NOT_COORDINATOR; count];
        };
        match self.append(offsets_partition, &entries).await {
            Ok(base_offset) => {
                if let Some(group) = self.groups.borrow_mut().get_mut(&request.group_id) {
                    for (delta, (_, partition, value)) in written.into_iter().enumerate() {
                        let record_offset = base_offset + delta as i64;
                        group.apply_commit(
                            partition,
                            Committed {
                                value,
                                record_offset,
                            },
                        );
                    }
                }
            }
            Err(code) => {
                for (index, _, _) in written {
                    answers[index] = code;
                }
            }
        }
        answers
    }

    fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> OffsetFetchResponse {
        let groups = self.groups.borrow();
        let group = groups.get(group_id);
        let found = |partition: TopicPartition, committed: Option<&Committed>| match committed {
            Some(committed) => FetchedOffset {
                partition,
                offset: committed.value.offset,
                leader_epoch: committed.value.leader_epoch,
                metadata: committed.value.metadata.clone(),
                error_code: codes::NONE,
            },
            None => FetchedOffset {
                partition,
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
                error_code: codes::NONE,
            },
        };
        let offsets = match partitions {
            Some(partitions) => partitions
                .into_iter()
                .map(|p| {
                    let committed = group.and_then(|g| g.offsets.get(&p));
                    found(p, committed)
                })
                .collect(),
            None => {
                let mut all: Vec<FetchedOffset> = group
                    .map(|g| {
                        g.offsets
                            .iter()
                            .map(|(p, c)| found(p.clone(), Some(c)))
                            .collect()
                    })
                    .unwrap_or_default();
                all.sort_by(|a, b| a.partition.cmp(&b.partition));
                all
            }
        };
        OffsetFetchResponse {
            error_code: codes::NONE,
            offsets,
        }
    }

    fn list(&self, states: &[String]) -> Vec<GroupListing> {
        let groups = self.groups.borrow();
        let mut listed: Vec<GroupListing> = groups
            .values()
            .filter(|g| g.state() != GroupState::Dead)
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state().name()))
            })
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                state: g.state().name(),
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listed
    }

    fn describe(&self, group_id: &str) -> GroupDescription {
        match self.groups.borrow().get(group_id) {
            Some(group) => group.describe(),
            None => GroupDescription {
                group_id: group_id.to_string(),
                error_code: codes::NONE,
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            },
        }
    }

    /// DeleteGroups for one group: only an empty group can go. The group leaves the map
    /// before its tombstones are written so no member can join it meanwhile; a failed write
    /// puts it back.
    async fn delete(self: &Rc<Self>, group_id: &str) -> i16 {
        let index = match self.groups.borrow().get(group_id) {
            Some(group) => group.offsets_partition,
            None => return codes::GROUP_ID_NOT_FOUND,
        };
        let Some(_permit) = self.writer_permit(index).await else {
            return codes::NOT_COORDINATOR;
        };
        let group = {
            let mut groups = self.groups.borrow_mut();
            match groups.get(group_id).map(Group::state) {
                None | Some(GroupState::Dead) => return codes::GROUP_ID_NOT_FOUND,
                Some(GroupState::Empty) => {}
                Some(_) => return codes::NON_EMPTY_GROUP,
            }
            groups.remove(group_id).expect("checked above")
        };
        let mut tombstones: Vec<GroupRecord> = group
            .offsets
            .keys()
            .map(|partition| GroupRecord::Offset {
                group_id: group_id.to_string(),
                partition: partition.clone(),
                value: None,
            })
            .collect();
        tombstones.push(GroupRecord::Group {
            group_id: group_id.to_string(),
            value: None,
        });
        match self.append(group.offsets_partition, &tombstones).await {
            Ok(_) => codes::NONE,
            Err(code) => {
                self.groups
                    .borrow_mut()
                    .entry(group_id.to_string())
                    .or_insert(group);
                code
            }
        }
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not consume.
    async fn delete_offsets(
        self: &Rc<Self>,
        group_id: &str,
        partitions: Vec<TopicPartition>,
    ) -> (i16, Vec<i16>) {
        let mut answers = vec![codes::NONE; partitions.len()];
        let index = match self.groups.borrow().get(group_id) {
            Some(group) => group.offsets_partition,
            None => return (codes::GROUP_ID_NOT_FOUND, Vec::new()),
        };
        let Some(_permit) = self.writer_permit(index).await else {
            return (codes::NOT_COORDINATOR, Vec::new());
        };
        let removed = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups
                .get_mut(group_id)
                .filter(|g| g.state() != GroupState::Dead)
            else {
                return (codes::GROUP_ID_NOT_FOUND, Vec::new());
            };
            let subscribed = if group.state() == GroupState::Empty {
                Vec::new()
            } else {
                group.subscribed_topics()
            };
            let mut removed = Vec::new();
            for (answer, partition) in answers.iter_mut().zip(&partitions) {
                if subscribed.contains(&partition.topic) {
                    *answer = codes::GROUP_SUBSCRIBED_TO_TOPIC;
                } else if let Some(committed) = group.offsets.remove(partition) {
                    removed.push((partition.clone(), committed));
                }
            }
            removed
        };
        if removed.is_empty() {
            return (codes::NONE, answers);
        }
        let tombstones: Vec<GroupRecord> = removed
            .iter()
            .map(|(partition, _)| GroupRecord::Offset {
                group_id: group_id.to_string(),
                partition: partition.clone(),
                value: None,
            })
            .collect();
        match self.append(index, &tombstones).await {
            Ok(_) => (codes::NONE, answers),
            Err(code) => {
                if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
                    for (partition, committed) in removed {
                        group.apply_commit(partition, committed);
                    }
                }
                (code, answers)
            }
        }
    }

    /// Timers of every group; stores what changed.
    /// Runs `group_id`'s due timers now (session expiry above all), so that a request is
    /// answered as Kafka would, whose timers fire on time, not at the next poll.
    fn run_group_timers(self: &Rc<Self>, group_id: &str) {
        let now = self.now();
        let record = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return;
            };
            group.poll(now, &self.config);
            group
                .take_persist()
                .then(|| (group.offsets_partition, stored_record(group)))
        };
        if let Some((index, record)) = record {
            self.spawn_append(index, vec![record]);
        }
    }

    pub fn poll(self: &Rc<Self>) {
        let now = self.now();
        let mut changed = Vec::new();
        for group in self.groups.borrow_mut().values_mut() {
            group.poll(now, &self.config);
            if group.take_persist() {
                changed.push((group.offsets_partition, stored_record(group)));
            }
        }
        for (index, record) in changed {
            self.spawn_append(index, vec![record]);
        }
        let floor_bytes = self.config.offsets_log_rewrite_min_bytes;
        let due: Vec<i32> = self
            .partitions
            .borrow()
            .iter()
            .filter(|(_, log)| {
                !log.rewriting.get()
                    && log.partition.log.size_bytes()
                        > floor_bytes.max(log.live_bytes.get().saturating_mul(2))
            })
            .map(|(index, _)| *index)
            .collect();
        for index in due {
            let coordinator = Rc::clone(self);
            crate::runtime::spawn_local(async move { coordinator.rewrite(index).await }).detach();
        }
    }

    /// A writer's permit on offsets partition `index`; `None` once it is gone from here.
    async fn writer_permit(&self, index: i32) -> Option<StaticPermit> {
        let writers = self
            .partitions
            .borrow()
            .get(&index)
            .map(|log| Rc::clone(&log.writers))?;
        writers.acquire_static_permit(1).await.ok()
    }

    /// Writes the live state of offsets partition `index` again at its end and drops
    /// everything before that copy.
    pub async fn rewrite(self: &Rc<Self>, index: i32) {
        let Some(log) = self.partitions.borrow().get(&index).cloned() else {
            return;
        };
        log.rewriting.set(true);
        let size_before = log.partition.log.size_bytes();
        let result = async {
            let _all = log
                .writers
                .acquire_permit(WRITER_PERMITS)
                .await
                .map_err(|_| codes::NOT_COORDINATOR)?;
            let live = self.live_records(index);
            let mut first_offset = None;
            for chunk in live.chunks(RECORDS_PER_BATCH_MAX) {
                let base_offset = self.append(index, chunk).await?;
                first_offset.get_or_insert(base_offset);
            }
            Ok::<i64, i16>(first_offset.unwrap_or_else(|| log.partition.log.high_watermark()))
        }
        .await;
        match result {
            Ok(first_offset) => match log.partition.log.delete_records(first_offset).await {
                Ok(_) => {
                    let size_after = log.partition.log.size_bytes();
                    log.live_bytes.set(size_after);
                    tracing::info!(
                        partition = index,
                        size_before,
                        size_after,
                        "rewrote the offsets log's live state"
                    );
                }
                Err(error) => {
                    tracing::warn!(partition = index, %error, "cannot drop the offsets log before its rewrite")
                }
            },
            Err(code) => tracing::warn!(partition = index, code, "offsets log rewrite failed"),
        }
        log.rewriting.set(false);
    }

    /// Every record needed to rebuild the groups of offsets partition `index`.
    fn live_records(&self, index: i32) -> Vec<GroupRecord> {
        let groups = self.groups.borrow();
        let mut live = Vec::new();
        for group in groups.values().filter(|g| g.offsets_partition == index) {
            if group.protocol_type().is_some() {
                live.push(stored_record(group));
            }
            for (partition, committed) in &group.offsets {
                live.push(GroupRecord::Offset {
                    group_id: group.id.clone(),
                    partition: partition.clone(),
                    value: Some(committed.value.clone()),
                });
            }
        }
        live
    }

    /// `offsets.retention.minutes`: offsets of an empty consumer group expire that long after
    /// it became empty; offsets stored for standalone consumers that long after their commit;
    /// offsets of topics that no longer exist at once. A group left with neither members nor
    /// offsets is removed.
    /// Returns once the tombstones are durable.
    pub async fn expire_offsets(self: &Rc<Self>, topic_exists: impl Fn(&str) -> bool) {
        let tombstones = self.take_expired(&topic_exists);
        for (index, records) in tombstones {
            if !records.is_empty() {
                tracing::info!(
                    partition = index,
                    records = records.len(),
                    "expiring committed offsets and empty groups"
                );
            }
            for chunk in records.chunks(RECORDS_PER_BATCH_MAX) {
                if let Err(code) = self.append(index, chunk).await {
                    tracing::warn!(partition = index, code, "cannot store expired offsets; they come back after a restart until the next expiry");
                }
            }
        }
    }

    /// Removes what expired from the groups; the tombstones to write, by offsets partition.
    fn take_expired(&self, topic_exists: &dyn Fn(&str) -> bool) -> HashMap<i32, Vec<GroupRecord>> {
        let now = self.now();
        let retention_ms = self.config.offsets_retention_ms();
        let mut tombstones: HashMap<i32, Vec<GroupRecord>> = HashMap::new();
        let mut groups = self.groups.borrow_mut();
        let mut emptied = Vec::new();
        for group in groups.values_mut() {
            let state = group.state();
            let expired = group.expired_offsets(now.wall_ms, retention_ms, topic_exists);
            let records = tombstones.entry(group.offsets_partition).or_default();
            for partition in expired {
                group.offsets.remove(&partition);
                records.push(GroupRecord::Offset {
                    group_id: group.id.clone(),
                    partition,
                    value: None,
                });
            }
            if state == GroupState::Empty && group.offsets.is_empty() {
                records.push(GroupRecord::Group {
                    group_id: group.id.clone(),
                    value: None,
                });
                emptied.push(group.id.clone());
            }
        }
        for group_id in &emptied {
            if let Some(mut group) = groups.remove(group_id) {
                group.shut_down(codes::COORDINATOR_NOT_AVAILABLE);
            }
        }
        tombstones
    }

    /// Stores a group whose membership changed in a way a restart must see.
    fn persist_changes(self: &Rc<Self>, group_id: &str) {
        let record = self
            .groups
            .borrow_mut()
            .get_mut(group_id)
            .and_then(|group| {
                group
                    .take_persist()
                    .then(|| (group.offsets_partition, stored_record(group)))
            });
        if let Some((index, record)) = record {
            self.spawn_append(index, vec![record]);
        }
    }

    fn spawn_append(self: &Rc<Self>, index: i32, records: Vec<GroupRecord>) {
        if records.is_empty() {
            return;
        }
        let coordinator = Rc::clone(self);
        crate::runtime::spawn_local(async move {
            if let Err(code) = coordinator.append(index, &records).await {
                tracing::warn!(
                    partition = index,
                    code,
                    "cannot store group changes in the offsets log"
                );
            }
        })
        .detach();
    }

    /// Appends `entries` as one batch and waits until it is durable; the batch's base offset.
    async fn append(&self, index: i32, entries: &[GroupRecord]) -> Result<i64, i16> {
        let partition = self
            .partitions
            .borrow()
            .get(&index)
            .map(|log| Rc::clone(&log.partition))
            .ok_or(codes::NOT_COORDINATOR)?;
        let batch = records::build_record_batch(entries, crate::storage::now_ms());
        let outcome = partition.produce(batch, -1, APPEND_TIMEOUT).await;
        match outcome.error_code {
            codes::NONE => Ok(outcome.base_offset),
            codes::MESSAGE_TOO_LARGE | codes::RECORD_LIST_TOO_LARGE => {
                Err(codes::INVALID_COMMIT_OFFSET_SIZE)
            }
            codes::NOT_LEADER_OR_FOLLOWER => Err(codes::NOT_COORDINATOR),
            code => {
                tracing::warn!(
                    partition = index,
                    code,
                    message = outcome.error_message.as_deref().unwrap_or(""),
                    "offsets log append failed"
                );
                Err(codes::COORDINATOR_NOT_AVAILABLE)
            }
        }
    }
}

fn stored_record(group: &Group) -> GroupRecord {
    GroupRecord::Group {
        group_id: group.id.clone(),
        value: Some(group.stored_value()),
    }
}
