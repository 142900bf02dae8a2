//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: decoded here, run by the group's
//! coordinator (`group` module), answered in the request's version. Protocol metadata and
//! assignments pass through as the client sent them.

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Shard};
use crate::group::ops::{self, GroupOp, GroupReply, LeavingMember};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

fn text(s: &StrBytes) -> String {
    s.to_string()
}

fn str_bytes(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

pub async fn join(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: JoinGroupRequest = request.decode()?;
    let version = request.api_version();
    let join = ops::JoinRequest {
        group_id: text(&body.group_id.0),
        member_id: text(&body.member_id),
        group_instance_id: body.group_instance_id.as_ref().map(text),
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(text)
            .unwrap_or_default(),
        client_host: format!("/{}", request.client_host),
        session_timeout_ms: body.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: text(&body.protocol_type),
        protocols: body
            .protocols
            .iter()
            .map(|p| (text(&p.name), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let reply = match shard.group_call(GroupOp::Join(join)).await {
        GroupReply::Join(reply) => reply,
        _ => ops::JoinResponse::error(codes::UNKNOWN_SERVER_ERROR, &text(&body.member_id)),
    };
    let mut response = JoinGroupResponse::default();
    response.error_code = reply.error_code;
    response.generation_id = reply.generation_id;
    if version >= 7 {
        response.protocol_type = reply.protocol_type.map(str_bytes);
    }
    // Before v7 the protocol name is not nullable.
    response.protocol_name = match reply.protocol_name {
        Some(name) => Some(str_bytes(name)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    response.leader = str_bytes(reply.leader);
    response.member_id = str_bytes(reply.member_id);
    response.members = reply
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(m.member_id);
            if version >= 5 {
                member.group_instance_id = m.group_instance_id.map(str_bytes);
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    respond(request, &response)
}

pub async fn sync(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: SyncGroupRequest = request.decode()?;
    let version = request.api_version();
    let sync = ops::SyncRequest {
        group_id: text(&body.group_id.0),
        member_id: text(&body.member_id),
        generation_id: body.generation_id,
        group_instance_id: body.group_instance_id.as_ref().map(text),
        protocol_type: body.protocol_type.as_ref().map(text),
        protocol_name: body.protocol_name.as_ref().map(text),
        assignments: body
            .assignments
            .iter()
            .map(|a| (text(&a.member_id), a.assignment.clone()))
            .collect(),
    };
    let reply = match shard.group_call(GroupOp::Sync(sync)).await {
        GroupReply::Sync(reply) => reply,
        _ => ops::SyncResponse::error(codes::UNKNOWN_SERVER_ERROR),
    };
    let mut response = SyncGroupResponse::default();
    response.error_code = reply.error_code;
    if version >= 5 {
        response.protocol_type = reply.protocol_type.map(str_bytes);
        response.protocol_name = reply.protocol_name.map(str_bytes);
    }
    response.assignment = reply.assignment;
    respond(request, &response)
}

pub async fn heartbeat(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: HeartbeatRequest = request.decode()?;
    let heartbeat = ops::HeartbeatRequest {
        group_id: text(&body.group_id.0),
        member_id: text(&body.member_id),
        generation_id: body.generation_id,
        group_instance_id: body.group_instance_id.as_ref().map(text),
    };
    let mut response = HeartbeatResponse::default();
    response.error_code = match shard.group_call(GroupOp::Heartbeat(heartbeat)).await {
        GroupReply::Code(code) => code,
        _ => codes::UNKNOWN_SERVER_ERROR,
    };
    respond(request, &response)
}

pub async fn leave(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: LeaveGroupRequest = request.decode()?;
    let version = request.api_version();
    // v0-2 name one member; v3+ a batch, static members by instance id.
    let members: Vec<LeavingMember> = if version >= 3 {
        body.members
            .iter()
            .map(|m| LeavingMember {
                member_id: text(&m.member_id),
                group_instance_id: m.group_instance_id.as_ref().map(text),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: text(&body.member_id),
            group_instance_id: None,
        }]
    };
    let op = GroupOp::Leave {
        group_id: text(&body.group_id.0),
        members: members.clone(),
    };
    let reply = match shard.group_call(op).await {
        GroupReply::Leave(reply) => reply,
        _ => ops::LeaveResponse {
            error_code: codes::UNKNOWN_SERVER_ERROR,
            members: Vec::new(),
        },
    };
    let mut response = LeaveGroupResponse::default();
    if version >= 3 {
        response.error_code = reply.error_code;
        response.members = members
            .into_iter()
            .zip(
                reply
                    .members
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(reply.error_code)),
            )
            .map(|(member, code)| {
                let mut answer = MemberResponse::default();
                answer.member_id = str_bytes(member.member_id);
                answer.group_instance_id = member.group_instance_id.map(str_bytes);
                answer.error_code = code;
                answer
            })
            .collect();
    } else {
        response.error_code = match reply.error_code {
            codes::NONE => reply.members.first().copied().unwrap_or(codes::NONE),
            code => code,
        };
    }
    respond(request, &response)
}
