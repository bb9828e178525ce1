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
//!   `signal.rs` prints a Go-like `fatal error: stack overflow` naming the goroutine. Rust code
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

use std::fmt;
use std::io;
use std::mem;
use std::ptr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use corosensei::stack::StackPointer;
use parking_lot::Mutex;

/// Size of the region below every stack that catches overflows (a guard or an unguarded gap).
pub(crate) const GAP_SIZE: usize = 64 * 1024;
/// Smallest stack the pool or [`alloc_dedicated`] hands out.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;
/// Largest stack size accepted (larger requests are clamped; mmap would fail anyway).
const MAX_STACK_SIZE: usize = 1 << 40;
/// Slots per slab (fewer when the stacks are huge, see `SLAB_MAX_BYTES`).
const SLOTS_PER_SLAB: usize = 256;
/// Upper bound on one slab's size, so that huge stack sizes do not reserve absurd ranges.
const SLAB_MAX_BYTES: usize = 1 << 32;
/// Free stacks released per lock hold in `scavenge` (keeps `get` latency bounded).
const SCAVENGE_CHUNK: usize = 64;

/// `madvise` advice installing lightweight guard pages (Linux 6.13, `uapi/asm-generic/mman-common.h`;
/// not in the libc crate yet).
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Pooled stacks dropped instead of returned with `put` (never reused; still mapped).
static LEAKED: AtomicUsize = AtomicUsize::new(0);

/// Whether the kernel supports lightweight guard pages (`MADV_GUARD_INSTALL`, Linux 6.13+): guards
/// that cost no VMA, so every stack can be guarded. Probed once (one tiny mapping), then cached.
pub(crate) fn light_guards_supported() -> bool {
    // 0: not probed yet, 1: supported, 2: not supported.
    static LIGHT: AtomicU8 = AtomicU8::new(0);
    match LIGHT.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let page = page_size();
    let ok = match map_anon(2 * page) {
        Ok(p) => {
            let ok = install_light_guard(p, page).is_ok();
            // SAFETY: p..p+2 pages is the probe mapping created above, used by nothing else.
            unsafe { libc::munmap(p as *mut libc::c_void, 2 * page) };
            ok
        }
        Err(_) => false,
    };
    LIGHT.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    ok
}

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

