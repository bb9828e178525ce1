//! Frame-pointer stack walking with strict bounds.
//!
//! Every gort binary is built with `-C force-frame-pointers=yes` (`.cargo/config.toml`), so each
//! frame starts with `[saved fp][return address]` at its frame pointer. A walk follows that
//! chain and trusts nothing it reads:
//!
//! - a frame pointer must be word-aligned and the two words at it must lie inside the stack's
//!   `[lo, hi)` (a goroutine's pooled stack, or the thread's stack): the walk never reads
//!   memory it was not told is a live stack;
//! - the chain must strictly increase (stacks grow down, so callers sit higher): a loop or a
//!   frame built without frame pointers ends the walk instead of wandering;
//! - a zero return address ends it (corosensei and the thread entry end their chains so);
//! - at most `buf.len()` frames are kept; more frames mark the walk [`Walk::truncated`].
//!
//! corosensei links a coroutine's first frame to the stack that resumed it; that frame lies
//! outside the goroutine's bounds, so a walk stops at the goroutine's own first frame.

/// Deepest stack a profile keeps (Go keeps 32 for heap records and 100 in tracebacks).
pub const MAX_DEPTH: usize = 64;

const W: usize = std::mem::size_of::<usize>();

/// What a walk produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// Return addresses written to the buffer, leaf first.
    pub len: usize,
    /// The chain went on past the buffer's end.
    pub truncated: bool,
}

/// Walks the frame-pointer chain starting at `fp` within `bounds = (lo, hi)`, writing return
/// addresses leaf first into `buf`. If `pc` is non-zero it is written first (the return address
/// of the frame whose frame pointer is `fp`, e.g. a parked goroutine's recorded park site).
///
/// # Safety
///
/// `[lo, hi)` must be mapped, readable memory that does not change during the walk (the
/// caller's own stack above the walk's frame, or a goroutine held still by the runtime).
pub unsafe fn walk_fp(pc: usize, mut fp: usize, bounds: (usize, usize), buf: &mut [usize]) -> Walk {
    let (lo, hi) = bounds;
    let mut n = 0;
    if pc != 0 {
        if buf.is_empty() {
            return Walk { len: 0, truncated: true };
        }
        buf[0] = pc;
        n = 1;
    }
    loop {
        if !fp.is_multiple_of(W) || fp < lo || fp.checked_add(2 * W).is_none_or(|end| end > hi) {
            break;
        }
        // SAFETY: [fp, fp + 2W) is aligned and inside [lo, hi), which the caller guarantees is
        // mapped and stable.
        let (next, ret) =
            unsafe { (std::ptr::read_volatile(fp as *const usize), std::ptr::read_volatile((fp + W) as *const usize)) };
        if ret == 0 {
            break;
        }
        if n == buf.len() {
            return Walk { len: n, truncated: true };
        }
        buf[n] = ret;
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    Walk { len: n, truncated: false }
}

/// The frame pointer of the calling function's frame.
#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register; no memory access.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register; no memory access.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        fp = 0;
    }
    fp
}

/// Walks the caller's own stack (its goroutine's, or its thread's). The walk starts at this
/// function's own frame, so the first address returns into the function that called it.
#[inline(never)]
pub fn walk_current(buf: &mut [usize]) -> Walk {
    let bounds = gort_runtime::current_stack_bounds();
    if bounds.1 == 0 {
        return Walk { len: 0, truncated: false };
    }
    let fp = frame_pointer();
    // SAFETY: the bounds are the running stack's; every frame from ours upwards is live and
    // does not change while we (its leaf) run.
    unsafe { walk_fp(0, fp, bounds, buf) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_chain() {
        // Three frames in a fake stack: fp chain 0 -> 4 -> 8 (word indices), then a zero ret.
        let mut stack = [0usize; 16];
        let p = stack.as_mut_ptr();
        let base = p as usize;
        // SAFETY: every index is below 16; all accesses go through `p`.
        let set = |i: usize, v: usize| unsafe { p.add(i).write(v) };
        set(0, base + 4 * W);
        set(1, 0x1111);
        set(4, base + 8 * W);
        set(5, 0x2222);
        set(8, base + 12 * W);
        set(9, 0x3333);
        let bounds = (base, base + 16 * W);
        let mut buf = [0usize; 8];
        // SAFETY: the array is live and not written during the walk.
        let w = unsafe { walk_fp(0x9999, base, bounds, &mut buf) };
        assert_eq!(w, Walk { len: 4, truncated: false });
        assert_eq!(&buf[..4], &[0x9999, 0x1111, 0x2222, 0x3333]);
        // Truncation.
        let mut small = [0usize; 2];
        // SAFETY: as above.
        let w = unsafe { walk_fp(0, base, bounds, &mut small) };
        assert_eq!(w, Walk { len: 2, truncated: true });
        // Unaligned, out of range, non-increasing.
        // SAFETY: as above.
        assert_eq!(unsafe { walk_fp(0, base + 1, bounds, &mut buf) }.len, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { walk_fp(0, base + 15 * W, bounds, &mut buf) }.len, 0);
        set(4, base); // loops back
                      // SAFETY: as above.
        assert_eq!(unsafe { walk_fp(0, base, bounds, &mut buf) }.len, 2);
        set(4, base + 64 * W); // points outside: stops after frame 2
                               // SAFETY: as above.
        assert_eq!(unsafe { walk_fp(0, base, bounds, &mut buf) }.len, 2);
        let _ = &mut stack;
    }

    #[test]
    fn current_stack_has_frames() {
        let mut buf = [0usize; MAX_DEPTH];
        let w = walk_current(&mut buf);
        assert!(w.len >= 2, "{w:?}");
    }
}
