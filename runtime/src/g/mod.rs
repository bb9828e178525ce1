//! G: a goroutine (or a plain OS thread's stand-in).
//!
//! # Ownership
//!
//! G structs are allocated once and never freed: a finished goroutine's G goes to a free list and
//! is reused by a later spawn, exactly as Go keeps `allgs`. That makes [`GRef`] (a `&'static G`)
//! always point at valid memory, lets wait queues hold plain pointers, and lets a snapshot walk
//! every G ever created without stopping the world ([`for_each_g`]).
//!
//! Who owns which field, by state (the `status` word says the state):
//!
//! | state      | who may touch `coroutine`/`entry` | who may change `status`                     |
//! |------------|-----------------------------------|---------------------------------------------|
//! | `IDLE`     | the spawner that popped it        | the spawner (IDLE -> RUNNABLE)              |
//! | `RUNNABLE` | nobody (it sits in a run queue)   | the M that dequeues it (-> RUNNING)         |
//! | `RUNNING`  | the M running it                  | that M / the G itself                       |
//! | `WAITING`  | nobody: its stack is frozen       | `ready` (-> RUNNABLE)                       |
//! | `SYSCALL`  | the G itself (it is running)      | the G itself                                |
//! | `DEAD`     | the M that saw it finish          | that M (-> IDLE via the free list)          |
//!
//! Each move is a plain store by the one owner the table names, not a compare-exchange: a
//! hand-off moves two goroutines' statuses, and a locked instruction is much of what it costs.
//!
//! # The hold
//!
//! A snapshot (goroutine profile, leak census, wall-clock profile) holds a WAITING or RUNNABLE G
//! still with its hold word (`hold.rs`): the M that would resume it waits until the snapshot lets
//! go. So the parked stack cannot start running under the walker's feet, and the walker costs
//! the parked G nothing at park time beyond the three registers [`ParkRegs`] records. The
//! snapshot pays a heavy fence per batch of goroutines ([`for_each_g_held`]), the scheduler
//! a compiler barrier per resume.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::Location;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use corosensei::{Coroutine, Yielder};
use parking_lot::Mutex;

mod hold;
mod labels;
mod wait_reason;

use self::hold::{fence_holds, Hold};
pub(crate) use self::labels::{labels_from_ref, labels_into_ref};
pub use self::wait_reason::WaitReason;
use crate::prefetch::prefetch;
use crate::stack::Stack;
use crate::unwind::{Regs, Walk, WalkCtx};

/// How many code addresses a G keeps from its spawn (see `G::created_pcs`): one, inside the
/// spawning function (the public spawn entry points are inlined into it).
pub const CREATED_PCS: usize = 1;

/// Status values (`G::status`).
pub(crate) const IDLE: u32 = 0;
pub(crate) const RUNNABLE: u32 = 1;
pub(crate) const RUNNING: u32 = 2;
pub(crate) const WAITING: u32 = 3;
pub(crate) const SYSCALL: u32 = 4;
pub(crate) const DEAD: u32 = 5;

/// What kind of execution context a G stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum GKind {
    /// A goroutine on its own pooled stack, run by Ms.
    Goroutine,
    /// A plain OS thread that used a blocking runtime primitive; parking blocks the thread.
    Thread,
}

/// Labels a goroutine carries, opaque to the runtime: cloned into the goroutines it spawns,
/// dropped when it exits. The profiler keeps its label sets here.
pub type Labels = Arc<dyn Any + Send + Sync>;

/// What a goroutine tells its M when it switches out: one byte (a park's commit closure waits
/// on the M, not in here).
#[derive(Clone, Copy)]
#[repr(u8)]
pub(crate) enum Yield {
    /// Park; run the commit closure (Go's unlockf) the goroutine left in its M's
    /// [`M::park_commit`](crate::m::M) first.
    Park,
    /// `yield_now`: requeue at the tail of the local queue.
    Gosched,
    /// The goroutine has no P (sysmon took it) and none is idle: queue it globally.
    NeedP,
}

/// The M that resumes a goroutine, handed to it as the coroutine's resume value, so that code
/// on the goroutine learns which M it runs on after a switch without a thread-local read. Type
/// erased: the goroutine layer sits below the machine (`m.rs` makes and reads it).
#[derive(Clone, Copy)]
pub(crate) struct Resumer(*const ());

impl Resumer {
    /// # Safety
    /// `m` points at an M that is never freed (Ms never exit), and the value is passed only by
    /// that M's thread to the goroutine it resumes.
    pub(crate) unsafe fn new(m: *const ()) -> Resumer {
        Resumer(m)
    }

    pub(crate) fn as_ptr(self) -> *const () {
        self.0
    }
}

pub(crate) type GYielder = Yielder<Resumer, Yield>;
pub(crate) type GCoroutine = Coroutine<Resumer, Yield, (), Stack>;

/// What a G runs: an owned reference to its task, whose type only the spawner knows
/// (`spawn.rs`), so it comes with the two functions that can use it.
pub(crate) struct Entry {
    task: NonNull<()>,
    fns: &'static EntryFns,
}

/// The functions of an [`Entry`]'s task; each consumes the reference.
pub(crate) struct EntryFns {
    /// Runs the task (on its goroutine, once) and releases the reference.
    pub(crate) run: unsafe fn(NonNull<()>),
    /// Releases the reference without running the task.
    pub(crate) release: unsafe fn(NonNull<()>),
}

