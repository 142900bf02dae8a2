//! Whether the broker is ready for clients: every shard has recovered its logs and listens on
//! the Kafka port. Shards raise their flags (atomics); `/v1/ready` and `ringlog_ready` read them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Shards ringlog supports at most (`--smp`).
pub const SHARDS_MAX: usize = 256;

pub struct Readiness {
    shard_count: AtomicUsize,
    recovered: [AtomicBool; SHARDS_MAX],
    listening: [AtomicBool; SHARDS_MAX],
}

/// What keeps the broker from being ready.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Shards still opening and recovering their partitions.
    pub recovery: Vec<usize>,
    /// Shards not listening on the Kafka port (not yet, or no longer: shutting down).
    pub kafka_listener: Vec<usize>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.recovery.is_empty() && self.kafka_listener.is_empty()
    }
}

static READINESS: Readiness = Readiness {
    shard_count: AtomicUsize::new(0),
    recovered: [const { AtomicBool::new(false) }; SHARDS_MAX],
    listening: [const { AtomicBool::new(false) }; SHARDS_MAX],
};

/// The process's readiness flags.
pub fn readiness() -> &'static Readiness {
    &READINESS
}

impl Readiness {
    /// Sets how many shards must be ready; until then nothing is.
    pub fn expect_shards(&self, shard_count: usize) {
        assert!(shard_count <= SHARDS_MAX, "at most {SHARDS_MAX} shards");
        self.shard_count.store(shard_count, Ordering::Release);
    }

    pub fn set_recovered(&self, shard: usize) {
        if let Some(flag) = self.recovered.get(shard) {
            flag.store(true, Ordering::Release);
        }
    }

    pub fn set_listening(&self, shard: usize, listening: bool) {
        if let Some(flag) = self.listening.get(shard) {
            flag.store(listening, Ordering::Release);
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shard_count.load(Ordering::Acquire)
    }

    pub fn is_recovered(&self, shard: usize) -> bool {
        self.recovered
            .get(shard)
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    pub fn is_listening(&self, shard: usize) -> bool {
        self.listening
            .get(shard)
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// What is still pending; empty when ready. Nothing is ready before `expect_shards`.
    pub fn pending(&self) -> Option<Pending> {
        let shard_count = self.shard_count();
        if shard_count == 0 {
            return None;
        }
        Some(Pending {
            recovery: (0..shard_count)
                .filter(|s| !self.is_recovered(*s))
                .collect(),
            kafka_listener: (0..shard_count)
                .filter(|s| !self.is_listening(*s))
                .collect(),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.pending().is_some_and(|p| p.is_empty())
    }
}
