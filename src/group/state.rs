//! One consumer group's membership state machine, as Kafka's classic coordinator runs it:
//! Empty → PreparingRebalance (join barrier) → CompletingRebalance (waiting for the leader's
//! assignment) → Stable, back to PreparingRebalance whenever membership changes. No I/O
//! happens here: the coordinator persists what `stored_value` returns when `take_persist`
//! says so, and passes the time in. Members blocked in JoinGroup or SyncGroup wait on the
//! oneshot their member holds.

use std::collections::HashMap;

use bytes::Bytes;
use futures_channel::oneshot;

use super::config::GroupConfig;
use super::ops::{
    DescribedMember, GroupDescription, JoinRequest, JoinResponse, JoinedMember, LeavingMember,
    SyncRequest, SyncResponse,
};
use super::records::{GroupValue, OffsetValue, StoredMember};
use crate::partition::TopicPartition;
use crate::protocol::codes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The coordinator's clock: monotonic for deadlines, wall time for what is stored.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub monotonic_ms: i64,
    pub wall_ms: i64,
}

struct Member {
    id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    heartbeat_deadline_ms: i64,
}

impl Member {
    /// Whether the member is blocked in a JoinGroup whose caller is still there.
    fn awaiting_join(&self) -> bool {
        self.join_waiter.as_ref().is_some_and(|w| !w.is_canceled())
    }

    fn awaiting_sync(&self) -> bool {
        self.sync_waiter.as_ref().is_some_and(|w| !w.is_canceled())
    }

    fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|name| self.protocols.iter().find(|(n, _)| n == name))
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn answer_join(&mut self, response: JoinResponse) {
        if let Some(waiter) = self.join_waiter.take() {
            let _ = waiter.send(response);
        }
    }

    fn answer_sync(&mut self, response: SyncResponse) {
        if let Some(waiter) = self.sync_waiter.take() {
            let _ = waiter.send(response);
        }
    }
}

/// A committed offset and the log offset of the record that holds it, so that a late
/// completion of an older commit never overwrites a newer one.
#[derive(Debug, Clone)]
pub struct Committed {
    pub value: OffsetValue,
    pub record_offset: i64,
}

/// The window in which a new group waits for more members (`group.initial.rebalance.delay.ms`).
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    deadline_ms: i64,
    cap_ms: i64,
}

pub enum JoinStep {
    Reply(JoinResponse),
    Wait(oneshot::Receiver<JoinResponse>),
}

pub enum SyncStep {
    Reply(SyncResponse),
    Wait(oneshot::Receiver<SyncResponse>),
    /// The leader's assignment: store the group, then `complete_sync(generation, ..)`.
    Persist {
        generation: i32,
        waiter: oneshot::Receiver<SyncResponse>,
    },
}

pub struct Group {
    pub id: String,
    /// The partition of the offsets topic that holds this group.
    pub offsets_partition: i32,
    state: GroupState,
    state_since_wall_ms: i64,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// In join order: the first is the leader when one must be chosen.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they lapse.
    pending_members: HashMap<String, i64>,
    rebalance_deadline_ms: Option<i64>,
    initial_delay: Option<InitialDelay>,
    sync_deadline_ms: Option<i64>,
    persist_wanted: bool,
    pub offsets: HashMap<TopicPartition, Committed>,
}

fn error_join(code: i16, member_id: &str) -> JoinStep {
    JoinStep::Reply(JoinResponse::error(code, member_id))
}

impl Group {
    pub fn new(id: String, offsets_partition: i32, now: Now) -> Group {
        Group {
            id,
            offsets_partition,
            state: GroupState::Empty,
            state_since_wall_ms: now.wall_ms,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_delay: None,
            sync_deadline_ms: None,
            persist_wanted: false,
            offsets: HashMap::new(),
        }
    }

