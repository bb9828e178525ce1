//! Pooled goroutine stacks: carved from large slabs, reused LIFO, scavenged when cold.
//!
//! # Why slabs
//!
//! A goroutine runs on a fixed-size stack (no growth: Rust code holds pointers into its stack,
//! so a stack cannot be moved to grow it as Go's are). The obvious
//! scheme, one `mmap` plus one `PROT_NONE` guard page per stack, costs two VMAs per stack, and
//! Linux caps a process at `vm.max_map_count` VMAs (65530 by default): such stacks stop at about
//! 32,700 goroutines. gort promises one million live goroutines on default system settings, so
//! stacks are carved out of large slabs, one `mmap` each, and only a bounded number of them get a
//! real guard.
//!
//! # Layout
//!
//! One slab is one anonymous mapping (`MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE`, with
//! `MADV_NOHUGEPAGE`) of `GAP + slots * (GAP + size)` bytes (256 slots unless stacks are huge):
//! a slab guard, then the slots; slot `k` is a gap followed by a stack:
//!
//! ```text
//!  slab base                                                                          slab end
//!  |           |<---------- slot 0 ---------->|<---------- slot 1 ---------->|     |<- slot n-1 ->|
//!  +-----------+-----------+------------------+-----------+------------------+ ... +-----+--------+
//!  | slab guard| gap 64KiB | usable stack     | gap 64KiB | usable stack     |     | gap | usable |
//!  +-----------+-----------+------------------+-----------+------------------+ ... +-----+--------+
//!              ^guard_lo   ^lo                ^hi         (stack k: [lo, hi), gap [lo - GAP, lo))
//!                          <---- grows down --|   the stack pointer starts at hi (corosensei base)
//! ```
//!
//! A stack grows down from `hi` toward `lo`; the gap `[lo - GAP, lo)` sits between it and the
//! previous slot's stack top, so an overflow falls into the gap first. The slab guard (always a
//! guard, whatever the budget: one extra VMA per slab without lightweight guards) stops a runaway
//! unguarded overflow at the bottom of its own slab instead of letting it run on into unrelated
//! memory below (thread stacks, malloc arenas).
//!
//! # The guard budget and the gap scheme
//!
//! * The first `guard_budget` stacks a pool carves (the runtime's [`GuardPlan`]: every stack, or
//!   as many as `vm.max_map_count` leaves room for; `GORT_GUARDED_STACKS` sets it) get their
//!   whole gap turned into a guard, so an overflow faults in the gap and the SIGSEGV handler in
//!   `overflow.rs` prints a Go-like `fatal error: stack overflow` naming the goroutine. Rust code
//!   probes every page of a large frame in order (stack probes), so even a frame bigger than the
//!   gap hits the guard first. Two kinds of guard:
//!   - a *lightweight guard* (`MADV_GUARD_INSTALL`, Linux 6.13+): page-table markers, no VMA of
//!     its own, so guards cost nothing against `vm.max_map_count` and the budget is unlimited
//!     (see [`light_guards_supported`]);
//!   - otherwise `mprotect(PROT_NONE)`, which splits the slab mapping: two VMAs per guarded
//!     stack. The budget is then what the map count leaves room for at start, and the scheduler
//!     refuses spawns that would need more guarded stacks ([`guard_plan`]) unless the program
//!     opted in to unguarded ones.
//! * Stacks carved beyond the budget (only where the program opted in) keep their gap mapped
//!   read-write. The gap is never touched
//!   legitimately, so it costs only address space (`MAP_NORESERVE`, no page is ever faulted in),
//!   and an overflow of up to 64 KiB lands in it without harming any other goroutine. It is
//!   detected after the fact:
//!   - (a) [`Stack::check_sp`]: the scheduler checks the saved stack pointer whenever a goroutine
//!     switches out; a stack pointer below `lo` means the goroutine is running in its gap;
//!   - (b) [`StackPool::put`] / [`StackPool::check_released`]: when a stack is returned, `mincore`
//!     on the gap's top page (where any contiguous overflow enters the gap) says whether it was
//!     ever faulted in. A read from outside (a debugger) faults in the zero page too, so a
//!     resident gap is then read: non-zero data there is an overflow; the caller reports it with `signal::fatal_overflow`, which names the
//!     goroutine and aborts. After a clean check nothing else is needed: the gap is still
//!     pristine for the next user;
//!   - (c) a runaway recursion never switches out: it runs through the gap and on through whatever
//!     lies below (the neighbouring slot's stack, the next slab) until it faults somewhere. The
//!     SIGSEGV handler recognises that case too (interrupted stack pointer below the running
//!     goroutine's stack and its gap touched) and reports the overflow, but the memory it ran
//!     through is already corrupted.
//!
//!   **The limit**: an unguarded overflow that leaves the gap (more than 64 KiB deep, or a single
//!   frame jumping past it in foreign code built without stack-clash protection) writes into the
//!   top of the neighbouring slot's stack, the oldest frames of another goroutine, before it is
//!   caught by (a), (b) or (c), or is not caught at all if that goroutine crashes first. Keep the
//!   budget large (or unlimited with lightweight guards) when hunting such a bug. `mincore` also
//!   cannot see a gap page that was swapped out (only on machines that swap).
//!
//! # What happens beyond `vm.max_map_count`
//!
//! Unguarded and lightweight-guarded stacks add no VMA of their own. 1M stacks of 256 KiB take
//! about 3,900 slabs (256 slots each): with lightweight guards adjacent slabs even merge into a
//! handful of VMAs; without, each slab is 2 VMAs (its `PROT_NONE` slab guard splits it), 7,800 in
//! all, plus 2 per `mprotect`-guarded stack: the guard budget is what fits. If the map count runs
//! out anyway (other code mapping a lot after start), `mprotect` fails with `ENOMEM`: the pool
//! then says so once on stderr, stops guarding and hands out unguarded (gap-checked) stacks
//! instead of failing. Only a failing slab `mmap` itself (address space or
//! map count exhausted) makes `get` return an `io::Error`; the pool never panics on it.
//!
//! # Memory
//!
//! Only touched pages cost memory. A stack keeps its touched pages resident while it sits in the
//! free list, so that reuse is free; `get` prefers the most recently freed (hottest) stack (LIFO).
//! [`StackPool::scavenge`] (called by sysmon about once a second) returns the pages of the free
//! stacks beyond the hottest `keep` to the kernel with `MADV_DONTNEED`; a scavenged stack reads as
//! zeros when reused. Transparent huge pages are disabled on slabs: a 2 MiB page would charge one
//! goroutine for eight neighbours and fault in the gaps (making `mincore` report false overflows).
//! The kernel also spends one 4 KiB page-table page per 2 MiB of slab in which anything was
//! touched: with 320 KiB slots that is about 640 bytes per live goroutine on top of its pages.
//!
//! # Invariants
//!
//! * Slab memory is never unmapped while any stack carved from it may be in use: a pool unmaps its
//!   slabs only when dropped with every stack back in the free list (the global pool never is).
//! * A pooled [`Stack`] value is the unique owner of its slot until it is `put` back. Dropping it
//!   instead leaks the slot (it stays mapped, is never reused, and is counted in
//!   [`StackStats::leaked`]); it never unmaps slab memory.
//! * A dedicated stack ([`alloc_dedicated`]) owns its own mapping and unmaps it when dropped.
//! * Free-list entries `free[..scavenged]` have had their usable pages released and not reused
//!   since; everything above is hot (possibly resident).
//! * Gap pages of unguarded stacks are untouched (not resident) while the stack is free, except
//!   transiently inside `put` when it has just detected and is cleaning an overflow.
//!
//! # Files
//!
//! This file: the [`Stack`] type and sizes. `vm.rs`: the `mmap`/`madvise`/`mincore` wrappers.
//! `guard.rs`: the guard plan and guard kinds. `pool.rs`: the slab pool and its scavenger.
//! `overflow.rs`: the other half of overflow detection, the SIGSEGV handler that reports a
//! guard hit as Go reports a stack overflow. `spare.rs`: each M's spare stack, where a
//! goroutine's walk of its own stack runs.

