//! `after_func`: a timer whose firing spawns a goroutine (it needs `spawn`, which needs the
//! timers below it, hence a file of its own).

use std::sync::Arc;
use std::time::Duration;

use crate::time::{deadline, RawTimer};

/// Runs `f` in its own goroutine after `d` (Go's `time.AfterFunc`). Stop the returned timer to
/// cancel it.
///
/// # Safety
///
/// `f` runs on a goroutine, each time the timer fires, so it must keep the contract of
/// [`spawn`](crate::spawn()) (its `# Safety` section): across any gort blocking operation
/// (channel operations, `gort::sync` waits, `sleep`, `yield_now`, `join`, waiting `gort::net`
/// calls, leaving `blocking`, a spawn, or any call that makes one), `f` and everything it calls
/// must hold no `!Send` value tied to its thread (a `std::sync::MutexGuard`, a `StdoutLock`, an
/// `Rc` or `RefCell` borrow reachable from a thread-local, `rand::thread_rng()`), no reference
/// obtained from `LocalKey::with`, and must not reach one thread-local on both sides of such an
/// operation in one (inlined) function. `Send` values, `gort::sync::Mutex` guards, and
/// thread-locals accessed and released between blocking operations through a non-inlined
/// function are fine.
pub unsafe fn after_func<F: Fn() + Send + Sync + 'static>(d: Duration, f: F) -> RawTimer {
    let f = Arc::new(f);
    RawTimer::new(
        deadline(d),
        Box::new(move || {
            let f = f.clone();
            // SAFETY: the goroutine runs `f` through an `Arc` (Send) and nothing else: it holds
            // no thread-bound value of its own, so it keeps the contract exactly when `f` does,
            // and that is what `after_func`'s caller promised for `f`.
            unsafe { crate::spawn::spawn(move || f()) };
        }),
    )
}
