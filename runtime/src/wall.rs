//! Wall-clock accounting: for a window, every goroutine's time split by state (running,
//! runnable, in `blocking`, or waiting for a reason) and charged to where it stood, measured
//! from the scheduler's own transitions rather than sampled. The profiler turns it into the
//! wall-clock profile (`/debug/pprof/wall`).
//!
//! # Accounting
//!
//! While a window is open the scheduler takes a timestamp at every transition (`schedstats`):
//! when a goroutine switches out, when it is readied, when it starts running, and when it
//! enters and leaves `blocking`. Each goroutine carries a mark (`G::wall_mark`): the tick up to
//! which its time has been charged. A transition at `t` swaps the mark to `t` and charges the
//! interval from the old mark, clipped to the window, to the state that interval was spent in:
//!
//! - switching out charges *running*, with the goroutine's labels (the profiler spreads running
//!   time over the CPU samples of the window);
//! - starting to run charges *waiting* (with the wait reason) up to the ready time and
//!   *runnable* after it, to the park-site stack, walked just before the goroutine resumes,
//!   while its stack is still frozen ([`park_stack_of`](crate::parksite), cached per site);
//! - leaving `blocking` charges the call's time as *syscall*, to the stack where it entered;
//! - changing labels charges the running time so far to the labels it ran under.
//!
//! A mark older than the window means no transition happened since the window opened, so the
//! goroutine spent the window's start in the state it is leaving. Closing the window stamps its
//! end, then visits every goroutine and charges the interval still open (parked through the
//! whole window: the whole window) with a `fetch_max` of the mark to the end: a transition
//! racing with the visit swaps the mark too, so each interval is charged once, by one of them.
//!
//! Charges go to one of [`SHARDS`] tables (by P), each behind its own lock.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clock::{ticks, ticks_to_ns};
use crate::g::{for_each_g, labels_from_ref, labels_into_ref, GRef, Labels, WaitReason, G};
use crate::parksite::{park_stack, park_stack_of, ParkStack, SiteRef};
use crate::schedstats::{epoch, set_timing, TIMING, TIMING_WALL};
use crate::traceback::capture;
use crate::unwind::MAX_DEPTH;

/// Where a goroutine's time went.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum WallState {
    /// Running on a thread (its own code or the runtime's).
    Running,
    /// Ready to run, waiting for a P.
    Runnable,
    /// Inside `blocking` (a system call or other thread-blocking code).
    Syscall,
    /// Parked, for this reason.
    Waiting(WaitReason),
}

impl WallState {
    /// The name profiles use: `running`, `runnable`, `syscall`, or the wait reason as goroutine
    /// dumps print it (`chan receive`, `IO wait`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WallState::Running => "running",
            WallState::Runnable => "runnable",
            WallState::Syscall => "syscall",
            WallState::Waiting(WaitReason::Zero) => "waiting",
            WallState::Waiting(r) => r.as_str(),
        }
    }
}

impl fmt::Display for WallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Time charged to one (stack, state, labels).
#[derive(Clone)]
pub struct WallRecord {
    /// Where: the park-site stack (leaf first) for waiting, runnable and syscall time; empty for
    /// running time (the profiler spreads it over CPU samples) and for goroutines that had not
    /// started yet.
    pub stack: ParkStack,
    /// In which state.
    pub state: WallState,
    /// The goroutine's labels.
    pub labels: Option<Labels>,
    /// Nanoseconds.
    pub ns: u64,
}

/// A closed window.
pub struct WallProfile {
    /// Everything charged, one record per (stack, state, labels).
    pub records: Vec<WallRecord>,
    /// The window's length in nanoseconds.
    pub window_ns: u64,
}

/// Why a window could not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WallError {
    /// Another window is open (one at a time, as for CPU profiles).
    InUse,
}

impl fmt::Display for WallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WallError::InUse => f.write_str("wall profiling already in use"),
        }
    }
}

impl std::error::Error for WallError {}

/// Charge tables.
pub const SHARDS: usize = 16;
/// Most records per table; further new (stack, state, labels) are charged to an empty stack.
const MAX_RECORDS: usize = 1 << 16;

const ST_RUNNING: u8 = 0;
const ST_RUNNABLE: u8 = 1;
const ST_SYSCALL: u8 = 2;
const ST_WAIT: u8 = 3;