// SAFETY: an Entry is created only for tasks that may be run and released on any thread
// (`Entry::new`'s contract).
unsafe impl Send for Entry {}

impl Entry {
    /// # Safety
    ///
    /// `task` is a reference the caller owns and hands over; `fns.run` and `fns.release` may be
    /// called with it, once, on any thread, and either consumes it.
    pub(crate) unsafe fn new(task: NonNull<()>, fns: &'static EntryFns) -> Entry {
        Entry { task, fns }
    }

    /// Runs the task, consuming the reference.
    pub(crate) fn run(self) {
        let e = std::mem::ManuallyDrop::new(self);
        // SAFETY: `new`'s contract; `e` is not dropped, so the reference is consumed once.
        unsafe { (e.fns.run)(e.task) }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // SAFETY: `new`'s contract; a dropped Entry never runs, so this is the one use.
        unsafe { (self.fns.release)(self.task) }
    }
}

/// The execution state of a G: its coroutine once started, its entry closure before.
#[derive(Default)]
pub(crate) struct GExec {
    pub(crate) co: Option<GCoroutine>,
    pub(crate) entry: Option<Entry>,
    /// Non-zero: a dedicated stack of this size (Builder::stack_size), not from the pool.
    pub(crate) custom_stack: usize,
    pub(crate) guarded: bool,
    pub(crate) guard_lo: usize,
    pub(crate) guard_hi: usize,
}

/// The registers recorded where a G parked (inside the runtime's switch-out path, in a frame
/// that stays live while it is parked), from which a profiler unwinds its frozen stack.
pub type ParkRegs = Regs;

/// A goroutine descriptor. See the module docs for who owns which field.
///
/// Laid out by hand (`repr(C)`), hot fields first, and aligned to a cache line: a goroutine
/// that has not run for a while (one of 200 taking turns, a sleeper a second later) costs a
/// cache miss per line of its G that the switch touches, and Rust's own layout scattered those
/// fields over six lines.
#[repr(C, align(64))]
pub struct G {
    // Hot: what parking, readying and switching a goroutine touch, in the first three lines.
    /// State word: one of IDLE..DEAD.
    pub(crate) status: AtomicU32,
    /// Nesting depth of runtime calls (`park::enter`) on this goroutine. Touched only by the
    /// goroutine itself while it runs.
    pub(crate) rt_depth: Cell<u32>,
    /// Nesting of `lock_os_thread` calls. Touched only by the goroutine itself while it runs.
    pub(crate) lock_count: Cell<u32>,
    /// Taken by a snapshot that holds the G still (`hold.rs`).
    hold: Hold,
    /// `WaitReason as u8` while WAITING.
    pub(crate) wait_reason: AtomicU8,
    /// Set by sysmon when this G has run too long; the G yields at its next runtime entry.
    pub(crate) preempt: AtomicBool,
    /// Goroutine or thread stand-in; fixed at allocation.
    pub(crate) kind: GKind,
    /// Thread stand-ins of plain (non-M) threads: the thread counts in `threadg::EXT_ACTIVE` while
    /// it is not parked. Written once when the stand-in is created, before it is published.
    pub(crate) outside: AtomicBool,
    /// Fast check so reuse need not take the name lock when there was no name.
    pub(crate) has_name: AtomicBool,
    /// Pointer to the corosensei Yielder of the running coroutine (valid while it runs).
    pub(crate) yielder: Cell<*const GYielder>,
    /// Park site registers (written by the G itself before switching away; read under the hold).
    pub(crate) park_pc: AtomicUsize,
    pub(crate) park_sp: AtomicUsize,
    pub(crate) park_fp: AtomicUsize,
    /// `nanotime()` when the G last started waiting (for `[chan receive, 3 minutes]`).
    pub(crate) wait_since: AtomicU64,
    /// The coroutine and the not-yet-started entry closure: owned per the state table.
    pub(crate) exec: UnsafeCell<GExec>,
    /// The M this goroutine is wired to (`lock_os_thread`), null if none. Written by the
    /// goroutine itself while it runs; read by the M that next dequeues it (the status word's
    /// Release/Acquire orders it) to hand that M's P over.
    /// The M is stored type-erased: `m.rs` owns the type and converts (`m::lockedm_of`).
    pub(crate) lockedm: AtomicPtr<()>,
    /// Labels attached by whoever runs on this goroutine (the profiler's label sets), opaque to
    /// the runtime, which shares them with spawned goroutines and drops them at exit: a thin
    /// pointer from `Arc::into_raw` of an `Arc<Labels>` (one reference owned by the slot), null
    /// if none. Thin and atomic so that a SIGPROF handler interrupting the goroutine can take a
    /// reference with one atomic increment ([`G::labels_ref`]). Changed only by the goroutine
    /// itself while it runs, by its spawner before it is runnable, and by the M that saw it
    /// finish; read by those, by a snapshot holding it, and by a signal handler on
    /// the thread running it.
    pub(crate) labels: AtomicPtr<Labels>,
    // Warm: spawn, exit, dumps and profiles.
    /// Stack bounds [lo, hi) of the current stack (0, 0 before the G first runs).
    pub(crate) stack_lo: AtomicUsize,
    pub(crate) stack_hi: AtomicUsize,
    /// Goroutine id (Go's goid); 0 for thread stand-ins. Changes when the G is reused.
    pub(crate) goid: AtomicU64,
    /// Goid of the goroutine that spawned this one (0: spawned from a plain thread).
    pub(crate) parent_goid: AtomicU64,
    /// Where the `go!`/`spawn` call that created this G stands in the source.
    pub(crate) created_at: AtomicPtr<Location<'static>>,
    /// An address inside the function that spawned this goroutine (Go's `gopc`), so the
    /// profiler can name it.
    pub(crate) created_pcs: [AtomicUsize; CREATED_PCS],
    /// `std::any::type_name::<F>` of the goroutine's body `F` (a `fn() -> &'static str` as a
    /// word; 0: none): names the body in profiles when the optimizer inlined it into the
    /// runtime's entry frame and the binary has no debug info to say so.
    pub(crate) entry_name: AtomicUsize,
    /// What few Gs use ([`GRare`]): null until the first use, then set once for the G's life
    /// (see [`G::rare`]).
    rare: AtomicPtr<GRare>,
}

