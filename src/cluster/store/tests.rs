//! The metadata store on real direct-IO files: changes and their Kafka errors, placement,
//! durability across reopen, and damaged logs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::future;

use super::*;
use crate::cluster::topic_config::ConfigSource;

const SHARD_COUNT: u32 = 4;

fn run<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    crate::runtime::run_on_executor("metadata-test", make).expect("executor ran");
}

async fn open_with(data_dir: &Path, shard_count: u32) -> Result<Rc<MetadataStore>, MetadataError> {
    crate::storage::file::prime_device(data_dir)
        .await
        .expect("I/O probe");
    MetadataStore::open(
        data_dir,
        7,
        shard_count,
        Rc::new(BatchCache::new(MIB as usize)),
        Rc::new(SpaceGuard::unlimited()),
    )
    .await
}

async fn open(data_dir: &Path) -> Rc<MetadataStore> {
    open_with(data_dir, SHARD_COUNT)
        .await
        .expect("metadata store opens")
}

fn configs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Creates a topic without configs, with the default replication factor.
async fn create(store: &MetadataStore, name: &str, partition_count: i32) -> Arc<TopicMetadata> {
    store
        .create_topic(name, partition_count, -1, Vec::new(), false)
        .await
        .unwrap()
}

fn spread(counts: &[u32]) -> u32 {
    counts.iter().max().unwrap() - counts.iter().min().unwrap()
}

/// The metadata log's first (here: only) segment file.
fn metadata_segment(data_dir: &Path) -> PathBuf {
    data_dir
        .join(METADATA_LOG_DIR_NAME)
        .join("00000000000000000000.log")
}

fn temp_data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    (tmp, data_dir)
}

#[test]
fn first_open_sets_a_cluster_id_and_topics_spread_over_shards() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        assert_eq!(METADATA_LOG_DIR_NAME, format!("{METADATA_TOPIC_NAME}-0"));
        let store = open(&data_dir).await;
        let empty = store.snapshot();
        assert!(naming::is_valid_cluster_id(&empty.cluster_id));
        assert_eq!(empty.node_id, 7);
        assert_eq!(empty.shard_count, SHARD_COUNT);
        assert_eq!(empty.version, 1, "the cluster id is the first change");

        let mut ids = Vec::new();
        for (name, count) in [("one", 1), ("three", 3), ("eight", 8)] {
            let topic = store
                .create_topic(name, count, -1, Vec::new(), false)
                .await
                .unwrap();
            assert_eq!(topic.partition_count(), count);
            assert_eq!(topic.replication_factor, 1);
            assert!(!topic.id.is_nil());
            assert!(!topic.is_internal);
            ids.push(topic.id);
            let counts = store.snapshot().partition_count_by_shard();
            assert!(spread(&counts) <= 1, "after {name}: {counts:?}");
        }
        let snapshot = store.snapshot();
        assert_eq!(snapshot.partition_count_by_shard(), [3, 3, 3, 3]);
        assert_eq!(snapshot.version, 4);
        for id in &ids {
            assert!(snapshot.topic_by_id(id).is_some());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        let eight = snapshot.topic("eight").unwrap();
        assert!(Arc::ptr_eq(eight, snapshot.topic_by_id(&eight.id).unwrap()));
        assert_eq!(eight.shard_of(7), Some(eight.partitions[7].shard));
        assert_eq!(eight.shard_of(8), None);
        assert_eq!(eight.shard_of(-1), None);

        // One-partition topics land on different shards.
        let mut shards = Vec::new();
        for i in 0..SHARD_COUNT {
            let topic = create(&store, &format!("single-{i}"), 1).await;
            shards.push(topic.partitions[0].shard);
        }
        shards.sort();
        assert_eq!(shards, [0, 1, 2, 3]);
        let internal = create(&store, "__consumer_offsets", 2).await;
        assert!(internal.is_internal);
        store.close().await.unwrap();
    });
}

/// (name, partitions, replication factor, configs, Kafka error code, Kafka message).
type Refusal = (
    &'static str,
    i32,
    i16,
    Vec<(String, String)>,
    i16,
    Option<&'static str>,
);