fn round_up(n: usize, to: usize) -> usize {
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

/// Bytes of `[addr, addr + len)` that are resident, by `mincore` (0 if the range is not mapped).
fn resident_bytes(addr: usize, len: usize) -> usize {
    let page = page_size();
    let mut vec = [0u8; 256];
    let mut off = 0;
    let mut resident = 0;
    while off < len {
        let chunk = (len - off).min(vec.len() * page);
        // SAFETY: addr + off is page-aligned; vec has room for chunk / page entries; mincore
        // only reads the page tables and writes vec.
        let r = unsafe { libc::mincore((addr + off) as *mut libc::c_void, chunk, vec.as_mut_ptr()) };
        if r != 0 {
            debug_assert!(false, "mincore({:#x}, {chunk}) failed: {}", addr + off, io::Error::last_os_error());
            return resident;
        }
        resident += vec[..chunk.div_ceil(page)].iter().filter(|b| **b & 1 != 0).count() * page;
        off += chunk;
    }
    resident
}

/// `madvise(MADV_DONTNEED)`: the range's pages go back to the kernel and read as zeros afterwards.
///
/// Bytes in the resident pages of `[addr, addr + len)` that hold anything but zeros, counted in
/// whole pages. Pages that are not resident are not read (a read would fault them in).
///
/// # Safety
/// `[addr, addr + len)` must be page-aligned, mapped readable, and not written during the call.
unsafe fn written_bytes(addr: usize, len: usize) -> usize {
    let page = page_size();
    let mut written = 0;
    let mut off = 0;
    while off < len {
        if resident_bytes(addr + off, page) != 0 {
            // SAFETY: the page is inside the caller's mapped, readable, unchanging range.
            let words = unsafe { std::slice::from_raw_parts((addr + off) as *const u64, page / 8) };
            if words.iter().any(|&w| w != 0) {
                written += page;
            }
        }
        off += page;
    }
    written
}

/// # Safety
/// `[addr, addr + len)` must be a page-aligned private anonymous range that nothing is using (no
/// live stack frames, no references into it).
unsafe fn release_pages(addr: usize, len: usize) {
    // SAFETY: the caller guarantees nobody uses the range; DONTNEED on private anonymous memory
    // only drops its contents.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    debug_assert_eq!(r, 0, "madvise(DONTNEED) failed: {}", io::Error::last_os_error());
}

/// An anonymous read-write `MAP_NORESERVE` mapping with transparent huge pages off.
fn map_anon(len: usize) -> io::Result<usize> {
    // SAFETY: a fresh anonymous mapping at a kernel-chosen address aliases nothing.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: p..p+len is the mapping just created; the advice only changes paging policy.
    // Failure (kernel without THP) is harmless and ignored.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    Ok(p as usize)
}

/// Makes `[addr, addr + len)` inaccessible. Fails (typically `ENOMEM`) when the VMA split would
/// exceed `vm.max_map_count`; the range is then unchanged (still read-write).
fn protect_none(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller passes a gap inside a mapping it owns that nothing uses.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs lightweight guard pages over `[addr, addr + len)` (no VMA split); any later access
/// raises SIGSEGV. Fails with `EINVAL` on kernels before 6.13.
fn install_light_guard(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller passes a gap inside a private anonymous mapping it owns that nothing
    // uses; installing guards discards the (untouched) contents of the range.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, MADV_GUARD_INSTALL) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many goroutines may hold a stack at once, and whether their stacks are all guarded: the
/// runtime's plan, made at start from the kernel and `vm.max_map_count` (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GuardPlan {
    /// Stacks the pool guards (counted from the first carved).
    pub(crate) budget: usize,
    /// Live goroutines allowed, so that every stack is guarded; `None`: no limit (lightweight
    /// guards, or unguarded stacks allowed past the budget).
    pub(crate) spawn_cap: Option<usize>,
    /// `vm.max_map_count` the plan was made with (for error messages).
    pub(crate) max_map_count: usize,
    /// Guards are `mprotect`s (two mappings each).
    pub(crate) mprotect: bool,
}

/// Mappings kept free for everything but goroutine stacks: malloc arenas, thread stacks (two
/// mappings each, and `blocking` may start threads), libraries loaded later, the slabs' own
/// mappings. A sixteenth of the map count on top of a fixed 2048.
fn map_reserve(max_map_count: usize) -> usize {
    2048 + max_map_count / 16
}

/// The guard plan (module docs). An explicit budget (`GORT_GUARDED_STACKS=N`: the first N stacks
/// guarded, the rest not) is itself the opt-in to unguarded stacks. Otherwise: every stack with
/// lightweight guards; with `mprotect` guards, the stacks whose guards fit in `max_map_count`
/// less the mappings in use (`maps_now`) and a reserve (a guarded stack costs two mappings, and
/// every 256 stacks a slab costs two more), with spawns capped there unless `unguarded_ok`.
/// `cache_slack` stacks sit in per-P caches without a goroutine: the cap leaves room for them.
pub(crate) fn guard_plan(
    light: bool,
    explicit: Option<usize>,
    unguarded_ok: bool,
    max_map_count: usize,
    maps_now: usize,
    cache_slack: usize,
) -> GuardPlan {
    let mprotect = !light;
    if let Some(budget) = explicit {
        return GuardPlan { budget, spawn_cap: None, max_map_count, mprotect };
    }
    if light {
        return GuardPlan { budget: usize::MAX, spawn_cap: None, max_map_count, mprotect };
    }
    let room = max_map_count.saturating_sub(maps_now).saturating_sub(map_reserve(max_map_count));
    let budget = room * SLOTS_PER_SLAB / (2 * SLOTS_PER_SLAB + 2);
    let spawn_cap = (!unguarded_ok).then(|| budget.saturating_sub(cache_slack));
    GuardPlan { budget, spawn_cap, max_map_count, mprotect }
}

/// `vm.max_map_count`, or Linux's default if it cannot be read.
pub(crate) fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(65530)
}

/// Mappings in use now (lines of `/proc/self/maps`); 0 if unreadable.
pub(crate) fn maps_in_use() -> usize {
    std::fs::read_to_string("/proc/self/maps").map(|s| s.lines().count()).unwrap_or(0)
}

/// Which kind of guard a pool (or [`alloc_dedicated`]) installs on the gaps within its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardKind {
    /// Lightweight guards where the kernel has them ([`light_guards_supported`]), else `mprotect`.
    Auto,
    /// Always `mprotect(PROT_NONE)` (2 VMAs per guarded stack; visible in `/proc/self/maps`).
    Mprotect,
}

