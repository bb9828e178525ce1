//! Goroutine lifecycle: spawning, finishing, joining, `run`, `yield_now`, `blocking`.
//!
//! # Why running code on a goroutine is `unsafe`
//!
//! A goroutine is not tied to an OS thread. Whenever it parks or yields, its M runs other
//! goroutines, and whichever M picks it up next resumes it, on that M's thread. Code on a
//! goroutine therefore changes threads in the middle of a function, at every blocking call, and
//! a value whose soundness depends on staying on the thread that made it becomes a data race
//! there, without a line of `unsafe`:
//!
//! - `rand::thread_rng()` is an `Rc` to a generator that the thread's thread-local also holds:
//!   kept across a park, it is used on a second thread while goroutines on the first clone and
//!   drop the same `Rc` and advance the same generator, with no synchronisation.
//! - `std::io::stdout().lock()` is a reentrant lock whose owner is a thread id: kept across a
//!   park, it is unlocked from another thread, and until then any goroutine the first thread
//!   runs passes the owner check and "re-enters" a lock it does not hold.
//! - a `RefCell` borrow of a thread-local, kept across a park, is used while that thread's next
//!   goroutine borrows the same cell.
//!
//! `Send + 'static` on the closure cannot rule this out: these values are made *inside* the
//! goroutine and never cross the spawn; what crosses threads is the goroutine itself, halfway
//! through. Nor can the compiler tell which calls may park. Ms never exit, so a pointer into
//! another thread's thread-local is not dangling; the danger is sharing, not lifetime.
//!
//! This crate's rule is that safe code cannot cause undefined behaviour, and a contract the
//! compiler cannot check belongs on an `unsafe fn`. So every entry point that runs user code on a
//! goroutine is `unsafe`, with the contract below in its `# Safety` section: [`spawn`],
//! [`Builder::spawn`], [`run`] (the main goroutine migrates like any other),
//! [`time::after_func`](crate::time::after_func) (its function runs on a goroutine), and
//! [`go!`](crate::go), which expands to a call of `spawn` and so must be written inside an
//! `unsafe` block.
//!
//! # The contract
//!
//! The *blocking operations* are every gort call that can park or yield the calling goroutine,
//! after which it may run on another thread: channel `send`/`recv` (and their timeout forms, and
//! receiving from `after`/`tick`), `select!` without a `default` arm, `gort::sync` waits
//! (`Mutex::lock`, `RwLock::read`/`write`, `WaitGroup::wait`, `Cond::wait`,
//! `Semaphore::acquire`, `Once::call_once` and `OnceLock` initialisation while another goroutine
//! runs it), `time::sleep` and `Timer` waits, [`yield_now`], [`JoinHandle::join`], `gort::net`
//! operations that wait for the socket (`accept`, `connect`, `read`, `write`, `recv`, `send`, ...),
//! [`park`](crate::park()), leaving [`blocking`] (the closure itself stays on its thread), spawning
//! ([`spawn`], [`go!`](crate::go), [`Builder::spawn`]: a spawn is a safe point where the goroutine
//! yields if the runtime asked it to), and any function that calls one of these.
//!
//! Code running on a goroutine (the closure, and everything it calls) must not keep, across a
//! blocking operation, anything whose soundness depends on staying on one OS thread:
//!
//! 1. a `!Send` value tied to its thread: a `std::sync::MutexGuard` or `RwLock` guard; a
//!    `ReentrantLockGuard` (`std::io::StdoutLock`, `StderrLock`); an `Rc`, `Ref` or `RefMut`
//!    reachable from a thread-local (`rand::thread_rng()`'s `ThreadRng` is such an `Rc`);
//! 2. a reference obtained from `LocalKey::with` (no blocking operation inside the closure given
//!    to `with`), or any other pointer into a thread-local;
//! 3. a thread-local's *address*: the compiler assumes a function runs on one thread, and may
//!    compute a thread-local's address once and reuse it after a call. So one function (after
//!    inlining) must not reach the same thread-local on both sides of a blocking operation; reach
//!    it through a function that is not inlined (`#[inline(never)]`), which computes the address
//!    afresh each call. This includes thread-locals that library code touches when it is inlined:
//!    `rand::random()` before and after a `recv` in one function can, after inlining, clone the
//!    first thread's `Rc` from the second thread.
//!
//! What is fine: any `Send` value (it may change threads by definition); `gort::sync::Mutex` and
//! `RwLock` guards (they belong to the goroutine, not to a thread); a `std` lock taken and
//! released with no blocking operation in between; thread-locals read and written between
//! blocking operations, and released before the next one, through a non-inlined function as in 3
//! (each access then sees the value of the thread the goroutine runs on at that moment, which may
//! differ from the one before a park: a question of logic, not of soundness).
//!
//! A SAFETY comment at a spawn says why its goroutine keeps that contract: which thread-bound
//! values it touches (if any), and that none is held across a blocking operation.
//!
//! The runtime keeps the contract itself: its own thread-locals are read through non-inlined
//! accessors that are called again after every switch.
//!
//! # The alternative not taken
//!
//! A started goroutine could stay on the thread that first ran it (with a way to opt out at
//! startup). That would mean per-thread run queues with no stealing of started goroutines, no
//! hand-off of a thread's goroutines when it is stuck in [`blocking`] (they would wait for it),
//! and a goroutine that computes without yielding would starve every goroutine of its thread
//! while other threads idle: the scheduler this crate is about would be gone. The `unsafe` costs
//! nothing at run time: the entry points run exactly the code they ran when they were safe.