    /// A group as its last stored metadata describes it; its members have a session timeout
    /// from `now` to show they are still there.
    pub fn restore(id: String, offsets_partition: i32, stored: GroupValue, now: Now) -> Group {
        let mut group = Group::new(id, offsets_partition, now);
        group.generation = stored.generation;
        group.protocol_type = Some(stored.protocol_type).filter(|t| !t.is_empty());
        group.protocol_name = stored.protocol_name.clone();
        group.leader = stored.leader;
        group.state_since_wall_ms = stored.state_timestamp_ms.max(0);
        group.members = stored
            .members
            .into_iter()
            .map(|m| Member {
                heartbeat_deadline_ms: now.monotonic_ms + i64::from(m.session_timeout_ms),
                id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: stored
                    .protocol_name
                    .clone()
                    .map(|name| vec![(name, m.subscription)])
                    .unwrap_or_default(),
                assignment: m.assignment,
                join_waiter: None,
                sync_waiter: None,
            })
            .collect();
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Wall time since which the group has been in its state.
    pub fn state_since_wall_ms(&self) -> i64 {
        self.state_since_wall_ms
    }

    /// Whether the group changed in a way that must be stored; clears the flag.
    pub fn take_persist(&mut self) -> bool {
        std::mem::take(&mut self.persist_wanted)
    }

    /// The group's metadata record.
    pub fn stored_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_since_wall_ms,
            members: self
                .members
                .iter()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(self.protocol_name.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn set_state(&mut self, state: GroupState, now: Now) {
        self.state = state;
        self.state_since_wall_ms = now.wall_ms;
    }

    fn member_index(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == member_id)
    }

    fn static_member_index(&self, instance_id: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.group_instance_id.as_deref() == Some(instance_id))
    }

    /// The member a request names, checking a static member's instance id against it.
    fn find_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<usize, i16> {
        if let Some(instance_id) = instance_id {
            return match self.static_member_index(instance_id) {
                Some(index) if self.members[index].id == member_id => Ok(index),
                Some(_) => Err(codes::FENCED_INSTANCE_ID),
                None => Err(codes::UNKNOWN_MEMBER_ID),
            };
        }
        self.member_index(member_id).ok_or(codes::UNKNOWN_MEMBER_ID)
    }

