//! ringlog's Prometheus metrics: one process-wide registry of metric families, which shards
//! update directly and the admin thread encodes for `/metrics`.
//!
//! Shards never wait on the admin thread or on each other here:
//! - counters, gauges and histograms are atomics (`histogram::LatencyHistogram` replaces
//!   prometheus-client's mutex-based histogram);
//! - each shard thread keeps its own handles to the series it writes (`shard_local`), so the
//!   lock inside a `Family` is taken on a shard only the first time that shard uses a label set;
//! - partition and topic state reaches the admin thread as a periodically published snapshot
//!   (`snapshot`), swapped in with a `try_lock` that never blocks the shard.
//!
//! Recording functions are no-ops on threads that did not `bind_shard`, so storage tools and
//! tests that run the storage engine outside a broker do not need any set-up.
//!
//! Cardinality stays bounded: series are per shard, per API, per topic or per consumer group;
//! per-partition series exist only with `metrics_per_partition`, and no histogram is per
//! partition.

pub mod groups;
pub mod histogram;
pub mod labels;
pub mod readiness;
pub mod requests;
mod shard_local;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, OnceLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

pub use groups::{groups, GroupMetrics};
pub use histogram::LatencyHistogram;
use labels::*;
pub use readiness::{readiness, Pending, Readiness};
pub use shard_local::{
    bind_shard, connection_closed, connection_closed_by_broker, connection_opened,
    connection_refused, mesh_call_done, mesh_sent, record_runtime, set_queued_request_bytes,
    storage_read_damaged, timed_io, topic_fetched, topic_produced, zero_ahead_written, BrokerClose,
    IoOp, MeshOutcome, RuntimeDelta,
};

/// The content type of `/metrics` (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Broker settings the exported metrics depend on; set once by `ringlog serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shards that must be ready before the broker is.
    pub shard_count: usize,
    /// Export per-partition series (`metrics_per_partition`).
    pub per_partition: bool,
    pub data_dir: PathBuf,
    pub disk_free_threshold_bytes: u64,
}

/// Every metric family shards write to. Cloning a family or a metric shares its values.
pub(crate) struct Families {
    pub requests: Family<ShardApiLabels, Counter>,
    pub request_errors: Family<ShardApiErrorLabels, Counter>,
    pub request_duration: Family<ShardApiLabels, LatencyHistogram>,
    pub network_received_bytes: Family<ShardLabels, Counter>,
    pub network_sent_bytes: Family<ShardLabels, Counter>,
    pub requests_in_flight: Family<ShardLabels, Gauge>,
    pub connections_open: Family<ShardLabels, Gauge>,
    pub connections_accepted: Family<ShardLabels, Counter>,
    pub connections_refused: Family<ShardReasonLabels, Counter>,
    pub connections_closed: Family<ShardReasonLabels, Counter>,
    pub queued_request_bytes: Family<ShardLabels, Gauge>,
    pub topic_produced_bytes: Family<TopicLabels, Counter>,
    pub topic_produced_records: Family<TopicLabels, Counter>,
    pub topic_fetched_bytes: Family<TopicLabels, Counter>,
    pub topic_fetched_records: Family<TopicLabels, Counter>,
    pub fsync_duration: Family<ShardLabels, LatencyHistogram>,
    pub io_duration: Family<ShardOpLabels, LatencyHistogram>,
    pub io_uring_file_ops: Family<ShardOpLabels, Counter>,
    pub io_uring_file_bytes: Family<ShardOpLabels, Counter>,
    pub shard_busy_seconds: Family<ShardLabels, Counter<f64, AtomicU64>>,
    pub shard_tasks: Family<ShardLabels, Counter>,
    pub mesh_messages_sent: Family<ShardLabels, Counter>,
    pub zero_ahead_bytes: Family<ShardLabels, Counter>,
    pub damaged_reads: Family<ShardLabels, Counter>,
    pub mesh_call_duration: Family<ShardLabels, LatencyHistogram>,
    pub mesh_failures: Family<ShardReasonLabels, Counter>,
    pub consumer_groups: Family<ShardLabels, Gauge>,
    pub consumer_group_lag: Family<GroupTopicLabels, Gauge>,
    pub consumer_group_partition_lag: Family<GroupTopicPartitionLabels, Gauge>,
}

