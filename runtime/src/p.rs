//! P: a processor, the right to run Rust code on behalf of goroutines.
//!
//! A P carries what must be local to be fast: the run queue (a crossbeam Chase-Lev deque used
//! FIFO), the `runnext` slot, the timer heap, and caches of free Gs and stacks. Exactly
//! `GOMAXPROCS` Ps exist; an M must hold one to run goroutines.
//!
//! # Ownership
//!
//! `status` says who owns the P:
//!
//! | status      | owner                                    | who may move it out                   |
//! |-------------|------------------------------------------|---------------------------------------|
//! | `P_IDLE`    | the idle list (under the sched lock)     | `pidleget`                            |
//! | `P_RUNNING` | an M in runtime code (scheduler, park…)  | that M                                |
//! | `P_USER`    | an M running a goroutine's user code     | that M (-> RUNNING, `usergate.rs`), or sysmon (CAS -> IDLE: retake of a hog) |
//! | `P_SYSCALL` | an M inside `blocking`                   | that M (CAS -> RUNNING), or sysmon (CAS -> IDLE: handoff) |
//!
//! `P_USER` and `P_SYSCALL` carry the owning M's [`M::tag`](crate::m::M::tag) above the state
//! ([`P_STATE`] masks it off): an M that lost its P while it ran user code finds out with its
//! CAS even when the P has gone round to another M and back to the same state (an ABA), and so
//! never takes the P from under the goroutine that M runs now.
//!
//! Fields marked *owner only* (`runq`, `gfree`, `stacks`, `watch`) are touched only by the M that moved
//! the status into RUNNING (with a successful CAS, by `usergate.rs`'s way back from its own
//! `P_USER`, or by being handed the P). The CAS that takes ownership is Acquire and the store
//! that gives it up is Release, so the owner's writes to those fields are visible to the next
//! owner.

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crossbeam_deque::{Stealer, Worker};
use parking_lot::Mutex;

use crate::g::{GRef, G};
use crate::runnext::RunNext;
use crate::schedstats::SchedStats;
use crate::stack::Stack;
use crate::timer_heap::TimerHeap;
use crate::usergate::UserGate;

pub(crate) const P_IDLE: u32 = 0;
pub(crate) const P_RUNNING: u32 = 1;
pub(crate) const P_USER: u32 = 2;
pub(crate) const P_SYSCALL: u32 = 3;
/// The bits of `status` that hold the state; the rest name the owner (module docs).
pub(crate) const P_STATE: u32 = 3;

/// Free Gs kept per P before spilling half to the global list.
pub(crate) const GFREE_MAX: usize = 64;
/// Stacks kept per P before spilling half to the global pool.
pub(crate) const STACK_CACHE_MAX: usize = 32;

/// A P's share of the live goroutines' count, on a line of its own (two: the adjacent-line
/// prefetcher pairs lines), so that its owner's writes do not evict what other Ms read.
#[repr(align(128))]
pub(crate) struct LiveCount(pub(crate) AtomicIsize);

