//! What the Kafka handlers ask a group coordinator, and its answers: plain owned values that
//! cross shards over the mesh. The handlers translate the wire messages to and from these, so
//! the coordinator never sees a protocol version.

use bytes::Bytes;

use crate::partition::TopicPartition;

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets its id with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct JoinResponse {
    pub error_code: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(error_code: i16, member_id: &str) -> Self {
        JoinResponse {
            error_code,
            generation_id: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, by member id; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncResponse {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error_code: i16) -> Self {
        SyncResponse {
            error_code,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
}

/// A member leaving: by id, or (static members, LeaveGroup v3+) by instance id.
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LeaveResponse {
    pub error_code: i16,
    /// Per member, in request order.
    pub members: Vec<i16>,
}

#[derive(Debug, Clone)]
pub struct CommitOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub offsets: Vec<(TopicPartition, CommitOffset)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: TopicPartition,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error_code: i16,
}

#[derive(Debug, Clone, Default)]
pub struct OffsetFetchResponse {
    pub error_code: i16,
    pub offsets: Vec<FetchedOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub error_code: i16,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<DescribedMember>,
}

/// One request for the coordinator of a group (or, for `List`, of every group of a shard).
#[derive(Debug, Clone)]
pub enum GroupOp {
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat(HeartbeatRequest),
    Leave {
        group_id: String,
        members: Vec<LeavingMember>,
    },
    Commit(CommitRequest),
    /// `partitions: None` asks for every committed offset of the group.
    FetchOffsets {
        group_id: String,
        partitions: Option<Vec<TopicPartition>>,
    },
    /// `states`: only groups in one of these states; empty for all.
    List {
        states: Vec<String>,
    },
    Describe {
        group_id: String,
    },
    Delete {
        group_id: String,
    },
    DeleteOffsets {
        group_id: String,
        partitions: Vec<TopicPartition>,
    },
}

#[derive(Debug, Clone)]
pub enum GroupReply {
    Join(JoinResponse),
    Sync(SyncResponse),
    /// Heartbeat and Delete: one error code.
    Code(i16),
    Leave(LeaveResponse),
    /// Per partition, in request order.
    Commit(Vec<i16>),
    FetchOffsets(OffsetFetchResponse),
    List(Vec<GroupListing>),
    Describe(GroupDescription),
    /// The group's error, then per partition in request order.
    DeleteOffsets(i16, Vec<i16>),
}

impl GroupReply {
    /// The answer when the coordinator cannot be reached or refuses before looking at the op.
    pub fn failed(op: &GroupOp, error_code: i16) -> GroupReply {
        match op {
            GroupOp::Join(join) => {
                GroupReply::Join(JoinResponse::error(error_code, &join.member_id))
            }
            GroupOp::Sync(_) => GroupReply::Sync(SyncResponse::error(error_code)),
            GroupOp::Heartbeat(_) | GroupOp::Delete { .. } => GroupReply::Code(error_code),
            GroupOp::Leave { .. } => GroupReply::Leave(LeaveResponse {
                error_code,
                members: Vec::new(),
            }),
            GroupOp::Commit(commit) => GroupReply::Commit(vec![error_code; commit.offsets.len()]),
            GroupOp::FetchOffsets { .. } => GroupReply::FetchOffsets(OffsetFetchResponse {
                error_code,
                offsets: Vec::new(),
            }),
            GroupOp::List { .. } => GroupReply::List(Vec::new()),
            GroupOp::Describe { group_id } => GroupReply::Describe(GroupDescription {
                group_id: group_id.clone(),
                error_code,
                state: "",
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            }),
            GroupOp::DeleteOffsets { .. } => GroupReply::DeleteOffsets(error_code, Vec::new()),
        }
    }

    /// The group this op is about; `None` for shard-wide ops.
    pub fn group_of(op: &GroupOp) -> Option<&str> {
        match op {
            GroupOp::Join(r) => Some(&r.group_id),
            GroupOp::Sync(r) => Some(&r.group_id),
            GroupOp::Heartbeat(r) => Some(&r.group_id),
            GroupOp::Commit(r) => Some(&r.group_id),
            GroupOp::Leave { group_id, .. }
            | GroupOp::FetchOffsets { group_id, .. }
            | GroupOp::Describe { group_id }
            | GroupOp::Delete { group_id }
            | GroupOp::DeleteOffsets { group_id, .. } => Some(group_id),
            GroupOp::List { .. } => None,
        }
    }
}
