//! An M's spare stack: where a goroutine's walk of its own stack, and a profile's bookkeeping
//! after it, run (Go's `systemstack`, which runs runtime work on the M's g0 stack).
//!
//! # Why
//!
//! A walk of the caller's own stack (`traceback::capture`: the heap sampler inside
//! `GlobalAlloc::alloc`, mutex and block events, the goroutine profile's own entry) runs on
//! whichever goroutine caused it. The DWARF CFI unwinder needs tens of KiB of stack where gort is
//! compiled without optimization (a user's debug build), well under that optimized, and goroutine
//! stacks are fixed-size: a goroutine with a small stack, or one already deep in its stack, would
//! overflow only because profiling is on. So `capture` takes the registers and the bounds on the
//! goroutine's stack, switches here for the walk itself, and switches back: the goroutine's own
//! stack pays for a frame or two, whatever the build. The records the profiles make with the
//! stack run here too (`traceback::on_spare_stack`): a growing table takes several KiB
//! unoptimized.
//!
//! # Life
//!
//! One per M, mapped the first time the M needs it: [`SIZE`] usable bytes over a guard (a
//! dedicated stack's gap, `stack/pool.rs`), never unmapped (Ms never exit). Mapping it takes an
//! `mmap` and a guard, nothing from the global heap: the sampling allocator walks from inside
//! `GlobalAlloc::alloc`. If either fails (`vm.max_map_count` exhausted, say) the M remembers it
//! and works on the goroutine's stack from then on, as it did before spare stacks existed: a
//! sample is never worth a crash.
//!
//! # Re-entry
//!
//! Only the M's own thread enters its spare stack, and nothing that runs there parks or yields (a
//! walk takes no gort lock, the profiles' bookkeeping only thread locks), so the stack is free
//! again before the M runs anything else. [`SpareStack::claim`] refuses a claim while another
//! runs ([`Claim::Busy`]): that is code on the stack asking again, an allocation made there (by a
//! walk that found every unwinding cache taken, or by a profile's table as it grows) that the
//! heap sampler picked. Its walk then runs in place, on this stack, from the goroutine's
//! registers the running claim saved (`traceback::capture`), and never allocates, so it cannot
//! nest a third time: [`SIZE`] has room for two walks.
//!
//! # Signals
//!
//! Handlers run on the thread's signal stack (`SA_ONSTACK`), so a signal taken here costs this
//! stack nothing, but a handler that asks which stack the interrupted code was on must know this
//! one: it is neither the goroutine's (whose bounds the M reports as the running stack) nor the
//! thread's. [`SpareStack::contains`] tells (async-signal-safe: two relaxed loads), and
//! [`SpareStack::entry`] gives the registers of the goroutine's frame that switched here, whose
//! callers hold still until the call returns: the CPU profiler walks the spare stack, then the
//! goroutine from there (`traceback::walk_interrupted_on_spare`); the overflow handler reports a
//! fault in this stack's guard as its own overflow, never as the goroutine's. A handler that
//! checks only the goroutine's bounds finds the stack pointer outside them and walks nothing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use corosensei::stack::StackPointer;

use super::{alloc_dedicated, gap_size};
use crate::unwind::Regs;

/// Usable bytes of a spare stack: room for two walks in an unoptimized build (framehop and gimli
/// evaluating CFI, a private unwinding cache built on the stack when the pool is taken) and the
/// heap sampler and profile tables between them (module docs, "Re-entry"), with room to spare,
/// since overflowing it is fatal. Virtual: only the pages a walk touches cost memory.
pub(crate) const SIZE: usize = 256 * 1024;

/// `hi` of a spare stack whose mapping failed (no mapping is ever this low).
const FAILED: usize = 1;

/// What [`SpareStack::claim`] gives.
pub(crate) enum Claim<'a> {
    /// The stack is the caller's until the guard drops.
    Claimed(Claimed<'a>),
    /// A call runs on the stack already (the caller is on it: module docs, "Re-entry").
    Busy,
    /// The stack could not be mapped: run in place.
    Unavailable,
}