#[test]
fn create_topic_refuses_what_kafka_refuses() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        create(&store, "a.b", 1).await;
        let before = store.snapshot();
        let log_end_before = store.log.log_end_offset();
        let cases: Vec<Refusal> = vec![
            ("a.b", 1, 1, vec![], 36, Some("Topic 'a.b' already exists.")),
            (
                "a_b",
                1,
                1,
                vec![],
                17,
                Some("Topic 'a_b' collides with existing topic: a.b"),
            ),
            ("bad name", 1, 1, vec![], 17, None),
            ("", 1, 1, vec![], 17, None),
            ("..", 1, 1, vec![], 17, None),
            (
                "__cluster_metadata",
                1,
                1,
                vec![],
                42,
                Some("Creation of internal topic __cluster_metadata is prohibited."),
            ),
            (
                "t",
                1,
                0,
                vec![],
                38,
                Some("Replication factor must be larger than 0, or -1 to use the default value."),
            ),
            ("t", 1, -2, vec![], 38, None),
            ("t", 1, 3, vec![], 38, None),
            (
                "t",
                0,
                1,
                vec![],
                37,
                Some("Number of partitions was set to an invalid non-positive value."),
            ),
            ("t", -2, 1, vec![], 37, None),
            (
                "t",
                10_001,
                1,
                vec![],
                44,
                Some("Excessively large number of partitions per request."),
            ),
            (
                "t",
                1,
                1,
                configs(&[("retention.days", "1")]),
                40,
                Some("Unknown topic config name: retention.days"),
            ),
            ("t", 1, 1, configs(&[("segment.bytes", "1")]), 40, None),
            (
                "t",
                1,
                1,
                configs(&[("retention.ms", "1"), ("retention.ms", "2")]),
                42,
                None,
            ),
        ];
        for (name, partitions, factor, topic_configs, code, message) in cases {
            for validate_only in [true, false] {
                let error = store
                    .create_topic(
                        name,
                        partitions,
                        factor,
                        topic_configs.clone(),
                        validate_only,
                    )
                    .await
                    .unwrap_err();
                assert_eq!(
                    error.kafka_code(),
                    code,
                    "{name} {partitions} {factor}: {error}"
                );
                if let Some(message) = message {
                    assert_eq!(error.to_string(), message);
                }
            }
        }
        assert_eq!(store.snapshot(), before, "refused creations change nothing");
        assert_eq!(store.log.log_end_offset(), log_end_before);

        let planned = store
            .create_topic("t", 3, -1, configs(&[("retention.ms", "5")]), true)
            .await
            .unwrap();
        assert_eq!(planned.partition_count(), 3);
        assert_eq!(store.snapshot(), before, "validate_only changes nothing");
        assert_eq!(store.log.log_end_offset(), log_end_before, "nor writes");

        assert_eq!(store.default_partition_count(), 1);
        assert!(store.set_default_partition_count(0).is_err());
        store.set_default_partition_count(6).unwrap();
        let defaulted = create(&store, "t", -1).await;
        assert_eq!(defaulted.partition_count(), 6);
        store.close().await.unwrap();
    });
}

#[test]
fn partitions_grow_only_and_stay_balanced() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        create(&store, "orders", 3).await;
        let lower = store
            .create_partitions("orders", 2, false)
            .await
            .unwrap_err();
        assert_eq!(lower.kafka_code(), 37);
        assert_eq!(
            lower.to_string(),
            "The topic orders currently has 3 partition(s); 2 would not be an increase."
        );
        let same = store
            .create_partitions("orders", 3, false)
            .await
            .unwrap_err();
        assert_eq!(same.to_string(), "Topic already has 3 partition(s).");
        let unknown = store.create_partitions("nope", 5, false).await.unwrap_err();
        assert_eq!(unknown.kafka_code(), 3);
        let too_many = store
            .create_partitions("orders", 10_001, false)
            .await
            .unwrap_err();
        assert_eq!(too_many.kafka_code(), 44);

        let planned = store.create_partitions("orders", 9, true).await.unwrap();
        assert_eq!(planned.partition_count(), 9);
        assert_eq!(
            store.snapshot().topic("orders").unwrap().partition_count(),
            3
        );

        let before = store.snapshot().topic("orders").unwrap().clone();
        let grown = store.create_partitions("orders", 9, false).await.unwrap();
        assert_eq!(grown.partition_count(), 9);
        assert_eq!(grown.id, before.id);
        assert_eq!(
            grown.partitions[..3],
            before.partitions[..],
            "old partitions stay"
        );
        let counts = store.snapshot().partition_count_by_shard();
        assert!(spread(&counts) <= 1, "{counts:?}");
        store.close().await.unwrap();
    });
}

