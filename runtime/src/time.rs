//! Timers, kept per P (Go's `runtime/time.go`), and the clock.
//!
//! Each P has a binary heap of timers behind a lock, plus `timer0`, the earliest `when`, readable
//! without it. The owner runs its expired timers at every schedule; a stealing M runs a victim's;
//! an idle M sleeps exactly until the earliest timer of all Ps (the "timer M", see `stopm`);
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
//! Stale entries are also swept out in bulk (Go's `clearDeletedTimers`): when an insertion
//! makes a heap reach `clean_at` entries, the heap keeps only its live entries and `clean_at`
//! becomes twice what is left (at least [`CLEAN_MIN`]). So a P's heap never holds more than about
//! twice its live timers plus [`CLEAN_MIN`], whatever the pattern of stops and resets (a read
//! deadline per `read`, a `recv_timeout` per message), and the sweep costs O(1) amortized per
//! insertion: between two sweeps the heap at least doubles.

use std::cell::Cell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::g::{GRef, WaitReason};
use crate::p::P;
use crate::park::{park, ready, with_current_p};
use crate::sched::{sched, timer_added};

use parking_lot::Mutex;

static EPOCH: OnceLock<Instant> = OnceLock::new();
static COARSE: AtomicU64 = AtomicU64::new(CLOCK_BASE);

pub(crate) fn init_epoch() {
    let _ = EPOCH.get_or_init(Instant::now);
}

/// Where the runtime's clock starts: one hour. Readings are never 0 (so 0 can mean "unset")
/// and a timestamp can be moved back in time without underflow (a test backdates a wait by a
/// minute to see how dumps render it).
const CLOCK_BASE: u64 = 3_600_000_000_000;

/// Monotonic nanoseconds on the runtime's clock: [`CLOCK_BASE`] (one hour) plus the time since
/// the runtime started (vDSO clock, ~20 ns). Only differences between readings mean anything.
#[inline]
pub fn nanotime() -> u64 {
    let now = CLOCK_BASE + EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64;
    COARSE.store(now, Ordering::Relaxed);
    now
}

/// The last `nanotime()` anyone read (sysmon refreshes it at least every 10 ms). Used for wait
/// timestamps, where a minute-granularity report does not justify a clock read per park.
#[inline]
pub(crate) fn coarse_now() -> u64 {
    COARSE.load(Ordering::Relaxed)
}

pub(crate) enum Target {
    /// Wake a sleeping goroutine.
    G(GRef),
    /// Run a RawTimer's callback if its generation still matches.
    Raw(Arc<RawInner>, u64),
}

pub(crate) struct Entry {
    when: u64,
    seq: u64,
    target: Target,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        self.when == o.when && self.seq == o.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Entry) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Entry {
    /// False for an entry that `stop`/`reset` made stale. Called with the heap's lock held: the
    /// arming CAS happened before the push of this entry under the same lock, so a Relaxed load
    /// sees at least the entry's generation; a newer one means stopped or re-armed.
    fn live(&self) -> bool {
        match &self.target {
            Target::G(_) => true,
            Target::Raw(inner, gen) => inner.state.load(Ordering::Relaxed) >> 2 == *gen,
        }
    }
}

impl Ord for Entry {
    fn cmp(&self, o: &Entry) -> CmpOrdering {
        // BinaryHeap is a max-heap: invert for earliest first, FIFO among equal `when`s.
        (o.when, o.seq).cmp(&(self.when, self.seq))
    }
}

/// A P's timers.
#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// Sweep stale entries when the heap reaches this length (module docs; 0: [`CLEAN_MIN`]).
    clean_at: usize,
}

/// The smallest heap worth sweeping.
const CLEAN_MIN: usize = 64;

impl TimerHeap {
    /// Drops the stale entries if the heap has grown to `clean_at`; returns them so the caller
    /// drops them (and the callbacks they own) after releasing the lock.
    fn maybe_sweep(&mut self) -> Vec<Entry> {
        if self.heap.len() < self.clean_at.max(CLEAN_MIN) {
            return Vec::new();
        }
        let (live, stale): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.heap).into_vec().into_iter().partition(Entry::live);
        self.heap = BinaryHeap::from(live);
        self.clean_at = (2 * self.heap.len()).max(CLEAN_MIN);
        stale
    }

    /// Entries in the heap, stale ones included (tests).
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Heap entries across all Ps, stale ones included. Test support: shows that stopped timers do
/// not pile up.
// Safe: it only counts, taking each heap's lock as the runtime does.
#[doc(hidden)]
pub fn timer_entries() -> usize {
    sched().allp.iter().map(|p| p.timers.lock().len()).sum()
}

