//! `select!`: wait on several channel operations, take one (Go's `src/runtime/select.go`).
//!
//! The macro turns each arm into a *case* object on the caller's stack ([`RecvCase`],
//! [`SendCase`]) and calls [`select`], which runs Go's algorithm:
//!
//! 1. **Orders.** A random `pollorder` (a uniform permutation: Go's fairness among ready arms)
//!    and a `lockorder` sorted by channel address, so two selects over the same channels always
//!    lock them in the same order and cannot deadlock. Nil channels are left out of both.
//! 2. **Pass 1.** With every channel locked, the first ready case in poll order completes (a
//!    waiting peer, buffer data or room, or a closed channel); if none and there is a `default`
//!    arm, it is taken.
//! 3. **Pass 2.** One `Waiter` and one node per case (inside the case objects) are queued on
//!    every channel, and the goroutine parks with reason `select`; the commit unlocks all.
//! 4. **Pass 3.** Woken by the operation that claimed the waiter (the claim CAS names the case:
//!    `queue.rs` invariant 3), the goroutine relocks every channel and unlinks its other nodes.
//!
//! # Invariants
//!
//! * The case objects do not move from pass 2 to the end of pass 3 (they are borrowed by
//!   [`select`] the whole time), so queued nodes stay valid (queue invariant 2).
//! * Each distinct channel is locked once, in address order, and unlocked in reverse.
//! * The pass-2 commit runs on the M and reads `cases`/`lockorder`, which live on the parked
//!   goroutine's stack, *while* it unlocks: once the first channel is unlocked a peer may claim
//!   the waiter and ready the goroutine. That is safe because the goroutine's first act when it
//!   resumes is pass 3, which takes every lock again starting with the lowest address, and the
//!   commit releases that one last: the goroutine cannot leave `select` (and free the arrays)
//!   before the commit has stopped touching them.

use crate::fastrand::fastrand;
use crate::g::WaitReason;
use crate::mprof;
use crate::park::{park, preempt_point};

use super::queue::{Node, Waiter, Wakee};
use super::{Receiver, Recv, SendError, Sender};

/// One arm of a `select!`, as the macro builds it. Not for direct use.
///
/// # Safety
/// Implementors must keep queued nodes valid until `dequeue` (or a claimer) unlinks them and
/// must only touch channel state with the channel lock held.
#[doc(hidden)]
pub unsafe trait Case {
    /// Channel address (lock order); 0 for a nil channel (never ready, never queued).
    fn addr(&self) -> usize;
    /// Takes the channel lock.
    fn lock(&self);
    /// Releases the channel lock.
    ///
    /// # Safety
    /// The lock must be held by this select.
    unsafe fn unlock(&self);
    /// With the lock held: completes now if possible; `Some(g)` also names a peer to ready.
    ///
    /// # Safety
    /// The channel lock is held.
    unsafe fn poll(&mut self) -> Option<Option<Wakee>>;
    /// With the lock held: queues this case's node for `w`.
    ///
    /// # Safety
    /// The channel lock is held; `w` and `self` stay put until [`Case::dequeue`].
    unsafe fn enqueue(&mut self, w: &Waiter, case: usize);
    /// With the lock held: unlinks the node if still queued.
    ///
    /// # Safety
    /// The channel lock is held.
    unsafe fn dequeue(&mut self);
    /// After this case won while parked: records the outcome from the node.
    ///
    /// # Safety
    /// This case's node was claimed and the goroutine has been readied.
    unsafe fn finish(&mut self);
}

/// A receive arm (`v = rx.recv() => ...`). Not for direct use.
#[doc(hidden)]
pub struct RecvCase<'a, T> {
    rx: &'a Receiver<T>,
    node: Node<T>,
    out: Option<Option<T>>,
}

impl<'a, T> RecvCase<'a, T> {
    /// A case receiving from `rx`.
    pub fn new(rx: &'a Receiver<T>) -> Self {
        RecvCase { rx, node: Node::new(None), out: None }
    }

    /// The received value: `None` when the channel was closed.
    pub fn take(&mut self) -> Option<T> {
        self.out.take().expect("gort: select case taken twice")
    }
}

