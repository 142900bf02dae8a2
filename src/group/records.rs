//! The records a coordinator keeps in `__consumer_offsets`, in Kafka's own layout so that a
//! Kafka tool reading the topic understands them: an offset commit is key version 1 (group,
//! topic, partition) with value version 3; a group's metadata is key version 2 (group) with
//! value version 3. A record without a value is a tombstone. Everything read back is
//! validated; a malformed record is an error, never a panic.

use bytes::{Buf, BufMut, Bytes};

use crate::partition::TopicPartition;
use crate::storage::batch;

const OFFSET_KEY_VERSION: i16 = 1;
const OFFSET_KEY_VERSION_LEGACY: i16 = 0;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record ends early")]
    Truncated,
    #[error("unknown {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("negative length {0}")]
    BadLength(i64),
}

type Result<T> = std::result::Result<T, RecordError>;

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member of a group as stored with the group's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as of its last completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// A decoded record of the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group_id: String,
        partition: TopicPartition,
        /// `None`: the commit was deleted.
        value: Option<OffsetValue>,
    },
    Group {
        group_id: String,
        /// `None`: the group was deleted.
        value: Option<GroupValue>,
    },
}

impl GroupRecord {
    pub fn group_id(&self) -> &str {
        match self {
            GroupRecord::Offset { group_id, .. } | GroupRecord::Group { group_id, .. } => group_id,
        }
    }

    /// The record's key and value bytes.
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut key = Vec::new();
        let mut value = Vec::new();
        match self {
            GroupRecord::Offset {
                group_id,
                partition,
                value: offset,
            } => {
                key.put_i16(OFFSET_KEY_VERSION);
                put_string(&mut key, group_id);
                put_string(&mut key, &partition.topic);
                key.put_i32(partition.partition);
                let Some(offset) = offset else {
                    return (key, None);
                };
                value.put_i16(OFFSET_VALUE_VERSION);
                value.put_i64(offset.offset);
                value.put_i32(offset.leader_epoch);
                put_string(&mut value, &offset.metadata);
                value.put_i64(offset.commit_timestamp_ms);
            }
            GroupRecord::Group {
                group_id,
                value: group,
            } => {
                key.put_i16(GROUP_KEY_VERSION);
                put_string(&mut key, group_id);
                let Some(group) = group else {
                    return (key, None);
                };
                value.put_i16(GROUP_VALUE_VERSION);
                put_string(&mut value, &group.protocol_type);
                value.put_i32(group.generation);
                put_nullable_string(&mut value, group.protocol_name.as_deref());
                put_nullable_string(&mut value, group.leader.as_deref());
                value.put_i64(group.state_timestamp_ms);
                value.put_i32(group.members.len() as i32);
                for member in &group.members {
                    put_string(&mut value, &member.member_id);
                    put_nullable_string(&mut value, member.group_instance_id.as_deref());
                    put_string(&mut value, &member.client_id);
                    put_string(&mut value, &member.client_host);
                    value.put_i32(member.rebalance_timeout_ms);
                    value.put_i32(member.session_timeout_ms);
                    put_bytes(&mut value, &member.subscription);
                    put_bytes(&mut value, &member.assignment);
                }
            }
        }
        (key, Some(value))
    }

    /// Decodes one record; `Ok(None)` for a key version this broker does not keep (Kafka's
    /// transaction markers and newer record kinds are skipped, not fatal).
    pub fn decode(key: Bytes, value: Option<Bytes>) -> Result<Option<GroupRecord>> {
        let mut key = key;
        let version = get_i16(&mut key)?;
        match version {
            OFFSET_KEY_VERSION_LEGACY | OFFSET_KEY_VERSION => {
                let group_id = get_string(&mut key)?;
                let topic = get_string(&mut key)?;
                let partition = get_i32(&mut key)?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(Some(GroupRecord::Offset {
                    group_id,
                    partition: TopicPartition::new(topic, partition),
                    value,
                }))
            }
            GROUP_KEY_VERSION => {
                let group_id = get_string(&mut key)?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(Some(GroupRecord::Group { group_id, value }))
            }
            _ => Ok(None),
        }
    }
}

fn decode_offset_value(mut buf: Bytes) -> Result<OffsetValue> {
    let version = get_i16(&mut buf)?;
    let offset = get_i64(&mut buf)?;
    // v3 added the leader epoch; v1 carried an expiry timestamp after the commit time.
    let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
    let metadata = get_string(&mut buf)?;
    let commit_timestamp_ms = get_i64(&mut buf)?;
    if !(0..=OFFSET_VALUE_VERSION).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "offset value",
            version,
        });
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(mut buf: Bytes) -> Result<GroupValue> {
    let version = get_i16(&mut buf)?;
    if !(0..=GROUP_VALUE_VERSION).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "group value",
            version,
        });
    }
    let protocol_type = get_string(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol_name = get_nullable_string(&mut buf)?;
    let leader = get_nullable_string(&mut buf)?;
    let state_timestamp_ms = if version >= 2 { get_i64(&mut buf)? } else { -1 };
    let count = get_i32(&mut buf)?;
    if count < 0 {
        return Err(RecordError::BadLength(count.into()));
    }
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = get_string(&mut buf)?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut buf)?
        } else {
            None
        };
        let client_id = get_string(&mut buf)?;
        let client_host = get_string(&mut buf)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { -1 };
        let session_timeout_ms = get_i32(&mut buf)?;
        let subscription = get_bytes(&mut buf)?;
        let assignment = get_bytes(&mut buf)?;
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol_name,
        leader,
        state_timestamp_ms,
        members,
    })
}

