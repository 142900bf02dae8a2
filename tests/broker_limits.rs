//! What a client can make the broker hold, against the real broker over real sockets: request
//! bytes of stalled frames stay within `queued_max_request_bytes`, connections over
//! `max_connections` and `max_connections_per_ip` are refused, idle connections and frames
//! that never finish (slowloris) are closed, a connection that pipelined more requests than
//! its in-flight bound and went away is freed, and a flood of bad frames logs a bounded number
//! of lines. Timeouts are configured short; waits have generous upper bounds and nothing is
//! asserted on how long anything took, except that shutdown does not wait for its drain timeout.

mod common_kafka;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common_kafka::{create_topic, http_get, metric_sum, parse_metrics, Broker, Sample};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, FetchRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// Upper bound on waiting for something the broker does after a short configured timeout.
const WAIT_MAX: Duration = Duration::from_secs(20);
/// How long a test socket waits for the broker before the test gives up on it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

fn metrics(broker: &Broker) -> Vec<Sample> {
    let (status, body) = http_get(broker.admin_addr, "/metrics").expect("admin answers");
    assert_eq!(status, 200);
    parse_metrics(&body)
}

fn metric(broker: &Broker, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&metrics(broker), name, labels)
}

/// Waits up to `WAIT_MAX` for `done`; panics with `what` and the broker's log otherwise.
fn wait_until(broker: &Broker, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} not within {WAIT_MAX:?}:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_no_connections(broker: &Broker) {
    wait_until(broker, "no connection open", || {
        metric(broker, "ringlog_connections_open", &[]) == 0.0
    });
}

/// The broker's process id, found by its Kafka address on its command line.
fn broker_pid(broker: &Broker) -> u32 {
    let needle = broker.kafka_addr.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.contains(&&b"serve"[..]) && args.contains(&needle.as_bytes())
            })
        })
        .expect("the broker's process")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn rss_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    stream
}

/// A connection from `local_ip` (any address of 127.0.0.0/8 works on Linux).
fn connect_from(local_ip: &str, addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{local_ip}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    stream
}

/// One request frame, size prefix included.
fn frame<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("ringlog-limits-test"));
    let mut bytes = BytesMut::new();
    header
        .encode(&mut bytes, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut bytes, version).unwrap();
    let mut framed = (bytes.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    framed
}

/// Whether the broker answers an ApiVersions on `stream`; false when it closed the connection.
fn answers(stream: &mut TcpStream) -> bool {
    let request = frame(ApiKey::ApiVersions, 0, 1, &ApiVersionsRequest::default());
    if stream.write_all(&request).is_err() {
        return false;
    }
    read_response(stream).is_ok()
}

/// Reads one whole response off `stream`.
fn read_response(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size)).expect("a response size");
    std::io::copy(&mut stream.take(size as u64), &mut std::io::sink())?;
    Ok(())
}

/// Waits for the broker to close `stream`: end of stream or reset, never data.
fn assert_closed_by_broker(stream: &mut TcpStream, what: &str) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the broker to close the connection, got {other:?}"),
    }
}

