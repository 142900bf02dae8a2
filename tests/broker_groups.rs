//! The group coordinator against the real broker (two shards), driven with raw Kafka
//! requests: a whole membership cycle with the error codes clients rely on, malformed and
//! oversized input, commits surviving SIGKILL, and the offsets log staying bounded by its
//! rewrites while every commit survives restarts.

mod common_kafka;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use common_kafka::{create_topic, metric_sum, parse_metrics, produce_batch, Broker, Client};
use ringlog::group::{offsets_partition_for, OFFSETS_TOPIC};

const TOPIC: &str = "orders";
const NONE: i16 = 0;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const MEMBER_ID_REQUIRED: i16 = 79;
const NOT_COORDINATOR: i16 = 16;

/// Settings that keep the tests quick: no initial delay, short sessions allowed.
const FAST_GROUPS: &str =
    "[group]\ngroup_initial_rebalance_delay_ms = 0\ngroup_min_session_timeout_ms = 500\n";

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A JoinGroup for the "range" protocol with these timeouts.
fn join_request(
    group: &str,
    member_id: &str,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    metadata: Bytes,
) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = s("range");
    protocol.metadata = metadata;
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(rebalance_timeout_ms)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol])
}

fn join(client: &mut Client, group: &str, member_id: &str, metadata: Bytes) -> JoinGroupResponse {
    client.send(5, &join_request(group, member_id, 1_000, 5_000, metadata))
}

