//! Incremental fetch sessions (KIP-227) against the real broker, with raw requests: a session
//! starts with a full fetch, later fetches name only what changed and are answered with only
//! the partitions that have news; wrong epochs and unknown sessions get their error codes.

mod common_kafka;

use bytes::Bytes;
use common_kafka::{Broker, Client};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, FetchResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "sessions";

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_string(TOPIC.to_string()))
}

fn create_topic(client: &mut Client, partitions: i32) {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name();
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 30_000;
    assert_eq!(client.send(5, &request).topics[0].error_code, 0);
}

fn produce(client: &mut Client, partition: i32, records: i32) {
    let batch = ringlog::storage::batch::build_batch(1_700_000_000_000, records, b"payload", None);
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(Bytes::from(batch));
    let mut topic = TopicProduceData::default();
    topic.name = topic_name();
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    let response = client.send(9, &request);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

fn fetch(
    client: &mut Client,
    session_id: i32,
    session_epoch: i32,
    positions: &[(i32, i64)],
    forgotten: &[i32],
) -> FetchResponse {
    let mut topic = FetchTopic::default();
    topic.topic = topic_name();
    topic.partitions = positions
        .iter()
        .map(|(partition, offset)| {
            let mut entry = FetchPartition::default();
            entry.partition = *partition;
            entry.fetch_offset = *offset;
            entry.partition_max_bytes = 1024 * 1024;
            entry
        })
        .collect();
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 50;
    request.min_bytes = 1;
    request.max_bytes = 1024 * 1024;
    request.session_id = session_id;
    request.session_epoch = session_epoch;
    request.topics = if positions.is_empty() {
        Vec::new()
    } else {
        vec![topic]
    };
    if !forgotten.is_empty() {
        let mut gone = ForgottenTopic::default();
        gone.topic = topic_name();
        gone.partitions = forgotten.to_vec();
        request.forgotten_topics_data = vec![gone];
    }
    client.send(12, &request)
}

/// (partition, number of record bytes) of every partition in the answer.
fn answered(response: &FetchResponse) -> Vec<(i32, usize)> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |r| r.len())))
        .collect()
}

#[test]
fn incremental_fetches_answer_only_what_changed() {
    let broker = Broker::start();
    let mut client = broker.client();
    create_topic(&mut client, 3);
    produce(&mut client, 0, 2);
    produce(&mut client, 2, 3);

    // A full fetch that opens a session.
    let full = fetch(&mut client, 0, 0, &[(0, 0), (1, 0), (2, 0)], &[]);
    assert_eq!(full.error_code, 0);
    assert_ne!(full.session_id, 0, "a session was created");
    let session = full.session_id;
    let parts = answered(&full);
    assert_eq!(parts.len(), 3, "a full answer lists every partition");
    assert!(parts[0].1 > 0 && parts[1].1 == 0 && parts[2].1 > 0);

    // Caught up everywhere: nothing has news.
    let quiet = fetch(&mut client, session, 1, &[(0, 2), (2, 3)], &[]);
    assert_eq!(quiet.error_code, 0);
    assert_eq!(quiet.session_id, session);
    assert!(
        answered(&quiet).is_empty(),
        "no news: {:?}",
        answered(&quiet)
    );

    // New data on partition 1 only: only it is answered, without naming it again.
    produce(&mut client, 1, 4);
    let news = fetch(&mut client, session, 2, &[], &[]);
    let parts = answered(&news);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0, 1);
    assert!(parts[0].1 > 0);

    // Forgetting partition 1; new data there is no longer answered.
    let _ = fetch(&mut client, session, 3, &[(1, 4)], &[1]);
    produce(&mut client, 1, 1);
    assert!(answered(&fetch(&mut client, session, 4, &[], &[])).is_empty());

    // A replayed epoch and an unknown session get the protocol's errors.
    assert_eq!(fetch(&mut client, session, 4, &[], &[]).error_code, 71);
    assert_eq!(fetch(&mut client, 999_999, 1, &[], &[]).error_code, 70);

    // Epoch -1 closes the session; the fetch is served as a full one without a session.
    let closed = fetch(&mut client, session, -1, &[(0, 0)], &[]);
    assert_eq!(closed.session_id, 0);
    assert_eq!(answered(&closed).len(), 1);
    assert_eq!(fetch(&mut client, session, 5, &[], &[]).error_code, 70);
}
