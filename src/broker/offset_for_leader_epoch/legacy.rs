//! OffsetForLeaderEpoch v0 and v1, which kafka-protocol 0.18 no longer knows. Both are small
//! non-flexible messages:
//!
//! - request: `[topic: string, [partition: int32, leader_epoch: int32]]`;
//! - response v0: `[topic: string, [error_code: int16, partition: int32, end_offset: int64]]`;
//! - response v1: the same with `leader_epoch: int32` before `end_offset`.
//!
//! The request becomes the crate's v2+ type (no current leader epoch, as v0-1 have none); the
//! response is the crate's type written in the old layout. Input is validated, never trusted:
//! every count is checked against the bytes that remain before anything is allocated.

use anyhow::{bail, ensure, Context};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

/// The first version kafka-protocol encodes and decodes itself.
pub const FIRST_CRATE_VERSION: i16 = 2;

/// Smallest encoding of a topic (empty name, no partitions) and of a partition.
const TOPIC_SIZE_MIN_BYTES: usize = 2 + 4;
const PARTITION_SIZE_BYTES: usize = 4 + 4;

pub fn decode_request(body: &Bytes) -> anyhow::Result<OffsetForLeaderEpochRequest> {
    let mut buf = body.clone();
    let topic_count = array_len(&mut buf, TOPIC_SIZE_MIN_BYTES).context("topics")?;
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = (-1).into();
    for _ in 0..topic_count {
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = TopicName(string(&mut buf).context("topic name")?);
        let partition_count = array_len(&mut buf, PARTITION_SIZE_BYTES).context("partitions")?;
        for _ in 0..partition_count {
            let mut partition = OffsetForLeaderPartition::default();
            partition.partition = buf.get_i32();
            partition.current_leader_epoch = -1;
            partition.leader_epoch = buf.get_i32();
            topic.partitions.push(partition);
        }
        request.topics.push(topic);
    }
    Ok(request)
}

/// An array's element count, refused when negative (null) or when `element_size_min_bytes`
/// times it exceeds what is left.
fn array_len(buf: &mut Bytes, element_size_min_bytes: usize) -> anyhow::Result<usize> {
    let count = buf.try_get_i32().context("array length")?;
    let count = usize::try_from(count).context("null or negative array length")?;
    ensure!(
        count.saturating_mul(element_size_min_bytes) <= buf.remaining(),
        "array of {count} elements is longer than the request"
    );
    Ok(count)
}

fn string(buf: &mut Bytes) -> anyhow::Result<StrBytes> {
    let length = buf.try_get_i16().context("string length")?;
    let Ok(length) = usize::try_from(length) else {
        bail!("null or negative string length");
    };
    ensure!(length <= buf.remaining(), "string longer than the request");
    Ok(StrBytes::from_utf8(buf.split_to(length))?)
}

/// A response written in the v0 or v1 layout.
pub struct Response(pub OffsetForLeaderEpochResponse);

impl HeaderVersion for Response {
    fn header_version(_version: i16) -> i16 {
        0
    }
}

impl Encodable for Response {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        ensure!(
            (0..FIRST_CRATE_VERSION).contains(&version),
            "legacy OffsetForLeaderEpoch encodes v0-1, not v{version}"
        );
        buf.put_i32(i32::try_from(self.0.topics.len())?);
        for topic in &self.0.topics {
            let name = topic.topic.0.as_bytes();
            buf.put_i16(i16::try_from(name.len())?);
            buf.put_slice(name);
            buf.put_i32(i32::try_from(topic.partitions.len())?);
            for partition in &topic.partitions {
                buf.put_i16(partition.error_code);
                buf.put_i32(partition.partition);
                if version >= 1 {
                    buf.put_i32(partition.leader_epoch);
                }
                buf.put_i64(partition.end_offset);
            }
        }
        Ok(())
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        let partition_size_bytes = if version >= 1 {
            2 + 4 + 4 + 8
        } else {
            2 + 4 + 8
        };
        Ok(4 + self
            .0
            .topics
            .iter()
            .map(|t| 2 + t.topic.0.len() + 4 + t.partitions.len() * partition_size_bytes)
            .sum::<usize>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };

    fn request_bytes(topics: &[(&str, &[(i32, i32)])]) -> Bytes {
        let mut buf = Vec::new();
        buf.put_i32(topics.len() as i32);
        for (name, partitions) in topics {
            buf.put_i16(name.len() as i16);
            buf.put_slice(name.as_bytes());
            buf.put_i32(partitions.len() as i32);
            for (partition, epoch) in *partitions {
                buf.put_i32(*partition);
                buf.put_i32(*epoch);
            }
        }
        Bytes::from(buf)
    }

    #[test]
    fn requests_decode_into_the_crate_type() {
        let bytes = request_bytes(&[("orders", &[(0, 3), (2, 0)]), ("x", &[])]);
        let request = decode_request(&bytes).unwrap();
        assert_eq!(request.topics.len(), 2);
        assert_eq!(request.topics[0].topic.0.as_str(), "orders");
        let partitions = &request.topics[0].partitions;
        assert_eq!(
            (partitions[0].partition, partitions[0].leader_epoch),
            (0, 3)
        );
        assert_eq!(
            (partitions[1].partition, partitions[1].leader_epoch),
            (2, 0)
        );
        assert_eq!(partitions[1].current_leader_epoch, -1);
        assert!(request.topics[1].partitions.is_empty());
    }

    #[test]
    fn malformed_requests_are_refused() {
        let whole = request_bytes(&[("orders", &[(0, 3)])]);
        for cut in 0..whole.len() {
            assert!(decode_request(&whole.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut huge = Vec::new();
        huge.put_i32(i32::MAX);
        assert!(decode_request(&Bytes::from(huge)).is_err());
        let mut null = Vec::new();
        null.put_i32(-1);
        assert!(decode_request(&Bytes::from(null)).is_err());
        let mut bad_utf8 = Vec::new();
        bad_utf8.put_i32(1);
        bad_utf8.put_i16(1);
        bad_utf8.put_u8(0xff);
        bad_utf8.put_i32(0);
        assert!(decode_request(&Bytes::from(bad_utf8)).is_err());
    }

    #[test]
    fn responses_use_the_old_layouts() {
        let mut partition = EpochEndOffset::default();
        partition.partition = 1;
        partition.error_code = 0;
        partition.leader_epoch = 7;
        partition.end_offset = 42;
        let mut topic = OffsetForLeaderTopicResult::default();
        topic.topic = TopicName(StrBytes::from_static_str("t"));
        topic.partitions = vec![partition];
        let mut inner = OffsetForLeaderEpochResponse::default();
        inner.topics = vec![topic];
        let response = Response(inner);
        for version in 0..FIRST_CRATE_VERSION {
            let mut buf = bytes::BytesMut::new();
            response.encode(&mut buf, version).unwrap();
            assert_eq!(buf.len(), response.compute_size(version).unwrap());
            let mut expected = Vec::new();
            expected.put_i32(1);
            expected.put_i16(1);
            expected.put_u8(b't');
            expected.put_i32(1);
            expected.put_i16(0);
            expected.put_i32(1);
            if version == 1 {
                expected.put_i32(7);
            }
            expected.put_i64(42);
            assert_eq!(&buf[..], &expected[..], "v{version}");
        }
        assert!(response.encode(&mut bytes::BytesMut::new(), 2).is_err());
    }
}
