//! The stack pool: slabs carved into guarded or gap-checked slots, reused LIFO, scavenged when
//! cold (see the module docs of `stack` for the layout and its invariants).

use std::io;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use super::guard::{guard_gap, GuardKind};
use super::vm::{light_guards_supported, map_anon, release_pages, resident_bytes};
use super::{gap_size, round_stack_size, Overflowed, Stack, LEAKED, SLAB_MAX_BYTES, SLOTS_PER_SLAB};

/// Free stacks released per lock hold in `scavenge` (keeps `get` latency bounded).
pub(crate) const SCAVENGE_CHUNK: usize = 64;

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
            // Room in the free list for every stack carved so far and all of this slab's, so that
            // returning stacks never grows it: a goroutine's exit would otherwise pay now and then
            // for reallocating a list of up to one entry per stack, at the moment `malloc` is
            // busiest (a wave of exits frees their closures too).
            let want = g.carved + self.slab_slots;
            let len = g.free.len();
            g.free.reserve(want.saturating_sub(len));
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
    /// checked each with [`check_released`](Self::check_released)). The last one is handed out
    /// first. Dedicated stacks are unmapped. Allocates nothing: the free list has room for every
    /// stack ever carved (see `carve`).
    pub(crate) fn put_batch(&self, stacks: impl Iterator<Item = Stack>) {
        let mut g = self.inner.lock();
        for s in stacks {
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
