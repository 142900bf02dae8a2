//! Where a group's requests go: the group's partition of `__consumer_offsets` (created on
//! first use, as Kafka does), and the shard owning that partition, reached over the mesh.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::messages::ShardRequest;
use super::{Shard, CONTROL_TIMEOUT};
use crate::cluster::TopicMetadata;
use crate::group::ops::{GroupOp, GroupReply};
use crate::group::{offsets_partition_for, OFFSETS_TOPIC};
use crate::protocol::codes;

/// Beyond a join's own rebalance timeout, how long the mesh waits for the coordinator.
const JOIN_WAIT_SLACK: Duration = Duration::from_secs(10);
/// The mesh's bound on a SyncGroup, which waits for the leader's assignment.
const SYNC_WAIT_MAX: Duration = Duration::from_secs(31 * 60);

impl Shard {
    /// The offsets topic, created with the coordinator's settings if it does not exist yet.
    pub(crate) async fn offsets_topic(self: &Rc<Self>) -> Result<Arc<TopicMetadata>, i16> {
        if let Some(topic) = self.metadata().topics.get(OFFSETS_TOPIC) {
            return Ok(Arc::clone(topic));
        }
        let config = self.groups.config();
        let configs = vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                config.offsets_topic_segment_bytes.to_string(),
            ),
        ];
        super::metadata::create_with(
            self,
            OFFSETS_TOPIC,
            config.offsets_topic_num_partitions,
            configs,
        )
        .await
    }

    /// The group's offsets partition and the shard that coordinates it.
    pub(crate) async fn coordinator_of(
        self: &Rc<Self>,
        group_id: &str,
    ) -> Result<(i32, usize), i16> {
        let topic = self
            .offsets_topic()
            .await
            .map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)?;
        let count = i32::try_from(topic.partitions.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or(codes::COORDINATOR_NOT_AVAILABLE)?;
        let index = offsets_partition_for(group_id, count);
        let owner = topic.partitions[index as usize].shard as usize;
        Ok((index, owner))
    }

    /// Runs `op` on its group's coordinator, here or on the shard that owns the group.
    pub(crate) async fn group_call(self: &Rc<Self>, op: GroupOp) -> GroupReply {
        let group_id = GroupReply::group_of(&op).unwrap_or_default().to_string();
        let (index, owner) = match self.coordinator_of(&group_id).await {
            Ok(found) => found,
            Err(code) => return GroupReply::failed(&op, code),
        };
        self.group_call_on(owner, index, op).await
    }

    pub(crate) async fn group_call_on(
        self: &Rc<Self>,
        owner: usize,
        index: i32,
        op: GroupOp,
    ) -> GroupReply {
        if owner == self.id {
            return self.groups.handle(index, op).await;
        }
        let timeout = match &op {
            GroupOp::Join(join) => {
                let wait_ms = join
                    .rebalance_timeout_ms
                    .max(join.session_timeout_ms)
                    .max(0);
                Duration::from_millis(wait_ms as u64) + JOIN_WAIT_SLACK
            }
            GroupOp::Sync(_) => SYNC_WAIT_MAX,
            _ => CONTROL_TIMEOUT,
        };
        let unreachable = GroupReply::failed(&op, codes::COORDINATOR_NOT_AVAILABLE);
        self.mesh
            .call(owner, timeout, |reply| ShardRequest::Group {
                offsets_partition: index,
                op,
                reply,
            })
            .await
            .unwrap_or(unreachable)
    }

    /// ListGroups: every shard's groups.
    pub(crate) async fn list_groups_everywhere(
        self: &Rc<Self>,
        states: Vec<String>,
    ) -> Result<Vec<crate::group::ops::GroupListing>, i16> {
        let calls = (0..self.count).map(|owner| {
            let op = GroupOp::List {
                states: states.clone(),
            };
            async move { self.group_call_on(owner, -1, op).await }
        });
        let mut listed = Vec::new();
        for reply in futures_util::future::join_all(calls).await {
            match reply {
                GroupReply::List(groups) => listed.extend(groups),
                _ => return Err(codes::COORDINATOR_NOT_AVAILABLE),
            }
        }
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(listed)
    }
}
