//! Timers for users (Go's `time` package over `runtime/time.go`): `sleep`, [`RawTimer`],
//! [`Timer`], [`after_func`].
//!
//! Each P has a heap of timers behind a lock (`timer_heap.rs`), plus `timer0`, the earliest
//! `when`, readable without it. The owner runs its expired timers at every schedule, a few at a
//! time while its run queue is long (`sched/timers.rs`); a stealing M runs a victim's;
//! an idle M sleeps exactly until the earliest timer of all Ps (the "timer M", see `stopm`),
//! unless it is due sooner than the Ms' timed sleeps have been waking late (a moving average,
//! at most 50 µs; tens of µs on a VM), in which case the M spins for it with its P instead;
//! sysmon takes the P from a goroutine that hogs it while a timer is due.
//!
//! # RawTimer states
//!
//! `state` packs a generation and a state: `gen << 2 | st` with `st` one of IDLE, PENDING,
//! RUNNING. A heap entry carries the generation it was armed with; `stop`/`reset` bump the
//! generation, so stale entries are recognised and dropped when they surface (lazy deletion).
//! Firing CASes `gen|PENDING -> gen|RUNNING`, runs the callback, then `-> gen|IDLE` (or re-arms
//! a periodic timer). `stop` and `reset` wait while the state is RUNNING (unless called from the
//! callback itself), so once `stop` returns the callback is not running and will not run.
//!
//! Stale entries are swept out in bulk too (`timer_heap.rs`).

mod after_func;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

pub use self::after_func::after_func;
pub use crate::clock::nanotime;
use crate::g::{GRef, SwitchIn, WaitReason};
use crate::park::{park, ready};
use crate::sched::state::started;
use crate::sched::timers::add_timer;
#[doc(hidden)]
pub use crate::sched::timers::timer_entries;
use crate::start::sched;
use crate::timer_heap::{Target, TimerFunc};

// ---------------------------------------------------------------------------------------------
// sleep
// ---------------------------------------------------------------------------------------------

/// Pauses the current goroutine for at least `d` (parks with reason `sleep`). On a plain thread,
/// `std::thread::sleep`.
pub fn sleep(d: Duration) {
    if !crate::park::in_goroutine() {
        return std::thread::sleep(d);
    }
    if d.is_zero() {
        return;
    }
    let when = nanotime().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
    // After the push `add_timer` touches only the P's heap and the scheduler, never this
    // goroutine's stack (`when` was copied into the closure).
    // SAFETY: the commit publishes `g` in one timer entry, pushed under its heap's lock, which
    // `run_timers` pops once and readies; neither it nor `timer_added` parks or panics.
    unsafe {
        park(WaitReason::Sleep, |g| {
            add_timer(started(), when, Target::G(g, SwitchIn::of(g)));
            true
        })
    };
}

// ---------------------------------------------------------------------------------------------
// RawTimer
// ---------------------------------------------------------------------------------------------

const T_IDLE: u64 = 0;
const T_PENDING: u64 = 1;
const T_RUNNING: u64 = 2;

pub(crate) struct RawInner {
    /// `gen << 2 | state` (module docs).
    state: AtomicU64,
    /// Re-arm period in ns (0: one-shot).
    period: u64,
    f: Box<dyn Fn() + Send + Sync>,
}

thread_local! {
    static RUNNING_TIMER: Cell<*const RawInner> = const { Cell::new(std::ptr::null()) };
}

impl TimerFunc for RawInner {
    fn is_live(&self, gen: u64) -> bool {
        self.state.load(Ordering::Relaxed) >> 2 == gen
    }

