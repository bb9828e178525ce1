//! Tracebacks of the running code: the current goroutine's or thread's stack bounds, and walks of
//! the caller's own stack with the build's unwinder (`unwind/`), for profiles and for the
//! stacks the runtime records (a thread's creation).

use std::sync::atomic::Ordering;

use crate::m::{current_m, M};
use crate::stack::Claim;
use crate::unwind::{walk, Regs, Walk, WalkCtx};

pub use crate::unwind::MAX_DEPTH;

/// Walks the caller's stack into `buf` (leaf first): the first address returns into the
/// function that called `capture`, and `skip` more are dropped. Bounded by the running
/// goroutine's or thread's stack.
///
/// On a goroutine the walk itself runs on the M's spare stack (`stack/spare.rs`): the unwinder
/// needs tens of KiB of stack in an unoptimized build, which a goroutine's fixed-size stack may
/// not have left. Only if that stack cannot be mapped does it walk in place. Called from code
/// that runs on the spare stack already (an allocation made by a walk, or by the bookkeeping after
/// one, and sampled), it walks the goroutine from where it switched to the spare stack: the
/// frames in between are the runtime's own, and `skip` is not applied to them.
#[inline(never)]
pub fn capture(skip: usize, buf: &mut [usize]) -> Walk {
    let regs = Regs::here();
    let m = current_m();
    if let Some((m, g)) = m.and_then(|m| Some((m, m.curg()?))) {
        let bounds = (g.0.stack_lo.load(Ordering::Relaxed), g.0.stack_hi.load(Ordering::Relaxed));
        // SAFETY: the bounds are the running goroutine's stack; every frame from ours upwards is
        // live and does not change while we (its leaf) run, on this stack or, blocked in the
        // switch, from the spare one. `regs.pc` is in this frame: dropped with the skip.
        let mut walk_it = || unsafe { walk(regs, bounds, skip + 1, buf, WalkCtx::MayAllocate) };
        return match m.spare.claim(regs) {
            Claim::Claimed(c) => c.run(walk_it),
            // In place, on the spare stack, which has room for a second walk but not a third: a
            // walk that finds every unwinding cache taken returns nothing rather than allocate,
            // so this cannot nest again.
            // SAFETY: the entry registers are in the goroutine's frame that claimed the spare
            // stack, live and still until the claim ends, which is after we return.
            Claim::Busy => unsafe { walk(m.spare.entry(), bounds, 0, buf, WalkCtx::NoAllocate) },
            Claim::Unavailable => walk_it(),
        };
    }
    let bounds = thread_stack_bounds();
    if bounds.1 == 0 {
        return Walk { len: 0, truncated: false };
    }
    // SAFETY: as above, on the thread's own stack (an M's scheduler code, or a plain thread).
    unsafe { walk(regs, bounds, skip + 1, buf, WalkCtx::MayAllocate) }
}

/// Runs `f` on the M's spare stack if the caller is a goroutine, else (or if that stack is taken,
/// or cannot be mapped) in place: for a profile's bookkeeping after a walk of the caller's stack
/// (the heap sampler's records), which the goroutine's stack should not pay for any more than
/// for the walk itself ([`capture`]).
///
/// # Safety
///
/// `f` must not park or yield the calling goroutine (no blocking operation, see the crate docs):
/// the stack it runs on is its M's, and must be free again before the M runs anything else.
#[inline]
pub unsafe fn on_spare_stack<R>(f: impl FnOnce() -> R) -> R {
    let regs = Regs::here();
    if let Some(m) = current_m().filter(|m| m.curg().is_some()) {
        if let Claim::Claimed(c) = m.spare.claim(regs) {
            return c.run(f);
        }
    }
    f()
}

/// [`capture`], returning how many addresses were written. Inlined, so its caller is the
/// function [`capture`] returns into (a tail call through a frame of its own would drop one).
#[inline(always)]
pub fn capture_stack(skip: usize, buf: &mut [usize]) -> usize {
    capture(skip, buf).len
}

/// Bounds `[lo, hi)` of the stack the caller runs on: its goroutine's, its M's spare stack (where
/// a goroutine's walks of its own stack and the profiles' records run), or its thread's.
pub fn current_stack_bounds() -> (usize, usize) {
    if let Some(m) = current_m() {
        if let Some(b) = m.spare.bounds().filter(|&(lo, hi)| (lo..hi).contains(&Regs::here().sp)) {
            return b;
        }
        if let Some(g) = m.curg() {
            return (g.0.stack_lo.load(Ordering::Relaxed), g.0.stack_hi.load(Ordering::Relaxed));
        }
    }
    thread_stack_bounds()
}

