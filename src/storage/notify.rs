//! A shard-local wake-all signal: tasks wait until a condition on shard state holds, and whoever
//! changes that state calls `notify_all`. Single-threaded; never crosses shards.
//!
//! A waiter that is dropped before it is woken (a long poll that timed out, a connection that
//! stopped waiting for shutdown) takes its waker out again: a kept waker would keep its whole
//! task allocated until the next `notify_all`, which for a signal raised once (shutdown) or
//! rarely (an idle partition) is a leak per waiter.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    // One entry per pending `WaitFor`; a waiting task is an in-flight request, a connection or
    // the flusher, all bounded upstream, and each entry leaves with its future.
    waiters: RefCell<HashMap<u64, Waker>>,
    next_key: Cell<u64>,
}

impl Notify {
    pub fn notify_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters.into_values() {
            waker.wake();
        }
    }

    /// Resolves once `ready` returns `Some`, re-checking after every `notify_all`.
    pub fn wait_for<'a, T, F>(&'a self, ready: F) -> WaitFor<'a, F>
    where
        F: FnMut() -> Option<T> + Unpin,
    {
        WaitFor {
            notify: self,
            ready,
            key: None,
        }
    }

    #[cfg(test)]
    fn waiter_count(&self) -> usize {
        self.waiters.borrow().len()
    }
}

pub struct WaitFor<'a, F> {
    notify: &'a Notify,
    ready: F,
    /// This future's entry in `waiters`, once it has waited.
    key: Option<u64>,
}

impl<T, F> Future for WaitFor<'_, F>
where
    F: FnMut() -> Option<T> + Unpin,
{
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(value) = (self.ready)() {
            if let Some(key) = self.key.take() {
                self.notify.waiters.borrow_mut().remove(&key);
            }
            return Poll::Ready(value);
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let key = self.notify.next_key.get();
                self.notify.next_key.set(key.wrapping_add(1));
                self.key = Some(key);
                key
            }
        };
        let mut waiters = self.notify.waiters.borrow_mut();
        match waiters.get_mut(&key) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                waiters.insert(key, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl<F> Drop for WaitFor<'_, F> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.notify.waiters.borrow_mut().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_waiter_leaves_no_waker_behind() {
        crate::runtime::run_on_executor("notify-test", || async {
            let notify = Notify::default();
            let ready = Cell::new(false);
            for _ in 0..3 {
                let waited = futures_lite::future::or(
                    async {
                        notify.wait_for(|| ready.get().then_some(())).await;
                        true
                    },
                    async { false },
                )
                .await;
                assert!(!waited);
            }
            assert_eq!(notify.waiter_count(), 0);
            let mut waiting = Box::pin(notify.wait_for(|| ready.get().then_some(())));
            assert!(futures_lite::future::poll_once(&mut waiting)
                .await
                .is_none());
            assert_eq!(notify.waiter_count(), 1);
            ready.set(true);
            notify.notify_all();
            assert!(futures_lite::future::poll_once(&mut waiting)
                .await
                .is_some());
            assert_eq!(notify.waiter_count(), 0);
        })
        .expect("executor ran");
    }
}