/// Heartbeats until the coordinator announces a rebalance (at most 10 s).
fn wait_for_rebalance(client: &mut Client, group: &str, member_id: &str, generation: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while heartbeat(client, group, member_id, generation) != REBALANCE_IN_PROGRESS {
        assert!(
            std::time::Instant::now() < deadline,
            "no rebalance announced"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn sync(client: &mut Client, group: &str, member_id: &str, generation: i32) -> (i16, Bytes) {
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = s(member_id);
    assignment.assignment = Bytes::from_static(b"all-yours");
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(vec![assignment]);
    let response = client.send(3, &request);
    (response.error_code, response.assignment)
}

fn heartbeat(client: &mut Client, group: &str, member_id: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member_id));
    client.send(3, &request).error_code
}

fn commit(
    client: &mut Client,
    group: &str,
    member_id: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let mut request_topic = OffsetCommitRequestTopic::default();
    request_topic.name = TopicName(s(topic));
    request_topic.partitions = offsets
        .iter()
        .map(|(partition, offset)| {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            p.committed_metadata = Some(s(
                "checkpoint metadata that makes each record a bit larger than bare numbers",
            ));
            p
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(vec![request_topic]);
    client.send(7, &request).topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

fn committed(client: &mut Client, group: &str, partitions: &[i32]) -> Vec<i64> {
    let mut topic = OffsetFetchRequestTopic::default();
    topic.name = TopicName(s(TOPIC));
    topic.partition_indexes = partitions.to_vec();
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![topic]));
    let response = client.send(7, &request);
    assert_eq!(response.error_code, NONE);
    let answered = &response.topics[0].partitions;
    partitions
        .iter()
        .map(|p| {
            answered
                .iter()
                .find(|a| a.partition_index == *p)
                .map_or(-2, |a| a.committed_offset)
        })
        .collect()
}

fn describe_state(client: &mut Client, group: &str) -> (String, usize) {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let response = client.send(5, &request);
    let described = &response.groups[0];
    assert_eq!(described.error_code, NONE);
    (described.group_state.to_string(), described.members.len())
}

fn find_coordinator(client: &mut Client, group: &str) {
    let request = FindCoordinatorRequest::default().with_key(s(group));
    assert_eq!(client.send(3, &request).error_code, NONE);
}

#[test]
fn a_membership_cycle_answers_the_codes_clients_expect() {
    let broker = Broker::start_with_config(FAST_GROUPS);
    let mut client = broker.client();
    create_topic(&mut client, TOPIC, 2);
    find_coordinator(&mut client, "cycle");

    let first = join(&mut client, "cycle", "", Bytes::from_static(b"sub"));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED, "KIP-394: ids first");
    let member_id = first.member_id.to_string();
    assert!(!member_id.is_empty());
    let joined = join(&mut client, "cycle", &member_id, Bytes::from_static(b"sub"));
    assert_eq!(joined.error_code, NONE);
    assert_eq!(joined.leader.to_string(), member_id);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, Bytes::from_static(b"sub"));
    let generation = joined.generation_id;

    assert_eq!(
        heartbeat(&mut client, "cycle", &member_id, generation),
        NONE,
        "heartbeats are fine while the leader assigns"
    );
    let (code, assignment) = sync(&mut client, "cycle", &member_id, generation);
    assert_eq!(code, NONE);
    assert_eq!(assignment, Bytes::from_static(b"all-yours"));
    assert_eq!(
        heartbeat(&mut client, "cycle", &member_id, generation),
        NONE
    );
    assert_eq!(
        heartbeat(&mut client, "cycle", &member_id, generation + 1),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut client, "cycle", "someone-else", generation),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(describe_state(&mut client, "cycle"), ("Stable".into(), 1));

    assert_eq!(
        commit(
            &mut client,
            "cycle",
            &member_id,
            generation,
            TOPIC,
            &[(0, 5), (1, 7)]
        ),
        vec![NONE, NONE]
    );
    assert_eq!(
        commit(
            &mut client,
            "cycle",
            &member_id,
            generation + 3,
            TOPIC,
            &[(0, 9)]
        ),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit(
            &mut client,
            "cycle",
            &member_id,
            generation,
            "no-such-topic",
            &[(0, 1)]
        ),
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(committed(&mut client, "cycle", &[0, 1]), vec![5, 7]);

    let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("cycle"))]);
    assert_eq!(
        client.send(2, &delete).results[0].error_code,
        NON_EMPTY_GROUP
    );

    // A second member joins: the first learns of the rebalance from its heartbeat, may still
    // commit, and rejoins; both get the next generation.
    let addr = broker.kafka_addr;
    let second = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        let first = join(&mut client, "cycle", "", Bytes::from_static(b"sub"));
        assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
        join(
            &mut client,
            "cycle",
            &first.member_id.to_string(),
            Bytes::from_static(b"sub"),
        )
    });
    wait_for_rebalance(&mut client, "cycle", &member_id, generation);
    assert_eq!(
        commit(
            &mut client,
            "cycle",
            &member_id,
            generation,
            TOPIC,
            &[(0, 6)]
        ),
        vec![NONE]
    );
    let rejoined = join(&mut client, "cycle", &member_id, Bytes::from_static(b"sub"));
    let second = second.join().expect("second member joined");
    assert_eq!(rejoined.error_code, NONE);
    assert_eq!(second.error_code, NONE);
    assert_eq!(rejoined.generation_id, generation + 1);
    assert_eq!(second.generation_id, generation + 1);
    assert_eq!(rejoined.members.len() + second.members.len(), 2);

    let leaving: Vec<MemberIdentity> = [member_id.clone(), second.member_id.to_string()]
        .iter()
        .map(|id| {
            let mut leaving = MemberIdentity::default();
            leaving.member_id = s(id);
            leaving
        })
        .collect();
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("cycle")))
        .with_members(leaving);
    let left = client.send(3, &leave);
    assert_eq!(left.error_code, NONE);
    assert!(left.members.iter().all(|m| m.error_code == NONE));
    assert_eq!(describe_state(&mut client, "cycle"), ("Empty".into(), 0));
    let listed = client.send(4, &ListGroupsRequest::default());
    assert!(listed
        .groups
        .iter()
        .any(|g| g.group_id.0.as_str() == "cycle" && g.group_state.as_str() == "Empty"));

    assert_eq!(client.send(2, &delete).results[0].error_code, NONE);
    assert_eq!(describe_state(&mut client, "cycle"), ("Dead".into(), 0));
    assert_eq!(committed(&mut client, "cycle", &[0, 1]), vec![-1, -1]);
}

#[test]
fn bad_joins_are_refused_and_the_broker_keeps_serving() {
    let broker = Broker::start_with_config(FAST_GROUPS);
    let mut client = broker.client();

    let oversized = join(
        &mut client,
        "big",
        "",
        Bytes::from(vec![7u8; 2 * 1024 * 1024]),
    );
    assert_eq!(oversized.error_code, INVALID_REQUEST);

    let too_short_session = join_request("short", "", 10, 5_000, Bytes::new());
    assert_eq!(
        client.send(5, &too_short_session).error_code,
        INVALID_SESSION_TIMEOUT
    );

    // A JoinGroup body cut short: the connection is closed, nothing else is harmed.
    let mut raw = broker.client();
    let truncated = [0u8, 5, b'g', b'r'];
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        raw.send_raw(ApiKey::JoinGroup, 5, &truncated, 0)
    }));
    assert!(result.is_err(), "a malformed join gets no answer");

    let mut fresh = broker.client();
    let first = join(&mut fresh, "after", "", Bytes::from_static(b"ok"));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
}

