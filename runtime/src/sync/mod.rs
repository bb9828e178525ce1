//! Goroutine-aware synchronization (`gort::sync`): Go's `sync` package on park/ready.
//!
//! A goroutine that blocks here parks (costing no OS thread) with Go's wait reason
//! (`sync.Mutex.Lock`, `sync.RWMutex.RLock`, `sync.RWMutex.Lock`, `sync.Cond.Wait`,
//! `sync.WaitGroup.Wait`, `semacquire`, `sync.Parker.park`); a plain OS thread blocks instead, so everything works
//! from `std::thread`s too. Contended locks feed the mutex profile, waits the block profile
//! (see [`mprof`](crate::mprof)).
//!
//! | type | Go |
//! |---|---|
//! | [`Mutex`] | `sync.Mutex` (spinning, starvation mode) |
//! | [`RwLock`] | `sync.RWMutex` (writer-preferring) |
//! | [`WaitGroup`] | `sync.WaitGroup` |
//! | [`Once`], [`OnceLock`] | `sync.Once`, `sync.OnceValue` |
//! | [`Cond`] | `sync.Cond` |
//! | [`Semaphore`] | `x/sync/semaphore.Weighted` |
//! | [`Parker`], [`Unparker`] | none: a wake-up token, as `std::thread::park`, for primitives of your own |
//!
//! Layout: `sema.rs` is Go's runtime semaphore (what `Mutex`, `RwLock` and `WaitGroup` sleep
//! on), `waitlist.rs` the intrusive list of parked waiters shared by all.

mod cond;
mod mutex;
mod once;
mod rwlock;
mod sema;
mod semaphore;
mod waitgroup;
mod waitlist;

pub use cond::Cond;
pub use mutex::{Mutex, MutexGuard};
pub use once::{Once, OnceLock};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::Semaphore;
pub use waitgroup::WaitGroup;

pub use crate::parker::{Parker, Unparker};
