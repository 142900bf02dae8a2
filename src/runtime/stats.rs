//! What the shard's glommio executor counts about itself: file I/O through its io_uring rings
//! and time spent running. glommio hands these out as deltas (reading resets them), so one
//! caller per shard, the admin publisher, takes them.

use crate::metrics::RuntimeDelta;

/// The executor's counts since the last call on this shard. Call on a shard thread.
pub fn take_shard_stats() -> RuntimeDelta {
    let executor = glommio::executor();
    let io = executor.io_stats().all_rings();
    let (file_reads, file_read_bytes) = io.file_reads();
    let (buffered_reads, buffered_read_bytes) = io.file_buffered_reads();
    let (file_writes, file_write_bytes) = io.file_writes();
    let (buffered_writes, buffered_write_bytes) = io.file_buffered_writes();
    let run = executor.executor_stats();
    RuntimeDelta {
        file_reads: file_reads + buffered_reads,
        file_read_bytes: file_read_bytes + buffered_read_bytes,
        file_writes: file_writes + buffered_writes,
        file_write_bytes: file_write_bytes + buffered_write_bytes,
        busy: run.total_runtime(),
        tasks: run.tasks_executed(),
    }
}
