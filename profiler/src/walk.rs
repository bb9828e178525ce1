//! Frame-pointer stack walking with strict bounds: the runtime's walker
//! ([`gort_runtime::prof_hooks::walk_fp`], whose comments give the rules: aligned, in-bounds,
//! strictly increasing frame pointers, bounded depth, truncation marked), plus the walk of the
//! caller's own stack.

pub use gort_runtime::prof_hooks::{walk_fp, Walk};

/// Deepest stack a profile keeps (Go keeps 32 for heap records and 100 in tracebacks).
pub const MAX_DEPTH: usize = 64;

/// Walks the caller's own stack (its goroutine's, or its thread's). The walk starts at this
/// function's own frame, so the first address returns into the function that called it.
#[inline(never)]
pub fn walk_current(buf: &mut [usize]) -> Walk {
    let bounds = gort_runtime::current_stack_bounds();
    if bounds.1 == 0 {
        return Walk { len: 0, truncated: false };
    }
    let fp = gort_runtime::prof_hooks::frame_pointer();
    // SAFETY: the bounds are the running stack's; every frame from ours upwards is live and
    // does not change while we (its leaf) run.
    unsafe { walk_fp(0, fp, bounds, buf) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = std::mem::size_of::<usize>();

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