#[test]
fn configs_alter_incrementally_or_as_a_whole() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        store
            .create_topic("t", 1, 1, configs(&[("retention.ms", "1000")]), false)
            .await
            .unwrap();
        let version = store.snapshot().version;
        let altered = store
            .alter_configs(
                "t",
                vec![
                    ConfigChange::Set("segment.bytes".into(), "1048576".into()),
                    ConfigChange::Append("cleanup.policy".into(), "compact".into()),
                ],
                false,
            )
            .await
            .unwrap();
        assert_eq!(altered.configs.get("retention.ms"), Some("1000"));
        assert_eq!(altered.configs.get("segment.bytes"), Some("1048576"));
        assert_eq!(
            altered.configs.get("cleanup.policy"),
            Some("delete,compact")
        );
        assert_eq!(store.snapshot().version, version + 1);
        let log = altered.configs.effective_log_config(&LogConfig::default());
        assert_eq!(log.segment_bytes, 1_048_576);
        assert_eq!(log.retention_ms, Some(1000));

        let unchanged = store
            .alter_configs(
                "t",
                vec![ConfigChange::Set("retention.ms".into(), "1000".into())],
                false,
            )
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&unchanged, &altered), "no change, no record");
        assert_eq!(store.snapshot().version, version + 1);

        let bad = store
            .alter_configs(
                "t",
                vec![ConfigChange::Set("retention.ms".into(), "soon".into())],
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(bad.kafka_code(), 40);
        let unknown = store
            .alter_configs("nope", Vec::new(), false)
            .await
            .unwrap_err();
        assert_eq!(unknown.kafka_code(), 3);

        let planned = store
            .replace_configs("t", configs(&[("max.message.bytes", "100")]), true)
            .await
            .unwrap();
        assert_eq!(planned.configs.len(), 1);
        assert_eq!(store.snapshot().topic("t").unwrap().configs.len(), 3);

        let replaced = store
            .replace_configs("t", configs(&[("max.message.bytes", "100")]), false)
            .await
            .unwrap();
        assert_eq!(replaced.configs.get("max.message.bytes"), Some("100"));
        assert_eq!(replaced.configs.get("retention.ms"), None);
        let described = replaced.configs.describe(&LogConfig::default());
        let retention = described.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!(retention.source, ConfigSource::Default);
        assert_eq!(retention.value, "604800000");
        store.close().await.unwrap();
    });
}

#[test]
fn producer_ids_are_never_handed_out_twice() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        assert_eq!(store.allocate_producer_ids(1000).await.unwrap(), 0..1000);
        assert_eq!(store.allocate_producer_ids(1).await.unwrap(), 1000..1001);
        assert_eq!(
            store
                .allocate_producer_ids(0)
                .await
                .unwrap_err()
                .kafka_code(),
            42
        );
        assert!(store
            .allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE_MAX + 1)
            .await
            .is_err());
        store.close().await.unwrap();
        let store = open(&data_dir).await;
        assert_eq!(store.next_producer_id(), 1001);
        assert_eq!(store.allocate_producer_ids(10).await.unwrap(), 1001..1011);
        store.close().await.unwrap();
    });
}

#[test]
fn every_change_survives_a_reopen() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        store
            .create_topic("orders", 3, 1, configs(&[("retention.ms", "60000")]), false)
            .await
            .unwrap();
        create(&store, "payments", 2).await;
        create(&store, "doomed", 5).await;
        store
            .alter_configs(
                "payments",
                vec![ConfigChange::Set("cleanup.policy".into(), "compact".into())],
                false,
            )
            .await
            .unwrap();
        store
            .replace_configs("orders", configs(&[("segment.ms", "3600000")]), false)
            .await
            .unwrap();
        store.create_partitions("orders", 6, false).await.unwrap();
        let deleted = store.delete_topic("doomed").await.unwrap();
        assert_eq!(deleted.partition_count(), 5);
        assert_eq!(
            store.delete_topic("doomed").await.unwrap_err().kafka_code(),
            3
        );
        store.allocate_producer_ids(500).await.unwrap();
        let before = store.snapshot();
        let next_producer_id = store.next_producer_id();
        let topics_created_count = store.state.borrow().topics_created_count;
        store.close().await.unwrap();
        assert!(store
            .create_topic("late", 1, 1, Vec::new(), false)
            .await
            .is_err());

        let reopened = open(&data_dir).await;
        assert_eq!(
            *reopened.snapshot(),
            *before,
            "ids, shards, configs, cluster id"
        );
        assert_eq!(reopened.next_producer_id(), next_producer_id);
        assert_eq!(
            reopened.state.borrow().topics_created_count,
            topics_created_count
        );
        assert!(reopened.snapshot().topic_by_id(&deleted.id).is_none());

        // A topic deleted and created again gets a new id.
        let again = create(&reopened, "doomed", 1).await;
        assert_ne!(again.id, deleted.id);
        reopened.close().await.unwrap();
    });
}

