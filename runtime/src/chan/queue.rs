//! Wait queues of blocked channel operations: Go's `sudog` and `waitq`.
//!
//! # Design
//!
//! A goroutine that must block on a channel builds a [`Waiter`] (who it is, plus a claim word)
//! and one [`Node`] per channel operation it waits on (one for a plain send/receive, one per arm
//! for `select!`) **on its own stack**, links the nodes into the channels' queues while holding
//! the channels' locks, and parks; the `commit` closure of [`park`](crate::park) releases the
//! locks (Go's `unlockf`). The parked goroutine's stack is frozen, so other threads may reach the
//! nodes through raw pointers until the goroutine is readied.
//!
//! # Invariants
//!
//! 1. A node is linked into at most one queue, and only while `queued` is true. `queued`, `prev`
//!    and `next` are read and written only with the owning channel's lock held.
//! 2. A node's memory is valid while it is queued, and after that until its owner has taken the
//!    channel lock once more (the owner unlinks its leftover nodes under the lock before its
//!    stack frame goes away, and a timer callback is stopped before it does).
//! 3. Exactly one party *claims* a waiter: a CAS of `Waiter::state` from [`WAITING`] to the
//!    claimer's verdict (a case index + 1, or [`TIMED_OUT`]); for a waiter queued on one channel
//!    only (every waiter but a `select!`'s), whose claimers all hold that channel's lock (channel
//!    operations, close, the timeout callback, a future's drop), a load and a store under it.
//!    Only the claimer writes the node's
//!    `slot`/`success` and only the claimer calls [`ready`](crate::ready) for the waiter, exactly
//!    once. A node popped whose waiter someone else already claimed (another `select!` arm, a
//!    timeout) is dropped from the queue and skipped (Go's `selectDone`).
//! 4. A waiter is claimed only once its goroutine has committed its park (or will see the claim
//!    before parking): claimers hold the lock of a channel the waiter is queued on, and the waiter
//!    holds every such lock until its `commit` runs. A timeout callback that finds the node not
//!    yet queued claims without readying; the goroutine sees the verdict under the lock and does
//!    not park.
//! 5. The claimer reads `Waiter::g` before it makes the waiter runnable; after `ready` it never
//!    touches the waiter or the node again.
//!
//! The data a claimer writes (`slot`, `success`) reaches the woken goroutine through `ready`:
//! making a G runnable and running it is a happens-before edge (the run queue or the thread
//! stand-in's futex publish it with Release/Acquire).
//!
//! # Async waiters
//!
//! A future awaiting a channel operation (`chan/future.rs`) queues the same [`Node`] in the same
//! queues, FIFO with goroutines, but its waiter is a [`TaskWaiter`]: `Waiter::g` is `None` and
//! the task's `Waker` sits beside it. A claimer tells the two apart with one branch on `g`
//! ([`Hdr::wakee`]) and wakes what it gets after unlocking ([`Wakee::wake`]). The future is
//! pinned, so its node stays put while queued; it reads its outcome, and unlinks a node it
//! abandons (drop), only under the channel lock, which is what invariant 2 asks of an owner. There
//! is no park, so invariant 4 holds trivially: the node is published under the lock and the
//! waker is stored before it is.

use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;

use crate::g::GRef;
use crate::ilist::{Linked, Links, List};
use crate::lock::Lock;

/// `Waiter::state` while nobody has claimed the waiter.
pub(crate) const WAITING: usize = 0;
/// `Waiter::state` once a timeout claimed the waiter.
pub(crate) const TIMED_OUT: usize = usize::MAX;

/// One blocked goroutine (Go's `sudog.g` plus `g.selectDone`), shared by all its nodes.
#[doc(hidden)]
#[repr(C)]
pub struct Waiter {
    /// The goroutine (or thread stand-in) to ready; `None` for a task, whose `Waker` is in the
    /// [`TaskWaiter`] this waiter begins.
    pub(crate) g: Option<GRef>,
    /// [`WAITING`], then the claimer's verdict: `case + 1` or [`TIMED_OUT`] (invariant 3).
    state: AtomicUsize,
    /// Queued on one channel only: claimed under that channel's lock, without a CAS.
    solo: bool,
}

impl Waiter {
    /// A waiter for the current goroutine, to queue on one channel only.
    pub(crate) fn new() -> Waiter {
        Waiter::of(crate::park::current())
    }

