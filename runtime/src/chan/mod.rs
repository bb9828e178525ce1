//! Channels: Go's `chan T`, built on [`park`](crate::park())/[`ready`](crate::ready()).
//!
//! ```ignore
//! let (tx, rx) = gort::chan::chan::<u32>(0); // unbuffered: a rendezvous
//! // SAFETY: the goroutine holds only its `Sender` (Send), and no thread-local.
//! unsafe { gort::go!(move || tx.send(42).unwrap()) };
//! assert_eq!(rx.recv(), Some(42));
//! ```
//!
//! A blocked sender or receiver parks its goroutine (or blocks its plain OS thread) with Go's
//! wait reason (`chan send`, `chan receive`, `select`), so it costs no thread and shows in every
//! goroutine dump. The model is Go's `src/runtime/chan.go`; the differences are Rust's:
//!
//! * Sending on a closed channel returns [`SendError`] with the value (Go panics).
//! * Closing is [`Sender::close`], or implicit when the last [`Sender`] is dropped. Closing twice
//!   is harmless: the second close does nothing and returns `false` (Go panics).
//! * Receiving yields `Option<T>`: `None` once the channel is closed and drained (Go's
//!   `v, ok := <-ch`). Dropping every [`Receiver`] does not close anything: senders then block
//!   forever, as in Go (a goroutine leak the goroutine profile shows).
//! * There are no nil channels as values; [`nil`] makes a pair whose operations block forever
//!   (with Go's `(nil chan)` wait reasons) and whose `select!` arms are never ready.
//!
//! # Directions (Go's `chan<- T` and `<-chan T`)
//!
//! A [`Sender`] can only send and close, a [`Receiver`] only receive; the compiler enforces it,
//! as Go's compiler does (`test/chan/perm.go`):
//!
//! ```compile_fail,E0599
//! let (tx, _rx) = gort_runtime::chan::chan::<i32>(1);
//! tx.recv(); // no receive on a send-only channel
//! ```
//! ```compile_fail,E0599
//! let (_tx, rx) = gort_runtime::chan::chan::<i32>(1);
//! rx.send(1); // no send on a receive-only channel
//! ```
//! ```compile_fail,E0599
//! let (_tx, rx) = gort_runtime::chan::chan::<i32>(1);
//! rx.close(); // only a sender closes
//! ```
//! ```compile_fail,E0308
//! let (_tx, rx) = gort_runtime::chan::chan::<i32>(1);
//! gort_runtime::select! { rx.send(1) => {} } // nor in a select
//! ```
//! ```compile_fail,E0277
//! // Values must be `Send` to cross goroutines: an `Rc` channel cannot be shared.
//! let (tx, _rx) = gort_runtime::chan::chan::<std::rc::Rc<i32>>(1);
//! // SAFETY: the goroutine only drops its sender (it would not compile anyway).
//! unsafe { gort_runtime::spawn(move || drop(tx)) };
//! ```
//!
//! # Invariants (Go's, from `chan.go`)
//!
//! With the channel lock held:
//!
//! * At least one of `sendq` and `recvq` is empty, except for a single goroutine blocked in a
//!   `select!` that both sends to and receives from this channel (its own two nodes cannot
//!   match each other: nobody matches while it is parked but other goroutines).
//! * Buffered channels: if the buffer holds anything, `recvq` is empty; if the buffer has room,
//!   `sendq` is empty. Unbuffered: the buffer is empty, except for values given back by dropped
//!   async receives (`future.rs`, "Cancellation"), and then `recvq` is empty too.
//! * Once `closed`, both queues are empty and stay so: close wakes every waiter, and no one
//!   queues on a closed channel.
//!
//! A blocked operation is a `queue::Node` on the blocked goroutine's stack; `queue.rs` states
//! the protocol that keeps those nodes valid and wakes each waiter exactly once.
//!
//! # Async tasks
//!
//! [`Receiver::recv_async`] and [`Sender::send_async`] return futures for async code (a Tokio
//! task, say): the task waits in the same queues as goroutines, FIFO with them, and is woken
//! through its `Waker`. Dropping a waiting future withdraws it without losing a value.
//!
//! # Direct handoff
//!
//! A send that finds a receiver waiting writes the value straight into the receiver's node and
//! readies it (into the current P's `runnext`, so it runs next); a receive that finds a sender
//! waiting takes its value (unbuffered) or the buffer head while moving the sender's value to the
//! buffer tail (full buffer), keeping FIFO order.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod error;
mod future;
mod hchan;
pub(crate) mod queue;
#[doc(hidden)]
pub mod select;
mod select_macro;
mod time;

pub use self::error::{RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
pub use self::future::{RecvFuture, SendFuture};
pub(crate) use self::hchan::{block_forever, deadline_after, Chan, Recv};
pub use self::time::{after, tick};

/// Creates a channel of capacity `cap` (`make(chan T, cap)`); `cap == 0` is unbuffered: a send
/// completes only when a receiver takes the value.
pub fn chan<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let c = Arc::new(Chan::new(cap, false));
    (Sender { c: c.clone() }, Receiver { c })
}

/// A channel pair standing for Go's nil channel: sends and receives block forever (wait reasons
/// `chan send (nil chan)` / `chan receive (nil chan)`), `try_*` never succeed, `select!` arms on
/// it are never ready, and `close` does nothing (Go panics).
pub fn nil<T>() -> (Sender<T>, Receiver<T>) {
    let c = Arc::new(Chan::new(0, true));
    (Sender { c: c.clone() }, Receiver { c })
}