use std::any::Any;
use std::cell::UnsafeCell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use corosensei::{Coroutine, Yielder};

use crate::g::{self, GRef, WaitReason, G};
use crate::m::current_m;
use crate::park::{enter, leave, safepoint, suspend, thread_g, WaitSlot};
use crate::sched::{gfget, sched, wakep, RunWaiter};
use crate::stack::Stack;

/// What a goroutine tells its M when it switches out.
pub(crate) enum Yield {
    /// Park; run this commit closure (Go's unlockf) first.
    Park(*mut (dyn FnMut(GRef) -> bool + 'static)),
    /// `yield_now`: requeue at the tail of the local queue.
    Gosched,
    /// The goroutine has no P (sysmon took it) and none is idle: queue it globally.
    NeedP,
}

pub(crate) type GYielder = Yielder<(), Yield>;
pub(crate) type GCoroutine = Coroutine<(), Yield, (), Stack>;

/// The execution state of a G: its coroutine once started, its entry closure before.
#[derive(Default)]
pub(crate) struct GExec {
    pub(crate) co: Option<GCoroutine>,
    pub(crate) entry: Option<Arc<dyn Runnable>>,
    /// Non-zero: a dedicated stack of this size (Builder::stack_size), not from the pool.
    pub(crate) custom_stack: usize,
    pub(crate) guarded: bool,
    pub(crate) guard_lo: usize,
    pub(crate) guard_hi: usize,
}

/// Runs on the goroutine's own stack: the first frame of every goroutine.
pub(crate) fn goroutine_main(y: &GYielder, g: GRef) {
    g.0.yielder.set(y as *const GYielder);
    // SAFETY: the G is RUNNING on this M; its exec is ours (state table in g.rs).
    let entry = unsafe { (*g.0.exec.get()).entry.take() };
    // The M resumed us in runtime mode (P RUNNING, depth 0): hand the P to user mode.
    leave();
    if let Some(t) = entry {
        t.run();
    }
    // Back into runtime mode for the exit path (or notice a lost P: the M copes without one).
    std::mem::forget(enter());
    g.0.rt_depth.set(0);
    g.0.yielder.set(std::ptr::null());
}

// ---------------------------------------------------------------------------------------------
// JoinHandle
// ---------------------------------------------------------------------------------------------

struct Packet<T> {
    result: UnsafeCell<Option<std::thread::Result<T>>>,
    /// Done once `result` is written; holds the G waiting in join, if any.
    done: WaitSlot,
}

// SAFETY: `result` is written once by the finishing goroutine before `done` completes (Release)
// and read only by the joiner after it observes done (Acquire).
unsafe impl<T: Send> Sync for Packet<T> {}

impl<T> Packet<T> {
    fn complete(&self, r: std::thread::Result<T>) {
        // SAFETY: only the finishing goroutine writes, once, before completing.
        unsafe { *self.result.get() = Some(r) };
        self.done.complete();
    }

    fn take(&self) -> std::thread::Result<T> {
        debug_assert!(self.done.is_done());
        // SAFETY: called after `done` was observed (Acquire); the writer is finished.
        unsafe { (*self.result.get()).take().expect("join result taken once") }
    }
}

/// A goroutine's body and its result slot in one allocation (one `malloc` per spawn): the G
/// holds it as `Arc<dyn Runnable>`, the `JoinHandle` as `Arc<dyn HasPacket<T>>`.
struct Task<T, F> {
    packet: Packet<T>,
    /// Taken once, by the goroutine, when it starts.
    f: UnsafeCell<Option<F>>,
}

// SAFETY: `f` is touched only by the goroutine that runs the task (once, in `run`); `packet`
// is Sync on its own (see Packet).
unsafe impl<T: Send, F: Send> Sync for Task<T, F> {}

/// What a G runs: its task, started once.
pub(crate) trait Runnable: Send + Sync {
    fn run(self: Arc<Self>);
}

impl<T: Send, F: FnOnce() -> T + Send> Runnable for Task<T, F> {
    fn run(self: Arc<Self>) {
        // SAFETY: only the goroutine running this task takes `f`, once (see the Sync impl).
        let f = unsafe { (*self.f.get()).take() }.expect("gort: task started twice");
        let r = catch_unwind(AssertUnwindSafe(f));
        self.packet.complete(r);
    }
}

/// The join side of a task, without its closure type.
trait HasPacket<T>: HasDone {
    fn packet(&self) -> &Packet<T>;
}

/// The completion slot of a task, without its result type (what a deadlock report needs to
/// take a blocked `run` out of its wait).
pub(crate) trait HasDone: Send + Sync {
    fn done(&self) -> &WaitSlot;
}

impl<T: Send, F: FnOnce() -> T + Send> HasDone for Task<T, F> {
    fn done(&self) -> &WaitSlot {
        &self.packet.done
    }
}

impl<T: Send, F: FnOnce() -> T + Send> HasPacket<T> for Task<T, F> {
    fn packet(&self) -> &Packet<T> {
        &self.packet
    }
}

/// An owned permission to join a goroutine (wait for it to finish and take its result).
/// Dropping it detaches the goroutine, as with `std::thread::JoinHandle`.
pub struct JoinHandle<T> {
    task: Arc<dyn HasPacket<T>>,
    id: u64,
}

impl<T> JoinHandle<T> {
    /// Waits for the goroutine to finish. `Err` holds the panic payload if it panicked.
    /// On a goroutine this parks the goroutine; on a plain thread it blocks the thread.
    pub fn join(self) -> std::thread::Result<T> {
        let p = self.task.packet();
        p.done.wait(WaitReason::Join);
        p.take()
    }

    /// The goroutine's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the goroutine has finished.
    pub fn is_finished(&self) -> bool {
        self.task.packet().done.is_done()
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Spawning
// ---------------------------------------------------------------------------------------------

/// Goroutine factory, like `std::thread::Builder`: set a name or a stack size, then spawn.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with the defaults (no name, the runtime's stack size).
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the goroutine (shown in goroutine dumps and panic messages).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Gives the goroutine a dedicated stack of `size` bytes (rounded up to pages; 16 KiB to
    /// 1 GiB) instead of a pooled one of the default size. A dedicated stack costs an mmap at
    /// spawn and an munmap at exit.
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Spawns the goroutine. Errors: an invalid stack size (`InvalidInput`).
    ///
    /// # Safety
    ///
    /// `f` runs on a goroutine, which may resume on another OS thread after any gort blocking
    /// operation: a channel send or receive (timeout forms and `after`/`tick` included), `select!`
    /// without `default`, a `gort::sync` wait (`Mutex`/`RwLock` lock, `WaitGroup::wait`,
    /// `Cond::wait`, `Semaphore::acquire`, `Once`/`OnceLock` waiting for another initialiser),
    /// `sleep` and `Timer::wait`, [`yield_now`], [`JoinHandle::join`], a `gort::net` operation that
    /// waits, [`park`](crate::park()), leaving [`blocking`], a spawn, or any call that makes one. The
    /// caller must ensure that this code, and everything it calls, holds across none of them:
    ///
    /// - a `!Send` value tied to its thread: a `std::sync::MutexGuard` or `RwLock` guard, a
    ///   `ReentrantLockGuard` (`std::io::StdoutLock`), an `Rc` or `RefCell` borrow reachable from a
    ///   thread-local (`rand::thread_rng()`);
    /// - a reference obtained from `LocalKey::with` (no blocking operation inside its closure);
    /// - a thread-local's address: one function, after inlining, must not reach the same
    ///   thread-local on both sides of a blocking operation (the compiler may reuse the address it
    ///   computed before the call); reach it through an `#[inline(never)]` function.
    ///
    /// Fine: `Send` values, `gort::sync::Mutex` guards, `std` locks released before the next blocking
    /// operation, thread-locals accessed and released between blocking operations as above. The
    /// [module docs](crate::proc#the-contract) explain each point.
    #[track_caller]
    #[inline(always)] // the spawn site's pc must land in the caller (see `newproc`)
    pub unsafe fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let loc = Location::caller();
        let pc = crate::unwind::caller_pc();
        let custom = match self.stack_size {
            None => 0,
            Some(sz) => {
                if !(crate::env::MIN_STACK_SIZE..=crate::env::MAX_STACK_SIZE).contains(&sz) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("gort: stack size {sz} out of range (16 KiB to 1 GiB)"),
                    ));
                }
                sz
            }
        };
        spawn_inner(f, loc, pc, self.name, custom, false)
    }
}

