//! Channel operations as futures: [`Receiver::recv_async`] and [`Sender::send_async`], for
//! async tasks (a Tokio task, any executor) talking to goroutines.
//!
//! # Design
//!
//! An async waiter is a goroutine waiter with a `Waker` where the G would be (`queue.rs`, "Async
//! waiters"): the future holds a [`TaskWaiter`] and a [`Node`] and, when it must wait, links the
//! node into the same `recvq`/`sendq` goroutines use, under the same lock. So async and goroutine
//! waiters are served in one FIFO, a sender hands a value to an async receiver's slot exactly as
//! to a goroutine's (Go's `sudog` handoff), and `select!`, `close` and timeouts meet async nodes
//! only through the claim protocol they already follow. A claimer moves the `Waker` out under
//! the lock and wakes it after unlocking; nothing spins and no thread waits.
//!
//! The futures are `!Unpin`: the queued node is inside them, and the pinning guarantee (drop
//! runs before the memory is reused) is what keeps invariant 2 of `queue.rs`: `Drop` takes the
//! lock and unlinks. Every access to the node and the waker is made under the channel lock
//! through shared references (all the fields a claimer touches are cells).
//!
//! # Cancellation (dropping a pending future)
//!
//! Under the channel lock the node is in one of three states, and drop handles each:
//!
//! 1. **Still queued, unclaimed**: unlinked. Nothing happened; a send's value is dropped with the
//!    future, as if the send had never been made.
//! 2. **Claimed with a value** (a receive: a sender already handed it over, but the task has not
//!    been polled since): the value is not lost. It goes back into the channel as the *oldest*
//!    value: to the first goroutine or task still waiting to receive if there is one (the buffer
//!    is then empty, so it is next in line anyway), else to the front of the buffer. The buffer
//!    may so hold more than `cap` values (one per such drop), even on an unbuffered channel, until
//!    receivers take them; `len()` counts them, senders block while the buffer is full or over,
//!    and a receive takes them before any blocked sender's value (their senders sent first). A
//!    channel closed meanwhile keeps them for receivers to drain, as any buffered value.
//!    A completed send (claimed with success) needs nothing: the receiver has the value.
//! 3. **Claimed by `close`**: nothing to undo; a send's value is dropped with the future.
//!
//! A receive that completes at its first poll (a value ready) never queues, so dropping it after
//! `Ready` has nothing to give back: the caller owns the value.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::hchan::{Chan, Recv};
use super::queue::{Node, TaskWaiter, Wakee, WAITING};
use super::{Receiver, SendError, Sender};

/// Not polled yet (or polled only while the channel was nil): not queued.
const IDLE: u8 = 0;
/// The node is (or was, until a claimer unlinked it) in a wait queue.
const QUEUED: u8 = 1;
/// `Ready` returned.
const DONE: u8 = 2;

/// The waiter, node and progress of one async operation.
struct AsyncOp<T> {
    waiter: TaskWaiter,
    node: Node<T>,
    /// [`IDLE`], [`QUEUED`] or [`DONE`]; touched only by the owner.
    state: Cell<u8>,
}

impl<T> AsyncOp<T> {
    fn new(value: Option<T>) -> AsyncOp<T> {
        AsyncOp { waiter: TaskWaiter::new(), node: Node::new(value), state: Cell::new(IDLE) }
    }

    /// Queues the node on `recvq` (or `sendq`) with `waker`.
    ///
    /// # Safety
    /// The channel lock is held, the node is not queued, and `self` stays put until it is
    /// unlinked (pinned, with a `Drop` that unlinks under the lock).
    unsafe fn enqueue(&self, c: &Chan<T>, waker: &Waker, recv: bool) {
        // SAFETY: not queued: the waker is ours.
        let old = unsafe { self.waiter.set_waker(waker) };
        debug_assert!(old.is_none());
        self.node.bind(&self.waiter.w, 0);
        // SAFETY: lock held (caller).
        let st = unsafe { c.core.state() };
        let q = if recv { &mut st.recvq } else { &mut st.sendq };
        // SAFETY: lock held; the node stays valid while queued (caller).
        unsafe { q.push_back(&self.node.hdr) };
        self.state.set(QUEUED);
    }

