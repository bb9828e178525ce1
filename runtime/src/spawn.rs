//! Spawning and joining goroutines (Go's `newproc`, plus what Go has no need of: a
//! `JoinHandle`), the `go!` macro, and `run`, which runs a main goroutine for a plain thread.
//!
//! Every entry point here that runs user code on a goroutine is `unsafe`: see the crate docs,
//! "Why running code on a goroutine is `unsafe`".

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::blockcache::{alloc_global, class_of, free_global, Class};
use crate::g::{self, Entry, EntryFns, GRef, WaitReason};
use crate::m::current_m;
use crate::park::{enter, in_goroutine, put_next, safepoint};
use crate::sched::deadlock::{RunWaiter, TakeWaiter, RUN_WAITERS};
use crate::sched::execute::{claim_stack, count_live, gfget};
use crate::stack::{MAX_STACK_SIZE, MIN_STACK_SIZE};
use crate::start::sched;
use crate::threadg::thread_g;
use crate::waitslot::WaitSlot;

// Tasks

/// The part of every task that does not depend on its types. A task is one block: this header
/// and the closure's stage ([`Task`]), counted by hand so that the block can come from the M's
/// recycled memory (`blockcache.rs`) instead of `malloc`.
#[repr(C)]
struct Header {
    /// Counted references: the G's entry (until the goroutine finishes), the `JoinHandle`, and
    /// `run`'s deadlock waiter while it waits.
    refs: AtomicUsize,
    /// Done once the result is written; holds the G waiting in join, if any.
    done: WaitSlot,
    /// What depends on the task's types: its destruction and the taking of its result.
    vt: &'static TaskVtable,
}

/// A task's functions, one static per task type.
struct TaskVtable {
    /// Drops the task in place and frees its block; called once, by the last reference.
    destroy: unsafe fn(NonNull<Header>),
    /// Moves the result out to a `std::thread::Result<T>` slot, for the handle.
    take: unsafe fn(NonNull<Header>, *mut ()),
}

/// What a task holds besides its header: the closure until the goroutine starts, then its
/// result until the handle takes it. One cell for both, since they are never alive together:
/// a million live handles keep a million tasks, whose size is the memory they cost.
enum Stage<T, F> {
    /// Not started: the closure.
    Pending(F),
    /// Running, or its result taken.
    Empty,
    /// Finished: what the closure returned, or its panic.
    Done(std::thread::Result<T>),
}

/// A whole task. `repr(C)` with the header first: a pointer to it is a pointer to its `Header`.
#[repr(C)]
struct Task<T, F> {
    h: Header,
    /// Changed by the goroutine (taking the closure when it starts, writing the result before
    /// `done` completes, Release), then by the handle (taking the result, after it observes
    /// done, Acquire), or by the last reference (dropping it): never two at once.
    stage: UnsafeCell<Stage<T, F>>,
}

impl<T: Send, F: FnOnce() -> T + Send> Task<T, F> {
    /// The block size class the task fits, if any (else it is `malloc`ed).
    const CLASS: Option<Class> = class_of(Layout::new::<Self>());

    /// How the G runs and releases its reference.
    const ENTRY: EntryFns = EntryFns { run: Self::run, release: release_erased };

    /// How the header's users destroy the task and take its result.
    const VT: TaskVtable = TaskVtable { destroy: Self::destroy, take: Self::take };

    /// A new task holding `f`, with two references: the G's and the handle's.
    fn alloc(f: F) -> NonNull<Self> {
        let block = match Self::CLASS {
            Some(c) => {
                // SAFETY: this M's cache, on its thread, borrowed only for the call, which
                // cannot switch goroutines (`M::blocks`).
                let cached = current_m().and_then(|m| unsafe { (*m.blocks.get()).alloc(c) });
                cached.unwrap_or_else(|| alloc_global(c))
            }
            None => {
                let l = Layout::new::<Self>();
                // SAFETY: the header makes the size non-zero.
                NonNull::new(unsafe { std::alloc::alloc(l) }).unwrap_or_else(|| std::alloc::handle_alloc_error(l))
            }
        };
        let t = block.cast::<Self>().as_ptr();
        // SAFETY: the block is fresh, ours, and fits `Self` (its class or its own layout); each
        // field is written in place (building the task first and moving it in cost a copy).
        unsafe {
            (&raw mut (*t).h).write(Header { refs: AtomicUsize::new(2), done: WaitSlot::new(), vt: &Self::VT });
            (&raw mut (*t).stage).write(UnsafeCell::new(Stage::Pending(f)));
        }
        block.cast()
    }