/// Spawns a goroutine running `f` and returns a handle to join it.
///
/// The goroutine starts soon on some M (it goes to the spawner's `runnext`, like Go's `go`).
///
/// # Safety
///
/// `f` runs on a goroutine, which may resume on another OS thread after any gort blocking
/// operation: a channel send or receive (timeout forms and `after`/`tick` included), `select!`
/// without `default`, a `gort::sync` wait (`Mutex`/`RwLock` lock, `WaitGroup::wait`,
/// `Cond::wait`, `Semaphore::acquire`, `Once`/`OnceLock` waiting for another initialiser),
/// `sleep` and `Timer::wait`, [`yield_now`], [`JoinHandle::join`], a `gort::net` operation that
/// waits, [`park`](crate::park()), leaving [`blocking`], a spawn, or any call that makes one. The
/// caller must ensure that this code, and everything it calls, holds across none of them:
///
/// - a `!Send` value tied to its thread: a `std::sync::MutexGuard` or `RwLock` guard, a
///   `ReentrantLockGuard` (`std::io::StdoutLock`), an `Rc` or `RefCell` borrow reachable from a
///   thread-local (`rand::thread_rng()`);
/// - a reference obtained from `LocalKey::with` (no blocking operation inside its closure);
/// - a thread-local's address: one function, after inlining, must not reach the same
///   thread-local on both sides of a blocking operation (the compiler may reuse the address it
///   computed before the call); reach it through an `#[inline(never)]` function.
///
/// Fine: `Send` values, `gort::sync::Mutex` guards, `std` locks released before the next blocking
/// operation, thread-locals accessed and released between blocking operations as above. The
/// [module docs](crate::proc#the-contract) explain each point.
#[track_caller]
#[inline(always)] // the spawn site's pc must land in the caller (see `newproc`)
pub unsafe fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match spawn_inner(f, Location::caller(), crate::unwind::caller_pc(), None, 0, false) {
        Ok(h) => h,
        Err(e) => panic!("failed to spawn goroutine: {e}"),
    }
}

