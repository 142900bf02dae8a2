//! ListGroups, DescribeGroups and DeleteGroups: the administrative view of consumer groups.
//! ListGroups asks every shard; the others go to each group's coordinator.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Shard};
use crate::group::ops::{GroupOp, GroupReply};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

/// Kafka's bit set for "describe, delete, read" on a group, when a client asks what it may do.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// Groups named in one DescribeGroups or DeleteGroups request, at most.
const GROUPS_PER_REQUEST_MAX: usize = 10_000;

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub async fn list(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: ListGroupsRequest = request.decode()?;
    let version = request.api_version();
    let states = body.states_filter.iter().map(|s| s.to_string()).collect();
    // Every group here is a classic group; a filter naming only other types matches none.
    let classic_wanted = body.types_filter.is_empty()
        || body
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    let mut response = ListGroupsResponse::default();
    match shard.list_groups_everywhere(states).await {
        Ok(groups) if classic_wanted => {
            response.groups = groups
                .into_iter()
                .map(|g| {
                    let mut listed = ListedGroup::default();
                    listed.group_id = GroupId(str_bytes(g.group_id));
                    listed.protocol_type = str_bytes(g.protocol_type);
                    if version >= 4 {
                        listed.group_state = str_bytes(g.state);
                    }
                    if version >= 5 {
                        listed.group_type = str_bytes("classic");
                    }
                    listed
                })
                .collect();
        }
        Ok(_) => {}
        Err(code) => response.error_code = code,
    }
    respond(request, &response)
}

pub async fn describe(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: DescribeGroupsRequest = request.decode()?;
    let version = request.api_version();
    if body.groups.len() > GROUPS_PER_REQUEST_MAX {
        anyhow::bail!("{} groups in one DescribeGroups", body.groups.len());
    }
    let replies = futures_util::future::join_all(body.groups.iter().map(|id| {
        let op = GroupOp::Describe {
            group_id: id.0.to_string(),
        };
        shard.group_call(op)
    }))
    .await;
    let mut response = DescribeGroupsResponse::default();
    for (id, reply) in body.groups.iter().zip(replies) {
        let mut group = DescribedGroup::default();
        group.group_id = id.clone();
        group.authorized_operations = if version >= 3 && body.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            i32::MIN
        };
        match reply {
            GroupReply::Describe(described) => {
                group.error_code = described.error_code;
                group.group_state = str_bytes(described.state);
                group.protocol_type = str_bytes(described.protocol_type);
                group.protocol_data = str_bytes(described.protocol_name);
                group.members = described
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default();
                        member.member_id = str_bytes(m.member_id);
                        if version >= 4 {
                            member.group_instance_id = m.group_instance_id.map(str_bytes);
                        }
                        member.client_id = str_bytes(m.client_id);
                        member.client_host = str_bytes(m.client_host);
                        member.member_metadata = m.metadata;
                        member.member_assignment = m.assignment;
                        member
                    })
                    .collect();
            }
            _ => group.error_code = codes::UNKNOWN_SERVER_ERROR,
        }
        response.groups.push(group);
    }
    respond(request, &response)
}

pub async fn delete(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: DeleteGroupsRequest = request.decode()?;
    if body.groups_names.len() > GROUPS_PER_REQUEST_MAX {
        anyhow::bail!("{} groups in one DeleteGroups", body.groups_names.len());
    }
    let replies = futures_util::future::join_all(body.groups_names.iter().map(|id| {
        shard.group_call(GroupOp::Delete {
            group_id: id.0.to_string(),
        })
    }))
    .await;
    let mut response = DeleteGroupsResponse::default();
    response.results = body
        .groups_names
        .iter()
        .zip(replies)
        .map(|(id, reply)| {
            let mut result = DeletableGroupResult::default();
            result.group_id = id.clone();
            result.error_code = match reply {
                GroupReply::Code(code) => code,
                _ => codes::UNKNOWN_SERVER_ERROR,
            };
            result
        })
        .collect();
    respond(request, &response)
}
