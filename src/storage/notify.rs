//! A shard-local wake-all signal: tasks wait until a condition on shard state holds, and whoever
//! changes that state calls `notify_all`. Single-threaded; never crosses shards.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    // One entry per waiting task; a waiting task is an in-flight request or the flusher, both
    // bounded upstream.
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    pub fn notify_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
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
        }
    }
}

pub struct WaitFor<'a, F> {
    notify: &'a Notify,
    ready: F,
}

impl<T, F> Future for WaitFor<'_, F>
where
    F: FnMut() -> Option<T> + Unpin,
{
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(value) = (self.ready)() {
            return Poll::Ready(value);
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
