//! The coordinator's settings, with Kafka's names and defaults except where noted.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`. Kafka's default is 50; 16 (Redpanda's choice) keeps a
    /// single node's start-up and disk use small while still spreading groups over shards.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`. Smaller than Kafka's 100 MiB: the log is bounded by
    /// rewriting its live state and dropping whole segments before it (see
    /// `offsets_log_rewrite_min_bytes`), which frees nothing until a segment is sealed.
    pub offsets_topic_segment_bytes: u64,
    /// An offsets partition's live state is rewritten at its end, and the log before it
    /// dropped, once the log exceeds this and twice its size after the last rewrite.
    pub offsets_log_rewrite_min_bytes: u64,
    /// `group.initial.rebalance.delay.ms`: a new group waits this long for more members
    /// before its first rebalance completes.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`: members per group. Kafka leaves it unbounded; a bound keeps one
    /// runaway client from filling a shard's memory.
    pub group_max_size: usize,
    /// Groups one shard coordinates; joins of new groups past it are refused.
    pub groups_per_shard_max: usize,
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// Protocol metadata one member may send with a join, all protocols together.
    pub member_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_num_partitions: 16,
            offsets_topic_segment_bytes: 16 * 1024 * 1024,
            offsets_log_rewrite_min_bytes: 64 * 1024 * 1024,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 1_000,
            groups_per_shard_max: 100_000,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4_096,
            member_metadata_max_bytes: 1024 * 1024,
        }
    }
}

impl GroupConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1_000).contains(&self.offsets_topic_num_partitions) {
            return Err("offsets_topic_num_partitions must be between 1 and 1000".into());
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err("group_min_session_timeout_ms exceeds group_max_session_timeout_ms".into());
        }
        if self.group_initial_rebalance_delay_ms < 0 || self.offsets_retention_minutes < 1 {
            return Err("group delays and offset retention must not be negative".into());
        }
        Ok(())
    }

    pub fn offsets_retention_ms(&self) -> i64 {
        self.offsets_retention_minutes.saturating_mul(60_000)
    }
}