pub(crate) struct P {
    /// Index in `allp` (0-based).
    pub(crate) id: usize,
    /// Ownership state, see the module docs.
    pub(crate) status: AtomicU32,
    /// How its M takes it back from `P_USER` and sysmon takes it away (`usergate.rs`).
    pub(crate) gate: UserGate,
    /// Local run queue (owner only: the Worker end).
    pub(crate) runq: UnsafeCell<Worker<GRef>>,
    /// Thieves' end of `runq`.
    pub(crate) stealer: Stealer<GRef>,
    /// A G readied by the running G runs next (before the queue): what makes handoffs fast.
    /// Not owner only: thieves take from it, and a readier in user code publishes into it even
    /// if the P was taken from its M meanwhile (`runnext.rs`).
    pub(crate) runnext: RunNext,
    /// Incremented every time the P starts running a G; sysmon reads it to find hogs.
    pub(crate) schedtick: AtomicU64,
    /// The `schedtick` by which every sleeper a timer pass queued at the tail has had its turn
    /// (written and read by the owner only, in `run_timers`).
    pub(crate) timer_fifo_until: AtomicU64,
    /// Timer passes in a row that held a backlog back for room in the run queue (written and
    /// read by the owner only, in `run_timers`).
    pub(crate) timer_held: AtomicU32,
    /// Goroutines spawned on this P minus goroutines that finished on it (negative when more
    /// finished here than started): a share of `num_goroutine`'s sum. Written by the owner only
    /// (a load and a store, no read-modify-write): one counter for the whole process was a
    /// cache line that the spawning P and the P where goroutines end passed back and forth on
    /// every spawn. Padded to a line of its own, away from the fields other Ms read.
    pub(crate) nlive: LiveCount,
    /// Incremented every time the P's G enters `blocking`; sysmon reads it.
    pub(crate) syscalltick: AtomicU64,
    /// The G running on this P (for sysmon's preempt flag and schedtrace); null when none.
    pub(crate) curg: AtomicPtr<G>,
    /// This P's timers.
    pub(crate) timers: Mutex<TimerHeap>,
    /// `when` of the earliest timer in `timers`, u64::MAX when empty (read without the lock).
    pub(crate) timer0: AtomicU64,
    /// Free G cache (owner only).
    pub(crate) gfree: UnsafeCell<Vec<GRef>>,
    /// Free stack cache (owner only).
    pub(crate) stacks: UnsafeCell<Vec<Stack>>,
    /// What this P's owner keeps to find work stranded on other Ps (owner only).
    pub(crate) watch: UnsafeCell<Watcher>,
    /// Scheduling-latency and park-duration histograms (written by the owner only).
    pub(crate) stats: SchedStats,
}

// SAFETY: the UnsafeCell fields are owner-only (module docs): exactly one M owns a P at a time,
// ownership moves with Acquire/Release on `status` or under the sched lock; the other fields are
// atomics or locks.
unsafe impl Sync for P {}
// SAFETY: as above.
unsafe impl Send for P {}

/// What a P's owner keeps to find work stranded on other Ps (`sched/find.rs`, `take_stranded`):
/// when to look next, and what it saw of each P last time.
#[derive(Default)]
pub(crate) struct Watcher {
    /// The owner's `schedtick` at which to read the cycle counter next.
    pub(crate) next_tick: u64,
    /// Schedules between readings of the cycle counter, adapted to how fast this P schedules.
    pub(crate) stride: u64,
    /// The cycle counter at the last look.
    pub(crate) last: u64,
    /// One per P.
    pub(crate) peers: Vec<Watch>,
}

/// What a P's owner saw of another P when it last looked: its `schedtick`, and since when (on
/// the runtime clock; 0 if not noted) that tick has stood while work waited on it.
#[derive(Clone, Copy, Default)]
pub(crate) struct Watch {
    pub(crate) tick: u64,
    pub(crate) since: u64,
}

/// Length of a P's local run queue past which its older half moves to the global queue (Go's
/// `runq` has a fixed 256 slots). Unbounded, a fan-out like skynet runs breadth-first and keeps
/// most of its tree alive at once; 256 cost the wide fan-outs (a WaitGroup of 100k) more than
/// 1024 does (the benchmark README, run 5, has the A/B).
pub(crate) const LOCAL_RUNQ_MAX: usize = 1024;

impl P {
    pub(crate) fn new(id: usize) -> P {
        let w = Worker::new_fifo();
        let stealer = w.stealer();
        P {
            id,
            status: AtomicU32::new(P_IDLE),
            gate: UserGate::new(),
            runq: UnsafeCell::new(w),
            stealer,
            runnext: RunNext::new(),
            schedtick: AtomicU64::new(0),
            timer_fifo_until: AtomicU64::new(0),
            timer_held: AtomicU32::new(0),
            nlive: LiveCount(AtomicIsize::new(0)),
            syscalltick: AtomicU64::new(0),
            curg: AtomicPtr::new(ptr::null_mut()),
            timers: Mutex::new(TimerHeap::default()),
            timer0: AtomicU64::new(u64::MAX),
            gfree: UnsafeCell::new(Vec::new()),
            stacks: UnsafeCell::new(Vec::new()),
            watch: UnsafeCell::new(Watcher::default()),
            stats: SchedStats::new(),
        }
    }