/// An M's spare stack (module docs). Touched by the M's own thread and its signal handlers only.
pub(crate) struct SpareStack {
    /// Lowest usable address; 0 until mapped.
    lo: AtomicUsize,
    /// Highest usable address, where the stack pointer starts; 0 until mapped, [`FAILED`] if the
    /// mapping failed.
    hi: AtomicUsize,
    /// A call runs on the stack (held by a [`Claimed`]).
    busy: AtomicBool,
    /// The registers of the frame that switched here, while a call runs (for signal handlers:
    /// where the goroutine's own frames go on).
    entry_pc: AtomicUsize,
    entry_sp: AtomicUsize,
    entry_fp: AtomicUsize,
}

impl SpareStack {
    pub(crate) const fn new() -> SpareStack {
        SpareStack {
            lo: AtomicUsize::new(0),
            hi: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            entry_pc: AtomicUsize::new(0),
            entry_sp: AtomicUsize::new(0),
            entry_fp: AtomicUsize::new(0),
        }
    }

    /// Claims the stack for one call, mapping it first if this is the first claim. `entry` are
    /// the caller's registers, in the frame that stays live below the switch (see
    /// [`entry`](Self::entry)). Only the owning M's thread may call it.
    #[inline]
    pub(crate) fn claim(&self, entry: Regs) -> Claim<'_> {
        // Relaxed throughout: only the owning thread writes these, and its signal handlers read
        // them on the same thread (the switch is an `asm!` block, a compiler barrier, so every
        // store below is done before the stack pointer can be inside the stack).
        let hi = self.hi.load(Ordering::Relaxed);
        if hi <= FAILED && (hi == FAILED || !self.map()) {
            return Claim::Unavailable;
        }
        if self.busy.load(Ordering::Relaxed) {
            return Claim::Busy;
        }
        self.busy.store(true, Ordering::Relaxed);
        self.entry_pc.store(entry.pc, Ordering::Relaxed);
        self.entry_sp.store(entry.sp, Ordering::Relaxed);
        self.entry_fp.store(entry.fp, Ordering::Relaxed);
        Claim::Claimed(Claimed(self))
    }

    /// Maps the stack; false (remembered) if that fails.
    #[cold]
    #[inline(never)]
    fn map(&self) -> bool {
        let stack = match alloc_dedicated(SIZE) {
            // A walk is never worth a crash: without a guard an overflow would write into
            // whatever lies below (corosensei's `Stack` contract asks for one, too).
            Ok(s) if s.is_guarded() => s,
            // An unguarded one is unmapped as it drops.
            _ => {
                self.hi.store(FAILED, Ordering::Relaxed);
                return false;
            }
        };
        self.lo.store(stack.lo(), Ordering::Relaxed);
        self.hi.store(stack.hi(), Ordering::Relaxed);
        // Unmapped by our `Drop` instead (never, for an M's).
        std::mem::forget(stack);
        true
    }

    /// Makes the stack behave as if its mapping had failed (if it is not mapped yet).
    #[cfg(test)]
    pub(crate) fn fail_mapping(&self) {
        let _ = self.hi.compare_exchange(0, FAILED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// `[lo, hi)` of the usable stack, if mapped. Async-signal-safe.
    #[inline]
    pub(crate) fn bounds(&self) -> Option<(usize, usize)> {
        let hi = self.hi.load(Ordering::Relaxed);
        (hi > FAILED).then(|| (self.lo.load(Ordering::Relaxed), hi))
    }

    /// The guard below the stack, `[guard_lo, lo)`, if mapped. Async-signal-safe once the page
    /// size is cached (mapping the stack caches it).
    pub(crate) fn guard_range(&self) -> Option<(usize, usize)> {
        self.bounds().map(|(lo, _)| (lo - gap_size(), lo))
    }

    /// Whether `sp` is inside the usable stack: the interrupted code runs here. Async-signal-safe.
    #[inline]
    pub(crate) fn contains(&self, sp: usize) -> bool {
        self.bounds().is_some_and(|(lo, hi)| sp >= lo && sp < hi)
    }

    /// The registers the running call's claimant gave (module docs, "Signals"). Meaningful only
    /// while a call runs, i.e. to a signal handler whose interrupted stack pointer is
    /// [`contains`](Self::contains)ed. Async-signal-safe.
    pub(crate) fn entry(&self) -> Regs {
        Regs {
            pc: self.entry_pc.load(Ordering::Relaxed),
            sp: self.entry_sp.load(Ordering::Relaxed),
            fp: self.entry_fp.load(Ordering::Relaxed),
        }
    }
}

impl Drop for SpareStack {
    fn drop(&mut self) {
        if let Some((lo, hi)) = self.bounds() {
            let glo = lo - gap_size();
            // SAFETY: [glo, hi) is the dedicated mapping `map` made and leaked to us; `&mut self`
            // means no claim is alive, so nothing runs on it.
            let r = unsafe { libc::munmap(glo as *mut libc::c_void, hi - glo) };
            debug_assert_eq!(r, 0, "munmap of a spare stack failed");
        }
    }
}

/// A running claim of a [`SpareStack`]; dropping it frees the stack.
pub(crate) struct Claimed<'a>(&'a SpareStack);