/// The stack of code a signal interrupted on `m`'s spare stack (a walk, or a profile's
/// bookkeeping, run for `m`'s goroutine): the spare stack's frames from `regs`, which end where
/// the switch left the goroutine's stack, then the goroutine's own from the registers it
/// switched with. Writes `pcs` leaf first; returns how many. Allocates nothing, takes no lock:
/// for signal handlers.
///
/// # Safety
///
/// `regs` are the interrupted registers of a signal handler running on `m`'s thread, with
/// `regs.sp` on `m.spare` ([`SpareStack::contains`](crate::stack::SpareStack::contains)); `gb`
/// are the bounds of the goroutine `m` runs.
pub(crate) unsafe fn walk_interrupted_on_spare(regs: Regs, m: &M, gb: (usize, usize), pcs: &mut [usize]) -> usize {
    let Some(sb) = m.spare.bounds() else { return 0 };
    // SAFETY: the spare stack holds the interrupted frames, which stay put while the handler
    // runs (the caller's contract); every read is bounds-checked against it.
    let n = unsafe { walk(regs, sb, 0, pcs, WalkCtx::NoAllocate) }.len;
    // SAFETY: the entry registers are in the goroutine's frame that switched to the spare stack,
    // which with its callers stays live and still until the interrupted call returns; every read
    // is bounds-checked against the goroutine's stack.
    n + unsafe { walk(m.spare.entry(), gb, 0, &mut pcs[n..], WalkCtx::NoAllocate) }.len
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g::{GKind, G};
    use crate::m::set_current_m;

    /// Makes the calling (test) thread an M running a goroutine whose stack is the thread's own:
    /// `capture` then takes the goroutine path. Leaks both.
    fn pose_as_goroutine(failed_spare: bool) -> &'static M {
        let m: &'static M = Box::leak(Box::new(M::new(1, std::thread::current())));
        if failed_spare {
            m.spare.fail_mapping();
        }
        set_current_m(m);
        let g: &'static G = Box::leak(Box::new(G::new(GKind::Goroutine)));
        let (lo, hi) = thread_stack_bounds();
        g.stack_lo.store(lo, Ordering::Relaxed);
        g.stack_hi.store(hi, Ordering::Relaxed);
        m.curg.store(g as *const G as *mut G, Ordering::Relaxed);
        m
    }

    #[inline(never)]
    fn leaf(buf: &mut [usize]) -> usize {
        let n = capture_stack(0, buf);
        std::hint::black_box(n)
    }

    /// The same call site walked as a plain thread, then as a goroutine (on the spare stack, or in
    /// place if the spare stack could not be mapped): the same addresses.
    fn same_walk_as_a_goroutine(failed_spare: bool) {
        std::thread::spawn(move || {
            crate::unwind::init();
            let mut bufs = [[0usize; 64]; 2];
            let mut lens = [0; 2];
            let mut m = None;
            for (i, (buf, len)) in bufs.iter_mut().zip(&mut lens).enumerate() {
                if i == 1 {
                    m = Some(pose_as_goroutine(failed_spare));
                }
                *len = leaf(buf);
            }
            assert!(lens[0] >= 3, "{lens:?}");
            assert_eq!(bufs[0][..lens[0]], bufs[1][..lens[1]]);
            assert_eq!(m.unwrap().spare.bounds().is_some(), !failed_spare, "spare stack mapped");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_walk_on_the_spare_stack_is_the_walk_in_place() {
        same_walk_as_a_goroutine(false);
    }

    #[test]
    fn without_a_spare_stack_a_goroutine_walks_in_place() {
        same_walk_as_a_goroutine(true);
    }

    #[inline(never)]
    fn nested_and_direct(nested: &mut [usize], direct: &mut [usize]) -> (usize, usize) {
        // SAFETY: the closure never parks.
        let n = unsafe { on_spare_stack(|| capture_stack(0, nested)) };
        let d = capture_stack(0, direct);
        std::hint::black_box((n, d))
    }

    /// A walk asked for on the spare stack (a walk's own allocation, sampled) walks the goroutine
    /// from where it switched: the callers of the frame that switched, as a walk from there sees
    /// them.
    #[test]
    fn a_walk_from_the_spare_stack_walks_the_goroutine_from_the_switch() {
        std::thread::spawn(|| {
            crate::unwind::init();
            pose_as_goroutine(false);
            let (mut nested, mut direct) = ([0usize; 64], [0usize; 64]);
            let (n, d) = nested_and_direct(&mut nested, &mut direct);
            assert!(d >= 3 && n >= d - 1, "nested {n}, direct {d}");
            // `direct[0]` returns into `nested_and_direct`; the rest are its callers.
            assert_eq!(nested[n - (d - 1)..n], direct[1..d]);
        })
        .join()
        .unwrap();
    }
}