#[test]
fn partitions_of_missing_shards_move_when_the_broker_shrinks() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open_with(&data_dir, 8).await.unwrap();
        create(&store, "wide", 16).await;
        let before = store.snapshot().topic("wide").unwrap().clone();
        store.close().await.unwrap();

        let store = open_with(&data_dir, 3).await.unwrap();
        let after = store.snapshot().topic("wide").unwrap().clone();
        assert_eq!(after.id, before.id);
        assert!(after.partitions.iter().all(|p| p.shard < 3));
        for (old, new) in before.partitions.iter().zip(&after.partitions) {
            if old.shard < 3 {
                assert_eq!(old, new, "partitions on remaining shards stay");
            }
        }
        assert!(spread(&store.snapshot().partition_count_by_shard()) <= 1);
        let moved = store.snapshot();
        store.close().await.unwrap();
        let store = open_with(&data_dir, 3).await.unwrap();
        assert_eq!(store.snapshot(), moved, "the move is durable");
        store.close().await.unwrap();
    });
}

#[test]
fn concurrent_changes_are_serialised() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        let (first, second) = future::zip(
            store.create_topic("race", 2, 1, Vec::new(), false),
            store.create_topic("race", 2, 1, Vec::new(), false),
        )
        .await;
        assert!(first.is_ok() != second.is_ok(), "exactly one wins");
        let (ids, more) = future::zip(
            store.allocate_producer_ids(10),
            store.allocate_producer_ids(10),
        )
        .await;
        let (ids, more) = (ids.unwrap(), more.unwrap());
        assert!(
            ids.end <= more.start || more.end <= ids.start,
            "{ids:?} {more:?}"
        );
        let before = store.snapshot();
        store.close().await.unwrap();
        let store = open(&data_dir).await;
        assert_eq!(store.snapshot(), before);
        store.close().await.unwrap();
    });
}

#[test]
fn a_change_cancelled_midway_stops_further_changes() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        let mut creation = Box::pin(store.create_topic("maybe", 1, 1, Vec::new(), false));
        let finished = future::poll_once(&mut creation).await;
        drop(creation);
        if finished.is_some() {
            // The whole change finished in one poll: nothing was interrupted.
            store.close().await.unwrap();
            return;
        }
        let error = store
            .create_topic("after", 1, 1, Vec::new(), false)
            .await
            .unwrap_err();
        assert!(matches!(error, MetadataError::StoreFailed(_)), "{error}");
        assert_eq!(error.kafka_code(), 56);
        assert!(store.snapshot().topic("maybe").is_none());
        store.close().await.unwrap();
        // The log decides: the change is there or not, and the store works again.
        let store = open(&data_dir).await;
        create(&store, "after", 1).await;
        store.close().await.unwrap();
    });
}

/// Appends one raw batch with `payload` to the metadata log, as a damaged or foreign writer
/// would, and returns its offset.
async fn append_raw(data_dir: &Path, payload: &[u8], records_count: i32) -> i64 {
    let (log, _) = PartitionLog::open(
        &data_dir.join(METADATA_LOG_DIR_NAME),
        metadata_log_config(),
        Rc::new(BatchCache::new(0)),
        Rc::new(SpaceGuard::unlimited()),
    )
    .await
    .unwrap();
    let bytes = batch::build_batch(now_ms(), records_count, payload, None);
    let info = log.append(BytesMut::from(&bytes[..]), 0).await.unwrap();
    log.close().await.unwrap();
    info.base_offset
}

