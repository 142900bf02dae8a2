//! The shard's pool of direct-IO write buffers whose writes have completed, shared by all of
//! the shard's files.
//!
//! Fresh DMA memory beyond glommio's arena costs a page fault per 4 KiB on first touch. When
//! each file kept its own spares, every new segment started with fresh buffers: about 10,000
//! faults per GiB of 1 MiB appends (128 MiB segments, 4 MiB of writes in flight). Pooled by the
//! shard, the buffers of a sealed segment serve the next one, and those of a partition gone
//! idle serve a busy one.
//!
//! Shard-local (a thread-local of the shard's executor thread): no lock, nothing shared.

use std::cell::RefCell;

use super::file::AlignedBuffer;

/// Bytes of idle buffers a shard keeps, over all sizes.
pub const SHARD_POOL_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Idle buffers of one size a shard keeps: enough for 1 MiB writes of several busy partitions
/// (4 MiB in flight each), while leaving room in the byte bound for the other sizes.
pub const BUFFERS_PER_SIZE_MAX: usize = 32;

#[derive(Default)]
struct Pool {
    /// (buffer size, idle buffers of that size); a handful of sizes (the write chunk, the
    /// large write, the index chunk), so a list beats a map.
    by_size: Vec<(usize, Vec<AlignedBuffer>)>,
    held_bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An idle buffer of exactly `size_bytes`, if the shard holds one.
pub fn take(size_bytes: usize) -> Option<AlignedBuffer> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (_, list) = pool
            .by_size
            .iter_mut()
            .find(|(size, _)| *size == size_bytes)?;
        let buffer = list.pop()?;
        pool.held_bytes -= buffer.len();
        Some(buffer)
    })
}

/// Keeps `buffer` for a later `take`, unless the shard holds enough already (then it is freed).
pub fn give_back(buffer: AlignedBuffer) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let size_bytes = buffer.len();
        if pool.held_bytes + size_bytes > SHARD_POOL_BYTES_MAX {
            return;
        }
        let index = match pool
            .by_size
            .iter()
            .position(|(size, _)| *size == size_bytes)
        {
            Some(index) => index,
            None => {
                pool.by_size.push((size_bytes, Vec::new()));
                pool.by_size.len() - 1
            }
        };
        let list = &mut pool.by_size[index].1;
        if list.len() < BUFFERS_PER_SIZE_MAX {
            list.push(buffer);
            pool.held_bytes += size_bytes;
        }
    });
}

/// Bytes of idle buffers the calling shard holds.
pub fn pooled_bytes() -> usize {
    POOL.with(|pool| pool.borrow().held_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file::DirectFile;

    #[test]
    fn the_pool_keeps_buffers_within_its_bounds_and_hands_them_out_by_size() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("buffers");
        crate::runtime::run_on_executor("buffer-pool-test", move || async move {
            const MIB: usize = 1024 * 1024;
            let file = DirectFile::open(&path, true).await.unwrap();
            assert_eq!(pooled_bytes(), 0);
            assert!(take(2 * MIB).is_none());

            for _ in 0..2 * BUFFERS_PER_SIZE_MAX {
                give_back(file.alloc_buffer(4096));
            }
            assert_eq!(
                pooled_bytes(),
                BUFFERS_PER_SIZE_MAX * 4096,
                "per-size bound"
            );

            // 32 buffers of 2 MiB would pass the byte bound.
            for _ in 0..BUFFERS_PER_SIZE_MAX {
                give_back(file.alloc_buffer(2 * MIB));
            }
            let held = pooled_bytes();
            assert!(held <= SHARD_POOL_BYTES_MAX, "byte bound: {held}");
            assert!(
                held > SHARD_POOL_BYTES_MAX - 2 * MIB,
                "filled up to the bound: {held}"
            );

            let buffer = take(2 * MIB).expect("a pooled 2 MiB buffer");
            assert_eq!(buffer.len(), 2 * MIB);
            assert_eq!(pooled_bytes(), held - 2 * MIB);
            assert!(take(64 * 1024).is_none(), "only exact sizes");
        })
        .unwrap();
    }
}