/// The sending half (`chan<- T`). Cloneable; the channel closes when the last one is dropped.
pub struct Sender<T> {
    pub(crate) c: Arc<Chan<T>>,
}

/// The receiving half (`<-chan T`). Cloneable (many receivers share the values); `for v in rx`
/// is Go's `for v := range ch`.
pub struct Receiver<T> {
    pub(crate) c: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends `v`, blocking (parking the goroutine, or blocking the thread) until a receiver takes
    /// it (unbuffered) or there is buffer room. On a closed channel returns the value in
    /// [`SendError`] (Go panics instead).
    #[inline(always)]
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.c.send(v, None).map_err(|e| SendError(e.into_inner()))
    }

    /// Sends without blocking: [`TrySendError::Full`] if no receiver is waiting and the buffer
    /// is full (or unbuffered).
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        let c = &*self.c;
        if c.nil {
            return Err(TrySendError::Full(v));
        }
        c.core.lock.lock();
        // SAFETY: lock held.
        if unsafe { c.core.state() }.closed {
            // SAFETY: taken above.
            unsafe { c.core.lock.unlock() };
            return Err(TrySendError::Closed(v));
        }
        // SAFETY: lock held, open.
        let r = unsafe { c.send_locked(v) };
        // SAFETY: taken above.
        unsafe { c.core.lock.unlock() };
        match r {
            Ok(g) => {
                if let Some(g) = g {
                    // SAFETY: `send_locked` claimed this receiver from the recvq: queue
                    // invariant 3 makes us its one claimer, and invariant 4 says it committed its
                    // park: this is the one wake-up for that wait.
                    unsafe { g.wake() };
                }
                Ok(())
            }
            Err(v) => Err(TrySendError::Full(v)),
        }
    }

    /// Sends, giving up after `d`.
    pub fn send_timeout(&self, v: T, d: Duration) -> Result<(), SendTimeoutError<T>> {
        match self.try_send(v) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(v)) => Err(SendTimeoutError::Closed(v)),
            Err(TrySendError::Full(v)) => self.c.send(v, Some(deadline_after(d))),
        }
    }

    /// Closes the channel: receivers drain the buffer, then get `None`; blocked and later sends
    /// fail with [`SendError`]. Returns `false` (and does nothing) if it was already closed:
    /// closing twice is harmless (Go panics).
    pub fn close(&self) -> bool {
        self.c.close()
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.c.is_closed()
    }

    /// Number of buffered values (`len(ch)`).
    pub fn len(&self) -> usize {
        self.c.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity (`cap(ch)`).
    pub fn capacity(&self) -> usize {
        self.c.cap
    }

    /// Whether both handles are for the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.c, &other.c)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: a new handle is made from a live one, so the count cannot reach 0 meanwhile.
        self.c.senders.fetch_add(1, Ordering::Relaxed);
        Sender { c: self.c.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: the last dropper must see every other sender's prior operations before it
        // closes (pairs with the other droppers' Release decrement).
        if self.c.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.c.close();
        }
    }
}

impl<T> Receiver<T> {
    /// Receives, blocking until a value arrives; `None` once the channel is closed and drained
    /// (`v, ok := <-ch` with `ok == false`).
    #[inline(always)]
    pub fn recv(&self) -> Option<T> {
        self.c.recv(None).ok()
    }

    /// Receives without blocking.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let c = &*self.c;
        if c.nil {
            return Err(TryRecvError::Empty);
        }
        c.core.lock.lock();
        // SAFETY: lock held.
        let r = unsafe { c.recv_locked() };
        // SAFETY: taken above.
        unsafe { c.core.lock.unlock() };
        match r {
            Recv::Value(v, g) => {
                if let Some(g) = g {
                    // SAFETY: `recv_locked` claimed this sender from the sendq: queue invariant 3
                    // makes us its one claimer, and invariant 4 says it committed its park: this
                    // is the one wake-up for that wait.
                    unsafe { g.wake() };
                }
                Ok(v)
            }
            Recv::Closed => Err(TryRecvError::Closed),
            Recv::Empty => Err(TryRecvError::Empty),
        }
    }

    /// Receives, giving up after `d`.
    pub fn recv_timeout(&self, d: Duration) -> Result<T, RecvTimeoutError> {
        match self.try_recv() {
            Ok(v) => Ok(v),
            Err(TryRecvError::Closed) => Err(RecvTimeoutError::Closed),
            Err(TryRecvError::Empty) => self.c.recv(Some(deadline_after(d))),
        }
    }

    /// A blocking iterator over received values, ending when the channel is closed and drained.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the values available right now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Whether the channel is closed (values may still be buffered).
    pub fn is_closed(&self) -> bool {
        self.c.is_closed()
    }

    /// Number of buffered values (`len(ch)`).
    pub fn len(&self) -> usize {
        self.c.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity (`cap(ch)`).
    pub fn capacity(&self) -> usize {
        self.c.cap
    }

    /// Whether both handles are for the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.c, &other.c)
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver { c: self.c.clone() }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("cap", &self.c.cap).finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("cap", &self.c.cap).finish_non_exhaustive()
    }
}

/// Blocking iterator from [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    #[inline(always)]
    fn next(&mut self) -> Option<T> {
        self.rx.recv()
    }
}

/// Non-blocking iterator from [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator (`for v in rx`).
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    #[inline(always)]
    fn next(&mut self) -> Option<T> {
        self.rx.recv()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