#[test]
fn damaged_records_are_errors_naming_their_offset() {
    let bad_payloads: [(&[u8], i32); 5] = [
        (b"garbage", 1),
        (br#"{"version":9,"record":{"type":"ProducerIdBlockAllocated","next":5}}"#, 1),
        (br#"{"version":1,"record":{"type":"TopicRenamed"}}"#, 1),
        (br#"{"version":1,"record":{"type":"TopicDeleted","id":"7d1c0b52-8a7f-4b47-9a59-2f0b8f7f6c11"}}"#, 1),
        (br#"{"version":1,"record":{"type":"ProducerIdBlockAllocated","next":5}}"#, 2),
    ];
    for (payload, records_count) in bad_payloads {
        let (_tmp, data_dir) = temp_data_dir();
        run(move || async move {
            let store = open(&data_dir).await;
            create(&store, "kept", 1).await;
            store.close().await.unwrap();
            let offset = append_raw(&data_dir, payload, records_count).await;
            assert_eq!(offset, 2);
            match open_with(&data_dir, SHARD_COUNT).await {
                Err(MetadataError::CorruptLog { offset: at, reason }) => {
                    assert_eq!(at, offset, "{reason}");
                    assert_eq!(
                        MetadataError::CorruptLog { offset: at, reason }.kafka_code(),
                        56
                    );
                }
                Err(other) => panic!("unexpected error {other}"),
                Ok(_) => panic!("a damaged log opened"),
            }
        });
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let (_tmp, data_dir) = temp_data_dir();
    let segment = metadata_segment(&data_dir);
    run({
        let data_dir = data_dir.clone();
        move || async move {
            let store = open(&data_dir).await;
            for i in 0..5 {
                store
                    .create_topic(
                        &format!("t{i}"),
                        2,
                        1,
                        configs(&[("retention.ms", "9")]),
                        false,
                    )
                    .await
                    .unwrap();
            }
            store.close().await.unwrap();
        }
    });
    let pristine = std::fs::read(&segment).unwrap();
    let used_bytes = pristine.iter().rposition(|b| *b != 0).unwrap() + 1;
    for position in (0..used_bytes).step_by(37) {
        let mut damaged = pristine.clone();
        damaged[position] ^= 0x5a;
        std::fs::write(&segment, &damaged).unwrap();
        let data_dir = data_dir.clone();
        run(move || async move {
            // Storage recovery cuts a damaged tail; a damaged record that survives it is an
            // error. Either way: no panic, and never more topics than were written.
            if let Ok(store) = open_with(&data_dir, SHARD_COUNT).await {
                assert!(store.snapshot().topics.len() <= 5);
                store.close().await.unwrap();
            }
        });
        std::fs::write(&segment, &pristine).unwrap();
    }
}

#[test]
fn a_lost_metadata_log_beside_partition_data_is_refused() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        create(&store, "orders", 1).await;
        store.close().await.unwrap();
        let partition_dir = data_dir.join("orders-0");
        std::fs::create_dir_all(&partition_dir).unwrap();
        std::fs::write(partition_dir.join("00000000000000000000.log"), b"").unwrap();
        std::fs::write(data_dir.join("notes-1"), b"a file, not a partition").unwrap();
        std::fs::remove_dir_all(data_dir.join(METADATA_LOG_DIR_NAME)).unwrap();
        match open_with(&data_dir, SHARD_COUNT).await {
            Err(MetadataError::CorruptLog { offset: 0, reason }) => {
                assert!(reason.contains("orders-0"), "{reason}")
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a new cluster started over existing partitions"),
        }
        std::fs::remove_dir_all(&partition_dir).unwrap();
        open(&data_dir).await.close().await.unwrap();
    });
}

/// A flipped byte in an earlier record, with valid records after it, is damage: the store
/// refuses to open rather than cut the later changes. A torn last record is cut as before.
#[test]
fn damage_before_valid_records_is_refused_and_a_torn_tail_is_cut() {
    let (_tmp, data_dir) = temp_data_dir();
    let segment = metadata_segment(&data_dir);
    run({
        let data_dir = data_dir.clone();
        move || async move {
            let store = open(&data_dir).await;
            for i in 0..4 {
                create(&store, &format!("t{i}"), 1).await;
            }
            store.close().await.unwrap();
        }
    });
    let pristine = std::fs::read(&segment).unwrap();
    let mut positions = Vec::new();
    let mut position = 0;
    while let Ok(header) = batch::validate(&pristine[position..]) {
        positions.push(position);
        position += header.size_bytes();
    }
    assert_eq!(positions.len(), 5, "cluster id and four topics");
    // Inside the second record's payload: three valid records follow.
    let mut damaged = pristine.clone();
    damaged[positions[1] + BATCH_HEADER_SIZE_BYTES + 3] ^= 0x20;
    assert_eq!(
        find_damage(&damaged).map(|d| d.valid_batches_after),
        Some(3)
    );
    std::fs::write(&segment, &damaged).unwrap();
    run({
        let data_dir = data_dir.clone();
        move || async move {
            match open_with(&data_dir, SHARD_COUNT).await {
                Err(MetadataError::CorruptLog { reason, .. }) => {
                    assert!(reason.contains("recover-metadata"), "{reason}")
                }
                Err(other) => panic!("unexpected error {other}"),
                Ok(_) => panic!("a log damaged before valid records opened"),
            }
        }
    });
    assert_eq!(std::fs::read(&segment).unwrap(), damaged, "nothing was cut");
    // The last record damaged: no valid record after it, a torn tail.
    let mut torn = pristine.clone();
    torn[positions[4] + BATCH_HEADER_SIZE_BYTES + 3] ^= 0x20;
    assert_eq!(find_damage(&torn), None);
    assert_eq!(find_damage(&pristine), None);
    std::fs::write(&segment, &torn).unwrap();
    run(move || async move {
        let store = open(&data_dir).await;
        assert_eq!(store.snapshot().topics.len(), 3);
        store.close().await.unwrap();
    });
}

/// Partition directories the metadata does not know keep their data, and a topic of their
/// name is not created over them; those of a topic recorded as deleted are removed.
#[test]
fn unexplained_partition_directories_are_kept_and_block_their_name() {
    let (_tmp, data_dir) = temp_data_dir();
    run(move || async move {
        let store = open(&data_dir).await;
        let doomed = create(&store, "doomed", 1).await;
        store.delete_topic("doomed").await.unwrap();
        store.close().await.unwrap();
        let write_partition = |name: &str, marker: &str| {
            let dir = data_dir.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("00000000000000000000.log"), b"data").unwrap();
            std::fs::write(dir.join("partition.metadata"), marker).unwrap();
        };
        let stranger = uuid::Uuid::new_v4();
        write_partition("lost-0", &partition_dirs::marker_contents(stranger));
        write_partition("lost-2", "version: 0\ntopic_id: \u{1}garbage\n");
        write_partition("doomed-0", &partition_dirs::marker_contents(doomed.id));
        let store = open(&data_dir).await;
        let orphans: Vec<&str> = store
            .orphans()
            .iter()
            .map(|o| o.dir_name.as_str())
            .collect();
        assert_eq!(orphans, ["lost-0", "lost-2"]);
        assert!(
            !data_dir.join("doomed-0").exists(),
            "a deleted topic's data goes"
        );
        assert!(data_dir
            .join("lost-0")
            .join("00000000000000000000.log")
            .exists());
        let refused = store
            .create_topic("lost", 1, 1, Vec::new(), false)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, MetadataError::OrphanedData(_)),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("recover-metadata"),
            "{refused}"
        );
        let adopted = store.adopt_topic("lost", stranger, 3).await.unwrap();
        assert_eq!((adopted.id, adopted.partition_count()), (stranger, 3));
        store.close().await.unwrap();
    });
}