/// Adds a timer to the caller's P (or P 0 from a plain thread) and wakes an idle M if it is now
/// the earliest.
fn add_timer(when: u64, target: Target) {
    let s = sched();
    let p: &'static P = with_current_p(|p| p).unwrap_or(&s.allp[0]);
    let stale = {
        let mut h = p.timers.lock();
        h.seq += 1;
        let seq = h.seq;
        h.heap.push(Entry { when, seq, target });
        let stale = h.maybe_sweep();
        let t0 = h.heap.peek().map(|e| e.when).unwrap_or(u64::MAX);
        p.timer0.store(t0, Ordering::Relaxed);
        stale
    };
    drop(stale);
    timer_added(when);
}

/// Runs `p`'s timers that are due at `now`. Callable by any M (the heap is locked while popping;
/// callbacks run unlocked).
pub(crate) fn run_timers(p: &P, now: u64) {
    let mut due: Vec<Entry> = Vec::new();
    {
        let mut h = match p.timers.try_lock() {
            Some(h) => h,
            None => return, // someone else is running them
        };
        while let Some(e) = h.heap.peek() {
            if e.when > now {
                break;
            }
            due.push(h.heap.pop().expect("peeked"));
        }
        let t0 = h.heap.peek().map(|e| e.when).unwrap_or(u64::MAX);
        p.timer0.store(t0, Ordering::Relaxed);
    }
    for e in due {
        match e.target {
            // SAFETY: `sleep`'s commit published `g` in this one entry, which we popped under the
            // heap's lock; a `Target::G` entry is never stale, so no sweep drops it, and it is
            // popped exactly once: this is the one `ready` for that park.
            Target::G(g) => unsafe { ready(g) },
            Target::Raw(inner, gen) => inner.fire(gen, e.when),
        }
    }
}

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
    // SAFETY: the commit publishes `g` in one timer entry, pushed under its heap's lock, which
    // `run_timers` pops exactly once and readies. After the push `add_timer` touches only the
    // P's heap and the scheduler, never this goroutine's stack (`when` was copied into the
    // closure). Neither it nor `timer_added` parks or panics.
    unsafe {
        park(WaitReason::Sleep, |g| {
            add_timer(when, Target::G(g));
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

impl RawInner {
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
                add_timer(next, Target::Raw(self, gen));
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
        add_timer(when, Target::Raw(inner.clone(), 1));
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
                add_timer(when, Target::Raw(self.inner.clone(), ng));
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
                // SAFETY: the waiter's `Timer` (and so this Arc'd state) is borrowed by `wait`
                // until the commit returns; after the push below only the lock guard's release
                // touches it, and `fire` (which holds its own Arc) cannot take the list, and so
                // cannot ready us, before that release.
                let sh = unsafe { &*sh };
                let mut w = sh.waiters.lock();
                if sh.fired.load(Ordering::Relaxed) {
                    return false;
                }
                w.push(g);
                true
            };
            // SAFETY: the commit publishes `g` in one place, the waiter list, under its lock,
            // and `fire` (the only taker) readies each G it takes exactly once; when the timer
            // has already fired it publishes nothing and returns false. It touches only the
            // Arc'd state (see above), neither parks nor panics (a short lock).
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

/// Runs `f` in its own goroutine after `d` (Go's `time.AfterFunc`). Stop the returned timer to
/// cancel it.
///
/// # Safety
///
/// `f` runs on a goroutine, each time the timer fires, so it must keep the contract of
/// [`spawn`](crate::proc::spawn) (its `# Safety` section): across any gort blocking operation
/// (channel operations, `gort::sync` waits, `sleep`, `yield_now`, `join`, waiting `gort::net`
/// calls, leaving `blocking`, a spawn, or any call that makes one), `f` and everything it calls
/// must hold no `!Send` value tied to its thread (a `std::sync::MutexGuard`, a `StdoutLock`, an
/// `Rc` or `RefCell` borrow reachable from a thread-local, `rand::thread_rng()`), no reference
/// obtained from `LocalKey::with`, and must not reach one thread-local on both sides of such an
/// operation in one (inlined) function. `Send` values, `gort::sync::Mutex` guards, and
/// thread-locals accessed and released between blocking operations through a non-inlined
/// function are fine.
pub unsafe fn after_func<F: Fn() + Send + Sync + 'static>(d: Duration, f: F) -> RawTimer {
    let f = Arc::new(f);
    RawTimer::new(
        deadline(d),
        Box::new(move || {
            let f = f.clone();
            // SAFETY: the goroutine runs `f` through an `Arc` (Send) and nothing else: it holds
            // no thread-bound value of its own, so it keeps the contract exactly when `f` does,
            // and that is what `after_func`'s caller promised for `f`.
            unsafe { crate::proc::spawn(move || f()) };
        }),
    )
}

/// `nanotime()` + `d`, saturating.
pub fn deadline(d: Duration) -> u64 {
    nanotime().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64)
}
