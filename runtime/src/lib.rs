//! gort-runtime: Go's runtime in Rust. Goroutines on stackful coroutines, scheduled M:N by a
//! G-M-P scheduler, parked and readied with `park`/`ready`, woken by an epoll netpoller; channels,
//! `select!`, goroutine-aware `sync` and `net` on top. Most programs use it through the `gort`
//! crate, which adds the profiler.
//!
//! ```
//! use gort_runtime::chan::chan;
//!
//! let (tx, rx) = chan::<u64>(0);
//! // SAFETY: the goroutines hold only channel handles (Send) and touch no thread-local.
//! let sum = unsafe {
//!     gort_runtime::run(move || {
//!         for i in 1..=10u64 {
//!             let tx = tx.clone();
//!             gort_runtime::go!(move || tx.send(i * i).unwrap());
//!         }
//!         drop(tx);
//!         rx.iter().sum::<u64>()
//!     })
//! };
//! assert_eq!(sum, 385);
//! ```
//!
//! # Layers
//!
//! Each module knows only the modules of the layers below its own (`tests/layers.rs` checks
//! every `use` line and inline `crate::` path against this list). From the bottom:
//!
//! ```text
//! 1. primitives    ilist fence lock fastrand clock sig stack/{mod,vm,guard,pool} env blockcache
//!                  prefetch
//!                  unwind/{modules,cfi,mod} stack/spare
//! 2. goroutine     g/{wait_reason,hold,mod,labels} timer_heap schedstats
//! 3. machine       globrunq runnext usergate p m threadg traceback stack/overflow netpoll mprof
//!                  cpuprof mhooks running parksite hog wall
//! 4. scheduler     sched/state sched/netspin sched/idle sched/deadlock park sched/timers
//!                  sched/find sched/execute sched/mod sysmon start
//! 5. services      time loom waitslot parker block_on census spawn time/after_func
//!                  blocking lock_os_thread labels snapshot metrics
//! 6. libraries     chan/* sync/* net/*
//! ```
//!
//! Within a layer the order of the list is the order of dependency too: `park` may use
//! `sched/idle` (to wake an M) but the scheduler's loop (`sched/find`, `sched/execute`,
//! `sched/mod`) sits above `park`, because a goroutine parks by switching back to it, not by
//! calling it. Two inversions keep the arrows pointing down: the M loop is handed to the idle
//! protocol as a function pointer (`Sched::mstart`), so starting an M does not depend on what it
//! runs; and the timer heap fires callbacks through a trait (`timer_heap::TimerFunc`) that
//! `time` implements.
//!
//! # Where things are
//!
//! - [`g`]: the goroutine descriptor, its states and who owns which field.
//! - `m.rs`, `p.rs`: OS threads and processors; `globrunq.rs`: the global run queue;
//!   `threadg.rs`: plain threads' stand-in Gs.
//! - `sched/`: the scheduler (its `mod.rs` explains the design and lists its files).
//! - `park.rs`: [`park`]/[`ready`], the primitive under every blocking operation; `parker.rs` the
//!   safe [`sync::Parker`] on them; `waitslot.rs` the one-shot event under `join` and `run`;
//!   `block_on.rs` ([`block_on`]) a future polled on the goroutine, parked on a `Parker`.
//! - `spawn.rs` ([`spawn`], [`run`], [`Builder`], [`go!`]; a task's memory comes from
//!   `blockcache.rs`, blocks recycled per M), `blocking.rs` ([`blocking`]),
//!   `lock_os_thread.rs`, [`time`], `snapshot.rs` ([`goroutines`], [`threads`]), `labels.rs`,
//!   [`census`] (the goroutine leak census and finder).
//! - `stack/`: pooled stacks, guards, the overflow handler, and each M's spare stack (where a
//!   goroutine's walk of its own stack runs); `unwind/` and `traceback.rs`: stack walks; [`mprof`]: mutex and block profile records; [`cpuprof`]: CPU profile samples
//!   (SIGPROF); [`env`](mod@env): configuration.
//! - [`chan`], [`sync`], [`net`]: what programs use.
//! - `loom.rs`: the seam through which loom model-checks `WaitSlot`, `Parker`, `block_on` and
//!   `Sema`; under `--cfg gort_loom` the crate is cut down to those, `runnext.rs` (a P's
//!   `runnext` slot), `lock.rs` (the short lock), `fence.rs` (the asymmetric fence under it) and
//!   `g/hold.rs` (a goroutine's hold) and `usergate.rs` (a P's way back from user mode), which
//!   sit below the seam's layer and bring their own loom atomics.
//!
//! ## Why running code on a goroutine is `unsafe`
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
//! [`time::after_func`] (its function runs on a goroutine), and
//! [`go!`], which expands to a call of `spawn` and so must be written inside an
//! `unsafe` block.
//!
//! ## The contract
//!
//! The *blocking operations* are every gort call that can park or yield the calling goroutine,
//! after which it may run on another thread: channel `send`/`recv` (and their timeout forms, and
//! receiving from `after`/`tick`), `select!` without a `default` arm, `gort::sync` waits
//! (`Mutex::lock`, `RwLock::read`/`write`, `WaitGroup::wait`, `Cond::wait`,
//! `Semaphore::acquire`, `Once::call_once` and `OnceLock` initialisation while another goroutine
//! runs it), `time::sleep` and `Timer` waits, [`yield_now`], [`JoinHandle::join`], `gort::net`
//! operations that wait for the socket (`accept`, `connect`, `read`, `write`, `recv`, `send`, ...),
//! [`park`](park()), leaving [`blocking`] (the closure itself stays on its thread), spawning
//! ([`spawn`], [`go!`], [`Builder::spawn`]; a spawn, like the entry of a channel operation or
//! a lock, is where a goroutine that has run too long yields when the runtime asks it to),
//! [`block_on`] (between any two polls; so everything a
//! future keeps across an `.await` is kept across a blocking operation), and any function that
//! calls one of these.
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
//! accessors that are called again after every switch. The one exception is a hint: whether
//! sysmon asked the running goroutine to yield, an atomic flag read inline at the entry of a
//! blocking operation, for which another M's flag (Ms never exit) is a harmless answer.
//!
//! ## The alternative not taken
//!
//! A started goroutine could stay on the thread that first ran it (with a way to opt out at
//! startup). That would mean per-thread run queues with no stealing of started goroutines, no
//! hand-off of a thread's goroutines when it is stuck in [`blocking`] (they would wait for it),
//! and a goroutine that computes without yielding would starve every goroutine of its thread
//! while other threads idle: the scheduler this crate is about would be gone. The `unsafe` costs
//! nothing at run time: the entry points run exactly the code they ran when they were safe.
#![deny(unsafe_op_in_unsafe_fn)]
// The model-checking build keeps only the modelled protocols and their seam (`loom.rs`).
#![cfg_attr(gort_loom, allow(dead_code, unused_imports))]

