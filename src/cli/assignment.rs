//! Decoding of a consumer group member's assignment: the bytes SyncGroup hands each member of
//! a group whose protocol type is `consumer` (Kafka's `ConsumerProtocolAssignment`: a version,
//! then topics with their partitions, then user data). Input comes from the broker, so
//! anything malformed is an error, never a panic.

use std::collections::BTreeMap;

use anyhow::Context;
use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::{Decodable, Message};

/// The partitions assigned to one member, by topic, in order.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// Decodes an assignment; empty bytes (a member not yet synced) decode to no partitions.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Assignment> {
    if bytes.is_empty() {
        return Ok(Assignment::new());
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    anyhow::ensure!(buf.remaining() >= 2, "assignment of {} byte", bytes.len());
    let version = buf.get_i16();
    anyhow::ensure!(version >= 0, "assignment version {version}");
    // Newer versions only append fields, so Kafka reads them as the newest version it knows.
    let version = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let decoded = ConsumerProtocolAssignment::decode(&mut buf, version)
        .context("malformed consumer assignment")?;
    let mut assignment = Assignment::new();
    for topic in decoded.assigned_partitions {
        let partitions = assignment.entry(topic.topic.to_string()).or_default();
        partitions.extend(topic.partitions);
        partitions.sort_unstable();
    }
    Ok(assignment)
}

/// `orders[0,1] audit[3]`, or `-` for none.
pub fn render(assignment: &Assignment) -> String {
    if assignment.is_empty() {
        return "-".to_string();
    }
    assignment
        .iter()
        .map(|(topic, partitions)| {
            let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
            format!("{topic}[{}]", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded(version: i16, topics: &[(&'static str, &[i32])]) -> Vec<u8> {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
            topics
                .iter()
                .map(|(name, partitions)| {
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_static_str(name)))
                        .with_partitions(partitions.to_vec())
                })
                .collect(),
        );
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        assignment
            .encode(&mut buf, version.min(3))
            .expect("encodes");
        buf.to_vec()
    }

    #[test]
    fn decodes_topics_and_partitions() {
        let bytes = encoded(0, &[("orders", &[1, 0]), ("audit", &[3])]);
        let assignment = decode(&bytes).expect("decodes");
        assert_eq!(render(&assignment), "audit[3] orders[0,1]");
    }

    #[test]
    fn newer_versions_read_as_the_newest_known() {
        let bytes = encoded(7, &[("orders", &[2])]);
        assert_eq!(render(&decode(&bytes).expect("decodes")), "orders[2]");
    }

    #[test]
    fn empty_and_malformed_input() {
        assert_eq!(render(&decode(&[]).expect("empty is no assignment")), "-");
        assert!(decode(&[0]).is_err());
        assert!(decode(&[0, 0, 0, 0, 0, 9, 0]).is_err());
        assert!(decode(&[0xff, 0xff]).is_err());
        let mut truncated = encoded(1, &[("orders", &[0, 1, 2])]);
        truncated.truncate(truncated.len() - 6);
        assert!(decode(&truncated).is_err());
    }
}
