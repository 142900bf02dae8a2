//! The admin endpoints. Every answer is built from atomics and published shard views; none
//! waits on a shard.
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | every metric family, Prometheus text format 0.0.4 |
//! | `/v1/health` | 200 `{"status":"live"}` once the process is up |
//! | `/v1/ready` | 200 `{"ready":true}` once every shard has recovered its logs and listens on the Kafka port; 503 `{"ready":false,"pending":{"recovery":[shards],"kafka_listener":[shards]}}` before (and again while shutting down) |
//! | `/v1/topics` | topics, their partitions, the owning shard and the partitions' offsets and sizes, as of each shard's latest view (at most about a second old) |
//! | `/v1/shards` | per shard: readiness, partitions, bytes on disk, open connections, batch cache, view age |

use std::collections::BTreeMap;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics::labels::ShardLabels;
use crate::metrics::snapshot::{self, PartitionView};
use crate::metrics::{self, readiness, Pending};

pub fn router() -> Router {
    Router::new()
        .route("/metrics", get(prometheus_metrics))
        .route("/v1/health", get(health))
        .route("/v1/ready", get(ready))
        .route("/v1/topics", get(topics))
        .route("/v1/shards", get(shards))
}

async fn prometheus_metrics() -> Response {
    match metrics::encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn health() -> Json<Health> {
    Json(Health { status: "live" })
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<Pending>,
    /// Partitions that cannot serve, with why: the broker serves the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    offline_partitions: Vec<OfflinePartition>,
    /// Partition directories the metadata does not explain, kept with their data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    orphaned_partition_dirs: Vec<String>,
}

#[derive(Serialize)]
struct OfflinePartition {
    topic: String,
    partition: i32,
    reason: String,
}

async fn ready() -> (StatusCode, Json<Ready>) {
    // Before the shard count is known every shard is pending; say so with an empty list.
    let pending = readiness().pending().unwrap_or_default();
    let is_ready = readiness().is_ready();
    let status = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let views = crate::metrics::snapshot::latest();
    let offline_partitions = views
        .iter()
        .flat_map(|view| view.partitions.iter())
        .filter(|p| !p.online)
        .map(|p| OfflinePartition {
            topic: p.topic.clone(),
            partition: p.partition,
            reason: p.offline_reason.clone().unwrap_or_default(),
        })
        .collect();
    let orphaned_partition_dirs = views
        .iter()
        .flat_map(|view| view.orphaned_partition_dirs.iter().cloned())
        .collect();
    let body = Ready {
        ready: is_ready,
        pending: (!is_ready).then_some(pending),
        offline_partitions,
        orphaned_partition_dirs,
    };
    (status, Json(body))
}

#[derive(Serialize)]
struct Topic<'a> {
    name: &'a str,
    partitions: Vec<&'a PartitionView>,
}

#[derive(Serialize)]
struct Topics<'a> {
    topics: Vec<Topic<'a>>,
}

async fn topics() -> Response {
    let views = snapshot::latest();
    let mut by_topic: BTreeMap<&str, Vec<&PartitionView>> = BTreeMap::new();
    for partition in views.iter().flat_map(|v| &v.partitions) {
        by_topic
            .entry(&partition.topic)
            .or_default()
            .push(partition);
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition);
            Topic { name, partitions }
        })
        .collect();
    Json(Topics { topics }).into_response()
}

#[derive(Serialize)]
struct ShardStatus {
    shard: usize,
    recovered: bool,
    listening: bool,
    partitions: usize,
    partitions_offline: usize,
    size_bytes: u64,
    connections_open: i64,
    batch_cache_size_bytes: u64,
    /// Age of the shard's latest published view; `null` before its first.
    view_age_ms: Option<i64>,
}

#[derive(Serialize)]
struct Shards {
    shards: Vec<ShardStatus>,
}

async fn shards() -> Json<Shards> {
    let views = snapshot::latest();
    let now_ms = crate::storage::now_ms();
    let shards = (0..readiness().shard_count())
        .map(|shard| {
            let view = views.iter().find(|v| v.shard == shard);
            let partitions = view.map(|v| v.partitions.as_slice()).unwrap_or_default();
            ShardStatus {
                shard,
                recovered: readiness().is_recovered(shard),
                listening: readiness().is_listening(shard),
                partitions: partitions.iter().filter(|p| p.online).count(),
                partitions_offline: partitions.iter().filter(|p| !p.online).count(),
                size_bytes: partitions.iter().map(|p| p.size_bytes).sum(),
                connections_open: metrics::connections_open(ShardLabels { shard }),
                batch_cache_size_bytes: view.map_or(0, |v| v.batch_cache_size_bytes),
                view_age_ms: view.map(|v| (now_ms - v.taken_at_ms).max(0)),
            }
        })
        .collect();
    Json(Shards { shards })
}
