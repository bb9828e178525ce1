//! Wiring a goroutine to its OS thread (Go's `runtime.LockOSThread`). The scheduler's side of
//! it, the hand-offs between the wired M and the others, is in `sched/idle.rs`
//! (`stoplockedm`, `startlockedm`).

use std::sync::atomic::Ordering;

use crate::g::G;
use crate::m::{current_m, set_lockedm};

/// Wires the calling goroutine to its current OS thread (Go's `runtime.LockOSThread`): until as
/// many [`unlock_os_thread`] calls, it always runs on this thread and no other goroutine does.
/// For C libraries and OS calls that keep per-thread state (an OpenGL context, `setns`, a
/// thread-local in C), and for code that must hold a thread-bound value across a blocking call.
///
/// While the goroutine waits, its thread sleeps without a P and the others run elsewhere;
/// waking it costs a hand-off between threads (microseconds, not nanoseconds). A goroutine that
/// exits while wired releases the thread, which then runs other goroutines: restore any
/// thread state first. On a plain thread this does nothing (it already is its own thread).
pub fn lock_os_thread() {
    let Some(m) = current_m() else { return };
    let Some(g) = m.curg() else { return };
    let n = g.0.lock_count.get();
    g.0.lock_count.set(n + 1);
    if n == 0 {
        set_lockedm(g, Some(m));
        m.lockedg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
    }
}

/// Undoes one [`lock_os_thread`]; after the last, the goroutine may run on any thread again
/// (Go's `runtime.UnlockOSThread`). Without a matching lock it does nothing.
pub fn unlock_os_thread() {
    let Some(m) = current_m() else { return };
    let Some(g) = m.curg() else { return };
    match g.0.lock_count.get() {
        0 => {}
        1 => {
            g.0.lock_count.set(0);
            set_lockedm(g, None);
            m.lockedg.store(std::ptr::null_mut(), Ordering::Relaxed);
        }
        n => g.0.lock_count.set(n - 1),
    }
}

/// Whether the calling goroutine is wired to its thread ([`lock_os_thread`]).
pub fn locked_to_thread() -> bool {
    current_m().and_then(|m| m.curg()).is_some_and(|g| g.0.lock_count.get() > 0)
}