    /// The G's entry: runs the closure, completes the task and releases the G's reference.
    ///
    /// # Safety
    ///
    /// `p` is the G's reference to a live `Task<T, F>` (`Entry::new`'s contract), run once.
    unsafe fn run(p: NonNull<()>) {
        let t = p.cast::<Self>();
        // SAFETY: the task is alive (the G's reference); until `done` completes only the
        // goroutine that runs it touches the stage (the handle waits for done, the last
        // reference is not given up before).
        let stage = unsafe { &(*t.as_ptr()).stage };
        // SAFETY: as above; the borrow ends with the statement.
        let Stage::Pending(f) = std::mem::replace(unsafe { &mut *stage.get() }, Stage::Empty) else {
            panic!("gort: task started twice")
        };
        let r = catch_unwind(AssertUnwindSafe(f));
        // SAFETY: as above: only the finishing goroutine writes the result, once, before
        // completing; the stage it replaces is `Empty`, which owns nothing.
        unsafe {
            stage.get().write(Stage::Done(r));
            (*t.as_ptr()).h.done.complete();
        }
        // SAFETY: the G's reference, given up here.
        unsafe { release(t.cast()) };
    }

    /// Moves the finished task's result out to `out`.
    ///
    /// # Safety
    ///
    /// `h` is a live `Task<T, F>` whose `done` the caller observed (Acquire), the caller holds
    /// a reference to it and is the one handle that takes its result, and `out` is valid for
    /// writing a `std::thread::Result<T>`.
    unsafe fn take(h: NonNull<Header>, out: *mut ()) {
        let t = h.cast::<Self>();
        // SAFETY: the writer finished before done (observed with Acquire); the handle is the
        // only one to touch the stage after that, and the caller's reference keeps it alive.
        let stage = unsafe { &mut *(*t.as_ptr()).stage.get() };
        let Stage::Done(r) = std::mem::replace(stage, Stage::Empty) else {
            panic!("gort: join result taken twice (polled after it resolved?)")
        };
        // SAFETY: the caller's contract on `out`.
        unsafe { out.cast::<std::thread::Result<T>>().write(r) };
    }

    /// Drops the task and frees its block.
    ///
    /// # Safety
    ///
    /// The last reference to a `Task<T, F>`, given up.
    unsafe fn destroy(h: NonNull<Header>) {
        let t = h.cast::<Self>();
        // SAFETY: no reference is left, so nobody else can see the task; dropped once. User
        // code may run here (the result's or the unrun closure's drop), even park and move to
        // another M: the block is freed afterwards, to whichever M then runs this.
        unsafe { std::ptr::drop_in_place(t.as_ptr()) };
        match Self::CLASS {
            Some(c) => match current_m() {
                // SAFETY: as in `alloc`; the block came from some cache or `alloc_global` for `c`
                // and its task is gone. A spill is put away after the borrow.
                Some(m) => drop(unsafe { (*m.blocks.get()).free(c, t.cast()) }),
                // SAFETY: as above.
                None => unsafe { free_global(c, t.cast()) },
            },
            // SAFETY: `alloc` took the block from the global allocator with this layout.
            None => unsafe { std::alloc::dealloc(t.as_ptr().cast(), Layout::new::<Self>()) },
        }
    }
}

/// Gives up one reference to a task, destroying it if it was the last.
///
/// # Safety
///
/// The caller owns one reference to the live task at `h` and does not use it afterwards.
unsafe fn release(h: NonNull<Header>) {
    // Release, and Acquire on the last: as `Arc`'s drop, so that every use of the task through
    // other references happens before its destruction.
    // SAFETY: the reference keeps the header alive until this decrement.
    if unsafe { h.as_ref() }.refs.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        // SAFETY: that was the last reference; `destroy` is the task's own.
        unsafe { (h.as_ref().vt.destroy)(h) };
    }
}

/// [`release`] for an [`Entry`] that never ran.
///
/// # Safety
///
/// As for [`release`].
unsafe fn release_erased(p: NonNull<()>) {
    // SAFETY: the caller's contract.
    unsafe { release(p.cast()) }
}

/// A counted reference to a task's header, for `run`'s deadlock waiter.
struct TaskRef(NonNull<Header>);

// SAFETY: the header is shared only through `&`: its count is atomic, `done` is Sync, and
// `vt.destroy` may run on any thread (the task's closure and result are Send).
unsafe impl Send for TaskRef {}
// SAFETY: as above.
unsafe impl Sync for TaskRef {}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: this reference was counted when the TaskRef was made, and is given up here.
        unsafe { release(self.0) }
    }
}

