//! Stack walks for the profiles, with the runtime's unwinder ([`gort_runtime::unwind`]: frame
//! pointers where the build forces them, DWARF CFI everywhere else; every stack read
//! bounds-checked against the stack being walked).

pub use gort_runtime::unwind::Walk;

pub use gort_runtime::traceback::MAX_DEPTH;

/// Walks the caller's own stack (its goroutine's, or its thread's). The first address returns
/// into the function that called this one (inlined: a frame of its own could be a tail call,
/// which leaves no return address into it).
#[inline(always)]
pub fn walk_current(buf: &mut [usize]) -> Walk {
    gort_runtime::traceback::capture(0, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn here(buf: &mut [usize]) -> Walk {
        let w = walk_current(buf);
        std::hint::black_box(w)
    }

    #[test]
    fn current_stack_has_frames() {
        let mut buf = [0usize; MAX_DEPTH];
        let w = here(&mut buf);
        assert!(w.len >= 2, "{w:?}");
        let f = here as *const () as usize;
        assert!(buf[0] > f && buf[0] < f + 512, "first frame returns into here(): {:#x} vs {f:#x}", buf[0]);
    }
}
