//! A compacted topic as Kafka clients see it: records without a key are refused with
//! INVALID_RECORD and each named (KIP-467), and creating the topic says in the response's
//! message that it is kept whole, as compaction is not implemented.

mod common_kafka;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use ringlog::storage::batch;

use common_kafka::{Broker, Client};

const INVALID_RECORD: i16 = 87;

fn batch_with_keys(keys: &[Option<&[u8]>]) -> Bytes {
    let mut records = Vec::new();
    for (delta, key) in keys.iter().enumerate() {
        batch::put_record(&mut records, 0, delta as i64, *key, Some(b"value"));
    }
    Bytes::from(batch::build_batch(
        ringlog::storage::now_ms(),
        keys.len() as i32,
        &records,
        None,
    ))
}

/// The batch of `batch_with_keys`, its records compressed with gzip as a client would.
fn gzip_batch_with_keys(keys: &[Option<&[u8]>]) -> Bytes {
    use std::io::Write;
    let mut records = Vec::new();
    for (delta, key) in keys.iter().enumerate() {
        batch::put_record(&mut records, 0, delta as i64, *key, Some(b"value"));
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&records).unwrap();
    let compressed = encoder.finish().unwrap();
    let mut bytes = batch::build_batch(
        ringlog::storage::now_ms(),
        keys.len() as i32,
        &compressed,
        None,
    );
    batch::peek_header_mut(&mut bytes).unwrap().attributes = 1.into();
    // The CRC-32C covers the attributes onwards (byte 21) and sits just before them.
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

fn produce(
    client: &mut Client,
    topic: &str,
    records: Bytes,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    common_kafka::produce_records(client, topic, 0, records, -1)
}

#[test]
fn a_compacted_topic_refuses_keyless_records_and_says_it_is_kept_whole() {
    let broker = Broker::start();
    let mut client = broker.client();
    let mut config = CreatableTopicConfig::default();
    config.name = StrBytes::from_static_str("cleanup.policy");
    config.value = Some(StrBytes::from_static_str("compact"));
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("keyed"));
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    topic.configs = vec![config];
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 30_000;
    let created = client.send(5, &request).topics.remove(0);
    assert_eq!(created.error_code, 0);
    let message = created
        .error_message
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(message.contains("kept whole"), "{message:?}");

    let refused = produce(
        &mut client,
        "keyed",
        batch_with_keys(&[Some(b"a"), None, Some(b"c"), None]),
    );
    assert_eq!(refused.error_code, INVALID_RECORD);
    let indexes: Vec<i32> = refused
        .record_errors
        .iter()
        .map(|e| e.batch_index)
        .collect();
    assert_eq!(indexes, [1, 3]);
    assert!(refused.record_errors[0]
        .batch_index_error_message
        .as_ref()
        .is_some_and(|m| m.contains("without key")));

    // Compressed batches are looked into, as Kafka decompresses them to check.
    let refused = produce(
        &mut client,
        "keyed",
        gzip_batch_with_keys(&[None, Some(b"b")]),
    );
    assert_eq!(refused.error_code, INVALID_RECORD);
    assert_eq!(refused.record_errors[0].batch_index, 0);

    let accepted = produce(
        &mut client,
        "keyed",
        batch_with_keys(&[Some(b"a"), Some(b"b")]),
    );
    assert_eq!((accepted.error_code, accepted.base_offset), (0, 0));
    // An ordinary topic takes records without a key.
    common_kafka::create_topic(&mut client, "plain", 1);
    let plain = produce(&mut client, "plain", batch_with_keys(&[None]));
    assert_eq!(plain.error_code, 0);
}
