//! Wall-clock accounting: for a window, every goroutine's time split by state (running,
//! runnable, in `blocking`, or waiting for a reason) and charged to where it stood, measured
//! from the scheduler's own transitions rather than sampled. The profiler turns it into the
//! wall-clock profile (`/debug/pprof/wall`).
//!
//! # Accounting
//!
//! While a window is open the scheduler takes a timestamp at every transition (`schedstats`):
//! when a goroutine switches out, when it is readied, when it starts running, and when it
//! enters and leaves `blocking`. Each goroutine carries a tally (`G::wall_acc`, behind a flag of
//! its own): a mark, the tick up to which its time has been measured, and the time measured
//! but not yet charged. A transition at `t` moves the mark to `t` and adds the interval from
//! the old mark, clipped to the window, to the state that interval was spent in:
//!
//! - starting to run adds *running* time up to the goroutine's last switch-out (its stamp,
//!   `G::t_out`: switching out records nothing else), charged with the goroutine's labels (the
//!   profiler spreads running time over the CPU samples of the window); then *waiting* (with the
//!   wait reason) up to the ready time and *runnable* after it, for the park-site stack, walked
//!   just before the goroutine resumes, while its stack is still frozen
//!   ([`park_stack_of`](crate::parksite), cached per site);
//! - finishing adds the running time since the last start, and charges the tally;
//! - leaving `blocking` charges the call's time as *syscall*, to the stack where it entered;
//! - changing labels charges everything tallied under the old labels.
//!
//! The tally keeps waiting and runnable time for the last two (park site, reason) pairs, so a
//! goroutine that parks at the same place again and again (a loop on a channel) adds two
//! numbers per park and takes no lock: the tables are charged when a third site pushes one out,
//! when the goroutine exits, when its labels change, and at the window's close. A park site that
//! is not cached (the cache is full) is charged at once.
//!
//! A mark older than the window means no transition happened since the window opened, so the
//! goroutine spent the window's start in the state it is leaving; a tally of an older window
//! (its generation differs) was charged or is stale, and starts afresh. Closing the window
//! stamps its end, then visits every goroutine, takes its tally, charges it and the interval
//! still open (parked through the whole window: the whole window), and moves the mark to the
//! end: a transition after that finds nothing left inside the window to add.
//!
//! Charges go to one of [`SHARDS`] tables (by P), each behind its own lock.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::clock::{ticks, ticks_to_ns};
use crate::g::{
    for_each_g_held, labels_from_ref, labels_into_ref, GRef, Labels, Parked, WaitReason, WallAcc, WallAccGuard,
    WallSlot, G,
};
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

/// The window's generation: a tally ([`WallAcc`]) of another generation is stale.
static GEN: AtomicU32 = AtomicU32::new(0);

/// Makes `a` a tally of the current window (dropping a stale one's sums, which were charged or
/// belong to a window already closed), keyed by the labels slot pointer `labels`.
#[inline]
fn refresh(a: &mut WallAcc, labels: *const Labels) {
    let gen = GEN.load(Ordering::Relaxed);
    if a.gen != gen {
        *a = WallAcc { gen, mark: a.mark, labels: labels as usize, ..WallAcc::ZERO };
    }
}

/// `g`'s tally (made current) with its mark moved to `t`, the labels slot pointer it is keyed
/// by, and the old mark. The caller is `g` itself or the M holding it switched out.
#[inline]
fn advance(g: &G, t: u64) -> (WallAccGuard<'_>, *const Labels, u64) {
    let labels = g.labels.load(Ordering::Relaxed);
    let mut a = g.wall_acc();
    refresh(&mut a, labels);
    let from = std::mem::replace(&mut a.mark, t);
    (a, labels, from)
}