struct Metrics {
    registry: Registry,
    families: Families,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(build);
static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Sets what the metrics depend on, and how many shards readiness waits for; the first call
/// wins (one broker per process).
pub fn configure(settings: Settings) {
    readiness().expect_shards(settings.shard_count);
    let _ = SETTINGS.set(settings);
    LazyLock::force(&METRICS);
}

pub(crate) fn settings() -> Option<&'static Settings> {
    SETTINGS.get()
}

pub(crate) fn families() -> &'static Families {
    &METRICS.families
}

/// Every family in the Prometheus text format.
pub fn encode() -> Result<String, std::fmt::Error> {
    let mut text = String::with_capacity(64 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut text, &METRICS.registry)?;
    Ok(text)
}

fn build() -> Metrics {
    let families = Families {
        requests: Family::default(),
        request_errors: Family::default(),
        request_duration: Family::default(),
        network_received_bytes: Family::default(),
        network_sent_bytes: Family::default(),
        requests_in_flight: Family::default(),
        connections_open: Family::default(),
        connections_accepted: Family::default(),
        connections_refused: Family::default(),
        connections_closed: Family::default(),
        queued_request_bytes: Family::default(),
        topic_produced_bytes: Family::default(),
        topic_produced_records: Family::default(),
        topic_fetched_bytes: Family::default(),
        topic_fetched_records: Family::default(),
        fsync_duration: Family::default(),
        io_duration: Family::default(),
        io_uring_file_ops: Family::default(),
        io_uring_file_bytes: Family::default(),
        shard_busy_seconds: Family::default(),
        shard_tasks: Family::default(),
        mesh_messages_sent: Family::default(),
        zero_ahead_bytes: Family::default(),
        damaged_reads: Family::default(),
        mesh_call_duration: Family::default(),
        mesh_failures: Family::default(),
        consumer_groups: Family::default(),
        consumer_group_lag: Family::default(),
        consumer_group_partition_lag: Family::default(),
    };
    let mut registry = Registry::with_prefix("ringlog");
    let f = &families;
    let r = &mut registry;
    add(
        r,
        "requests",
        "Kafka requests received, by shard (the connection's) and API",
        None,
        &f.requests,
    );
    add(
        r,
        "request_errors",
        "Kafka requests answered with an error: a partition's error code, or closed",
        None,
        &f.request_errors,
    );
    add(
        r,
        "request_duration",
        "From reading a request to its answer being ready (long polls count their wait)",
        Some(Unit::Seconds),
        &f.request_duration,
    );
    add(
        r,
        "network_received",
        "Kafka request bytes read, size prefixes included",
        Some(Unit::Bytes),
        &f.network_received_bytes,
    );
    add(
        r,
        "network_sent",
        "Kafka response bytes handed to the socket, size prefixes included",
        Some(Unit::Bytes),
        &f.network_sent_bytes,
    );
    add(
        r,
        "requests_in_flight",
        "Kafka requests read and not yet answered (long-polling fetches included)",
        None,
        &f.requests_in_flight,
    );
    add(
        r,
        "connections_open",
        "Kafka client connections open now",
        None,
        &f.connections_open,
    );
    add(
        r,
        "connections_accepted",
        "Kafka client connections accepted",
        None,
        &f.connections_accepted,
    );
    add(
        r,
        "connections_refused",
        "Kafka client connections closed at accept, by the limit they were over",
        None,
        &f.connections_refused,
    );
    add(
        r,
        "connections_closed",
        "Kafka client connections the broker closed: idle, a frame too slow or malformed, a stalled write",
        None,
        &f.connections_closed,
    );
    add(
        r,
        "queued_request",
        "Bytes of requests being read, queued or handled, against queued_max_request_bytes",
        Some(Unit::Bytes),
        &f.queued_request_bytes,
    );
    add(
        r,
        "topic_produced",
        "Record batch bytes appended, by topic",
        Some(Unit::Bytes),
        &f.topic_produced_bytes,
    );
    add(
        r,
        "topic_produced_records",
        "Records appended, by topic",
        None,
        &f.topic_produced_records,
    );
    add(
        r,
        "topic_fetched",
        "Record batch bytes sent to consumers, by topic",
        Some(Unit::Bytes),
        &f.topic_fetched_bytes,
    );
    add(
        r,
        "topic_fetched_records",
        "Records sent to consumers, by topic (whole batches, as Kafka counts them)",
        None,
        &f.topic_fetched_records,
    );
    add(
        r,
        "storage_damaged_segments",
        "Segments found holding a stored batch that fails its CRC when read back (each counted once; the broker log names it)",
        None,
        &f.damaged_reads,
    );
    add(
        r,
        "storage_zero_ahead_bytes",
        "Bytes of reserved log blocks written with zeros ahead of segments taking small syncs",
        None,
        &f.zero_ahead_bytes,
    );
    add(
        r,
        "storage_fsync_duration",
        "fdatasync latency of log segments and other direct-IO files",
        Some(Unit::Seconds),
        &f.fsync_duration,
    );
    add(
        r,
        "storage_io_duration",
        "Direct-IO read and write latency, io_uring queueing included",
        Some(Unit::Seconds),
        &f.io_duration,
    );
    add(
        r,
        "io_uring_file_operations",
        "File reads and writes the shard's io_uring rings completed (glommio's reactor counts)",
        None,
        &f.io_uring_file_ops,
    );
    add(
        r,
        "io_uring_file",
        "File bytes read and written through the shard's io_uring rings",
        Some(Unit::Bytes),
        &f.io_uring_file_bytes,
    );
    add(
        r,
        "shard_busy",
        "Time the shard's executor spent running tasks and polling I/O (not idle or spinning)",
        Some(Unit::Seconds),
        &f.shard_busy_seconds,
    );
    add(
        r,
        "shard_tasks",
        "Tasks the shard's executor ran",
        None,
        &f.shard_tasks,
    );
    add(
        r,
        "mesh_messages_sent",
        "Messages this shard sent to other shards over the mesh",
        None,
        &f.mesh_messages_sent,
    );
    add(
        r,
        "mesh_call_duration",
        "Round trip of a cross-shard request until its reply, by calling shard",
        Some(Unit::Seconds),
        &f.mesh_call_duration,
    );
    add(
        r,
        "mesh_failures",
        "Cross-shard requests that timed out or found their shard gone",
        None,
        &f.mesh_failures,
    );
    add(
        r,
        "consumer_groups",
        "Consumer groups coordinated by the shard",
        None,
        &f.consumer_groups,
    );
    add(
        r,
        "consumer_group_lag",
        "Log end offset minus the group's committed offset, summed over partitions",
        None,
        &f.consumer_group_lag,
    );
    add(
        r,
        "consumer_group_partition_lag",
        "Log end offset minus the group's committed offset (metrics_per_partition)",
        None,
        &f.consumer_group_partition_lag,
    );
    r.register_collector(Box::new(snapshot::StateCollector));
    Metrics { registry, families }
}

/// Registers a family, listed even while it has no series.
fn add<M>(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, family: &M)
where
    M: EncodeMetric + Clone + Send + Sync + std::fmt::Debug + 'static,
{
    let listed = Listed(family.clone());
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, listed),
        None => registry.register(name, help, listed),
    }
}

/// A family that is listed (HELP and TYPE) even before it has a series, so that scrapers,
/// dashboards and their tests see every family ringlog has from the first scrape.
#[derive(Debug)]
struct Listed<M>(M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// Connections open on one shard now (for the admin JSON views).
pub fn connections_open(shard: labels::ShardLabels) -> i64 {
    families()
        .connections_open
        .get(&shard)
        .map_or(0, |gauge| gauge.get())
}