impl Claimed<'_> {
    /// Runs `f` on the spare stack and returns what it returns (a panic in `f` comes back here
    /// and goes on unwinding from the caller's frame, the claim released on the way).
    #[inline]
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let s = self.0;
        corosensei::on_stack(Region { lo: s.lo.load(Ordering::Relaxed), hi: s.hi.load(Ordering::Relaxed) }, f)
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

/// The usable stack and its guard, as corosensei sees a stack. Made only inside a claim, which
/// borrows the `SpareStack` (so the mapping outlives it) and gives its holder the only use of it.
struct Region {
    lo: usize,
    hi: usize,
}

// SAFETY: base `hi` and limit (the guard's bottom) are page-aligned and non-zero; `map` keeps only
// a stack whose whole gap is a guard; the memory stays mapped and unshared while a `Region` lives.
unsafe impl corosensei::stack::Stack for Region {
    #[inline]
    fn base(&self) -> StackPointer {
        StackPointer::new(self.hi).expect("spare stack top is non-zero")
    }
    #[inline]
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.lo - gap_size()).expect("spare stack bottom is non-zero")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp() -> usize {
        Regs::here().sp
    }

    #[test]
    fn runs_on_the_spare_stack_and_refuses_reentry() {
        let s = SpareStack::new();
        assert!(s.bounds().is_none(), "mapped lazily");
        let outer = Regs::here();
        let Claim::Claimed(c) = s.claim(outer) else { panic!("first claim refused") };
        let (lo, hi) = s.bounds().unwrap();
        assert_eq!(hi - lo, SIZE);
        assert_eq!(s.guard_range(), Some((lo - gap_size(), lo)));
        assert_eq!(s.entry(), outer);
        let outer = outer.sp;
        let (inner, nested) = c.run(|| {
            let inner = sp();
            // A second claim while the first runs (what a walk's sampled allocation would do).
            let nested = matches!(s.claim(Regs::here()), Claim::Busy);
            (inner, nested)
        });
        assert!(inner >= lo && inner < hi, "ran on {inner:#x}, not in [{lo:#x}, {hi:#x})");
        assert!(s.contains(inner) && !s.contains(outer));
        assert!(nested, "a nested claim must be refused");
        drop(c);
        // Free again, and the same mapping.
        let Claim::Claimed(c) = s.claim(Regs::here()) else { panic!("claim after release refused") };
        assert!(c.run(|| s.contains(sp())));
        drop(c);
        assert_eq!(s.bounds(), Some((lo, hi)));
    }

    #[test]
    fn a_panic_comes_back_and_frees_the_stack() {
        let s = SpareStack::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let Claim::Claimed(c) = s.claim(Regs::here()) else { panic!("claim refused") };
            c.run(|| panic!("on the spare stack"))
        }));
        assert!(r.is_err());
        assert!(matches!(s.claim(Regs::here()), Claim::Claimed(_)), "the claim was not released");
    }

    #[test]
    fn a_failed_mapping_is_remembered() {
        let s = SpareStack::new();
        s.fail_mapping();
        assert!(matches!(s.claim(Regs::here()), Claim::Unavailable));
        assert!(s.bounds().is_none() && s.guard_range().is_none() && !s.contains(sp()));
    }
}
