//! The shard's bound on bytes of direct writes in flight, over all its files.
//!
//! Each file bounds its own writes in flight (`write_inflight_bytes_max`, 4 MiB by default), so
//! that one busy partition keeps the device fed without queueing everything behind it. The sum
//! over a shard's files would still grow with the number of busy partitions (a thousand of
//! them: 4 GiB of write buffers), so appends also wait while the shard has more than
//! `SHARD_INFLIGHT_BYTES_MAX_DEFAULT` in flight. Writes a sync needs (the tail) never wait here:
//! durability only waits for the device.
//!
//! Shard-local (a thread-local of the shard's executor thread): no lock, nothing shared.

use std::cell::Cell;
use std::rc::Rc;

use super::notify::Notify;

/// 16 partitions writing at their own bound, and tens of milliseconds of work for a device
/// writing 2-3 GB/s: more than any one device needs queued to stay busy.
pub const SHARD_INFLIGHT_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

struct Budget {
    inflight_bytes: Cell<usize>,
    max_bytes: Cell<usize>,
    /// Signalled when writes complete.
    released: Notify,
}

thread_local! {
    static BUDGET: Rc<Budget> = Rc::new(Budget {
        inflight_bytes: Cell::new(0),
        max_bytes: Cell::new(SHARD_INFLIGHT_BYTES_MAX_DEFAULT),
        released: Notify::default(),
    });
}

fn budget() -> Rc<Budget> {
    BUDGET.with(Rc::clone)
}

/// A write of `size_bytes` was issued.
pub(super) fn add(size_bytes: usize) {
    BUDGET.with(|budget| {
        budget
            .inflight_bytes
            .set(budget.inflight_bytes.get() + size_bytes);
    });
}

/// A write of `size_bytes` completed (or failed).
pub(super) fn release(size_bytes: usize) {
    BUDGET.with(|budget| {
        let inflight_bytes = budget.inflight_bytes.get();
        assert!(
            size_bytes <= inflight_bytes,
            "a write is released once, after it was added"
        );
        budget.inflight_bytes.set(inflight_bytes - size_bytes);
        budget.released.notify_all();
    });
}

/// Waits until the shard has at most its bound in flight.
pub(super) async fn wait_within_bound() {
    let budget = budget();
    budget
        .released
        .wait_for(|| (budget.inflight_bytes.get() <= budget.max_bytes.get()).then_some(()))
        .await;
}

/// Bytes of direct writes the calling shard has in flight.
pub fn inflight_bytes() -> usize {
    BUDGET.with(|budget| budget.inflight_bytes.get())
}

/// Sets the calling shard's bound (tests and benchmarks; shards keep the default).
pub fn set_max_bytes(max_bytes: usize) {
    BUDGET.with(|budget| {
        budget.max_bytes.set(max_bytes);
        budget.released.notify_all();
    });
}