fn spawn_inner<F, T>(
    f: F,
    loc: &'static Location<'static>,
    pc: usize,
    name: Option<String>,
    custom: usize,
    main: bool,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    crate::sched::claim_stack(sched())?;
    let task = Arc::new(Task {
        packet: Packet { result: UnsafeCell::new(None), done: WaitSlot::new() },
        f: UnsafeCell::new(Some(f)),
    });
    let id = newproc(task.clone(), loc, pc, std::any::type_name::<F> as fn() -> &'static str, name, custom, main);
    Ok(JoinHandle { task, id })
}

/// Creates a G for `entry` and makes it runnable (Go's newproc).
///
/// `pc` is Go's `gopc`: an address inside the function that spawned, taken by the public entry
/// points, which are `#[inline(always)]` so that the address is in their caller's code. One
/// instruction instead of a stack walk, which in a build without frame pointers would be a CFI
/// unwind on every spawn.
#[inline(never)]
fn newproc(
    entry: Arc<dyn Runnable>,
    loc: &'static Location<'static>,
    pc: usize,
    entry_name: fn() -> &'static str,
    name: Option<String>,
    custom: usize,
    main: bool,
) -> u64 {
    let s = sched();
    safepoint();
    let _e = enter();
    let m = current_m();
    let parent = m.and_then(|m| m.curg());
    if m.is_none() {
        // A plain thread that spawns may later wake what it spawned: register it.
        let _ = thread_g();
    }
    let p = m.and_then(|m| m.p.get());
    let g = gfget(s, p);
    let goid = if main && !s.main_goid_taken.swap(true, Ordering::Relaxed) {
        1
    } else {
        s.next_goid.fetch_add(1, Ordering::Relaxed)
    };
    g.0.goid.store(goid, Ordering::Relaxed);
    g.0.parent_goid.store(parent.map(|g| g.id()).unwrap_or(0), Ordering::Relaxed);
    g.0.created_at.store(loc as *const Location<'static> as *mut Location<'static>, Ordering::Relaxed);
    g.0.created_pcs[0].store(pc, Ordering::Relaxed);
    g.0.entry_name.store(entry_name as usize, Ordering::Relaxed);
    if let Some(n) = name {
        *g.0.name.lock() = Some(Arc::from(n));
        g.0.has_name.store(true, Ordering::Relaxed);
    }
    if let Some(pg) = parent {
        crate::proc::inherit_labels(pg, g);
    }
    // SAFETY: the G is IDLE and was just taken from a free list: we own it (state table).
    unsafe {
        let exec = &mut *g.0.exec.get();
        exec.entry = Some(entry);
        exec.custom_stack = custom;
    }
    s.ngoroutines.fetch_add(1, Ordering::Relaxed);
    // Release: publishes the fields above to the M that will Acquire-CAS it to RUNNING.
    g.0.status.store(g::RUNNABLE, Ordering::Release);
    match p {
        // SAFETY: after enter() the current M owns its P.
        Some(p) => unsafe { p.runqput(g, true) },
        None => s.global.push(g),
    }
    wakep();
    goid
}

/// `go!(move || ...)`, `go!(f)` or `go!(f(a, b))`: spawns a goroutine, like Go's `go` statement.
///
/// - `go!(move || body)` / `go!(|| body)`: runs the closure.
/// - `go!(path(args...))`: evaluates the arguments now and calls `path(args...)` in the new
///   goroutine, as Go's `go f(x)` does.
/// - `go!(expr)`: `expr` must evaluate to a closure, which is spawned.
///
/// Returns the [`JoinHandle`]; ignoring it detaches the goroutine.
///
/// # Safety
///
/// `go!` expands to a call of the unsafe [`spawn`], so it must be written inside an `unsafe`
/// block, and the goroutine's code must keep [`spawn`]'s contract (see its `# Safety` section).
/// The `unsafe` block also covers the closure written inside it; to keep unsafe operations in the
/// body checked, bind the closure first, or give your crate one safe wrapper whose SAFETY
/// comment states the rule its goroutines follow.
///
/// ```
/// let (tx, rx) = gort_runtime::chan::chan::<u32>(0);
/// let body = move || tx.send(42).unwrap();
/// // SAFETY: the goroutine holds only a `Sender` (Send) and touches no thread-local.
/// let h = unsafe { gort_runtime::go!(body) };
/// assert_eq!(rx.recv(), Some(42));
/// h.join().unwrap();
/// ```
///
/// Without the `unsafe` block, `go!` does not compile, in any of its forms:
///
/// ```compile_fail,E0133
/// let h = gort_runtime::go!(|| 1 + 1);
/// ```
/// ```compile_fail,E0133
/// let h = gort_runtime::go!(move || 1 + 1);
/// ```
/// ```compile_fail,E0133
/// fn add(a: u32, b: u32) -> u32 { a + b }
/// let h = gort_runtime::go!(add(1, 2));
/// ```
/// ```compile_fail,E0133
/// fn work() {}
/// let h = gort_runtime::go!(work);
/// ```
#[macro_export]
macro_rules! go {
    (move $($body:tt)*) => { $crate::spawn(move $($body)*) };
    (|| $($body:tt)*) => { $crate::spawn(|| $($body)*) };
    (| $($body:tt)*) => { $crate::spawn(| $($body)*) };
    ($($f:ident)::+ ( $($arg:expr),* $(,)? )) => {{
        let __gort_args = ($($arg,)*);
        $crate::spawn(move || $crate::proc::Apply::apply($($f)::+, __gort_args))
    }};
    ($e:expr) => { $crate::spawn($e) };
}

/// Calls a function with a tuple of arguments (support for `go!(f(a, b))`).
#[doc(hidden)]
pub trait Apply<Args> {
    type Output;
    fn apply(self, args: Args) -> Self::Output;
}

macro_rules! impl_apply {
    ($($a:ident),*) => {
        impl<Func, Ret, $($a),*> Apply<($($a,)*)> for Func where Func: FnOnce($($a),*) -> Ret {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn apply(self, args: ($($a,)*)) -> Ret {
                let ($($a,)*) = args;
                self($($a),*)
            }
        }
    };
}
impl_apply!();
impl_apply!(A);
impl_apply!(A, B);
impl_apply!(A, B, C);
impl_apply!(A, B, C, D);
impl_apply!(A, B, C, D, E);
impl_apply!(A, B, C, D, E, F);
impl_apply!(A, B, C, D, E, F, G2);
impl_apply!(A, B, C, D, E, F, G2, H);

// ---------------------------------------------------------------------------------------------
// run, yield_now, blocking, queries
// ---------------------------------------------------------------------------------------------

/// Runs `f` as a main goroutine and returns its result, starting the runtime if needed.
///
/// Callable from `main`, from `#[test]` functions (several at once, in one process) and from
/// plain threads. A panic in `f` propagates out of `run`. If `f`'s goroutine waits and nothing
/// can ever wake anything (no runnable goroutine, no timer, no network waiter, no goroutine in a
/// blocking call, no plain thread that has used the runtime and is still running), `run` panics
/// with `fatal error: all goroutines are asleep - deadlock!` and a listing of the goroutines.
/// Called on a goroutine, `run` just calls `f`.
///
/// # Safety
///
/// `f` runs on a goroutine (a new main goroutine, or the calling one), which may resume on another
/// OS thread after any gort blocking operation: a channel send or receive (timeout forms and
/// `after`/`tick` included), `select!` without `default`, a `gort::sync` wait (`Mutex`/`RwLock`
/// lock, `WaitGroup::wait`, `Cond::wait`, `Semaphore::acquire`, `Once`/`OnceLock` waiting for
/// another initialiser), `sleep` and `Timer::wait`, [`yield_now`], [`JoinHandle::join`], a
/// `gort::net` operation that waits, [`park`](crate::park()), leaving [`blocking`], a spawn, or any
/// call that makes one. The caller must ensure that this code, and everything it calls, holds across none of them:
///
/// - a `!Send` value tied to its thread: a `std::sync::MutexGuard` or `RwLock` guard, a
///   `ReentrantLockGuard` (`std::io::StdoutLock`), an `Rc` or `RefCell` borrow reachable from a
///   thread-local (`rand::thread_rng()`);
/// - a reference obtained from `LocalKey::with` (no blocking operation inside its closure);
/// - a thread-local's address: one function, after inlining, must not reach the same
///   thread-local on both sides of a blocking operation (the compiler may reuse the address it
///   computed before the call); reach it through an `#[inline(never)]` function.
///
/// Fine: `Send` values, `gort::sync::Mutex` guards, `std` locks released before the next blocking
/// operation, thread-locals accessed and released between blocking operations as above. The
/// [module docs](crate::proc#the-contract) explain each point.
#[track_caller]
#[inline(always)] // the spawn site's pc must land in the caller (see `newproc`)
pub unsafe fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if crate::park::in_goroutine() {
        return f();
    }
    let s = sched();
    let tg = thread_g();
    let h = match spawn_inner(f, Location::caller(), crate::unwind::caller_pc(), None, 0, true) {
        Ok(h) => h,
        Err(e) => panic!("failed to spawn the main goroutine: {e}"),
    };
    let waiter = Arc::new(RunWaiter {
        main_goid: h.id,
        thread_g: tg,
        task: h.task.clone(),
        reported: std::sync::atomic::AtomicBool::new(false),
        deadlock: parking_lot::Mutex::new(None),
    });
    s.run_waiters.lock().push(waiter.clone());
    let pk = h.task.packet();
    while !pk.done.is_done() {
        pk.done.wait_once_unless(WaitReason::Join, &waiter.reported);
        if let Some(report) = waiter.deadlock.lock().take() {
            panic!("{report}");
        }
    }
    s.run_waiters.lock().retain(|w| !Arc::ptr_eq(w, &waiter));
    match h.join() {
        Ok(v) => v,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Wires the calling goroutine to its current OS thread (Go's `runtime.LockOSThread`): until as
/// many [`unlock_os_thread`] calls, it always runs on this thread and no other goroutine does.
/// For C libraries and OS calls that keep per-thread state (an OpenGL context, `setns`, a
/// thread-local in C), and for code that must hold a thread-bound value across a blocking call.
///
/// While the goroutine waits, its thread sleeps without a P and the others run elsewhere;
/// waking it costs a hand-off between threads (microseconds, not nanoseconds). A goroutine that
/// exits while wired releases the thread, which then runs other goroutines: restore any
/// thread state first. On a plain thread this does nothing (it already is its own thread).
pub fn lock_os_thread() {
    let Some(m) = current_m() else { return };
    let Some(g) = m.curg() else { return };
    let n = g.0.lock_count.get();
    g.0.lock_count.set(n + 1);
    if n == 0 {
        g.0.lockedm.store(m as *const crate::m::M as *mut crate::m::M, Ordering::Relaxed);
        m.lockedg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
    }
}

/// Undoes one [`lock_os_thread`]; after the last, the goroutine may run on any thread again
/// (Go's `runtime.UnlockOSThread`). Without a matching lock it does nothing.
pub fn unlock_os_thread() {
    let Some(m) = current_m() else { return };
    let Some(g) = m.curg() else { return };
    match g.0.lock_count.get() {
        0 => {}
        1 => {
            g.0.lock_count.set(0);
            g.0.lockedm.store(std::ptr::null_mut(), Ordering::Relaxed);
            m.lockedg.store(std::ptr::null_mut(), Ordering::Relaxed);
        }
        n => g.0.lock_count.set(n - 1),
    }
}

/// Whether the calling goroutine is wired to its thread ([`lock_os_thread`]).
pub fn locked_to_thread() -> bool {
    current_m().and_then(|m| m.curg()).is_some_and(|g| g.0.lock_count.get() > 0)
}

/// Yields the processor: the goroutine goes to the back of its P's queue and others run (Go's
/// `runtime.Gosched`). On a plain thread, `std::thread::yield_now`.
pub fn yield_now() {
    let Some((m, g)) = current_m().and_then(|m| Some((m, m.curg()?))) else {
        return std::thread::yield_now();
    };
    let _e = crate::park::enter_on(m, g);
    // `enter_on` does not switch goroutines: `m` is still this thread's M.
    if m.p.get().is_none() {
        suspend(g, Yield::NeedP);
    } else {
        g.0.preempt.store(false, Ordering::Relaxed);
        suspend(g, Yield::Gosched);
    }
}

/// Runs `f`, which may block its OS thread (a file read, DNS, a `std` lock, a C call), without
/// stalling other goroutines: the goroutine is marked as in a system call and, if `f` lasts
/// longer than about 20 µs, sysmon hands its P to another M (Go's entersyscall/exitsyscall).
/// Afterwards the goroutine reacquires a P, or queues itself until one is free.
///
/// On a plain thread it just calls `f`.
pub fn blocking<F: FnOnce() -> R, R>(f: F) -> R {
    let m = match current_m() {
        Some(m) if !m.curg.load(Ordering::Relaxed).is_null() => m,
        _ => return f(),
    };
    let g = m.curg().expect("curg");
    let s = sched();
    {
        let _e = enter();
    }
    struct Exit(&'static crate::sched::Sched, GRef);
    impl Drop for Exit {
        fn drop(&mut self) {
            exitsyscall(self.0, self.1);
        }
    }
    // entersyscall: the P goes from USER to SYSCALL; sysmon may take it from there.
    if let Some(p) = m.p.get() {
        p.syscalltick.store(p.syscalltick.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        // Release: pairs with sysmon's Acquire CAS when it retakes the P.
        if p.status
            .compare_exchange(crate::p::P_USER, crate::p::P_SYSCALL, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            m.p.set(None);
        }
    }
    g.0.status.store(g::SYSCALL, Ordering::Relaxed);
    s.nsyscall.fetch_add(1, Ordering::SeqCst);
    let _x = Exit(s, g);
    f()
}

fn exitsyscall(s: &'static crate::sched::Sched, g: GRef) {
    s.nsyscall.fetch_sub(1, Ordering::SeqCst);
    g.0.status.store(g::RUNNING, Ordering::Relaxed);
    let m = current_m().expect("exitsyscall on an M");
    if let Some(p) = m.p.get() {
        // Acquire: pairs with sysmon's Release when it gives up a P it did not take, and with
        // our own Release in entersyscall.
        if p.status
            .compare_exchange(crate::p::P_SYSCALL, crate::p::P_USER, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        m.p.set(None);
    }
    // Lost the P: take an idle one, or queue ourselves (only if not unwinding).
    if let Some(p) = s.try_pidleget() {
        m.p.set(Some(p));
        p.curg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
        leave();
        return;
    }
    if !std::thread::panicking() {
        suspend(g, Yield::NeedP);
        leave();
    }
}

/// Number of live goroutines (spawned and not finished), like `runtime.NumGoroutine`.
pub fn num_goroutine() -> usize {
    crate::sched::sched_if_started().map(|s| s.ngoroutines.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Idle Ps as (the scheduler's counter, the idle list's length); both agree whenever no M is
/// between the two updates. For tests of the scheduler's bookkeeping.
#[doc(hidden)]
pub fn idle_procs() -> (usize, usize) {
    crate::sched::sched_if_started().map(|s| s.idle_counts()).unwrap_or((0, 0))
}

/// How many times sysmon has taken a P from a goroutine in `blocking`. For tests.
#[doc(hidden)]
pub fn syscall_retakes() -> u64 {
    crate::sysmon::SYSCALL_RETAKES.load(Ordering::Relaxed)
}

/// The current goroutine's id, or `None` on a plain thread.
pub fn current_id() -> Option<u64> {
    current_m().and_then(|m| m.curg()).map(|g| g.id())
}

/// The number of Ps (`GOMAXPROCS`), starting the runtime if needed.
pub fn gomaxprocs() -> usize {
    sched().allp.len()
}

/// Starts the runtime now, reporting a bad environment as an error instead of a panic.
pub fn start() -> Result<(), crate::env::ConfigError> {
    crate::sched::start().map(|_| ())
}

/// Bounds `[lo, hi)` of the stack the caller runs on: its goroutine's, or its thread's.
pub fn current_stack_bounds() -> (usize, usize) {
    if let Some(g) = current_m().and_then(|m| m.curg()) {
        return (g.0.stack_lo.load(Ordering::Relaxed), g.0.stack_hi.load(Ordering::Relaxed));
    }
    thread_stack_bounds()
}

fn thread_stack_bounds() -> (usize, usize) {
    thread_local! {
        static BOUNDS: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
    }
    let b = BOUNDS.with(|b| b.get());
    if b.1 != 0 {
        return b;
    }
    let mut lo = 0usize;
    let mut size = 0usize;
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; we destroy it after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) == 0 {
            let mut addr: *mut libc::c_void = std::ptr::null_mut();
            if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 {
                lo = addr as usize;
            }
            libc::pthread_attr_destroy(&mut attr);
        }
    }
    let b = (lo, lo + size);
    BOUNDS.with(|c| c.set(b));
    b
}

/// For the SIGSEGV handler: the running goroutine's stack description. Async-signal-safe: reads
/// a thread-local and the running G's own fields.
pub(crate) fn signal_stack_info() -> Option<crate::signal::SignalStackInfo> {
    let m = current_m()?;
    let g = m.curg()?;
    // SAFETY: the G runs on this very thread (we are in its signal handler), so its exec is
    // owned by this thread and not being written concurrently.
    let exec = unsafe { &*g.0.exec.get() };
    Some(crate::signal::SignalStackInfo {
        goid: g.id(),
        g: Some(g),
        stack_lo: g.0.stack_lo.load(Ordering::Relaxed),
        stack_hi: g.0.stack_hi.load(Ordering::Relaxed),
        guard_lo: exec.guard_lo,
        guard_hi: exec.guard_hi,
    })
}

// ---------------------------------------------------------------------------------------------
// Panics, labels, descriptions
// ---------------------------------------------------------------------------------------------

/// Installs a panic hook that names the goroutine before the default message (std names the
/// thread, which for a goroutine is just whichever M ran it).
pub(crate) fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(g) = current_m().and_then(|m| m.curg()) {
            let name = g.0.name.try_lock().and_then(|n| n.clone());
            match name {
                Some(n) => eprintln!("goroutine {} [{n:?}] panicked:", g.id()),
                None => eprintln!("goroutine {} panicked:", g.id()),
            }
        }
        prev(info);
    }));
}

/// Labels are owned by the profiler; the runtime only carries an opaque pointer per goroutine
/// and calls these to clone it for a spawned goroutine and drop it when the goroutine exits.
/// Support for `gort-profiler`, not a user API.
#[doc(hidden)]
pub struct LabelOps {
    /// Returns a new reference for a child goroutine.
    ///
    /// The runtime calls it only on a non-null pointer stored with [`swap_current_labels`] and
    /// still held by a goroutine (the spawning one, which is running).
    pub clone: unsafe fn(*mut ()) -> *mut (),
    /// Releases a reference.
    ///
    /// The runtime calls it only on a non-null pointer whose reference it holds (stored with
    /// [`swap_current_labels`] or returned by `clone`), once, when its goroutine exits.
    pub drop: unsafe fn(*mut ()),
}

static LABEL_OPS: std::sync::OnceLock<LabelOps> = std::sync::OnceLock::new();

/// Registers the label operations (the profiler does, once). Only the first registration
/// counts: returns false, installing nothing, if there was one already.
///
/// # Safety
///
/// From then on the runtime calls `ops.clone` and `ops.drop` on the non-null labels pointers
/// stored with [`swap_current_labels`], as [`LabelOps`] describes: they must be sound for every
/// pointer that anyone stores there (whoever stores must hold to what these ops expect).
#[doc(hidden)]
pub unsafe fn set_label_ops(ops: LabelOps) -> bool {
    LABEL_OPS.set(ops).is_ok()
}

/// The type name of the current goroutine's body (`None` on a plain thread).
pub fn current_entry_name() -> Option<&'static str> {
    current_m().and_then(|m| m.curg()).and_then(|g| g::entry_name(g.0))
}

/// The current goroutine's labels pointer (null if none or on a plain thread). Reading it is
/// harmless; using it is the caller's business.
#[doc(hidden)]
pub fn current_labels() -> *mut () {
    current_m().and_then(|m| m.curg()).map(|g| g.0.labels.load(Ordering::Relaxed)).unwrap_or(std::ptr::null_mut())
}

/// Replaces the current goroutine's labels pointer, returning the old one: the reference each
/// stands for moves with it. On a plain thread nothing is stored and `new` comes back.
///
/// # Safety
///
/// `new` must be null, or a pointer owning one reference under the [`LabelOps`] registered
/// with [`set_label_ops`] (registered before `new` is stored): the runtime will `clone` it for
/// every goroutine spawned from this one and `drop` it when this goroutine exits, and the
/// profiler reads it as its own. Whether the pointer that comes back is live is the caller's
/// protocol with whoever stored it.
#[doc(hidden)]
pub unsafe fn swap_current_labels(new: *mut ()) -> *mut () {
    match current_m().and_then(|m| m.curg()) {
        Some(g) => g.0.labels.swap(new, Ordering::AcqRel),
        None => new,
    }
}

pub(crate) fn inherit_labels(parent: GRef, child: GRef) {
    let l = parent.0.labels.load(Ordering::Relaxed);
    if !l.is_null() {
        if let Some(ops) = LABEL_OPS.get() {
            // SAFETY: `l` was stored with `swap_current_labels` by the parent, which is running
            // (it is spawning), so it still holds that reference; the registered ops accept it
            // (contracts of `set_label_ops` and `swap_current_labels`).
            let c = unsafe { (ops.clone)(l) };
            child.0.labels.store(c, Ordering::Relaxed);
        }
    }
}

pub(crate) fn clear_labels(g: GRef) {
    let l = g.0.labels.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !l.is_null() {
        if let Some(ops) = LABEL_OPS.get() {
            // SAFETY: the swap took the G's one reference out of its slot (stored with
            // `swap_current_labels` or made by `clone`), so it is released exactly once, with
            // the ops it was made for (contracts of `set_label_ops` and `swap_current_labels`).
            unsafe { (ops.drop)(l) };
        }
    }
}

/// One goroutine's header, as Go prints it: `goroutine 7 [chan receive, 2 minutes]:` followed
/// by how long and where it was created.
pub(crate) fn describe_waiting(g: GRef, now: u64) -> String {
    let r = WaitReason::from_u8(g.0.wait_reason.load(Ordering::Relaxed));
    let since = g.0.wait_since.load(Ordering::Relaxed);
    let waited = now.saturating_sub(since);
    let mins = waited / 60_000_000_000;
    let mut s = format!("goroutine {} [{}", g.id(), if r == WaitReason::Zero { "waiting" } else { r.as_str() });
    if mins >= 1 {
        s.push_str(&format!(", {mins} minutes"));
    }
    s.push_str("]:\n");
    s.push_str(&format!("\twaiting for {:.3}s\n", waited as f64 / 1e9));
    let loc = g.0.created_at.load(Ordering::Relaxed);
    if !loc.is_null() {
        // SAFETY: created_at holds &'static Locations.
        let loc = unsafe { &*loc };
        let parent = g.0.parent_goid.load(Ordering::Relaxed);
        s.push_str(&format!("created at {}:{}:{} in goroutine {parent}\n", loc.file(), loc.line(), loc.column()));
    }
    s
}

/// One OS thread the runtime created to run goroutines (an M), for the threadcreate profile.
#[derive(Clone, Debug)]
pub struct ThreadInfo {
    /// 1-based M number (the thread is named `gort-m<id>`).
    pub id: usize,
    /// The goroutine whose actions created the thread (0: none, e.g. sysmon or a plain thread).
    pub created_by: u64,
    /// Return addresses of the creating code, leaf first (Go's `mp.createstack`).
    pub create_stack: Vec<usize>,
}

/// Every M created so far (Ms never exit).
pub fn threads() -> Vec<ThreadInfo> {
    match crate::sched::sched_if_started() {
        None => Vec::new(),
        Some(s) => s
            .allm
            .lock()
            .iter()
            .map(|m| ThreadInfo {
                id: m.id,
                created_by: m.created_by.load(Ordering::Relaxed) as u64,
                create_stack: m.create_stack.clone(),
            })
            .collect(),
    }
}

/// A snapshot of one goroutine, for dumps and profiles.
#[derive(Clone, Debug)]
pub struct GoroutineInfo {
    /// Goroutine id.
    pub id: u64,
    /// `runnable`, `running`, `syscall` or the wait reason.
    pub state: String,
    /// Wait reason while waiting.
    pub wait_reason: Option<WaitReason>,
    /// Nanoseconds spent waiting so far (0 unless waiting).
    pub waiting_ns: u64,
    /// Name from `Builder::name`.
    pub name: Option<Arc<str>>,
    /// Parent goroutine id (0: spawned from a plain thread).
    pub parent_id: u64,
    /// The `spawn`/`go!` call site.
    pub created_at: Option<&'static Location<'static>>,
    /// An address inside the function that spawned (Go's `gopc`; 0 if unknown). With debug info
    /// it symbolizes to the runtime's `spawn` inlined into that function; the profiler skips
    /// the runtime's frames.
    pub created_pcs: [usize; g::CREATED_PCS],
    /// The type name of the goroutine's body (`my_crate::handler::{{closure}}`).
    pub entry_name: Option<&'static str>,
}

/// Lists live goroutines without stopping anything.
pub fn goroutines() -> Vec<GoroutineInfo> {
    let now = crate::time::nanotime();
    let mut v = Vec::new();
    g::for_each_g(|g| {
        let st = g.status();
        let state = match st {
            g::RUNNABLE => "runnable".to_string(),
            g::RUNNING => "running".to_string(),
            g::SYSCALL => "syscall".to_string(),
            g::WAITING => WaitReason::from_u8(g.0.wait_reason.load(Ordering::Relaxed)).as_str().to_string(),
            _ => return,
        };
        let waiting = st == g::WAITING;
        let loc = g.0.created_at.load(Ordering::Relaxed);
        v.push(GoroutineInfo {
            id: g.id(),
            state,
            wait_reason: waiting.then(|| WaitReason::from_u8(g.0.wait_reason.load(Ordering::Relaxed))),
            waiting_ns: if waiting { now.saturating_sub(g.0.wait_since.load(Ordering::Relaxed)) } else { 0 },
            name: if g.0.has_name.load(Ordering::Relaxed) { g.0.name.lock().clone() } else { None },
            parent_id: g.0.parent_goid.load(Ordering::Relaxed),
            // SAFETY: created_at holds &'static Locations or null.
            created_at: if loc.is_null() { None } else { Some(unsafe { &*loc }) },
            created_pcs: std::array::from_fn(|i| g.0.created_pcs[i].load(Ordering::Relaxed)),
            entry_name: g::entry_name(g.0),
        });
    });
    v.sort_by_key(|i| i.id);
    v
}

/// Payload type of a goroutine panic (re-exported for users matching on it).
pub type PanicPayload = Box<dyn Any + Send + 'static>;