/// Turns a gap into a guard: a lightweight guard if `light`, else `PROT_NONE`. Returns whether
/// the lightweight kind is still usable (false after it failed once) and whether a guard is set.
fn guard_gap(addr: usize, len: usize, light: bool) -> (bool, bool) {
    if light {
        if install_light_guard(addr, len).is_ok() {
            return (true, true);
        }
        // Unexpected (seccomp, an exotic mapping): fall back to mprotect from now on.
        return (false, protect_none(addr, len).is_ok());
    }
    (false, protect_none(addr, len).is_ok())
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

/// A snapshot of a pool's counters.
#[cfg_attr(not(test), allow(dead_code))] // used by the tests
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StackStats {
    /// Usable size of each stack.
    pub stack_size: usize,
    /// Slab mappings.
    pub slabs: usize,
    /// Stacks carved so far (handed out or free).
    pub total_stacks: usize,
    /// Stacks in the free list.
    pub free_stacks: usize,
    /// Free stacks whose pages were already released by `scavenge`.
    pub scavenged_stacks: usize,
    /// Stacks with a guard (lightweight or `PROT_NONE`).
    pub guarded_stacks: usize,
    /// Whether new guards are lightweight (`MADV_GUARD_INSTALL`, no VMA each).
    pub light_guards: bool,
    /// Bytes of address space mapped for slabs (virtual, not resident).
    pub mapped_bytes: usize,
    /// Pooled stacks dropped instead of put back, process-wide (a runtime bug if non-zero).
    pub leaked: usize,
}

struct Inner {
    /// Free stacks (`Stack::into_entry` encoding), coldest first, hottest last.
    free: Vec<usize>,
    /// `free[..scavenged]` have had their pages released since they were freed.
    scavenged: usize,
    /// Base of the slab being carved (0: none).
    cur_base: usize,
    /// Next uncarved slot in the current slab.
    cur_next: usize,
    /// Every slab mapping, for `Drop`.
    slabs: Vec<usize>,
    carved: usize,
    guarded: usize,
    /// Install lightweight guards (cleared if installing one ever fails).
    light: bool,
    /// Set when guarding failed (map count exhausted): stop trying.
    guard_failed: bool,
}

/// The pool of goroutine stacks of one size. See the module docs.
pub(crate) struct StackPool {
    stack_size: usize,
    gap: usize,
    /// Lightweight (rather than `PROT_NONE`) slab guards.
    light_slab_guard: bool,
    slot_size: usize,
    slab_slots: usize,
    guard_budget: usize,
    inner: Mutex<Inner>,
}

impl StackPool {
    /// A pool of `stack_size`-byte stacks (rounded up to pages, at least 16 KiB) whose first
    /// `guard_budget` stacks get a guard (lightweight where the kernel has them, else
    /// `PROT_NONE`). Maps nothing until the first `get`.
    #[cfg_attr(not(test), allow(dead_code))] // the runtime uses with_guard_kind
    pub(crate) fn new(stack_size: usize, guard_budget: usize) -> StackPool {
        StackPool::with_guard_kind(stack_size, guard_budget, GuardKind::Auto)
    }

    /// [`new`](Self::new) with an explicit guard kind.
    pub(crate) fn with_guard_kind(stack_size: usize, guard_budget: usize, kind: GuardKind) -> StackPool {
        let light_slab_guard = kind == GuardKind::Auto && light_guards_supported();
        let light = light_slab_guard && guard_budget > 0;
        let stack_size = round_stack_size(stack_size);
        let gap = gap_size();
        let slot_size = stack_size + gap;
        let slab_slots = (SLAB_MAX_BYTES / slot_size).clamp(1, SLOTS_PER_SLAB);
        StackPool {
            stack_size,
            gap,
            light_slab_guard,
            slot_size,
            slab_slots,
            guard_budget,
            inner: Mutex::new(Inner {
                free: Vec::new(),
                scavenged: 0,
                cur_base: 0,
                cur_next: 0,
                slabs: Vec::new(),
                carved: 0,
                guarded: 0,
                light,
                guard_failed: false,
            }),
        }
    }

    /// Usable size of every stack of this pool.
    pub(crate) fn stack_size(&self) -> usize {
        self.stack_size
    }

    /// Bytes of one slab mapping: the slab guard and the slots.
    fn slab_len(&self) -> usize {
        self.gap + self.slab_slots * self.slot_size
    }

    fn decode(&self, e: usize) -> Stack {
        Stack { lo: e & !1, size: self.stack_size, guarded: e & 1 != 0, dedicated: false }
    }

    fn pop_free(&self, g: &mut Inner) -> Option<Stack> {
        let e = g.free.pop()?;
        g.scavenged = g.scavenged.min(g.free.len());
        Some(self.decode(e))
    }

    /// Carves a brand-new stack from the current slab, mapping a new slab if needed.
    fn carve(&self, g: &mut Inner) -> io::Result<Stack> {
        if g.cur_base == 0 || g.cur_next == self.slab_slots {
            let base = map_anon(self.slab_len())?;
            // Best effort: without it a runaway overflow just runs further.
            let _ = guard_gap(base, self.gap, self.light_slab_guard);
            g.slabs.push(base);
            g.cur_base = base + self.gap;
            g.cur_next = 0;
        }
        let glo = g.cur_base + g.cur_next * self.slot_size;
        g.cur_next += 1;
        g.carved += 1;
        let mut guarded = false;
        if g.guarded < self.guard_budget && !g.guard_failed {
            let (light, ok) = guard_gap(glo, self.gap, g.light);
            g.light = light;
            if ok {
                guarded = true;
                g.guarded += 1;
            } else {
                // Map count exhausted by something other than our stacks (the spawn cap keeps
                // ours within the budget): degrade to unguarded (gap-checked) stacks for good,
                // and say so once.
                g.guard_failed = true;
                eprintln!(
                    "gort: warning: cannot guard goroutine stacks any more (mprotect: {}; vm.max_map_count \
                     exhausted?): further stacks are unguarded, their overflows detected only after the fact",
                    io::Error::last_os_error()
                );
            }
        }
        Ok(Stack { lo: glo + self.gap, size: self.stack_size, guarded, dedicated: false })
    }

    /// A stack: the most recently freed one, else a new one carved from the current slab, else
    /// from a newly mapped slab. Fails only if mapping a slab fails.
    pub(crate) fn get(&self) -> io::Result<Stack> {
        let mut g = self.inner.lock();
        if let Some(s) = self.pop_free(&mut g) {
            return Ok(s);
        }
        self.carve(&mut g)
    }

    /// Pushes `n` stacks onto `out` under one lock hold (hottest first, for per-P caches).
    /// On `Err` fewer than `n` were pushed (maybe none); those pushed are valid stacks.
    pub(crate) fn get_batch(&self, n: usize, out: &mut Vec<Stack>) -> io::Result<()> {
        out.reserve(n);
        let mut g = self.inner.lock();
        for _ in 0..n {
            let s = match self.pop_free(&mut g) {
                Some(s) => s,
                None => self.carve(&mut g)?,
            };
            out.push(s);
        }
        Ok(())
    }

    /// Returns a stack to the pool after checking its gap (unguarded stacks only, see
    /// [`check_released`](Self::check_released)). On `Err` the caller must report the overflow
    /// (`signal::fatal_overflow`); the stack itself is cleaned and recycled either way.
    /// A dedicated stack is checked the same way and then unmapped.
    pub(crate) fn put(&self, s: Stack) -> Result<(), Overflowed> {
        let r = self.check_released(&s);
        if s.dedicated {
            drop(s);
            return r;
        }
        debug_assert_eq!(s.size, self.stack_size, "stack returned to a pool of another size");
        if r.is_err() {
            let (glo, ghi) = s.guard_range();
            // SAFETY: the stack is being returned, so no frame lives in it or its gap any more;
            // clearing the gap re-arms the mincore check for the next user.
            unsafe { release_pages(glo, ghi - glo) };
        }
        let e = s.into_entry();
        self.inner.lock().free.push(e);
        r
    }

    /// Returns stacks to the pool under one lock hold, without the overflow check (the caller
    /// checked each with [`check_released`](Self::check_released)). The last one in `v` is handed
    /// out first. Dedicated stacks in `v` are unmapped. Leaves `v` empty.
    pub(crate) fn put_batch(&self, v: &mut Vec<Stack>) {
        let mut g = self.inner.lock();
        g.free.reserve(v.len());
        for s in v.drain(..) {
            if s.dedicated {
                drop(s);
                continue;
            }
            debug_assert_eq!(s.size, self.stack_size, "stack returned to a pool of another size");
            g.free.push(s.into_entry());
        }
    }

    /// The overflow check alone: `Err` if `s` is unguarded and a page of its gap was touched
    /// (one `mincore` call; always `Ok` for a guarded stack, whose overflows fault instead).
    pub(crate) fn check_released(&self, s: &Stack) -> Result<(), Overflowed> {
        match s.gap_touched_bytes() {
            0 => Ok(()),
            touched => Err(Overflowed { stack_size: s.size, touched_bytes: touched }),
        }
    }

    /// Releases the pages of the free stacks beyond the hottest `keep` (`MADV_DONTNEED`) and
    /// returns how many resident bytes that gave back. Stacks released by an earlier call and not
    /// reused since are not visited again, so a call with nothing new to do is O(1).
    pub(crate) fn scavenge(&self, keep: usize) -> usize {
        let mut released = 0;
        loop {
            let mut g = self.inner.lock();
            let end = g.free.len().saturating_sub(keep);
            if g.scavenged >= end {
                return released;
            }
            let stop = end.min(g.scavenged + SCAVENGE_CHUNK);
            for i in g.scavenged..stop {
                let lo = g.free[i] & !1;
                let resident = resident_bytes(lo, self.stack_size);
                if resident != 0 {
                    // SAFETY: the stack is in the free list and the lock is held, so nobody can
                    // take it and run on it while its pages are dropped.
                    unsafe { release_pages(lo, self.stack_size) };
                    released += resident;
                }
            }
            g.scavenged = stop;
        }
    }

    /// Current counters.
    #[cfg_attr(not(test), allow(dead_code))] // used by the tests
    pub(crate) fn stats(&self) -> StackStats {
        let g = self.inner.lock();
        StackStats {
            stack_size: self.stack_size,
            slabs: g.slabs.len(),
            total_stacks: g.carved,
            free_stacks: g.free.len(),
            scavenged_stacks: g.scavenged,
            guarded_stacks: g.guarded,
            light_guards: g.light,
            mapped_bytes: g.slabs.len() * self.slab_len(),
            leaked: LEAKED.load(Ordering::Relaxed),
        }
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        let len = self.slab_len();
        let g = self.inner.get_mut();
        if g.free.len() != g.carved {
            // Stacks are still out (maybe running): keep every slab mapped.
            return;
        }
        for &base in &g.slabs {
            // SAFETY: every stack carved from the slabs is back in the free list, so nothing
            // uses slab memory; the pool is being destroyed, so nothing will.
            let r = unsafe { libc::munmap(base as *mut libc::c_void, len) };
            debug_assert_eq!(r, 0);
        }
    }
}

/// A stack with its own mapping (for `Builder::stack_size` with a non-default size): `size`
/// rounded up to pages (at least 16 KiB) plus a 64 KiB guard below it: a lightweight guard
/// (1 VMA in all) where the kernel has them, else `PROT_NONE` (2 VMAs). If no guard can be set
/// (map count exhausted) the stack comes back unguarded, gap-checked like an unguarded pool
/// stack. Unmapped when dropped (or passed to [`StackPool::put`]).
pub(crate) fn alloc_dedicated(size: usize) -> io::Result<Stack> {
    alloc_dedicated_with(size, GuardKind::Auto)
}

/// [`alloc_dedicated`] with an explicit guard kind.
pub(crate) fn alloc_dedicated_with(size: usize, kind: GuardKind) -> io::Result<Stack> {
    let size = round_stack_size(size);
    let gap = gap_size();
    let base = map_anon(gap + size)?;
    let light = kind == GuardKind::Auto && light_guards_supported();
    let (_, guarded) = guard_gap(base, gap, light);
    Ok(Stack { lo: base + gap, size, guarded, dedicated: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn maps_lines() -> usize {
        std::fs::read_to_string("/proc/self/maps").unwrap().lines().count()
    }

    /// The /proc/self/maps line covering `addr`: (lo, hi, perms).
    fn map_of(addr: usize) -> Option<(usize, usize, String)> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let mut it = line.split_whitespace();
            let range = it.next()?;
            let perms = it.next()?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
            if a <= addr && addr < b {
                return Some((a, b, perms.to_string()));
            }
        }
        None
    }

    /// Whether a write to `addr` in a forked child kills it with SIGSEGV.
    fn write_faults_in_child(addr: usize) -> bool {
        // SAFETY: the child only does a volatile store and _exit (async-signal-safe), nothing
        // that could need a lock another parent thread held at fork time.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: a deliberately faulting (or harmless) write, in the child only.
            unsafe {
                ptr::write_volatile(addr as *mut u8, 1);
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV
    }

    fn rss_bytes() -> usize {
        let s = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * page_size()
    }

    fn touch(s: &Stack, from: usize, to: usize) {
        let mut a = from;
        while a < to {
            // SAFETY: the tests only touch ranges of stacks they own (usable range or gap of an
            // unguarded stack, both mapped read-write).
            unsafe { ptr::write_volatile(a as *mut u8, 0xA5) };
            a += page_size();
        }
        let _ = s;
    }

    #[test]
    fn sizes_are_rounded() {
        let p = StackPool::new(1, 0);
        assert_eq!(p.stack_size(), MIN_STACK_SIZE);
        let p = StackPool::new(100_000, 0);
        assert_eq!(p.stack_size(), 102_400);
        let s = p.get().unwrap();
        assert_eq!(s.size(), 102_400);
        assert_eq!(s.hi() - s.lo(), s.size());
        assert_eq!(s.lo() % page_size(), 0);
        assert_eq!(s.guard_range(), (s.lo() - GAP_SIZE, s.lo()));
        assert!(!s.is_dedicated());
        p.put(s).unwrap();
    }

    #[test]
    fn get_put_reuse_is_lifo() {
        let p = StackPool::new(64 * 1024, 0);
        let a = p.get().unwrap();
        let b = p.get().unwrap();
        let c = p.get().unwrap();
        let (la, lb, lc) = (a.lo(), b.lo(), c.lo());
        assert!(la != lb && lb != lc && la != lc);
        p.put(a).unwrap();
        p.put(b).unwrap();
        p.put(c).unwrap();
        assert_eq!(p.get().unwrap().lo(), lc);
        assert_eq!(p.get().unwrap().lo(), lb);
        let a2 = p.get().unwrap();
        assert_eq!(a2.lo(), la);
        let st = p.stats();
        assert_eq!((st.total_stacks, st.free_stacks, st.slabs), (3, 0, 1));
        // The two stacks popped above were dropped, not put: leaked, still mapped.
        assert!(st.leaked >= 2);
        p.put(a2).unwrap();
        assert_eq!(p.stats().free_stacks, 1);
    }

    #[test]
    fn batch_ops_and_stats() {
        let p = StackPool::new(32 * 1024, 3);
        let mut v = Vec::new();
        p.get_batch(300, &mut v).unwrap();
        assert_eq!(v.len(), 300);
        let st = p.stats();
        assert_eq!(st.total_stacks, 300);
        assert_eq!(st.slabs, 2, "256 slots per slab");
        assert_eq!(st.guarded_stacks, 3);
        assert_eq!(st.free_stacks, 0);
        assert_eq!(st.mapped_bytes, 2 * (GAP_SIZE + 256 * (32 * 1024 + GAP_SIZE)));
        assert_eq!(v.iter().filter(|s| s.is_guarded()).count(), 3);
        let mut los: Vec<usize> = v.iter().map(|s| s.lo()).collect();
        los.sort_unstable();
        los.dedup();
        assert_eq!(los.len(), 300);
        let last = v.last().unwrap().lo();
        p.put_batch(&mut v);
        assert!(v.is_empty());
        assert_eq!(p.stats().free_stacks, 300);
        // LIFO across batches: the last stack put is the first handed out.
        p.get_batch(10, &mut v).unwrap();
        assert_eq!(v[0].lo(), last);
        assert_eq!(p.stats().total_stacks, 300, "reused, not carved");
        p.put_batch(&mut v);
    }

    #[test]
    fn whole_usable_range_is_writable() {
        for budget in [0, 1] {
            let p = StackPool::new(128 * 1024, budget);
            let s = p.get().unwrap();
            assert_eq!(s.is_guarded(), budget == 1);
            // SAFETY: [lo, hi) is the stack's mapped, read-write usable range, owned by `s`.
            let mem = unsafe { std::slice::from_raw_parts_mut(s.lo() as *mut u8, s.size()) };
            mem.fill(0x5A);
            assert!(mem.iter().all(|b| *b == 0x5A));
            // Filling the usable range does not touch the gap.
            assert_eq!(p.check_released(&s), Ok(()));
            p.put(s).unwrap();
        }
    }

    #[test]
    fn guard_is_prot_none_and_unguarded_gap_is_not() {
        let p = StackPool::with_guard_kind(64 * 1024, 1, GuardKind::Mprotect);
        let g = p.get().unwrap();
        let u = p.get().unwrap();
        assert!(g.is_guarded() && !u.is_guarded());
        let (glo, ghi) = g.guard_range();
        let (a, b, perms) = map_of(glo).unwrap();
        // (The slab guard below slot 0 has the same protection: one VMA with it.)
        assert!(a <= glo, "{a:#x} {glo:#x}");
        assert_eq!((b, perms.as_str()), (ghi, "---p"));
        let (a, _, perms) = map_of(g.lo()).unwrap();
        assert_eq!((a, perms.as_str()), (g.lo(), "rw-p"));
        let (_, _, perms) = map_of(u.guard_range().0).unwrap();
        assert_eq!(perms, "rw-p");
        // Probe: writing into the guard in a forked child kills it with SIGSEGV.
        assert!(write_faults_in_child(ghi - 1));
        assert!(write_faults_in_child(glo));
        assert!(!write_faults_in_child(g.lo()));
        assert!(!write_faults_in_child(u.guard_range().1 - 1));
        p.put(g).unwrap();
        p.put(u).unwrap();
    }

    #[test]
    fn light_guards_cost_no_vma() {
        if !light_guards_supported() {
            eprintln!("kernel without MADV_GUARD_INSTALL: skipped");
            return;
        }
        let p = StackPool::new(64 * 1024, 1000);
        let first = p.get().unwrap(); // maps the slab
        let before = maps_lines();
        let mut v = Vec::new();
        p.get_batch(200, &mut v).unwrap();
        assert!(v.iter().all(|s| s.is_guarded()));
        assert!(p.stats().light_guards);
        // No VMA split: the guard is part of the slab's rw mapping in /proc/self/maps ...
        let s = &v[100];
        let (glo, ghi) = s.guard_range();
        assert_eq!(map_of(glo).unwrap().2, "rw-p");
        assert!(maps_lines() <= before + 1, "{before} -> {}", maps_lines());
        // ... but any access faults.
        assert!(write_faults_in_child(ghi - 1));
        assert!(write_faults_in_child(glo));
        assert!(!write_faults_in_child(s.lo()));
        assert!(!write_faults_in_child(s.hi() - 1));
        // Guards survive scavenging (MADV_DONTNEED keeps guard markers).
        touch(s, s.lo(), s.hi());
        p.put_batch(&mut v);
        assert!(p.scavenge(0) > 0);
        let s = p.get().unwrap();
        assert!(write_faults_in_child(s.guard_range().1 - 1));
        // mincore reports guard pages as not resident: the release check stays clean.
        assert_eq!(p.check_released(&s), Ok(()));
        p.put(s).unwrap();
        p.put(first).unwrap();
    }

    #[test]
    fn check_sp_bounds() {
        let p = StackPool::new(64 * 1024, 0);
        let s = p.get().unwrap();
        assert!(s.check_sp(s.hi()));
        assert!(s.check_sp(s.hi() - 64));
        assert!(s.check_sp(s.lo()));
        assert!(!s.check_sp(s.lo() - 8));
        assert!(!s.check_sp(s.guard_range().0));
        p.put(s).unwrap();
    }

    #[test]
    fn check_released_detects_touched_gap() {
        let p = StackPool::new(64 * 1024, 0);
        let s = p.get().unwrap();
        assert!(!s.is_guarded());
        assert_eq!(p.check_released(&s), Ok(()));
        let (glo, ghi) = s.guard_range();
        touch(&s, ghi - 8, ghi); // top page of the gap: the first a small overflow hits
        assert_eq!(p.check_released(&s), Err(Overflowed { stack_size: 64 * 1024, touched_bytes: 4096 }));
        touch(&s, glo, glo + 1); // the bottom page as well: once the top page is resident, the
                                 // whole gap is read
        let err = p.put(s).unwrap_err();
        assert_eq!(err.touched_bytes, 2 * page_size());
        assert!(err.to_string().contains("overflowed"));
        // Recycled with a clean gap.
        let s = p.get().unwrap();
        assert_eq!(s.guard_range().1, ghi);
        assert_eq!(p.check_released(&s), Ok(()));
        p.put(s).unwrap();
        // A read of the gap (a debugger's, say) faults in the zero page but is no overflow; the
        // gap is cleaned for the next user.
        let s = p.get().unwrap();
        // SAFETY: the unguarded gap is mapped read-write.
        let _ = unsafe { ptr::read_volatile((s.lo() - 1) as *const u8) };
        assert_eq!(resident_bytes(s.lo() - page_size(), page_size()), page_size());
        assert_eq!(p.check_released(&s), Ok(()));
        assert_eq!(resident_bytes(s.lo() - page_size(), page_size()), 0, "the read gap was cleaned");
        p.put(s).unwrap();
        // A write of zeros alone leaves no trace either (a stack probe that then returned).
        let s = p.get().unwrap();
        // SAFETY: as above.
        unsafe { ptr::write_volatile((s.lo() - 8) as *mut u64, 0) };
        assert_eq!(p.check_released(&s), Ok(()));
        p.put(s).unwrap();
    }

    #[test]
    fn scavenge_releases_rss() {
        const N: usize = 64;
        let p = StackPool::new(256 * 1024, 0);
        let mut v = Vec::new();
        p.get_batch(N, &mut v).unwrap();
        for s in &v {
            touch(s, s.lo(), s.hi());
        }
        let los: Vec<usize> = v.iter().map(|s| s.lo()).collect();
        p.put_batch(&mut v);
        let before = rss_bytes();
        // Keep the 4 hottest (the last 4 put).
        let released = p.scavenge(4);
        let after = rss_bytes();
        assert_eq!(released, (N - 4) * 256 * 1024);
        assert!(before.saturating_sub(after) >= released / 2, "rss {before} -> {after}, released {released}");
        for (i, lo) in los.iter().enumerate() {
            let expect = if i < N - 4 { 0 } else { 256 * 1024 };
            assert_eq!(resident_bytes(*lo, 256 * 1024), expect, "stack {i}");
        }
        assert_eq!(p.stats().scavenged_stacks, N - 4);
        // Nothing new to do.
        assert_eq!(p.scavenge(4), 0);
        // Popping below the watermark lowers it; the rest get scavenged when asked.
        p.get_batch(N - 2, &mut v).unwrap();
        assert_eq!(p.stats().scavenged_stacks, 2);
        p.put_batch(&mut v);
        assert_eq!(p.scavenge(0), 4 * 256 * 1024);
        assert_eq!(p.stats().scavenged_stacks, N);
        // A scavenged stack reads as zeros and is fully usable.
        let s = p.get().unwrap();
        // SAFETY: usable range of a stack we own.
        assert_eq!(unsafe { ptr::read_volatile((s.hi() - 1) as *const u8) }, 0);
        touch(&s, s.lo(), s.hi());
        p.put(s).unwrap();
    }

    #[test]
    fn hundred_thousand_unguarded_stacks_few_vmas() {
        const N: usize = 100_000;
        let p = StackPool::new(256 * 1024, 0);
        let maps_before = maps_lines();
        let t = Instant::now();
        let mut v = Vec::with_capacity(N);
        for _ in 0..N {
            v.push(p.get().unwrap());
        }
        let t_get = t.elapsed();
        let maps_after = maps_lines();
        let st = p.stats();
        assert_eq!(st.total_stacks, N);
        assert_eq!(st.slabs, N.div_ceil(256));
        assert!(maps_after < maps_before + 1000, "maps {maps_before} -> {maps_after}");
        // Each stack is usable: touch its top page (what a parked goroutine costs).
        for s in v.iter().step_by(97) {
            touch(s, s.hi() - 8, s.hi());
        }
        let t = Instant::now();
        for s in v.drain(..) {
            p.put(s).unwrap(); // includes the mincore gap check
        }
        let t_put = t.elapsed();
        assert_eq!(p.stats().free_stacks, N);
        let t = Instant::now();
        for _ in 0..N {
            v.push(p.get().unwrap());
        }
        p.put_batch(&mut v);
        let t_reuse = t.elapsed();
        eprintln!(
            "100k stacks: {} VMAs added, {} slabs; carve {:?}/stack, put+check {:?}/stack, reuse get+put_batch {:?}/stack",
            maps_after - maps_before,
            st.slabs,
            t_get / N as u32,
            t_put / N as u32,
            t_reuse / N as u32,
        );
        let s = p.get().unwrap();
        let lo = s.lo();
        p.put(s).unwrap();
        drop(p); // everything is back: the slabs are unmapped
        let mut vec = [0u8; 1];
        // SAFETY: mincore only inspects page tables.
        let r = unsafe { libc::mincore(lo as *mut libc::c_void, page_size(), vec.as_mut_ptr()) };
        assert_eq!(r, -1, "slab still mapped after the pool was dropped");
    }

    #[test]
    fn guard_budget_is_respected() {
        let p = StackPool::new(16 * 1024, 5);
        let mut v = Vec::new();
        p.get_batch(8, &mut v).unwrap();
        let guarded: Vec<bool> = v.iter().map(|s| s.is_guarded()).collect();
        assert_eq!(guarded, [true, true, true, true, true, false, false, false]);
        p.put_batch(&mut v);
        // Reuse keeps each stack's guard state; no more guards are added.
        p.get_batch(8, &mut v).unwrap();
        assert_eq!(v.iter().filter(|s| s.is_guarded()).count(), 5);
        assert_eq!(p.stats().guarded_stacks, 5);
        p.put_batch(&mut v);
    }

    #[test]
    fn dedicated_stacks_own_their_mapping() {
        let s = alloc_dedicated_with(100_000, GuardKind::Mprotect).unwrap();
        assert!(s.is_dedicated() && s.is_guarded());
        assert_eq!(s.size(), 102_400);
        let (glo, ghi) = s.guard_range();
        assert_eq!(map_of(glo).unwrap(), (glo, ghi, "---p".to_string()));
        drop(s);
        let s = alloc_dedicated(100_000).unwrap();
        assert!(s.is_dedicated() && s.is_guarded());
        assert!(write_faults_in_child(s.guard_range().1 - 1));
        touch(&s, s.lo(), s.hi());
        let lo = s.lo();
        drop(s);
        // Unmapped: mincore fails with ENOMEM on the old range.
        let mut vec = [0u8; 1];
        // SAFETY: mincore only inspects page tables.
        let r = unsafe { libc::mincore(lo as *mut libc::c_void, page_size(), vec.as_mut_ptr()) };
        assert_eq!(r, -1);
        // put() also accepts dedicated stacks and unmaps them.
        let p = StackPool::new(64 * 1024, 0);
        p.put(alloc_dedicated(1 << 20).unwrap()).unwrap();
        let mut v = vec![alloc_dedicated(1 << 16).unwrap(), p.get().unwrap()];
        p.put_batch(&mut v);
        assert_eq!(p.stats().free_stacks, 1);
    }

    #[test]
    fn coroutine_runs_on_pool_stack() {
        use corosensei::{Coroutine, CoroutineResult};
        fn depth(n: u32, buf: &mut [u8; 512]) -> u32 {
            let mut local = [n as u8; 512];
            std::hint::black_box(&mut local);
            if n == 0 {
                return buf[0] as u32 & std::hint::black_box(0);
            }
            depth(n - 1, &mut local) + 1
        }
        let p = StackPool::new(256 * 1024, 1);
        for _ in 0..2 {
            let s = p.get().unwrap();
            let (lo, hi) = (s.lo(), s.hi());
            let mut co = Coroutine::with_stack(s, move |y: &corosensei::Yielder<(), usize>, ()| {
                let marker = 0u8;
                let sp = &marker as *const u8 as usize;
                y.suspend(sp);
                depth(200, &mut [0; 512]) // ~200 KiB of frames in a 256 KiB stack
            });
            match co.resume(()) {
                CoroutineResult::Yield(sp) => assert!(sp > lo && sp < hi, "{sp:#x} not in [{lo:#x}, {hi:#x})"),
                CoroutineResult::Return(_) => panic!("expected a yield"),
            }
            assert!(matches!(co.resume(()), CoroutineResult::Return(200)));
            let s = co.into_stack();
            assert!(s.check_sp(s.hi() - 1024));
            p.put(s).unwrap();
        }
        assert_eq!(p.stats().total_stacks, 1);
    }
}