// SAFETY: the node lives inside `self`, which the caller keeps in place; state is touched under
// the lock only.
unsafe impl<T> Case for RecvCase<'_, T> {
    fn addr(&self) -> usize {
        self.rx.c.addr()
    }
    fn lock(&self) {
        self.rx.c.core.lock.lock()
    }
    unsafe fn unlock(&self) {
        // SAFETY: held by this select (caller).
        unsafe { self.rx.c.core.lock.unlock() }
    }
    unsafe fn poll(&mut self) -> Option<Option<Wakee>> {
        // SAFETY: lock held (caller).
        match unsafe { self.rx.c.recv_locked() } {
            Recv::Value(v, g) => {
                self.out = Some(Some(v));
                Some(g)
            }
            Recv::Closed => {
                self.out = Some(None);
                Some(None)
            }
            Recv::Empty => None,
        }
    }
    unsafe fn enqueue(&mut self, w: &Waiter, case: usize) {
        self.node.bind(w, case);
        // SAFETY: lock held; the node stays put (caller).
        unsafe { self.rx.c.core.state().recvq.push_back(&self.node.hdr) }
    }
    unsafe fn dequeue(&mut self) {
        // SAFETY: lock held; the node can only be queued on this channel's recvq.
        unsafe { self.rx.c.core.state().recvq.remove(&self.node.hdr) }
    }
    unsafe fn finish(&mut self) {
        self.out = Some(if self.node.hdr.success.get() {
            // SAFETY: claimed by a sender that filled the slot; nobody references it now.
            unsafe { self.node.take() }
        } else {
            None
        });
    }
}

/// A send arm (`tx.send(v) => ...`). Not for direct use.
#[doc(hidden)]
pub struct SendCase<'a, T> {
    tx: &'a Sender<T>,
    node: Node<T>,
    out: Option<Result<(), SendError<T>>>,
}

impl<'a, T> SendCase<'a, T> {
    /// A case sending `v` on `tx` (the value is evaluated up front, as in Go).
    pub fn new(tx: &'a Sender<T>, v: T) -> Self {
        SendCase { tx, node: Node::new(Some(v)), out: None }
    }

    /// Whether the value was sent; on a closed channel the value comes back.
    pub fn take(&mut self) -> Result<(), SendError<T>> {
        self.out.take().expect("gort: select case taken twice")
    }
}

// SAFETY: as for RecvCase.
unsafe impl<T> Case for SendCase<'_, T> {
    fn addr(&self) -> usize {
        self.tx.c.addr()
    }
    fn lock(&self) {
        self.tx.c.core.lock.lock()
    }
    unsafe fn unlock(&self) {
        // SAFETY: held by this select (caller).
        unsafe { self.tx.c.core.lock.unlock() }
    }
    unsafe fn poll(&mut self) -> Option<Option<Wakee>> {
        // SAFETY: node not queued (pass 1): the slot is ours.
        let v = unsafe { self.node.take() }.expect("gort: send case without a value");
        // SAFETY: lock held (caller).
        if unsafe { self.tx.c.core.state() }.closed {
            self.out = Some(Err(SendError(v)));
            return Some(None);
        }
        // SAFETY: lock held, channel open.
        match unsafe { self.tx.c.send_locked(v) } {
            Ok(g) => {
                self.out = Some(Ok(()));
                Some(g)
            }
            Err(v) => {
                // SAFETY: as above.
                unsafe { self.node.put(v) };
                None
            }
        }
    }
    unsafe fn enqueue(&mut self, w: &Waiter, case: usize) {
        self.node.bind(w, case);
        // SAFETY: lock held; the node stays put (caller).
        unsafe { self.tx.c.core.state().sendq.push_back(&self.node.hdr) }
    }
    unsafe fn dequeue(&mut self) {
        // SAFETY: lock held; the node can only be queued on this channel's sendq.
        unsafe { self.tx.c.core.state().sendq.remove(&self.node.hdr) }
    }
    unsafe fn finish(&mut self) {
        self.out = Some(if self.node.hdr.success.get() {
            Ok(())
        } else {
            // SAFETY: woken by close: the value is still ours.
            Err(SendError(unsafe { self.node.take() }.expect("gort: lost send value")))
        });
    }
}

/// Uniform random in `0..n` (Lemire's multiply-shift; n small).
#[inline]
fn randn(n: usize) -> usize {
    (((fastrand() >> 32) * n as u64) >> 32) as usize
}

/// Small index buffer that stays on the stack for up to 16 cases.
enum Idx {
    Inline([u16; 16], usize),
    Heap(Vec<u16>),
}

impl Idx {
    fn new(n: usize) -> Idx {
        assert!(n <= u16::MAX as usize, "gort: select with too many arms");
        if n <= 16 {
            Idx::Inline([0; 16], 0)
        } else {
            Idx::Heap(Vec::with_capacity(n))
        }
    }
    fn push(&mut self, i: usize) {
        match self {
            Idx::Inline(a, len) => {
                a[*len] = i as u16;
                *len += 1;
            }
            Idx::Heap(v) => v.push(i as u16),
        }
    }
    fn slice_mut(&mut self) -> &mut [u16] {
        match self {
            Idx::Inline(a, len) => &mut a[..*len],
            Idx::Heap(v) => v,
        }
    }
}

/// Locks every distinct channel in lock order.
fn sellock(cases: &[&mut dyn Case], order: &[u16]) {
    let mut last = 0;
    for &i in order {
        let c = &*cases[i as usize];
        if c.addr() != last {
            last = c.addr();
            c.lock();
        }
    }
}

