//! The HTTP admin endpoint of a live broker: `/metrics` counts exactly the produce and fetch
//! traffic sent (and `promtool check metrics` accepts it), the JSON views show the topic's
//! partitions and shards, `/v1/health` and `/v1/ready` answer as documented through start-up
//! and shutdown, and a taken admin port is one clear line.

mod common_kafka;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common_kafka::{
    create_topic, http_get, metric_sum, parse_metrics, produce_batch, Broker, Client, Sample,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, FetchRequest, FetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "ops-metrics";
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// How long a test waits for shards to publish their next view (they do every second).
const VIEW_TIMEOUT: Duration = Duration::from_secs(20);

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_string(TOPIC.to_string()))
}

fn fetch_request(partitions: &[i32], max_wait_ms: i32) -> FetchRequest {
    fetch_request_of(topic_name(), partitions, max_wait_ms)
}

fn fetch_request_of(name: TopicName, partitions: &[i32], max_wait_ms: i32) -> FetchRequest {
    let mut topic = FetchTopic::default();
    topic.topic = name;
    topic.partitions = partitions
        .iter()
        .map(|partition| {
            let mut entry = FetchPartition::default();
            entry.partition = *partition;
            entry.fetch_offset = 0;
            entry.partition_max_bytes = 1024 * 1024;
            entry
        })
        .collect();
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = 4 * 1024 * 1024;
    request.session_epoch = -1; // no fetch session
    request.topics = vec![topic];
    request
}

fn fetched_bytes(response: &FetchResponse) -> usize {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, Bytes::len))
        .sum()
}

fn scrape(broker: &Broker) -> (String, Vec<Sample>) {
    let (status, text) = http_get(broker.admin_addr, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{text}");
    let samples = parse_metrics(&text);
    (text, samples)
}

/// `promtool`, which the test script installs (Debian package `prometheus`).
fn promtool() -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "promtool not found on PATH: install the Debian package `prometheus` \
             (./scripts/test.sh does when run as root)"
        )
    })
}

