//! Consumer groups: the coordinator that runs Kafka's group membership protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup) and keeps committed offsets. Each group belongs to one
//! partition of the internal `__consumer_offsets` topic, chosen as Kafka chooses it, and lives
//! on the shard that owns that partition: its state is never shared between cores, and its
//! records go to a log that shard appends to directly.

pub mod config;
pub mod consumer_protocol;
pub mod coordinator;
pub mod ops;
pub mod records;
pub mod state;

pub use config::GroupConfig;
pub use coordinator::GroupCoordinator;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The offsets partition of a group, as Kafka computes it: Java's `String.hashCode` of the
/// id, made non-negative, modulo the partition count. Keeping Kafka's function means a group
/// lands on the partition Kafka tools expect.
pub fn offsets_partition_for(group_id: &str, partition_count: i32) -> i32 {
    assert!(partition_count > 0, "the offsets topic has partitions");
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let non_negative = if hash == i32::MIN { 0 } else { hash.abs() };
    non_negative % partition_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_kafka() {
        // Java: "my-group".hashCode() == -1906497762, so partition 12 of 50;
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, which Kafka maps to 0.
        assert_eq!(offsets_partition_for("my-group", 50), 12);
        assert_eq!(offsets_partition_for("polygenelubricants", 50), 0);
        assert_eq!(offsets_partition_for("", 16), 0);
        for id in ["a", "group-1", "ünïcödé", "polygenelubricants"] {
            let p = offsets_partition_for(id, 16);
            assert!((0..16).contains(&p));
        }
    }
}
