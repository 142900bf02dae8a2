//! Partition and shard state as the admin thread sees it: each shard publishes a `ShardView`
//! every housekeeping tick (and right after it starts listening), the admin thread reads the
//! latest views for `/v1/topics`, `/v1/shards` and the state gauges of `/metrics`.
//!
//! One slot per shard holds the latest view behind a mutex that the shard only ever
//! `try_lock`s: when the admin thread happens to be reading, the shard skips that publication
//! and the next tick publishes again, so a shard never waits. The admin thread holds a slot
//! only long enough to clone an `Arc`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, TryLockError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::readiness::{readiness, SHARDS_MAX};
use super::settings;

/// One partition as its shard saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    pub shard: usize,
    /// False when the partition is assigned to the shard but cannot serve.
    pub online: bool,
    /// Why it cannot serve, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_reason: Option<String>,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub size_bytes: u64,
    pub segment_count: usize,
}

/// One shard's state at `taken_at_ms`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardView {
    pub shard: usize,
    /// Wall-clock milliseconds since the Unix epoch when the shard took this view.
    pub taken_at_ms: i64,
    pub partitions: Vec<PartitionView>,
    pub batch_cache_size_bytes: u64,
    pub batch_cache_batch_count: u64,
    pub batch_cache_hits: u64,
    pub batch_cache_misses: u64,
    /// Idle direct-IO write buffers the shard keeps for its files' next writes.
    pub write_buffer_pool_bytes: u64,
    /// Bytes of direct writes the shard has in flight, over all its files.
    pub write_inflight_bytes: u64,
    /// Shard 0: partition directories the metadata does not explain, kept with their data.
    pub orphaned_partition_dirs: Vec<String>,
}

static SLOTS: [Mutex<Option<Arc<ShardView>>>; SHARDS_MAX] =
    [const { Mutex::new(None) }; SHARDS_MAX];

/// Publishes `view` as its shard's latest, unless the admin thread is reading the slot right
/// now; then this view is dropped and the next one goes through. Never blocks.
pub fn publish(view: ShardView) {
    let Some(slot) = SLOTS.get(view.shard) else {
        return;
    };
    let mut guard = match slot.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    *guard = Some(Arc::new(view));
}

/// The latest view of every shard that has published one, in shard order. Admin thread only.
pub fn latest() -> Vec<Arc<ShardView>> {
    let shard_count = readiness().shard_count().min(SHARDS_MAX);
    SLOTS[..shard_count]
        .iter()
        .filter_map(|slot| {
            slot.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()
        })
        .collect()
}

