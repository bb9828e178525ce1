#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]

pub use gort_runtime::{
    blocking, go, run, select, spawn, start, start_with, Builder, Config, ConfigError, JoinHandle, PanicPayload,
    StartError,
};

/// Runs a future to completion on the calling goroutine, which parks (its thread runs other
/// goroutines) while the future is pending, shown in goroutine dumps with the wait reason
/// `future`; on a plain OS thread the thread blocks. The bridge from goroutines to async Rust:
/// runtime-agnostic futures (`futures` channels, `async-channel`) work as they are.
///
/// With the `tokio` feature, the polls run inside a Tokio runtime's context, so Tokio's sockets
/// and timers (and hyper, reqwest, ...) work too: see `gort::tokio_bridge`. (Then the first call
/// starts that runtime, unless one was handed in, and every thread that runs goroutines enters
/// its context for good; [`runtime::block_on`] is the bare one, which never enters or starts
/// anything.)
///
/// The waker tolerates late, duplicate and cross-thread wakes, and a wake during a poll makes
/// another poll. A panic in the future is the goroutine's panic. `block_on` is a blocking
/// operation (the runtime's contract): what the future keeps across an `.await` is kept across
/// a park, so no thread-bound values there. More in
/// [`gort_runtime::block_on`](gort_runtime::block_on()).
///
/// ```
/// let (tx, rx) = futures_channel::oneshot::channel();
/// // SAFETY: the goroutines hold only channel halves (Send) and touch no thread-local.
/// let got = unsafe {
///     gort::run(move || {
///         gort::go!(move || tx.send(42).unwrap());
///         gort::block_on(rx).unwrap()
///     })
/// };
/// assert_eq!(got, 42);
/// ```
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    #[cfg(feature = "tokio")]
    return tokio_bridge::block_on(fut);
    #[cfg(not(feature = "tokio"))]
    gort_runtime::block_on(fut)
}

// Tokio's reactor and timer for `block_on` (documented inside: an outer doc comment here would
// make rustdoc resolve the module's links from the crate root).
#[cfg(feature = "tokio")]
pub mod tokio_bridge;

/// Channels: Go's `chan T` (`chan::<T>(cap)`, `select!`).
pub use gort_runtime::chan;
/// Blocking-style TCP (and UDP, Unix) sockets on the epoll netpoller.
pub use gort_runtime::net;
/// Goroutine-aware `Mutex`, `RwLock`, `WaitGroup`, `Once`, `Cond`, `Semaphore`, and the
/// `Parker`/`Unparker` token for primitives of your own.
pub use gort_runtime::sync;

/// Time: `sleep`, `Timer`, `after_func`, and the channel-shaped `after`/`tick`.
pub mod time {
    pub use gort_runtime::chan::{after, tick};
    pub use gort_runtime::time::{after_func, sleep, RawTimer, Timer};
}

/// pprof profiles from inside: goroutine, heap/allocs (with [`profiler::Allocator`]), threadcreate,
/// mutex, block.
pub use gort_profiler as profiler;

/// Go's `runtime` package: introspection (goroutines, threads, counts), scheduling control
/// (`yield_now`, `lock_os_thread`), goroutine labels, and the low-level `park`/`ready` with the
/// safe [`Parker`](runtime::Parker) built on them.
pub mod runtime {
    /// [`block_on`](crate::block_on) without an executor's context, whatever the crate's
    /// features: it never enters or starts a Tokio runtime.
    pub use gort_runtime::block_on;
    /// The goroutine leak census and finder (`GORT_LEAKCHECK`, `census::start`); the profiler
    /// serves its report at `/debug/pprof/goroutineleak`.
    pub use gort_runtime::census;
    /// CPU profile sampling from SIGPROF (the profiler's `start_cpu_profile` drives it).
    pub use gort_runtime::cpuprof;
    /// Configuration from the environment (`GOMAXPROCS`, `GORT_*`).
    pub use gort_runtime::env;
    /// The hog detector: goroutines that run past a threshold without entering the scheduler
    /// (`GORT_HOGTHRESHOLD`, `GORT_HOGTRACE`; the profiler's `hog` profile shows them).
    pub use gort_runtime::hog;
    /// Mutex and block profile records (the profiler exports them).
    pub use gort_runtime::mprof;
    /// Parked goroutines' stacks, walked once per park site.
    pub use gort_runtime::parksite;
    /// Scheduling-latency and park-duration histograms (`set_sched_timing`).
    pub use gort_runtime::schedstats::{self, set_sched_timing, Histogram};
    pub use gort_runtime::sync::{Parker, Unparker};
    /// The runtime's clock (`nanotime`: monotonic nanoseconds, only differences mean anything).
    pub use gort_runtime::time::nanotime;
    /// Wall-clock accounting under the profiler's wall-clock profile.
    pub use gort_runtime::wall;
    pub use gort_runtime::{
        current, current_entry_name, current_id, current_labels, current_stack_bounds, for_each_g, for_each_g_held,
        for_each_g_held_yielding, gomaxprocs, goroutines, in_goroutine, lock_os_thread, locked_to_thread,
        num_goroutine, park, ready, set_current_labels, threads, unlock_os_thread, yield_now, GRef, GoroutineInfo,
        Labels, ParkRegs, Parked, ThreadInfo, WaitReason,
    };
    pub use gort_runtime::{metrics, Metrics};
    /// Stack walks of the running code and of parked goroutines.
    pub use gort_runtime::{traceback, unwind};

    /// Support for gort's own tests and benchmarks: scheduler counters with no stability promise.
    #[doc(hidden)]
    pub mod internal {
        pub use gort_runtime::time::timer_entries;
        pub use gort_runtime::{idle_procs, syscall_retakes, Apply};
    }
}
