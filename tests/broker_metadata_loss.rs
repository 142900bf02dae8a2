//! Lost or unreadable metadata never costs partition data: the real broker over damaged
//! `__cluster_metadata` logs and `partition.metadata` files, and `ringlog recover-metadata`
//! bringing the data back.

mod common_kafka;

use std::path::Path;
use std::process::Command;

use common_kafka::{create_topic, list_offset, metadata_topic, produce_batch, Broker};

const LEADER_NOT_AVAILABLE: i16 = 5;
const KAFKA_STORAGE_ERROR: i16 = 56;
const LATEST: i64 = -1;

/// Byte positions of the record batches in the metadata log's first segment.
fn metadata_batches(data_dir: &Path) -> (std::path::PathBuf, Vec<usize>) {
    let segment = data_dir
        .join("__cluster_metadata-0")
        .join("00000000000000000000.log");
    let bytes = std::fs::read(&segment).unwrap();
    let mut positions = Vec::new();
    let mut position = 0;
    while let Ok(header) = ringlog::storage::batch::validate(&bytes[position..]) {
        positions.push(position);
        position += header.size_bytes();
    }
    (segment, positions)
}

fn flip_byte(path: &Path, position: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[position] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn recover_metadata(data_dir: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ringlog"))
        .args(["recover-metadata", "--smp", "2", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run ringlog recover-metadata");
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Produces `batches` batches of 100 records to `topic`/0; returns the log end offset.
fn fill(broker: &Broker, topic: &str, batches: usize) -> i64 {
    let mut client = broker.client();
    for _ in 0..batches {
        assert_eq!(produce_batch(&mut client, topic, 0, 100, -1).0, 0);
    }
    list_offset(&mut client, topic, 0, LATEST).1
}

fn ready_body(broker: &Broker) -> String {
    common_kafka::http_get(broker.admin_addr, "/v1/ready")
        .expect("admin answers")
        .1
}

/// The last metadata record is cut as a torn tail: its topic's directory becomes an orphan,
/// kept and reported; auto-creating the name does not discard it; recovery serves it again.
#[test]
fn a_lost_topic_record_keeps_its_data_through_auto_create_and_recovery() {
    let mut broker = Broker::start();
    create_topic(&mut broker.client(), "other", 1);
    create_topic(&mut broker.client(), "orders", 1);
    assert_eq!(fill(&broker, "orders", 10), 1000);
    assert!(broker.stop().is_some_and(|s| s.success()));
    let data_dir = broker.data_dir();
    let (segment, positions) = metadata_batches(&data_dir);
    let last = *positions.last().unwrap();
    flip_byte(&segment, last + 70);

    broker.start_again();
    let mut client = broker.client();
    let answer = metadata_topic(&mut client, "orders", true);
    assert_eq!(
        answer.error_code, KAFKA_STORAGE_ERROR,
        "not recreated over old data"
    );
    assert!(data_dir
        .join("orders-0")
        .join("00000000000000000000.log")
        .exists());
    let ready = ready_body(&broker);
    assert!(ready.contains("orders-0"), "{ready}");
    let metrics = common_kafka::http_get(broker.admin_addr, "/metrics")
        .unwrap()
        .1;
    let samples = common_kafka::parse_metrics(&metrics);
    assert_eq!(
        common_kafka::metric_sum(&samples, "ringlog_orphaned_partition_dirs", &[]),
        1.0
    );
    assert!(
        broker
            .log()
            .contains("partition directory unknown to the metadata"),
        "{}",
        broker.log()
    );
    drop(client);
    assert!(broker.stop().is_some_and(|s| s.success()));

    let (code, output) = recover_metadata(&data_dir);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("recreated topic 'orders'"), "{output}");
    broker.start_again();
    let mut client = broker.client();
    assert_eq!(list_offset(&mut client, "orders", 0, LATEST), (0, 1000));
    assert_eq!(list_offset(&mut client, "other", 0, LATEST), (0, 0));
}

/// Damage before valid records: the broker refuses to start (it would cut later changes);
/// recovery keeps what it can read and adopts the rest from the directories.
#[test]
fn damage_inside_the_metadata_log_stops_start_up_and_recovery_keeps_every_partition() {
    let mut broker = Broker::start();
    create_topic(&mut broker.client(), "first", 2);
    create_topic(&mut broker.client(), "second", 1);
    assert_eq!(fill(&broker, "first", 3), 300);
    assert_eq!(fill(&broker, "second", 2), 200);
    assert!(broker.stop().is_some_and(|s| s.success()));
    let data_dir = broker.data_dir();
    let (segment, positions) = metadata_batches(&data_dir);
    // positions[0] is the cluster id; [1] creates "first".
    flip_byte(&segment, positions[1] + 70);
    let damaged = std::fs::read(&segment).unwrap();

    broker.launch_again();
    let status = broker.wait_exit();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", broker.log());
    assert!(
        broker.log().contains("recover-metadata"),
        "{}",
        broker.log()
    );
    assert_eq!(std::fs::read(&segment).unwrap(), damaged, "nothing was cut");

    let (code, output) = recover_metadata(&data_dir);
    assert_eq!(code, Some(0), "{output}");
    broker.start_again();
    let mut client = broker.client();
    assert_eq!(list_offset(&mut client, "first", 0, LATEST), (0, 300));
    assert_eq!(list_offset(&mut client, "first", 1, LATEST), (0, 0));
    assert_eq!(list_offset(&mut client, "second", 0, LATEST), (0, 200));
}

/// An unparseable `partition.metadata`: the partition is offline (as Kafka shows a partition
/// whose log directory failed), its data stays, and recovery rewrites the marker.
#[test]
fn an_unreadable_partition_marker_leaves_the_partition_offline_with_its_data() {
    let mut broker = Broker::start();
    create_topic(&mut broker.client(), "marked", 2);
    assert_eq!(fill(&broker, "marked", 5), 500);
    assert!(broker.stop().is_some_and(|s| s.success()));
    let data_dir = broker.data_dir();
    let marker = data_dir.join("marked-0").join("partition.metadata");
    std::fs::write(&marker, b"version: 0\ntopic_id: \xff\xfe\n").unwrap();

    broker.start_again();
    let mut client = broker.client();
    let answer = metadata_topic(&mut client, "marked", false);
    assert_eq!(answer.error_code, 0);
    let partition = &answer.partitions[0];
    assert_eq!(partition.error_code, LEADER_NOT_AVAILABLE);
    assert_eq!(partition.leader_id.0, -1);
    assert_eq!(answer.partitions[1].error_code, 0);
    assert_eq!(
        produce_batch(&mut client, "marked", 0, 1, -1).0,
        KAFKA_STORAGE_ERROR
    );
    assert_eq!(
        list_offset(&mut client, "marked", 0, LATEST).0,
        KAFKA_STORAGE_ERROR
    );
    assert_eq!(produce_batch(&mut client, "marked", 1, 1, -1).0, 0);
    let ready = ready_body(&broker);
    assert!(
        ready.contains("offline_partitions") && ready.contains("partition.metadata is unreadable"),
        "{ready}"
    );
    assert!(data_dir
        .join("marked-0")
        .join("00000000000000000000.log")
        .exists());
    drop(client);
    assert!(broker.stop().is_some_and(|s| s.success()));

    let (code, output) = recover_metadata(&data_dir);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("rewrote the partition.metadata"),
        "{output}"
    );
    broker.start_again();
    let mut client = broker.client();
    assert_eq!(list_offset(&mut client, "marked", 0, LATEST), (0, 500));
    assert!(!ready_body(&broker).contains("offline_partitions"));
}
