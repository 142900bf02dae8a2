//! The series one shard writes, kept as handles on the shard's own thread so that recording
//! is an atomic add: the family lock is taken only the first time the shard uses a label set.
//! Every function here is a no-op on a thread that did not call `bind_shard`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::histogram::LatencyHistogram;
use super::labels::*;
use super::{families, Families};

/// Topics whose handles one shard keeps; past this the cache starts over (handles are cheap to
/// look up again), so topic churn cannot grow it without bound.
const TOPIC_HANDLES_MAX: usize = 10_000;
/// (API, error) pairs whose counters one shard keeps, for the same reason.
const ERROR_HANDLES_MAX: usize = 4_096;

struct ApiHandles {
    requests: Counter,
    duration: LatencyHistogram,
}

struct TopicHandles {
    produced_bytes: Counter,
    produced_records: Counter,
    fetched_bytes: Counter,
    fetched_records: Counter,
}

pub(super) struct ShardHandles {
    pub(super) shard: usize,
    apis: HashMap<i16, ApiHandles>,
    errors: HashMap<(i16, Option<i16>), Counter>,
    topics: HashMap<String, TopicHandles>,
    network_received_bytes: Counter,
    network_sent_bytes: Counter,
    requests_in_flight: Gauge,
    connections_open: Gauge,
    connections_accepted: Counter,
    connections_refused: HashMap<&'static str, Counter>,
    connections_closed: HashMap<&'static str, Counter>,
    queued_request_bytes: Gauge,
    fsync: LatencyHistogram,
    io_read: LatencyHistogram,
    io_write: LatencyHistogram,
    uring_reads: Counter,
    uring_read_bytes: Counter,
    uring_writes: Counter,
    uring_write_bytes: Counter,
    busy_seconds: Counter<f64, AtomicU64>,
    tasks: Counter,
    mesh_sent: Counter,
    zero_ahead_bytes: Counter,
    damaged_reads: Counter,
    mesh_call: LatencyHistogram,
    mesh_timeouts: Counter,
    mesh_gone: Counter,
    pub(super) consumer_groups: Gauge,
}

impl ShardHandles {
    fn new(shard: usize, f: &Families) -> Self {
        let s = ShardLabels { shard };
        let op = |op| ShardOpLabels { shard, op };
        let reason = |reason| ShardReasonLabels { shard, reason };
        ShardHandles {
            shard,
            apis: HashMap::new(),
            errors: HashMap::new(),
            topics: HashMap::new(),
            network_received_bytes: f.network_received_bytes.get_or_create_owned(&s),
            network_sent_bytes: f.network_sent_bytes.get_or_create_owned(&s),
            requests_in_flight: f.requests_in_flight.get_or_create_owned(&s),
            connections_open: f.connections_open.get_or_create_owned(&s),
            connections_accepted: f.connections_accepted.get_or_create_owned(&s),
            connections_refused: HashMap::new(),
            connections_closed: HashMap::new(),
            queued_request_bytes: f.queued_request_bytes.get_or_create_owned(&s),
            fsync: f.fsync_duration.get_or_create_owned(&s),
            io_read: f.io_duration.get_or_create_owned(&op("read")),
            io_write: f.io_duration.get_or_create_owned(&op("write")),
            uring_reads: f.io_uring_file_ops.get_or_create_owned(&op("read")),
            uring_read_bytes: f.io_uring_file_bytes.get_or_create_owned(&op("read")),
            uring_writes: f.io_uring_file_ops.get_or_create_owned(&op("write")),
            uring_write_bytes: f.io_uring_file_bytes.get_or_create_owned(&op("write")),
            busy_seconds: f.shard_busy_seconds.get_or_create_owned(&s),
            tasks: f.shard_tasks.get_or_create_owned(&s),
            mesh_sent: f.mesh_messages_sent.get_or_create_owned(&s),
            zero_ahead_bytes: f.zero_ahead_bytes.get_or_create_owned(&s),
            damaged_reads: f.damaged_reads.get_or_create_owned(&s),
            mesh_call: f.mesh_call_duration.get_or_create_owned(&s),
            mesh_timeouts: f.mesh_failures.get_or_create_owned(&reason("timeout")),
            mesh_gone: f.mesh_failures.get_or_create_owned(&reason("shard_gone")),
            consumer_groups: f.consumer_groups.get_or_create_owned(&s),
        }
    }