fn promtool_check_metrics(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Scrapes until `done` holds (shard views are published every second), at most
/// `VIEW_TIMEOUT`.
fn scrape_until(broker: &Broker, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + VIEW_TIMEOUT;
    loop {
        let (text, samples) = scrape(broker);
        if done(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not in /metrics within {VIEW_TIMEOUT:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_count_the_traffic_sent_and_pass_promtool() {
    let broker = Broker::start_with(&["--metrics-per-partition"]);
    let mut client = broker.client();
    create_topic(&mut client, TOPIC, 2);
    let mut produced_bytes = 0;
    let mut produced_records = 0;
    let mut produce_requests = 0;
    for (partition, batches, records) in [(0, 3, 5), (1, 2, 7)] {
        for _ in 0..batches {
            let (code, size_bytes) = produce_batch(&mut client, TOPIC, partition, records, -1);
            assert_eq!(code, 0);
            produced_bytes += size_bytes;
            produced_records += records;
            produce_requests += 1;
        }
    }
    let (code, _) = produce_batch(&mut client, TOPIC, 9, 1, -1);
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION);
    produce_requests += 1;
    let response = client.send(12, &fetch_request(&[0, 1], 0));
    assert_eq!(fetched_bytes(&response), produced_bytes);

    let (text, samples) = scrape(&broker);
    let topic = [("topic", TOPIC)];
    let sum = |name: &str, labels: &[(&str, &str)]| metric_sum(&samples, name, labels);
    assert_eq!(
        sum("ringlog_topic_produced_records_total", &topic),
        f64::from(produced_records),
        "{text}"
    );
    assert_eq!(
        sum("ringlog_topic_produced_bytes_total", &topic),
        produced_bytes as f64
    );
    assert_eq!(
        sum("ringlog_topic_fetched_records_total", &topic),
        f64::from(produced_records)
    );
    assert_eq!(
        sum("ringlog_topic_fetched_bytes_total", &topic),
        produced_bytes as f64
    );
    let produce_api = [("api", "produce")];
    assert_eq!(
        sum("ringlog_requests_total", &produce_api),
        f64::from(produce_requests)
    );
    assert_eq!(
        sum("ringlog_request_duration_seconds_count", &produce_api),
        f64::from(produce_requests)
    );
    assert_eq!(
        sum(
            "ringlog_request_errors_total",
            &[("api", "produce"), ("error", "unknown_topic_or_partition")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(sum("ringlog_requests_total", &[("api", "fetch")]), 1.0);
    assert_eq!(
        sum("ringlog_request_errors_total", &[("api", "fetch")]),
        0.0
    );
    // The test's own connection, and the broker's start-up probe of the port before it.
    assert!(
        sum("ringlog_connections_accepted_total", &[]) >= 2.0,
        "{text}"
    );
    assert!(sum("ringlog_connections_open", &[]) >= 1.0, "{text}");
    // acks=all: every append waited for an fdatasync.
    assert!(sum("ringlog_storage_fsync_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(sum("ringlog_ready", &[]), 1.0);
    assert_eq!(sum("ringlog_shards", &[]), 2.0);

    // Offsets and sizes come from the shards' views, published every second.
    let samples = scrape_until(&broker, "partition offsets", |samples| {
        metric_sum(samples, "ringlog_partition_log_end_offset", &topic)
            == f64::from(produced_records)
    });
    let partition = |p: &'static str| [("topic", TOPIC), ("partition", p)];
    assert_eq!(
        metric_sum(
            &samples,
            "ringlog_partition_high_watermark",
            &partition("0")
        ),
        15.0
    );
    assert_eq!(
        metric_sum(
            &samples,
            "ringlog_partition_log_end_offset",
            &partition("1")
        ),
        14.0
    );
    assert_eq!(
        metric_sum(&samples, "ringlog_partition_log_start_offset", &topic),
        0.0
    );
    assert_eq!(
        metric_sum(&samples, "ringlog_topic_partitions", &topic),
        2.0
    );
    assert!(metric_sum(&samples, "ringlog_topic_size_bytes", &topic) >= produced_bytes as f64);

    let (status, body) = http_get(broker.admin_addr, "/v1/topics").expect("/v1/topics");
    assert_eq!(status, 200);
    let topics: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let ours = topics["topics"]
        .as_array()
        .expect("a list of topics")
        .iter()
        .find(|t| t["name"] == TOPIC)
        .unwrap_or_else(|| panic!("{TOPIC} in {body}"));
    let partitions = ours["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 2, "{body}");
    for (index, expected_end) in [(0, 15), (1, 14)] {
        let entry = &partitions[index];
        assert_eq!(entry["partition"], index, "{body}");
        assert!(entry["shard"].as_u64().is_some_and(|s| s < 2), "{body}");
        assert_eq!(entry["log_end_offset"], expected_end, "{body}");
        assert_eq!(entry["high_watermark"], expected_end, "{body}");
        assert_eq!(entry["log_start_offset"], 0, "{body}");
        assert!(
            entry["size_bytes"].as_u64().is_some_and(|s| s > 0),
            "{body}"
        );
    }

    let (status, body) = http_get(broker.admin_addr, "/v1/shards").expect("/v1/shards");
    assert_eq!(status, 200);
    let shards: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let shards = shards["shards"].as_array().expect("a list of shards");
    assert_eq!(shards.len(), 2, "{body}");
    let partition_count: u64 = shards
        .iter()
        .map(|s| s["partitions"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(partition_count, 2, "{body}");
    assert!(shards
        .iter()
        .all(|s| s["recovered"] == true && s["listening"] == true));

    let (text, _) = scrape(&broker);
    promtool_check_metrics(&text);
}

/// Producers waiting on each small batch (`acks=all`) make their segment zero its reserved
/// blocks ahead, and the counter shows those extra writes.
#[test]
fn small_durable_produces_start_zero_ahead_and_the_counter_shows_it() {
    let broker = Broker::start();
    let mut client = broker.client();
    create_topic(&mut client, TOPIC, 1);
    let zeroed =
        |samples: &[Sample]| metric_sum(samples, "ringlog_storage_zero_ahead_bytes_total", &[]);
    let (_, before) = scrape(&broker);
    assert_eq!(zeroed(&before), 0.0);
    // The appender starts after 8 syncs in a row that each made little durable.
    for _ in 0..12 {
        let (code, _) = produce_batch(&mut client, TOPIC, 0, 3, -1);
        assert_eq!(code, 0);
    }
    let samples = scrape_until(&broker, "zero-ahead bytes", |samples| zeroed(samples) > 0.0);
    assert_eq!(
        zeroed(&samples) % (1024.0 * 1024.0),
        0.0,
        "whole 1 MiB steps"
    );
}

/// What `/v1/ready` answered, in order, and whether `/v1/health` was 200 every time.
struct ReadyLog {
    statuses: Vec<u16>,
    first_pending: Option<String>,
}

/// Polls `/v1/ready` (and `/v1/health` with it) until `stop` holds for the ready status.
fn watch_ready(broker: &Broker, stop: impl Fn(u16) -> bool) -> ReadyLog {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = ReadyLog {
        statuses: Vec::new(),
        first_pending: None,
    };
    loop {
        assert!(
            Instant::now() < deadline,
            "ready never settled: {:?}",
            log.statuses
        );
        let Ok((status, body)) = http_get(broker.admin_addr, "/v1/ready") else {
            std::thread::sleep(Duration::from_millis(2));
            continue; // the admin listener is not up yet
        };
        let (health, health_body) = http_get(broker.admin_addr, "/v1/health").expect("health");
        assert_eq!(health, 200, "{health_body}");
        match status {
            200 => assert_eq!(body, r#"{"ready":true}"#),
            503 => {
                let parsed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                assert_eq!(parsed["ready"], false, "{body}");
                assert!(parsed["pending"].is_object(), "{body}");
                log.first_pending.get_or_insert(body);
            }
            other => panic!("/v1/ready answered {other}: {body}"),
        }
        log.statuses.push(status);
        if stop(status) {
            return log;
        }
    }
}

#[test]
fn health_and_ready_follow_start_up_and_shutdown() {
    let mut broker = Broker::launch_with(&[]);
    let start = watch_ready(&broker, |status| status == 200);
    // Ready promises the Kafka listeners are up: the port answers at once.
    let versions = Client::connect(broker.kafka_addr).send(3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
    eprintln!(
        "start-up: /v1/ready answered {} time(s) 503 before 200; first 503 body: {:?}",
        start.statuses.iter().filter(|s| **s == 503).count(),
        start.first_pending
    );

    // A long-polling fetch keeps the broker draining after SIGTERM; meanwhile its listeners
    // are closed, and ready must say so while health stays 200. The fetch waits on both
    // partitions of an empty topic, one on each shard: whichever shard the connection landed
    // on, the other must keep serving it until the fetch is answered.
    create_topic(&mut Client::connect(broker.kafka_addr), "quiet", 2);
    let kafka_addr = broker.kafka_addr;
    let poller = std::thread::spawn(move || {
        let mut client = Client::connect(kafka_addr);
        let quiet = TopicName(StrBytes::from_static_str("quiet"));
        client.send(12, &fetch_request_of(quiet, &[0, 1], 5_000))
    });
    scrape_until(&broker, "the long poll in flight", |samples| {
        metric_sum(samples, "ringlog_requests_in_flight", &[]) >= 1.0
    });
    broker.signal_stop();
    let shutdown = watch_ready(&broker, |status| status == 503);
    let pending: serde_json::Value =
        serde_json::from_str(shutdown.first_pending.as_deref().expect("a 503")).expect("JSON");
    // Shards stop at their own pace: at least one has closed its listener.
    assert!(
        pending["pending"]["kafka_listener"]
            .as_array()
            .is_some_and(|shards| !shards.is_empty()),
        "{pending}"
    );
    let response = poller.join().expect("the long poll is answered");
    for partition in &response.responses[0].partitions {
        assert_eq!(partition.error_code, 0, "{response:?}");
    }
    let status = broker.wait_exit();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn a_taken_admin_port_is_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = taken.local_addr().unwrap().to_string();
    let kafka_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ringlog"))
        .arg("serve")
        .args(["--kafka-addr", &format!("127.0.0.1:{kafka_port}")])
        .args(["--admin-addr", &admin_addr])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run ringlog");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains(" INFO ")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("ringlog: admin port") && lines[0].contains("--admin-addr"),
        "{stderr}"
    );
}

/// `log_level` in the configuration file sets the broker's log filter, and a log written to a
/// file carries no terminal colour codes.
#[test]
fn the_configuration_files_log_level_applies_and_logs_have_no_colour_codes() {
    let mut debug = Broker::start_with_config("log_level = \"ringlog=debug\"\n");
    let log = debug.log();
    assert!(log.contains("DEBUG ringlog::server"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    debug.stop();

    let mut default = Broker::start();
    let log = default.log();
    assert!(log.contains(" INFO ") && !log.contains("DEBUG"), "{log}");
    default.stop();
}
