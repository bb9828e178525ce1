//! Stack unwinding for profiles, in any build.
//!
//! gort is a library: it is compiled with whatever flags the user's build has, and the default
//! (release or debug) has no forced frame pointers. So the unwinder is chosen by what the build
//! *is*, never by whether a chain "looks valid" (`rbp` without frame pointers is an ordinary
//! register that often holds a plausible stack address; a frame-pointer walk then returns a
//! believable wrong stack):
//!
//! * **Frame pointers** when the build forces them (`-C force-frame-pointers=yes`; the build
//!   script reads the flags Cargo compiles this crate with and sets `cfg(gort_frame_pointers)`):
//!   follow the `[saved fp][return address]` chain.
//! * **DWARF CFI** everywhere else: `.eh_frame` through its `.eh_frame_hdr` binary-search table,
//!   with `framehop`. Every Rust and C function on Linux has CFI (Rust needs it for unwinding
//!   panics), and corosensei's trampolines carry it too.
//!
//! # Invariants
//!
//! * **Nothing is dereferenced unless bounds-checked.** Every read of a stack word goes through a
//!   check against the `[lo, hi)` the caller vouches for (the running goroutine's or thread's
//!   stack, or a parked goroutine's stack held still by its hold) and must be word-aligned. A
//!   bad chain or bad CFI truncates the stack; it never faults. The unwind tables themselves are
//!   copies owned here (see below), so no read reaches a module that may have been unmapped.
//! * **Built before use.** The CFI unwinder and its module list are built once, by [`init`],
//!   which the scheduler calls before it starts its first M (and a walk on a plain thread calls
//!   if nobody has yet). While one thread builds, a walk elsewhere gets an empty stack rather than
//!   waiting. Modules loaded later (`dlopen`) are not known: a walk ends at their first frame.
//! * **Walks allocate nothing and take no lock.** Unwinding state (framehop's `Cache`, with
//!   preallocated fixed-size storage for CFI evaluation) lives in a pool of slots claimed with one
//!   atomic swap each; a walk that finds every slot busy builds a private cache (allocating),
//!   which only code that may allocate ever reaches ([`WalkCtx::MayAllocate`]).
//! * **Park sites record what an unwind starts from**: the pc, sp and fp of a frame that stays
//!   live while the goroutine is parked ([`ParkRegs`](crate::g::ParkRegs), recorded inside
//!   `park::suspend`). A CFI walk from there reads only that frame and its callers' frames, which
//!   are frozen until the goroutine is resumed.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

/// Deepest stack a profile or a runtime record keeps (Go keeps 32 for heap records and 100 in
/// tracebacks).
pub const MAX_DEPTH: usize = 64;

/// What a stack walk produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// Addresses written to the buffer, leaf first.
    pub len: usize,
    /// The stack went on past the buffer's end.
    pub truncated: bool,
}

/// How this build of gort walks stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindMode {
    /// The build forces frame pointers: walk the frame-pointer chain.
    FramePointers,
    /// Any other build: DWARF call-frame information from `.eh_frame`.
    DwarfCfi,
}

impl UnwindMode {
    /// `"frame-pointers"` or `"dwarf-cfi"`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnwindMode::FramePointers => "frame-pointers",
            UnwindMode::DwarfCfi => "dwarf-cfi",
        }
    }
}

/// The unwinder this build uses (chosen by its compile flags).
pub const fn mode() -> UnwindMode {
    if cfg!(gort_frame_pointers) || cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64"))) {
        UnwindMode::FramePointers
    } else {
        UnwindMode::DwarfCfi
    }
}

/// Registers an unwind starts from: an instruction address inside a live frame, and that
/// frame's stack and frame pointers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// An instruction address in the frame (not a return address).
    pub pc: usize,
    /// The stack pointer at `pc`.
    pub sp: usize,
    /// The frame pointer register at `pc` (an ordinary register in a build without frame
    /// pointers; CFI may still say a caller saved something in it).
    pub fp: usize,
}

