//! Go's runtime semaphore (`src/runtime/sema.go`): the sleep/wake-up primitive under `Mutex`,
//! `RwLock` and `WaitGroup`.
//!
//! `count` is a counting semaphore; `acquire` takes one unit, parking (FIFO, or LIFO for a
//! `Mutex` waiter that was already woken once) while there is none; `release` adds one and wakes
//! the first waiter. With `handoff` (a starving `Mutex`) the releaser takes the unit on the
//! waiter's behalf (`granted`, Go's `ticket`) and yields so the waiter runs at once.
//!
//! # Invariants
//!
//! * `nwait` counts goroutines that announced themselves under the lock and have not been
//!   dequeued; a waiter increments it *before* re-checking `count`, a releaser increments
//!   `count` *before* reading `nwait`. Both use SeqCst (Dekker-style: each side stores then
//!   loads the other's word), so either the waiter sees the unit or the releaser sees the waiter.
//!   Under `--cfg gort_loom` each side also has a `SeqCst` fence between its store and its load
//!   (`dekker_fence`), because loom models `SeqCst` accesses as `AcqRel` only.
//! * The wait list follows `waitlist.rs` (a queued node is a parked goroutine).
//!
//! The loom models at the bottom (`--cfg gort_loom`, see `crate::loom`) check the first
//! invariant with one and two acquirers, with and without handoff: every acquirer gets a unit,
//! `count` and `nwait` end at zero and the list empty. They do not see the wait list's
//! `Cell`s and `UnsafeCell` (plain memory to loom), the profiling paths, or whether the Dekker
//! accesses stay `SeqCst` (the fences stand in for that; weakening one to `AcqRel` would pass).

use std::cell::UnsafeCell;

use super::waitlist::{WaitList, WaitNode};
use crate::loom::{
    dekker_fence, in_goroutine, mprof, nanotime, park, ready, yield_now, AtomicU32, Lock, Ordering, WaitReason,
};

pub(crate) struct Sema {
    count: AtomicU32,
    nwait: AtomicU32,
    lock: Lock,
    /// Guarded by `lock`.
    list: UnsafeCell<WaitList>,
}

// SAFETY: `list` is only touched with `lock` held (waitlist.rs invariant 1).
unsafe impl Sync for Sema {}
// SAFETY: as above.
unsafe impl Send for Sema {}

impl Sema {
    crate::loom::const_fn! {
        pub(crate) fn new() -> Sema {
            Sema {
                count: AtomicU32::new(0),
                nwait: AtomicU32::new(0),
                lock: Lock::new(),
                list: UnsafeCell::new(WaitList::new()),
            }
        }
    }

    /// Go's `cansemacquire`.
    fn try_acquire(&self) -> bool {
        // SeqCst: see the module invariants (pairs with release's increment).
        let mut v = self.count.load(Ordering::SeqCst);
        loop {
            if v == 0 {
                return false;
            }
            // SeqCst: as above; success also acquires what the releaser published.
            match self.count.compare_exchange_weak(v, v - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(x) => v = x,
            }
        }
    }

    /// Go's `semacquire1`: takes a unit, parking with `reason` while there is none. `mutex`
    /// marks a lock's semaphore (its waits feed the mutex profile).
    pub(crate) fn acquire(&self, lifo: bool, reason: WaitReason, mutex: bool) {
        if self.try_acquire() {
            return;
        }
        let t0 = mprof::block_start();
        let node = WaitNode::new();
        if mutex && mprof::mutex_profiling() {
            node.since.set(nanotime().max(1));
        }
        loop {
            self.lock.lock();
            // SeqCst: see the module invariants (pairs with release's load of nwait).
            self.nwait.fetch_add(1, Ordering::SeqCst);
            dekker_fence();
            if self.try_acquire() {
                // SeqCst: as above.
                self.nwait.fetch_sub(1, Ordering::SeqCst);
                // SAFETY: taken above.
                unsafe { self.lock.unlock() };
                break;
            }
            node.granted.set(false);
            // SAFETY: lock held; the node stays on this frame until we are dequeued and woken.
            let list = unsafe { &mut *self.list.get() };
            // SAFETY: as above.
            unsafe {
                if lifo {
                    list.push_front(&node)
                } else {
                    list.push_back(&node)
                }
            };
            let commit = |_| {
                // SAFETY: taken by this acquire before parking (Go's goparkunlock).
                unsafe { self.lock.unlock() };
                true
            };
            // SAFETY: our node (naming this G) was queued under the lock, unreachable before the
            // commit's unlock (its last access); a releaser pops it under the lock once and readies
            // it once (waitlist invariant 2). Unlocking neither parks nor panics.
            unsafe { park(reason, commit) };
            if node.granted.get() || self.try_acquire() {
                break;
            }
        }
        mprof::block_end(t0);
    }