    /// The local run queue.
    ///
    /// # Safety
    /// Only the owner of this P may call it, and must not keep the reference across a point where
    /// it could lose the P (a switch to a goroutine, a `leave`).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn runq(&self) -> &mut Worker<GRef> {
        // SAFETY: the caller owns the P (see the # Safety section), so no other reference exists.
        unsafe { &mut *self.runq.get() }
    }

    /// # Safety
    /// As for [`P::runq`].
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn gfree(&self) -> &mut Vec<GRef> {
        // SAFETY: the caller owns the P.
        unsafe { &mut *self.gfree.get() }
    }

    /// # Safety
    /// As for [`P::runq`].
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn stacks(&self) -> &mut Vec<Stack> {
        // SAFETY: the caller owns the P.
        unsafe { &mut *self.stacks.get() }
    }

    /// # Safety
    /// As for [`P::runq`].
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn watcher(&self) -> &mut Watcher {
        // SAFETY: the caller owns the P.
        unsafe { &mut *self.watch.get() }
    }

    /// Puts `g` on this P's queue; with `next`, into `runnext`, kicking the old occupant to the
    /// tail of the queue. A queue longer than [`LOCAL_RUNQ_MAX`] sends its older half to the
    /// global queue.
    ///
    /// # Safety
    /// The caller owns the P.
    #[inline]
    pub(crate) unsafe fn runqput(&self, g: GRef, next: bool) {
        let g = if next {
            // A SeqCst swap: the publish of the spinning protocol for `ready`, which then skips
            // the fence (`wakep_after_sc_publish`).
            let old = self.runnext.swap_in(g.as_ptr() as usize);
            if old == 0 {
                return;
            }
            // SAFETY: runnext only ever holds pointers made from GRefs.
            unsafe { GRef::from_ptr(old as *const G) }
        } else {
            g
        };
        // SAFETY: the caller owns the P.
        unsafe { self.runq_push(g) }
    }

    /// `runqput`'s queue half, out of line: a hand-off to an empty `runnext` (every wake of a
    /// ping-pong) is the whole of the inlined part.
    ///
    /// # Safety
    /// The caller owns the P.
    #[inline(never)]
    unsafe fn runq_push(&self, g: GRef) {
        // SAFETY: the caller owns the P.
        let q = unsafe { self.runq() };
        q.push(g);
        if q.len() > LOCAL_RUNQ_MAX {
            // Go's runqputslow: the local queue is bounded; its older half moves to the global
            // queue. Recent work stays local (a spawner's children run before its ancestors'
            // queued siblings), which keeps fan-out trees like skynet depth-first enough that far
            // fewer goroutines are alive at once.
            let half = (0..LOCAL_RUNQ_MAX / 2).map_while(|_| q.pop());
            crate::globrunq::global().push_batch(half);
        }
    }

    /// Takes the next G to run from this P: runnext first, then the queue.
    ///
    /// # Safety
    /// The caller owns the P.
    pub(crate) unsafe fn runqget(&self) -> Option<GRef> {
        let g = self.runnext.take();
        if g != 0 {
            // SAFETY: runnext only holds pointers made from GRefs.
            return Some(unsafe { GRef::from_ptr(g as *const G) });
        }
        // SAFETY: the caller owns the P.
        unsafe { self.runq().pop() }
    }

    /// Whether this P has queued Gs (a racy hint for anyone).
    pub(crate) fn has_work(&self) -> bool {
        self.runnext.load(Ordering::Relaxed) != 0 || !self.stealer.is_empty()
    }

    /// Queue length for schedtrace (racy).
    pub(crate) fn runq_len(&self) -> usize {
        self.stealer.len() + usize::from(self.runnext.load(Ordering::Relaxed) != 0)
    }

    /// Whether a timer on this P is due at `now`.
    pub(crate) fn timers_due(&self, now: u64) -> bool {
        self.timer0.load(Ordering::Relaxed) <= now
    }
}
