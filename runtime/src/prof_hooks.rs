//! Mutex and block profile recording (Go's `mprof.go` `mutexevent`/`blockevent`).
//!
//! The profiler crate exports what is recorded here; this module only samples and stores.
//!
//! * **Mutex profile** ([`set_mutex_profile_fraction`]`(r)`, 0 = off, the default): when an
//!   unlock of a contended [`Mutex`](crate::sync::Mutex) or [`RwLock`](crate::sync::RwLock)
//!   wakes a waiter, the time that waiter spent blocked is charged to the **unlocker's** stack
//!   (Go's attribution: the profile shows who held the lock too long). About 1 in `r` such events
//!   is recorded, with count and delay scaled by `r` at record time (readers must not rescale).
//! * **Block profile** ([`set_block_profile_rate`]`(ns)`, <= 0 = off, the default): blocking
//!   channel operations, `select!`, `WaitGroup`/`Cond` waits and mutex waits record their
//!   duration with the **blocked** goroutine's stack. As in Go 1.19, an event of `d` ns is
//!   recorded when `d >= rate`; otherwise with probability `d / rate`, and then counted
//!   `rate / d` times (rounded) with a delay of `rate`, which removes the sampling bias.
//!
//! Disabled cost: one relaxed load, only on the slow (blocking) path.
//!
//! Stacks are raw return addresses from a frame-pointer walk of the current goroutine's (or
//! thread's) stack, leaf first, at most [`MAX_DEPTH`] frames; the profiler symbolizes them later.
//! A stack starts inside the runtime's blocking path (the frames of `Chan::recv`, `Sema::release`
//! and so on, as many as the optimizer left): no fixed number of frames is skipped, because
//! inlining changes that number and skipping too many would drop the user's frame. Go's profiles
//! likewise begin with `runtime.chanrecv1`/`sync.(*Mutex).Unlock`; the profiler hides the leading
//! `gort_runtime` frames when it symbolizes, as `pprof` hides `runtime.*` leaves.
//!
//! # Reading the profiles
//!
//! [`mutex_profile`] and [`block_profile`] return a snapshot of every record so far: cumulative,
//! like Go's (`runtime.MutexProfile`/`runtime.BlockProfile`); a delta profile (`?seconds=N`) is
//! the difference of two snapshots, matched by stack. Changing a rate does not clear anything.
//! Records live in a bounded table per profile keyed by stack ([`MAX_RECORDS`] distinct stacks;
//! events with a new stack beyond that are counted in [`dropped_records`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

/// Deepest stack recorded.
pub const MAX_DEPTH: usize = 64;
/// Distinct stacks kept per profile.
pub const MAX_RECORDS: usize = 4096;

/// Mutex profile fraction `r` (0 = off).
static MUTEX_RATE: AtomicI64 = AtomicI64::new(0);
/// Block profile rate in ns (0 = off).
static BLOCK_RATE: AtomicI64 = AtomicI64::new(0);
/// Events lost because a table was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// A profile: stack -> (count, total delay in ns). Created on first use.
type Table = Mutex<Option<HashMap<Box<[usize]>, (i64, i64)>>>;

static MUTEX_TABLE: Table = Mutex::new(None);
static BLOCK_TABLE: Table = Mutex::new(None);

/// One profile entry: a stack and the events recorded on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    /// Return addresses, leaf first (unsymbolized).
    pub stack: Vec<usize>,
    /// Number of events (mutex profile: already scaled by the fraction).
    pub count: i64,
    /// Total delay in nanoseconds (mutex profile: already scaled by the fraction).
    pub delay_ns: i64,
}

/// Go's `runtime.SetMutexProfileFraction`: records about 1/`rate` of contention events; 0 turns
/// the profile off, a negative `rate` only reads. Returns the previous fraction.
pub fn set_mutex_profile_fraction(rate: i64) -> i64 {
    if rate < 0 {
        return MUTEX_RATE.load(Ordering::Relaxed);
    }
    MUTEX_RATE.swap(rate, Ordering::Relaxed)
}

/// Go's `runtime.SetBlockProfileRate`: records blocking events, on average one per `rate` ns
/// spent blocked; 1 records every event, <= 0 turns the profile off.
pub fn set_block_profile_rate(rate: i64) {
    BLOCK_RATE.store(rate.max(0), Ordering::Relaxed);
}

/// The current block profile rate (0 = off).
pub fn block_profile_rate() -> i64 {
    BLOCK_RATE.load(Ordering::Relaxed)
}

/// The mutex profile so far (scaled records).
pub fn mutex_profile() -> Vec<BlockRecord> {
    read(&MUTEX_TABLE)
}

/// The block profile so far.
pub fn block_profile() -> Vec<BlockRecord> {
    read(&BLOCK_TABLE)
}

/// Events not recorded because a table already held [`MAX_RECORDS`] stacks.
pub fn dropped_records() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn read(t: &Table) -> Vec<BlockRecord> {
    let t = t.lock();
    let Some(m) = t.as_ref() else { return Vec::new() };
    m.iter().map(|(s, &(count, delay_ns))| BlockRecord { stack: s.to_vec(), count, delay_ns }).collect()
}