/// (stack identity, labels slot reference, state).
type Key = (usize, usize, u8);

struct Entry {
    ticks: u64,
    stack: Option<ParkStack>,
    /// A reference to the goroutine's labels slot contents (null if none), owned by the entry so
    /// that its address, part of the key, cannot be reused by other labels meanwhile.
    labels: *const Labels,
}

// SAFETY: `labels` is an owned reference to an `Arc<Labels>` (Send + Sync contents), released
// only by whoever drains the table.
unsafe impl Send for Entry {}

type Table = HashMap<Key, Entry, rustc_hash::FxBuildHasher>;

static TABLES: [Mutex<Option<Table>>; SHARDS] = [const { Mutex::new(None) }; SHARDS];
/// Window start and end (ticks); the end is `u64::MAX` while open.
static W0: AtomicU64 = AtomicU64::new(0);
static W1: AtomicU64 = AtomicU64::new(u64::MAX);
static OPEN: AtomicBool = AtomicBool::new(false);

/// Whether a window is collecting.
#[inline(always)]
pub(crate) fn on() -> bool {
    TIMING.load(Ordering::Relaxed) & TIMING_WALL != 0
}

/// The part of `[from, to)` inside the window, in ticks.
#[inline]
fn clip(from: u64, to: u64) -> u64 {
    to.min(W1.load(Ordering::Relaxed)).saturating_sub(from.max(W0.load(Ordering::Relaxed)))
}

/// Charges each `(stack, state, ticks)` of `parts` (ticks already clipped; 0: nothing), under
/// one lock. `labels` is the goroutine's labels slot pointer (not a reference of ours).
///
/// # Safety
///
/// The labels slot `labels` was read from cannot change during the call (the caller is the
/// goroutine, or holds it switched out): an entry takes its own reference from it.
unsafe fn charge_parts(shard: usize, labels: *const Labels, parts: &[(Option<&SiteRef>, u8, u64)]) {
    if parts.iter().all(|p| p.2 == 0) {
        return;
    }
    let mut t = TABLES[shard % SHARDS].lock();
    let t = t.get_or_insert_with(HashMap::default);
    for &(stack, st, n) in parts {
        if n == 0 {
            continue;
        }
        let mut key = (stack.map_or(0, |s| s.id()), labels as usize, st);
        if t.len() >= MAX_RECORDS && !t.contains_key(&key) {
            key = (0, 0, st);
        }
        let e = t.entry(key).or_insert_with(|| Entry {
            ticks: 0,
            stack: if key.0 == 0 { None } else { stack.map(|s| s.stack().clone()) },
            labels: if key.1 == 0 {
                std::ptr::null()
            } else {
                // SAFETY: the slot holds `labels` and cannot change during the call (contract),
                // so it still owns a reference and a new one can be taken.
                unsafe { retain_labels(labels) }
            },
        });
        e.ticks += n;
    }
}

/// Charges `[from, to)`, clipped to the window, to `state`.
///
/// # Safety
///
/// As for [`charge_parts`].
unsafe fn charge(shard: usize, stack: Option<&SiteRef>, labels: *const Labels, state: u8, from: u64, to: u64) {
    // SAFETY: the caller's contract.
    unsafe { charge_parts(shard, labels, &[(stack, state, clip(from, to))]) }
}

/// Takes one more reference to a slot's labels.
///
/// # Safety
///
/// `p` is non-null and a reference to it is alive (held by a labels slot) during the call.
unsafe fn retain_labels(p: *const Labels) -> *const Labels {
    // SAFETY: `p` came from `Arc::into_raw` (labels slots hold nothing else) and is alive.
    unsafe { std::sync::Arc::increment_strong_count(p) };
    p
}

/// The state a goroutine's wait reason byte stands for.
fn wait_state(reason: u8) -> u8 {
    ST_WAIT.saturating_add(reason)
}