impl Regs {
    /// The interrupted pc, sp and frame pointer (all zero if `ctx` is null or the architecture
    /// is not one gort reads registers on).
    ///
    /// # Safety
    /// `ctx` is null or the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
    pub(crate) unsafe fn from_ucontext(ctx: *mut libc::c_void) -> Regs {
        if ctx.is_null() {
            return Regs::default();
        }
        let uc = ctx as *const libc::ucontext_t;
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: per the contract `uc` is a valid ucontext for the duration of the handler.
            let g = unsafe { &(*uc).uc_mcontext.gregs };
            Regs {
                pc: g[libc::REG_RIP as usize] as usize,
                sp: g[libc::REG_RSP as usize] as usize,
                fp: g[libc::REG_RBP as usize] as usize,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            // SAFETY: per the contract `uc` is a valid ucontext for the duration of the handler.
            let m = unsafe { &(*uc).uc_mcontext };
            Regs { pc: m.pc as usize, sp: m.sp as usize, fp: m.regs[29] as usize }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let _ = uc;
            Regs::default()
        }
    }

    /// The registers at this point of the function it is inlined into.
    #[inline(always)]
    pub fn here() -> Regs {
        let (pc, sp, fp): (usize, usize, usize);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: reads three registers (rip by a `lea`); no memory access, no side effects.
        unsafe {
            std::arch::asm!(
                "lea {0}, [rip]",
                "mov {1}, rsp",
                "mov {2}, rbp",
                out(reg) pc, out(reg) sp, out(reg) fp,
                options(nomem, nostack, preserves_flags)
            )
        };
        #[cfg(target_arch = "aarch64")]
        // SAFETY: reads three registers (pc by an `adr`); no memory access, no side effects.
        unsafe {
            std::arch::asm!(
                "adr {0}, .",
                "mov {1}, sp",
                "mov {2}, x29",
                out(reg) pc, out(reg) sp, out(reg) fp,
                options(nomem, nostack, preserves_flags)
            )
        };
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let x = 0u8;
            (pc, sp, fp) = (0, &x as *const u8 as usize, 0);
        }
        Regs { pc, sp, fp }
    }
}

/// An instruction address inside the function this is inlined into (Go's `gopc` for spawns:
/// `#[inline(always)]` entry points call it so the address lands in their caller).
#[inline(always)]
pub fn caller_pc() -> usize {
    Regs::here().pc
}

/// Where a walk runs, which decides whether it may allocate when every preallocated unwinding
/// cache is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkCtx {
    /// Ordinary code (the heap sampler runs with its reentrancy guard set).
    MayAllocate,
    /// A signal handler or similar: a walk that finds no free cache returns an empty stack.
    NoAllocate,
}

/// Walks a stack from `regs`, writing code addresses leaf first into `buf`: `regs.pc` first,
/// then the return address of each caller. The first `skip` addresses are dropped.
///
/// # Safety
///
/// `[lo, hi)` (`bounds`) must be mapped, readable memory holding the stack that `regs` were
/// taken on, and every frame from `regs.sp` up must stay unchanged during the walk (the caller's
/// own stack above the walking frame, or a goroutine held still by the runtime).
pub unsafe fn walk(regs: Regs, bounds: (usize, usize), skip: usize, buf: &mut [usize], ctx: WalkCtx) -> Walk {
    match mode() {
        // SAFETY: the caller's contract, passed on.
        UnwindMode::FramePointers => unsafe { walk_fp_skip(regs.pc, regs.fp, bounds, skip, buf, None) },
        // SAFETY: the caller's contract, passed on.
        UnwindMode::DwarfCfi => unsafe { cfi::walk(regs, bounds, skip, buf, ctx, None) },
    }
}

/// Most memory reads a [`ReadLog`] keeps.
pub(crate) const READ_LOG: usize = 4 * MAX_DEPTH;

