//! Consumer-group metrics of this shard's groups: how many there are, and each group's lag
//! (the partition's high watermark minus the group's committed offset), published through
//! `metrics::groups()`. The high watermarks come from the partitions' owners over the mesh,
//! in one round per interval.

use std::collections::HashSet;
use std::rc::Rc;

use super::Shard;
use crate::protocol::codes;

/// Latest offset, as ListOffsets names it.
const LATEST_TIMESTAMP: i64 = -1;

impl Shard {
    /// Publishes the group count and the lag of every committed offset this shard keeps.
    pub(crate) async fn publish_group_metrics(self: &Rc<Self>) {
        let metrics = crate::metrics::groups();
        metrics.set_group_count(self.id, self.groups.group_count());
        let committed = self.groups.committed_offsets();
        let queries: Vec<_> = committed
            .iter()
            .map(|(_, partition, _)| (partition.clone(), LATEST_TIMESTAMP))
            .collect();
        let answers = self.list_offsets(&queries).await;
        let mut reported = HashSet::new();
        for ((group, partition, offset), answer) in committed.into_iter().zip(answers) {
            if answer.error_code != codes::NONE {
                continue;
            }
            metrics.set_lag(
                &group,
                &partition.topic,
                partition.partition,
                answer.offset - offset,
            );
            reported.insert(group);
        }
        let gone: Vec<String> = self
            .lag_reported_groups
            .borrow()
            .difference(&reported)
            .cloned()
            .collect();
        for group in gone {
            metrics.remove_group(&group);
        }
        *self.lag_reported_groups.borrow_mut() = reported;
    }
}