/// A task's completion slot, for a deadlock report to take a blocked `run` out of its wait.
impl TakeWaiter for TaskRef {
    fn take_waiter(&self, g: GRef) -> bool {
        // SAFETY: our reference keeps the header alive.
        unsafe { self.0.as_ref() }.done.take_waiter(g)
    }
}

/// An owned permission to join a goroutine (wait for it to finish and take its result).
/// Dropping it detaches the goroutine, as with `std::thread::JoinHandle`.
///
/// It is also a [`Future`] for async code (a Tokio task awaiting a goroutine): it resolves to
/// what [`join`](JoinHandle::join) returns, `Err(payload)` if the goroutine panicked. The
/// goroutine's exit wakes the task that polled last; no thread waits. Dropping the handle before
/// it resolves detaches the goroutine and drops the stored waker. Polling it again after it
/// resolved panics, and so does `join` after it resolved.
pub struct JoinHandle<T> {
    /// The handle's counted reference to its task, whose result is a `T`.
    task: NonNull<Header>,
    id: u64,
    /// The handle may drop a `T` (the result, if it destroys the task).
    _result: PhantomData<T>,
}

// SAFETY: a handle is made only for `T: Send` tasks (`spawn_inner` requires it), so whatever
// `T` names here is Send: another thread may take the result or destroy the task (whose
// closure is Send too). The header is shared through `&` only (an atomic count and a Sync
// `WaitSlot`). As for `std::thread::JoinHandle`, no bound on `T` is needed.
unsafe impl<T> Send for JoinHandle<T> {}
// SAFETY: through `&JoinHandle` only the id and the completion state can be read.
unsafe impl<T> Sync for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// The task's header.
    fn head(&self) -> &Header {
        // SAFETY: the handle's reference keeps the task alive; the header is shared only
        // through `&` (an atomic count, a Sync `WaitSlot`, a static table).
        unsafe { self.task.as_ref() }
    }

    /// Takes the result, once `done` was observed.
    fn take(&self) -> std::thread::Result<T> {
        let h = self.head();
        debug_assert!(h.done.is_done());
        let mut out = std::mem::MaybeUninit::<std::thread::Result<T>>::uninit();
        // SAFETY: `done` was observed (Acquire), the handle's reference keeps the task alive, and
        // the caller is the one handle that takes (`join` or a poll); the table is the task's
        // own, made for this `T` (`spawn_inner`), and `out` is a slot for its result.
        unsafe { (h.vt.take)(self.task, out.as_mut_ptr().cast()) };
        // SAFETY: `take` wrote the result, or panicked and we are not here.
        unsafe { out.assume_init() }
    }

    /// Another counted reference to the task, for `run`'s deadlock waiter.
    fn task_ref(&self) -> TaskRef {
        // Relaxed: as `Arc::clone`; the new reference is made from one the caller holds.
        self.head().refs.fetch_add(1, Ordering::Relaxed);
        TaskRef(self.task.cast())
    }

    /// Waits for the goroutine to finish. `Err` holds the panic payload if it panicked.
    /// On a goroutine this parks the goroutine; on a plain thread it blocks the thread.
    pub fn join(self) -> std::thread::Result<T> {
        self.head().done.wait(WaitReason::Join);
        self.take()
    }

    /// The goroutine's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the goroutine has finished.
    pub fn is_finished(&self) -> bool {
        self.head().done.is_done()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = std::thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.head().done.poll_done(cx.waker()) {
            Poll::Ready(self.take())
        } else {
            Poll::Pending
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        // A waker stored by a poll keeps its task alive; let it go with the handle.
        self.head().done.unregister();
        // SAFETY: the handle's reference, given up as it goes.
        unsafe { release(self.task.cast()) };
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).finish_non_exhaustive()
    }
}

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
    /// `sleep` and `Timer::wait`, [`yield_now`](crate::yield_now), [`JoinHandle::join`], a `gort::net` operation that
    /// waits, [`park`](crate::park()), leaving [`blocking`](crate::blocking()), a spawn, or any call that makes one. The
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
    /// [module docs](crate#the-contract) explain each point.
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
                if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&sz) {
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
/// `sleep` and `Timer::wait`, [`yield_now`](crate::yield_now), [`JoinHandle::join`], a `gort::net` operation that
/// waits, [`park`](crate::park()), leaving [`blocking`](crate::blocking()), a spawn, or any call that makes one. The
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
/// [module docs](crate#the-contract) explain each point.
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
    claim_stack(sched())?;
    let task = Task::alloc(f);
    // SAFETY: one of the task's two references, handed to the G; `Task::ENTRY`'s functions are
    // the task's own and it may run and be released on any thread (`F` and `T` are Send).
    let entry = unsafe { Entry::new(task.cast(), &Task::<T, F>::ENTRY) };
    let id = newproc(entry, loc, pc, std::any::type_name::<F> as fn() -> &'static str, name, custom, main);
    // The handle's `T` is the task's: `JoinHandle::take` relies on it to call the table's `take`.
    Ok(JoinHandle { task: task.cast(), id, _result: PhantomData })
}

/// Creates a G for `entry` and makes it runnable (Go's newproc).
///
/// `pc` is Go's `gopc`: an address inside the function that spawned, taken by the public entry
/// points, which are `#[inline(always)]` so that the address is in their caller's code. One
/// instruction instead of a stack walk, which in a build without frame pointers would be a CFI
/// unwind on every spawn.
#[inline(never)]
fn newproc(
    entry: Entry,
    loc: &'static Location<'static>,
    pc: usize,
    entry_name: fn() -> &'static str,
    name: Option<String>,
    custom: usize,
    main: bool,
) -> u64 {
    let s = sched();
    // `GORT_LEAKCHECK`'s census is a service above `start`: it starts with the first goroutine.
    crate::census::start_from_env(&s.cfg);
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
        *g.0.rare().name.lock() = Some(Arc::from(n));
        g.0.has_name.store(true, Ordering::Relaxed);
    }
    if let Some(pg) = parent {
        // SAFETY: the parent is the running goroutine (it is spawning), so it may read its own
        // slot; the child is IDLE, just taken from a free list, so its slot is ours to set (and
        // empty: the G's last goroutine cleared it at exit).
        let l = unsafe { pg.0.labels_ref() };
        if !l.is_null() {
            // SAFETY: as above.
            unsafe { g.0.swap_labels(l) };
        }
    }
    // SAFETY: the G is IDLE and was just taken from a free list: we own it (state table).
    unsafe {
        let exec = &mut *g.0.exec.get();
        exec.entry = Some(entry);
        exec.custom_stack = custom;
    }
    count_live(s, p, 1);
    // The wall profile charges a new goroutine from its spawn, not from its G's last exit.
    crate::schedstats::stamp_spawn(g.0);
    // Release: publishes the fields above to the M that will Acquire-CAS it to RUNNING.
    g.0.status.store(g::RUNNABLE, Ordering::Release);
    // SAFETY: after enter() the current M owns its P, if it has one.
    unsafe { put_next(p, g) };
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
        $crate::spawn(move || $crate::Apply::apply($($f)::+, __gort_args))
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
/// another initialiser), `sleep` and `Timer::wait`, [`yield_now`](crate::yield_now), [`JoinHandle::join`], a
/// `gort::net` operation that waits, [`park`](crate::park()), leaving [`blocking`](crate::blocking()), a spawn, or any
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
/// [module docs](crate#the-contract) explain each point.
#[track_caller]
#[inline(always)] // the spawn site's pc must land in the caller (see `newproc`)
pub unsafe fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if in_goroutine() {
        return f();
    }
    let tg = thread_g();
    let h = match spawn_inner(f, Location::caller(), crate::unwind::caller_pc(), None, 0, true) {
        Ok(h) => h,
        Err(e) => panic!("failed to spawn the main goroutine: {e}"),
    };
    let waiter = Arc::new(RunWaiter {
        main_goid: h.id,
        thread_g: tg,
        done: Arc::new(h.task_ref()),
        reported: std::sync::atomic::AtomicBool::new(false),
        deadlock: parking_lot::Mutex::new(None),
    });
    RUN_WAITERS.lock().push(waiter.clone());
    let done = &h.head().done;
    while !done.is_done() {
        done.wait_once_unless(WaitReason::Join, &waiter.reported);
        if let Some(report) = waiter.deadlock.lock().take() {
            panic!("{report}");
        }
    }
    RUN_WAITERS.lock().retain(|w| !Arc::ptr_eq(w, &waiter));
    match h.join() {
        Ok(v) => v,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_task_fits_a_64_byte_block() {
        // The closure and its result share one cell: a task capturing a word and returning one
        // is its header and three words.
        fn size_of_task<T: Send, F: FnOnce() -> T + Send>(_: &F) -> usize {
            std::mem::size_of::<Task<T, F>>()
        }
        let i = 7usize;
        let f = move || i * 2;
        assert!(size_of_task(&f) <= 64, "{}", size_of_task(&f));
        assert_eq!(Task::<usize, fn() -> usize>::CLASS, class_of(Layout::from_size_align(64, 8).unwrap()));
    }
}