    /// Go's `semrelease1`: adds a unit and wakes a waiter; `handoff` hands the unit straight to
    /// it and yields to it.
    pub(crate) fn release(&self, handoff: bool) {
        // SeqCst: see the module invariants (pairs with acquire's nwait increment).
        self.count.fetch_add(1, Ordering::SeqCst);
        dekker_fence();
        // SeqCst: as above.
        if self.nwait.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.lock.lock();
        // SeqCst: as above.
        if self.nwait.load(Ordering::SeqCst) == 0 {
            // SAFETY: taken above.
            unsafe { self.lock.unlock() };
            return;
        }
        // SAFETY: lock held.
        let list = unsafe { &mut *self.list.get() };
        // SAFETY: lock held.
        let Some(s) = (unsafe { list.pop_front() }) else {
            // SAFETY: taken above.
            unsafe { self.lock.unlock() };
            return;
        };
        // SeqCst: as above.
        self.nwait.fetch_sub(1, Ordering::SeqCst);
        // Mutex profile: this unlock is charged with the time every waiter (the one woken and
        // those still queued) has waited since the previous charge, and their clocks restart
        // now. Each waiter's wait is then split among the unlocks that happened during it, so a
        // holder's total is its hold time times the waiters it kept out (Go 1.22's semrelease1
        // estimates the same sum from the head and tail waiters; the list is walked here anyway).
        // Charging each woken waiter's whole wait to the last unlocker instead would credit one
        // holder with every earlier holder's share.
        let mut waited = None;
        let since = s.since.get();
        if since != 0 {
            let now = nanotime();
            let mut sum = now.saturating_sub(since);
            // The woken waiter may lose the race for the unit and queue again: from now on.
            s.since.set(now);
            // SAFETY: lock held.
            unsafe {
                list.for_each(|x| {
                    let t = x.since.get();
                    if t != 0 {
                        sum = sum.saturating_add(now.saturating_sub(t));
                        x.since.set(now)
                    }
                })
            };
            waited = Some(sum);
        }
        // SAFETY: taken above.
        unsafe { self.lock.unlock() };
        let granted = handoff && self.try_acquire();
        s.granted.set(granted);
        let g = s.g;
        // SAFETY: we popped the node under the lock, and a node is queued and its goroutine
        // parked in one critical section (waitlist invariant 2): its park is committed and only
        // the one who pops the node readies it. This is that `ready`.
        unsafe { ready(g) };
        if let Some(d) = waited {
            mprof::mutex_event(d);
        }
        if granted && in_goroutine() {
            // Let the waiter we handed the unit to run now (Go's goyield).
            yield_now();
        }
    }
}

/// loom models (`--cfg gort_loom`): the real `Sema` on loom threads, whose `park`/`ready`
/// follow `park_thread` and whose lock is a spin lock (`crate::loom`). A lost wakeup is an
/// acquirer parked forever, which loom reports as a deadlock; a second `ready` panics.
#[cfg(all(test, gort_loom))]
mod loom_models {
    use std::sync::Arc;

    use super::Sema;
    use crate::loom::{model, Ordering, WaitReason};

    fn acquire(s: &Sema) {
        s.acquire(false, WaitReason::Model, false);
    }

    /// Every unit released is taken, nobody is left counted as waiting or queued.
    fn check_drained(s: &Sema) {
        assert_eq!(s.count.load(Ordering::Relaxed), 0, "units left over or lost");
        assert_eq!(s.nwait.load(Ordering::Relaxed), 0);
        // SAFETY: every thread that touched the list has been joined.
        assert!(unsafe { (*s.list.get()).pop_front() }.is_none(), "a waiter left queued");
    }

    /// One acquire against one release (the Dekker pair of `count` and `nwait`): the acquirer
    /// always gets the unit.
    #[test]
    fn release_wakes_acquirer() {
        model(3, || {
            let s = Arc::new(Sema::new());
            let r = loom::thread::spawn({
                let s = s.clone();
                move || s.release(false)
            });
            acquire(&s);
            r.join().unwrap();
            check_drained(&s);
        });
    }

    /// As above with `handoff` (a starving `Mutex`): the releaser takes the unit for the waiter
    /// (`granted`) when it can, and the unit is never counted twice.
    #[test]
    fn handoff_release_wakes_acquirer() {
        model(3, || {
            let s = Arc::new(Sema::new());
            let r = loom::thread::spawn({
                let s = s.clone();
                move || s.release(true)
            });
            acquire(&s);
            r.join().unwrap();
            check_drained(&s);
        });
    }

    /// Two acquirers, two releases (one after the other, from one thread): both acquirers get a
    /// unit, whichever order things happen in, including a release that finds the first
    /// acquirer queued and the second one not yet counted.
    #[test]
    fn two_acquirers_two_releases() {
        model(3, || {
            let s = Arc::new(Sema::new());
            let a = loom::thread::spawn({
                let s = s.clone();
                move || acquire(&s)
            });
            let r = loom::thread::spawn({
                let s = s.clone();
                move || {
                    s.release(false);
                    s.release(false);
                }
            });
            acquire(&s);
            a.join().unwrap();
            r.join().unwrap();
            check_drained(&s);
        });
    }
}