/// Charges waiting (for `reason`) and runnable ticks to `stack`.
///
/// # Safety
///
/// As for [`charge_parts`].
unsafe fn charge_wait(
    shard: usize,
    labels: *const Labels,
    stack: Option<&SiteRef>,
    reason: u8,
    waited: u64,
    runnable: u64,
) {
    // SAFETY: the caller's contract.
    unsafe { charge_parts(shard, labels, &[(stack, wait_state(reason), waited), (stack, ST_RUNNABLE, runnable)]) };
}

/// Charges one slot of a tally (nothing if empty).
///
/// # Safety
///
/// As for [`charge_parts`].
unsafe fn charge_slot(shard: usize, labels: *const Labels, sl: WallSlot) {
    if sl.wait | sl.runnable == 0 {
        return;
    }
    // SAFETY: slots hold only addresses of cached sites.
    let site = (sl.site != 0).then(|| unsafe { SiteRef::from_cached_addr(sl.site) });
    // SAFETY: the caller's contract.
    unsafe { charge_wait(shard, labels, site.as_ref(), sl.reason, sl.wait, sl.runnable) };
}

/// Charges everything `a` holds, with `labels`, and empties it.
///
/// # Safety
///
/// As for [`charge_parts`].
unsafe fn flush(shard: usize, a: &mut WallAcc, labels: *const Labels) {
    // SAFETY: the caller's contract.
    unsafe {
        charge_parts(shard, labels, &[(None, ST_RUNNING, a.run)]);
        charge_slot(shard, labels, a.slots[0]);
        charge_slot(shard, labels, a.slots[1]);
    }
    a.run = 0;
    a.slots = [WallSlot::ZERO; 2];
}

/// The labels to charge `a` with, given the labels slot's pointer now: `now` if the tally
/// started under it (labels change only through [`relabel`], which charges first), else none
/// (a change that raced with the window's opening; its old pointer may be freed).
#[inline]
fn tally_labels(a: &WallAcc, now: *const Labels) -> *const Labels {
    if a.labels == now as usize {
        now
    } else {
        std::ptr::null()
    }
}

/// Adds waiting and runnable time at a cached site (or none: 0) to `a`'s slots; returns the
/// slot pushed out, if it held anything.
#[inline]
fn tally(a: &mut WallAcc, site: usize, reason: u8, waited: u64, runnable: u64) -> Option<WallSlot> {
    let [s0, s1] = &mut a.slots;
    if s0.site == site && s0.reason == reason {
        s0.wait += waited;
        s0.runnable += runnable;
        return None;
    }
    if s1.site == site && s1.reason == reason {
        s1.wait += waited;
        s1.runnable += runnable;
        std::mem::swap(s0, s1);
        return None;
    }
    let out = std::mem::replace(s1, *s0);
    *s0 = WallSlot { site, reason, wait: waited, runnable };
    (out.wait | out.runnable != 0).then_some(out)
}

/// `g` finished at `t_out`: its running time since its mark, and its tally, are charged.
///
/// # Safety
///
/// Called by the M that ran `g`, right after it finished (so its labels slot is still).
pub(crate) unsafe fn exit(shard: usize, g: &G, t_out: u64) {
    let (mut a, labels, from) = advance(g, t_out);
    a.run += clip(from, t_out);
    let l = tally_labels(&a, labels);
    // SAFETY: the caller's contract.
    unsafe { flush(shard, &mut a, l) };
}

/// Where the interval `[from, to)` of a goroutine switched out at its stamp `t_out` turns from
/// running to switched out. A stamp outside the interval is older than the mark (taken before
/// timing was on, or before the window's close moved the mark): the goroutine was switched out
/// all along.
#[inline]
fn out_point(t_out: u64, from: u64, to: u64) -> u64 {
    if t_out >= from && t_out <= to {
        t_out
    } else {
        from
    }
}

