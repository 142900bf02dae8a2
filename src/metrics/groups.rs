//! Consumer-group metrics, for the group coordinator to report into:
//!
//! ```ignore
//! let groups = ringlog::metrics::groups();
//! groups.set_group_count(shard_id, coordinator.group_count());
//! groups.set_lag("billing", "orders", 3, log_end_offset - committed_offset);
//! groups.remove_group("billing"); // when the group is deleted or expires
//! ```
//!
//! Call these from the shard that coordinates the group (the one its id hashes to): the
//! per-partition lag a topic's sum is built from lives on that shard's thread, so no lock is
//! shared. Lag is exported per (group, topic) as `ringlog_consumer_group_lag`; with
//! `metrics_per_partition` also per partition as `ringlog_consumer_group_partition_lag`.

use std::cell::RefCell;
use std::collections::HashMap;

use prometheus_client::metrics::gauge::Gauge;

use super::labels::{GroupTopicLabels, GroupTopicPartitionLabels};
use super::{families, settings};

/// Partitions of consumer groups whose lag one shard remembers; past this, new ones are not
/// exported until groups are removed.
const LAG_ENTRIES_MAX: usize = 100_000;

/// The handle the group coordinator reports through. Cheap; get it with `groups()`.
#[derive(Debug, Clone, Copy)]
pub struct GroupMetrics {
    _private: (),
}

pub fn groups() -> GroupMetrics {
    GroupMetrics { _private: () }
}

type LagKey = (String, String, i32);

/// What one shard remembers of the lags it reported: the last value per partition (to keep
/// topic sums) and its handles to the series, so reporting is an atomic add.
#[derive(Default)]
struct LagState {
    partitions: HashMap<LagKey, i64>,
    topic_gauges: HashMap<(String, String), Gauge>,
    partition_gauges: HashMap<LagKey, Gauge>,
}

thread_local! {
    static LAGS: RefCell<LagState> = RefCell::new(LagState::default());
}

impl GroupMetrics {
    /// How many groups the shard `shard` coordinates now. Call it on that shard.
    pub fn set_group_count(&self, shard: usize, group_count: usize) {
        super::shard_local::with_handles(|h| {
            debug_assert_eq!(h.shard, shard, "report groups from their own shard");
            h.consumer_groups.set(group_count as i64);
        });
    }

    /// The lag of `group` on one partition: log end offset minus the committed offset.
    pub fn set_lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        let lag = lag.max(0);
        let key = (group.to_string(), topic.to_string(), partition);
        let per_partition = settings().is_some_and(|s| s.per_partition);
        let refused = LAGS.with(|state| {
            let mut state = state.borrow_mut();
            if state.partitions.len() >= LAG_ENTRIES_MAX && !state.partitions.contains_key(&key) {
                return true;
            }
            let previous = state.partitions.insert(key.clone(), lag).unwrap_or(0);
            state
                .topic_gauges
                .entry((key.0.clone(), key.1.clone()))
                .or_insert_with(|| {
                    families()
                        .consumer_group_lag
                        .get_or_create_owned(&GroupTopicLabels {
                            group: key.0.clone(),
                            topic: key.1.clone(),
                        })
                })
                .inc_by(lag - previous);
            if per_partition {
                state
                    .partition_gauges
                    .entry(key.clone())
                    .or_insert_with(|| {
                        families().consumer_group_partition_lag.get_or_create_owned(
                            &GroupTopicPartitionLabels {
                                group: key.0.clone(),
                                topic: key.1.clone(),
                                partition,
                            },
                        )
                    })
                    .set(lag);
            }
            false
        });
        if refused {
            tracing::debug!(
                group,
                topic,
                partition,
                "too many consumer-group partitions to export lag for"
            );
        }
    }

    /// Forgets every series of `group` (deleted, or expired with no members). Call it on the
    /// group's shard.
    pub fn remove_group(&self, group: &str) {
        let removed: Vec<LagKey> = LAGS.with(|state| {
            let mut state = state.borrow_mut();
            let keys: Vec<LagKey> = state
                .partitions
                .keys()
                .filter(|k| k.0 == group)
                .cloned()
                .collect();
            for key in &keys {
                state.partitions.remove(key);
                state.partition_gauges.remove(key);
                state.topic_gauges.remove(&(key.0.clone(), key.1.clone()));
            }
            keys
        });
        let f = families();
        for (group, topic, partition) in removed {
            f.consumer_group_lag.remove(&GroupTopicLabels {
                group: group.clone(),
                topic: topic.clone(),
            });
            f.consumer_group_partition_lag
                .remove(&GroupTopicPartitionLabels {
                    group,
                    topic,
                    partition,
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_lag_is_the_sum_of_partition_lags_and_goes_away_with_the_group() {
        let groups = groups();
        groups.set_lag("g-sum", "t", 0, 10);
        groups.set_lag("g-sum", "t", 1, 5);
        groups.set_lag("g-sum", "t", 0, 3);
        let labels = GroupTopicLabels {
            group: "g-sum".into(),
            topic: "t".into(),
        };
        assert_eq!(
            families().consumer_group_lag.get_or_create(&labels).get(),
            8
        );
        groups.remove_group("g-sum");
        assert!(families().consumer_group_lag.get(&labels).is_none());
    }
}
