//! `Cond`: Go's `sync.Cond` (with the runtime's `notifyList`) over a gort [`Mutex`].
//!
//! # Protocol
//!
//! `wait` queues its node under the cond's lock *before* unlocking the mutex (so a signal sent
//! after the caller released the mutex cannot be missed), unlocks the mutex, then retakes the
//! cond lock: if already notified it goes on, otherwise it sets `parked` and parks (reason
//! `sync.Cond.Wait`) with the commit releasing the cond lock. `signal`/`broadcast` unlink nodes
//! under the cond lock, set `granted`, and ready only those whose `parked` is set (the others
//! will see `granted` and not park). See `waitlist.rs` for the node rules.

use std::cell::UnsafeCell;
use std::fmt;

use crate::g::WaitReason;
use crate::lock::Lock;
use crate::mprof;
use crate::park::{park, ready};

use super::mutex::MutexGuard;
use super::waitlist::{WaitList, WaitNode};

/// A condition variable (Go's `sync.Cond`) used with a gort [`Mutex`](super::Mutex).
#[derive(Default)]
pub struct Cond {
    lock: Lock,
    /// Guarded by `lock`.
    list: UnsafeCell<WaitList>,
}

// SAFETY: `list` is only touched with `lock` held.
unsafe impl Sync for Cond {}
// SAFETY: as above.
unsafe impl Send for Cond {}

impl Cond {
    /// A condition variable with no waiters.
    pub const fn new() -> Cond {
        Cond { lock: Lock::new(), list: UnsafeCell::new(WaitList::new()) }
    }

    /// Atomically unlocks the guard's mutex and waits for a [`signal`](Cond::signal) or
    /// [`broadcast`](Cond::broadcast), then relocks and returns the guard. As in Go, wake-ups
    /// may be spurious relative to the condition: wait in a loop.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let m = guard.mutex();
        let node = WaitNode::new();
        self.lock.lock();
        // SAFETY: lock held; the node stays on this frame until unlinked by a notifier (we do
        // not return before being notified).
        unsafe { (*self.list.get()).push_back(&node) };
        // SAFETY: taken above.
        unsafe { self.lock.unlock() };
        drop(guard);
        let t0 = mprof::block_start();
        self.lock.lock();
        if node.granted.get() {
            // SAFETY: taken above.
            unsafe { self.lock.unlock() };
        } else {
            node.parked.set(true);
            let commit = |_| {
                // SAFETY: taken by this wait before parking.
                unsafe { self.lock.unlock() };
                true
            };
            // SAFETY: `parked` is set under the cond lock; a notifier readies a popped node only if
            // it sees `parked` under that lock, i.e. after the commit's unlock (its last access).
            // The node is popped, so readied, once. Unlocking neither parks nor panics.
            unsafe { park(WaitReason::SyncCondWait, commit) };
        }
        mprof::block_end(t0);
        m.lock()
    }

    /// Wakes one waiter, if any.
    pub fn signal(&self) {
        self.lock.lock();
        // SAFETY: lock held.
        let n = unsafe { (*self.list.get()).pop_front() };
        let wake = n.and_then(|n| {
            n.granted.set(true);
            n.parked.get().then_some(n.g)
        });
        // SAFETY: taken above.
        unsafe { self.lock.unlock() };
        if let Some(g) = wake {
            // SAFETY: we popped the node under the cond lock and saw `parked`, which its waiter
            // sets under that lock and keeps until its park commit releases it: the park is
            // committed, and only the one who pops the node readies it.
            unsafe { ready(g) };
        }
    }

    /// Wakes every waiter.
    pub fn broadcast(&self) {
        let mut wake = Vec::new();
        self.lock.lock();
        // SAFETY: lock held.
        let list = unsafe { &mut *self.list.get() };
        // SAFETY: lock held.
        while let Some(n) = unsafe { list.pop_front() } {
            n.granted.set(true);
            if n.parked.get() {
                wake.push(n.g);
            }
        }
        // SAFETY: taken above.
        unsafe { self.lock.unlock() };
        for g in wake {
            // SAFETY: as in `signal`: each node was popped by us under the cond lock with
            // `parked` set, so its park is committed and this is its one `ready`.
            unsafe { ready(g) };
        }
    }
}

impl fmt::Debug for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cond").finish_non_exhaustive()
    }
}