    fn fire(self: Arc<Self>, gen: u64, when: u64) {
        let armed = gen << 2 | T_PENDING;
        // Acquire: pairs with the Release in reset/new that armed this generation.
        if self.state.compare_exchange(armed, gen << 2 | T_RUNNING, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return; // stopped or re-armed: a stale entry
        }
        let me = Arc::as_ptr(&self);
        let prev = RUNNING_TIMER.with(|c| c.replace(me));
        (self.f)();
        RUNNING_TIMER.with(|c| c.set(prev));
        if self.period > 0 {
            // Release: pairs with stop/reset's Acquire loads.
            if self.state.compare_exchange(gen << 2 | T_RUNNING, armed, Ordering::Release, Ordering::Relaxed).is_ok() {
                let now = nanotime();
                let mut next = when.saturating_add(self.period);
                if next <= now {
                    // Fell behind (a long pause): skip missed ticks, as Go's ticker drops them.
                    next = now + self.period - (now - when) % self.period;
                }
                add_timer(started(), next, Target::Func(self, gen));
            }
        } else {
            // Release: pairs with stop/reset's Acquire loads (the callback's effects happen-before
            // a stop that observes IDLE).
            let _ = self.state.compare_exchange(
                gen << 2 | T_RUNNING,
                gen << 2 | T_IDLE,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }
}

impl RawInner {
    fn running_here(&self) -> bool {
        RUNNING_TIMER.with(|c| std::ptr::eq(c.get(), self))
    }
}

/// A runtime timer that runs a callback on a scheduler thread at a given `nanotime()`
/// (the core of `Timer`, `after`, `tick` and channel timeouts).
///
/// The callback must be short and must not block or park; it may call [`ready`] and spawn.
pub struct RawTimer {
    inner: Arc<RawInner>,
}

impl RawTimer {
    /// Arms a one-shot timer for `when` (in [`nanotime`] units).
    pub fn new(when: u64, f: Box<dyn Fn() + Send + Sync>) -> RawTimer {
        RawTimer::with_period(when, 0, f)
    }

    /// Arms a timer for `when` that then fires every `period` ns (a ticker) until stopped.
    pub fn with_period(when: u64, period: u64, f: Box<dyn Fn() + Send + Sync>) -> RawTimer {
        let inner = Arc::new(RawInner { state: AtomicU64::new(1 << 2 | T_PENDING), period, f });
        add_timer(sched(), when, Target::Func(inner.clone(), 1));
        RawTimer { inner }
    }

    /// Disarms the timer. Returns true if this prevented a pending firing. When `stop` returns,
    /// the callback is not running and will not run (it waits out a callback running right now,
    /// unless called from that very callback).
    pub fn stop(&self) -> bool {
        loop {
            // Acquire: pairs with fire's Release transitions.
            let s = self.inner.state.load(Ordering::Acquire);
            let (gen, st) = (s >> 2, s & 3);
            match st {
                T_PENDING => {
                    if self
                        .inner
                        .state
                        .compare_exchange(s, (gen + 1) << 2 | T_IDLE, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        return true;
                    }
                }
                T_RUNNING => {
                    if self.inner.running_here() {
                        if self
                            .inner
                            .state
                            .compare_exchange(s, (gen + 1) << 2 | T_IDLE, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                        {
                            return false;
                        }
                    } else {
                        std::hint::spin_loop();
                        std::thread::yield_now();
                    }
                }
                _ => return false,
            }
        }
    }

    /// Re-arms the timer for `when`, whether or not it fired. Returns true if it was pending.
    pub fn reset(&self, when: u64) -> bool {
        loop {
            // Acquire: pairs with fire's Release transitions.
            let s = self.inner.state.load(Ordering::Acquire);
            let (gen, st) = (s >> 2, s & 3);
            if st == T_RUNNING && !self.inner.running_here() {
                std::hint::spin_loop();
                std::thread::yield_now();
                continue;
            }
            let ng = gen + 1;
            // Release: publishes the new arming to the fire that Acquires it.
            if self.inner.state.compare_exchange(s, ng << 2 | T_PENDING, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                add_timer(sched(), when, Target::Func(self.inner.clone(), ng));
                return st == T_PENDING;
            }
        }
    }

    /// Whether the timer is armed and has not fired yet.
    pub fn is_pending(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & 3 == T_PENDING
    }
}

impl Drop for RawTimer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for RawTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTimer").field("pending", &self.is_pending()).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Timer: a resettable one-shot a goroutine can wait on.
// ---------------------------------------------------------------------------------------------

/// What a [`Timer`]'s firing and its waiters share. Any number of goroutines and threads may
/// wait at once (a `Timer` is `Sync`): they sit in a list and are all readied when it fires.
struct TimerShared {
    /// The timer has fired (since creation or the last reset). Written under `waiters`' lock.
    fired: AtomicBool,
    /// Parked in [`Timer::wait`]. A G is here from its park commit until `fire` takes the list.
    waiters: Mutex<Vec<GRef>>,
}

impl TimerShared {
    fn fire(&self) {
        let ws = {
            let mut w = self.waiters.lock();
            // Release: pairs with the Acquire load in `wait`/`has_fired`.
            self.fired.store(true, Ordering::Release);
            std::mem::take(&mut *w)
        };
        for g in ws {
            // SAFETY: each G in the list was published there by its own park commit in `wait`
            // (under the lock), and `take` emptied the list under that lock: this is the one
            // `ready` for each of those parks.
            unsafe { ready(g) };
        }
    }

    fn wait(&self) {
        // Acquire: pairs with fire's Release store.
        while !self.fired.load(Ordering::Acquire) {
            let sh: *const TimerShared = self;
            let commit = move |g: GRef| {
                // SAFETY: `wait` borrows the `Timer` (so this state) until the commit returns;
                // after the push only the guard's release touches it, and `fire` cannot take the
                // list, so cannot ready us, before that release.
                let sh = unsafe { &*sh };
                let mut w = sh.waiters.lock();
                if sh.fired.load(Ordering::Relaxed) {
                    return false;
                }
                w.push(g);
                true
            };
            // SAFETY: the commit publishes `g` only in the waiter list, under its lock; `fire`, the
            // one taker, readies each G once. Fired, it publishes nothing and returns false. It
            // touches only the Arc'd state (above), neither parks nor panics (a short lock).
            unsafe { park(WaitReason::Sleep, commit) };
        }
    }

    fn reset(&self) {
        let _w = self.waiters.lock();
        self.fired.store(false, Ordering::Relaxed);
    }
}

/// A single event in the future that a goroutine can wait for, stop or reset (the waitable core
/// of Go's `time.Timer`; the channel-shaped `after`/`tick` live in `gort::time` too).
pub struct Timer {
    raw: RawTimer,
    shared: Arc<TimerShared>,
}

impl Timer {
    /// A timer that fires once after `d`.
    pub fn new(d: Duration) -> Timer {
        let shared = Arc::new(TimerShared { fired: AtomicBool::new(false), waiters: Mutex::new(Vec::new()) });
        let sh = shared.clone();
        let raw = RawTimer::new(deadline(d), Box::new(move || sh.fire()));
        Timer { raw, shared }
    }

    /// Blocks (parks the goroutine, with reason `sleep`) until the timer fires. Returns at once
    /// if it has fired. Waiting on a stopped timer that never fires blocks forever, as in Go.
    pub fn wait(&self) {
        self.shared.wait();
    }

    /// Whether the timer has fired (since creation or the last reset).
    pub fn has_fired(&self) -> bool {
        // Acquire: pairs with fire's Release store.
        self.shared.fired.load(Ordering::Acquire)
    }

    /// Stops the timer; returns true if that prevented it from firing (Go's `Timer.Stop`).
    pub fn stop(&self) -> bool {
        self.raw.stop()
    }

    /// Makes the timer fire after `d` from now; returns true if it had been pending (Go's
    /// `Timer.Reset`).
    pub fn reset(&self, d: Duration) -> bool {
        let was = self.raw.stop();
        self.shared.reset();
        self.raw.reset(deadline(d));
        was
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").field("fired", &self.has_fired()).finish()
    }
}

/// `nanotime()` + `d`, saturating.
pub fn deadline(d: Duration) -> u64 {
    nanotime().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64)
}
