//! The shard's batch cache: recently appended batches, as the `Bytes` the producer sent, so that
//! tail fetches are served from memory without a disk read or a copy. One per shard, shared by
//! that shard's partitions, bounded in bytes, evicting the least recently used batch.

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::Bytes;

/// Identifies a partition log within one shard's cache.
pub type LogUid = u64;

pub struct BatchCache {
    capacity_bytes: usize,
    state: RefCell<CacheState>,
}

#[derive(Default)]
struct CacheState {
    entries: BTreeMap<(LogUid, i64), CachedBatch>,
    /// Access tick → key: the oldest tick is evicted first.
    recency: BTreeMap<u64, (LogUid, i64)>,
    size_bytes: usize,
    next_tick: u64,
    next_uid: LogUid,
    hits: u64,
    misses: u64,
}

struct CachedBatch {
    bytes: Bytes,
    last_offset: i64,
    tick: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub size_bytes: usize,
    pub batch_count: usize,
    pub hits: u64,
    pub misses: u64,
}

impl BatchCache {
    pub fn new(capacity_bytes: usize) -> Self {
        BatchCache {
            capacity_bytes,
            state: RefCell::new(CacheState::default()),
        }
    }

    /// A fresh identity for a partition log opened on this shard.
    pub fn register_log(&self) -> LogUid {
        let mut state = self.state.borrow_mut();
        state.next_uid += 1;
        state.next_uid
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.state.borrow();
        CacheStats {
            size_bytes: state.size_bytes,
            batch_count: state.entries.len(),
            hits: state.hits,
            misses: state.misses,
        }
    }

    pub fn insert(&self, uid: LogUid, base_offset: i64, last_offset: i64, bytes: Bytes) {
        if bytes.len() > self.capacity_bytes {
            return;
        }
        let mut state = self.state.borrow_mut();
        let tick = state.next_tick;
        state.next_tick += 1;
        state.size_bytes += bytes.len();
        let previous = state.entries.insert(
            (uid, base_offset),
            CachedBatch {
                bytes,
                last_offset,
                tick,
            },
        );
        if let Some(previous) = previous {
            state.size_bytes -= previous.bytes.len();
            state.recency.remove(&previous.tick);
        }
        state.recency.insert(tick, (uid, base_offset));
        while state.size_bytes > self.capacity_bytes {
            let (_, key) = state
                .recency
                .pop_first()
                .expect("non-empty while over capacity");
            let evicted = state.entries.remove(&key).expect("recency mirrors entries");
            state.size_bytes -= evicted.bytes.len();
        }
    }

    /// The run of consecutive cached batches starting with the one holding `start_offset`,
    /// each ending below `end_offset_exclusive`, until `max_bytes` is reached (the first batch
    /// is returned whatever its size). Empty when the first batch is not cached.
    pub fn read(
        &self,
        uid: LogUid,
        start_offset: i64,
        end_offset_exclusive: i64,
        max_bytes: usize,
    ) -> Vec<Bytes> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let mut found = Vec::new();
        let mut next_offset = start_offset;
        let mut size_bytes = 0usize;
        let first_key = state
            .entries
            .range((uid, i64::MIN)..=(uid, start_offset))
            .next_back()
            .map(|(key, _)| *key);
        let Some(first_key) = first_key else {
            state.misses += 1;
            return found;
        };
        for (key, batch) in state.entries.range_mut(first_key..(uid + 1, i64::MIN)) {
            let contiguous = if found.is_empty() {
                batch.last_offset >= start_offset
            } else {
                key.1 == next_offset
            };
            if !contiguous
                || batch.last_offset >= end_offset_exclusive
                || (!found.is_empty() && size_bytes + batch.bytes.len() > max_bytes)
            {
                break;
            }
            size_bytes += batch.bytes.len();
            next_offset = batch.last_offset + 1;
            found.push(batch.bytes.clone());
            state.recency.remove(&batch.tick);
            batch.tick = state.next_tick;
            state.next_tick += 1;
            state.recency.insert(batch.tick, *key);
        }
        if found.is_empty() {
            state.misses += 1;
        } else {
            state.hits += 1;
        }
        found
    }

    /// Forgets every batch of `uid` that holds offsets at or past `offset` (after a truncation).
    pub fn invalidate_from(&self, uid: LogUid, offset: i64) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let doomed: Vec<(LogUid, i64)> = state
            .entries
            .range((uid, i64::MIN)..(uid + 1, i64::MIN))
            .filter(|(_, batch)| batch.last_offset >= offset)
            .map(|(key, _)| *key)
            .collect();
        for key in doomed {
            let batch = state.entries.remove(&key).expect("key just listed");
            state.size_bytes -= batch.bytes.len();
            state.recency.remove(&batch.tick);
        }
    }

    /// Forgets every batch of `uid` below `offset` (after retention or delete_records).
    pub fn invalidate_before(&self, uid: LogUid, offset: i64) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let doomed: Vec<(LogUid, i64)> = state
            .entries
            .range((uid, i64::MIN)..(uid, offset))
            .filter(|(_, batch)| batch.last_offset < offset)
            .map(|(key, _)| *key)
            .collect();
        for key in doomed {
            let batch = state.entries.remove(&key).expect("key just listed");
            state.size_bytes -= batch.bytes.len();
            state.recency.remove(&batch.tick);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(size: usize) -> Bytes {
        Bytes::from(vec![7u8; size])
    }

    #[test]
    fn reads_contiguous_runs_within_limits() {
        let cache = BatchCache::new(1 << 20);
        let uid = cache.register_log();
        cache.insert(uid, 0, 4, batch(100));
        cache.insert(uid, 5, 9, batch(100));
        cache.insert(uid, 20, 24, batch(100));
        assert_eq!(cache.read(uid, 3, 100, 1000).len(), 2);
        assert_eq!(cache.read(uid, 5, 100, 1000).len(), 1);
        assert_eq!(cache.read(uid, 0, 100, 150).len(), 1);
        assert_eq!(cache.read(uid, 0, 9, 1000).len(), 1);
        assert!(cache.read(uid, 12, 100, 1000).is_empty());
        assert!(cache.read(uid + 1, 0, 100, 1000).is_empty());
    }

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let cache = BatchCache::new(250);
        let uid = cache.register_log();
        cache.insert(uid, 0, 0, batch(100));
        cache.insert(uid, 1, 1, batch(100));
        assert_eq!(cache.read(uid, 0, 10, 1000).len(), 2);
        cache.read(uid, 0, 1, 1000);
        cache.insert(uid, 2, 2, batch(100));
        assert!(cache.stats().size_bytes <= 250);
        assert_eq!(cache.read(uid, 0, 10, 100).len(), 1);
        assert!(cache.read(uid, 1, 10, 1000).is_empty());
    }

    #[test]
    fn invalidation_removes_ranges() {
        let cache = BatchCache::new(1 << 20);
        let uid = cache.register_log();
        for base in 0..10 {
            cache.insert(uid, base, base, batch(10));
        }
        cache.invalidate_from(uid, 7);
        cache.invalidate_before(uid, 3);
        assert_eq!(cache.stats().batch_count, 4);
        assert_eq!(cache.read(uid, 3, 100, 1000).len(), 4);
    }
}