    fn api(&mut self, api_key: i16) -> &ApiHandles {
        let shard = self.shard;
        self.apis.entry(api_key).or_insert_with(|| {
            let labels = ShardApiLabels {
                shard,
                api: api_name(api_key),
            };
            ApiHandles {
                requests: families().requests.get_or_create_owned(&labels),
                duration: families().request_duration.get_or_create_owned(&labels),
            }
        })
    }

    /// The error counter of `api_key` for a Kafka error `code`, or for a request that closed
    /// its connection (`None`).
    fn error(&mut self, api_key: i16, code: Option<i16>) -> &Counter {
        if self.errors.len() >= ERROR_HANDLES_MAX {
            self.errors.clear();
        }
        let shard = self.shard;
        self.errors.entry((api_key, code)).or_insert_with(|| {
            families()
                .request_errors
                .get_or_create_owned(&ShardApiErrorLabels {
                    shard,
                    api: api_name(api_key),
                    error: code.map_or_else(|| "closed".to_string(), error_name),
                })
        })
    }

    fn topic(&mut self, topic: &str) -> &TopicHandles {
        if !self.topics.contains_key(topic) {
            if self.topics.len() >= TOPIC_HANDLES_MAX {
                self.topics.clear();
            }
            let f = families();
            let labels = TopicLabels {
                topic: topic.to_string(),
            };
            let handles = TopicHandles {
                produced_bytes: f.topic_produced_bytes.get_or_create_owned(&labels),
                produced_records: f.topic_produced_records.get_or_create_owned(&labels),
                fetched_bytes: f.topic_fetched_bytes.get_or_create_owned(&labels),
                fetched_records: f.topic_fetched_records.get_or_create_owned(&labels),
            };
            self.topics.insert(topic.to_string(), handles);
        }
        &self.topics[topic]
    }
}

thread_local! {
    static HANDLES: RefCell<Option<ShardHandles>> = const { RefCell::new(None) };
}

/// Makes this thread shard `shard` for every recording function. Called once per shard thread.
pub fn bind_shard(shard: usize) {
    let handles = ShardHandles::new(shard, families());
    HANDLES.with(|cell| *cell.borrow_mut() = Some(handles));
}

/// Runs `f` on this shard's handles; `None` off shard threads. `f` must not call back here.
pub(super) fn with_handles<R>(f: impl FnOnce(&mut ShardHandles) -> R) -> Option<R> {
    HANDLES.with(|cell| cell.borrow_mut().as_mut().map(f))
}

/// A Kafka request of `received_bytes` read on this (the connection's) shard.
pub(crate) fn request_started(received_bytes: usize) {
    with_handles(|h| {
        h.network_received_bytes.inc_by(received_bytes as u64);
        h.requests_in_flight.inc();
    });
}

/// The request `request_started` counted is answered (or closed its connection).
pub(crate) fn request_done(api_key: i16, elapsed: Duration, sent_bytes: usize, closed: bool) {
    with_handles(|h| {
        h.requests_in_flight.dec();
        h.network_sent_bytes.inc_by(sent_bytes as u64);
        let api = h.api(api_key);
        api.requests.inc();
        api.duration.observe(elapsed);
        if closed {
            h.error(api_key, None).inc();
        }
    });
}

/// A request whose partitions came back with these codes: counted once, as an error of the
/// first failing code, when any failed.
pub fn request_errors(api_key: i16, codes: impl IntoIterator<Item = i16>) {
    if let Some(code) = codes.into_iter().find(|code| *code != 0) {
        with_handles(|h| h.error(api_key, Some(code)).inc());
    }
}

/// Records appended to `topic` on this (the owning) shard.
pub fn topic_produced(topic: &str, records: i64, size_bytes: usize) {
    with_handles(|h| {
        let t = h.topic(topic);
        t.produced_records.inc_by(records.max(0) as u64);
        t.produced_bytes.inc_by(size_bytes as u64);
    });
}

/// Batches of `topic` put into a fetch response on this (the connection's) shard.
pub fn topic_fetched(topic: &str, batches: &[Bytes]) {
    if batches.is_empty() {
        return;
    }
    let size_bytes: usize = batches.iter().map(Bytes::len).sum();
    let records: u64 = batches
        .iter()
        .filter_map(|batch| crate::storage::batch::peek_header(batch).ok())
        .map(|header| header.records_count.get().max(0) as u64)
        .sum();
    with_handles(|h| {
        let t = h.topic(topic);
        t.fetched_records.inc_by(records);
        t.fetched_bytes.inc_by(size_bytes as u64);
    });
}