/// `g` switches out at `t_out` (parks, yields, or exits if `exiting`): its running time since
/// its mark, charged now if it exits, else with its next start.
///
/// # Safety
///
/// Called by the M that ran `g`, right after it switched out (so `g` cannot run meanwhile).
#[inline]
pub(crate) unsafe fn switch_out(shard: usize, g: &G, t_out: u64, exiting: bool) {
    let from = g.wall_mark.swap(t_out, Ordering::Relaxed);
    let d = clip(from, t_out);
    if exiting {
        let pending = g.wall_run.swap(0, Ordering::Relaxed);
        // SAFETY: `g` is switched out and held by our M (contract): its labels slot is still.
        unsafe { charge_parts(shard, g.labels.load(Ordering::Relaxed), &[(None, ST_RUNNING, d + pending)]) };
    } else if d != 0 {
        g.wall_run.fetch_add(d, Ordering::Relaxed);
    }
}

/// `g` starts running at `t_run`: its waiting and runnable time since its mark, charged to the
/// stack it is about to resume on, and its running time before it switched out.
///
/// # Safety
///
/// Called by the M about to resume `g`, before it does (its stack is frozen and its own).
#[inline]
pub(crate) unsafe fn run(shard: usize, g: &G, t_run: u64) {
    let from = g.wall_mark.swap(t_run, Ordering::Relaxed);
    let ran = g.wall_run.swap(0, Ordering::Relaxed);
    let labels = g.labels.load(Ordering::Relaxed);
    if clip(from, t_run) == 0 {
        // SAFETY: `g` is held still by our M, so its labels slot is too.
        unsafe { charge_parts(shard, labels, &[(None, ST_RUNNING, ran)]) };
        return;
    }
    // SAFETY: the caller's M holds `g` switched out until it resumes it (contract).
    let stack = unsafe { park_stack_of(g) };
    let reason = g.wait_reason.load(Ordering::Relaxed);
    let t_ready = g.t_ready.load(Ordering::Relaxed);
    let (waited, runnable) = split(reason, t_ready, from, t_run);
    let s = stack.as_ref();
    // SAFETY: `g` is held still by our M, so its labels slot is too.
    unsafe {
        charge_parts(
            shard,
            labels,
            &[(None, ST_RUNNING, ran), (s, wait_state(reason), waited), (s, ST_RUNNABLE, runnable)],
        )
    };
}

/// How a goroutine switched out since `from` and runnable at `to` spent the interval: waiting
/// (if it parked, for `reason`) until its ready stamp `t_ready`, then runnable; both clipped
/// to the window. A ready stamp from before timing was on means it was readied before the
/// window opened: runnable all along since then.
fn split(reason: u8, t_ready: u64, from: u64, to: u64) -> (u64, u64) {
    if reason != 0 && t_ready >= epoch() && t_ready > from && t_ready <= to {
        (clip(from, t_ready), clip(t_ready, to))
    } else {
        (0, clip(from, to))
    }
}

/// The running goroutine `g`, the caller, charges its time since its mark up to now to
/// `state` (and `stack`).
fn charge_own(shard: usize, g: &G, stack: Option<&SiteRef>, state: u8) {
    let t = ticks();
    let from = g.wall_mark.swap(t, Ordering::Relaxed);
    // SAFETY: `g` is the caller, running: only it changes its labels slot.
    unsafe { charge(shard, stack, g.labels.load(Ordering::Relaxed), state, from, t) };
}

/// The running goroutine `g` enters `blocking`: charges its running time and returns where it
/// stands, for [`syscall_exit`].
#[inline]
pub(crate) fn syscall_enter(shard: usize, g: &G) -> Option<ParkStack> {
    if !on() {
        return None;
    }
    charge_own(shard, g, None, ST_RUNNING);
    let mut buf = [0usize; MAX_DEPTH];
    let w = capture(0, &mut buf);
    Some(ParkStack::from(&buf[..w.len]))
}

/// The running goroutine `g` leaves `blocking`: charges the call's time to `stack`.
#[inline]
pub(crate) fn syscall_exit(shard: usize, g: &G, stack: Option<ParkStack>) {
    if on() {
        charge_own(shard, g, stack.map(SiteRef::Walked).as_ref(), ST_SYSCALL);
    }
}

/// The charge table of the calling thread: its P's, if it has one.
#[inline]
pub(crate) fn current_shard() -> usize {
    crate::m::current_m().and_then(|m| m.p.get()).map_or(0, |p| p.id)
}