/// Unlocks every distinct channel, in reverse lock order.
///
/// # Safety
/// `sellock(cases, order)` must have been called and not undone.
unsafe fn selunlock(cases: &[&mut dyn Case], order: &[u16]) {
    for (k, &i) in order.iter().enumerate().rev() {
        let c = &*cases[i as usize];
        if k == 0 || cases[order[k - 1] as usize].addr() != c.addr() {
            // SAFETY: locked by sellock exactly once per distinct address.
            unsafe { c.unlock() };
        }
    }
}

/// Runs a select over `cases` (Go's `selectgo`). Returns the index of the completed case, or
/// `cases.len()` when `has_default` and nothing was ready. Called by the `select!` macro.
pub fn select(cases: &mut [&mut dyn Case], has_default: bool) -> usize {
    let n = cases.len();
    let mut poll = Idx::new(n);
    let mut lock = Idx::new(n);
    // Random poll order (inside-out Fisher-Yates) and address-sorted lock order, nil cases out.
    for (i, c) in cases.iter().enumerate() {
        if c.addr() == 0 {
            continue;
        }
        poll.push(i);
        let p = poll.slice_mut();
        let j = randn(p.len());
        let last = p.len() - 1;
        p.swap(j, last);
    }
    // The lock order starts from the poll order, so cases on one channel (equal addresses) keep
    // a random order among themselves: pass 2 queues in lock order, and a peer that arrives
    // while we are parked takes the first of our nodes on its channel. Built from the case
    // order instead, the first such arm would win every blocked select (as Go's heap sort does
    // not do either).
    for &i in poll.slice_mut().iter() {
        lock.push(i as usize);
    }
    let lockorder = lock.slice_mut();
    lockorder.sort_unstable_by_key(|&i| cases[i as usize].addr());
    let lockorder = &*lockorder;
    let pollorder = &*poll.slice_mut();

    if pollorder.is_empty() {
        if has_default {
            return n;
        }
        // Only nil channels (or none): Go blocks forever.
        super::block_forever(if n == 0 { WaitReason::SelectNoCases } else { WaitReason::Select });
    }

    if !has_default {
        preempt_point();
    }
    // Pass 1: look for something ready.
    sellock(cases, lockorder);
    for &i in pollorder {
        // SAFETY: every case's channel is locked.
        if let Some(peer) = unsafe { cases[i as usize].poll() } {
            // SAFETY: locked above.
            unsafe { selunlock(cases, lockorder) };
            if let Some(g) = peer {
                // SAFETY: the case's `poll` claimed this peer from its channel's queue (via
                // `send_locked`/`recv_locked`): queue invariant 3 makes us its one claimer, and
                // invariant 4 says it committed its park: this is the one wake-up for that wait.
                unsafe { g.wake() };
            }
            return i as usize;
        }
    }
    if has_default {
        // SAFETY: locked above.
        unsafe { selunlock(cases, lockorder) };
        return n;
    }

    // Pass 2: queue on every channel and park.
    let w = Waiter::new_select();
    for &i in lockorder {
        // SAFETY: locked; `cases` is borrowed for this whole call, so nodes stay put.
        unsafe { cases[i as usize].enqueue(&w, i as usize) };
    }
    let t0 = mprof::block_start();
    {
        let cases = &*cases;
        // The commit goes on reading `cases` and `lockorder` on our stack after the first
        // unlock, which may publish us. That is sound because our first act when we run again is
        // pass 3, which takes the lowest-addressed lock first, and the commit releases that one
        // last (module invariants): we cannot leave `select` before the commit is done.
        let commit = |_| {
            // SAFETY: locked by this select before parking (Go's selparkcommit).
            unsafe { selunlock(cases, lockorder) };
            true
        };
        // SAFETY: our nodes (naming this G via `w`) were queued under every channel's lock; a
        // claimer takes `w` with one CAS (queue invariant 3) and readies it once. The commit's
        // reads after publishing are argued above; unlocking neither parks nor panics.
        unsafe { park(WaitReason::Select, commit) };
    }
    mprof::block_end(t0);

    // Pass 3: unlink the losers.
    let won = w.verdict().wrapping_sub(1);
    debug_assert!(won < n, "gort: select woken without a verdict");
    sellock(cases, lockorder);
    for &i in lockorder {
        if i as usize != won {
            // SAFETY: locked.
            unsafe { cases[i as usize].dequeue() };
        }
    }
    // SAFETY: locked above.
    unsafe { selunlock(cases, lockorder) };
    // SAFETY: the winner's node was claimed and we have been readied.
    unsafe { cases[won].finish() };
    won
}

/// `select! {}`: parks forever with reason `select (no cases)`.
pub fn block_forever() -> ! {
    super::block_forever(WaitReason::SelectNoCases)
}
