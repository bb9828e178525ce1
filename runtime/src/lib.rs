//! gort-runtime: goroutines on stackful coroutines, scheduled M:N by a G-M-P scheduler.
//!
//! The pieces, one concept per file: [`g`] (the goroutine descriptor and `allgs`), `p.rs` (the
//! processor: run queue, runnext, timers), `m.rs` (OS threads), `sched.rs` (the scheduler loop,
//! the spinning-M protocol, deadlock detection), [`park`] (park/ready, the primitive under every
//! blocking operation; `parker.rs` builds the safe `Parker` on them, `waitslot.rs` the one-shot
//! event under `join` and `run`), [`proc`] (spawn, join, run, yield, blocking), [`time`] (per-P
//! timers, sleep), `sysmon.rs` (the monitor thread), `stack.rs` (pooled stacks), `signal.rs`
//! (stack overflow reports), [`env`] (configuration). `loom.rs` is the seam through which loom
//! model-checks `WaitSlot`, `Parker` and `Sema`; under `--cfg gort_loom` the crate is cut down
//! to those.
#![deny(unsafe_op_in_unsafe_fn)]
// The model-checking build keeps only the modelled protocols and their seam (`loom.rs`).
#![cfg_attr(gort_loom, allow(dead_code, unused_imports))]

#[cfg(not(gort_loom))]
pub mod chan;
#[cfg(not(gort_loom))]
pub mod env;
#[cfg(not(gort_loom))]
pub mod g;
#[cfg(not(gort_loom))]
mod globrunq;
mod ilist;
mod loom;
#[cfg(not(gort_loom))]
pub(crate) mod m;
#[cfg(not(gort_loom))]
pub mod net;
#[cfg(not(gort_loom))]
pub(crate) mod netpoll;
#[cfg(not(gort_loom))]
pub(crate) mod p;
#[cfg(not(gort_loom))]
pub mod park;
mod parker;
#[cfg(not(gort_loom))]
pub mod proc;
#[cfg(not(gort_loom))]
pub mod prof_hooks;
#[cfg(not(gort_loom))]
pub(crate) mod sched;
#[cfg(not(gort_loom))]
pub(crate) mod signal;
#[cfg(not(gort_loom))]
pub(crate) mod stack;
#[cfg(not(gort_loom))]
pub mod sync;
#[cfg(gort_loom)]
mod sync {
    pub(crate) mod sema;
    mod waitlist;
}
#[cfg(not(gort_loom))]
pub(crate) mod sysmon;
#[cfg(not(gort_loom))]
pub mod time;
#[cfg(not(gort_loom))]
pub mod unwind;
mod waitslot;

#[cfg(not(gort_loom))]
pub use env::{Config, ConfigError};
#[cfg(not(gort_loom))]
pub use g::{for_each_g, GRef, ParkRegs, Parked, WaitReason};
#[cfg(not(gort_loom))]
pub use park::{current, in_goroutine, park, ready};
#[cfg(not(gort_loom))]
pub use proc::{
    blocking, current_id, current_stack_bounds, gomaxprocs, goroutines, lock_os_thread, locked_to_thread,
    num_goroutine, run, spawn, start, threads, unlock_os_thread, yield_now, Builder, GoroutineInfo, JoinHandle,
    ThreadInfo,
};
