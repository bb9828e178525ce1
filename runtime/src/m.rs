//! M: an OS thread that runs the scheduler loop.
//!
//! Ms are created on demand by `startm` and never exit (an idle M sleeps on its note). Because Ms
//! never exit, a thread-local read by a goroutine on one M stays valid memory after the goroutine
//! migrates; see the crate docs for why that is still a contract users must keep.
//!
//! # Thread-locals and migration
//!
//! A goroutine can switch out on one M and come back on another. The runtime's own "current M"
//! is a thread-local read only through [`current_m`], which is `#[inline(never)]`: the compiler
//! cannot keep a thread-local address from before a switch in a register across it
//! (a known failure of stackful coroutines in Rust). Code on a goroutine stack must call it again after every park.

use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use crate::blockcache::BlockCache;
use crate::g::{GRef, Resumer, G};
use crate::p::{P, P_STATE};
use crate::stack::SpareStack;

/// A one-shot wakeup flag with a futex-backed sleep (std's park/unpark).
pub(crate) struct Note {
    woken: AtomicBool,
    thread: Thread,
}

impl Note {
    pub(crate) fn new(thread: Thread) -> Note {
        Note { woken: AtomicBool::new(false), thread }
    }

    /// Wakes the sleeper (or makes its next sleep return at once).
    pub(crate) fn wake(&self) {
        // SeqCst: Release pairs with the Acquire swap in `sleep`, publishing what the waker set
        // up (e.g. `M::nextp`) before the sleeper resumes; SeqCst also orders it before the
        // waker's load of `M::polling` (Dekker pair with `try_consume`, see `sched::wake_m`).
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }

    /// Consumes a pending wakeup without sleeping; returns whether there was one.
    pub(crate) fn try_consume(&self) -> bool {
        // SeqCst: pairs with the SeqCst store in `wake` (and Acquire for what it published).
        self.woken.swap(false, Ordering::SeqCst)
    }

    /// Sleeps until woken. Must be called by the owning thread.
    pub(crate) fn sleep(&self) {
        // Acquire: pairs with the Release store in `wake`.
        while !self.woken.swap(false, Ordering::Acquire) {
            std::thread::park();
        }
    }