#[test]
fn stalled_large_requests_stay_within_the_request_budget() {
    const BUDGET_BYTES: usize = 16 * MIB;
    const FRAME_BYTES: usize = 8 * MIB;
    const CONNECTIONS: usize = 20;
    let broker = Broker::start_with_config(&format!(
        "queued_max_request_bytes = {BUDGET_BYTES}\nrequest_read_timeout_ms = 120000\n"
    ));
    wait_for_no_connections(&broker);
    let pid = broker_pid(&broker);
    let rss_before = rss_bytes(pid);
    // Every connection sends all but the last few bytes of its frame and stalls; the broker
    // stops reading those it has no room for, so their senders block until the test ends.
    let streams: Vec<Arc<TcpStream>> = (0..CONNECTIONS)
        .map(|_| Arc::new(connect(broker.kafka_addr)))
        .collect();
    let senders: Vec<_> = streams
        .iter()
        .map(|stream| {
            let stream = Arc::clone(stream);
            std::thread::spawn(move || {
                let mut bytes = (FRAME_BYTES as i32).to_be_bytes().to_vec();
                bytes.resize(4 + FRAME_BYTES - 10, 0);
                let _ = (&*stream).write_all(&bytes);
            })
        })
        .collect();
    // Two shards, each with room for two of the frames.
    let held_bytes_max = 2 * BUDGET_BYTES;
    wait_until(&broker, "the budgets filled up", || {
        let held = metric(&broker, "ringlog_queued_request_bytes", &[]) as usize;
        let sent_all = senders.iter().all(|s| s.is_finished());
        held >= held_bytes_max || sent_all
    });
    std::thread::sleep(Duration::from_millis(500));
    for sample in metrics(&broker)
        .iter()
        .filter(|s| s.name == "ringlog_queued_request_bytes")
    {
        assert!(
            sample.value as usize <= BUDGET_BYTES,
            "shard {:?} holds {} request bytes, over its budget of {BUDGET_BYTES}",
            sample.labels,
            sample.value
        );
    }
    let grown_bytes = rss_bytes(pid).saturating_sub(rss_before);
    let margin_bytes = 48 * MIB;
    assert!(
        grown_bytes <= held_bytes_max + margin_bytes,
        "{CONNECTIONS} stalled frames of {FRAME_BYTES} bytes grew the broker by {} MiB; the budget allows {} MiB",
        grown_bytes / MIB,
        held_bytes_max / MIB
    );
    for stream in &streams {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    for sender in senders {
        sender.join().unwrap();
    }
    wait_until(&broker, "the budgets freed", || {
        metric(&broker, "ringlog_queued_request_bytes", &[]) == 0.0
    });
}

#[test]
fn connections_over_the_limits_are_refused() {
    let broker = Broker::start_with_config("max_connections = 6\nmax_connections_per_ip = 4\n");
    wait_for_no_connections(&broker);
    let mut held: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut stream = connect_from("127.0.0.1", broker.kafka_addr);
            assert!(answers(&mut stream), "connection {i} from 127.0.0.1");
            stream
        })
        .collect();
    let mut fifth = connect_from("127.0.0.1", broker.kafka_addr);
    assert!(!answers(&mut fifth), "a fifth connection from 127.0.0.1");
    for i in 0..2 {
        let mut stream = connect_from("127.0.0.2", broker.kafka_addr);
        assert!(answers(&mut stream), "connection {i} from 127.0.0.2");
        held.push(stream);
    }
    let mut seventh = connect_from("127.0.0.3", broker.kafka_addr);
    assert!(!answers(&mut seventh), "a seventh connection in all");
    let samples = metrics(&broker);
    let refused = |limit| {
        metric_sum(
            &samples,
            "ringlog_connections_refused_total",
            &[("reason", limit)],
        )
    };
    assert_eq!(refused("max_connections_per_ip"), 1.0);
    assert_eq!(refused("max_connections"), 1.0);
    // Closing connections gives their places back.
    drop(held.remove(0));
    wait_until(&broker, "a place freed", || {
        metric(&broker, "ringlog_connections_open", &[]) == 5.0
    });
    let mut again = connect_from("127.0.0.1", broker.kafka_addr);
    assert!(answers(&mut again), "a connection once one closed");
    assert!(
        broker.log().contains("max_connections_per_ip (4) reached"),
        "{}",
        broker.log()
    );
}

#[test]
fn idle_connections_are_closed_but_not_while_a_request_waits() {
    let broker = Broker::start_with_config("connections_max_idle_ms = 500\n");
    let mut client = broker.client();
    create_topic(&mut client, "idle", 1);
    drop(client);
    wait_for_no_connections(&broker);

    // A long-polling fetch waits longer than the idle timeout and is still answered.
    let mut polling = connect(broker.kafka_addr);
    polling
        .write_all(&fetch_frame("idle", 1, 1_500, 1))
        .unwrap();
    read_response(&mut polling).expect("the long poll is answered");

    let mut idle = connect(broker.kafka_addr);
    assert!(answers(&mut idle));
    assert_closed_by_broker(&mut idle, "an idle connection");
    assert_closed_by_broker(&mut polling, "a connection idle after its long poll");
    wait_until(&broker, "idle closes counted", || {
        metric(
            &broker,
            "ringlog_connections_closed_total",
            &[("reason", "idle")],
        ) >= 2.0
    });
}

#[test]
fn frames_that_never_finish_are_closed() {
    let broker = Broker::start_with_config("request_read_timeout_ms = 500\n");
    wait_for_no_connections(&broker);
    let mut half_prefix = connect(broker.kafka_addr);
    half_prefix.write_all(&[0, 0]).unwrap();
    let mut half_frame = connect(broker.kafka_addr);
    let mut request = frame(ApiKey::ApiVersions, 0, 1, &ApiVersionsRequest::default());
    request.truncate(request.len() - 2);
    half_frame.write_all(&request).unwrap();
    assert_closed_by_broker(&mut half_prefix, "half a size prefix");
    assert_closed_by_broker(&mut half_frame, "half a frame");
    wait_until(&broker, "read timeouts counted", || {
        metric(
            &broker,
            "ringlog_connections_closed_total",
            &[("reason", "request_read_timeout")],
        ) == 2.0
    });
    // A connection that sends nothing is idle, not slow: it stays (idle timeout 10 minutes).
    let mut silent = connect(broker.kafka_addr);
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(answers(&mut silent), "a silent connection is still served");
}