/// The stack words a walk read, in order: `(address, value)`. A walk is a function of its
/// registers and of the words it reads, so a cache of walks (`parksite`) can tell that a stack
/// would walk the same by comparing those words, without walking it.
pub(crate) struct ReadLog {
    pub(crate) reads: [(usize, usize); READ_LOG],
    pub(crate) len: usize,
    /// More than [`READ_LOG`] reads: the log is incomplete.
    pub(crate) overflow: bool,
}

impl ReadLog {
    pub(crate) const fn new() -> ReadLog {
        ReadLog { reads: [(0, 0); READ_LOG], len: 0, overflow: false }
    }

    #[inline]
    fn push(&mut self, addr: usize, value: usize) {
        if self.len == READ_LOG {
            self.overflow = true;
            return;
        }
        self.reads[self.len] = (addr, value);
        self.len += 1;
    }

    /// The reads logged.
    pub(crate) fn reads(&self) -> &[(usize, usize)] {
        &self.reads[..self.len]
    }
}

/// [`walk`] (no skip, may allocate), logging every stack word it reads into `log`.
///
/// # Safety
///
/// As for [`walk`].
pub(crate) unsafe fn walk_logged(regs: Regs, bounds: (usize, usize), buf: &mut [usize], log: &mut ReadLog) -> Walk {
    log.len = 0;
    log.overflow = false;
    match mode() {
        // SAFETY: the caller's contract, passed on.
        UnwindMode::FramePointers => unsafe { walk_fp_skip(regs.pc, regs.fp, bounds, 0, buf, Some(log)) },
        // SAFETY: the caller's contract, passed on.
        UnwindMode::DwarfCfi => unsafe { cfi::walk(regs, bounds, 0, buf, WalkCtx::MayAllocate, Some(log)) },
    }
}

/// Builds the CFI unwinder now if this build uses it (idempotent; the scheduler calls it before
/// its first M starts). Allocates; never call it from a signal handler.
pub fn init() {
    if mode() == UnwindMode::DwarfCfi {
        cfi::init();
    }
}

// ---------------------------------------------------------------------------------------------
// Frame pointers
// ---------------------------------------------------------------------------------------------
//
// Each frame starts with `[saved fp][return address]` at its frame pointer. A walk follows that
// chain and trusts nothing it reads:
// - a frame pointer must be word-aligned and the two words at it inside `[lo, hi)`;
// - the chain must strictly increase (callers sit higher): a loop or a frame built without frame
//   pointers ends the walk instead of wandering;
// - a zero return address ends it (corosensei and the thread entry end their chains so);
// - at most `buf.len()` frames are kept; more mark the walk truncated.
// corosensei links a coroutine's first frame to the stack that resumed it; that frame lies
// outside the goroutine's bounds, so a walk stops at the goroutine's own first frame.

/// Walks the frame-pointer chain starting at `fp` within `bounds = (lo, hi)`, writing return
/// addresses leaf first into `buf`. If `pc` is non-zero it is written first (an address in the
/// frame whose frame pointer is `fp`, e.g. a parked goroutine's park site).
///
/// # Safety
///
/// `[lo, hi)` must be mapped, readable memory that does not change during the walk.
pub unsafe fn walk_fp(pc: usize, fp: usize, bounds: (usize, usize), buf: &mut [usize]) -> Walk {
    // SAFETY: the caller's contract, passed on.
    unsafe { walk_fp_skip(pc, fp, bounds, 0, buf, None) }
}

