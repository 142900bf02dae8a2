//! Idempotent producers against the real broker, with raw Produce requests: a retried batch is
//! acknowledged with its original offset and not stored twice, a gap in sequence numbers gets
//! OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch INVALID_PRODUCER_EPOCH, and all of it still
//! holds after a restart.

mod common_kafka;

use bytes::Bytes;
use common_kafka::{Broker, Client};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "idempotent";
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_string(TOPIC.to_string()))
}

/// Produces a 3-record batch of producer `id`/`epoch` starting at `sequence`; returns
/// (error code, base offset).
fn produce(client: &mut Client, id: i64, epoch: i16, sequence: i32) -> (i16, i64) {
    let batch = ringlog::storage::batch::build_batch(
        1_700_000_000_000,
        3,
        format!("batch {sequence}").as_bytes(),
        Some((id, epoch, sequence)),
    );
    let mut data = PartitionProduceData::default();
    data.index = 0;
    data.records = Some(Bytes::from(batch));
    let mut topic = TopicProduceData::default();
    topic.name = topic_name();
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    let response = client.send(9, &request);
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

fn log_end(client: &mut Client) -> i64 {
    let mut partition = ListOffsetsPartition::default();
    partition.timestamp = -1;
    let mut topic = ListOffsetsTopic::default();
    topic.name = topic_name();
    topic.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![topic];
    client.send(7, &request).topics[0].partitions[0].offset
}

#[test]
fn retries_are_deduplicated_and_gaps_refused_across_a_restart() {
    let mut broker = Broker::start();
    let mut client = broker.client();
    let mut topic = CreatableTopic::default();
    topic.name = topic_name();
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![topic];
    create.timeout_ms = 30_000;
    assert_eq!(client.send(5, &create).topics[0].error_code, 0);

    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;
    init.producer_id = ProducerId(-1);
    init.producer_epoch = -1;
    init.transaction_timeout_ms = 60_000;
    let answer = client.send(4, &init);
    assert_eq!(answer.error_code, 0);
    let (id, epoch) = (answer.producer_id.0, answer.producer_epoch);
    assert!(id >= 0);

    assert_eq!(produce(&mut client, id, epoch, 0), (0, 0));
    assert_eq!(produce(&mut client, id, epoch, 3), (0, 3));
    // A retry of either batch gets its original offset; nothing new is stored.
    assert_eq!(produce(&mut client, id, epoch, 0), (0, 0));
    assert_eq!(produce(&mut client, id, epoch, 3), (0, 3));
    assert_eq!(log_end(&mut client), 6);
    // A gap is refused.
    assert_eq!(
        produce(&mut client, id, epoch, 9).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(log_end(&mut client), 6);

    broker.restart();
    let mut client = broker.client();
    assert_eq!(
        produce(&mut client, id, epoch, 3),
        (0, 3),
        "still a duplicate after a restart"
    );
    assert_eq!(
        produce(&mut client, id, epoch, 9).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(
        produce(&mut client, id, epoch, 6),
        (0, 6),
        "the sequence goes on"
    );

    // A bumped epoch starts again at 0; the old epoch is fenced.
    assert_eq!(produce(&mut client, id, epoch + 1, 0), (0, 9));
    assert_eq!(produce(&mut client, id, epoch, 9).0, INVALID_PRODUCER_EPOCH);
    assert_eq!(log_end(&mut client), 12);
}