/// What a G carries only for features that few goroutines or none use by default: scheduler
/// timing and the wall-clock profile (both off by default), a name, `block_on`'s spare, a
/// thread stand-in's thread. Kept out of the G, whose size every live goroutine pays (it took
/// the G from seven cache lines to four), and allocated the first time something needs it. Gs
/// are never freed, and neither is this: a reused G keeps its block, as it kept these fields
/// when they were its own.
pub(crate) struct GRare {
    /// Optional name from `Builder::name`.
    pub(crate) name: Mutex<Option<Arc<str>>>,
    /// Thread stand-ins: the thread to unpark. Written once, before the stand-in is published.
    pub(crate) thread: UnsafeCell<Option<std::thread::Thread>>,
    /// `block_on`'s spare between this goroutine's calls, type-erased here (`parker.rs` owns
    /// what it holds and why), `None` if none. Touched only by the goroutine itself while it
    /// runs, and by the M that saw it finish, which drops it (`goexit0`) so that a goroutine
    /// reusing this G never inherits it.
    pub(crate) block_on_spare: Cell<Option<Box<dyn Any + Send>>>,
    /// Scheduler timestamps (`clock::ticks`, written only while timing is on; see
    /// `schedstats`, which ignores stamps older than the current period): when the G last
    /// switched out to park (0: it did not park), when it was last made runnable, when it last
    /// started running. Written by whoever makes the transition (the M switching it out, the
    /// waker, the M running it), each before the status store that publishes the transition.
    pub(crate) t_park: AtomicU64,
    pub(crate) t_ready: AtomicU64,
    pub(crate) t_run: AtomicU64,
    /// When it last switched out, for whatever reason.
    pub(crate) t_out: AtomicU64,
    /// The wall-clock profile's per-goroutine accumulator ([`WallAcc`]), behind `wall_busy`.
    wall_busy: AtomicBool,
    wall_acc: UnsafeCell<WallAcc>,
    /// The wall-clock profile's stack for this G while it is switched out: a
    /// `parksite::SiteRef` as a word, 0 if none. Written by the M switching it out.
    pub(crate) wall_site: AtomicUsize,
}

// SAFETY: `wall_acc` is accessed only through a `WallAccGuard`, that is while holding
// `wall_busy`; `thread` is written once before the G is shared, and `block_on_spare` has the
// single owner its doc names (as `G`'s goroutine-only `Cell`s); the other fields are atomics or
// a lock.
unsafe impl Sync for GRare {}

impl GRare {
    const fn new() -> GRare {
        GRare {
            name: Mutex::new(None),
            thread: UnsafeCell::new(None),
            block_on_spare: Cell::new(None),
            t_park: AtomicU64::new(0),
            t_ready: AtomicU64::new(0),
            t_run: AtomicU64::new(0),
            t_out: AtomicU64::new(0),
            wall_busy: AtomicBool::new(false),
            wall_acc: UnsafeCell::new(WallAcc::ZERO),
            wall_site: AtomicUsize::new(0),
        }
    }
}

// SAFETY: every field is either atomic, behind a lock, or (exec, yielder) accessed only by the
// single owner the state table in the module docs names (the goroutine-only `Cell`s, such as
// rt_depth and lock_count, by the goroutine while it runs and its M at exit); status transitions
// hand ownership over with Release/Acquire pairs documented where they happen.
unsafe impl Sync for G {}
// SAFETY: as above; a G is a `'static` descriptor moved between threads only as a reference.
unsafe impl Send for G {}

/// What the wall-clock profile has measured for one goroutine and not yet charged to its
/// tables: the goroutine's own tally, so that a transition that repeats the last one (same park
/// site, wait reason and labels, as in a tight loop) adds two numbers instead of taking a table
/// lock. `wall.rs` owns the meaning; the G only holds it, behind [`G::wall_acc`].
#[derive(Clone, Copy)]
pub(crate) struct WallAcc {
    /// The window this tally belongs to (a tally of another window is stale and dropped).
    pub(crate) gen: u32,
    /// The tick up to which this G's time has been measured.
    pub(crate) mark: u64,
    /// Running ticks, charged with the labels.
    pub(crate) run: u64,
    /// Waiting and runnable ticks by park site: the last two (site, reason) pairs the G waited
    /// at (a loop often parks at two places, such as a receive and a send), most recent first.
    pub(crate) slots: [WallSlot; 2],
    /// The labels slot's pointer when the tally started: an identity only, never dereferenced.
    pub(crate) labels: usize,
}

