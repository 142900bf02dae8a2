//! A shard-local lock granted strictly in the order it was asked for. glommio's `Semaphore`
//! lets a newcomer take units released to a woken waiter before that waiter runs, so two
//! requests pipelined on one connection could append to a partition in the wrong order; a
//! ticket taken synchronously at the call keeps arrival order. A ticket dropped before its
//! turn (its task cancelled) is skipped, never waited for.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::task::{Poll, Waker};

/// Only the ticket whose turn comes is woken, not every waiter: a partition with hundreds of
/// pipelined requests queued would otherwise poll them all on every append.
#[derive(Default)]
pub struct FifoLock {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    next_ticket: u64,
    serving: u64,
    /// Tickets whose holders went away before their turn; bounded by the waiting tasks.
    abandoned: BTreeSet<u64>,
    /// The waker of each ticket that has been polled and waits.
    wakers: BTreeMap<u64, Waker>,
}

/// Held while it is this ticket's turn; the next ticket's turn starts when it is dropped.
pub struct FifoGuard<'a> {
    lock: &'a FifoLock,
}

/// A place in the queue: dropped before its turn, it is skipped.
struct Ticket<'a> {
    lock: &'a FifoLock,
    number: u64,
    granted: Cell<bool>,
}

impl FifoLock {
    /// Waits for every earlier caller to be done. The place in line is taken when this is
    /// called, not when the future is first polled.
    pub fn lock(&self) -> impl std::future::Future<Output = FifoGuard<'_>> + '_ {
        let number = {
            let mut state = self.state.borrow_mut();
            let number = state.next_ticket;
            state.next_ticket += 1;
            number
        };
        let ticket = Ticket {
            lock: self,
            number,
            granted: Cell::new(false),
        };
        async move {
            std::future::poll_fn(|cx| {
                let mut state = self.state.borrow_mut();
                if state.serving == ticket.number {
                    return Poll::Ready(());
                }
                state.wakers.insert(ticket.number, cx.waker().clone());
                Poll::Pending
            })
            .await;
            ticket.granted.set(true);
            FifoGuard { lock: self }
        }
    }

    fn advance(&self) {
        let next = {
            let mut state = self.state.borrow_mut();
            state.serving += 1;
            loop {
                let serving = state.serving;
                if !state.abandoned.remove(&serving) {
                    break;
                }
                state.serving += 1;
            }
            let serving = state.serving;
            state.wakers.remove(&serving)
        };
        if let Some(waker) = next {
            waker.wake();
        }
    }
}

impl Drop for FifoGuard<'_> {
    fn drop(&mut self) {
        self.lock.advance();
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.granted.get() {
            return; // the guard releases the turn
        }
        let now_serving = {
            let mut state = self.lock.state.borrow_mut();
            state.wakers.remove(&self.number);
            state.serving == self.number
        };
        if now_serving {
            self.lock.advance();
        } else {
            self.lock.state.borrow_mut().abandoned.insert(self.number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::poll_once;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        crate::runtime::run_on_executor("fifo-lock-test", f).unwrap();
    }

    #[test]
    fn turns_follow_the_order_of_the_calls_even_when_a_later_caller_polls_first() {
        run(|| async {
            let lock = FifoLock::default();
            let first = lock.lock();
            let second = lock.lock();
            let mut third = Box::pin(lock.lock());
            assert!(poll_once(&mut third).await.is_none(), "the third waits");
            let guard = first.await;
            drop(guard);
            // The turn is the second's although it has not asked yet: the third, polled
            // again first, still waits.
            assert!(poll_once(&mut third).await.is_none(), "no overtaking");
            drop(second.await);
            let _guard = third.await;
        });
    }

    #[test]
    fn a_ticket_dropped_before_its_turn_is_skipped() {
        run(|| async {
            let lock = FifoLock::default();
            let first = lock.lock();
            let abandoned = lock.lock();
            let third = lock.lock();
            let guard = first.await;
            drop(abandoned);
            drop(guard);
            let _guard = third.await;
            // And a ticket dropped exactly at its turn passes the turn on.
            let dropped_at_turn = lock.lock();
            let last = lock.lock();
            drop(_guard);
            drop(dropped_at_turn);
            let _last = last.await;
        });
    }

    #[test]
    fn a_waiting_task_is_woken_when_its_turn_comes() {
        run(|| async {
            let lock = std::rc::Rc::new(FifoLock::default());
            let done = std::rc::Rc::new(Cell::new(false));
            let guard = lock.lock().await;
            let waiter = {
                let (lock, done) = (std::rc::Rc::clone(&lock), std::rc::Rc::clone(&done));
                crate::runtime::spawn_local(async move {
                    let _guard = lock.lock().await;
                    done.set(true);
                })
            };
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert!(!done.get(), "waits while the lock is held");
            drop(guard);
            // A lost wake-up would hang here; the bound turns it into a failure.
            glommio::timer::timeout(std::time::Duration::from_secs(10), async {
                waiter.await;
                Ok(())
            })
            .await
            .expect("the waiter is woken");
            assert!(done.get());
        });
    }
}