/// Size and free space (for unprivileged writers) of the filesystem holding `path`.
pub fn filesystem_bytes(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `stat` is a valid out-pointer for statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    let fragment = stat.f_frsize;
    Ok((stat.f_blocks * fragment, stat.f_bavail * fragment))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
    shard: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Per-topic sums over the topic's partitions.
#[derive(Default)]
struct TopicTotals {
    partitions: u64,
    size_bytes: u64,
    segments: u64,
}

/// A gauge family derived from some state `T`, one series per item.
struct Derived<T> {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    value: fn(&T) -> f64,
}

const SHARD_GAUGES: [Derived<ShardView>; 7] = [
    Derived {
        name: "shard_partitions",
        help: "Partitions the shard owns and serves",
        unit: None,
        value: |v| v.partitions.iter().filter(|p| p.online).count() as f64,
    },
    Derived {
        name: "partitions_offline",
        help: "Partitions assigned to the shard that cannot serve (/v1/ready and the broker log say why)",
        unit: None,
        value: |v| v.partitions.iter().filter(|p| !p.online).count() as f64,
    },
    Derived {
        name: "orphaned_partition_dirs",
        help: "Partition directories the metadata does not explain, kept with their data and not served (run ringlog recover-metadata)",
        unit: None,
        value: |v| v.orphaned_partition_dirs.len() as f64,
    },
    Derived {
        name: "partitions_under_replicated",
        help: "Partitions with fewer in-sync replicas than replicas. Always 0 until replication exists; exported now so alerts and dashboards need no change then",
        unit: None,
        value: |_| 0.0,
    },
    Derived {
        name: "batch_cache_size",
        help: "Bytes held by the shard's batch cache",
        unit: Some(Unit::Bytes),
        value: |v| v.batch_cache_size_bytes as f64,
    },
    Derived {
        name: "write_buffer_pool_size",
        help: "Bytes of idle direct-IO write buffers the shard keeps for its files' next writes (bounded at 64 MiB)",
        unit: Some(Unit::Bytes),
        value: |v| v.write_buffer_pool_bytes as f64,
    },
    Derived {
        name: "write_inflight",
        help: "Bytes of direct writes the shard has in flight over all its files (appends wait above 64 MiB)",
        unit: Some(Unit::Bytes),
        value: |v| v.write_inflight_bytes as f64,
    },
];

const TOPIC_GAUGES: [Derived<TopicTotals>; 3] = [
    Derived {
        name: "topic_partitions",
        help: "Partitions of the topic",
        unit: None,
        value: |t| t.partitions as f64,
    },
    Derived {
        name: "topic_size",
        help: "Bytes of the topic's segment files on disk",
        unit: Some(Unit::Bytes),
        value: |t| t.size_bytes as f64,
    },
    Derived {
        name: "topic_segments",
        help: "Segments of the topic's partitions",
        unit: None,
        value: |t| t.segments as f64,
    },
];

const PARTITION_GAUGES: [Derived<PartitionView>; 5] = [
    Derived {
        name: "partition_log_end_offset",
        help: "Offset the next record appended to the partition gets",
        unit: None,
        value: |p| p.log_end_offset as f64,
    },
    Derived {
        name: "partition_high_watermark",
        help: "Offset below which the partition's records are committed and visible to consumers",
        unit: None,
        value: |p| p.high_watermark as f64,
    },
    Derived {
        name: "partition_log_start_offset",
        help: "First offset still in the partition's log (retention and DeleteRecords move it)",
        unit: None,
        value: |p| p.log_start_offset as f64,
    },
    Derived {
        name: "partition_size",
        help: "Bytes of the partition's segment files on disk",
        unit: Some(Unit::Bytes),
        value: |p| p.size_bytes as f64,
    },
    Derived {
        name: "partition_segments",
        help: "Segments of the partition",
        unit: None,
        value: |p| p.segment_count as f64,
    },
];

/// Counters the shard views carry: name, help, value.
type DerivedCounter = (&'static str, &'static str, fn(&ShardView) -> u64);

const CACHE_COUNTERS: [DerivedCounter; 2] = [
    (
        "batch_cache_hits",
        "Reads served from the shard's batch cache",
        |v| v.batch_cache_hits,
    ),
    (
        "batch_cache_misses",
        "Reads the shard's batch cache could not serve",
        |v| v.batch_cache_misses,
    ),
];

type Result = std::result::Result<(), std::fmt::Error>;

/// Encodes every family of `specs`, one series per `(labels, item)`.
fn encode_derived<T, L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    specs: &[Derived<T>],
    items: &[(L, &T)],
) -> Result {
    for spec in specs {
        let mut family = encoder.encode_descriptor(
            spec.name,
            spec.help,
            spec.unit.as_ref(),
            MetricType::Gauge,
        )?;
        for (labels, item) in items {
            family
                .encode_family(labels)?
                .encode_gauge(&(spec.value)(item))?;
        }
    }
    Ok(())
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> Result {
    encoder
        .encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// Encodes, at each scrape, the gauges derived from the latest shard views, the readiness
/// flags and the data directory's filesystem.
#[derive(Debug)]
pub(super) struct StateCollector;

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
        encoder
            .encode_descriptor(
                "build_info",
                "Always 1; the version label says which ringlog runs",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })?
            .encode_gauge(&1i64)?;
        let ready = f64::from(u8::from(readiness().is_ready()));
        encode_gauge(
            &mut encoder,
            "ready",
            "1 when every shard has recovered its logs and listens on the Kafka port",
            None,
            ready,
        )?;
        let shard_count = readiness().shard_count() as f64;
        encode_gauge(
            &mut encoder,
            "shards",
            "Shards (executors pinned one per core)",
            None,
            shard_count,
        )?;

        let views = latest();
        let shards: Vec<(ShardLabel, &ShardView)> = views
            .iter()
            .map(|v| (ShardLabel { shard: v.shard }, v.as_ref()))
            .collect();
        encode_derived(&mut encoder, &SHARD_GAUGES, &shards)?;
        let now_ms = crate::storage::now_ms();
        let mut age = encoder.encode_descriptor(
            "shard_view_age",
            "Age of the shard's latest published state; it keeps growing while the shard is stalled",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (labels, view) in &shards {
            let age_seconds = (now_ms - view.taken_at_ms).max(0) as f64 / 1000.0;
            age.encode_family(labels)?.encode_gauge(&age_seconds)?;
        }
        for (name, help, value) in CACHE_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, view) in &shards {
                family
                    .encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value(view), None)?;
            }
        }

        let mut totals: BTreeMap<&str, TopicTotals> = BTreeMap::new();
        for partition in views.iter().flat_map(|v| &v.partitions) {
            let topic = totals.entry(&partition.topic).or_default();
            topic.partitions += 1;
            topic.size_bytes += partition.size_bytes;
            topic.segments += partition.segment_count as u64;
        }
        let topics: Vec<(TopicLabel, &TopicTotals)> = totals
            .iter()
            .map(|(topic, totals)| {
                (
                    TopicLabel {
                        topic: topic.to_string(),
                    },
                    totals,
                )
            })
            .collect();
        encode_derived(&mut encoder, &TOPIC_GAUGES, &topics)?;

        let Some(settings) = settings() else {
            return Ok(());
        };
        if settings.per_partition {
            let partitions: Vec<(PartitionLabels, &PartitionView)> = views
                .iter()
                .flat_map(|v| &v.partitions)
                .filter(|p| p.online)
                .map(|p| {
                    let labels = PartitionLabels {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        shard: p.shard,
                    };
                    (labels, p)
                })
                .collect();
            encode_derived(&mut encoder, &PARTITION_GAUGES, &partitions)?;
        }
        if let Ok((size_bytes, free_bytes)) = filesystem_bytes(&settings.data_dir) {
            encode_gauge(
                &mut encoder,
                "data_dir_filesystem_size",
                "Size of the filesystem holding the data directory",
                Some(&Unit::Bytes),
                size_bytes as f64,
            )?;
            encode_gauge(
                &mut encoder,
                "data_dir_filesystem_free",
                "Space left for unprivileged writers on the filesystem holding the data directory",
                Some(&Unit::Bytes),
                free_bytes as f64,
            )?;
        }
        encode_gauge(
            &mut encoder,
            "disk_free_threshold",
            "Free space below which produce is refused with KAFKA_STORAGE_ERROR",
            Some(&Unit::Bytes),
            settings.disk_free_threshold_bytes as f64,
        )
    }
}
