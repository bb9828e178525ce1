//! The sampling allocator behind the `heap` and `allocs` profiles (Go's `mprof.go` memory
//! records, `MemProfileRate`).
//!
//! # Design
//!
//! [`Allocator`] wraps any `GlobalAlloc` (by default `System`); the user installs it with
//! `#[global_allocator]`. Every allocation subtracts its size from a per-thread byte budget;
//! when the budget goes negative the allocation is **sampled** and a new budget is drawn from an
//! exponential distribution with mean `MemProfileRate` (default 512 KiB), so sampled bytes form a
//! Poisson process over allocated bytes, exactly Go's `nextSample`. Rate 1 samples every
//! allocation; rate 0 turns sampling off (one relaxed load per allocation remains).
//!
//! A sample walks the allocating stack (the runtime's unwinder, bounds-checked) and adds one object of that size to the
//! record keyed by (stack, size), Go's bucket. The block's address goes into a side table
//! (address -> record), only for sampled blocks, so `dealloc` and `realloc` can move it from
//! in-use to freed. The records, their stacks and the side table live in mappings of their own
//! (the private `offheap` module; Go's `persistentalloc`), never among the user's blocks: a
//! sample costs the user's heap nothing but the sampled block itself. On a goroutine, the walk
//! and the record both run on the M's spare stack (`gort_runtime::traceback::capture` and
//! `on_spare_stack`): unoptimized, the walk needs tens of KiB of stack and the record several,
//! which a goroutine deep in its fixed-size stack may not have left.
//!
//! Deallocation must learn cheaply that a block was *not* sampled: while no sampled block is
//! alive, one relaxed load says so; otherwise a filter of 16 Ki bits indexed by a hash of the
//! address (a bit set while some live sampled block hashes there) says "certainly not" for almost
//! every free; only a hit takes the table lock. A block is entered in the filter before `alloc`
//! returns it, so a later free (ordered after the allocation by whatever handed the pointer over)
//! sees its bit.
//!
//! Every method of [`Allocator`] is a few instructions in front of a tail call to the inner
//! allocator, small enough to inline into `__rust_alloc` and friends: the thread's countdown
//! (and, on a free, the filter) decides *before* the call whether this call is sampled, and only
//! then does an out-of-line path make the call and record around it. The per-call state is one
//! static (`HOT`: the rate, the live count, the filter bits) and one thread-local, reached with
//! fs-relative loads.
//!
//! # Labels
//!
//! A record is keyed by (stack, size, labels): a sample carries the labels of the goroutine that
//! allocated ([`with_labels`](crate::with_labels), Go's `pprof.Do`), so `go tool pprof
//! -tagfocus tenant=a` on the heap profile says who holds the memory (Go's heap samples carry no
//! labels). Only a sampled allocation reads them: the allocator hook already runs on the
//! allocating goroutine, so the sampler takes a reference from its labels slot (a few atomic
//! increments, no lock, no allocation) while the unsampled fast path is unchanged. A plain
//! thread, a goroutine without labels, or an empty set records no labels. A label set's `Arc`
//! is dropped only outside the table lock: its last reference may free a sampled block, and a
//! free under the lock would be skipped (see below).
//!
//! Per-request labels (a request id) must not grow the records without bound. Live samples are
//! bounded by live memory, but records are cumulative (the `allocs` profile, the freed counts).
//! So at most [`MAX_LABELLED_RECORDS`] records carry labels at once; unlabelled records stay
//! bounded by allocation sites as before. A new (stack, size, labels) beyond the cap:
//!
//! 1. reuses an *idle* labelled record, one with no sampled object in use (its request is
//!    over): that record's counts are added to the unlabelled record of its stack and size, so
//!    totals never change, only the attribution of past allocations (counted as `retired`);
//! 2. if none is idle (every labelled record still holds live memory), the sample goes to the
//!    unlabelled record of its stack and size (counted as `folded`).
//!
//! [`label_stats`] reports both, and the profiles say so in a comment (`go tool pprof
//! -comments`). The `heap` profile's question, who holds memory now, stays answered as long as
//! fewer than the cap's worth of distinct label sets hold sampled memory at once. A delta profile
//! (`?seconds=N`) matches samples by stack and labels; a record retired within the window shows
//! as a negative labelled `alloc_*` value balanced by the unlabelled one.
//!
//! The sampled live bytes, unsampled as the heap profile unsamples them, are kept in the runtime
//! for the metrics (`gort_runtime::mprof::heap_inuse_sampled`): each sample adds its scaled size
//! (at the rate it was sampled with) and its free subtracts the same amount.
//!
//! Readers get Go's four values per record with Go's unsampling (`scale = 1 / (1 -
//! exp(-avg/rate))`, `avg = bytes/objects`); a 24 MiB object is always sampled and reports
//! exactly 24 MiB. Unlike Go, frees count at once (there is no GC cycle to wait for).
//! `realloc` counts as a free of the old block and an allocation of the new size (Go's
//! `append` allocates a new array too).
//!
//! # Never recursing, never deadlocking
//!
//! - A thread-local flag (`NoSample`) is set while the sampler or the profiler itself runs:
//!   allocations under it are never sampled. Everything a profile builds is allocated under the
//!   flag, so it is never a sampled block (the table itself does not use the global allocator).
//!   Frees skip the table only while their thread holds its lock (a second flag), so no free
//!   made under the lock can re-enter it, yet a sampled block freed while the profiler works
//!   still counts as freed.
//!   Profile building never parks its goroutine while the flag is set (it uses thread locks,
//!   never gort ones), so the flag cannot leak to another goroutine on the same thread.
//! - The table lock is a spin lock held for a few hash-map operations. A panic while holding it
//!   releases it on unwind. `fork` takes it in `pthread_atfork`'s prepare handler and releases
//!   it in both parent and child, so a child never inherits it locked.
//! - The rate is read from `GORT_MEMPROFILERATE` with `libc::getenv` (no lock, no allocation
//!   through us) on the first sampled-path allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::labels::LabelSet;
use crate::offheap::Pages;
use crate::walk::{walk_current, MAX_DEPTH};