pub fn connection_opened() {
    with_handles(|h| {
        h.connections_accepted.inc();
        h.connections_open.inc();
    });
}

pub fn connection_closed() {
    with_handles(|h| {
        h.connections_open.dec();
    });
}

/// A new connection closed at accept because it was over the limit named by `limit`
/// (`max_connections`, `max_connections_per_ip`).
pub fn connection_refused(limit: &'static str) {
    with_handles(|h| {
        let shard = h.shard;
        h.connections_refused
            .entry(limit)
            .or_insert_with(|| {
                families()
                    .connections_refused
                    .get_or_create_owned(&ShardReasonLabels {
                        shard,
                        reason: limit,
                    })
            })
            .inc();
    });
}

/// Why the broker, not the client, closed a connection.
#[derive(Debug, Clone, Copy)]
pub enum BrokerClose {
    /// Nothing in flight and nothing read for `connections_max_idle_ms`.
    Idle,
    /// A frame that did not arrive whole within `request_read_timeout_ms`.
    RequestReadTimeout,
    /// An answer the client did not take for `connections_max_idle_ms`.
    WriteTimeout,
    /// A frame the broker could not read or answer.
    Malformed,
}

impl BrokerClose {
    fn label(self) -> &'static str {
        match self {
            BrokerClose::Idle => "idle",
            BrokerClose::RequestReadTimeout => "request_read_timeout",
            BrokerClose::WriteTimeout => "write_timeout",
            BrokerClose::Malformed => "malformed",
        }
    }
}

pub fn connection_closed_by_broker(reason: BrokerClose) {
    with_handles(|h| {
        let shard = h.shard;
        let label = reason.label();
        h.connections_closed
            .entry(label)
            .or_insert_with(|| {
                families()
                    .connections_closed
                    .get_or_create_owned(&ShardReasonLabels {
                        shard,
                        reason: label,
                    })
            })
            .inc();
    });
}

/// Bytes the shard's request budget holds now.
pub fn set_queued_request_bytes(size_bytes: usize) {
    with_handles(|h| {
        h.queued_request_bytes
            .set(i64::try_from(size_bytes).unwrap_or(i64::MAX));
    });
}

/// The storage operations whose latency is measured.
#[derive(Debug, Clone, Copy)]
pub enum IoOp {
    Read,
    Write,
    Fsync,
}

/// Runs an I/O future and records how long it took.
pub async fn timed_io<F: Future>(op: IoOp, io: F) -> F::Output {
    let started = Instant::now();
    let output = io.await;
    let elapsed = started.elapsed();
    with_handles(|h| match op {
        IoOp::Read => h.io_read.observe(elapsed),
        IoOp::Write => h.io_write.observe(elapsed),
        IoOp::Fsync => h.fsync.observe(elapsed),
    });
    output
}

pub fn mesh_sent() {
    with_handles(|h| h.mesh_sent.inc());
}

pub fn storage_read_damaged() {
    with_handles(|h| h.damaged_reads.inc());
}

pub fn zero_ahead_written(size_bytes: u64) {
    with_handles(|h| h.zero_ahead_bytes.inc_by(size_bytes));
}

/// How a cross-shard call ended.
#[derive(Debug, Clone, Copy)]
pub enum MeshOutcome {
    Answered,
    TimedOut,
    ShardGone,
}

pub fn mesh_call_done(outcome: MeshOutcome, elapsed: Duration) {
    with_handles(|h| match outcome {
        MeshOutcome::Answered => h.mesh_call.observe(elapsed),
        MeshOutcome::TimedOut => {
            h.mesh_timeouts.inc();
        }
        MeshOutcome::ShardGone => {
            h.mesh_gone.inc();
        }
    });
}

/// What the shard's executor did since the last report (see `runtime::stats`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeDelta {
    pub file_reads: u64,
    pub file_read_bytes: u64,
    pub file_writes: u64,
    pub file_write_bytes: u64,
    pub busy: Duration,
    pub tasks: u64,
}

pub fn record_runtime(delta: RuntimeDelta) {
    with_handles(|h| {
        h.uring_reads.inc_by(delta.file_reads);
        h.uring_read_bytes.inc_by(delta.file_read_bytes);
        h.uring_writes.inc_by(delta.file_writes);
        h.uring_write_bytes.inc_by(delta.file_write_bytes);
        if !delta.busy.is_zero() {
            h.busy_seconds.inc_by(delta.busy.as_secs_f64());
        }
        h.tasks.inc_by(delta.tasks);
    });
}