/// Waiting and runnable ticks at one park site: `site` is a cached park site's address (0: no
/// stack), `reason` the wait reason.
#[derive(Clone, Copy)]
pub(crate) struct WallSlot {
    pub(crate) site: usize,
    pub(crate) reason: u8,
    pub(crate) wait: u64,
    pub(crate) runnable: u64,
}

impl WallSlot {
    pub(crate) const ZERO: WallSlot = WallSlot { site: 0, reason: 0, wait: 0, runnable: 0 };
}

impl WallAcc {
    pub(crate) const ZERO: WallAcc = WallAcc { gen: 0, mark: 0, run: 0, slots: [WallSlot::ZERO; 2], labels: 0 };
}

/// Exclusive access to a G's [`WallAcc`]; released on drop.
pub(crate) struct WallAccGuard<'a>(&'a GRare);

impl G {
    /// The G's [`GRare`] block, allocated the first time anyone asks (whoever that is: the M
    /// switching the G, a waker, the wall-clock window's close on another thread). A fresh
    /// block reads as zeros and `None`s, as the fields read in a fresh G when they were the
    /// G's own. Not for a signal handler, which must not allocate: see [`G::rare_if_any`].
    #[inline]
    pub(crate) fn rare(&self) -> &GRare {
        // Acquire: pairs with the publishing CAS in `alloc_rare`, so the block's
        // initialisation is seen.
        let t = self.rare.load(Ordering::Acquire);
        if t.is_null() {
            return self.alloc_rare();
        }
        // SAFETY: a non-null `rare` points to a block leaked by `alloc_rare`, never freed.
        unsafe { &*t }
    }

    /// The G's [`GRare`] block if it has one (never allocates).
    #[inline]
    pub(crate) fn rare_if_any(&self) -> Option<&GRare> {
        // Acquire: as in `rare`.
        let t = self.rare.load(Ordering::Acquire);
        // SAFETY: as in `rare`.
        (!t.is_null()).then(|| unsafe { &*t })
    }

    /// The G's name (`Builder::name`), if it has one and its lock is free. Never allocates or
    /// blocks.
    pub(crate) fn name_now(&self) -> Option<Arc<str>> {
        if !self.has_name.load(Ordering::Relaxed) {
            return None;
        }
        self.rare_if_any()?.name.try_lock().and_then(|n| n.clone())
    }

    #[cold]
    #[inline(never)]
    fn alloc_rare(&self) -> &GRare {
        let new = Box::into_raw(Box::new(GRare::new()));
        // AcqRel: Release publishes the new block's initialisation; Acquire, on failure, sees
        // the winner's.
        match self.rare.compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: `new` is now the G's block, leaked for good (Gs are never freed).
            Ok(_) => unsafe { &*new },
            Err(won) => {
                // SAFETY: `new` came from `Box::into_raw` above and was never published.
                drop(unsafe { Box::from_raw(new) });
                // SAFETY: as in `rare`.
                unsafe { &*won }
            }
        }
    }

    /// Takes the G's wall-clock tally. Its users are the M switching the G out or in, the G
    /// itself (labels, `blocking`) and the window's close on another thread; each holds it for
    /// a few dozen instructions (or one stack walk), so a rare contender spins.
    #[inline]
    pub(crate) fn wall_acc(&self) -> WallAccGuard<'_> {
        let t = self.rare();
        // Acquire: pairs with the guard's Release drop, so the previous holder's writes are seen.
        while t.wall_busy.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        WallAccGuard(t)
    }
}

impl std::ops::Deref for WallAccGuard<'_> {
    type Target = WallAcc;
    fn deref(&self) -> &WallAcc {
        // SAFETY: the guard holds `wall_busy`, which every access to `wall_acc` takes.
        unsafe { &*self.0.wall_acc.get() }
    }
}

impl std::ops::DerefMut for WallAccGuard<'_> {
    fn deref_mut(&mut self) -> &mut WallAcc {
        // SAFETY: as for `deref`; the guard is borrowed mutably, so this is the only reference.
        unsafe { &mut *self.0.wall_acc.get() }
    }
}

impl Drop for WallAccGuard<'_> {
    fn drop(&mut self) {
        // Release: pairs with the next holder's Acquire swap.
        self.0.wall_busy.store(false, Ordering::Release);
    }
}

impl G {
    pub(crate) fn new(kind: GKind) -> G {
        G {
            goid: AtomicU64::new(0),
            status: AtomicU32::new(IDLE),
            hold: Hold::new(),
            wait_reason: AtomicU8::new(0),
            wait_since: AtomicU64::new(0),
            parent_goid: AtomicU64::new(0),
            created_at: AtomicPtr::new(ptr::null_mut()),
            created_pcs: [const { AtomicUsize::new(0) }; CREATED_PCS],
            entry_name: AtomicUsize::new(0),
            has_name: AtomicBool::new(false),
            kind,
            park_pc: AtomicUsize::new(0),
            park_sp: AtomicUsize::new(0),
            park_fp: AtomicUsize::new(0),
            stack_lo: AtomicUsize::new(0),
            stack_hi: AtomicUsize::new(0),
            preempt: AtomicBool::new(false),
            rare: AtomicPtr::new(ptr::null_mut()),
            exec: UnsafeCell::new(GExec::default()),
            yielder: Cell::new(ptr::null()),
            labels: AtomicPtr::new(ptr::null_mut()),
            rt_depth: Cell::new(0),
            lockedm: AtomicPtr::new(ptr::null_mut()),
            lock_count: Cell::new(0),
            outside: AtomicBool::new(false),
        }
    }
}

