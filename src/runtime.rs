//! Shard executors. For now: running one shard-local future to completion on a dedicated
//! glommio executor thread, as tools, tests and benchmarks need. The pinned executor pool and
//! the cross-shard mesh of the broker come with `ringlog serve`.

use std::future::Future;

use glommio::{LocalExecutorBuilder, Placement};

/// Registered I/O buffer memory per executor. glommio's default (10 MiB) needs more locked
/// memory than common `memlock` limits (8 MiB) allow; buffers beyond the arena come from the
/// heap, which direct I/O handles just as well.
pub const IO_MEMORY_BYTES: usize = 512 * 1024;

/// Runs `make()`'s future on a fresh, unpinned glommio executor and returns its output.
pub fn run_on_executor<F, Fut, T>(name: &str, make: F) -> std::io::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move { make().await })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    handle
        .join()
        .map_err(|_| std::io::Error::other("executor thread panicked"))
}