    /// Sleeps until woken or `timeout` passes; returns whether it was woken.
    pub(crate) fn sleep_timeout(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // Acquire: pairs with the Release store in `wake`.
            if self.woken.swap(false, Ordering::Acquire) {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}

pub(crate) struct M {
    /// 1-based thread number (for traces and thread names).
    pub(crate) id: usize,
    /// `id` above a P's state bits: `P_USER | tag` and `P_SYSCALL | tag` say that this M owns
    /// the P in that state (`p.rs`).
    pub(crate) tag: u32,
    /// The P this M holds, if any. Only this M's thread reads or writes it.
    pub(crate) p: Cell<Option<&'static P>>,
    /// A P handed to this M by `startm` while it slept.
    pub(crate) nextp: AtomicPtr<P>,
    /// The M joined the idle list when it gave its P back (`find::give_p_back`), before `stopm`;
    /// `stopm` must not join again. Only this M's thread reads or writes it.
    pub(crate) idle_early: Cell<bool>,
    /// Whether this M is spinning (looking for work while holding a P); counted in
    /// `Sched::nmspinning`. Written by the M's thread (and by `startm` before waking it).
    pub(crate) spinning: AtomicBool,
    /// Whether this M's spin began with a wake-up for readied work (`startm` with `spinning`),
    /// so that its outcome tells whether such wakes pay (`sched/idle.rs`, `FUTILE_SPINS`).
    /// Written as `spinning` is.
    pub(crate) woken_to_spin: AtomicBool,
    /// The goroutine running on this M (null in the scheduler loop). Read by the signal handler.
    pub(crate) curg: AtomicPtr<G>,
    /// Where the M sleeps when idle.
    pub(crate) note: Note,
    /// The M is (about to be) blocked in the network poller instead of on its note: waking it
    /// also needs `Poller::wake` (see `sched::wake_m`).
    pub(crate) polling: AtomicBool,
    /// Goroutine whose `go!` created this thread (for the threadcreate profile), 0 if none.
    pub(crate) created_by: AtomicUsize,
    /// Return addresses (leaf first) of the code that created this thread (Go's
    /// `mp.createstack`), for the threadcreate profile. Written once before the M is published
    /// in `allm`.
    pub(crate) create_stack: Vec<usize>,
    /// The goroutine wired to this M (`lock_os_thread`), null if none: the M runs nothing else,
    /// and sleeps without a P while it waits.
    pub(crate) lockedg: AtomicPtr<G>,
    /// The thread's kernel id and pthread (a CPU profile arms a timer on its CPU clock).
    pub(crate) tid: libc::pid_t,
    pub(crate) pthread: libc::pthread_t,
    /// The CPU profile generation this M's own timer is armed for (`cpuprof`; read by the
    /// SIGPROF handler).
    pub(crate) cpu_gen: AtomicU64,
    /// Whether `cpu_timer` holds an armed timer (read by the SIGPROF handler).
    pub(crate) cpu_armed: AtomicBool,
    /// This M's CPU-profile timer, if armed (`timer_t` as a word); changed under the lock by
    /// whoever arms or disarms it.
    pub(crate) cpu_timer: parking_lot::Mutex<Option<usize>>,
    /// A request for this M's running goroutine's stack, and the answer (`running.rs`).
    pub(crate) stack_req: AtomicU32,
    pub(crate) stack_data: UnsafeCell<StackData>,
    /// Recycled memory for spawned goroutines' tasks (`blockcache.rs`). Only code running on
    /// this M's thread touches it, in calls that cannot switch goroutines.
    pub(crate) blocks: UnsafeCell<BlockCache>,
    /// While scheduler timing is on: the tick at which this M last switched a goroutine out, as
    /// long as it has done nothing slow since (0 otherwise). The next goroutine it starts takes
    /// it as its start time instead of reading the clock again: the few dozen nanoseconds in
    /// between are the scheduler's, charged to neither. Only this M's thread touches it.
    pub(crate) t_out: Cell<u64>,
    /// How many of `mhooks`' hooks this M has run. Only this M's thread touches it.
    pub(crate) hooks_run: Cell<usize>,
    /// This M's thread's [`preempt_requested`] flag: sysmon sets it (with the goroutine's
    /// `G::preempt`) to ask the goroutine running here to yield at its next blocking operation.
    pub(crate) preempt: &'static AtomicBool,
    /// The commit closure of the goroutine parking on this M (`park`): set by the goroutine
    /// just before it switches out with `Yield::Park`, taken by the M right after. It points
    /// into the parked goroutine's frozen stack. Only this M's thread touches it.
    pub(crate) park_commit: Cell<Option<Commit>>,
    /// Where a goroutine's walk of its own stack runs (`traceback::capture`), so that the walk
    /// does not eat into the goroutine's fixed-size stack. Mapped on first use; only this M's
    /// thread and its signal handlers touch it.
    pub(crate) spare: SpareStack,
}

/// A parking goroutine's commit closure, its lifetime erased (see `park::park`).
pub(crate) type Commit = *mut (dyn FnMut(GRef) -> bool + 'static);

// SAFETY: `p`, `t_out`, `hooks_run` and `park_commit` (Cells) are only accessed from the M's
// own thread (documented on the fields); `stack_data` only by whoever holds it through
// `stack_req` (the protocol in `running.rs`); every other field is atomic, locked or immutable.
unsafe impl Sync for M {}
// SAFETY: as above.
unsafe impl Send for M {}

impl M {
    pub(crate) fn new(id: usize, thread: Thread) -> M {
        M {
            id,
            tag: u32::try_from(id).ok().and_then(|i| i.checked_mul(P_STATE + 1)).expect("gort: too many threads"),
            p: Cell::new(None),
            nextp: AtomicPtr::new(ptr::null_mut()),
            idle_early: Cell::new(false),
            spinning: AtomicBool::new(false),
            woken_to_spin: AtomicBool::new(false),
            curg: AtomicPtr::new(ptr::null_mut()),
            note: Note::new(thread),
            polling: AtomicBool::new(false),
            created_by: AtomicUsize::new(0),
            create_stack: Vec::new(),
            lockedg: AtomicPtr::new(ptr::null_mut()),
            // SAFETY: gettid and pthread_self have no preconditions; M::new runs on the M's own
            // thread.
            tid: unsafe { libc::gettid() },
            // SAFETY: as above.
            pthread: unsafe { libc::pthread_self() },
            cpu_gen: AtomicU64::new(0),
            cpu_armed: AtomicBool::new(false),
            cpu_timer: parking_lot::Mutex::new(None),
            stack_req: AtomicU32::new(STACK_IDLE),
            stack_data: UnsafeCell::new(StackData::new()),
            blocks: UnsafeCell::new(BlockCache::new()),
            t_out: Cell::new(0),
            hooks_run: Cell::new(0),
            park_commit: Cell::new(None),
            spare: SpareStack::new(),
            // SAFETY: the flag is a thread-local of this thread (`M::new` runs on the M's own
            // thread), and Ms never exit, so it lives as long as the program.
            preempt: PREEMPT.with(|f| unsafe { &*(f as *const AtomicBool) }),
        }
    }

    /// The goroutine running on this M, if any.
    pub(crate) fn curg(&self) -> Option<GRef> {
        let g = self.curg.load(Ordering::Relaxed);
        if g.is_null() {
            None
        } else {
            // SAFETY: curg only holds pointers made from GRefs.
            Some(unsafe { GRef::from_ptr(g) })
        }
    }

    /// This M as the value it resumes a goroutine with (see [`resumed_by`]). Only the M loop,
    /// on this M's own thread, calls it.
    pub(crate) fn resumer(&'static self) -> Resumer {
        // SAFETY: `self` is 'static (Ms never exit), and the M loop passes it only to the
        // goroutine it resumes on this thread.
        unsafe { Resumer::new(self as *const M as *const ()) }
    }
}

/// The M that resumed the calling goroutine, from the value its switch returned: this thread's
/// M, without the thread-local read of [`current_m`], until the goroutine switches again.
#[inline]
pub(crate) fn resumed_by(r: Resumer) -> &'static M {
    // SAFETY: a Resumer is only made by `M::resumer` (`Resumer::new`'s contract), from a
    // 'static M, which the M loop hands to the goroutine it resumes on its own thread.
    unsafe { &*(r.as_ptr() as *const M) }
}

thread_local! {
    static CURRENT_M: Cell<*const M> = const { Cell::new(ptr::null()) };
}

thread_local! {
    /// See [`preempt_requested`].
    static PREEMPT: AtomicBool = const { AtomicBool::new(false) };
}

/// Whether sysmon asked the goroutine running on this thread to yield (it has run past its
/// slice while work waits). Read inline at the entry of blocking operations (`park::preempt_point`),
/// so this is the one runtime thread-local read that does not go through [`current_m`]: where
/// the compiler reuses an address computed before a switch, the load reads another M's flag,
/// which is still live memory (Ms never exit) and an atomic; the request is then seen a little
/// later, or a goroutine looks for one that was not made, and `preempt_point`'s slow path
/// reads everything again through [`current_m`].
#[inline(always)]
pub(crate) fn preempt_requested() -> bool {
    PREEMPT.with(|f| f.load(Ordering::Relaxed))
}

/// The M this thread is, if it is one. Never inlined: see the module docs.
#[inline(never)]
pub(crate) fn current_m() -> Option<&'static M> {
    let m = CURRENT_M.with(|c| c.get());
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    if m.is_null() {
        None
    } else {
        // SAFETY: CURRENT_M is set once per M thread to a leaked (never freed) M.
        Some(unsafe { &*m })
    }
}

pub(crate) fn set_current_m(m: &'static M) {
    CURRENT_M.with(|c| c.set(m));
}

/// `M::stack_req` with no request pending.
pub(crate) const STACK_IDLE: u32 = 0;

/// What a stack request's signal handler leaves in an M's slot (`running.rs`).
pub(crate) struct StackData {
    pub(crate) goid: u64,
    pub(crate) len: usize,
    pub(crate) truncated: bool,
    /// A reference to the goroutine's labels (`G::labels_ref`), or null.
    pub(crate) labels: *const crate::g::Labels,
    pub(crate) pcs: [usize; crate::unwind::MAX_DEPTH],
}

impl StackData {
    pub(crate) const fn new() -> StackData {
        StackData { goid: 0, len: 0, truncated: false, labels: std::ptr::null(), pcs: [0; crate::unwind::MAX_DEPTH] }
    }
}

/// Every M ever created (Ms never exit), in creation order.
static ALLM: parking_lot::Mutex<Vec<&'static M>> = parking_lot::Mutex::new(Vec::new());

/// Records a new M (by its own thread, before it runs anything).
pub(crate) fn register(m: &'static M) {
    ALLM.lock().push(m);
}

/// Every M so far.
pub(crate) fn all() -> Vec<&'static M> {
    ALLM.lock().clone()
}

/// The M `g` is wired to by `lock_os_thread`, if any.
#[inline]
pub(crate) fn lockedm_of(g: GRef) -> Option<&'static M> {
    let p = g.0.lockedm.load(Ordering::Relaxed) as *const M;
    // SAFETY: `lockedm` holds null or a pointer made from a `&'static M` by `set_lockedm`, and
    // Ms are never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Wires `g` to `m` (or unwires it with `None`); returns whether it was wired before. Written
/// by the goroutine itself while it runs, or by the M that saw it finish.
pub(crate) fn set_lockedm(g: GRef, m: Option<&'static M>) -> bool {
    let p = m.map_or(ptr::null_mut(), |m| m as *const M as *mut ());
    !g.0.lockedm.swap(p, Ordering::Relaxed).is_null()
}
