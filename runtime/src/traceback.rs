//! Tracebacks of the running code: the current goroutine's or thread's stack bounds, and walks of
//! the caller's own stack with the build's unwinder (`unwind/`), for profiles and for the
//! stacks the runtime records (a thread's creation).

use std::sync::atomic::Ordering;

use crate::m::current_m;
use crate::unwind::{walk, Regs, Walk, WalkCtx};

pub use crate::unwind::MAX_DEPTH;

/// Walks the caller's stack into `buf` (leaf first): the first address returns into the
/// function that called `capture`, and `skip` more are dropped. Bounded by the running
/// goroutine's or thread's stack.
#[inline(never)]
pub fn capture(skip: usize, buf: &mut [usize]) -> Walk {
    let regs = Regs::here();
    let bounds = current_stack_bounds();
    if bounds.1 == 0 {
        return Walk { len: 0, truncated: false };
    }
    // SAFETY: the bounds are the running stack's; every frame from ours upwards is live and does
    // not change while we (its leaf) run. `regs.pc` is in this frame: dropped with the skip.
    unsafe { walk(regs, bounds, skip + 1, buf, WalkCtx::MayAllocate) }
}

/// [`capture`], returning how many addresses were written. Inlined, so its caller is the
/// function [`capture`] returns into (a tail call through a frame of its own would drop one).
#[inline(always)]
pub fn capture_stack(skip: usize, buf: &mut [usize]) -> usize {
    capture(skip, buf).len
}

/// Bounds `[lo, hi)` of the stack the caller runs on: its goroutine's, or its thread's.
pub fn current_stack_bounds() -> (usize, usize) {
    if let Some(g) = current_m().and_then(|m| m.curg()) {
        return (g.0.stack_lo.load(Ordering::Relaxed), g.0.stack_hi.load(Ordering::Relaxed));
    }
    thread_stack_bounds()
}

thread_local! {
    /// This thread's stack bounds once computed ((0, 0) before).
    static BOUNDS: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// This thread's stack bounds if [`thread_stack_bounds`] has computed them on this thread, else
/// `(0, 0)`. Async-signal-safe: one read of a const-initialised thread-local.
#[inline]
pub(crate) fn cached_thread_stack_bounds() -> (usize, usize) {
    BOUNDS.with(|b| b.get())
}

/// This thread's stack bounds (`pthread_getattr_np` the first time, then cached). Not for a
/// signal handler: the first call may allocate.
pub(crate) fn thread_stack_bounds() -> (usize, usize) {
    let b = BOUNDS.with(|b| b.get());
    if b.1 != 0 {
        return b;
    }
    let mut lo = 0usize;
    let mut size = 0usize;
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; we destroy it after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) == 0 {
            let mut addr: *mut libc::c_void = std::ptr::null_mut();
            if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 {
                lo = addr as usize;
            }
            libc::pthread_attr_destroy(&mut attr);
        }
    }
    let b = (lo, lo + size);
    BOUNDS.with(|c| c.set(b));
    b
}
