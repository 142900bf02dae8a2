//! Helpers for integration tests that speak raw Kafka to the real broker: `Broker` starts
//! `ringlog serve` on free ports with a fresh data directory and stops it when dropped (even
//! when the test panics); `Client` sends requests built from kafka-protocol's types over a
//! blocking `TcpStream` and decodes the answers with the matching response types.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// How long the broker may take to answer its first ApiVersions.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the broker may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a test waits for any one response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response a test accepts.
const RESPONSE_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// A running `ringlog serve`; SIGTERM (then SIGKILL) when dropped.
pub struct Broker {
    child: Option<Child>,
    root: tempfile::TempDir,
    pub kafka_addr: SocketAddr,
    /// The HTTP admin listener (`/metrics`, `/v1/health`, `/v1/ready`…).
    pub admin_addr: SocketAddr,
    /// Flags added to `ringlog serve` on every start.
    extra_args: Vec<String>,
}

impl Broker {
    /// Starts a broker with two shards and waits until it answers ApiVersions.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Like `start`, with more flags for `ringlog serve`.
    pub fn start_with(extra_args: &[&str]) -> Broker {
        let mut broker = Broker::launch_with(extra_args);
        broker.wait_ready();
        broker
    }

    /// Starts a broker with `config_toml` as its configuration file (`--config`).
    pub fn start_with_config(config_toml: &str) -> Broker {
        let mut broker = Broker::new(&[]);
        let path = broker.root.path().join("ringlog.toml");
        std::fs::write(&path, config_toml).expect("write config");
        broker.extra_args.push("--config".into());
        broker.extra_args.push(path.display().to_string());
        broker.spawn();
        broker
    }

    /// Starts the process and returns at once, without waiting for it to serve.
    pub fn launch_with(extra_args: &[&str]) -> Broker {
        let mut broker = Broker::new(extra_args);
        broker.launch();
        broker
    }

    fn new(extra_args: &[&str]) -> Broker {
        let root = tempfile::tempdir().expect("temporary directory");
        let [kafka_port, admin_port] = free_ports();
        Broker {
            child: None,
            root,
            kafka_addr: format!("127.0.0.1:{kafka_port}").parse().unwrap(),
            admin_addr: format!("127.0.0.1:{admin_port}").parse().unwrap(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// SIGKILL (no chance to flush), then a start on the same ports and data.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    /// Stops the broker cleanly (SIGTERM must end it with exit code 0), then starts it again
    /// on the same ports and data.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.is_some_and(|s| s.success()),
            "ringlog exited with {status:?} after SIGTERM:\n{}",
            self.log()
        );
        self.spawn();
    }

    /// Starts the (stopped) broker again on the same ports and data, and waits until it serves.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Starts the (stopped) broker again and returns at once.
    pub fn launch_again(&mut self) {
        self.launch();
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("broker.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ringlog"))
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--kafka-addr", &self.kafka_addr.to_string()])
            .args(["--admin-addr", &self.admin_addr.to_string()])
            .args(["--smp", "2"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("ringlog starts");
        self.child = Some(child);
    }

    /// Sends SIGTERM without waiting for the process to exit.
    pub fn signal_stop(&self) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    /// SIGTERM, then SIGKILL after `STOP_TIMEOUT`; the exit status when it stopped by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.signal_stop();
        self.wait_exit()
    }

    /// Waits for the process to exit by itself, at most `STOP_TIMEOUT`, then kills it; the
    /// exit status when it stopped by itself.
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    eprintln!("ringlog did not stop within {STOP_TIMEOUT:?}; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The broker's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("broker.log")).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.kafka_addr)
    }

    /// Waits until the broker answers ApiVersions.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("ringlog exited at start-up with {status}:\n{}", self.log());
                }
            }
            if let Ok(stream) = TcpStream::connect_timeout(&self.kafka_addr, Duration::from_secs(1))
            {
                let mut client = Client::from_stream(stream);
                if client.try_send(3, &ApiVersionsRequest::default()).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ringlog did not answer ApiVersions within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- ringlog log ---\n{}", self.log());
        }
    }
}

/// Two distinct free TCP ports on 127.0.0.1.
pub fn free_ports() -> [u16; 2] {
    let first = TcpListener::bind("127.0.0.1:0").expect("bind");
    let second = TcpListener::bind("127.0.0.1:0").expect("bind");
    [
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    ]
}