    /// While queued: `true` if a claimer has taken the waiter (the outcome is in the node),
    /// else refreshes the stored waker and returns `false`. Takes and releases the lock.
    fn claimed(&self, c: &Chan<T>, waker: &Waker) -> bool {
        c.core.lock.lock();
        // A claim is made under this lock, so the verdict is settled while we hold it.
        let done = self.waiter.w.verdict() != WAITING;
        let old = if done {
            None
        } else {
            // SAFETY: lock held.
            unsafe { self.waiter.set_waker(waker) }
        };
        // SAFETY: taken above.
        unsafe { c.core.lock.unlock() };
        drop(old);
        done
    }
}

/// The future of [`Receiver::recv_async`]: resolves to what [`Receiver::recv`] returns.
///
/// Dropping it while it waits withdraws the receive; a value a sender handed to it in the
/// meantime goes back into the channel (module docs of `chan::future`, "Cancellation").
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    c: &'a Chan<T>,
    op: AsyncOp<T>,
    _pin: PhantomPinned,
}

/// The future of [`Sender::send_async`]: resolves to what [`Sender::send`] returns.
///
/// Dropping it while it waits withdraws the send (the value is dropped with it).
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    c: &'a Chan<T>,
    op: AsyncOp<T>,
    _pin: PhantomPinned,
}

// SAFETY: the raw pointers inside (node to waiter) point into the future itself; the node and
// the waker are touched by other threads only under the channel lock, and values of `T` cross
// threads, hence `T: Send`. `&Self` exposes nothing (polling needs `Pin<&mut Self>`).
unsafe impl<T: Send> Send for RecvFuture<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for RecvFuture<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SendFuture<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SendFuture<'_, T> {}

impl<T> Receiver<T> {
    /// Receives from an async task: the future resolves to what [`recv`](Receiver::recv)
    /// returns, `None` once the channel is closed and drained. The task waits in the same FIFO
    /// as goroutines receiving on this channel, without blocking its thread.
    ///
    /// Cancel-safe: dropping the future before it resolves loses no value (see
    /// [`RecvFuture`]). Polling it after it resolved panics.
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture { c: &self.c, op: AsyncOp::new(None), _pin: PhantomPinned }
    }
}

