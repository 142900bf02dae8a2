//! The shard's budget of request bytes (Kafka's `queued.max.request.bytes`): every frame
//! reserves its size before its body is read and gives it back when its handler has finished,
//! so the bytes clients can make a shard hold in requests being read, queued or handled stay
//! under one bound however many connections stall halfway through a large frame. A connection
//! whose next frame does not fit waits, reading nothing, until enough is given back.
//! Shard-local: never shared between shards.

use std::cell::Cell;
use std::rc::Rc;

use crate::storage::notify::Notify;

pub struct RequestBudget {
    limit_bytes: usize,
    reserved_bytes: Cell<usize>,
    released: Notify,
}

impl RequestBudget {
    pub fn new(limit_bytes: usize) -> Self {
        RequestBudget {
            limit_bytes,
            reserved_bytes: Cell::new(0),
            released: Notify::default(),
        }
    }

    /// The largest frame that can ever fit.
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Waits until `size_bytes` fit, then holds them until the reservation is dropped. The
    /// caller bounds the wait (the request read deadline) and never asks for more than
    /// `limit_bytes`, which would never fit.
    pub async fn reserve(self: &Rc<Self>, size_bytes: usize) -> Reservation {
        debug_assert!(size_bytes <= self.limit_bytes);
        self.released
            .wait_for(|| {
                let reserved = self.reserved_bytes.get();
                (size_bytes <= self.limit_bytes - reserved).then_some(())
            })
            .await;
        self.set_reserved(self.reserved_bytes.get() + size_bytes);
        Reservation {
            budget: Rc::clone(self),
            size_bytes,
        }
    }

    fn set_reserved(&self, reserved_bytes: usize) {
        assert!(reserved_bytes <= self.limit_bytes);
        self.reserved_bytes.set(reserved_bytes);
        crate::metrics::set_queued_request_bytes(reserved_bytes);
    }
}

/// Bytes of the budget held for one request.
pub struct Reservation {
    budget: Rc<RequestBudget>,
    size_bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let reserved = self.budget.reserved_bytes.get();
        assert!(self.size_bytes <= reserved);
        self.budget.set_reserved(reserved - self.size_bytes);
        self.budget.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_waits_until_enough_is_given_back() {
        crate::runtime::run_on_executor("budget-test", || async {
            let budget = Rc::new(RequestBudget::new(100));
            let first = budget.reserve(60).await;
            let second = budget.reserve(40).await;
            let waiting = crate::runtime::spawn_local({
                let budget = Rc::clone(&budget);
                async move { budget.reserve(50).await.size_bytes }
            });
            futures_lite::future::yield_now().await;
            assert_eq!(budget.reserved_bytes.get(), 100);
            drop(second);
            assert_eq!(budget.reserved_bytes.get(), 60);
            drop(first);
            assert_eq!(waiting.await, 50);
            assert_eq!(budget.reserved_bytes.get(), 0);
        })
        .expect("executor ran");
    }
}