/// Lines of a parked goroutine's stack that switching it back in touches first, from where
/// [`SwitchIn`] starts: the switch's saved registers just below the park site's frame, the
/// runtime's frames above it, and usually the caller's own frame. Where the stack's top is not
/// known (nor above the park site), [`SwitchIn`] loads this many.
const SWITCH_IN_LINES: usize = 4;

/// The most lines [`SwitchIn`] loads: up to the stack's top, which a shallow goroutine (a
/// sleeper, a worker in a loop) reaches within this many as it returns from the park into its
/// own frames, each a miss on a stack that has gone cold.
const SWITCH_IN_MAX_LINES: usize = 16;

/// Bytes below the park site's stack pointer where the switch's saved registers begin (the
/// coroutine switch pushes three words under `suspend`'s frame), rounded up to a line's half.
const SWITCH_IN_BELOW: usize = 32;

/// Lines of a G: parking, readying and switching touch the first three (its hot fields), a
/// goroutine's exit the last (`goexit0`: its bounds, its rare block).
const DESC_LINES: usize = std::mem::size_of::<G>() / 64;

/// Starts loading all of `g` (see [`SwitchIn`]): a goroutine readied after a long wait (a
/// sleeper) often runs to its end, and its G's last line would be a miss of its own there.
#[inline(always)]
pub(crate) fn prefetch_desc(g: GRef) {
    let base = g.as_ptr() as usize;
    for i in 0..DESC_LINES {
        prefetch(base + 64 * i);
    }
}

/// The lines of a parked goroutine's stack that resuming it will touch first: from just below
/// its park site up to its stack's top, at most [`SWITCH_IN_MAX_LINES`]. A goroutine that has
/// not run for a while (one of hundreds taking turns, a sleeper whose timer fired) otherwise
/// takes these misses one after another, as each `ret` waits for the line holding its return
/// address; issued together, they overlap.
///
/// Read while the goroutine is parked and kept beside it (a timer entry keeps one), so that the
/// stack starts loading without waiting for the G's own line first: on a cold stack each
/// prefetch waits for its page's translation, and a prefetch that must first wait for the
/// descriptor cannot overlap with the others. A hint only: a wrong or stale address costs a
/// wasted load, never a fault. Packed as the first line's address with the line count, less
/// one, in its low six bits (0: nothing to load).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SwitchIn(usize);

impl SwitchIn {
    /// Reads `g`'s park site and stack top.
    #[inline]
    pub(crate) fn of(g: GRef) -> SwitchIn {
        // Relaxed: a hint; a stale value prefetches the wrong lines, nothing more.
        let sp = g.0.park_sp.load(Ordering::Relaxed);
        if sp == 0 {
            return SwitchIn(0);
        }
        let first = sp.wrapping_sub(SWITCH_IN_BELOW) & !63;
        let hi = g.0.stack_hi.load(Ordering::Relaxed);
        let lines = if hi > first { ((hi - first) / 64).clamp(1, SWITCH_IN_MAX_LINES) } else { SWITCH_IN_LINES };
        SwitchIn(first | (lines - 1))
    }

    /// Lines this hint loads.
    #[cfg(test)]
    pub(crate) fn lines(self) -> usize {
        if self.0 == 0 {
            0
        } else {
            (self.0 & 63) + 1
        }
    }

    /// Starts loading the lines.
    #[inline(always)]
    pub(crate) fn prefetch(self) {
        if self.0 == 0 {
            return;
        }
        let first = self.0 & !63;
        for i in 0..=(self.0 & 63) {
            prefetch(first.wrapping_add(64 * i));
        }
    }
}

/// Moves `g` from `from` to `to` by its one owner (the state table): a plain store. Any other
/// status is a runtime bug and panics, naming `what` did it. Acquire: pairs with the Release of
/// whoever set `from`; Release: with whoever next Acquires the status.
#[inline(always)]
pub(crate) fn setgstatus(g: GRef, from: u32, to: u32, what: &str) {
    check_status(g, from, what);
    g.0.status.store(to, Ordering::Release);
}

/// An M resumes `g` (`RUNNABLE -> RUNNING`), waiting while a snapshot holds it (`hold.rs`).
#[inline(always)]
pub(crate) fn setgstatus_running(g: GRef, what: &str) {
    check_status(g, RUNNABLE, what);
    g.0.hold.run(&g.0.status, RUNNING);
}

#[inline(always)]
fn check_status(g: GRef, want: u32, what: &str) {
    let s = g.0.status.load(Ordering::Acquire);
    if s != want {
        bad_status(g, s, want, what);
    }
}

#[cold]
#[inline(never)]
fn bad_status(g: GRef, s: u32, want: u32, what: &str) -> ! {
    panic!("gort: {what}: goroutine {} in status {s:#x}, expected {want:#x}", g.id())
}

/// A goroutine held still by [`GRef::with_parked`].
pub struct Parked<'a> {
    g: &'a G,
    regs: ParkRegs,
    stack: (usize, usize),
    waiting: bool,
}