/// A metadata log zeroed, or cut below its first record, beside partition data: the store
/// refuses to open (a clear error, never a new empty cluster over the data).
#[test]
fn a_zeroed_or_cut_metadata_log_beside_partition_data_is_refused() {
    for damage in ["zeroed", "cut"] {
        let (_tmp, data_dir) = temp_data_dir();
        run(move || async move {
            let store = open(&data_dir).await;
            create(&store, "orders", 1).await;
            store.close().await.unwrap();
            let partition_dir = data_dir.join("orders-0");
            std::fs::create_dir_all(&partition_dir).unwrap();
            std::fs::write(partition_dir.join("00000000000000000000.log"), b"data").unwrap();
            let segment = metadata_segment(&data_dir);
            let length = std::fs::metadata(&segment).unwrap().len() as usize;
            match damage {
                "zeroed" => std::fs::write(&segment, vec![0u8; length]).unwrap(),
                _ => std::fs::write(&segment, &std::fs::read(&segment).unwrap()[..40]).unwrap(),
            }
            match open_with(&data_dir, SHARD_COUNT).await {
                Err(MetadataError::CorruptLog { reason, .. }) => {
                    assert!(reason.contains("recover-metadata"), "{damage}: {reason}")
                }
                Err(other) => panic!("{damage}: unexpected error {other}"),
                Ok(_) => panic!("{damage}: a new cluster started over existing partitions"),
            }
            assert!(partition_dir.join("00000000000000000000.log").exists());
        });
    }
}
