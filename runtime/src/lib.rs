//! gort-runtime: goroutines on stackful coroutines, scheduled M:N by a G-M-P scheduler.
//!
//! The pieces, one concept per file: [`g`] (the goroutine descriptor and `allgs`), `p.rs` (the
//! processor: run queue, runnext, timers), `m.rs` (OS threads), `sched.rs` (the scheduler loop,
//! the spinning-M protocol, deadlock detection), [`park`] (park/ready, the primitive under every
//! blocking operation; `parker.rs` builds the safe `Parker` on them), [`proc`] (spawn, join,
//! run, yield, blocking), [`time`] (per-P timers, sleep), `sysmon.rs` (the monitor thread),
//! `stack.rs` (pooled stacks), `signal.rs` (stack overflow reports), [`env`] (configuration).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod chan;
pub mod env;
pub mod g;
mod globrunq;
mod ilist;
pub(crate) mod m;
pub mod net;
pub(crate) mod netpoll;
pub(crate) mod p;
pub mod park;
mod parker;
pub mod proc;
pub mod prof_hooks;
pub(crate) mod sched;
pub(crate) mod signal;
pub(crate) mod stack;
pub mod sync;
pub(crate) mod sysmon;
pub mod time;
pub mod unwind;

pub use env::{Config, ConfigError};
pub use g::{for_each_g, GRef, ParkRegs, Parked, WaitReason};
pub use park::{current, in_goroutine, park, ready};
pub use proc::{
    blocking, current_id, current_stack_bounds, gomaxprocs, goroutines, num_goroutine, run, spawn, start, threads,
    yield_now, Builder, GoroutineInfo, JoinHandle, ThreadInfo,
};