/// The running goroutine `g` is about to change its labels: charges its running time so far
/// to the labels it ran under.
#[inline]
pub(crate) fn relabel(g: &G) {
    if on() {
        charge_own(current_shard(), g, None, ST_RUNNING);
    }
}

/// Opens a window: from now on the scheduler accounts every goroutine's time.
pub fn start() -> Result<(), WallError> {
    if OPEN.swap(true, Ordering::Acquire) {
        return Err(WallError::InUse);
    }
    crate::clock::calibrate_ticks();
    W1.store(u64::MAX, Ordering::Relaxed);
    W0.store(ticks(), Ordering::Relaxed);
    set_timing(TIMING_WALL, true);
    Ok(())
}

/// Closes the window and returns what it accounted. `running` are the stacks of the
/// goroutines running at its end (`running_stacks`), for their labels. Returns an empty profile
/// if no window is open.
pub fn stop(running: &[crate::running::RunningStack]) -> WallProfile {
    if !OPEN.load(Ordering::Acquire) {
        return WallProfile { records: Vec::new(), window_ns: 0 };
    }
    let w1 = ticks();
    W1.store(w1, Ordering::Relaxed);
    let w0 = W0.load(Ordering::Relaxed);
    for_each_g(|g| close(g, w1, running));
    set_timing(TIMING_WALL, false);
    let mut records = Vec::new();
    for t in &TABLES {
        let Some(t) = t.lock().take() else { continue };
        for ((_, _, st), e) in t {
            let state = match st {
                ST_RUNNING => WallState::Running,
                ST_RUNNABLE => WallState::Runnable,
                ST_SYSCALL => WallState::Syscall,
                r => WallState::Waiting(WaitReason::from_u8(r - ST_WAIT)),
            };
            // SAFETY: the entry owned this reference; it is released here.
            let labels = unsafe { labels_from_ref(e.labels) };
            records.push(WallRecord {
                stack: e.stack.unwrap_or_else(|| ParkStack::from(&[][..])),
                state,
                labels,
                ns: ticks_to_ns(e.ticks),
            });
        }
    }
    OPEN.store(false, Ordering::Release);
    WallProfile { records, window_ns: ticks_to_ns(w1.saturating_sub(w0)) }
}

/// Charges what is still open for `g` at the window's end `w1`.
fn close(g: GRef, w1: u64, running: &[crate::running::RunningStack]) {
    if !g.is_goroutine() {
        return;
    }
    let st = g.status();
    if st == crate::g::RUNNING || st == crate::g::SYSCALL {
        let from = g.0.wall_mark.fetch_max(w1, Ordering::Relaxed);
        let ran = g.0.wall_run.swap(0, Ordering::Relaxed);
        // The labels of a goroutine running elsewhere cannot be read safely from here (it may
        // change them); its SIGURG answer carries them.
        let labels = running.iter().find(|r| r.id == g.id()).and_then(|r| r.labels.clone());
        let slot = labels_into_ref(labels);
        let state = if st == crate::g::SYSCALL { ST_SYSCALL } else { ST_RUNNING };
        // SAFETY: `slot` is our own reference, alive for the call.
        unsafe { charge_parts(0, slot, &[(None, ST_RUNNING, ran), (None, state, clip(from, w1))]) };
        // SAFETY: ours, made above.
        drop(unsafe { labels_from_ref(slot) });
        return;
    }
    g.with_parked(|p| {
        let from = g.0.wall_mark.fetch_max(w1, Ordering::Relaxed);
        let ran = g.0.wall_run.swap(0, Ordering::Relaxed);
        let labels = g.0.labels.load(Ordering::Relaxed);
        let reason = g.0.wait_reason.load(Ordering::Relaxed);
        let (waited, runnable) = match p.wait_reason() {
            // Still parked: waiting up to the end.
            Some(_) => (clip(from, w1), 0),
            None => split(reason, g.0.t_ready.load(Ordering::Relaxed), from, w1),
        };
        let stack = (waited + runnable > 0).then(|| SiteRef::Walked(park_stack(p)));
        let s = stack.as_ref();
        let parts = [(None, ST_RUNNING, ran), (s, wait_state(reason), waited), (s, ST_RUNNABLE, runnable)];
        // SAFETY: the scan bit holds `g` still, so its labels slot is too.
        unsafe { charge_parts(0, labels, &parts) };
    });
}
