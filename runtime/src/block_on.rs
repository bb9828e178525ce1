//! `block_on`: a future run to completion on the calling goroutine, which parks (freeing its
//! thread) while the future is pending; the bridge from goroutines to async Rust.
//!
//! # The state word
//!
//! One [`Parker`](crate::sync::Parker) per call: its `Arc`'d word is the whole state, and the
//! future's [`Waker`](std::task::Waker) is that word's unparker (`Parker::waker`). The pair is
//! a spare from an earlier call (`WakerParker` in `parker.rs`), so a typical call allocates
//! nothing: on a goroutine its own, reused even if a clone of the waker lived on, reset to
//! `EMPTY` before the first poll, and dropped when the goroutine exits; on a plain thread the
//! thread's, reused only if no clone of its waker lived on. Seen from here its values mean:
//!
//! | word        | meaning                                                                  |
//! |-------------|--------------------------------------------------------------------------|
//! | `EMPTY`     | idle or polling: no wake since the last poll began                      |
//! | `NOTIFIED`  | a wake arrived (during a poll, or after): poll again                     |
//! | a G pointer | parked: the future returned `Pending` and no wake has come since         |
//!
//! The loop is: poll; on `Pending`, `park_for(Future)`, which consumes a `NOTIFIED` at once or
//! parks (CAS `EMPTY` -> G pointer in the park commit) until a wake swaps the word to
//! `NOTIFIED` and readies the G. Then poll again.
//!
//! # Invariants
//!
//! 1. **No lost wake.** A wake is a swap to `NOTIFIED`; the park consumes the token before it
//!    could park (`take_token`) or fails its commit CAS on it, so a wake at any point after the
//!    poll began (in the poll itself, from another thread during it, between the poll and the
//!    park) leads to another poll.
//! 2. **The waker never names a goroutine by itself.** It holds the `Arc`'d word, never a G; a G
//!    pointer is in the word only while that G is parked on it (`parker.rs`, invariant 1), and
//!    the one wake that swaps it out readies it (invariant 2). So a wake that is late (after
//!    `block_on` returned, after the goroutine exited and its G was reused), duplicated, or from
//!    any thread only sets `NOTIFIED` in memory the `Arc` keeps alive.
//! 3. **A poll's panic leaves nothing behind.** The word is `EMPTY` or `NOTIFIED` while the
//!    future runs (never a G pointer), so unwinding out of a poll leaves wakers that can only
//!    set a token nobody reads. The panic is the goroutine's, like any panic in its code.
//! 4. **A late wake reaches no one else.** Only the goroutine that used a word uses it again,
//!    and only while it lives (the spare is its own and dies with it), so a late wake can
//!    reach only a later call of the same goroutine, where it is one spurious wake: one more
//!    poll, if it lands during that call (the reset before the first poll erases one that
//!    came before). It never reaches another goroutine, a new goroutine on the same G, or a
//!    plain thread's call (a plain thread reuses only words no waker clone outlived).
//!    The reset takes a token left in the word (`take_token`) while the owner runs: the word
//!    holds no G pointer then (`parker.rs` invariant 1), and a wake it takes cannot be the new
//!    call's, which has not polled yet, so with 1 no wake of the call's own is lost.
//!
//! The loom models at the bottom (`--cfg gort_loom`) run the real `block_on` against a future
//! woken from other threads before, during and after its polls, and twice, and a second call
//! on the first one's word while a stale waker of it fires (each loom thread keeps a spare as
//! a goroutine does); the lifetime halves of invariants 2 and 4 (a reused G) are not something
//! loom sees. The word's own protocol is modelled in `parker.rs`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use crate::loom::WaitReason;
use crate::parker::WakerParker;

/// Runs `fut` to completion on the calling goroutine and returns its output. While the future
/// is pending the goroutine parks (its thread runs other goroutines), shown in goroutine dumps
/// and profiles with the wait reason `future`; the future's [`Waker`](std::task::Waker) readies
/// it, and it polls again. On a plain OS thread the thread blocks instead.
///
/// The waker may be cloned, called several times, from any thread, and after `block_on` has
/// returned or the goroutine has exited. A wake that arrives while the future is being polled
/// (even from inside `poll`) is not lost: the future is polled again. A late wake (of a waker
/// kept from an earlier call) reaches at most a later `block_on` of the same goroutine, which
/// it may make poll its future once more than needed, as any spurious wake may; it never
/// reaches another goroutine, a new goroutine, or a call on a plain thread.
///
/// The future runs on the goroutine (its polls are the goroutine's code: its labels, its
/// stack, its panics, which propagate to whoever joins it). Runtime-agnostic futures work as
/// they are (`futures` channels, `async-channel`, timers with their own thread). Futures that
/// need a particular executor's reactor (Tokio's `net` and `time`) need its context on the
/// polling thread, which the `gort` crate's `tokio` feature provides.
///
/// `block_on` is a blocking operation in the sense of the crate's contract (the crate docs,
/// "The contract"): the goroutine may resume on another thread after any poll. So whatever the
/// future keeps across an `.await` that may return `Pending` is kept across a blocking
/// operation: no thread-bound values (an `Rc` from a thread-local, a `std` lock guard) there.
/// A goroutine honours that contract already (its spawn is `unsafe` on that condition, and the
/// future is its code); a plain thread never moves.
///
/// There is no executor here: the future's own spawned tasks (if it spawns any) run wherever
/// its executor runs them. Nested calls work (each parks its own goroutine), though from inside
/// a poll they block the outer future's whole poll.
// Never inlined: a goroutine waiting here shows `block_on` under its caller in dumps and
// profiles, and a release build without debug info has no inlined frames to show.
#[inline(never)]
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let lease = WakerParker::take();
    let mut cx = Context::from_waker(&lease.wp.waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            lease.give_back();
            return out;
        }
        lease.wp.parker.park_for(WaitReason::Future);
    }
}

