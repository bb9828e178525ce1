//! gort-runtime: goroutines on stackful coroutines, scheduled M:N by a G-M-P scheduler.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod chan;
pub mod g;
pub mod park;
pub mod proc;
pub mod prof_hooks;
pub(crate) mod signal;
pub(crate) mod stack;
pub mod sync;
pub mod time;

pub use g::{for_each_g, GRef, ParkRegs, WaitReason};
pub use park::{current, in_goroutine, park, ready};
pub use proc::{blocking, current_stack_bounds, num_goroutine, run, spawn, yield_now, Builder, JoinHandle};