fn record(t: &Table, stack: &[usize], count: i64, delay: i64) {
    let mut t = t.lock();
    let m = t.get_or_insert_with(HashMap::new);
    if let Some(e) = m.get_mut(stack) {
        e.0 += count;
        e.1 += delay;
    } else if m.len() < MAX_RECORDS {
        m.insert(stack.into(), (count, delay));
    } else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Start of a possibly-profiled block: the time, when the block profile is on.
#[inline]
pub(crate) fn block_start() -> Option<u64> {
    if BLOCK_RATE.load(Ordering::Relaxed) > 0 {
        Some(crate::time::nanotime())
    } else {
        None
    }
}

/// End of a block begun with [`block_start`]: records it if the block profile samples it.
#[inline]
pub(crate) fn block_end(t0: Option<u64>) {
    if let Some(t0) = t0 {
        block_event(crate::time::nanotime().saturating_sub(t0));
    }
}

/// Records a blocking event of `delay` ns (Go's `blockevent` + `blocksampled`), with the stack
/// of the blocked goroutine. `inline(never)`, like [`mutex_event`]: the walk drops exactly this
/// one frame, and every frame above it is kept.
#[inline(never)]
pub(crate) fn block_event(delay: u64) {
    let rate = BLOCK_RATE.load(Ordering::Relaxed);
    let delay = i64::try_from(delay).unwrap_or(i64::MAX);
    if rate <= 0 || (rate > delay && (crate::chan::select::fastrand() % rate as u64) as i64 > delay) {
        return;
    }
    // A short event (delay < rate) was kept with probability delay/rate: count it rate/delay
    // times and charge it `rate` ns, so totals are unbiased (Go's saveblockevent, CL 299991;
    // Go keeps a fractional count, we round).
    let (count, charged) = if delay < rate { ((rate + delay / 2) / delay.max(1), rate) } else { (1, delay) };
    let mut buf = [0usize; MAX_DEPTH];
    let n = capture_stack(1, &mut buf);
    record(&BLOCK_TABLE, &buf[..n], count.max(1), charged);
}

/// Whether waiters should note when they started waiting, for the mutex profile.
#[inline]
pub(crate) fn mutex_profiling() -> bool {
    MUTEX_RATE.load(Ordering::Relaxed) > 0
}

/// Records that the current goroutine's unlock ended a wait of `delay` ns (Go's `mutexevent`),
/// with the unlocker's stack.
#[inline(never)]
pub(crate) fn mutex_event(delay: u64) {
    let rate = MUTEX_RATE.load(Ordering::Relaxed);
    if rate <= 0 || (rate > 1 && !crate::chan::select::fastrand().is_multiple_of(rate as u64)) {
        return;
    }
    let delay = i64::try_from(delay).unwrap_or(i64::MAX);
    let mut buf = [0usize; MAX_DEPTH];
    let n = capture_stack(1, &mut buf);
    record(&MUTEX_TABLE, &buf[..n], rate, delay.saturating_mul(rate));
}

// ---------------------------------------------------------------------------------------------
// The frame-pointer walker (shared with the profiler, which walks parked goroutines with it)
// ---------------------------------------------------------------------------------------------
//
// Every gort binary is built with `-C force-frame-pointers=yes` (`.cargo/config.toml`), so each
// frame starts with `[saved fp][return address]` at its frame pointer. A walk follows that chain
// and trusts nothing it reads:
//
// - a frame pointer must be word-aligned and the two words at it must lie inside the stack's
//   `[lo, hi)` (a goroutine's pooled stack, or the thread's stack): the walk never reads memory
//   it was not told is a live stack;
// - the chain must strictly increase (stacks grow down, so callers sit higher): a loop or a frame
//   built without frame pointers ends the walk instead of wandering;
// - a zero return address ends it (corosensei and the thread entry end their chains so);
// - at most `buf.len()` frames are kept; more frames mark the walk [`Walk::truncated`].
//
// corosensei links a coroutine's first frame to the stack that resumed it; that frame lies
// outside the goroutine's bounds, so a walk stops at the goroutine's own first frame.

/// What a stack walk produced.
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
pub unsafe fn walk_fp(pc: usize, fp: usize, bounds: (usize, usize), buf: &mut [usize]) -> Walk {
    // SAFETY: the caller's contract, passed on.
    unsafe { walk_chain(pc, fp, bounds, 0, buf) }
}

/// [`walk_fp`], dropping the first `skip` return addresses of the chain.
///
/// # Safety
///
/// As for [`walk_fp`].
unsafe fn walk_chain(pc: usize, mut fp: usize, bounds: (usize, usize), mut skip: usize, buf: &mut [usize]) -> Walk {
    const W: usize = std::mem::size_of::<usize>();
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
        if skip > 0 {
            skip -= 1;
        } else {
            if n == buf.len() {
                return Walk { len: n, truncated: true };
            }
            buf[n] = ret;
            n += 1;
        }
        if next <= fp {
            break;
        }
        fp = next;
    }
    Walk { len: n, truncated: false }
}

/// The frame pointer of the calling function's frame.
#[inline(always)]
pub fn frame_pointer() -> usize {
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

/// Walks the current stack by frame pointers into `buf` (return addresses, leaf first) and
/// returns how many were written. The first address is the return address into this function's
/// caller; `skip` more are dropped. The walk stays inside `current_stack_bounds()` and stops at
/// an unaligned, out-of-range or non-increasing frame pointer, so a frame built without frame
/// pointers ends the stack early instead of faulting.
#[inline(never)]
pub fn capture_stack(skip: usize, buf: &mut [usize]) -> usize {
    let bounds = crate::proc::current_stack_bounds();
    // SAFETY: the bounds are the running stack's; every frame from ours upwards is live and does
    // not change while we (its leaf) run.
    unsafe { walk_chain(0, frame_pointer(), bounds, skip, buf) }.len
}