impl Parked<'_> {
    /// Goroutine id.
    pub fn id(&self) -> u64 {
        self.g.goid.load(Ordering::Relaxed)
    }
    /// Where it switched out: an unwind of its frozen stack starts from these registers.
    pub fn regs(&self) -> ParkRegs {
        self.regs
    }
    /// Walks its frozen stack from the park site into `buf`, leaf first (the first address is in
    /// the runtime's switch-out path), with this build's unwinder.
    pub fn walk(&self, buf: &mut [usize]) -> Walk {
        if self.stack.1 == 0 {
            return Walk { len: 0, truncated: false };
        }
        // SAFETY: the hold keeps the G still for as long as `self` lives, so its stack
        // [lo, hi) stays mapped (a G keeps its stack while not dead) and unchanged, and `regs`
        // were recorded on that stack in a frame that is live until the G resumes.
        unsafe { crate::unwind::walk(self.regs, self.stack, 0, buf, WalkCtx::MayAllocate) }
    }
    /// The G held.
    pub(crate) fn g(&self) -> &G {
        self.g
    }
    /// Its stack, `[lo, hi)`: every frame of the chain lies inside.
    pub fn stack_bounds(&self) -> (usize, usize) {
        self.stack
    }
    /// Why it waits (`None` if it is runnable, waiting only for a P).
    pub fn wait_reason(&self) -> Option<WaitReason> {
        self.waiting.then(|| WaitReason::from_u8(self.g.wait_reason.load(Ordering::Relaxed)))
    }
    /// When it started waiting, on the runtime's clock (`time::nanotime`, coarse: up to 10 ms
    /// early); meaningful only while [`wait_reason`](Self::wait_reason) is `Some`.
    pub fn wait_since(&self) -> u64 {
        self.g.wait_since.load(Ordering::Relaxed)
    }
    /// Its labels (see [`set_current_labels`](crate::set_current_labels)).
    pub fn labels(&self) -> Option<Labels> {
        // SAFETY: the hold keeps the G still: it is not running, and nothing else changes a
        // goroutine's labels while it is not (see `G::labels_ref`).
        unsafe { labels_from_ref(self.g.labels_ref()) }
    }
    /// The type name of the goroutine's body (`my_crate::handler::{{closure}}`).
    pub fn entry_name(&self) -> Option<&'static str> {
        entry_name(self.g)
    }
}

/// The type name of `g`'s body, if it was spawned with one.
pub(crate) fn entry_name(g: &G) -> Option<&'static str> {
    let f = g.entry_name.load(Ordering::Relaxed);
    if f == 0 {
        return None;
    }
    // SAFETY: only `newproc` stores here, and only a `fn() -> &'static str` cast to a word.
    let f: fn() -> &'static str = unsafe { std::mem::transmute::<usize, fn() -> &'static str>(f) };
    Some(f())
}

/// Writes one goroutine's header as Go's tracebacks print it: `goroutine 7 [chan receive]:`,
/// with `, N minutes` after the state once it has waited a minute or more, and its labels as Go
/// 1.27 prints them (`, labels:{"k":"v"}`) if given.
pub fn write_header(out: &mut String, id: u64, state: &str, waited_ns: u64, labels: Option<&str>) {
    use std::fmt::Write as _;
    let mins = waited_ns / 60_000_000_000;
    let _ = write!(out, "goroutine {id} [{state}");
    if mins >= 1 {
        let _ = write!(out, ", {mins} minutes");
    }
    if let Some(l) = labels {
        let _ = write!(out, ", labels:{l}");
    }
    out.push_str("]:\n");
}

/// A reference to a G. Gs are never freed, so a `GRef` is always valid memory; whether it still
/// names the same goroutine is the caller's protocol (a wait queue holds a G only while it is parked
/// on that queue).
#[derive(Clone, Copy)]
pub struct GRef(pub(crate) &'static G);

impl PartialEq for GRef {
    fn eq(&self, other: &GRef) -> bool {
        ptr::eq(self.0, other.0)
    }
}
impl Eq for GRef {}
impl std::hash::Hash for GRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.0 as *const G as usize).hash(state)
    }
}
impl std::fmt::Debug for GRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "G({})", self.id())
    }
}

impl GRef {
    /// The goroutine id (0 for a plain thread's stand-in).
    pub fn id(self) -> u64 {
        self.0.goid.load(Ordering::Relaxed)
    }
    /// Whether this is a goroutine (rather than a plain thread's stand-in).
    pub fn is_goroutine(self) -> bool {
        self.0.kind == GKind::Goroutine
    }
    pub(crate) fn status(self) -> u32 {
        self.0.status.load(Ordering::Acquire)
    }
    /// Whether this goroutine has a stack a snapshot can read, now or after its next switch: it
    /// runs, or it ran and is switched out (not one that never started, has finished, or sits
    /// in `blocking`). A hint (the state may change right after).
    pub fn has_readable_stack(self) -> bool {
        self.is_goroutine()
            && match self.status() {
                RUNNING => true,
                WAITING | RUNNABLE => self.0.park_sp.load(Ordering::Relaxed) != 0,
                _ => false,
            }
    }