/// At most this many records carry labels at once (module docs, "Labels").
pub const MAX_LABELLED_RECORDS: usize = 4096;

/// Go's default `MemProfileRate`: one sample per 512 KiB allocated, on average.
pub const DEFAULT_MEM_PROFILE_RATE: usize = 512 * 1024;

/// Sentinel: the rate has not been read from the environment yet.
const UNINIT: usize = usize::MAX;

/// Everything the allocator's fast paths read, in one static: code inlined into the user's crate
/// reaches another crate's static through its GOT entry, so one static is one address to load.
struct Hot {
    /// `MemProfileRate` (`UNINIT` until read).
    rate: AtomicUsize,
    /// Sampled blocks alive right now (0 lets a free skip even the filter).
    live: AtomicUsize,
    /// The filter's bits, 64 slots a word (see [`filter_add`]).
    filter: [AtomicU64; FILTER_WORDS],
}

static HOT: Hot = Hot {
    rate: AtomicUsize::new(UNINIT),
    live: AtomicUsize::new(0),
    filter: [const { AtomicU64::new(0) }; FILTER_WORDS],
};

/// A sampling allocator wrapping `A`. Install it with
/// `#[global_allocator] static A: gort::profiler::Allocator = gort::profiler::Allocator::system();`
/// to get the `heap` and `allocs` profiles.
#[derive(Debug, Default)]
pub struct Allocator<A: GlobalAlloc = System> {
    inner: A,
}

impl<A: GlobalAlloc> Allocator<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Allocator { inner }
    }
}

impl Allocator<System> {
    /// Wraps the system allocator.
    pub const fn system() -> Self {
        Allocator { inner: System }
    }
}

// SAFETY: every method forwards to the inner allocator with the caller's arguments unchanged and
// returns its result (directly, or through the out-of-line `*_sampled` paths, which do the same);
// the bookkeeping around it never touches the block's memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Allocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if due(layout.size()) {
            // SAFETY: the caller's contract for `alloc` is passed on unchanged.
            return unsafe { self.alloc_sampled(layout, false) };
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { self.inner.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if due(layout.size()) {
            // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
            return unsafe { self.alloc_sampled(layout, true) };
        }
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if maybe_sampled(ptr) {
            // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
            return unsafe { self.dealloc_sampled(ptr, layout) };
        }
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The filter first: a hit goes out of line before the countdown is touched.
        if maybe_sampled(ptr) {
            // SAFETY: the caller's contract for `realloc` is passed on unchanged.
            return unsafe { self.realloc_sampled(ptr, layout, new_size, true) };
        }
        if due(new_size) {
            // SAFETY: the caller's contract for `realloc` is passed on unchanged.
            return unsafe { self.realloc_sampled(ptr, layout, new_size, false) };
        }
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}

