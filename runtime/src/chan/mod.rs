//! Channels: Go's `chan T`, built on [`park`](crate::park)/[`ready`](crate::ready).
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
//!   `sendq` is empty. Unbuffered: the buffer is always empty.
//! * Once `closed`, both queues are empty and stay so: close wakes every waiter, and no one
//!   queues on a closed channel.
//!
//! A blocked operation is a [`queue::Node`] on the blocked goroutine's stack; `queue.rs` states
//! the protocol that keeps those nodes valid and wakes each waiter exactly once.
//!
//! # Direct handoff
//!
//! A send that finds a receiver waiting writes the value straight into the receiver's node and
//! readies it (into the current P's `runnext`, so it runs next); a receive that finds a sender
//! waiting takes its value (unbuffered) or the buffer head while moving the sender's value to the
//! buffer tail (full buffer), keeping FIFO order.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::g::{GRef, WaitReason};
use crate::park::{park, ready};
use crate::prof_hooks;

pub(crate) mod queue;
#[doc(hidden)]
pub mod select;
mod time;

pub use time::{after, tick};

use queue::{Core, Node, Waiter, TIMED_OUT};

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

/// The shared channel (Go's `hchan`).
pub(crate) struct Chan<T> {
    /// Lock, wait queues, closed flag.
    pub(crate) core: Core,
    /// Buffered values, FIFO. Guarded by `core.lock`.
    buf: std::cell::UnsafeCell<VecDeque<T>>,
    /// Capacity; 0 = unbuffered.
    cap: usize,
    /// Live `Sender`s; the last one to go closes the channel.
    senders: AtomicUsize,
    /// A Go nil channel: nothing ever happens.
    nil: bool,
    /// The runtime timer feeding an [`after`]/[`tick`] channel, stopped when the channel goes.
    pub(crate) timer: OnceLock<crate::time::RawTimer>,
}

// SAFETY: `buf` is only accessed with `core.lock` held; values of T move between threads, hence
// `T: Send`.
unsafe impl<T: Send> Sync for Chan<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Chan<T> {}

/// Outcome of a locked receive attempt.
pub(crate) enum Recv<T> {
    /// A value, and the sender to ready (if one was waiting).
    Value(T, Option<GRef>),
    /// Closed and drained.
    Closed,
    /// Nothing yet.
    Empty,
}

impl<T> Chan<T> {
    fn new(cap: usize, nil: bool) -> Chan<T> {
        Chan {
            core: Core::new(),
            buf: std::cell::UnsafeCell::new(VecDeque::with_capacity(cap.min(64))),
            cap,
            senders: AtomicUsize::new(1),
            nil,
            timer: OnceLock::new(),
        }
    }

    /// Address that orders locks in `select!` (Go sorts by `hchan` address); 0 for nil.
    pub(crate) fn addr(&self) -> usize {
        if self.nil {
            0
        } else {
            self as *const Chan<T> as usize
        }
    }

    /// # Safety
    /// The channel lock is held.
    #[allow(clippy::mut_from_ref)]
    unsafe fn buf(&self) -> &mut VecDeque<T> {
        // SAFETY: guarded by the lock the caller holds.
        unsafe { &mut *self.buf.get() }
    }

    /// Tries to send now; on success returns the receiver to ready. `Err(v)`: would block.
    ///
    /// # Safety
    /// The channel lock is held and the channel is open.
    pub(crate) unsafe fn send_locked(&self, v: T) -> Result<Option<GRef>, T> {
        // SAFETY: lock held (caller).
        let st = unsafe { self.core.state() };
        // SAFETY: lock held.
        if let Some(h) = unsafe { st.recvq.claim_front() } {
            // SAFETY: nodes in a Chan<T>'s queues are Node<T>s.
            let n = unsafe { Node::<T>::from_hdr(h) };
            // SAFETY: we claimed the waiter and it is parked: the slot is ours.
            unsafe { n.put(v) };
            n.hdr.success.set(true);
            // SAFETY: waiter valid until we ready it (queue invariant 5).
            return Ok(Some(unsafe { (*n.hdr.waiter.get()).g }));
        }
        // SAFETY: lock held.
        let buf = unsafe { self.buf() };
        if buf.len() < self.cap {
            buf.push_back(v);
            return Ok(None);
        }
        Err(v)
    }