    /// Test support: pretends this goroutine started waiting `ns` earlier than it did, so a
    /// test can check how dumps render long waits (`[chan receive, 1 minutes]`) without
    /// waiting a minute. Not for production use.
    // Safe on any G, in any state: it moves back (saturating) one atomic timestamp that only
    // dumps and snapshots read.
    #[doc(hidden)]
    pub fn backdate_wait(self, ns: u64) {
        let since = self.0.wait_since.load(Ordering::Relaxed);
        self.0.wait_since.store(since.saturating_sub(ns), Ordering::Relaxed);
    }

    /// If this goroutine is parked (or runnable but switched out), holds it still and runs `f` on
    /// a view of its frozen state: where it parked, its stack bounds, why it waits. An M about to
    /// resume it waits until `f` returns, so the stack under the view cannot change; keep `f`
    /// short, and do not hold other goroutines from it (a nested hold of this one would wait
    /// for itself). Returns `None` for a running, dead or never-started goroutine and for thread
    /// stand-ins. Costs a heavy fence (a system call and an interrupt per CPU running a thread
    /// of the process): to look at many goroutines use [`for_each_g_held`], which pays one per
    /// batch.
    pub fn with_parked<R>(self, f: impl FnOnce(&Parked<'_>) -> R) -> Option<R> {
        if !self.try_hold() {
            return None;
        }
        let _free = Free(self.0);
        let view = if fence_holds() { self.view() } else { None };
        view.map(|v| f(&v))
    }

    /// Takes the hold if the G looks switched out (a goroutine, WAITING or RUNNABLE). Whether
    /// the hold keeps it still is known only after the scanner's fence ([`GRef::view`]).
    fn try_hold(self) -> bool {
        if self.0.kind != GKind::Goroutine || !matches!(self.0.status.load(Ordering::Relaxed), WAITING | RUNNABLE) {
            return false;
        }
        self.0.hold.take();
        true
    }

    /// The frozen state of a G this scanner holds, after its fence: `None` if the G is running
    /// after all (or has run and finished), or never started.
    fn view(self) -> Option<Parked<'static>> {
        // Acquire: pairs with the Release store that made the G WAITING/RUNNABLE after it
        // switched out, so the park registers it wrote are visible.
        let s = self.0.status.load(Ordering::Acquire);
        if s != WAITING && s != RUNNABLE {
            return None;
        }
        let regs = ParkRegs {
            pc: self.0.park_pc.load(Ordering::Relaxed),
            sp: self.0.park_sp.load(Ordering::Relaxed),
            fp: self.0.park_fp.load(Ordering::Relaxed),
        };
        if regs.sp == 0 {
            return None; // runnable but never started: no stack yet
        }
        Some(Parked {
            g: self.0,
            regs,
            stack: (self.0.stack_lo.load(Ordering::Relaxed), self.0.stack_hi.load(Ordering::Relaxed)),
            waiting: s == WAITING,
        })
    }
    pub(crate) fn as_ptr(self) -> *const G {
        self.0
    }
    /// # Safety
    /// `p` must come from [`GRef::as_ptr`].
    pub(crate) unsafe fn from_ptr(p: *const G) -> GRef {
        // SAFETY: the caller passes a pointer obtained from a GRef; Gs are never freed.
        GRef(unsafe { &*p })
    }
}

// ---------------------------------------------------------------------------------------------
// allgs: every goroutine G ever allocated, appendable and readable without a global stop.
// ---------------------------------------------------------------------------------------------

/// Chunked append-only array. Chunk k holds `CHUNK` pointers; the chunk table is fixed-size, so a
/// reader never sees a reallocation. Invariants: `len` only grows; slot i < len is initialised
/// before `len` passes it (Release store in `push`, Acquire load in `for_each_g`).
const CHUNK: usize = 4096;
const MAX_CHUNKS: usize = 16384; // 64M goroutines
struct AllGs {
    chunks: [AtomicPtr<[AtomicPtr<G>; CHUNK]>; MAX_CHUNKS],
    len: AtomicUsize,
    /// The block the next Gs come from (see [`G_BLOCK`]); read and written under `lock`.
    block: AtomicPtr<G>,
    lock: Mutex<()>,
}

static ALLGS: AllGs = AllGs {
    chunks: [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS],
    len: AtomicUsize::new(0),
    block: AtomicPtr::new(ptr::null_mut()),
    lock: Mutex::new(()),
};

/// Goroutine Gs are made this many at a time, in one allocation, and never freed: a `Box` per
/// G would pay `memalign`'s slack for the G's cache-line alignment, about 200 bytes per G.
const G_BLOCK: usize = 64;

