//! Task wakers that other shards may hold without ever dropping glommio's.
//!
//! A shard task's waker travels to other threads: every mesh reply comes back through a oneshot
//! that the owning shard completes, and completing it wakes and drops the waiting task's waker
//! on that shard's thread. glommio 0.9 lets a foreign thread wake its task wakers, but dropping
//! one there is a race (`drop_waker` in its `src/task/raw.rs`): the foreign thread counts the
//! reference down to zero and only afterwards takes a new one to send the waker home; if the
//! task has completed and its `JoinHandle` is dropped at home in between, the handle sees no
//! references left and frees the task, and the foreign thread then revives and queues a waker to
//! freed memory, which the home thread later frees a second time. That window is a few
//! instructions wide, so it takes a preempted shard thread on a loaded machine to hit it.
//!
//! [`StayHome`] closes it from ringlog's side: it runs at the root of every task and hands the
//! future below it a waker of its own, an `Arc` that any thread may clone, wake and drop. Waking
//! it wakes glommio's waker by reference, which glommio supports from any thread; glommio's
//! waker itself is only ever dropped on the task's own thread, when the task's future is.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, ThreadId};

/// Spawns `future` as a task of the current shard, below a [`StayHome`]. Every task of the
/// broker is spawned here, never with `glommio::spawn_local` (clippy's `disallowed-methods`).
#[allow(clippy::disallowed_methods)]
pub fn spawn_local<T: 'static>(future: impl Future<Output = T> + 'static) -> glommio::Task<T> {
    glommio::spawn_local(StayHome::new(future))
}

/// Polls a future with a waker that may be woken and dropped on any thread, while the waker of
/// the task it runs in is woken only by reference elsewhere and dropped only at home.
pub struct StayHome<F> {
    future: F,
    shared: Arc<HomeWaker>,
    waker: Waker,
}

impl<F> StayHome<F> {
    pub fn new(future: F) -> Self {
        let shared = Arc::new(HomeWaker {
            home: thread::current().id(),
            task: Mutex::new(None),
        });
        let waker = Waker::from(Arc::clone(&shared));
        StayHome {
            future,
            shared,
            waker,
        }
    }
}

impl<F: Future> Future for StayHome<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned: it is never moved out of `self` and only
        // ever used pinned; the other fields are not pinned and are only read here.
        let this = unsafe { self.get_unchecked_mut() };
        debug_assert_eq!(this.shared.home, thread::current().id());
        {
            let mut task = this.shared.lock();
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                // The waker it replaces is dropped here, on the home thread.
                let _replaced = task.replace(cx.waker().clone());
            }
        }
        let mut inner_cx = Context::from_waker(&this.waker);
        // SAFETY: see above; `this.future` stays where it is until `self` is dropped.
        unsafe { Pin::new_unchecked(&mut this.future) }.poll(&mut inner_cx)
    }
}

impl<F> Drop for StayHome<F> {
    fn drop(&mut self) {
        // Futures are dropped on their own thread; taking the task's waker out here means that
        // whoever drops the last `Arc` elsewhere finds nothing of glommio's to drop.
        let task = self.shared.lock().take();
        drop(task);
    }
}

struct HomeWaker {
    home: ThreadId,
    task: Mutex<Option<Waker>>,
}

impl HomeWaker {
    /// The lock is held only to clone, compare, take or wake by reference: never across a
    /// poll, never long enough for a shard to notice.
    fn lock(&self) -> MutexGuard<'_, Option<Waker>> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for HomeWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(task) = self.lock().as_ref() {
            task.wake_by_ref();
        }
    }
}