impl<T> Sender<T> {
    /// Sends from an async task: the future resolves to what [`send`](Sender::send) returns
    /// (the value back in [`SendError`] if the channel is or gets closed). The task waits in the
    /// same FIFO as goroutines sending on this channel, without blocking its thread.
    ///
    /// Dropping the future before it resolves withdraws the send; the value is dropped with it.
    /// Polling it after it resolved panics.
    pub fn send_async(&self, v: T) -> SendFuture<'_, T> {
        SendFuture { c: &self.c, op: AsyncOp::new(Some(v)), _pin: PhantomPinned }
    }
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // Shared access only: other threads reach the node through raw pointers.
        let this = self.into_ref().get_ref();
        let (c, op) = (this.c, &this.op);
        if c.nil {
            // Go's nil channel: never ready, and nothing will ever wake us.
            return Poll::Pending;
        }
        match op.state.get() {
            IDLE => {
                c.core.lock.lock();
                // SAFETY: lock held.
                let r = match unsafe { c.recv_locked() } {
                    Recv::Value(v, g) => Some((Some(v), g)),
                    Recv::Closed => Some((None, None)),
                    Recv::Empty => {
                        // SAFETY: lock held; not queued; `this` is pinned and unlinks on drop.
                        unsafe { op.enqueue(c, cx.waker(), true) };
                        None
                    }
                };
                // SAFETY: taken above.
                unsafe { c.core.lock.unlock() };
                match r {
                    None => Poll::Pending,
                    Some((v, g)) => {
                        op.state.set(DONE);
                        if let Some(g) = g {
                            // SAFETY: `recv_locked` claimed this sender from the sendq: we are its
                            // one claimer (queue invariant 3), and it is parked or a task
                            // (invariant 4): this is the one wake-up for that wait.
                            unsafe { g.wake() };
                        }
                        Poll::Ready(v)
                    }
                }
            }
            QUEUED => {
                if !op.claimed(c, cx.waker()) {
                    return Poll::Pending;
                }
                op.state.set(DONE);
                Poll::Ready(if op.node.hdr.success.get() {
                    // SAFETY: claimed and unlinked; the claimer wrote the slot under the lock we
                    // took after it, and nobody references the node any more.
                    Some(unsafe { op.node.take() }.expect("gort: woken async receiver without a value"))
                } else {
                    None
                })
            }
            _ => panic!("gort: RecvFuture polled after it resolved"),
        }
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        let (c, op) = (self.c, &self.op);
        if op.state.get() != QUEUED {
            return;
        }
        c.core.lock.lock();
        // SAFETY: lock held.
        let st = unsafe { c.core.state() };
        let mut wake = None;
        if op.waiter.w.verdict() == WAITING {
            // 1. Unclaimed, so still linked (a claim is made under this lock): withdraw.
            // SAFETY: lock held; the node is queued on this channel's recvq.
            unsafe { st.recvq.remove(&op.node.hdr) };
        } else if op.node.hdr.success.get() {
            // 2. A sender handed us a value we never returned: back into the channel, in front.
            // SAFETY: claimed and unlinked: the slot is ours.
            let v = unsafe { op.node.take() }.expect("gort: claimed async receiver without a value");
            // SAFETY: lock held.
            if let Some(h) = unsafe { st.recvq.claim_front() } {
                // SAFETY: nodes in a Chan<T>'s queues are Node<T>s.
                let n = unsafe { Node::<T>::from_hdr(h) };
                // SAFETY: claimed just now and still waiting: its slot is ours.
                unsafe { n.put(v) };
                n.hdr.success.set(true);
                // SAFETY: lock held, claimed just now.
                wake = Some(unsafe { n.hdr.wakee() });
            } else {
                // SAFETY: lock held.
                unsafe { c.buf() }.push_front(v);
            }
        }
        // SAFETY: unlinked or claimed: nobody else reaches the waker now.
        let waker = unsafe { op.waiter.take_waker() };
        // SAFETY: taken above.
        unsafe { c.core.lock.unlock() };
        drop(waker);
        if let Some(w) = wake {
            // SAFETY: `claim_front` made us that receiver's one claimer (queue invariant 3): the
            // one wake-up for its wait.
            unsafe { w.wake() };
        }
    }
}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.into_ref().get_ref();
        let (c, op) = (this.c, &this.op);
        if c.nil {
            return Poll::Pending;
        }
        match op.state.get() {
            IDLE => {
                // SAFETY: not queued: the slot is ours.
                let v = unsafe { op.node.take() }.expect("gort: async send without a value");
                c.core.lock.lock();
                // SAFETY: lock held.
                let r: Option<Result<Option<Wakee>, T>> = if unsafe { c.core.state() }.closed {
                    Some(Err(v))
                } else {
                    // SAFETY: lock held, open.
                    match unsafe { c.send_locked(v) } {
                        Ok(g) => Some(Ok(g)),
                        Err(v) => {
                            // SAFETY: not queued yet: the slot is ours.
                            unsafe { op.node.put(v) };
                            // SAFETY: lock held; not queued; `this` is pinned and unlinks on drop.
                            unsafe { op.enqueue(c, cx.waker(), false) };
                            None
                        }
                    }
                };
                // SAFETY: taken above.
                unsafe { c.core.lock.unlock() };
                match r {
                    None => Poll::Pending,
                    Some(r) => {
                        op.state.set(DONE);
                        Poll::Ready(match r {
                            Ok(g) => {
                                if let Some(g) = g {
                                    // SAFETY: `send_locked` claimed this receiver from the recvq:
                                    // we are its one claimer (queue invariant 3): the one
                                    // wake-up for its wait.
                                    unsafe { g.wake() };
                                }
                                Ok(())
                            }
                            Err(v) => Err(SendError(v)),
                        })
                    }
                }
            }
            QUEUED => {
                if !op.claimed(c, cx.waker()) {
                    return Poll::Pending;
                }
                op.state.set(DONE);
                Poll::Ready(if op.node.hdr.success.get() {
                    Ok(())
                } else {
                    // SAFETY: claimed by close and unlinked: the value is still ours.
                    Err(SendError(unsafe { op.node.take() }.expect("gort: lost async send value")))
                })
            }
            _ => panic!("gort: SendFuture polled after it resolved"),
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        let (c, op) = (self.c, &self.op);
        if op.state.get() != QUEUED {
            return;
        }
        c.core.lock.lock();
        if op.waiter.w.verdict() == WAITING {
            // Unclaimed, so still linked: withdraw (the value drops with the node).
            // SAFETY: lock held; the node is queued on this channel's sendq.
            unsafe { c.core.state().sendq.remove(&op.node.hdr) };
        }
        // SAFETY: unlinked or claimed: nobody else reaches the waker now.
        let waker = unsafe { op.waiter.take_waker() };
        // SAFETY: taken above.
        unsafe { c.core.lock.unlock() };
        drop(waker);
    }
}

impl<T> std::fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture").field("cap", &self.c.cap).finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture").field("cap", &self.c.cap).finish_non_exhaustive()
    }
}