/// Allocates a brand-new goroutine G and records it in allgs.
pub(crate) fn alloc_g() -> GRef {
    let _l = ALLGS.lock.lock();
    let i = ALLGS.len.load(Ordering::Relaxed);
    if i.is_multiple_of(G_BLOCK) {
        let block: Box<[G]> = (0..G_BLOCK).map(|_| G::new(GKind::Goroutine)).collect();
        ALLGS.block.store(Box::leak(block).as_mut_ptr(), Ordering::Relaxed);
    }
    // SAFETY: `block` points at G_BLOCK leaked (never freed) Gs, and slot `i % G_BLOCK` of it has
    // not been handed out: `len` grows by one per call, under the lock, and a new block starts
    // whenever it reaches a multiple of G_BLOCK.
    let g: &'static G = unsafe { &*ALLGS.block.load(Ordering::Relaxed).add(i % G_BLOCK) };
    let (c, o) = (i / CHUNK, i % CHUNK);
    assert!(c < MAX_CHUNKS, "gort: too many goroutines");
    let mut chunk = ALLGS.chunks[c].load(Ordering::Relaxed);
    if chunk.is_null() {
        let fresh: Box<[AtomicPtr<G>; CHUNK]> = Box::new([const { AtomicPtr::new(ptr::null_mut()) }; CHUNK]);
        chunk = Box::into_raw(fresh);
        // Release: pairs with the Acquire load in for_each_g so the zeroed chunk is visible.
        ALLGS.chunks[c].store(chunk, Ordering::Release);
    }
    // SAFETY: chunk is a leaked, never-freed array; slot o is written only here, under the lock.
    unsafe { (*chunk)[o].store(g as *const G as *mut G, Ordering::Relaxed) };
    // Release: publishes the slot write above to readers that Acquire-load len.
    ALLGS.len.store(i + 1, Ordering::Release);
    GRef(g)
}

/// Calls `f` for every goroutine G ever allocated (including idle/dead ones: check the status).
pub fn for_each_g(mut f: impl FnMut(GRef)) {
    // Acquire: pairs with the Release store in alloc_g.
    let n = ALLGS.len.load(Ordering::Acquire);
    for i in 0..n {
        // Acquire: pairs with the chunk Release store in alloc_g.
        let chunk = ALLGS.chunks[i / CHUNK].load(Ordering::Acquire);
        // SAFETY: chunk for an index below len is non-null and never freed.
        let g = unsafe { (*chunk)[i % CHUNK].load(Ordering::Relaxed) };
        if !g.is_null() {
            // SAFETY: Gs in allgs are leaked boxes, never freed.
            f(GRef(unsafe { &*g }));
        }
    }
}

/// How many goroutines a scan holds at once: each batch costs one heavy fence (on a VM, with the
/// other CPUs busy, ~10 µs of interrupts), and a goroutine resumed meanwhile may wait for the
/// walks of those before it in its batch (a walk is ~0.5 µs).
const HOLD_BATCH: usize = 256;

/// Frees a hold when dropped (also when the scanner's closure panics: a hold left taken would
/// keep its goroutine from ever running again).
struct Free(&'static G);

impl Drop for Free {
    fn drop(&mut self) {
        self.0.hold.free();
    }
}

/// [`for_each_g`], holding each parked (or runnable, switched-out) goroutine still while `f`
/// looks at it, as [`GRef::with_parked`] does: `f(g, Some(view))` for those, `f(g, None)` for
/// the rest (running, dead, never started, thread stand-ins). Goroutines are held a batch at a
/// time, each freed as soon as `f` returns for it, so the heavy fence is paid once per batch.
/// `f` must not hold goroutines itself (it could wait for a hold of this scan).
pub fn for_each_g_held(f: impl FnMut(GRef, Option<&Parked<'_>>)) {
    for_each_g_held_then(f, || {});
}

/// [`for_each_g_held`], calling `between` after each batch, when the scan holds no goroutine.
pub(crate) fn for_each_g_held_then(mut f: impl FnMut(GRef, Option<&Parked<'_>>), mut between: impl FnMut()) {
    // Each entry keeps its goroutine held (if it could take the hold) until its turn is over;
    // should `f` panic, the guards left in the batch free the rest.
    let mut batch: Vec<(GRef, Option<Free>)> = Vec::with_capacity(HOLD_BATCH);
    let mut run = |batch: &mut Vec<(GRef, Option<Free>)>| {
        let fenced = batch.iter().all(|(_, h)| h.is_none()) || fence_holds();
        for (g, held) in batch.drain(..) {
            let view = if fenced && held.is_some() { g.view() } else { None };
            f(g, view.as_ref());
            drop(held);
        }
    };
    for_each_g(|g| {
        let held = g.try_hold().then(|| Free(g.0));
        batch.push((g, held));
        if batch.len() == HOLD_BATCH {
            run(&mut batch);
            between();
        }
    });
    run(&mut batch);
}

/// Number of G structs allocated so far (live or pooled). Diagnostics.
// Safe: one atomic read of a counter that only grows.
#[doc(hidden)]
pub fn allg_len() -> usize {
    ALLGS.len.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_in_loads_from_below_the_park_site_up_to_the_stack_top_at_most_its_cap() {
        let g = GRef(Box::leak(Box::new(G::new(GKind::Thread))));
        assert_eq!(SwitchIn::of(g).lines(), 0, "never parked: nothing to load");
        let hi = 0x7000_0000usize;
        g.0.stack_hi.store(hi, Ordering::Relaxed);
        // 200 bytes below the top: the saved registers' line and the three above it.
        g.0.park_sp.store(hi - 200, Ordering::Relaxed);
        assert_eq!(SwitchIn::of(g).lines(), 4);
        assert_eq!(SwitchIn::of(g).0 & !63, (hi - 200 - SWITCH_IN_BELOW) & !63);
        // Deep in its stack: capped.
        g.0.park_sp.store(hi - 64 * 1024, Ordering::Relaxed);
        assert_eq!(SwitchIn::of(g).lines(), SWITCH_IN_MAX_LINES);
        // No stack top known: the fixed count.
        g.0.stack_hi.store(0, Ordering::Relaxed);
        assert_eq!(SwitchIn::of(g).lines(), SWITCH_IN_LINES);
    }
}