    /// Protocols every member supports.
    fn common_protocols(&self) -> Vec<&str> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect()
    }

    fn accepts_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        let common = self.common_protocols();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(n, _)| common.contains(&n.as_str()))
    }

    /// JoinGroup.
    pub fn join(&mut self, request: JoinRequest, now: Now, config: &GroupConfig) -> JoinStep {
        if self.state == GroupState::Dead {
            return error_join(codes::COORDINATOR_NOT_AVAILABLE, &request.member_id);
        }
        if !self.accepts_protocols(&request.protocol_type, &request.protocols) {
            return error_join(codes::INCONSISTENT_GROUP_PROTOCOL, &request.member_id);
        }
        if request.member_id.is_empty() {
            self.join_new(request, now, config)
        } else {
            self.join_known(request, now, config)
        }
    }

    fn join_new(&mut self, request: JoinRequest, now: Now, config: &GroupConfig) -> JoinStep {
        let member_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
        if let Some(instance_id) = request.group_instance_id.clone() {
            if let Some(index) = self.static_member_index(&instance_id) {
                return self.replace_static_member(index, member_id, request, now, config);
            }
        }
        if self.members.len() + self.pending_members.len() >= config.group_max_size {
            return error_join(codes::GROUP_MAX_SIZE_REACHED, "");
        }
        if request.require_known_member_id && request.group_instance_id.is_none() {
            let lapse_ms = now.monotonic_ms + i64::from(request.session_timeout_ms);
            self.pending_members.insert(member_id.clone(), lapse_ms);
            return error_join(codes::MEMBER_ID_REQUIRED, &member_id);
        }
        self.add_member_and_rebalance(member_id, request, now, config)
    }

    fn join_known(&mut self, request: JoinRequest, now: Now, config: &GroupConfig) -> JoinStep {
        let member_id = request.member_id.clone();
        if self.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(member_id, request, now, config);
        }
        let index = match self.find_member(&member_id, request.group_instance_id.as_deref()) {
            Ok(index) => index,
            Err(code) => return error_join(code, &member_id),
        };
        let protocols_changed = self.members[index].protocols != request.protocols;
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                error_join(codes::UNKNOWN_MEMBER_ID, &member_id)
            }
            GroupState::CompletingRebalance if !protocols_changed => {
                JoinStep::Reply(self.join_response(&member_id))
            }
            GroupState::Stable
                if !protocols_changed && self.leader.as_deref() != Some(&member_id) =>
            {
                JoinStep::Reply(self.join_response(&member_id))
            }
            state => {
                let waiter = self.update_member(index, request, now);
                if state == GroupState::PreparingRebalance {
                    self.try_complete_join(now);
                } else {
                    self.prepare_rebalance(now, config);
                }
                JoinStep::Wait(waiter)
            }
        }
    }

    /// A static member back with a new member id (KIP-345): the old id is fenced. While the
    /// group is stable and the member's protocols are unchanged it keeps its assignment and
    /// no rebalance happens.
    fn replace_static_member(
        &mut self,
        index: usize,
        new_id: String,
        request: JoinRequest,
        now: Now,
        config: &GroupConfig,
    ) -> JoinStep {
        let old_id = std::mem::replace(&mut self.members[index].id, new_id.clone());
        let fenced = JoinResponse::error(codes::FENCED_INSTANCE_ID, &old_id);
        self.members[index].answer_join(fenced);
        self.members[index].answer_sync(SyncResponse::error(codes::FENCED_INSTANCE_ID));
        if self.leader.as_deref() == Some(&old_id) {
            self.leader = Some(new_id.clone());
        }
        let unchanged = self.members[index].protocols == request.protocols;
        if self.state == GroupState::Stable && unchanged {
            self.members[index].heartbeat_deadline_ms =
                now.monotonic_ms + i64::from(request.session_timeout_ms);
            self.persist_wanted = true;
            let mut response = self.join_response(&new_id);
            // The assignment stays; the member must not run the assignor again. As Kafka
            // does, a leader is answered with its old id as the leader's: it does not match
            // the new one, so the member syncs as a follower and keeps its assignment.
            response.members.clear();
            if response.leader == new_id {
                response.leader = old_id;
            }
            return JoinStep::Reply(response);
        }
        let waiter = self.update_member(index, request, now);
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now),
            _ => self.prepare_rebalance(now, config),
        }
        JoinStep::Wait(waiter)
    }

    fn update_member(
        &mut self,
        index: usize,
        request: JoinRequest,
        now: Now,
    ) -> oneshot::Receiver<JoinResponse> {
        let (sender, receiver) = oneshot::channel();
        let member = &mut self.members[index];
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.heartbeat_deadline_ms = now.monotonic_ms + i64::from(request.session_timeout_ms);
        // A join repeated before the first was answered replaces it.
        member.answer_join(JoinResponse::error(codes::UNKNOWN_MEMBER_ID, &member.id));
        member.join_waiter = Some(sender);
        receiver
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        request: JoinRequest,
        now: Now,
        config: &GroupConfig,
    ) -> JoinStep {
        if self.members.len() >= config.group_max_size {
            return error_join(codes::GROUP_MAX_SIZE_REACHED, &member_id);
        }
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        let (sender, receiver) = oneshot::channel();
        self.members.push(Member {
            id: member_id,
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(sender),
            sync_waiter: None,
            heartbeat_deadline_ms: now.monotonic_ms + i64::from(request.session_timeout_ms),
        });
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(delay) = &mut self.initial_delay {
                    let wanted_ms = now.monotonic_ms + config.group_initial_rebalance_delay_ms;
                    delay.deadline_ms = delay.deadline_ms.max(wanted_ms.min(delay.cap_ms));
                }
                self.try_complete_join(now);
            }
            _ => self.prepare_rebalance(now, config),
        }
        JoinStep::Wait(receiver)
    }

    /// Starts a rebalance: every member must join again within the largest rebalance timeout.
    fn prepare_rebalance(&mut self, now: Now, config: &GroupConfig) {
        if self.state == GroupState::CompletingRebalance {
            for member in &mut self.members {
                member.assignment = Bytes::new();
                member.answer_sync(SyncResponse::error(codes::REBALANCE_IN_PROGRESS));
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.set_state(GroupState::PreparingRebalance, now);
        self.sync_deadline_ms = None;
        let timeout_ms = self
            .members
            .iter()
            .map(|m| i64::from(m.rebalance_timeout_ms.max(0)))
            .max()
            .unwrap_or(0);
        self.rebalance_deadline_ms = Some(now.monotonic_ms + timeout_ms);
        let delay_ms = config.group_initial_rebalance_delay_ms.min(timeout_ms);
        self.initial_delay = (was_empty && delay_ms > 0).then_some(InitialDelay {
            deadline_ms: now.monotonic_ms + delay_ms,
            cap_ms: now.monotonic_ms + timeout_ms,
        });
        self.try_complete_join(now);
    }

    /// Ends the join barrier when every member has joined (and a new group's initial delay
    /// has passed), or when the rebalance timeout is up: members that did not join are out.
    fn try_complete_join(&mut self, now: Now) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let expired = self
            .rebalance_deadline_ms
            .is_some_and(|d| now.monotonic_ms >= d);
        let ready = match self.initial_delay {
            Some(delay) => now.monotonic_ms >= delay.deadline_ms,
            None => {
                self.pending_members.is_empty() && self.members.iter().all(Member::awaiting_join)
            }
        };
        if !(expired || ready) {
            return;
        }
        self.members.retain(Member::awaiting_join);
        self.initial_delay = None;
        self.rebalance_deadline_ms = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now);
            self.persist_wanted = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        let leader_present = self
            .leader
            .as_ref()
            .is_some_and(|l| self.member_index(l).is_some());
        if !leader_present {
            self.leader = Some(self.members[0].id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now);
        let timeout_ms = self
            .members
            .iter()
            .map(|m| i64::from(m.rebalance_timeout_ms.max(0)))
            .max()
            .unwrap_or(0);
        self.sync_deadline_ms = Some(now.monotonic_ms + timeout_ms);
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        for (index, id) in ids.iter().enumerate() {
            let response = self.join_response(id);
            let member = &mut self.members[index];
            member.heartbeat_deadline_ms = now.monotonic_ms + i64::from(member.session_timeout_ms);
            member.answer_join(response);
        }
    }

    /// The protocol most members prefer among those all of them support.
    fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols();
        let mut votes: Vec<(&str, usize)> = common.iter().map(|p| (*p, 0)).collect();
        for member in &self.members {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| common.contains(&n.as_str()))
            {
                if let Some(vote) = votes.iter_mut().find(|(p, _)| p == name) {
                    vote.1 += 1;
                }
            }
        }
        // Ties go to the protocol the first member prefers, as `common` is in its order.
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(p, _)| p.to_string())
    }

    fn join_response(&self, member_id: &str) -> JoinResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(self.protocol_name.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error_code: codes::NONE,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// SyncGroup.
    pub fn sync(&mut self, request: SyncRequest, now: Now) -> SyncStep {
        let reply = |code| SyncStep::Reply(SyncResponse::error(code));
        if self.state == GroupState::Dead {
            return reply(codes::COORDINATOR_NOT_AVAILABLE);
        }
        let index = match self.find_member(&request.member_id, request.group_instance_id.as_deref())
        {
            Ok(index) => index,
            Err(code) => return reply(code),
        };
        if request.generation_id != self.generation {
            return reply(codes::ILLEGAL_GENERATION);
        }
        let type_differs = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref());
        let name_differs = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != self.protocol_name.as_ref());
        if type_differs || name_differs {
            return reply(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => reply(codes::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => reply(codes::REBALANCE_IN_PROGRESS),
            GroupState::Stable => SyncStep::Reply(self.sync_response(index)),
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                let member = &mut self.members[index];
                member.heartbeat_deadline_ms =
                    now.monotonic_ms + i64::from(member.session_timeout_ms);
                member.answer_sync(SyncResponse::error(codes::REBALANCE_IN_PROGRESS));
                member.sync_waiter = Some(sender);
                if self.leader.as_deref() != Some(request.member_id.as_str()) {
                    return SyncStep::Wait(receiver);
                }
                let mut assignments: HashMap<String, Bytes> =
                    request.assignments.into_iter().collect();
                for member in &mut self.members {
                    member.assignment = assignments.remove(&member.id).unwrap_or_default();
                }
                SyncStep::Persist {
                    generation: self.generation,
                    waiter: receiver,
                }
            }
        }
    }

    fn sync_response(&self, index: usize) -> SyncResponse {
        SyncResponse {
            error_code: codes::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members[index].assignment.clone(),
        }
    }

    /// The leader's assignment of `generation` was stored (or failed to be): the group is
    /// stable and every member waiting in SyncGroup gets its part, or a new rebalance starts.
    pub fn complete_sync(&mut self, generation: i32, stored: bool, now: Now, config: &GroupConfig) {
        if self.state != GroupState::CompletingRebalance || self.generation != generation {
            return;
        }
        if !stored {
            for member in &mut self.members {
                member.assignment = Bytes::new();
                member.answer_sync(SyncResponse::error(codes::COORDINATOR_NOT_AVAILABLE));
            }
            self.prepare_rebalance(now, config);
            return;
        }
        self.set_state(GroupState::Stable, now);
        self.sync_deadline_ms = None;
        for index in 0..self.members.len() {
            let response = self.sync_response(index);
            self.members[index].answer_sync(response);
        }
    }

    /// Heartbeat: the error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Now,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return codes::COORDINATOR_NOT_AVAILABLE;
        }
        if self.state == GroupState::Empty {
            return codes::UNKNOWN_MEMBER_ID;
        }
        let index = match self.find_member(member_id, instance_id) {
            Ok(index) => index,
            Err(code) => return code,
        };
        if generation != self.generation {
            return codes::ILLEGAL_GENERATION;
        }
        let member = &mut self.members[index];
        member.heartbeat_deadline_ms = now.monotonic_ms + i64::from(member.session_timeout_ms);
        if self.state == GroupState::PreparingRebalance {
            codes::REBALANCE_IN_PROGRESS
        } else {
            codes::NONE
        }
    }

    /// LeaveGroup: an error code per member.
    pub fn leave(&mut self, leaving: &[LeavingMember], now: Now, config: &GroupConfig) -> Vec<i16> {
        let mut codes_out = Vec::with_capacity(leaving.len());
        for member in leaving {
            let code = if self.state == GroupState::Dead {
                codes::COORDINATOR_NOT_AVAILABLE
            } else if let Some(instance_id) = member.group_instance_id.as_deref() {
                match self.static_member_index(instance_id) {
                    None => codes::UNKNOWN_MEMBER_ID,
                    Some(index)
                        if !member.member_id.is_empty()
                            && self.members[index].id != member.member_id =>
                    {
                        codes::FENCED_INSTANCE_ID
                    }
                    Some(index) => {
                        self.remove_member(index, now, config);
                        codes::NONE
                    }
                }
            } else if self.pending_members.remove(&member.member_id).is_some() {
                self.try_complete_join(now);
                codes::NONE
            } else if let Some(index) = self.member_index(&member.member_id) {
                self.remove_member(index, now, config);
                codes::NONE
            } else {
                codes::UNKNOWN_MEMBER_ID
            };
            codes_out.push(code);
        }
        codes_out
    }

    fn remove_member(&mut self, index: usize, now: Now, config: &GroupConfig) {
        let mut member = self.members.remove(index);
        member.answer_join(JoinResponse::error(codes::UNKNOWN_MEMBER_ID, &member.id));
        member.answer_sync(SyncResponse::error(codes::UNKNOWN_MEMBER_ID));
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, config)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Timers: lapsed pending ids, members whose session expired, the join barrier's
    /// deadline, and a leader that never sent its assignment.
    pub fn poll(&mut self, now: Now, config: &GroupConfig) {
        let pending_before = self.pending_members.len();
        self.pending_members
            .retain(|_, lapse| *lapse > now.monotonic_ms);
        if self.pending_members.len() != pending_before {
            self.try_complete_join(now);
        }
        while let Some(index) = self.members.iter().position(|m| {
            !m.awaiting_join() && !m.awaiting_sync() && m.heartbeat_deadline_ms <= now.monotonic_ms
        }) {
            tracing::info!(group = %self.id, member = %self.members[index].id, "member session expired");
            self.remove_member(index, now, config);
        }
        self.try_complete_join(now);
        if self.state == GroupState::CompletingRebalance
            && self.sync_deadline_ms.is_some_and(|d| now.monotonic_ms >= d)
        {
            // Members that never sent SyncGroup are gone; those still waiting rejoin.
            let before = self.members.len();
            self.members.retain(Member::awaiting_sync);
            tracing::info!(group = %self.id, removed = before - self.members.len(), "members did not sync in time");
            self.prepare_rebalance(now, config);
        }
    }

    /// Checks an OffsetCommit against the membership; `Err` is the code for every partition.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Now,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            // Offsets stored for a consumer that manages its own partitions.
            return if self.state == GroupState::Empty {
                Ok(())
            } else {
                Err(codes::UNKNOWN_MEMBER_ID)
            };
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(codes::REBALANCE_IN_PROGRESS);
        }
        let index = self.find_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(codes::ILLEGAL_GENERATION);
        }
        let member = &mut self.members[index];
        member.heartbeat_deadline_ms = now.monotonic_ms + i64::from(member.session_timeout_ms);
        Ok(())
    }

    /// Records a stored commit unless a newer record for the partition is already known.
    pub fn apply_commit(&mut self, partition: TopicPartition, committed: Committed) {
        match self.offsets.get(&partition) {
            Some(existing) if existing.record_offset > committed.record_offset => {}
            _ => {
                self.offsets.insert(partition, committed);
            }
        }
    }

    /// Topics the members subscribed to, from the consumer protocol's subscriptions.
    pub fn subscribed_topics(&self) -> Vec<String> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return Vec::new();
        }
        let mut topics: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| {
                super::consumer_protocol::subscription_topics(
                    &m.metadata_for(self.protocol_name.as_deref()),
                )
            })
            .flatten()
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Committed offsets due to expire (`offsets.retention.minutes`, as Kafka applies it):
    /// all of an empty consumer group's once it has been empty that long; a standalone
    /// consumer's (no protocol type) that long after their commit; an active group's
    /// offsets of topics it no longer subscribes to, likewise; and any offset of a topic
    /// that no longer exists.
    pub fn expired_offsets(
        &self,
        now_wall_ms: i64,
        retention_ms: i64,
        topic_exists: &dyn Fn(&str) -> bool,
    ) -> Vec<TopicPartition> {
        let empty_group_expired = self.state == GroupState::Empty
            && self.protocol_type.is_some()
            && now_wall_ms - self.state_since_wall_ms >= retention_ms;
        let standalone = self.protocol_type.is_none();
        let subscribed = if self.state == GroupState::Stable {
            self.subscribed_topics()
        } else {
            Vec::new()
        };
        let mut expired: Vec<TopicPartition> = self
            .offsets
            .iter()
            .filter(|(partition, committed)| {
                let old = now_wall_ms - committed.value.commit_timestamp_ms >= retention_ms;
                let unsubscribed = !subscribed.is_empty() && !subscribed.contains(&partition.topic);
                !topic_exists(&partition.topic)
                    || empty_group_expired
                    || (old && (standalone || unsubscribed))
            })
            .map(|(partition, _)| partition.clone())
            .collect();
        expired.sort();
        expired
    }

    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        GroupDescription {
            group_id: self.id.clone(),
            error_code: codes::NONE,
            state: self.state.name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                self.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: self
                .members
                .iter()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(self.protocol_name.as_deref())
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// The group is being deleted or unloaded: waiting members are told to find the
    /// coordinator again.
    pub fn shut_down(&mut self, code: i16) {
        self.state = GroupState::Dead;
        for member in &mut self.members {
            member.answer_join(JoinResponse::error(code, &member.id));
            member.answer_sync(SyncResponse::error(code));
        }
    }
}

#[cfg(test)]
mod tests;
