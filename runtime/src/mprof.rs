//! Mutex and block profile recording (Go's `mprof.go` `mutexevent`/`blockevent`).
//!
//! The profiler crate exports what is recorded here; this module only samples and stores.
//!
//! * **Mutex profile** ([`set_mutex_profile_fraction`]`(r)`, 0 = off, the default): when an
//!   unlock of a contended [`Mutex`](crate::sync::Mutex) or [`RwLock`](crate::sync::RwLock)
//!   wakes a waiter, the time **every** waiter has spent blocked since the previous such unlock
//!   is charged to the **unlocker's** stack (Go 1.22's attribution: the profile shows who held
//!   the lock too long, and a holder that kept `n` goroutines out for `t` is charged `n * t`).
//!   About 1 in `r` such events is recorded, with count and delay scaled by `r` at record time
//!   (readers must not rescale).
//! * **Block profile** ([`set_block_profile_rate`]`(ns)`, <= 0 = off, the default): blocking
//!   channel operations, `select!`, `WaitGroup`/`Cond` waits and mutex waits record their
//!   duration with the **blocked** goroutine's stack. As in Go 1.19, an event of `d` ns is
//!   recorded when `d >= rate`; otherwise with probability `d / rate`, and then counted
//!   `rate / d` times (rounded) with a delay of `rate`, which removes the sampling bias.
//!
//! Disabled cost: one relaxed load, only on the slow (blocking) path.
//!
//! Stacks are raw return addresses from a walk (`traceback.rs`) of the current goroutine's (or
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

use crate::clock::nanotime;
use crate::fastrand::fastrand;
pub use crate::traceback::MAX_DEPTH;
use crate::traceback::{capture_stack, on_spare_stack};

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

/// Adds an event to `t`. Run on the M's spare stack (`traceback::on_spare_stack`), like the walk
/// before it: a goroutine deep in its stack may not have the few KiB a growing table takes
/// unoptimized.
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
        Some(nanotime())
    } else {
        None
    }
}

/// End of a block begun with [`block_start`]: records it if the block profile samples it.
#[inline]
pub(crate) fn block_end(t0: Option<u64>) {
    if let Some(t0) = t0 {
        block_event(nanotime().saturating_sub(t0));
    }
}

/// Records a blocking event of `delay` ns (Go's `blockevent` + `blocksampled`), with the stack
/// of the blocked goroutine. `inline(never)`, like [`mutex_event`]: the walk drops exactly this
/// one frame, and every frame above it is kept.
#[inline(never)]
pub(crate) fn block_event(delay: u64) {
    let rate = BLOCK_RATE.load(Ordering::Relaxed);
    let delay = i64::try_from(delay).unwrap_or(i64::MAX);
    if rate <= 0 || (rate > delay && (fastrand() % rate as u64) as i64 > delay) {
        return;
    }
    // A short event (delay < rate) was kept with probability delay/rate: count it rate/delay
    // times and charge it `rate` ns, so totals are unbiased (Go's saveblockevent;
    // Go keeps a fractional count, we round).
    let (count, charged) = if delay < rate { ((rate + delay / 2) / delay.max(1), rate) } else { (1, delay) };
    let mut buf = [0usize; MAX_DEPTH];
    let n = capture_stack(1, &mut buf);
    // SAFETY: `record` never parks (it takes a thread lock, never a goroutine one).
    unsafe { on_spare_stack(|| record(&BLOCK_TABLE, &buf[..n], count.max(1), charged)) };
}

/// Whether waiters should note when they started waiting, for the mutex profile.
#[inline]
pub(crate) fn mutex_profiling() -> bool {
    MUTEX_RATE.load(Ordering::Relaxed) > 0
}

/// Records that the current goroutine's unlock is charged `delay` ns of other goroutines' waiting
/// (Go's `mutexevent`), with the unlocker's stack.
#[inline(never)]
pub(crate) fn mutex_event(delay: u64) {
    let rate = MUTEX_RATE.load(Ordering::Relaxed);
    if rate <= 0 || (rate > 1 && !fastrand().is_multiple_of(rate as u64)) {
        return;
    }
    let delay = i64::try_from(delay).unwrap_or(i64::MAX);
    let mut buf = [0usize; MAX_DEPTH];
    let n = capture_stack(1, &mut buf);
    // SAFETY: as in `block_event`.
    unsafe { on_spare_stack(|| record(&MUTEX_TABLE, &buf[..n], rate, delay.saturating_mul(rate))) };
}

/// Unsampled bytes of the sampled heap objects still in use (see [`heap_inuse_sampled`]).
static HEAP_INUSE_SAMPLED: AtomicI64 = AtomicI64::new(0);

/// The heap in use as the sampling allocator estimates it: the live sampled objects' bytes,
/// unsampled as the heap profile unsamples them (Go's `inuse_space` total). 0 without the
/// profiler's `Allocator` installed. An estimate with the sampling's variance (exact at a rate
/// of 1), counted as soon as a block is freed.
pub fn heap_inuse_sampled() -> u64 {
    HEAP_INUSE_SAMPLED.load(Ordering::Relaxed).max(0) as u64
}

/// The sampling allocator's side of [`heap_inuse_sampled`]: `+bytes` when it samples an
/// allocation, the same `-bytes` when that block is freed.
pub fn add_heap_inuse_sampled(bytes: i64) {
    HEAP_INUSE_SAMPLED.fetch_add(bytes, Ordering::Relaxed);
}