// 1. primitives
// Small blocks recycled per M, for spawned goroutines' tasks.
#[cfg(not(gort_loom))]
mod blockcache;
#[cfg(not(gort_loom))]
mod clock;
#[cfg(not(gort_loom))]
pub mod env;
#[cfg(not(gort_loom))]
mod fastrand;
// The asymmetric fence under the lock and the scan hold.
mod fence;
mod ilist;
mod lock;
#[cfg(not(gort_loom))]
mod sig;
// Software prefetch of cold lines.
#[cfg(not(gort_loom))]
mod prefetch;
#[cfg(not(gort_loom))]
mod stack;
#[cfg(not(gort_loom))]
pub mod unwind;
// 2. goroutine
#[cfg(not(gort_loom))]
pub mod g;
#[cfg(not(gort_loom))]
pub mod schedstats;
#[cfg(not(gort_loom))]
mod timer_heap;
// 3. machine
#[cfg(not(gort_loom))]
pub mod cpuprof;
#[cfg(not(gort_loom))]
mod globrunq;
#[cfg(not(gort_loom))]
pub mod hog;
#[cfg(not(gort_loom))]
mod m;
#[cfg(not(gort_loom))]
mod mhooks;
#[cfg(not(gort_loom))]
pub mod mprof;
#[cfg(not(gort_loom))]
mod netpoll;
// A P's `runnext` slot and its one unowned protocol (model-checked under loom).
#[cfg(not(gort_loom))]
mod p;
// A P's way back from user mode against sysmon's retake (model-checked under loom).
#[cfg(not(gort_loom))]
// Parked goroutines' stacks for the wall-clock profile and the leak census (documented inside:
// an outer doc comment here would make rustdoc resolve the module's links from the crate root).
pub mod parksite;
mod runnext;
#[cfg(not(gort_loom))]
mod running;
#[cfg(not(gort_loom))]
mod threadg;
#[cfg(not(gort_loom))]
pub mod traceback;
mod usergate;
#[cfg(not(gort_loom))]
pub mod wall;
// 4. scheduler
#[cfg(not(gort_loom))]
mod park;
#[cfg(not(gort_loom))]
mod sched;
#[cfg(not(gort_loom))]
mod start;
#[cfg(not(gort_loom))]
mod sysmon;
// 5. services
mod block_on;
#[cfg(not(gort_loom))]
mod blocking;
#[cfg(not(gort_loom))]
pub mod census;
#[cfg(not(gort_loom))]
mod labels;
#[cfg(not(gort_loom))]
mod lock_os_thread;
mod loom;
#[cfg(not(gort_loom))]
mod metrics;
mod parker;
#[cfg(not(gort_loom))]
mod snapshot;
#[cfg(not(gort_loom))]
mod spawn;
#[cfg(not(gort_loom))]
pub mod time;
mod waitslot;
// 6. libraries
#[cfg(not(gort_loom))]
pub mod chan;
#[cfg(not(gort_loom))]
pub mod net;
#[cfg(not(gort_loom))]
pub mod sync;
#[cfg(gort_loom)]
mod g {
    pub(crate) mod hold;
}
#[cfg(gort_loom)]
mod sync {
    pub(crate) mod sema;
    mod waitlist;
}

#[cfg(not(gort_loom))]
pub use crate::{
    block_on::block_on,
    blocking::blocking,
    env::{Config, ConfigError},
    g::{for_each_g, for_each_g_held, GRef, Labels, ParkRegs, Parked, WaitReason},
    labels::{current_labels, set_current_labels},
    lock_os_thread::{lock_os_thread, locked_to_thread, unlock_os_thread},
    metrics::{metrics, Metrics},
    mhooks::on_each_m,
    park::{current, in_goroutine, park, ready, yield_now},
    running::{running_stacks, RunningStack},
    snapshot::{
        current_entry_name, current_id, for_each_g_held_yielding, goroutines, idle_procs, num_goroutine,
        syscall_retakes, threads, GoroutineInfo, PanicPayload, ThreadInfo,
    },
    spawn::{run, spawn, Apply, Builder, JoinHandle},
    start::{gomaxprocs, start, start_with, StartError},
    traceback::current_stack_bounds,
};
