//! Runs on every shard: publishes the shard's view (its partitions' offsets and sizes, its
//! batch cache) for the admin thread, and adds the executor's I/O and run-time counts to the
//! metrics, once a second until the shard stops. Reads only the shard's own state, on its own
//! thread, without awaiting anything but the timer.

use std::rc::Rc;
use std::time::Duration;

use crate::broker::Shard;
use crate::metrics::snapshot::{self, PartitionView, ShardView};
use crate::net::connection::StopSignal;
use crate::partition::TopicPartition;
use crate::storage::BatchCache;

/// How often a shard publishes; `/v1/topics` and the state gauges are at most this old.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes now, then every `PUBLISH_INTERVAL` until `stop` is raised.
pub async fn publish_until_stopped(shard: Rc<Shard>, cache: Rc<BatchCache>, stop: Rc<StopSignal>) {
    loop {
        snapshot::publish(view_of(&shard, &cache));
        crate::metrics::record_runtime(crate::runtime::stats::take_shard_stats());
        let stopped = futures_lite::future::or(
            async {
                glommio::timer::sleep(PUBLISH_INTERVAL).await;
                false
            },
            async {
                stop.wait().await;
                true
            },
        )
        .await;
        if stopped {
            return;
        }
    }
}

/// The shard's partitions as assigned by its copy of the metadata; an assigned partition that
/// is not open is reported offline.
pub fn view_of(shard: &Shard, cache: &BatchCache) -> ShardView {
    let metadata = shard.metadata();
    let mut partitions = Vec::new();
    for topic in metadata.topics.values() {
        for (index, assignment) in topic.partitions.iter().enumerate() {
            if assignment.shard as usize != shard.id {
                continue;
            }
            let id = TopicPartition::new(topic.name.clone(), index as i32);
            let offline_reason = shard.offline_reason(&id).map(|r| r.to_string());
            partitions.push(match shard.partition(&id) {
                Some(open) => PartitionView {
                    topic: id.topic,
                    partition: id.partition,
                    shard: shard.id,
                    online: offline_reason.is_none(),
                    offline_reason,
                    log_end_offset: open.log.log_end_offset(),
                    high_watermark: open.log.high_watermark(),
                    log_start_offset: open.log.log_start_offset(),
                    size_bytes: open.log.size_bytes(),
                    segment_count: open.log.segment_count(),
                },
                None => PartitionView {
                    topic: id.topic,
                    partition: id.partition,
                    shard: shard.id,
                    online: false,
                    offline_reason: Some(
                        offline_reason.unwrap_or_else(|| "not opened yet".to_string()),
                    ),
                    log_end_offset: -1,
                    high_watermark: -1,
                    log_start_offset: -1,
                    size_bytes: 0,
                    segment_count: 0,
                },
            });
        }
    }
    let cache = cache.stats();
    ShardView {
        shard: shard.id,
        taken_at_ms: crate::storage::now_ms(),
        partitions,
        batch_cache_size_bytes: cache.size_bytes as u64,
        batch_cache_batch_count: cache.batch_count as u64,
        batch_cache_hits: cache.hits,
        batch_cache_misses: cache.misses,
        write_buffer_pool_bytes: crate::storage::write_buffer_pool_bytes() as u64,
        write_inflight_bytes: crate::storage::write_budget::inflight_bytes() as u64,
        orphaned_partition_dirs: shard.orphaned_partition_dirs(),
    }
}