mod guard;
pub(crate) mod overflow;
mod pool;
mod spare;
mod vm;

use std::fmt;
use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering};

use corosensei::stack::StackPointer;

pub(crate) use self::guard::{guard_plan, maps_in_use, max_map_count, GuardKind, GuardPlan};
pub(crate) use self::pool::{alloc_dedicated, StackPool};
pub(crate) use self::spare::{Claim, SpareStack};
pub(crate) use self::vm::light_guards_supported;
use self::vm::{release_pages, resident_bytes, written_bytes};

/// Size of the region below every stack that catches overflows (a guard or an unguarded gap).
pub(crate) const GAP_SIZE: usize = 64 * 1024;
/// Slots per slab (fewer when the stacks are huge, see `SLAB_MAX_BYTES`).
pub(crate) const SLOTS_PER_SLAB: usize = 256;
/// Upper bound on one slab's size, so that huge stack sizes do not reserve absurd ranges.
pub(crate) const SLAB_MAX_BYTES: usize = 1 << 32;
/// Default goroutine stack size (virtual; only touched pages cost memory).
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// Smallest stack accepted (from `GORT_STACK_SIZE` or `Builder::stack_size`) and handed out.
pub const MIN_STACK_SIZE: usize = 16 * 1024;
/// Largest stack accepted (1 GiB, Go's maximum).
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Pooled stacks dropped instead of returned with `put` (never reused; still mapped).
pub(crate) static LEAKED: AtomicUsize = AtomicUsize::new(0);