impl Drop for HomeWaker {
    fn drop(&mut self) {
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if thread::current().id() == self.home {
                drop(task);
            } else {
                // Only a `StayHome` that was never dropped (its executor gone with the task
                // still in it) leaves a waker here; dropping it on this thread is the race
                // this module exists to avoid, so it is leaked with the task it belongs to.
                mem::forget(task);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A task waker that records where it is woken by value and where its clones are dropped.
    struct Recorder {
        home: ThreadId,
        dropped_elsewhere: AtomicUsize,
        wakes: AtomicUsize,
    }

    struct Recorded(Arc<Recorder>);

    impl Drop for Recorded {
        fn drop(&mut self) {
            if thread::current().id() != self.0.home {
                self.0.dropped_elsewhere.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl Wake for Recorded {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.wakes.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn recorder() -> (Arc<Recorder>, Waker) {
        let recorder = Arc::new(Recorder {
            home: thread::current().id(),
            dropped_elsewhere: AtomicUsize::new(0),
            wakes: AtomicUsize::new(0),
        });
        let waker = Waker::from(Arc::new(Recorded(Arc::clone(&recorder))));
        (recorder, waker)
    }

    /// A mesh call as the waiting shard sees it: a oneshot that another thread completes.
    /// Awaited bare, the other thread wakes the task's waker by value and drops it there (the
    /// glommio race); below `StayHome` the task's waker never leaves this thread.
    fn reply_from_another_thread(stay_home: bool) -> (usize, usize) {
        let (recorder, task_waker) = recorder();
        let (reply, answer) = futures_channel::oneshot::channel::<u32>();
        let mut waiting: Pin<Box<dyn Future<Output = Result<u32, _>>>> = if stay_home {
            Box::pin(StayHome::new(answer))
        } else {
            Box::pin(answer)
        };
        let mut cx = Context::from_waker(&task_waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        drop(task_waker);
        thread::spawn(move || reply.send(7).expect("the receiver waits"))
            .join()
            .expect("the replying thread");
        let mut cx = Context::from_waker(Waker::noop());
        // The task's waker registered first was woken; this poll collects the answer.
        assert!(matches!(waiting.as_mut().poll(&mut cx), Poll::Ready(Ok(7))));
        drop(waiting);
        (
            recorder.wakes.load(Ordering::SeqCst),
            recorder.dropped_elsewhere.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn a_bare_oneshot_drops_the_task_waker_on_the_replying_thread() {
        let (wakes, dropped_elsewhere) = reply_from_another_thread(false);
        assert_eq!(wakes, 1);
        assert_eq!(dropped_elsewhere, 1, "the pattern StayHome guards against");
    }

    #[test]
    fn below_stay_home_the_task_waker_is_woken_elsewhere_but_dropped_at_home() {
        let (wakes, dropped_elsewhere) = reply_from_another_thread(true);
        assert_eq!(wakes, 1);
        assert_eq!(dropped_elsewhere, 0);
    }

    #[test]
    fn a_changed_task_waker_replaces_the_old_one_at_home() {
        let (first, first_waker) = recorder();
        let (second, second_waker) = recorder();
        let (reply, answer) = futures_channel::oneshot::channel::<()>();
        let mut waiting = Box::pin(StayHome::new(answer));
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending());
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending());
        thread::spawn(move || reply.send(()).expect("the receiver waits"))
            .join()
            .expect("the replying thread");
        assert_eq!(first.wakes.load(Ordering::SeqCst), 0);
        assert_eq!(second.wakes.load(Ordering::SeqCst), 1);
        drop(waiting);
        drop((first_waker, second_waker));
        assert_eq!(first.dropped_elsewhere.load(Ordering::SeqCst), 0);
        assert_eq!(second.dropped_elsewhere.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_waker_outliving_its_task_elsewhere_drops_nothing_of_the_task() {
        let (recorder, task_waker) = recorder();
        let (reply, answer) = futures_channel::oneshot::channel::<()>();
        let mut waiting = Box::pin(StayHome::new(answer));
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(&task_waker))
            .is_pending());
        // The task goes away (a timeout, a closed connection) before the other shard answers.
        drop(waiting);
        drop(task_waker);
        thread::spawn(move || drop(reply))
            .join()
            .expect("the replying thread");
        assert_eq!(recorder.wakes.load(Ordering::SeqCst), 0);
        assert_eq!(recorder.dropped_elsewhere.load(Ordering::SeqCst), 0);
    }
}