    /// Tries to receive now.
    ///
    /// # Safety
    /// The channel lock is held.
    pub(crate) unsafe fn recv_locked(&self) -> Recv<T> {
        // SAFETY: lock held (caller).
        let st = unsafe { self.core.state() };
        // SAFETY: lock held.
        if let Some(h) = unsafe { st.sendq.claim_front() } {
            // SAFETY: nodes in a Chan<T>'s queues are Node<T>s.
            let n = unsafe { Node::<T>::from_hdr(h) };
            // SAFETY: claimed and parked: the slot is ours.
            let sv = unsafe { n.take() }.expect("gort: queued sender without a value");
            n.hdr.success.set(true);
            // SAFETY: waiter valid until we ready it.
            let g = unsafe { (*n.hdr.waiter.get()).g };
            if self.cap == 0 {
                return Recv::Value(sv, Some(g));
            }
            // Full buffer: take the head, the sender's value goes to the tail.
            // SAFETY: lock held.
            let buf = unsafe { self.buf() };
            let v = buf.pop_front().expect("gort: sender waiting on a non-full buffer");
            buf.push_back(sv);
            return Recv::Value(v, Some(g));
        }
        // SAFETY: lock held.
        if let Some(v) = unsafe { self.buf() }.pop_front() {
            return Recv::Value(v, None);
        }
        if st.closed {
            Recv::Closed
        } else {
            Recv::Empty
        }
    }

    /// Whether closed (racy snapshot).
    fn is_closed(&self) -> bool {
        self.core.lock.lock();
        // SAFETY: lock held.
        let c = unsafe { self.core.state() }.closed;
        // SAFETY: taken above.
        unsafe { self.core.lock.unlock() };
        c
    }

    /// Closes the channel; false if it was closed already (or nil).
    fn close(&self) -> bool {
        if self.nil {
            return false;
        }
        let mut wake = Vec::new();
        self.core.lock.lock();
        // SAFETY: lock held.
        let st = unsafe { self.core.state() };
        if st.closed {
            // SAFETY: taken above.
            unsafe { self.core.lock.unlock() };
            return false;
        }
        st.closed = true;
        // SAFETY: lock held.
        unsafe {
            st.recvq.claim_all_failed(&mut wake);
            st.sendq.claim_all_failed(&mut wake);
        }
        // SAFETY: taken above.
        unsafe { self.core.lock.unlock() };
        for g in wake {
            // SAFETY: each waiter was claimed (and its node unlinked) by `claim_all_failed`
            // above: queue invariant 3 makes us its one claimer, and invariant 4 says its
            // goroutine committed its park: this is the one `ready` for that park.
            unsafe { ready(g) };
        }
        true
    }

    fn len(&self) -> usize {
        self.core.lock.lock();
        // SAFETY: lock held.
        let n = unsafe { self.buf() }.len();
        // SAFETY: taken above.
        unsafe { self.core.lock.unlock() };
        n
    }

    /// Blocking send with an optional deadline (nanotime units).
    fn send(&self, v: T, deadline: Option<u64>) -> Result<(), SendTimeoutError<T>> {
        if self.nil {
            match deadline {
                Some(d) => {
                    nil_wait(d);
                    return Err(SendTimeoutError::Timeout(v));
                }
                None => block_forever(WaitReason::ChanSendNilChan),
            }
        }
        self.core.lock.lock();
        // SAFETY: lock held.
        if unsafe { self.core.state() }.closed {
            // SAFETY: taken above.
            unsafe { self.core.lock.unlock() };
            return Err(SendTimeoutError::Closed(v));
        }
        // SAFETY: lock held, open.
        let v = match unsafe { self.send_locked(v) } {
            Ok(g) => {
                // SAFETY: taken above.
                unsafe { self.core.lock.unlock() };
                if let Some(g) = g {
                    // SAFETY: `send_locked` claimed this receiver from the recvq: queue
                    // invariant 3 makes us its one claimer, and invariant 4 says it committed its
                    // park: this is the one `ready` for that park.
                    unsafe { ready(g) };
                }
                return Ok(());
            }
            Err(v) => v,
        };
        let node = Node::new(Some(v));
        let ok = match deadline {
            None => {
                let w = Waiter::new();
                node.bind(&w, 0);
                // SAFETY: lock held; the node stays on this frame until we return, and we only
                // return after being woken (it is then unlinked).
                unsafe { self.core.state().sendq.push_back(&node.hdr) };
                self.block(WaitReason::ChanSend);
                node.hdr.success.get()
            }
            Some(deadline) => {
                // SAFETY: taken above; the timed path retakes it.
                unsafe { self.core.lock.unlock() };
                match self.block_timed(&node, deadline, false) {
                    Some(ok) => ok,
                    // SAFETY: timed out: node unlinked, unclaimed; the slot is ours.
                    None => return Err(SendTimeoutError::Timeout(unsafe { node.take() }.unwrap())),
                }
            }
        };
        if ok {
            Ok(())
        } else {
            // SAFETY: woken by close: the value is still in our node, which nobody references.
            Err(SendTimeoutError::Closed(unsafe { node.take() }.expect("gort: lost value")))
        }
    }

