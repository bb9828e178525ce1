#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]

pub use gort_runtime::{
    blocking, current_id, gomaxprocs, goroutines, lock_os_thread, locked_to_thread, num_goroutine, run, spawn, start,
    unlock_os_thread, yield_now, Builder, Config, ConfigError, GoroutineInfo, JoinHandle,
};
pub use gort_runtime::{go, park, ready, select, GRef, WaitReason};

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

/// The runtime crate, for lower-level use (the unsafe `park`/`ready`, goroutine enumeration).
pub use gort_runtime as runtime;

/// pprof profiles from inside: goroutine, heap/allocs (with [`profiler::Allocator`]), threadcreate.
pub use gort_profiler as profiler;