/// One uncompressed v2 record batch holding `records`, ready for `Partition::produce`.
pub fn build_record_batch(records: &[GroupRecord], timestamp_ms: i64) -> Bytes {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut payload = Vec::new();
    for (index, entry) in records.iter().enumerate() {
        let (key, value) = entry.encode();
        batch::put_record(&mut payload, 0, index as i64, Some(&key), value.as_deref());
    }
    Bytes::from(batch::build_batch(
        timestamp_ms,
        records.len() as i32,
        &payload,
        None,
    ))
}

/// The (key, value) pairs of one stored, uncompressed v2 batch.
pub fn batch_records(batch_bytes: &Bytes) -> Result<Vec<(Bytes, Option<Bytes>)>> {
    let header = batch::peek_header(batch_bytes).map_err(|_| RecordError::Truncated)?;
    let count = header.records_count.get();
    let end = header.size_bytes().min(batch_bytes.len());
    if end < batch::BATCH_HEADER_SIZE_BYTES {
        return Err(RecordError::Truncated);
    }
    let mut buf = batch_bytes.slice(batch::BATCH_HEADER_SIZE_BYTES..end);
    let mut records = Vec::new();
    for _ in 0..count.max(0) {
        let length = get_length(&mut buf)?.ok_or(RecordError::BadLength(-1))?;
        let mut record = buf.split_to(length);
        get_i8(&mut record)?; // attributes
        get_varint(&mut record)?; // timestamp delta
        get_varint(&mut record)?; // offset delta
        let key = get_length(&mut record)?.map(|n| record.split_to(n));
        let value = get_length(&mut record)?.map(|n| record.split_to(n));
        // Headers are not used by coordinator records; they are skipped with the record.
        if let Some(key) = key {
            records.push((key, value));
        }
    }
    Ok(records)
}

fn put_string(buf: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(i16::MAX as usize)];
    buf.put_i16(bytes.len() as i16);
    buf.extend_from_slice(bytes);
}

fn put_nullable_string(buf: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => put_string(buf, text),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.extend_from_slice(bytes);
}

fn need(buf: &Bytes, bytes: usize) -> Result<()> {
    if buf.remaining() < bytes {
        Err(RecordError::Truncated)
    } else {
        Ok(())
    }
}

fn get_i8(buf: &mut Bytes) -> Result<i8> {
    need(buf, 1)?;
    Ok(buf.get_i8())
}

fn get_i16(buf: &mut Bytes) -> Result<i16> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut Bytes) -> Result<i32> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut Bytes) -> Result<i64> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn get_varint(buf: &mut Bytes) -> Result<i64> {
    let mut zigzag: u64 = 0;
    for shift in (0..64).step_by(7) {
        need(buf, 1)?;
        let byte = buf.get_u8();
        zigzag |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64));
        }
    }
    Err(RecordError::Truncated)
}

/// A varint length: `None` for -1 (null), an error past the buffer's end.
fn get_length(buf: &mut Bytes) -> Result<Option<usize>> {
    let length = get_varint(buf)?;
    match length {
        -1 => Ok(None),
        n if n < 0 => Err(RecordError::BadLength(n)),
        n => {
            let n = usize::try_from(n).map_err(|_| RecordError::BadLength(n))?;
            need(buf, n)?;
            Ok(Some(n))
        }
    }
}

fn get_string(buf: &mut Bytes) -> Result<String> {
    get_nullable_string(buf)?.ok_or(RecordError::BadLength(-1))
}

fn get_nullable_string(buf: &mut Bytes) -> Result<Option<String>> {
    let length = get_i16(buf)?;
    if length == -1 {
        return Ok(None);
    }
    let length = usize::try_from(length).map_err(|_| RecordError::BadLength(length.into()))?;
    need(buf, length)?;
    let bytes = buf.split_to(length);
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|_| RecordError::NotUtf8)
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes> {
    let length = get_i32(buf)?;
    let length = usize::try_from(length).map_err(|_| RecordError::BadLength(length.into()))?;
    need(buf, length)?;
    Ok(buf.split_to(length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_group() -> GroupRecord {
        GroupRecord::Group {
            group_id: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 7,
                protocol_name: Some("range".into()),
                leader: Some("m-1".into()),
                state_timestamp_ms: 123,
                members: vec![StoredMember {
                    member_id: "m-1".into(),
                    group_instance_id: Some("static-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"assign"),
                }],
            }),
        }
    }

    #[test]
    fn records_survive_a_batch_round_trip() {
        let records = vec![
            GroupRecord::Offset {
                group_id: "g".into(),
                partition: TopicPartition::new("t", 3),
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: 0,
                    metadata: "meta".into(),
                    commit_timestamp_ms: 99,
                }),
            },
            GroupRecord::Offset {
                group_id: "g".into(),
                partition: TopicPartition::new("t", 4),
                value: None,
            },
            sample_group(),
            GroupRecord::Group {
                group_id: "h".into(),
                value: None,
            },
        ];
        let batch_bytes = build_record_batch(&records, 1_000);
        crate::storage::batch::validate(&batch_bytes).unwrap();
        let decoded: Vec<GroupRecord> = batch_records(&batch_bytes)
            .unwrap()
            .into_iter()
            .map(|(k, v)| GroupRecord::decode(k, v).unwrap().unwrap())
            .collect();
        assert_eq!(decoded, records);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(key in proptest::collection::vec(any::<u8>(), 0..64),
                                value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256))) {
            let _ = GroupRecord::decode(Bytes::from(key), value.map(Bytes::from));
        }

        #[test]
        fn damaged_batches_never_panic(cut in 0usize..400, flip in 0usize..400) {
            let mut bytes = build_record_batch(&[sample_group()], 5).to_vec();
            if flip < bytes.len() { bytes[flip] ^= 0x5a; }
            bytes.truncate(cut.max(1));
            let _ = batch_records(&Bytes::from(bytes));
        }
    }
}
