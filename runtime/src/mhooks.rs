//! Per-thread set-up on every M: a function given to [`on_each_m`] runs once on each M's thread,
//! before that M next starts a goroutine, and on every M started later. A goroutine may run on
//! any M and move between them at any blocking call, so a thread-local context that a library
//! wants goroutines to see (the `gort` crate's Tokio bridge keeps a Tokio runtime's entered on
//! every M) must be on all of them, not only on the thread that asked.
//!
//! The hooks are a list that only grows; an M remembers how many it has run (`M::hooks_run`,
//! touched only by its own thread). The check in `execute` is one relaxed load and a compare.
//! The registration happens before the registering goroutine's next blocking call, and whatever
//! M runs that goroutine afterwards synchronised with the ready that handed it over, so it sees
//! the new count and runs the hook before running the goroutine.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::m::{current_m, M};

/// The hooks, in registration order.
static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
/// `HOOKS.len()`, readable without the lock.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` once on the thread of every M, present and future: on the calling M (if the caller
/// is a goroutine) before this returns, on each other M before it next starts a goroutine.
///
/// `f` runs in the scheduler, between goroutines, on the M's own stack: it should be short, must
/// not make blocking gort calls (there is no goroutine to park), and must not panic (a panic
/// aborts the process, as a panic in the scheduler does). It is for setting up thread-local
/// state, such as entering an async runtime's context.
pub fn on_each_m(f: fn()) {
    let mut hooks = HOOKS.lock();
    hooks.push(f);
    // Relaxed: Ms read the hooks themselves under the lock; the count only tells them to look.
    COUNT.store(hooks.len(), Ordering::Relaxed);
    drop(hooks);
    if let Some(m) = current_m() {
        run_new(m);
    }
}

/// Runs the hooks `m` has not run yet. Called by `execute` before it starts a goroutine.
#[inline]
pub(crate) fn on_execute(m: &'static M) {
    // Relaxed: see the module docs for why a registration before the goroutine's hand-over is
    // seen here.
    if COUNT.load(Ordering::Relaxed) != m.hooks_run.get() {
        run_new(m);
    }
}

#[cold]
fn run_new(m: &'static M) {
    let new: Vec<fn()> = HOOKS.lock()[m.hooks_run.get()..].to_vec();
    m.hooks_run.set(m.hooks_run.get() + new.len());
    for f in new {
        if std::panic::catch_unwind(f).is_err() {
            eprintln!("fatal error: gort: a function given to on_each_m panicked");
            std::process::abort();
        }
    }
}
