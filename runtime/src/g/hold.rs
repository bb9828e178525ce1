//! The hold on a switched-out goroutine: how a scanner (the goroutine profile, the leak census,
//! the wall-clock profile) reads a parked stack while the scheduler switches goroutines without
//! a locked instruction for it.
//!
//! A goroutine that is not running (`WAITING`, or `RUNNABLE` after it switched out) has a frozen
//! stack until an M resumes it. A scanner that holds it keeps any M from resuming it until the
//! scanner lets go; nothing else about the goroutine waits: it can be readied, queued, stolen.
//!
//! # Invariants
//!
//! 1. The hold word is 0 (free) or 1 (held); only a compare-exchange from 0 takes it, so one
//!    scanner holds a goroutine at a time, and only its holder frees it.
//! 2. **No goroutine runs while a scanner reads its stack.** The M about to resume a goroutine
//!    stores `RUNNING` in its status, then (after a light fence) reads the hold word, and if it
//!    is taken waits until it is free before it resumes the stack ([`Hold::run`]). A scanner takes
//!    the hold, then (after a heavy fence) reads the status, and reads the stack only if that
//!    says `WAITING` or `RUNNABLE`; else it frees the hold at once. This is `fence.rs`'s
//!    asymmetric Dekker pair: either the M sees the hold and waits, or the scanner sees
//!    `RUNNING` and reads nothing. The scanner's reads come before its release store, and the
//!    M's Acquire load that sees the hold free comes before its resume.
//! 3. The heavy fence costs a system call and an interrupt per other CPU running a thread of
//!    ours, so a scanner of many goroutines holds a batch, fences once, and frees each as soon
//!    as it has read it. Where the heavy fence cannot be had (`fence.rs`, invariant 3) the
//!    scanner frees its holds and reads nothing.
//!
//! The other moves of the status word (a park's `RUNNING -> WAITING`, a ready's
//! `WAITING -> RUNNABLE`) are plain stores by the goroutine's one owner at that moment: neither
//! touches the stack, so a scanner need not exclude them.
//!
//! The loom models at the bottom run an M resuming a readied goroutine against one or two
//! scanners, with the stack as a loom cell (which reports a read that overlaps a write);
//! `tests/loom.rs` runs them.

#[cfg(gort_loom)]
use ::loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(gort_loom))]
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fence::{heavy_fence, light_fence};

/// A goroutine's hold word (invariant 1).
pub(crate) struct Hold(AtomicU32);

impl Hold {
    #[cfg(not(gort_loom))]
    pub(crate) const fn new() -> Hold {
        Hold(AtomicU32::new(0))
    }

    #[cfg(gort_loom)]
    pub(crate) fn new() -> Hold {
        Hold(AtomicU32::new(0))
    }

    /// The resuming M's half of invariant 2: stores `running` in `status`, then waits while a
    /// scanner holds the goroutine. Release: pairs with the scanner's Acquire load of the status
    /// (nothing is published through it but the state).
    #[inline(always)]
    pub(crate) fn run(&self, status: &AtomicU32, running: u32) {
        status.store(running, Ordering::Release);
        light_fence();
        // Ordered after the store by the fence above. Acquire: it may read a scanner's `free`
        // (after the scanner took, fenced, read the stack and let go), whose reads must then come
        // before the resume as well.
        if self.0.load(Ordering::Acquire) != 0 {
            self.wait_free();
        }
    }

    #[cold]
    #[inline(never)]
    fn wait_free(&self) {
        let mut spins = 0u32;
        // Acquire: pairs with the scanner's Release in `free`, so its reads of the stack come
        // before the resume.
        while self.0.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins > 100 {
                yield_thread();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Takes the hold, waiting out another scanner's (invariant 1). The caller then runs
    /// [`fence_holds`] before it reads the status.
    pub(crate) fn take(&self) {
        // Acquire: pairs with the previous holder's `free`; nothing else is published by it.
        while self.0.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            yield_thread();
        }
    }

    /// Frees the hold. Release: pairs with the Acquire of a waiting M (invariant 2).
    pub(crate) fn free(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// The scanner's fence between taking holds and reading statuses (invariant 2): whether the
/// holds taken so far now keep their goroutines from running (invariant 3).
#[inline]
pub(crate) fn fence_holds() -> bool {
    heavy_fence()
}

fn yield_thread() {
    #[cfg(gort_loom)]
    ::loom::thread::yield_now();
    #[cfg(not(gort_loom))]
    std::thread::yield_now();
}

#[cfg(all(test, gort_loom))]
mod loom_models {
    use ::loom::cell::UnsafeCell;
    use ::loom::sync::atomic::{AtomicU32, Ordering};
    use ::loom::sync::Arc;

    use super::*;

    const RUNNABLE: u32 = 1;
    const RUNNING: u32 = 2;
    const WAITING: u32 = 3;

    /// A parked goroutine: its status, hold and stack.
    struct Gor {
        status: AtomicU32,
        hold: Hold,
        stack: UnsafeCell<u32>,
    }
    // SAFETY: the stack is written only by the M that resumed the goroutine and read only by a
    // scanner that holds it, which the protocol under test keeps apart (loom checks it).
    unsafe impl Sync for Gor {}

    /// What a scanner does (`GRef::with_parked`): take the hold, fence, read the stack if the
    /// status says it is frozen, free. Returns whether it read.
    fn scan(g: &Gor) -> bool {
        g.hold.take();
        let fenced = fence_holds();
        let s = g.status.load(Ordering::Acquire);
        let read = fenced && (s == WAITING || s == RUNNABLE);
        if read {
            // SAFETY: held, and the status said the goroutine was not running (invariant 2).
            g.stack.with(|p| assert_eq!(unsafe { *p }, 7, "read a stack that runs"));
        }
        g.hold.free();
        read
    }

    /// A parked goroutine is readied and resumed (its stack written), while `scanners` scan it:
    /// loom's cell reports a scan that overlaps the resumed goroutine's write. The waker's store
    /// and the resume run on one thread, as when the waker's own M runs the goroutine next.
    fn resume_against(scanners: usize, preemptions: usize) {
        let mut b = ::loom::model::Builder::new();
        b.preemption_bound = Some(preemptions);
        // The scanners' waits for each other's hold are yield loops: long paths.
        b.max_branches = 10_000;
        b.check(move || {
            let g = Arc::new(Gor { status: AtomicU32::new(WAITING), hold: Hold::new(), stack: UnsafeCell::new(7) });
            let ss: Vec<_> = (0..scanners)
                .map(|_| {
                    let g = g.clone();
                    ::loom::thread::spawn(move || scan(&g))
                })
                .collect();
            // The waker's plain store, then the M's resume.
            g.status.store(RUNNABLE, Ordering::Release);
            g.hold.run(&g.status, RUNNING);
            // SAFETY: resumed: the stack is the goroutine's (invariant 2).
            g.stack.with_mut(|p| unsafe { *p = 8 });
            for s in ss {
                s.join().unwrap();
            }
            assert_eq!(g.hold.0.load(Ordering::Relaxed), 0, "a hold left taken");
        });
    }

    #[test]
    fn resume_against_a_scanner() {
        resume_against(1, 3);
    }

    #[test]
    fn resume_against_two_scanners() {
        resume_against(2, 1);
    }
}