#[test]
fn commits_survive_sigkill() {
    let mut broker = Broker::start_with_config(FAST_GROUPS);
    let mut client = broker.client();
    create_topic(&mut client, TOPIC, 3);
    for round in 1..=20i64 {
        let codes = commit(
            &mut client,
            "standalone",
            "",
            -1,
            TOPIC,
            &[(0, round), (1, 2 * round), (2, 3 * round)],
        );
        assert_eq!(codes, vec![NONE; 3]);
    }
    broker.kill_and_restart();
    let mut client = broker.client();
    assert_eq!(
        committed(&mut client, "standalone", &[0, 1, 2]),
        vec![20, 40, 60]
    );
}

#[test]
fn the_offsets_log_is_rewritten_and_stays_bounded() {
    let config = format!(
        "{FAST_GROUPS}offsets_log_rewrite_min_bytes = 65536\noffsets_topic_segment_bytes = 16384\n"
    );
    let mut broker = Broker::start_with_config(&config);
    let mut client = broker.client();
    create_topic(&mut client, TOPIC, 4);
    let groups = ["alpha", "beta", "gamma"];
    let rounds = 400i64;
    for round in 1..=rounds {
        for group in groups {
            let offsets: Vec<(i32, i64)> = (0..4).map(|p| (p, round * 10 + i64::from(p))).collect();
            assert_eq!(
                commit(&mut client, group, "", -1, TOPIC, &offsets),
                vec![NONE; 4]
            );
        }
    }
    // The coordinator checks its logs every 100 ms; give it a few rounds.
    let partition_count = 16;
    let starts = |client: &mut Client| -> Vec<i64> {
        let mut topic = ListOffsetsTopic::default();
        topic.name = TopicName(s(OFFSETS_TOPIC));
        topic.partitions = groups
            .iter()
            .map(|g| {
                let mut p = ListOffsetsPartition::default();
                p.partition_index = offsets_partition_for(g, partition_count);
                p.timestamp = -2;
                p
            })
            .collect();
        let request = ListOffsetsRequest::default().with_topics(vec![topic]);
        client.send(5, &request).topics[0]
            .partitions
            .iter()
            .map(|p| p.offset)
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while starts(&mut client).contains(&0) {
        assert!(
            std::time::Instant::now() < deadline,
            "no offsets partition was rewritten: {:?}\n{}",
            starts(&mut client),
            broker.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    broker.restart();
    let mut client = broker.client();
    for group in groups {
        let expected: Vec<i64> = (0..4).map(|p| rounds * 10 + p).collect();
        assert_eq!(
            committed(&mut client, group, &[0, 1, 2, 3]),
            expected,
            "{group}"
        );
    }
    broker.kill_and_restart();
    let mut client = broker.client();
    for group in groups {
        let expected: Vec<i64> = (0..4).map(|p| rounds * 10 + p).collect();
        assert_eq!(
            committed(&mut client, group, &[0, 1, 2, 3]),
            expected,
            "{group}"
        );
    }
}

#[test]
fn stopping_the_broker_answers_members_waiting_in_a_join() {
    let mut broker = Broker::start_with_config(FAST_GROUPS);
    let mut client = broker.client();
    let first = join(&mut client, "waiting", "", Bytes::from_static(b"sub"));
    let member_id = first.member_id.to_string();
    let joined = join(
        &mut client,
        "waiting",
        &member_id,
        Bytes::from_static(b"sub"),
    );
    assert_eq!(
        sync(&mut client, "waiting", &member_id, joined.generation_id).0,
        NONE
    );

    // A second member joins with a long rebalance timeout; the first never rejoins, so the
    // join barrier would hold it for a minute.
    let addr = broker.kafka_addr;
    let second = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        let request = join_request("waiting", "", 60_000, 60_000, Bytes::new());
        let first = client.send(5, &request);
        let request = request.with_member_id(first.member_id);
        client.send(5, &request).error_code
    });
    wait_for_rebalance(&mut client, "waiting", &member_id, joined.generation_id);
    broker.restart();
    assert_eq!(second.join().expect("answered"), NOT_COORDINATOR);
}

#[test]
fn deleting_a_topic_drops_its_committed_offsets() {
    let mut broker = Broker::start_with_config(FAST_GROUPS);
    let mut client = broker.client();
    create_topic(&mut client, TOPIC, 2);
    assert_eq!(
        commit(&mut client, "reader", "", -1, TOPIC, &[(0, 11), (1, 12)]),
        vec![NONE, NONE]
    );
    let delete = kafka_protocol::messages::DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(s(TOPIC))])
        .with_timeout_ms(30_000);
    assert_eq!(client.send(4, &delete).responses[0].error_code, NONE);
    create_topic(&mut client, TOPIC, 2);
    assert_eq!(committed(&mut client, "reader", &[0, 1]), vec![-1, -1]);
    broker.restart();
    let mut client = broker.client();
    assert_eq!(
        committed(&mut client, "reader", &[0, 1]),
        vec![-1, -1],
        "the tombstones are durable"
    );
}