/// # Safety
///
/// As for [`walk_fp`].
unsafe fn walk_fp_skip(
    pc: usize,
    mut fp: usize,
    bounds: (usize, usize),
    mut skip: usize,
    buf: &mut [usize],
    mut log: Option<&mut ReadLog>,
) -> Walk {
    const W: usize = std::mem::size_of::<usize>();
    let (lo, hi) = bounds;
    let mut n = 0;
    let mut push = |a: usize, n: &mut usize, skip: &mut usize| -> bool {
        if *skip > 0 {
            *skip -= 1;
            return true;
        }
        if *n == buf.len() {
            return false;
        }
        buf[*n] = a;
        *n += 1;
        true
    };
    if pc != 0 && !push(pc, &mut n, &mut skip) {
        return Walk { len: n, truncated: true };
    }
    loop {
        if !fp.is_multiple_of(W) || fp < lo || fp.checked_add(2 * W).is_none_or(|end| end > hi) {
            break;
        }
        // SAFETY: [fp, fp + 2W) is aligned and inside [lo, hi), which the caller guarantees is
        // mapped and stable.
        let (next, ret) =
            unsafe { (std::ptr::read_volatile(fp as *const usize), std::ptr::read_volatile((fp + W) as *const usize)) };
        if let Some(log) = log.as_deref_mut() {
            log.push(fp, next);
            log.push(fp + W, ret);
        }
        if ret == 0 {
            break;
        }
        if !push(ret, &mut n, &mut skip) {
            return Walk { len: n, truncated: true };
        }
        if next <= fp {
            break;
        }
        fp = next;
    }
    Walk { len: n, truncated: false }
}

// ---------------------------------------------------------------------------------------------
// DWARF CFI
// ---------------------------------------------------------------------------------------------

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod cfi;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod cfi {
    use super::*;

    pub(super) fn init() {}

    /// # Safety
    ///
    /// Nothing: no walk happens on this architecture.
    pub(super) unsafe fn walk(
        _: Regs,
        _: (usize, usize),
        _: usize,
        _: &mut [usize],
        _: WalkCtx,
        _: Option<&mut ReadLog>,
    ) -> Walk {
        Walk { len: 0, truncated: false }
    }
}

// ---------------------------------------------------------------------------------------------
// Loaded modules and their unwind tables
// ---------------------------------------------------------------------------------------------

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod modules;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traceback::capture;

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

    #[inline(never)]
    fn leaf(buf: &mut [usize]) -> Walk {
        let w = capture(0, buf);
        std::hint::black_box(w) // not a tail call: leaf keeps its frame
    }

    #[inline(never)]
    fn middle(buf: &mut [usize]) -> Walk {
        let w = leaf(buf);
        std::hint::black_box(w)
    }

    #[test]
    fn capture_sees_its_callers() {
        init();
        let mut buf = [0usize; 64];
        let w = middle(&mut buf);
        assert!(w.len >= 3, "{w:?}");
        // The first address returns into `leaf`, the next into `middle`: both are code, in
        // increasing caller order, and none is zero.
        let f = |a: usize| a as *const ();
        assert!(buf[..w.len].iter().all(|&a| a != 0), "{:?}", &buf[..w.len]);
        let leaf_at = leaf as *const () as usize;
        let middle_at = middle as *const () as usize;
        assert!(buf[0] > leaf_at && buf[0] < leaf_at + 512, "{:?} vs leaf {:?}", f(buf[0]), f(leaf_at));
        assert!(buf[1] > middle_at && buf[1] < middle_at + 512, "{:?} vs middle {:?}", f(buf[1]), f(middle_at));
    }

    #[test]
    fn cfi_walk_truncates_on_bad_bounds() {
        init();
        let mut buf = [0usize; 64];
        let regs = Regs::here();
        // Bounds that exclude the whole stack: no read is allowed, so at most the pc comes back.
        // SAFETY: an empty range is trivially mapped; nothing is read.
        let w = unsafe { walk(regs, (0x1000, 0x1000), 0, &mut buf, WalkCtx::MayAllocate) };
        assert!(w.len <= 1, "{w:?}");
    }

    #[test]
    fn buffer_bounds_the_walk() {
        init();
        let mut small = [0usize; 2];
        let w = capture(0, &mut small);
        assert_eq!(w, Walk { len: 2, truncated: true });
    }
}