/// One connection to the broker, sending one request at a time.
pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect to ringlog"))
    }

    fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends `request` at `version` and decodes the answer; panics on any failure.
    pub fn send<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        self.try_send(version, request)
            .unwrap_or_else(|e| panic!("{:?} v{version}: {e:#}", api_key::<R>()))
    }

    pub fn try_send<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> anyhow::Result<R::Response> {
        let mut body = BytesMut::new();
        request.encode(&mut body, version)?;
        let mut response = self.exchange(api_key::<R>(), version, &body)?;
        let decoded = R::Response::decode(&mut response, version)?;
        anyhow::ensure!(
            !response.has_remaining(),
            "{} bytes left after the response",
            response.remaining()
        );
        Ok(decoded)
    }

    /// Sends a hand-encoded body; returns the response body after a header of
    /// `response_header_version`.
    pub fn send_raw(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &[u8],
        response_header_version: i16,
    ) -> Bytes {
        self.exchange_with(api_key, version, body, response_header_version)
            .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e:#}"))
    }

    fn exchange(&mut self, api_key: ApiKey, version: i16, body: &[u8]) -> anyhow::Result<Bytes> {
        let response_header_version = api_key.response_header_version(version);
        self.exchange_with(api_key, version, body, response_header_version)
    }

    fn exchange_with(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &[u8],
        response_header_version: i16,
    ) -> anyhow::Result<Bytes> {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("ringlog-admin-test"));
        let mut frame = BytesMut::new();
        header.encode(&mut frame, api_key.request_header_version(version))?;
        frame.extend_from_slice(body);
        let size = i32::try_from(frame.len())?;
        self.stream.write_all(&size.to_be_bytes())?;
        self.stream.write_all(&frame)?;

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = usize::try_from(i32::from_be_bytes(size))?;
        anyhow::ensure!(size <= RESPONSE_SIZE_MAX_BYTES, "response of {size} bytes");
        let mut response = vec![0u8; size];
        self.stream.read_exact(&mut response)?;
        let mut response = Bytes::from(response);
        let header = ResponseHeader::decode(&mut response, response_header_version)?;
        anyhow::ensure!(
            header.correlation_id == self.correlation_id,
            "correlation id {} answered {}",
            self.correlation_id,
            header.correlation_id
        );
        Ok(response)
    }
}

fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("a known API key")
}

/// How long a test waits for an admin HTTP answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest admin answer a test reads.
const HTTP_BODY_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// `GET path` on the admin listener: the status code and the body. `Err` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream
        .take(HTTP_BODY_MAX_BYTES)
        .read_to_string(&mut answer)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    Ok((status, body.to_string()))
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a Prometheus text exposition (comments skipped). Label values in ringlog's
/// output never contain `,` or `"`, which keeps this parser small.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("label=value");
                (key.to_string(), value.trim_matches('"').to_string())
            })
            .collect();
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value: value.parse().expect("a number"),
        });
    }
    samples
}

/// The sum of every sample named `name` whose labels include all of `labels`.
pub fn metric_sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Creates `name` with `partitions` partitions (replication factor 1); panics on an error.
pub fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_string(name.to_string()));
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 30_000;
    let response = client.send(5, &request);
    assert_eq!(response.topics[0].error_code, 0, "creating {name}");
}

/// Produces one batch of `records` records to `name`/`partition` with `acks`; returns the
/// partition's error code and the batch's size in bytes.
pub fn produce_batch(
    client: &mut Client,
    name: &str,
    partition: i32,
    records: i32,
    acks: i16,
) -> (i16, usize) {
    let batch = ringlog::storage::batch::build_batch(1_700_000_000_000, records, b"payload", None);
    let size_bytes = batch.len();
    let answer = produce_records(client, name, partition, Bytes::from(batch), acks);
    (answer.error_code, size_bytes)
}

/// Produces the record set `records` to `name`/`partition` with `acks` (Produce v9); returns
/// the partition's answer.
pub fn produce_records(
    client: &mut Client,
    name: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(records);
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_string(name.to_string()));
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    let mut response = client.send(9, &request);
    response.responses.remove(0).partition_responses.remove(0)
}

/// The Metadata answer for one topic (v12), creating it when `auto_create` and the broker allow.
pub fn metadata_topic(
    client: &mut Client,
    name: &str,
    auto_create: bool,
) -> kafka_protocol::messages::metadata_response::MetadataResponseTopic {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_string(name.to_string())));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![wanted]);
    request.allow_auto_topic_creation = auto_create;
    let mut response = client.send(12, &request);
    response.topics.remove(0)
}

/// ListOffsets (v7) for one partition at `timestamp` (-1 latest, -2 earliest): error code and
/// offset.
pub fn list_offset(client: &mut Client, name: &str, partition: i32, timestamp: i64) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
    let mut entry = ListOffsetsPartition::default();
    entry.partition_index = partition;
    entry.timestamp = timestamp;
    let mut wanted = ListOffsetsTopic::default();
    wanted.name = TopicName(StrBytes::from_string(name.to_string()));
    wanted.partitions = vec![entry];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![wanted];
    let mut response = client.send(7, &request);
    let answer = response.topics.remove(0).partitions.remove(0);
    (answer.error_code, answer.offset)
}