    /// Blocking receive with an optional deadline.
    fn recv(&self, deadline: Option<u64>) -> Result<T, RecvTimeoutError> {
        if self.nil {
            match deadline {
                Some(d) => {
                    nil_wait(d);
                    return Err(RecvTimeoutError::Timeout);
                }
                None => block_forever(WaitReason::ChanReceiveNilChan),
            }
        }
        self.core.lock.lock();
        // SAFETY: lock held.
        match unsafe { self.recv_locked() } {
            Recv::Value(v, g) => {
                // SAFETY: taken above.
                unsafe { self.core.lock.unlock() };
                if let Some(g) = g {
                    // SAFETY: `recv_locked` claimed this sender from the sendq: queue invariant 3
                    // makes us its one claimer, and invariant 4 says it committed its park: this
                    // is the one `ready` for that park.
                    unsafe { ready(g) };
                }
                return Ok(v);
            }
            Recv::Closed => {
                // SAFETY: taken above.
                unsafe { self.core.lock.unlock() };
                return Err(RecvTimeoutError::Closed);
            }
            Recv::Empty => {}
        }
        let node = Node::new(None);
        let ok = match deadline {
            None => {
                let w = Waiter::new();
                node.bind(&w, 0);
                // SAFETY: lock held; node valid until we are woken (as in `send`).
                unsafe { self.core.state().recvq.push_back(&node.hdr) };
                self.block(WaitReason::ChanReceive);
                node.hdr.success.get()
            }
            Some(deadline) => {
                // SAFETY: taken above.
                unsafe { self.core.lock.unlock() };
                match self.block_timed(&node, deadline, true) {
                    Some(ok) => ok,
                    None => return Err(RecvTimeoutError::Timeout),
                }
            }
        };
        if ok {
            // SAFETY: woken by a sender that filled our slot; nobody references the node now.
            Ok(unsafe { node.take() }.expect("gort: woken receiver without a value"))
        } else {
            Err(RecvTimeoutError::Closed)
        }
    }

    /// Parks with the channel lock held (queued node already published); commit releases it.
    fn block(&self, reason: WaitReason) {
        let t0 = prof_hooks::block_start();
        let commit = |_| {
            // SAFETY: the lock was taken by this operation before parking (Go's unlockf).
            unsafe { self.core.lock.unlock() };
            true
        };
        // SAFETY: our node (naming this G through its waiter) was queued under the channel lock,
        // so no one can reach the G before the commit's unlock, its last access to anything; a
        // claimer then takes the waiter with one CAS (queue invariant 3) and readies it once.
        // Unlocking neither parks nor panics.
        unsafe { park(reason, commit) };
        prof_hooks::block_end(t0);
    }

