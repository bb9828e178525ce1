//! `Semaphore`: a weighted semaphore (Go's `golang.org/x/sync/semaphore.Weighted`).
//!
//! # Invariants
//!
//! * `cur` (units held) and the FIFO of waiters are guarded by `lock`; `0 <= cur <= size`.
//! * A waiter is queued and parked in one critical section (waitlist.rs invariant 2); a releaser
//!   that grants it adds its weight to `cur`, unlinks it and readies it.
//! * FIFO fairness: a request that does not fit blocks every later one, even small ones (as in
//!   x/sync), so a large request cannot starve.

use std::cell::UnsafeCell;
use std::fmt;

use crate::g::WaitReason;
use crate::lock::Lock;
use crate::mprof;
use crate::park::{park, ready};

use super::waitlist::{WaitList, WaitNode};

/// A weighted semaphore: `acquire(n)` takes `n` of `size` units, parking (reason `semacquire`)
/// until they are available; `release(n)` gives them back.
pub struct Semaphore {
    size: i64,
    lock: Lock,
    /// Guarded by `lock`.
    st: UnsafeCell<State>,
}

struct State {
    cur: i64,
    waiters: WaitList,
}

// SAFETY: `st` is only touched with `lock` held.
unsafe impl Sync for Semaphore {}
// SAFETY: as above.
unsafe impl Send for Semaphore {}

impl Semaphore {
    /// A semaphore of `size` units, all available.
    pub const fn new(size: i64) -> Semaphore {
        Semaphore { size, lock: Lock::new(), st: UnsafeCell::new(State { cur: 0, waiters: WaitList::new() }) }
    }

    /// Takes `n` units, blocking until they are available (FIFO).
    ///
    /// # Panics
    /// If `n` exceeds the size (x/sync blocks until its context is done; there is no context
    /// here, so it would block forever).
    pub fn acquire(&self, n: i64) {
        self.lock.lock();
        // SAFETY: lock held.
        let st = unsafe { &mut *self.st.get() };
        if self.size - st.cur >= n && st.waiters.is_empty() {
            st.cur += n;
            // SAFETY: taken above.
            unsafe { self.lock.unlock() };
            return;
        }
        if n > self.size {
            // SAFETY: taken above.
            unsafe { self.lock.unlock() };
            panic!("semaphore: acquire of {n} units exceeds the size {}", self.size);
        }
        let node = WaitNode::new();
        node.weight.set(n);
        // SAFETY: lock held; the node stays on this frame until a releaser unlinks it.
        unsafe { st.waiters.push_back(&node) };
        let t0 = mprof::block_start();
        let commit = |_| {
            // SAFETY: taken by this acquire before parking.
            unsafe { self.lock.unlock() };
            true
        };
        // SAFETY: our node (naming this G) was queued under the lock, unreachable before the
        // commit's unlock (its last access); a releaser unlinks it under the lock once and readies
        // it once (waitlist invariant 2). Unlocking neither parks nor panics.
        unsafe { park(WaitReason::Semacquire, commit) };
        mprof::block_end(t0);
        debug_assert!(node.granted.get());
    }

    /// Takes `n` units if available right now (and nobody is queued).
    pub fn try_acquire(&self, n: i64) -> bool {
        self.lock.lock();
        // SAFETY: lock held.
        let st = unsafe { &mut *self.st.get() };
        let ok = self.size - st.cur >= n && st.waiters.is_empty();
        if ok {
            st.cur += n;
        }
        // SAFETY: taken above.
        unsafe { self.lock.unlock() };
        ok
    }

    /// Gives back `n` units and wakes the waiters that now fit, in order.
    ///
    /// # Panics
    /// If more units are released than held.
    pub fn release(&self, n: i64) {
        let mut wake = Vec::new();
        self.lock.lock();
        // SAFETY: lock held.
        let st = unsafe { &mut *self.st.get() };
        st.cur -= n;
        if st.cur < 0 {
            st.cur += n;
            // SAFETY: taken above.
            unsafe { self.lock.unlock() };
            panic!("semaphore: released more than held");
        }
        // SAFETY: lock held.
        while let Some(w) = unsafe { st.waiters.front() } {
            if self.size - st.cur < w.weight.get() {
                break;
            }
            st.cur += w.weight.get();
            // SAFETY: lock held; `w` is queued here.
            unsafe { st.waiters.remove(w) };
            w.granted.set(true);
            wake.push(w.g);
        }
        // SAFETY: taken above.
        unsafe { self.lock.unlock() };
        for g in wake {
            // SAFETY: we unlinked each node under the lock, and a node is queued and its
            // goroutine parked in one critical section (waitlist invariant 2): the park is
            // committed and only the one who unlinks the node readies it.
            unsafe { ready(g) };
        }
    }

    /// The size given at creation.
    pub fn size(&self) -> i64 {
        self.size
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("size", &self.size).finish_non_exhaustive()
    }
}