#[test]
fn consumer_lag_is_exported_per_group_and_topic() {
    let broker = Broker::start_with_config(FAST_GROUPS);
    let mut client = broker.client();
    create_topic(&mut client, TOPIC, 2);
    assert_eq!(produce_batch(&mut client, TOPIC, 0, 10, 1).0, NONE);
    assert_eq!(produce_batch(&mut client, TOPIC, 1, 4, 1).0, NONE);
    assert_eq!(
        commit(&mut client, "lagging", "", -1, TOPIC, &[(0, 3), (1, 1)]),
        vec![NONE, NONE]
    );
    // Lag is computed every few seconds; wait for the first round that sees the commit.
    let labels = [("group", "lagging"), ("topic", TOPIC)];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, text) = common_kafka::http_get(broker.admin_addr, "/metrics").expect("scrape");
        assert_eq!(status, 200);
        let samples = parse_metrics(&text);
        let lag = metric_sum(&samples, "ringlog_consumer_group_lag", &labels);
        if lag == 10.0 {
            assert!(metric_sum(&samples, "ringlog_consumer_groups", &[]) >= 1.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lag never reached 7 + 3 (last {lag})"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn the_offsets_topic_cannot_be_deleted_or_grown() {
    const POLICY_VIOLATION: i16 = 44;
    let broker = Broker::start_with_config(FAST_GROUPS);
    let mut client = broker.client();
    find_coordinator(&mut client, "any");
    let delete = kafka_protocol::messages::DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(s(OFFSETS_TOPIC))])
        .with_timeout_ms(30_000);
    assert_eq!(
        client.send(4, &delete).responses[0].error_code,
        POLICY_VIOLATION
    );
    let mut grow =
        kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default();
    grow.name = TopicName(s(OFFSETS_TOPIC));
    grow.count = 32;
    grow.assignments = None;
    let request = kafka_protocol::messages::CreatePartitionsRequest::default()
        .with_topics(vec![grow])
        .with_timeout_ms(30_000);
    assert_eq!(
        client.send(3, &request).results[0].error_code,
        POLICY_VIOLATION
    );
}

/// Kafka expires a member on time: a DeleteGroups right after the last member's session ran
/// out succeeds, whenever the broker's own timer pass comes next.
#[test]
fn a_group_whose_members_just_expired_can_be_deleted() {
    let broker = Broker::start_with_config(FAST_GROUPS);
    let mut client = broker.client();
    for round in 0..5 {
        let group = format!("expiring-{round}");
        find_coordinator(&mut client, &group);
        let first = join(&mut client, &group, "", Bytes::from_static(b"sub"));
        let member_id = first.member_id.to_string();
        let joined = join(&mut client, &group, &member_id, Bytes::from_static(b"sub"));
        assert_eq!(joined.error_code, NONE);
        let (code, _) = sync(&mut client, &group, &member_id, joined.generation_id);
        assert_eq!(code, NONE);
        // Just past the 1 s session `join` asks for.
        std::thread::sleep(std::time::Duration::from_millis(1_005));
        let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]);
        assert_eq!(
            client.send(2, &delete).results[0].error_code,
            NONE,
            "round {round}"
        );
    }
}