    /// A waiter for `g` (the current goroutine, read by the caller), to queue on one channel
    /// only.
    #[inline(always)]
    pub(crate) fn of(g: GRef) -> Waiter {
        Waiter { g: Some(g), state: AtomicUsize::new(WAITING), solo: true }
    }

    /// A waiter for the current goroutine's `select!`, queued on several channels, whose
    /// claimers hold different locks.
    pub(crate) fn new_select() -> Waiter {
        Waiter { g: Some(crate::park::current()), state: AtomicUsize::new(WAITING), solo: false }
    }

    /// The goroutine of a waiter known to be one (timed operations are goroutines' only).
    pub(crate) fn goroutine(&self) -> GRef {
        self.g.expect("gort: a task waiter on a goroutine-only path")
    }

    /// Tries to become this waiter's only claimer with `verdict` (invariant 3).
    #[inline]
    pub(crate) fn claim(&self, verdict: usize) -> bool {
        if self.solo {
            // Every claimer holds the one channel's lock (invariant 3), which orders them: a
            // previous claim is visible here, and nobody writes the word between our load and
            // store. Release: publishes our verdict to the owner's Acquire load in `verdict`.
            if self.state.load(Ordering::Relaxed) != WAITING {
                return false;
            }
            self.state.store(verdict, Ordering::Release);
            return true;
        }
        // AcqRel: the CAS orders claimers against each other (Acquire sees a previous claimer's
        // verdict; Release publishes ours to the woken goroutine's Acquire load in `verdict`).
        self.state.compare_exchange(WAITING, verdict, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The verdict (or [`WAITING`]).
    #[inline]
    pub(crate) fn verdict(&self) -> usize {
        // Acquire: pairs with the claim's Release (its CAS, or a solo claim's store).
        self.state.load(Ordering::Acquire)
    }
}

/// A waiting async task: a [`Waiter`] with `g == None`, and the task's `Waker`.
///
/// `#[repr(C)]` with the waiter first, so a claimer holding `*const Waiter` reaches the waker.
#[repr(C)]
pub(crate) struct TaskWaiter {
    pub(crate) w: Waiter,
    /// Written by the owning future, taken by the claimer; both only under the channel lock (or
    /// by the owner while its node is not queued).
    waker: UnsafeCell<Option<Waker>>,
}

impl TaskWaiter {
    pub(crate) fn new() -> TaskWaiter {
        // Solo: a future waits on one channel, and claims of it are made under that channel's
        // lock (the module docs' last paragraph).
        TaskWaiter { w: Waiter { g: None, state: AtomicUsize::new(WAITING), solo: true }, waker: UnsafeCell::new(None) }
    }

    /// Stores `waker` unless the stored one wakes the same task; returns the one replaced, for
    /// the caller to drop after unlocking (a waker's drop may run arbitrary code).
    ///
    /// # Safety
    /// The channel lock is held, or the node is not queued.
    pub(crate) unsafe fn set_waker(&self, waker: &Waker) -> Option<Waker> {
        // SAFETY: exclusive per the caller's contract.
        let slot = unsafe { &mut *self.waker.get() };
        match slot {
            Some(old) if old.will_wake(waker) => None,
            _ => slot.replace(waker.clone()),
        }
    }

    /// Takes the stored waker (the owner abandoning its wait).
    ///
    /// # Safety
    /// As for [`TaskWaiter::set_waker`].
    pub(crate) unsafe fn take_waker(&self) -> Option<Waker> {
        // SAFETY: exclusive per the caller's contract.
        unsafe { (*self.waker.get()).take() }
    }
}

/// Whom a claimer wakes once it has unlocked: a goroutine (or thread stand-in) or a task.
#[doc(hidden)]
pub enum Wakee {
    G(GRef),
    Task(Waker),
}

impl Wakee {
    /// Wakes it.
    ///
    /// # Safety
    /// The wakee came from [`Hdr::wakee`] of a node whose waiter the caller claimed (queue
    /// invariant 3): for a goroutine this is the one `ready` for its park (invariant 4).
    #[inline]
    pub(crate) unsafe fn wake(self) {
        match self {
            // SAFETY: the caller's contract is `ready`'s.
            Wakee::G(g) => unsafe { crate::park::ready(g) },
            Wakee::Task(w) => w.wake(),
        }
    }
}

/// Type-independent part of a node: what a queue links (Go's `sudog` without `elem`).
///
/// `#[repr(C)]` and first in [`Node`], so a `*const Hdr` taken from a `Node<T>` casts back.
#[repr(C)]
pub(crate) struct Hdr {
    /// The goroutine waiting; set before the node is queued, then read-only.
    pub(crate) waiter: Cell<*const Waiter>,
    /// Index of the `select!` arm (0 for a plain operation); read-only while queued.
    pub(crate) case: Cell<usize>,
    /// Written by the claimer: true when a value was transferred, false when woken by close.
    pub(crate) success: Cell<bool>,
    /// Its place in a queue (invariant 1).
    pub(crate) links: Links<Hdr>,
}

impl Hdr {
    /// Whom to wake for this node's waiter.
    ///
    /// # Safety
    /// The channel lock is held and the caller has just claimed the node's waiter (invariant 3),
    /// which is therefore still valid (invariant 5).
    #[inline]
    pub(crate) unsafe fn wakee(&self) -> Wakee {
        // SAFETY: valid until woken (caller).
        let w = unsafe { &*self.waiter.get() };
        match w.g {
            Some(g) => Wakee::G(g),
            None => {
                // SAFETY: a waiter without a G is the head of a `TaskWaiter` (repr(C)); its
                // waker is guarded by the lock we hold.
                let tw = unsafe { &*(w as *const Waiter as *const TaskWaiter) };
                // SAFETY: as above.
                Wakee::Task(unsafe { tw.take_waker() }.expect("gort: task waiter without a waker"))
            }
        }
    }
}

impl Linked for Hdr {
    fn links(&self) -> &Links<Hdr> {
        &self.links
    }
}

/// A blocked channel operation, living on the blocked goroutine's stack.
#[repr(C)]
#[doc(hidden)]
pub struct Node<T> {
    pub(crate) hdr: Hdr,
    /// Receive: where the sender puts the value. Send: the value the receiver takes.
    /// Accessed by the owner while it is not queued, by the claimer under the channel lock.
    pub(crate) slot: UnsafeCell<Option<T>>,
}

impl<T> Node<T> {
    pub(crate) fn new(value: Option<T>) -> Node<T> {
        Node {
            hdr: Hdr {
                waiter: Cell::new(ptr::null()),
                case: Cell::new(0),
                success: Cell::new(false),
                links: Links::new(),
            },
            slot: UnsafeCell::new(value),
        }
    }

    /// Points the node at its waiter and case before it is queued.
    pub(crate) fn bind(&self, w: &Waiter, case: usize) {
        self.hdr.waiter.set(w);
        self.hdr.case.set(case);
        self.hdr.success.set(false);
    }

    /// Takes the value out of the slot.
    ///
    /// # Safety
    /// Nobody else may access the slot: the node is not queued and its waiter was not claimed by
    /// someone who has not yet readied it (the owner after wake-up, or a claimer under the lock).
    pub(crate) unsafe fn take(&self) -> Option<T> {
        // SAFETY: exclusive access per the caller's contract.
        unsafe { (*self.slot.get()).take() }
    }

    /// Puts a value into the slot (same contract as [`Node::take`]).
    ///
    /// # Safety
    /// As for [`Node::take`].
    pub(crate) unsafe fn put(&self, v: T) {
        // SAFETY: exclusive access per the caller's contract.
        unsafe { *self.slot.get() = Some(v) }
    }

    /// Casts a queue entry back to the node that contains it.
    ///
    /// # Safety
    /// `h` must be the `hdr` of a live `Node<T>` of this very `T`.
    pub(crate) unsafe fn from_hdr<'a>(h: *const Hdr) -> &'a Node<T> {
        // SAFETY: `Node` is repr(C) with `hdr` first, and the caller vouches for the type.
        unsafe { &*(h as *const Node<T>) }
    }
}

/// A FIFO of nodes (Go's `waitq`), doubly linked ([`List`]) so a woken `select!` or timed-out
/// operation can unlink its node from the middle. Guarded by the owning channel's lock.
pub(crate) struct WaitQueue(List<Hdr>);

impl WaitQueue {
    pub(crate) const fn new() -> WaitQueue {
        WaitQueue(List::new())
    }

    /// Appends `n`.
    ///
    /// # Safety
    /// The channel lock is held, `n` is not queued and stays valid while queued (invariant 2).
    pub(crate) unsafe fn push_back(&mut self, n: &Hdr) {
        // SAFETY: the caller's contract is the list's.
        unsafe { self.0.push_back(n) }
    }

    /// Unlinks `n` if it is queued here.
    ///
    /// # Safety
    /// The channel lock is held and `n`, if queued, is queued in this queue.
    pub(crate) unsafe fn remove(&mut self, n: &Hdr) {
        // SAFETY: the caller's contract is the list's.
        unsafe { self.0.remove(n) }
    }

    /// Pops nodes from the front until one whose waiter this call claims (verdict `case + 1`);
    /// nodes of waiters claimed elsewhere are dropped (invariant 3).
    ///
    /// # Safety
    /// The channel lock is held.
    pub(crate) unsafe fn claim_front(&mut self) -> Option<*const Hdr> {
        // SAFETY: lock held (caller); queued nodes are valid (invariant 2).
        while let Some(n) = unsafe { self.0.pop_front() } {
            // SAFETY: the waiter outlives its queued nodes (it is on the same frozen stack).
            let w = unsafe { &*n.waiter.get() };
            if w.claim(n.case.get() + 1) {
                return Some(n);
            }
        }
        None
    }

    /// Unlinks every node, claiming those it can; returns whom to wake for the claimed ones
    /// after marking them `success = false` (close).
    ///
    /// # Safety
    /// The channel lock is held.
    pub(crate) unsafe fn claim_all_failed(&mut self, out: &mut Vec<Wakee>) {
        // SAFETY: lock held (caller).
        while let Some(h) = unsafe { self.claim_front() } {
            // SAFETY: claimed just now: we are its only claimer and it is not yet readied.
            let n = unsafe { &*h };
            n.success.set(false);
            // SAFETY: lock held, claimed just now.
            out.push(unsafe { n.wakee() });
        }
    }
}

/// The type-independent core of a channel: its lock, its two wait queues and the closed flag.
pub(crate) struct Core {
    pub(crate) lock: Lock,
    st: UnsafeCell<CoreState>,
}

/// Guarded by `Core::lock`.
pub(crate) struct CoreState {
    /// Goroutines blocked sending (their nodes hold the values).
    pub(crate) sendq: WaitQueue,
    /// Goroutines blocked receiving.
    pub(crate) recvq: WaitQueue,
    pub(crate) closed: bool,
}

// SAFETY: CoreState (and the raw node pointers in it) is only touched with `lock` held; nodes are
// kept valid by invariant 2.
unsafe impl Sync for Core {}
// SAFETY: as above; the core owns no thread-bound data.
unsafe impl Send for Core {}

impl Core {
    pub(crate) fn new() -> Core {
        Core {
            lock: Lock::new(),
            st: UnsafeCell::new(CoreState { sendq: WaitQueue::new(), recvq: WaitQueue::new(), closed: false }),
        }
    }

    /// The guarded state.
    ///
    /// # Safety
    /// The lock must be held for as long as the reference is used, and no other reference to
    /// the state may be alive.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn state(&self) -> &mut CoreState {
        // SAFETY: exclusive by the caller's contract (the lock).
        unsafe { &mut *self.st.get() }
    }
}

/// Timeout callback of a plain `send_timeout`/`recv_timeout` (runs on a timer thread).
///
/// # Safety
/// `core` and `hdr` must stay valid until the timer is stopped (the blocked operation holds the
/// channel alive and stops the timer before returning), and `hdr` may only ever be queued on
/// `core`'s `recvq` (if `recv`) or `sendq`.
pub(crate) unsafe fn fire_timeout(core: *const Core, hdr: *const Hdr, recv: bool) {
    // SAFETY: valid per the contract.
    let (core, n) = unsafe { (&*core, &*hdr) };
    core.lock.lock();
    // SAFETY: lock held.
    let st = unsafe { core.state() };
    // SAFETY: the waiter lives on the blocked goroutine's stack, valid until the timer is stopped.
    let w = unsafe { &*n.waiter.get() };
    let g = w.goroutine();
    let mut wake = false;
    // Not queued: either a channel operation claimed it (the claim fails) or the goroutine has not
    // queued it yet (the claim succeeds and the goroutine sees it under the lock: invariant 4).
    if w.claim(TIMED_OUT) && n.links.is_queued() {
        let q = if recv { &mut st.recvq } else { &mut st.sendq };
        // SAFETY: lock held; the node is queued on this queue per the contract.
        unsafe { q.remove(n) };
        wake = true;
    }
    // SAFETY: taken above.
    unsafe { core.lock.unlock() };
    if wake {
        // SAFETY: our claim succeeded while the node was queued, so we are the waiter's one
        // claimer (invariant 3) and its goroutine committed its park (invariant 4: it held this
        // lock until its commit released it): this is the one `ready` for that park.
        unsafe { crate::park::ready(g) };
    }
}