/// The system page size (cached; at least 4096).
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p >= 4096 { p as usize } else { 4096 };
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// Size of the gap below each stack: [`GAP_SIZE`], or one page if pages are bigger.
pub(crate) fn gap_size() -> usize {
    GAP_SIZE.max(page_size())
}

pub(crate) fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to).saturating_mul(to)
}

/// Rounds a requested stack size the way the pool and [`alloc_dedicated`] do.
pub(crate) fn round_stack_size(size: usize) -> usize {
    round_up(size.clamp(MIN_STACK_SIZE, MAX_STACK_SIZE), page_size())
}

/// A goroutine stack: `[lo, hi)` usable, `[lo - gap, lo)` its guard or gap.
///
/// Either pooled (a slot of a [`StackPool`] slab: return it with [`StackPool::put`]) or
/// dedicated ([`alloc_dedicated`]: its own mapping, unmapped on drop or `put`).
pub(crate) struct Stack {
    lo: usize,
    size: usize,
    guarded: bool,
    dedicated: bool,
}

impl Stack {
    /// Lowest usable address (inclusive).
    pub(crate) fn lo(&self) -> usize {
        self.lo
    }
    /// Highest usable address (exclusive): where the stack pointer starts.
    pub(crate) fn hi(&self) -> usize {
        self.lo + self.size
    }
    /// Usable size in bytes (`hi - lo`).
    #[cfg_attr(not(test), allow(dead_code))] // used by the tests
    pub(crate) fn size(&self) -> usize {
        self.size
    }
    /// The gap below the stack, `[guard_lo, guard_hi)`; `guard_hi == lo`.
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        (self.lo - gap_size(), self.lo)
    }
    /// Whether the gap is `PROT_NONE` (an overflow faults) rather than an unguarded gap.
    pub(crate) fn is_guarded(&self) -> bool {
        self.guarded
    }
    /// Whether this stack has its own mapping ([`alloc_dedicated`]) rather than a pool slot.
    #[cfg_attr(not(test), allow(dead_code))] // used by the tests
    pub(crate) fn is_dedicated(&self) -> bool {
        self.dedicated
    }
    /// `false` if `sp` (a goroutine's saved stack pointer) is below the usable range, i.e. the
    /// goroutine overflowed into its gap. The scheduler calls this when a goroutine switches out.
    #[inline]
    #[cfg_attr(not(test), allow(dead_code))] // the scheduler inlines the same check on G fields
    pub(crate) fn check_sp(&self, sp: usize) -> bool {
        debug_assert!(sp <= self.hi(), "check_sp: sp {sp:#x} above stack top {:#x}", self.hi());
        sp >= self.lo
    }
    /// How many bytes of the gap an overflow wrote since the gap was last clean. Always 0 for a
    /// guarded stack (its gap cannot be touched). Called only as the stack is released (nothing
    /// runs on it any more).
    ///
    /// First one `mincore` of the gap's top page: a contiguous overflow enters the gap through it
    /// (frames are contiguous, and Rust probes the pages of a large frame from the top down), and
    /// one page keeps the common, clean case cheap on the goroutine-exit path. A resident page is
    /// not yet an overflow: a *read* from outside (a debugger, `process_vm_readv`,
    /// `/proc/PID/mem`) faults in the shared zero page too. An overflow leaves data behind
    /// (return addresses, saved registers); a read leaves zeros. So the resident pages of the
    /// whole gap are read, and only non-zero bytes count; a gap that was merely read is cleaned
    /// here, re-arming the cheap check for the stack's next user.
    fn gap_touched_bytes(&self) -> usize {
        if self.guarded {
            return 0;
        }
        let page = page_size();
        if resident_bytes(self.lo - page, page) == 0 {
            return 0;
        }
        let (glo, ghi) = self.guard_range();
        // SAFETY: the gap [glo, ghi) is this stack's own read-write mapping, and the stack is
        // being released: no frame lives in it.
        let written = unsafe { written_bytes(glo, ghi - glo) };
        if written == 0 {
            // SAFETY: as above; only zeros (or nothing) are there, so dropping the pages loses
            // nothing.
            unsafe { release_pages(glo, ghi - glo) };
        }
        written
    }
    /// Encodes a pooled stack as a free-list entry (`lo` is page-aligned: bit 0 = guarded)
    /// without running `Drop`.
    fn into_entry(self) -> usize {
        debug_assert!(!self.dedicated);
        let e = self.lo | self.guarded as usize;
        mem::forget(self);
        e
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("lo", &format_args!("{:#x}", self.lo))
            .field("hi", &format_args!("{:#x}", self.hi()))
            .field("guarded", &self.guarded)
            .field("dedicated", &self.dedicated)
            .finish()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.dedicated {
            let (glo, _) = self.guard_range();
            // SAFETY: a dedicated stack exclusively owns the mapping [lo - gap, hi) created by
            // alloc_dedicated; nothing runs on it any more (the coroutine that used it borrowed
            // or owned this value and is gone).
            let r = unsafe { libc::munmap(glo as *mut libc::c_void, self.hi() - glo) };
            debug_assert_eq!(r, 0, "munmap of a dedicated stack failed");
        } else {
            // Never unmap slab memory: the slot is leaked (still mapped, never reused).
            LEAKED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: `base` is `hi`, page-aligned (so STACK_ALIGNMENT-aligned) and non-zero. `limit` is the
// bottom of the gap, page-aligned, so it includes the guard as corosensei's contract asks. The
// memory between is mapped read-write for the stack's whole life and owned exclusively by this
// value. corosensei asks for a guard page: guarded stacks have one (64 KiB); unguarded pool stacks
// have an unguarded 64 KiB gap instead, whose overflows are detected by `check_sp` and the
// `mincore` check on release (module docs: the gap scheme and its limit). This is the runtime's
// deliberate trade for a million stacks within `vm.max_map_count`.
unsafe impl corosensei::stack::Stack for Stack {
    #[inline]
    fn base(&self) -> StackPointer {
        StackPointer::new(self.hi()).expect("stack top is non-zero")
    }
    #[inline]
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.guard_range().0).expect("stack bottom is non-zero")
    }
}

/// A released stack's unguarded gap was touched: the goroutine that used it overflowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Overflowed {
    /// Usable size of the stack that overflowed.
    pub stack_size: usize,
    /// Bytes of its gap that were touched (at least one page).
    pub touched_bytes: usize,
}

impl fmt::Display for Overflowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "goroutine overflowed its {}-byte stack ({} bytes of the gap below it were touched)",
            self.stack_size, self.touched_bytes
        )
    }
}

impl std::error::Error for Overflowed {}

#[cfg(test)]
mod tests;