/// A Fetch v4 frame of partition 0 of `topic` from offset 0.
fn fetch_frame(topic: &str, correlation_id: i32, max_wait_ms: i32, min_bytes: i32) -> Vec<u8> {
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = 0;
    partition.partition_max_bytes = MIB as i32;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = TopicName(StrBytes::from_string(topic.to_string()));
    fetch_topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = min_bytes;
    request.max_bytes = MIB as i32;
    request.topics = vec![fetch_topic];
    frame(ApiKey::Fetch, 4, correlation_id, &request)
}

/// Appends `batches` batches of one record of `payload_bytes` to partition 0 of `topic`.
fn produce_large(broker: &Broker, topic: &str, batches: usize, payload_bytes: usize) {
    let mut client = broker.client();
    for i in 0..batches {
        let payload = vec![i as u8; payload_bytes];
        let batch = ringlog::storage::batch::build_batch(1_700_000_000_000, 1, &payload, None);
        let mut data = PartitionProduceData::default();
        data.index = 0;
        data.records = Some(Bytes::from(batch));
        let mut produce_topic = TopicProduceData::default();
        produce_topic.name = TopicName(StrBytes::from_string(topic.to_string()));
        produce_topic.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.acks = 1;
        request.timeout_ms = 30_000;
        request.topic_data = vec![produce_topic];
        let response = client.send(9, &request);
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
}

#[test]
fn connections_that_pipelined_more_than_their_inflight_bound_and_left_are_freed() {
    const REQUESTS_PER_CONNECTION: i32 = 40;
    let mut broker = Broker::start();
    let mut client = broker.client();
    create_topic(&mut client, "pipelined", 1);
    drop(client);
    // Answers of 1 MiB each, so that the socket fills and the writer waits on the client.
    produce_large(&broker, "pipelined", 16, 128 * 1024);
    wait_for_no_connections(&broker);
    let pid = broker_pid(&broker);
    let fds_before = open_fds(pid);
    for round in 0..3 {
        let streams: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut stream = connect(broker.kafka_addr);
                let requests: Vec<u8> = (0..REQUESTS_PER_CONNECTION)
                    .flat_map(|id| fetch_frame("pipelined", id, 500, 1))
                    .collect();
                stream.write_all(&requests).unwrap();
                stream
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // Closed with answers unread: the broker's writes fail.
        drop(streams);
        wait_until(
            &broker,
            &format!("round {round}: connections freed"),
            || metric(&broker, "ringlog_connections_open", &[]) == 0.0,
        );
    }
    wait_until(&broker, "descriptors back to where they were", || {
        open_fds(pid) <= fds_before
    });
    let asked = Instant::now();
    let status = broker.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    // The drain waits up to 15 s for connections that are still open.
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
}

#[test]
fn a_flood_of_bad_frames_logs_a_bounded_number_of_lines() {
    const BAD_FRAMES: usize = 1_000;
    let mut broker = Broker::start();
    wait_for_no_connections(&broker);
    let started = Instant::now();
    for i in 0..BAD_FRAMES {
        let mut stream = connect(broker.kafka_addr);
        // Alternately a frame too short for a header and a header cut short, whose decoder
        // message ends in a newline.
        let bad: &[u8] = if i % 2 == 0 {
            &[0, 0, 0, 3, 0, 18, 0]
        } else {
            &[0, 0, 0, 8, 0, 18, 0, 0, 0, 0, 0, 1]
        };
        stream.write_all(bad).unwrap();
        assert_closed_by_broker(&mut stream, "a bad frame");
    }
    // Each connection was closed after its line was written.
    let intervals = started.elapsed().as_secs() / 10 + 2;
    let log = broker.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("closing connection"))
        .count();
    // Five lines per shard and interval, two shards.
    assert!(
        lines as u64 <= 2 * 5 * intervals,
        "{lines} lines for {BAD_FRAMES} bad frames, the first:\n{}",
        log.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(
        !log.lines().any(|l| l.trim().is_empty()),
        "blank lines:\n{log}"
    );
    wait_until(&broker, "every bad frame counted", || {
        metric(
            &broker,
            "ringlog_connections_closed_total",
            &[("reason", "malformed")],
        ) == BAD_FRAMES as f64
    });
    // The last interval is summed up at shutdown.
    assert!(broker.stop().is_some_and(|s| s.success()));
    let log = broker.log();
    assert!(
        log.contains("connections for malformed frames in the last"),
        "a summary line:\n{log}"
    );
}