/// `g` starts running at `t_run`: its time since its mark goes to its tally: running up to its
/// last switch-out (`G::t_out`), then waiting and runnable, keyed by the stack it is about to
/// resume on (charged at once if that stack is not cached). Switching out itself records
/// nothing but the stamp.
///
/// # Safety
///
/// Called by the M about to resume `g`, before it does (its stack is frozen and its own).
#[inline]
pub(crate) unsafe fn run(shard: usize, g: &G, t_run: u64) {
    let (mut a, labels, from) = advance(g, t_run);
    if clip(from, t_run) == 0 {
        return;
    }
    let times = g.rare();
    let out = out_point(times.t_out.load(Ordering::Relaxed), from, t_run);
    a.run += clip(from, out);
    let reason = g.wait_reason.load(Ordering::Relaxed);
    let (waited, runnable) = split(reason, times.t_ready.load(Ordering::Relaxed), out, t_run);
    if waited | runnable == 0 {
        return;
    }
    // SAFETY: the caller's M holds `g` switched out until it resumes it (contract).
    let stack = unsafe { park_stack_of(g) };
    if a.labels != labels as usize {
        // Labels changed without `relabel` (racing with the window's opening): charge the tally
        // without them (the old pointer may be freed) and start afresh.
        // SAFETY: charging with no labels reads no slot.
        unsafe { flush(shard, &mut a, std::ptr::null()) };
        a.labels = labels as usize;
    }
    let site = match &stack {
        Some(SiteRef::Walked(_)) => {
            // SAFETY: `g` is held still by our M, so its labels slot is too.
            unsafe { charge_wait(shard, labels, stack.as_ref(), reason, waited, runnable) };
            return;
        }
        Some(c) => c.cached_addr(),
        None => 0,
    };
    if let Some(out) = tally(&mut a, site, reason, waited, runnable) {
        // SAFETY: as above.
        unsafe { charge_slot(shard, labels, out) };
    }
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

/// The running goroutine `g` enters `blocking`: its running time goes to its tally; returns
/// where it stands, for [`syscall_exit`].
#[inline]
pub(crate) fn syscall_enter(g: &G) -> Option<ParkStack> {
    if !on() {
        return None;
    }
    let t = ticks();
    {
        let (mut a, _, from) = advance(g, t);
        a.run += clip(from, t);
    }
    let mut buf = [0usize; MAX_DEPTH];
    let w = capture(0, &mut buf);
    Some(ParkStack::from(&buf[..w.len]))
}

/// The running goroutine `g` leaves `blocking`: charges the call's time to `stack`.
#[inline]
pub(crate) fn syscall_exit(g: &G, stack: Option<ParkStack>) {
    if !on() {
        return;
    }
    let t = ticks();
    let (_a, labels, from) = advance(g, t);
    let s = stack.map(SiteRef::Walked);
    // SAFETY: `g` is the caller, running: only it changes its labels slot.
    unsafe { charge_parts(current_shard(), labels, &[(s.as_ref(), ST_SYSCALL, clip(from, t))]) };
}

/// The charge table of the calling thread: its P's, if it has one.
#[inline]
fn current_shard() -> usize {
    crate::m::current_m().and_then(|m| m.p.get()).map_or(0, |p| p.id)
}

/// The running goroutine `g` changes its labels with `swap`: its time so far is charged with
/// the labels it ran under, and its tally starts afresh under the new ones.
#[inline]
pub(crate) fn relabel<R>(g: &G, swap: impl FnOnce() -> R) -> R {
    if !on() {
        return swap();
    }
    // The tally is held across the swap, so the window's close never sees new labels with an
    // old tally.
    let (mut a, labels, from) = advance(g, ticks());
    a.run += clip(from, a.mark);
    let l = tally_labels(&a, labels);
    // SAFETY: `g` is the caller, running: only it changes its labels slot, after this.
    unsafe { flush(current_shard(), &mut a, l) };
    let r = swap();
    a.labels = g.labels.load(Ordering::Relaxed) as usize;
    r
}

/// Opens a window: from now on the scheduler accounts every goroutine's time.
pub fn start() -> Result<(), WallError> {
    if OPEN.swap(true, Ordering::Acquire) {
        return Err(WallError::InUse);
    }
    crate::clock::calibrate_ticks();
    // Charges that raced with the last window's close belong to no window.
    for t in &TABLES {
        drop_table(t.lock().take());
    }
    GEN.fetch_add(1, Ordering::Relaxed);
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
    let mut late = Vec::new();
    for_each_g_held(|g, p| close(g, p, w1, running, &mut late));
    close_late(late, w1);
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

/// Releases the label references a drained table's entries own.
fn drop_table(t: Option<Table>) {
    for e in t.into_iter().flat_map(|t| t.into_values()) {
        // SAFETY: the entry owned this reference; it is released here.
        drop(unsafe { labels_from_ref(e.labels) });
    }
}

/// How long [`close_late`] keeps asking the running goroutines [`close`] left to it. An M may
/// be unable to answer for a while: sysmon's hog detector owns its request slot from asking
/// until its next tick, and an answer taken while the M runs scheduler code, or another signal
/// handler, off the goroutine's stack carries no labels.
const LATE_PATIENCE: Duration = Duration::from_millis(100);
/// The pause between two rounds of [`close_late`].
const LATE_PAUSE: Duration = Duration::from_micros(200);

/// Whether an answer carries the goroutine's labels: the handler reads them only when it
/// interrupted the goroutine on its own stack, which is also when it walks a stack.
fn has_labels(r: &crate::running::RunningStack) -> bool {
    !r.pcs.is_empty()
}

/// Charges what is still open for `g` at the window's end `w1`: its tally, and the interval
/// since its mark. A goroutine running elsewhere that `running` does not list (it started
/// running after those stacks were taken, or its M was between two of its steps when asked)
/// goes to `late`, with its id.
fn close(
    g: GRef,
    parked: Option<&Parked<'_>>,
    w1: u64,
    running: &[crate::running::RunningStack],
    late: &mut Vec<(GRef, u64)>,
) {
    if !g.is_goroutine() {
        return;
    }
    // Held first: an M about to resume a held goroutine may have stored RUNNING already.
    if let Some(p) = parked {
        close_parked(g, p, w1);
        return;
    }
    let st = g.status();
    if st == crate::g::RUNNING || st == crate::g::SYSCALL {
        // The labels of a goroutine running elsewhere cannot be read safely from here (it may
        // change them); its SIGURG answer carries them.
        match running.iter().find(|r| r.id == g.id()) {
            Some(r) if has_labels(r) => close_running(g, st, w1, r.labels.clone()),
            // The caller's own goroutine answers no SIGURG: charged without labels.
            None if crate::m::current_m().and_then(|m| m.curg()) == Some(g) => close_running(g, st, w1, None),
            _ => late.push((g, g.id())),
        }
    }
}

/// [`close`] for the goroutines it left in `late`: charging a tally without labels would lose
/// them for all the time it holds (a goroutine that spins and sleeps charges it only here, at
/// the window's end). Asks the running goroutines again, or holds the ones that have switched
/// out since (their switch-out charged nothing past `w1`), for up to [`LATE_PATIENCE`]; then
/// charges the ones still unanswered without labels. A goroutine in `blocking` is not asked
/// (the signal would interrupt its system call): it is not waited for either.
fn close_late(mut late: Vec<(GRef, u64)>, w1: u64) {
    let deadline = Instant::now() + LATE_PATIENCE;
    let askable = |&(g, id): &(GRef, u64)| g.id() == id && g.status() != crate::g::SYSCALL;
    while late.iter().any(askable) && crate::running::can_ask() && Instant::now() < deadline {
        let fresh = crate::running::running_stacks();
        late.retain(|&(g, id)| {
            if g.id() != id {
                return false; // it finished, and its exit charged its tally; the G is reused
            }
            if g.with_parked(|p| close_parked(g, p, w1)).is_some() {
                return false;
            }
            let st = g.status();
            if st != crate::g::RUNNING && st != crate::g::SYSCALL {
                // Switched out but not held still (it is being resumed): look again. Finished:
                // its exit charged it.
                return matches!(st, crate::g::WAITING | crate::g::RUNNABLE);
            }
            match fresh.iter().find(|r| r.id == id) {
                Some(r) if has_labels(r) => {
                    close_running(g, st, w1, r.labels.clone());
                    false
                }
                _ => true,
            }
        });
        if !late.is_empty() {
            std::thread::sleep(LATE_PAUSE);
        }
    }
    for (g, id) in late {
        let st = g.status();
        if g.id() == id && (st == crate::g::RUNNING || st == crate::g::SYSCALL) {
            close_running(g, st, w1, None);
        }
    }
}

/// [`close`] for a goroutine in status `st` (running or in `blocking`) whose labels, from its
/// own answer, are `labels`.
fn close_running(g: GRef, st: u32, w1: u64, labels: Option<Labels>) {
    let slot = labels_into_ref(labels);
    {
        let mut a = g.0.wall_acc();
        refresh(&mut a, slot);
        let from = a.mark;
        a.mark = a.mark.max(w1);
        if st == crate::g::SYSCALL {
            // `blocking` moved the mark when it entered.
            // SAFETY: `slot` is our own reference, alive for the call.
            unsafe { charge_parts(0, slot, &[(None, ST_SYSCALL, clip(from, w1))]) };
        } else {
            // If it switched out since its last start, its M has started it again but not
            // yet charged the gap (the mark would be past the switch-out): the gap is
            // waiting and runnable, at the site it last waited at if the reason matches
            // (its stack may be running again: it cannot be walked).
            let times = g.0.rare();
            let out = out_point(times.t_out.load(Ordering::Relaxed), from, w1);
            let resumed = out_point(times.t_run.load(Ordering::Relaxed), out, w1);
            a.run += clip(from, out) + clip(resumed, w1);
            let reason = g.0.wait_reason.load(Ordering::Relaxed);
            let (waited, runnable) = split(reason, times.t_ready.load(Ordering::Relaxed), out, resumed);
            let site = if a.slots[0].reason == reason { a.slots[0].site } else { 0 };
            if let Some(sl) = tally(&mut a, site, reason, waited, runnable) {
                // SAFETY: as above.
                unsafe { charge_slot(0, slot, sl) };
            }
        }
        // SAFETY: as above.
        unsafe { flush(0, &mut a, slot) };
    }
    // SAFETY: ours, made above.
    drop(unsafe { labels_from_ref(slot) });
}

/// [`close`] for a goroutine held still: it waited (or stood runnable) since it switched out.
fn close_parked(g: GRef, p: &Parked<'_>, w1: u64) {
    let labels = g.0.labels.load(Ordering::Relaxed);
    let mut a = g.0.wall_acc();
    refresh(&mut a, labels);
    let from = a.mark;
    a.mark = a.mark.max(w1);
    let times = g.0.rare();
    let out = out_point(times.t_out.load(Ordering::Relaxed), from, w1);
    a.run += clip(from, out);
    let reason = g.0.wait_reason.load(Ordering::Relaxed);
    let (waited, runnable) = match p.wait_reason() {
        // Still parked: waiting up to the end.
        Some(_) => (clip(out, w1), 0),
        None => split(reason, times.t_ready.load(Ordering::Relaxed), out, w1),
    };
    let l = tally_labels(&a, labels);
    // SAFETY: the hold keeps `g` still, so its labels slot is too.
    unsafe { flush(0, &mut a, l) };
    if waited + runnable > 0 {
        let stack = SiteRef::Walked(park_stack(p));
        // SAFETY: as above.
        unsafe { charge_wait(0, labels, Some(&stack), reason, waited, runnable) };
    }
}