    /// The timed slow path: arms a timer, then retries, then queues and parks. Returns
    /// `Some(success)` when a channel operation (or close) claimed us, `None` on timeout (node
    /// unlinked, slot untouched). Called without the lock.
    fn block_timed(&self, node: &Node<T>, deadline: u64, recv: bool) -> Option<bool> {
        let w = Waiter::new();
        node.bind(&w, 0);
        let core = &self.core as *const Core as usize;
        let hdr = &node.hdr as *const queue::Hdr as usize;
        // The timer is armed before taking the channel lock, so a timer implementation that
        // runs callbacks under its own lock cannot deadlock against us (queue invariant 4 covers
        // a callback firing before the node is queued).
        let timer = crate::time::RawTimer::new(
            deadline,
            Box::new(move || {
                // SAFETY: the channel (kept alive by our caller's handle) and the node (on our
                // frame) stay valid until `timer.stop()` below returns; the node is only ever
                // queued on this channel's recvq/sendq per `recv`.
                unsafe { queue::fire_timeout(core as *const Core, hdr as *const queue::Hdr, recv) }
            }),
        );
        self.core.lock.lock();
        let mut outcome = None;
        if recv {
            // SAFETY: lock held.
            match unsafe { self.recv_locked() } {
                Recv::Value(v, g) => {
                    // SAFETY: node not queued: its slot is ours.
                    unsafe { node.put(v) };
                    outcome = Some((true, g));
                }
                Recv::Closed => outcome = Some((false, None)),
                Recv::Empty => {}
            }
        // SAFETY: lock held.
        } else if unsafe { self.core.state() }.closed {
            outcome = Some((false, None));
        } else {
            // SAFETY: node not queued: the slot is ours.
            let v = unsafe { node.take() }.expect("gort: send without a value");
            // SAFETY: lock held, open.
            match unsafe { self.send_locked(v) } {
                Ok(g) => outcome = Some((true, g)),
                // SAFETY: as above.
                Err(v) => unsafe { node.put(v) },
            }
        }
        let res = if let Some((ok, g)) = outcome {
            // SAFETY: taken above.
            unsafe { self.core.lock.unlock() };
            if let Some(g) = g {
                // SAFETY: `recv_locked`/`send_locked` claimed this peer from its queue: queue
                // invariant 3 makes us its one claimer, and invariant 4 says it committed its
                // park: this is the one `ready` for that park.
                unsafe { ready(g) };
            }
            Some(ok)
        } else if w.verdict() == TIMED_OUT {
            // SAFETY: taken above.
            unsafe { self.core.lock.unlock() };
            None
        } else {
            // SAFETY: lock held.
            let st = unsafe { self.core.state() };
            let q = if recv { &mut st.recvq } else { &mut st.sendq };
            // SAFETY: lock held; node valid until the timer is stopped and we were woken.
            unsafe { q.push_back(&node.hdr) };
            self.block(if recv { WaitReason::ChanReceive } else { WaitReason::ChanSend });
            if w.verdict() == TIMED_OUT {
                None
            } else {
                Some(node.hdr.success.get())
            }
        };
        // After stop() the callback is not running and never will: our frame may go.
        timer.stop();
        res
    }
}

/// A nil channel with a timeout: sleeps until the deadline.
fn nil_wait(deadline: u64) {
    let now = crate::time::nanotime();
    if deadline > now {
        crate::time::sleep(Duration::from_nanos(deadline - now));
    }
}

/// Parks forever (Go's `block()`): nothing will ever ready the goroutine.
pub(crate) fn block_forever(reason: WaitReason) -> ! {
    loop {
        // SAFETY: the commit publishes the G nowhere and returns true: it stays parked forever,
        // which `park` allows; nothing can ever ready it.
        unsafe { park(reason, |_| true) };
    }
}

/// Deadline in nanotime units for a timeout `d` (saturating).
fn deadline_after(d: Duration) -> u64 {
    crate::time::nanotime().saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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
                    // park: this is the one `ready` for that park.
                    unsafe { ready(g) };
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
                    // is the one `ready` for that park.
                    unsafe { ready(g) };
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

/// A send on a closed channel; carries the value back (Go panics instead).
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Why [`Sender::try_send`] failed.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// No receiver ready and no buffer room.
    Full(T),
    /// The channel is closed.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }
}

/// Why [`Sender::send_timeout`] failed.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// The timeout elapsed.
    Timeout(T),
    /// The channel is closed.
    Closed(T),
}

impl<T> SendTimeoutError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v) | SendTimeoutError::Closed(v) => v,
        }
    }
}

/// Why [`Receiver::try_recv`] failed.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum TryRecvError {
    /// Nothing to receive right now.
    Empty,
    /// Closed and drained.
    Closed,
}

/// Why [`Receiver::recv_timeout`] failed.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum RecvTimeoutError {
    /// The timeout elapsed.
    Timeout,
    /// Closed and drained.
    Closed,
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}
impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("send on closed channel")
    }
}
impl<T> std::error::Error for SendError<T> {}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}
impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("send on full channel"),
            TrySendError::Closed(_) => f.write_str("send on closed channel"),
        }
    }
}
impl<T> std::error::Error for TrySendError<T> {}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}
impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("timed out sending on channel"),
            SendTimeoutError::Closed(_) => f.write_str("send on closed channel"),
        }
    }
}
impl<T> std::error::Error for SendTimeoutError<T> {}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receive on empty channel"),
            TryRecvError::Closed => f.write_str("receive on closed channel"),
        }
    }
}
impl std::error::Error for TryRecvError {}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out receiving on channel"),
            RecvTimeoutError::Closed => f.write_str("receive on closed channel"),
        }
    }
}
impl std::error::Error for RecvTimeoutError {}