/// loom models (`--cfg gort_loom`): the real `block_on` on a loom thread (its park follows
/// `park_thread`, see `crate::loom`) against a hand-made future whose waker slot other loom
/// threads wake. A lost wake is a park that never returns (loom reports the deadlock); a second
/// `ready` for one park panics.
#[cfg(all(test, gort_loom))]
mod loom_models {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use loom::sync::Mutex;

    use super::block_on;
    use crate::loom::{model, AtomicUsize, Ordering};

    /// A future that is ready once `count` reaches `need`; it registers its waker and then
    /// checks, as real futures do.
    struct Event {
        count: AtomicUsize,
        waker: Mutex<Option<Waker>>,
    }

    impl Event {
        fn new() -> Arc<Event> {
            Arc::new(Event { count: AtomicUsize::new(0), waker: Mutex::new(None) })
        }

        /// Bumps the count and wakes the registered waker (cloned: it stays registered, so a
        /// second signal wakes the same waker again).
        fn signal(&self) {
            // Release: pairs with the future's Acquire load.
            self.count.fetch_add(1, Ordering::Release);
            let w = self.waker.lock().unwrap().clone();
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    struct Wait(Arc<Event>, usize);

    impl Future for Wait {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
            // Acquire: pairs with signal's Release.
            let n = self.0.count.load(Ordering::Acquire);
            if n >= self.1 {
                Poll::Ready(n)
            } else {
                Poll::Pending
            }
        }
    }

    /// One wake from another thread, landing before, during or after any poll: `block_on`
    /// returns.
    #[test]
    fn wake_from_another_thread() {
        model(3, || {
            let ev = Event::new();
            let t = loom::thread::spawn({
                let ev = ev.clone();
                move || ev.signal()
            });
            assert_eq!(block_on(Wait(ev.clone(), 1)), 1);
            t.join().unwrap();
        });
    }

    /// Two signallers, both needed: each wakes once (so one wake may land while the other's
    /// poll runs, or after `block_on` returned); every wake is tolerated and the second is
    /// never lost. Then a late wake of the kept waker after `block_on` returned is a no-op.
    #[test]
    fn two_wakes_and_a_late_one() {
        model(2, || {
            let ev = Event::new();
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let ev = ev.clone();
                    loom::thread::spawn(move || ev.signal())
                })
                .collect();
            assert_eq!(block_on(Wait(ev.clone(), 2)), 2);
            for t in ts {
                t.join().unwrap();
            }
            let late = ev.waker.lock().unwrap().take().expect("a registered waker");
            late.wake_by_ref();
            late.wake();
        });
    }

    /// A second call on the first one's word (each loom thread keeps its spare, as a goroutine
    /// does) while a stale waker of the first call fires from another thread, racing the reset
    /// of the word and the second call's polls and park: the second call returns once its own
    /// event came (no wake of its own is lost to the reset), and the stale wake readies nobody
    /// not parked on the word (the model's `ready` panics on a G that is not parked).
    #[test]
    fn reuse_races_a_stale_wake() {
        model(2, || {
            let first = Event::new();
            first.signal();
            assert_eq!(block_on(Wait(first.clone(), 1)), 1);
            let stale = first.waker.lock().unwrap().take().expect("a registered waker");
            let ev = Event::new();
            let ts = [
                loom::thread::spawn({
                    let stale = stale.clone();
                    move || stale.wake()
                }),
                loom::thread::spawn({
                    let ev = ev.clone();
                    move || ev.signal()
                }),
            ];
            assert_eq!(block_on(Wait(ev.clone(), 1)), 1);
            for t in ts {
                t.join().unwrap();
            }
            let second = ev.waker.lock().unwrap().take().expect("a registered waker");
            assert!(second.will_wake(&stale), "the second call did not reuse the first one's word");
        });
    }

    /// A wake from inside the poll itself (the future wakes its own waker, then says pending):
    /// polled again, not parked forever.
    #[test]
    fn self_wake_repolls() {
        model(1, || {
            let polls = Arc::new(AtomicUsize::new(0));
            let p = polls.clone();
            let out = block_on(std::future::poll_fn(move |cx| {
                if p.fetch_add(1, Ordering::Relaxed) == 0 {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready(7)
                }
            }));
            assert_eq!(out, 7);
            assert_eq!(polls.load(Ordering::Relaxed), 2);
        });
    }
}
