//! Shard executors: one glommio executor pinned per core, the cross-shard message mesh, and a
//! helper to run one shard-local future (for tools, tests and benchmarks). Every glommio
//! executor call outside the storage file layer lives here.

pub mod mesh;
pub mod stats;
pub mod topology;
pub mod waker;

pub use waker::spawn_local;

use std::future::Future;

use glommio::{CpuSet, LocalExecutorBuilder, LocalExecutorPoolBuilder, Placement, PoolPlacement};

/// Registered I/O buffer memory per executor. glommio's default (10 MiB) needs more locked
/// memory than common `memlock` limits (8 MiB) allow; buffers beyond the arena come from the
/// heap, which direct I/O handles just as well.
pub const IO_MEMORY_BYTES: usize = 512 * 1024;

/// Locked memory one shard needs: the registered buffers plus the io_uring rings.
pub const MEMLOCK_PER_SHARD_BYTES: u64 = IO_MEMORY_BYTES as u64 + 256 * 1024;

/// Runs `make()`'s future on a fresh, unpinned glommio executor and returns its output.
pub fn run_on_executor<F, Fut, T>(name: &str, make: F) -> std::io::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    run_on_placed_executor(name, Placement::Unbound, make)
}

/// Runs `make()`'s future on a fresh glommio executor bound to `cpu`, as a broker shard is
/// bound to its core, and returns its output.
pub fn run_on_executor_bound<F, Fut, T>(name: &str, cpu: usize, make: F) -> std::io::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    run_on_placed_executor(name, Placement::Fixed(cpu), make)
}

fn run_on_placed_executor<F, Fut, T>(
    name: &str,
    placement: Placement,
    make: F,
) -> std::io::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handle = LocalExecutorBuilder::new(placement)
        .name(name)
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || waker::StayHome::new(async move { make().await }))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    handle
        .join()
        .map_err(|_| std::io::Error::other("executor thread panicked"))
}

/// Where shards run: how many, and optionally on which CPUs.
#[derive(Debug, Clone)]
pub struct ShardPlacement {
    pub shard_count: usize,
    pub cpus: Option<Vec<usize>>,
}

impl ShardPlacement {
    fn pool_placement(&self) -> std::io::Result<PoolPlacement> {
        let online = CpuSet::online().map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(cpus) = &self.cpus {
            let sets: Vec<CpuSet> = cpus
                .iter()
                .map(|cpu| online.clone().filter(|location| location.cpu == *cpu))
                .collect();
            if let Some(missing) = cpus.iter().zip(&sets).find(|(_, set)| set.is_empty()) {
                return Err(std::io::Error::other(format!(
                    "--cpus names CPU {} which is not online",
                    missing.0
                )));
            }
            return Ok(PoolPlacement::Custom(sets));
        }
        if let Some(cpus) = topology::spread_cpus(self.shard_count) {
            let sets: Vec<CpuSet> = cpus
                .iter()
                .map(|cpu| online.clone().filter(|location| location.cpu == *cpu))
                .collect();
            if sets.iter().all(|set| !set.is_empty()) {
                tracing::info!(?cpus, "shards pinned one per core (hwloc)");
                return Ok(PoolPlacement::Custom(sets));
            }
        }
        if self.shard_count <= online.len() {
            // glommio's own spread over packages and NUMA nodes.
            Ok(PoolPlacement::MaxSpread(self.shard_count, None))
        } else {
            Ok(PoolPlacement::Fenced(self.shard_count, online))
        }
    }
}

/// Threads each shard has for file-system calls that would block it.
const BLOCKING_THREADS_PER_SHARD: usize = 4;

/// Starts one executor per shard running `make()` and waits for all of them to finish.
/// Returns each shard's output in shard order of the pool (not the mesh order).
pub fn run_shards<G, F, T>(placement: &ShardPlacement, make: G) -> std::io::Result<Vec<T>>
where
    G: FnOnce() -> F + Clone + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handles = LocalExecutorPoolBuilder::new(placement.pool_placement()?)
        .name("shard")
        .io_memory(IO_MEMORY_BYTES)
        // File-system calls io_uring does not take (directories, renames, small metadata files
        // and their syncs) run here. glommio's default is one thread per shard, pinned like
        // the first shard, which serialised thousands of partition creations.
        .blocking_thread_pool_placement(PoolPlacement::Unbound(BLOCKING_THREADS_PER_SHARD))
        .on_all_shards(move || waker::StayHome::new(make()))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    handles
        .join_all()
        .into_iter()
        .map(|result| result.map_err(|e| std::io::Error::other(e.to_string())))
        .collect()
}