impl<A: GlobalAlloc> Allocator<A> {
    /// `alloc` (or `alloc_zeroed`) of an allocation the countdown made due.
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::alloc`'s contract.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_sampled(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(layout)
            } else {
                self.inner.alloc(layout)
            }
        };
        if !p.is_null() {
            sample_slow(p, layout.size());
        }
        p
    }

    /// `dealloc` of a block the filter could not rule out as sampled.
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::dealloc`'s contract.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_sampled(&self, ptr: *mut u8, layout: Layout) {
        // The record goes before the memory: once freed, the address may be handed out again.
        free_slow(ptr as usize);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    /// `realloc` of a block the filter could not rule out as sampled (`maybe_sampled`, the
    /// countdown not yet charged), or else to a size the countdown made due.
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::realloc`'s contract.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_sampled(&self, ptr: *mut u8, layout: Layout, new_size: usize, maybe_sampled: bool) -> *mut u8 {
        let due = if maybe_sampled {
            free_slow(ptr as usize);
            due(new_size)
        } else {
            true
        };
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        // On failure the old block lives on but stays counted as freed (callers abort then).
        if due && !p.is_null() {
            sample_slow(p, new_size);
        }
        p
    }
}

/// Per-thread sampling state. Const-initialised and without a destructor, so reading it never
/// allocates and works during thread teardown.
struct ThreadState {
    /// Bytes left before the next sample (negative: sample now).
    next: Cell<i64>,
    /// The rate `next` was drawn with (a different global rate forces a redraw).
    rate: Cell<usize>,
    /// xorshift state for the exponential draws (0: not seeded).
    rng: Cell<u64>,
    /// Set while the sampler or the profiler runs on this thread.
    busy: Cell<bool>,
    /// Set while this thread holds the table lock.
    in_table: Cell<bool>,
}

thread_local! {
    static TS: ThreadState = const {
        ThreadState {
            next: Cell::new(0),
            rate: Cell::new(0),
            rng: Cell::new(0),
            busy: Cell::new(false),
            in_table: Cell::new(false),
        }
    };
}

/// Sets the thread-local "profiler at work" flag for its lifetime: allocations are not sampled
/// and frees skip the side table. Must not be held across a goroutine park.
pub(crate) struct NoSample(bool);

// Both ends reach `TS` in a frame of their own: a caller that makes a profile, sleeps and makes
// another (a `seconds=` delta) must not have `TS`'s address computed before the sleep reused
// after it, on whatever thread its goroutine then runs (the contract of `gort_runtime::spawn`).
impl NoSample {
    #[inline(never)]
    pub(crate) fn enter() -> NoSample {
        NoSample(TS.with(|t| t.busy.replace(true)))
    }
}

impl Drop for NoSample {
    #[inline(never)]
    fn drop(&mut self) {
        TS.with(|t| t.busy.set(self.0));
    }
}

/// Counts `size` bytes against this thread's budget: true if the allocation must go to
/// [`sample_slow`] (the budget ran out, the rate changed, or it is not read yet). The whole fast
/// path: one global load, and with sampling on, one thread-local decrement and compare.
#[inline(always)]
fn due(size: usize) -> bool {
    let rate = HOT.rate.load(Ordering::Relaxed);
    if rate == 0 {
        return false;
    }
    TS.with(|t| {
        let n = t.next.get().wrapping_sub(size as i64);
        t.next.set(n);
        (n < 0) | (t.rate.get() != rate)
    })
}

/// An allocation [`due`] picked, at `p` (non-null).
#[cold]
#[inline(never)]
fn sample_slow(p: *mut u8, size: usize) {
    TS.with(|t| {
        if t.busy.get() {
            return;
        }
        let _g = NoSample::enter();
        let mut rate = HOT.rate.load(Ordering::Relaxed);
        if rate == UNINIT {
            rate = init_rate();
        }
        if rate == 0 {
            return;
        }
        if t.rate.get() != rate {
            t.rate.set(rate);
            let n = draw(t, rate) - size as i64;
            t.next.set(n);
            if n >= 0 {
                return;
            }
        }
        t.next.set(draw(t, rate));
        record_alloc(p as usize, size, rate);
    })
}

/// An exponential draw with mean `rate` (0 for rate 1: every allocation is sampled).
fn draw(t: &ThreadState, rate: usize) -> i64 {
    if rate <= 1 {
        return 0;
    }
    let mut x = t.rng.get();
    if x == 0 {
        x = (t as *const ThreadState as u64) ^ crate::now_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        x |= 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t.rng.set(x);
    let u = ((x >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64); // (0, 1)
    let d = -u.ln() * rate as f64;
    d.min(i64::MAX as f64 / 2.0) as i64
}

fn init_rate() -> usize {
    // SAFETY: getenv reads the environment without allocating; the name is NUL-terminated.
    let v = unsafe { libc::getenv(c"GORT_MEMPROFILERATE".as_ptr()) };
    let mut rate = DEFAULT_MEM_PROFILE_RATE;
    if !v.is_null() {
        // SAFETY: getenv returns a NUL-terminated string or null.
        let s = unsafe { std::ffi::CStr::from_ptr(v) };
        match s.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()) {
            Some(r) => rate = r,
            None => warn_bad_rate(s.to_bytes()),
        }
    }
    install_atfork();
    match HOT.rate.compare_exchange(UNINIT, rate, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => rate,
        Err(set) => set,
    }
}

/// Says on stderr that `GORT_MEMPROFILERATE` did not parse and the default is used. Runs inside
/// the allocator, so it must not allocate: the pieces go straight to `write(2)`. (The runtime's
/// own variables stop the program instead; the allocator cannot, it may run before `main`.)
fn warn_bad_rate(value: &[u8]) {
    let parts: [&[u8]; 3] = [
        b"gort: ignoring GORT_MEMPROFILERATE=\"",
        value,
        b"\": expected a byte count (an integer >= 0; 1 = every allocation, 0 = off); using the default 524288\n",
    ];
    for p in parts {
        // SAFETY: writes `p.len()` initialised bytes from `p` to fd 2; a failed or short write
        // only loses the warning.
        let _ = unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}

/// Go's `runtime.MemProfileRate = rate`: the mean bytes between samples; 1 samples every
/// allocation, 0 turns sampling off. Takes effect on each thread's next allocation.
pub fn set_mem_profile_rate(rate: usize) {
    let rate = if rate == UNINIT { UNINIT - 1 } else { rate };
    install_atfork();
    HOT.rate.store(rate, Ordering::Relaxed);
}

/// The current `MemProfileRate` (reading `GORT_MEMPROFILERATE` if not read yet).
pub fn mem_profile_rate() -> usize {
    match HOT.rate.load(Ordering::Relaxed) {
        UNINIT => {
            let _g = NoSample::enter();
            init_rate()
        }
        r => r,
    }
}

// ---------------------------------------------------------------------------------------------
// The records and the side table.
// ---------------------------------------------------------------------------------------------

/// One (stack, size) record, raw (unscaled) counts.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Return addresses, leaf first.
    pub stack: Box<[usize]>,
    /// Object size in bytes.
    pub size: usize,
    /// Sampled allocations.
    pub allocs: i64,
    /// Sampled frees.
    pub frees: i64,
    /// The allocating goroutine's labels (`None`: none, or folded by the label cap).
    pub labels: Option<Arc<LabelSet>>,
}

impl Record {
    /// Sampled objects still in use.
    pub fn inuse(&self) -> i64 {
        self.allocs - self.frees
    }
}

/// (hash of stack, size, hash of labels or 0): the index's key. Records with equal keys (almost
/// never more than one) chain through [`Slot::next`].
type Key = (u64, usize, u64);

/// No slot (the end of a chain or of the idle queue).
const NONE: u32 = u32::MAX;

/// A record as the table keeps it: its stack is a range of [`Table::stacks`].
struct Slot {
    at: u32,
    len: u32,
    size: usize,
    allocs: i64,
    frees: i64,
    labels: Option<Arc<LabelSet>>,
    /// The next slot with the same key.
    next: u32,
    /// The next slot in the idle queue, if `queued`.
    idle_next: u32,
    queued: bool,
}

impl Slot {
    fn inuse(&self) -> i64 {
        self.allocs - self.frees
    }
}

type OffHeapMap<K, V> = hashbrown::HashMap<K, V, Fx, Pages>;
type OffHeapVec<T> = allocator_api2::vec::Vec<T, Pages>;

/// Everything the heap profile keeps, in off-heap memory ([`crate::offheap`]): a user's block
/// never sits beside a record of ours. The only global-allocator blocks a record refers to are
/// its labels, which the goroutine's label set already holds.
struct Table {
    index: OffHeapMap<Key, u32>,
    slots: OffHeapVec<Slot>,
    /// Every slot's stack, end to end.
    stacks: OffHeapVec<usize>,
    /// Words of `stacks` no slot uses any more (retired records'), reclaimed by `compact_stacks`.
    wasted: usize,
    /// Sampled live blocks: address -> (slot, unsampled bytes it added to the in-use total).
    live: OffHeapMap<usize, (u32, i64)>,
    /// Records with labels now.
    labelled: usize,
    /// Labelled records that became idle (nothing in use), oldest first, for reuse at the cap,
    /// through `Slot::idle_next`. An entry may be stale (the record got live objects again, or
    /// was reused): checked on use.
    idle_head: u32,
    idle_tail: u32,
    /// Sampled allocations recorded without their labels (the cap was reached, nothing idle).
    folded: u64,
    /// Idle labelled records merged into their unlabelled record to make room.
    retired: u64,
    /// Sampled allocations not recorded: the table could not map memory to grow.
    dropped: u64,
}

impl Table {
    fn new() -> Table {
        Table {
            index: OffHeapMap::with_hasher_in(Fx::default(), Pages),
            slots: OffHeapVec::new_in(Pages),
            stacks: OffHeapVec::new_in(Pages),
            wasted: 0,
            live: OffHeapMap::with_hasher_in(Fx::default(), Pages),
            labelled: 0,
            idle_head: NONE,
            idle_tail: NONE,
            folded: 0,
            retired: 0,
            dropped: 0,
        }
    }

    fn stack(&self, s: &Slot) -> &[usize] {
        &self.stacks[s.at as usize..][..s.len as usize]
    }

    /// The record for `stack`, `size`, `labels` (`key` from them), if there is one.
    fn lookup(&self, key: &Key, stack: &[usize], labels: Option<&Arc<LabelSet>>) -> Option<u32> {
        let mut i = *self.index.get(key)?;
        while i != NONE {
            let s = &self.slots[i as usize];
            if s.labels.as_deref() == labels.map(|l| &**l) && self.stack(s) == stack {
                return Some(i);
            }
            i = s.next;
        }
        None
    }

    /// Appends `stack` to the stacks, first compacting them if half is waste; `None` if they
    /// cannot grow.
    fn push_stack(&mut self, stack: &[usize]) -> Option<u32> {
        if self.wasted > 4096 && self.wasted > self.stacks.len() / 2 {
            self.compact_stacks();
        }
        self.stacks.try_reserve(stack.len()).ok()?;
        let at = u32::try_from(self.stacks.len()).ok()?;
        self.stacks.extend_from_slice(stack);
        Some(at)
    }

    /// Copies the stacks still in use into a new buffer (left as they are if it cannot be
    /// mapped).
    fn compact_stacks(&mut self) {
        // `wasted` counts every word no slot uses, so this is all the copies take: none of them
        // grows the buffer, which could only abort.
        let mut fresh = OffHeapVec::new_in(Pages);
        if fresh.try_reserve_exact(self.stacks.len() - self.wasted).is_err() {
            return;
        }
        for s in self.slots.iter_mut() {
            let at = fresh.len() as u32;
            fresh.extend_from_slice(&self.stacks[s.at as usize..][..s.len as usize]);
            s.at = at;
        }
        debug_assert_eq!(fresh.len(), self.stacks.len() - self.wasted);
        self.stacks = fresh;
        self.wasted = 0;
    }

    /// A new slot for `stack`, `size`, `labels` under `key`; `None` if the table cannot grow.
    fn new_slot(&mut self, key: Key, stack: &[usize], size: usize, labels: Option<Arc<LabelSet>>) -> Option<u32> {
        self.slots.try_reserve(1).ok()?;
        self.index.try_reserve(1).ok()?;
        let at = self.push_stack(stack)?;
        let i = u32::try_from(self.slots.len()).ok().filter(|&i| i != NONE)?;
        self.slots.push(Slot {
            at,
            len: stack.len() as u32,
            size,
            allocs: 0,
            frees: 0,
            labels,
            next: NONE,
            idle_next: NONE,
            queued: false,
        });
        self.link(key, i);
        Some(i)
    }

    /// Puts slot `i` at the head of `key`'s chain (the index has room: `try_reserve`d).
    fn link(&mut self, key: Key, i: u32) {
        self.slots[i as usize].next = self.index.insert(key, i).unwrap_or(NONE);
    }

    /// Takes slot `i` out of `key`'s chain.
    fn unlink(&mut self, key: Key, i: u32) {
        let next = self.slots[i as usize].next;
        match self.index.get(&key).copied() {
            Some(h) if h == i => {
                if next == NONE {
                    self.index.remove(&key);
                } else {
                    self.index.insert(key, next);
                }
            }
            Some(mut p) => {
                while p != NONE {
                    let s = &mut self.slots[p as usize];
                    if s.next == i {
                        s.next = next;
                        break;
                    }
                    p = s.next;
                }
            }
            None => {}
        }
    }

    /// The record a sample of `stack` (hash `h`), `size` made under `labels` counts in: created if
    /// missing, within the label cap (module docs). Also returns a retired record's labels, which
    /// the caller drops once the lock is released (even when the record is `None`: the table
    /// could not grow, and the sample is dropped).
    fn record_for(
        &mut self,
        stack: &[usize],
        h: u64,
        size: usize,
        labels: Option<&Arc<LabelSet>>,
    ) -> (Option<u32>, Option<Arc<LabelSet>>) {
        let key = (h, size, labels.map_or(0, |l| label_hash(l)));
        if let Some(i) = self.lookup(&key, stack, labels) {
            return (Some(i), None);
        }
        let Some(l) = labels else {
            return (self.new_slot(key, stack, size, None), None);
        };
        if self.labelled < MAX_LABELLED_RECORDS {
            let i = self.new_slot(key, stack, size, Some(l.clone()));
            self.labelled += usize::from(i.is_some());
            return (i, None);
        }
        let Some((i, old)) = self.retire_idle() else {
            self.folded += 1;
            return self.record_for(stack, h, size, None);
        };
        // The index's room first: a stack pushed for a slot that then could not be linked would
        // be waste that `wasted` does not count.
        if let Some(at) = self.index.try_reserve(1).ok().and_then(|()| self.push_stack(stack)) {
            let s = &mut self.slots[i as usize];
            (s.at, s.len, s.size, s.labels) = (at, stack.len() as u32, size, Some(l.clone()));
            self.link(key, i);
            self.labelled += 1;
            return (Some(i), Some(old));
        }
        // No memory for it: the slot stays empty for good, and the sample goes unlabelled.
        self.folded += 1;
        (self.record_for(stack, h, size, None).0, Some(old))
    }

    /// Takes the oldest idle labelled record out of the index, adding its counts to the
    /// unlabelled record of its stack and size (so totals stay), and returns its slot, now empty,
    /// and its labels. `None` if every labelled record holds live samples.
    fn retire_idle(&mut self) -> Option<(u32, Arc<LabelSet>)> {
        while let Some(i) = self.pop_idle() {
            let s = &self.slots[i as usize];
            if s.labels.is_none() || s.inuse() != 0 {
                continue; // stale: in use again since it went idle
            }
            let mut buf = [0usize; MAX_DEPTH];
            let n = s.len as usize;
            buf[..n].copy_from_slice(self.stack(s));
            let stack = &buf[..n];
            let (size, allocs, frees) = (s.size, s.allocs, s.frees);
            let h = stack_hash(stack);
            let labels = self.slots[i as usize].labels.take().expect("checked above");
            self.unlink((h, size, label_hash(&labels)), i);
            let s = &mut self.slots[i as usize];
            (s.len, s.allocs, s.frees, s.next) = (0, 0, 0, NONE);
            self.wasted += n;
            self.labelled -= 1;
            self.retired += 1;
            match self.record_for(stack, h, size, None).0 {
                Some(u) => {
                    self.slots[u as usize].allocs += allocs;
                    self.slots[u as usize].frees += frees;
                }
                None => self.dropped += allocs as u64,
            }
            return Some((i, labels));
        }
        None
    }

    fn pop_idle(&mut self) -> Option<u32> {
        let i = self.idle_head;
        if i == NONE {
            return None;
        }
        let s = &mut self.slots[i as usize];
        s.queued = false;
        self.idle_head = s.idle_next;
        if self.idle_head == NONE {
            self.idle_tail = NONE;
        }
        Some(i)
    }

    fn stats(&self) -> LabelStats {
        LabelStats { labelled_records: self.labelled, folded: self.folded, retired: self.retired }
    }

    /// Notes that labelled record `i` has nothing in use now: a candidate for reuse at the cap.
    fn went_idle(&mut self, i: u32) {
        let s = &mut self.slots[i as usize];
        if s.labels.is_none() || s.queued {
            return;
        }
        s.queued = true;
        s.idle_next = NONE;
        match self.idle_tail {
            NONE => self.idle_head = i,
            t => self.slots[t as usize].idle_next = i,
        }
        self.idle_tail = i;
    }

    /// The records, copied out (under `NoSample`: the copies are the caller's).
    fn snapshot(&self) -> Vec<Record> {
        let rec = |s: &Slot| Record {
            stack: self.stack(s).into(),
            size: s.size,
            allocs: s.allocs,
            frees: s.frees,
            labels: s.labels.clone(),
        };
        // A slot with no allocation is one retired and not yet reused.
        self.slots.iter().filter(|s| s.allocs > 0).map(rec).collect()
    }
}

fn label_hash(l: &LabelSet) -> u64 {
    use std::hash::Hasher;
    let mut h = FxHasher::default();
    for (k, v) in &l.0 {
        h.write(k.as_bytes());
        h.write_u64(u64::MAX);
        h.write(v.as_bytes());
        h.write_u64(u64::MAX);
    }
    h.finish() | 1 // 0 is the unlabelled key
}

/// A multiply-rotate hasher (rustc's FxHash): the keys are addresses and stack hashes from
/// our own process, so SipHash's flood resistance buys nothing and costs the sampler time.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Fx = std::hash::BuildHasherDefault<FxHasher>;

fn stack_hash(stack: &[usize]) -> u64 {
    use std::hash::Hasher;
    let mut h = FxHasher::default();
    for &pc in stack {
        h.write_usize(pc);
    }
    h.write_usize(stack.len());
    h.finish()
}

struct SpinLock {
    locked: AtomicBool,
    table: std::cell::UnsafeCell<Option<Table>>,
}

// SAFETY: `table` is only accessed while `locked` is held (see `lock`).
unsafe impl Sync for SpinLock {}

static TABLE: SpinLock = SpinLock { locked: AtomicBool::new(false), table: std::cell::UnsafeCell::new(None) };

struct TableGuard;

impl SpinLock {
    fn acquire(&self) {
        let mut spins = 0u32;
        // Acquire: pairs with the Release store in `release`, so the previous holder's writes
        // to the table are visible.
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
    fn release(&self) {
        // Release: publishes our table writes to the next Acquire in `acquire`.
        self.locked.store(false, Ordering::Release);
    }
}

/// Marks this thread as holding the table lock, for `free_slow` (a free made while the table
/// itself reallocates must not take the lock again).
struct InTable(bool);

impl InTable {
    fn enter() -> InTable {
        InTable(TS.with(|t| t.in_table.replace(true)))
    }
}

impl Drop for InTable {
    fn drop(&mut self) {
        TS.with(|t| t.in_table.set(self.0));
    }
}

impl Drop for TableGuard {
    fn drop(&mut self) {
        TABLE.release();
    }
}

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    TABLE.acquire();
    let _g = TableGuard;
    let _in = InTable::enter();
    // SAFETY: we hold the lock, so nobody else touches the table until TableGuard drops.
    let t = unsafe { &mut *TABLE.table.get() };
    let t = t.get_or_insert_with(|| {
        let mut t = Table::new();
        // Room for a thousand live samples up front (a failure shows at the first sample).
        let _ = t.live.try_reserve(1024);
        t
    });
    f(t)
}

/// fork() while another thread holds the table lock would leave the child's copy locked.
fn install_atfork() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    extern "C" fn prepare() {
        TABLE.acquire();
    }
    extern "C" fn release() {
        TABLE.release();
    }
    // SAFETY: the handlers are plain functions that only take and release the spin lock.
    unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
}

const FILTER_BITS: u32 = 14;
const FILTER_WORDS: usize = (1 << FILTER_BITS) / 64;

/// The filter: bit h(addr) of `HOT.filter` is set while some sampled block whose address hashes
/// to h is alive; `FILTER_COUNTS[h]` counts them. Frees read only the bits: 16 Ki slots in 2 KiB
/// (32 cache lines), few enough to stay in L1 beside a busy program's own data. The counts and
/// bits change only under the table lock.
static FILTER_COUNTS: [AtomicU32; 1 << FILTER_BITS] = [const { AtomicU32::new(0) }; 1 << FILTER_BITS];

fn filter_add(addr: usize) {
    let h = slot(addr);
    let c = &FILTER_COUNTS[h];
    let n = c.load(Ordering::Relaxed);
    c.store(n + 1, Ordering::Relaxed);
    if n == 0 {
        HOT.filter[h / 64].fetch_or(1 << (h % 64), Ordering::Relaxed);
    }
}

fn filter_remove(addr: usize) {
    let h = slot(addr);
    let c = &FILTER_COUNTS[h];
    let n = c.load(Ordering::Relaxed);
    c.store(n - 1, Ordering::Relaxed);
    if n == 1 {
        HOT.filter[h / 64].fetch_and(!(1 << (h % 64)), Ordering::Relaxed);
    }
}

#[inline(always)]
fn slot(addr: usize) -> usize {
    // Address bits 4..36 (blocks are 16-byte aligned), 32-bit multiplicative hashing: one
    // multiply by an immediate on the free path.
    ((addr >> 4) as u32).wrapping_mul(0x9e37_79b1).wrapping_shr(32 - FILTER_BITS) as usize
}

fn record_alloc(addr: usize, size: usize, rate: usize) {
    let mut buf = [0usize; MAX_DEPTH];
    let w = walk_current(&mut buf);
    let labels = crate::labels::from_slot(gort_runtime::current_labels()).filter(|l| !l.0.is_empty());
    // On the M's spare stack, like the walk (module docs).
    // SAFETY: `record` never parks: it takes only the table's spin lock.
    unsafe { gort_runtime::traceback::on_spare_stack(|| record(addr, size, rate, &buf[..w.len], labels)) }
}

/// Counts a sampled block at `addr` in the record of (`stack`, `size`, `labels`).
fn record(addr: usize, size: usize, rate: usize, stack: &[usize], labels: Option<Arc<LabelSet>>) {
    let stack = &stack[..stack.len().min(MAX_DEPTH)];
    let h = stack_hash(stack);
    let bytes = scale_heap_sample(1, size as i64, rate).1;
    let (recorded, retired) = with_table(|t| {
        if t.live.try_reserve(1).is_err() {
            t.dropped += 1;
            return (false, None);
        }
        let (i, retired) = t.record_for(stack, h, size, labels.as_ref());
        let Some(i) = i else {
            t.dropped += 1;
            return (false, retired);
        };
        t.slots[i as usize].allocs += 1;
        match t.live.insert(addr, (i, bytes)) {
            None => {
                filter_add(addr);
                HOT.live.fetch_add(1, Ordering::Relaxed);
            }
            // The block's free was missed (the table cannot see every free: see `free_slow`);
            // its bytes leave the in-use total with the stale entry.
            Some((_, old)) => gort_runtime::mprof::add_heap_inuse_sampled(-old),
        }
        (true, retired)
    });
    if recorded {
        gort_runtime::mprof::add_heap_inuse_sampled(bytes);
    }
    // Here, not under the lock: the last reference to a label set frees its (maybe sampled)
    // blocks.
    drop((retired, labels));
}

/// Whether the block at `p` may be a sampled one ([`free_slow`] decides): false for almost every
/// free, from one global load while no sampled block is alive, else one filter probe.
#[inline(always)]
fn maybe_sampled(p: *mut u8) -> bool {
    if HOT.live.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let h = slot(p as usize);
    HOT.filter[h / 64].load(Ordering::Relaxed) & (1 << (h % 64)) != 0
}

#[cold]
#[inline(never)]
fn free_slow(addr: usize) {
    // Only the table's own blocks are freed while this thread holds its lock, and those were
    // allocated under `NoSample`, so never sampled. Any other free counts, even one made while the
    // profiler works (`NoSample`): a user's sampled block can be dropped there (the last
    // reference to a goroutine's labels, say), and skipping it would leave it "in use" forever.
    if TS.with(|t| t.in_table.get()) {
        return;
    }
    let _g = NoSample::enter();
    with_table(|t| {
        if let Some((i, bytes)) = t.live.remove(&addr) {
            t.slots[i as usize].frees += 1;
            if t.slots[i as usize].inuse() == 0 {
                t.went_idle(i);
            }
            filter_remove(addr);
            HOT.live.fetch_sub(1, Ordering::Relaxed);
            gort_runtime::mprof::add_heap_inuse_sampled(-bytes);
        }
    });
}

/// A copy of every record (call under [`NoSample`]; drop outside the table lock).
pub(crate) fn records() -> Vec<Record> {
    with_table(|t| t.snapshot())
}

/// The records merged per (stack, size), labels dropped: Go's buckets, for the debug=1 text.
pub(crate) fn site_records() -> Vec<Record> {
    let mut recs = records();
    recs.sort_by(|a, b| (a.size, &a.stack).cmp(&(b.size, &b.stack)));
    recs.dedup_by(|r, keep| {
        let same = r.size == keep.size && r.stack == keep.stack;
        if same {
            keep.allocs += r.allocs;
            keep.frees += r.frees;
        }
        same
    });
    for r in &mut recs {
        r.labels = None;
    }
    recs
}

/// What the label cap has done so far (module docs, "Labels").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelStats {
    /// Records carrying labels now (at most [`MAX_LABELLED_RECORDS`]).
    pub labelled_records: usize,
    /// Sampled allocations recorded without their labels: the cap was reached and every
    /// labelled record still held live samples.
    pub folded: u64,
    /// Idle labelled records merged into their site's unlabelled record to make room.
    pub retired: u64,
}

/// The heap profiles' comments: when the label cap has dropped labels, and when samples were
/// lost because the table could not map memory (none while neither happened).
pub(crate) fn table_comments() -> Vec<String> {
    let (s, dropped) = with_table(|t| (t.stats(), t.dropped));
    let mut c = Vec::new();
    if s.folded + s.retired > 0 {
        c.push(format!(
            "gort: label cap of {MAX_LABELLED_RECORDS} labelled records reached: {} sampled allocations \
             recorded without labels, {} idle labelled records merged into unlabelled ones",
            s.folded, s.retired
        ));
    }
    if dropped > 0 {
        c.push(format!(
            "gort: {dropped} sampled allocations not recorded: the profiler could not map memory for its \
             tables (vm.max_map_count or memory exhausted)"
        ));
    }
    c
}

/// The label cap's counters (module docs, "Labels").
pub fn label_stats() -> LabelStats {
    let _g = NoSample::enter();
    with_table(|t| t.stats())
}

/// Go's `scaleHeapSample`: unsamples `count` objects totalling `size` bytes at `rate`.
pub fn scale_heap_sample(count: i64, size: i64, rate: usize) -> (i64, i64) {
    if count == 0 || size == 0 {
        return (0, 0);
    }
    if rate <= 1 {
        return (count, size);
    }
    let avg = size as f64 / count as f64;
    let scale = 1.0 / (1.0 - (-avg / rate as f64).exp());
    ((count as f64 * scale) as i64, (size as f64 * scale) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_matches_go() {
        // A 24 MiB object at 512 KiB is sampled with probability ~1 and reports itself.
        assert_eq!(scale_heap_sample(1, 24 << 20, 512 << 10), (1, 24 << 20));
        // Small objects are scaled up: 1 sampled 16-byte object stands for ~32768.
        let (c, s) = scale_heap_sample(1, 16, 512 << 10);
        assert!((32_000..33_000).contains(&c), "{c}");
        assert!((s - c * 16).abs() < 16, "{s} vs {c}");
        assert_eq!(scale_heap_sample(3, 30, 1), (3, 30));
        assert_eq!(scale_heap_sample(0, 0, 512), (0, 0));
    }

    /// A sampled block freed while the profiler works on the same thread (`NoSample` set) is
    /// still counted as freed: before, such frees skipped the table and the block stayed live.
    #[test]
    fn frees_under_nosample_are_counted() {
        let addr = 0x7777_7770usize; // a fake block: only its address is used
        record_alloc(addr, 48, 1);
        {
            let _g = NoSample::enter();
            assert!(maybe_sampled(addr as *mut u8));
            free_slow(addr);
        }
        let (live, frees) = with_table(|t| {
            let i = t.slots.iter().position(|r| r.size == 48).expect("the record");
            (t.live.contains_key(&addr), t.slots[i].frees)
        });
        assert!(!live, "the freed block is still in the live table");
        assert!(frees >= 1);
    }

    /// Past the label cap, new label sets reuse idle labelled records (their counts moving to
    /// the unlabelled record) or, with none idle, fold into the unlabelled record; totals stay.
    /// Retired labels' stacks are reclaimed: on a table of its own (not the process's), a stream
    /// of per-request label sets far past the cap, from a few call sites, each record going idle
    /// before the next request, keeps the stack store bounded, and every record keeps its own
    /// stack and stays findable through the index.
    #[test]
    fn retired_stacks_are_compacted_and_records_stay_intact() {
        let _g = NoSample::enter();
        let mut t = Table::new();
        const SITES: usize = 8;
        let stack_of = |i: usize| -> Vec<usize> { (0..32).map(|k| 0x10_0000 + i * 64 + k).collect() };
        let set = |i: usize| Arc::new(LabelSet(vec![("req".into(), i.to_string())]));
        let n = 3 * MAX_LABELLED_RECORDS;
        let mut compacted = false;
        let mut peak = 0;
        let mut live: Vec<(usize, u32)> = Vec::new();
        for i in 0..n {
            let (stack, l) = (stack_of(i % SITES), set(i));
            let (slot, _retired) = t.record_for(&stack, stack_hash(&stack), 64, Some(&l));
            let slot = slot.expect("room");
            t.slots[slot as usize].allocs += 1;
            t.slots[slot as usize].frees += 1;
            t.went_idle(slot);
            live.retain(|&(_, s)| s != slot);
            live.push((i, slot));
            compacted |= t.wasted == 0 && i > MAX_LABELLED_RECORDS;
            peak = peak.max(t.stacks.len());
        }
        assert!(t.retired >= (n - MAX_LABELLED_RECORDS) as u64, "{}", t.retired);
        assert!(compacted, "the stacks were never compacted");
        // The labelled records and one unlabelled record per site, 32 words each, and at most
        // as much again of waste.
        assert!(peak <= 2 * 32 * (MAX_LABELLED_RECORDS + SITES + 1) + 4096, "{peak}");
        for &(i, slot) in &live {
            let (stack, l) = (stack_of(i % SITES), set(i));
            let key = (stack_hash(&stack), 64, label_hash(&l));
            assert_eq!(t.lookup(&key, &stack, Some(&l)), Some(slot), "record {i}");
            assert_eq!(t.stack(&t.slots[slot as usize]), &stack[..]);
        }
        // The retired counts went to the unlabelled records of their sites: every request but
        // the labelled ones still held.
        let unlabelled: i64 = (0..SITES)
            .map(|site| {
                let stack = stack_of(site);
                let u = t.lookup(&(stack_hash(&stack), 64, 0), &stack, None).expect("an unlabelled record");
                let s = &t.slots[u as usize];
                assert_eq!(s.allocs, s.frees);
                s.allocs
            })
            .sum();
        assert_eq!(unlabelled as usize + live.len(), n);
    }

    /// A table that cannot map memory drops the sample (the allocator goes on), keeps no label
    /// count for it, and records normally once mappings succeed again.
    #[test]
    fn a_table_that_cannot_grow_drops_samples() {
        let mut t = Table::new();
        let stack = [0x1234usize, 0x5678, 0x9abc];
        let l = Arc::new(LabelSet(vec![("k".into(), "v".into())]));
        crate::offheap::REFUSE.with(|r| r.set(true));
        let (slot, retired) = t.record_for(&stack, stack_hash(&stack), 8, Some(&l));
        let (plain, _) = t.record_for(&stack, stack_hash(&stack), 8, None);
        let live = t.live.try_reserve(1);
        crate::offheap::REFUSE.with(|r| r.set(false));
        assert!(slot.is_none() && plain.is_none() && retired.is_none() && live.is_err());
        assert_eq!((t.labelled, t.slots.len(), t.stacks.len()), (0, 0, 0));
        assert_eq!(Arc::strong_count(&l), 1, "the table kept a label set it has no record for");
        let (slot, _) = t.record_for(&stack, stack_hash(&stack), 8, Some(&l));
        let slot = slot.expect("recorded once mappings succeed");
        assert_eq!(t.stack(&t.slots[slot as usize]), &stack[..]);
        assert_eq!(t.labelled, 1);
    }

    #[test]
    fn label_cap_bounds_records_and_keeps_totals() {
        const SIZE: usize = 4099; // only this test records this size
        let stack = [0x1111usize, 0x2222];
        let set = |i: usize| Some(Arc::new(LabelSet(vec![("req".into(), i.to_string())])));
        let addr = |i: usize| 0x5_0000_0000usize + i * 16;
        let site = || {
            let _g = NoSample::enter();
            let recs: Vec<Record> = records().into_iter().filter(|r| r.size == SIZE).collect();
            let labelled = recs.iter().filter(|r| r.labels.is_some()).count();
            let allocs: i64 = recs.iter().map(|r| r.allocs).sum();
            let inuse: i64 = recs.iter().map(|r| r.inuse()).sum();
            (labelled, allocs, inuse)
        };
        let n = MAX_LABELLED_RECORDS + 10;
        let before = label_stats();
        for i in 0..n {
            record(addr(i), SIZE, 1, &stack, set(i));
        }
        let full = label_stats();
        assert!(full.labelled_records <= MAX_LABELLED_RECORDS, "{full:?}");
        assert!(full.folded >= before.folded + 10, "{before:?} -> {full:?}");
        assert_eq!(site().1, n as i64, "every allocation is counted");
        for i in 0..n {
            free_slow(addr(i));
        }
        assert_eq!(site().2, 0);
        // Every labelled record is idle now: new label sets take their places.
        for i in 0..100 {
            record(addr(n + i), SIZE, 1, &stack, set(n + i));
        }
        let after = label_stats();
        assert!(after.retired >= full.retired + 100, "{full:?} -> {after:?}");
        assert!(after.labelled_records <= MAX_LABELLED_RECORDS, "{after:?}");
        assert_eq!(after.folded, full.folded, "idle records were reused, nothing folded");
        let (labelled, allocs, inuse) = site();
        assert_eq!((allocs, inuse), (n as i64 + 100, 100), "totals survive retiring");
        assert!(labelled >= 100, "{labelled}");
        // The same label set finds its record again.
        record(addr(n + 200), SIZE, 1, &stack, set(n + 99));
        assert_eq!(site().0, labelled);
        for i in (n..n + 100).chain([n + 200]) {
            free_slow(addr(i));
        }
        assert!(table_comments().iter().any(|c| c.contains("label cap")));
    }

    /// A filter bit stays set while any live block hashing to it remains, and clears with the last.
    #[test]
    fn filter_bit_follows_the_last_block_of_its_slot() {
        let bit = |h: usize| HOT.filter[h / 64].load(Ordering::Relaxed) & (1 << (h % 64)) != 0;
        // Under the table lock: no other test changes the filter meanwhile.
        with_table(|_| {
            let a = (0x6_0000_0000usize..).step_by(16).find(|&a| FILTER_COUNTS[slot(a)].load(Ordering::Relaxed) == 0);
            let a = a.expect("a free slot");
            let h = slot(a);
            let b = (a + 16..).step_by(16).find(|&b| slot(b) == h).expect("a colliding address");
            assert!(!bit(h));
            filter_add(a);
            filter_add(b);
            filter_remove(a);
            assert!(bit(h), "b is still alive in the slot");
            filter_remove(b);
            assert!(!bit(h));
        });
    }

    #[test]
    fn draws_have_the_right_mean() {
        TS.with(|t| {
            let n = 20_000;
            let sum: i64 = (0..n).map(|_| draw(t, 4096)).sum();
            let mean = sum as f64 / n as f64;
            assert!((3900.0..4300.0).contains(&mean), "{mean}");
        });
    }
}
