//! The scheduler: G-M-P, after Go's `runtime/proc.go`.
//!
//! # Design
//!
//! A **G** is a goroutine: a corosensei coroutine on a pooled stack. An **M** is an OS thread
//! running the scheduler loop ([`mstart`]). A **P** is the right to run goroutines: exactly
//! `GOMAXPROCS` exist, each with a local run queue, a `runnext` slot and timers. An M must hold a
//! P to run a G; an M without one sleeps on its note in the idle list.
//!
//! Where to find work ([`find_runnable`]), in order: this P's expired timers; one G from the
//! global queue every 61st tick (so the global queue cannot starve behind two goroutines
//! ping-ponging through runnext); `runnext`; the local queue; a batch from the global queue;
//! stealing half of a random victim's queue (and its expired timers), up to four rounds, with
//! `runnext` stolen only from a victim that has been busy with one G for a few microseconds;
//! then, while other Ps are busy, linger a few 3 µs sleeps still spinning ([`SPIN_LINGER`]),
//! and finally give the P back and sleep.
//!
//! A P's local queue is bounded ([`crate::p::LOCAL_RUNQ_MAX`]): past it, the older half moves to
//! the global queue in one batch (Go's `runqputslow`), so recent work runs first and fan-out
//! trees stay narrow. The global queue ([`crate::globrunq`]) is a locked FIFO, as Go's, taken in
//! fair batches of at most [`GLOBAL_BATCH`].
//!
//! # Parking and waking idle Ms: the spinning protocol
//!
//! Waking an M costs a futex round trip (~10 µs here), so wakeups must be rare but no runnable G
//! may ever be stranded while a P sits idle. Go's answer, kept here, and why the obvious
//! alternatives fail:
//!
//! 1. *Wake an M for every readied G*: thundering herd; every ping-pong message costs a futex.
//! 2. *Let idle Ms poll*: burns the cores we should leave to the program.
//! 3. *Wake an M only when every M is idle*: a G readied onto a busy P waits behind its runner
//!    while another P idles.
//!
//! The protocol: an M that has a P but no work becomes *spinning* (counted in `nmspinning`) and
//! looks for work to steal. Whoever makes a G runnable calls [`wakep`], which starts a new
//! spinning M only if there is an idle P **and no M is spinning already** (one spinner at a
//! time finds new work; when it finds some it stops spinning, and if it was the last spinner it
//! calls `wakep` so the search continues). The delicate part is the spinner giving up:
//!
//! - submitter: push G (Release); `fence(SeqCst)`; read `npidle`/`nmspinning`.
//! - spinner:   `pidleput` (npidle++); `nmspinning--`; `fence(SeqCst)`; re-check every queue.
//!
//! With both fences, either the submitter sees the spinner gone (and an idle P) and starts an M,
//! or the spinner's re-check sees the G and takes a P back. No G is stranded.
//!
//! # Fairness without preemption
//!
//! Rust code cannot be preempted safely, so a goroutine that runs without entering the runtime
//! keeps its M. sysmon (see `sysmon.rs`) takes its *P* away after 10 ms when other work waits
//! and hands it to another M: the OS then time-slices the hog's thread against the others. The
//! hog reacquires a P (or queues itself) at its next runtime entry. The same retake serves
//! `blocking` calls after 20 µs.

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use corosensei::{Coroutine, CoroutineResult};
use crossbeam_deque::Steal;
use parking_lot::Mutex;

use crate::env::Config;
use crate::g::{self, GRef, G};
use crate::m::{current_m, set_current_m, M};
use crate::netpoll;
use crate::p::{P, P_IDLE, P_RUNNING, P_SYSCALL, P_USER, STACK_CACHE_MAX};
use crate::proc::{goroutine_main, Yield};
use crate::stack::{GuardKind, GuardPlan, Stack, StackPool};
use crate::time::{self, nanotime};

/// State protected by the sched lock.
pub(crate) struct Idle {
    /// Idle Ps.
    pub(crate) pidle: Vec<&'static P>,
    /// Idle Ms, sleeping on their notes.
    pub(crate) midle: Vec<&'static M>,
    /// The one idle M sleeping with a timeout (until the earliest timer), if any.
    pub(crate) timer_m: Option<&'static M>,
}

/// A thread blocked in `run` waiting for its main goroutine (deadlock reports go to it).
pub(crate) struct RunWaiter {
    pub(crate) main_goid: u64,
    pub(crate) thread_g: GRef,
    /// The main goroutine's task: its completion slot is where the thread parks.
    pub(crate) task: Arc<dyn crate::proc::HasDone>,
    /// Set (SeqCst) by a deadlock report before it takes the thread out of that slot.
    pub(crate) reported: AtomicBool,
    pub(crate) deadlock: Mutex<Option<String>>,
}

pub(crate) struct Sched {
    pub(crate) cfg: Config,
    pub(crate) allp: &'static [P],
    /// Global run queue.
    pub(crate) global: crate::globrunq::GlobalQueue,
    pub(crate) idle: Mutex<Idle>,
    /// Number of idle Ps (mirrors `idle.pidle.len()`, readable without the lock).
    pub(crate) npidle: AtomicUsize,
    /// Number of spinning Ms.
    pub(crate) nmspinning: AtomicUsize,
    /// Number of idle Ms.
    pub(crate) nmidle: AtomicUsize,
    /// Every M, for schedtrace and the threadcreate profile.
    pub(crate) allm: Mutex<Vec<&'static M>>,
    pub(crate) mcount: AtomicUsize,
    pub(crate) stacks: StackPool,
    /// How many goroutines may hold a stack, so that each is guarded.
    pub(crate) guards: GuardPlan,
    /// Goroutines spawned and not yet finished, counted against `guards.spawn_cap`.
    pub(crate) stack_claims: AtomicUsize,
    /// Global free G list.
    pub(crate) gfree: Mutex<Vec<GRef>>,
    /// Live goroutines (spawned and not yet finished).
    pub(crate) ngoroutines: AtomicUsize,
    pub(crate) next_goid: AtomicU64,
    pub(crate) main_goid_taken: AtomicBool,
    /// Plain threads that have used the runtime and are not blocked in it (deadlock detection:
    /// such a thread may still wake a goroutine).
    pub(crate) ext_active: AtomicIsize,
    /// Plain threads that have used the runtime and not yet exited (parked or not).
    pub(crate) ext_threads: AtomicIsize,
    /// check_dead found everything asleep but threads it does not know of exist; sysmon
    /// re-checks while this is set (such a thread may exit without waking anyone).
    pub(crate) dead_suspect: AtomicBool,
    /// Deadline of the timer M's sleep (u64::MAX when none sleeps with a timeout).
    pub(crate) timer_sleep_until: AtomicU64,
    pub(crate) run_waiters: Mutex<Vec<Arc<RunWaiter>>>,
    /// Goroutines currently inside `blocking`.
    pub(crate) nsyscall: AtomicUsize,
    /// `nanotime` of the last network poll; 0 while an M is blocked in one (`netpoll.rs`).
    pub(crate) lastpoll: AtomicU64,
}

static SCHED: OnceLock<&'static Sched> = OnceLock::new();

/// The scheduler, started on first use. Panics with a clear message if the environment holds a
/// bad configuration (see `env.rs`); use [`start`] to get the error as a value.
#[inline]
pub(crate) fn sched() -> &'static Sched {
    match SCHED.get() {
        Some(s) => s,
        None => match start() {
            Ok(s) => s,
            Err(e) => panic!("gort: cannot start the runtime: {e}"),
        },
    }
}

impl Sched {
    pub(crate) fn idle_counts(&self) -> (usize, usize) {
        let idle = self.idle.lock();
        (self.npidle.load(Ordering::SeqCst), idle.pidle.len())
    }
}

/// The scheduler if it has started.
pub(crate) fn sched_if_started() -> Option<&'static Sched> {
    SCHED.get().copied()
}

static START_LOCK: Mutex<()> = Mutex::new(());

/// Starts the runtime from the environment's configuration (idempotent).
pub(crate) fn start() -> Result<&'static Sched, crate::env::ConfigError> {
    let _l = START_LOCK.lock();
    if let Some(s) = SCHED.get() {
        return Ok(s);
    }
    let cfg = Config::from_env()?;
    // The unwinder exists before any goroutine can park or any M can be profiled.
    crate::unwind::init();
    let n = cfg.max_procs;
    let light = !cfg.force_mprotect_guards && crate::stack::light_guards_supported();
    let guard_kind = if cfg.force_mprotect_guards { GuardKind::Mprotect } else { GuardKind::Auto };
    let guards = crate::stack::guard_plan(
        light,
        cfg.guarded_stacks,
        cfg.unguarded_stacks,
        cfg.max_map_count.unwrap_or_else(crate::stack::max_map_count),
        crate::stack::maps_in_use(),
        n * (STACK_CACHE_MAX + 1),
    );
    let allp: &'static [P] = Box::leak((0..n).map(P::new).collect::<Vec<_>>().into_boxed_slice());
    let s: &'static Sched = Box::leak(Box::new(Sched {
        stacks: StackPool::with_guard_kind(cfg.stack_size, guards.budget, guard_kind),
        guards,
        stack_claims: AtomicUsize::new(0),
        cfg,
        allp,
        global: crate::globrunq::GlobalQueue::new(),
        idle: Mutex::new(Idle { pidle: allp.iter().rev().collect(), midle: Vec::new(), timer_m: None }),
        npidle: AtomicUsize::new(n),
        nmspinning: AtomicUsize::new(0),
        nmidle: AtomicUsize::new(0),
        allm: Mutex::new(Vec::new()),
        mcount: AtomicUsize::new(0),
        gfree: Mutex::new(Vec::new()),
        ngoroutines: AtomicUsize::new(0),
        next_goid: AtomicU64::new(2),
        main_goid_taken: AtomicBool::new(false),
        ext_active: AtomicIsize::new(0),
        ext_threads: AtomicIsize::new(0),
        dead_suspect: AtomicBool::new(false),
        timer_sleep_until: AtomicU64::new(u64::MAX),
        run_waiters: Mutex::new(Vec::new()),
        nsyscall: AtomicUsize::new(0),
        lastpoll: AtomicU64::new(1),
    }));
    time::init_epoch();
    crate::signal::install_overflow_handler();
    crate::proc::install_panic_hook();
    // Publish before starting threads that call sched().
    let _ = SCHED.set(s);
    crate::sysmon::start(s);
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Idle P and M lists.
// ---------------------------------------------------------------------------------------------

impl Sched {
    /// Puts `p` on the idle list. Caller holds the sched lock (`idle`).
    fn pidleput(&self, idle: &mut Idle, p: &'static P) {
        p.status.store(P_IDLE, Ordering::Release);
        idle.pidle.push(p);
        // SeqCst: part of the spinning protocol (module docs): pairs with the fence in wakep.
        self.npidle.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes an idle P, marking it RUNNING for its new owner. Caller holds the sched lock.
    fn pidleget(&self, idle: &mut Idle) -> Option<&'static P> {
        let p = idle.pidle.pop()?;
        self.npidle.fetch_sub(1, Ordering::SeqCst);
        p.status.store(P_RUNNING, Ordering::Relaxed);
        Some(p)
    }

    /// Takes an idle P if there is one (for a goroutine that lost its P).
    pub(crate) fn try_pidleget(&self) -> Option<&'static P> {
        if self.npidle.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut idle = self.idle.lock();
        self.pidleget(&mut idle)
    }

    /// Whether any queue holds a runnable G (racy; used for re-checks).
    fn any_work(&self) -> bool {
        !self.global.is_empty() || self.allp.iter().any(|p| p.has_work())
    }

    /// Earliest timer across all Ps.
    pub(crate) fn next_timer(&self) -> u64 {
        self.allp.iter().map(|p| p.timer0.load(Ordering::Relaxed)).min().unwrap_or(u64::MAX)
    }
}

/// Tries to start a spinning M to run Gs, if there is an idle P and nobody is spinning.
/// Called after making a G runnable.
pub(crate) fn wakep() {
    let s = match sched_if_started() {
        Some(s) => s,
        None => return,
    };
    // SeqCst: the submitter's fence of the spinning protocol (module docs).
    fence(Ordering::SeqCst);
    if s.npidle.load(Ordering::SeqCst) == 0 {
        return;
    }
    if s.nmspinning.load(Ordering::SeqCst) != 0
        || s.nmspinning.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_err()
    {
        return;
    }
    startm(s, None, true);
}

/// Runs `p` (or an idle P if `None`) on an idle or new M. With `spinning`, the caller already
/// counted the M in `nmspinning`; if no P can be had the count is given back.
pub(crate) fn startm(s: &'static Sched, p: Option<&'static P>, spinning: bool) {
    let mut idle = s.idle.lock();
    let p = match p {
        Some(p) => {
            p.status.store(P_RUNNING, Ordering::Relaxed);
            p
        }
        None => match s.pidleget(&mut idle) {
            Some(p) => p,
            None => {
                drop(idle);
                if spinning {
                    s.nmspinning.fetch_sub(1, Ordering::SeqCst);
                }
                return;
            }
        },
    };
    let m = idle.midle.pop();
    if let Some(m) = m {
        s.nmidle.fetch_sub(1, Ordering::Relaxed);
        if idle.timer_m.is_some_and(|t| std::ptr::eq(t, m)) {
            idle.timer_m = None;
            s.timer_sleep_until.store(u64::MAX, Ordering::SeqCst);
        }
    }
    drop(idle);
    match m {
        Some(m) => {
            m.spinning.store(spinning, Ordering::Relaxed);
            // Release: pairs with the Acquire swap in stopm; Note::wake also orders it.
            m.nextp.store(p as *const P as *mut P, Ordering::Release);
            wake_m(m);
        }
        None => newm(s, p, spinning),
    }
}

/// Creates a new M (OS thread) that starts with `p`.
fn newm(s: &'static Sched, p: &'static P, spinning: bool) {
    let id = s.mcount.fetch_add(1, Ordering::Relaxed) + 1;
    let creator = current_m().and_then(|m| m.curg()).map(|g| g.id()).unwrap_or(0);
    let pp = p as *const P as usize;
    // The creating stack, as Go's threadcreate profile records it (rare: Ms never exit).
    let mut buf = [0usize; 64];
    let n = crate::unwind::capture_stack(0, &mut buf);
    let create_stack = buf[..n].to_vec();
    let r = std::thread::Builder::new().name(format!("gort-m{id}")).spawn(move || {
        let mut m = M::new(id, std::thread::current());
        m.create_stack = create_stack;
        let m: &'static M = Box::leak(Box::new(m));
        m.created_by.store(creator as usize, Ordering::Relaxed);
        s.allm.lock().push(m);
        set_current_m(m);
        crate::signal::ensure_altstack();
        // SAFETY: pp was made from a &'static P above.
        let p: &'static P = unsafe { &*(pp as *const P) };
        m.p.set(Some(p));
        m.spinning.store(spinning, Ordering::Relaxed);
        mstart(s, m);
    });
    if let Err(e) = r {
        // Go throws here too ("newosproc"): without threads the runtime cannot go on.
        eprintln!("fatal error: gort: cannot create an OS thread for an M: {e}");
        std::process::abort();
    }
}

/// Hands off `p`, taken from an M that is stuck (in `blocking` or a CPU hog), to a new owner:
/// an M if it has work, else the idle list.
pub(crate) fn handoffp(s: &'static Sched, p: &'static P) {
    if p.has_work() || !s.global.is_empty() || p.timer0.load(Ordering::Relaxed) != u64::MAX {
        startm(s, Some(p), false);
        return;
    }
    if s.nmspinning.load(Ordering::SeqCst) + s.npidle.load(Ordering::SeqCst) == 0
        && s.nmspinning.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    {
        startm(s, Some(p), true);
        return;
    }
    let mut idle = s.idle.lock();
    s.pidleput(&mut idle, p);
    drop(idle);
    // Re-check: work may have arrived while we decided (same reasoning as the spinning protocol).
    fence(Ordering::SeqCst);
    if s.any_work() {
        wakep();
    }
}

/// Wakes an idle M, whether it sleeps on its note or in the network poller.
pub(crate) fn wake_m(m: &'static M) {
    m.note.wake();
    // SeqCst (with the SeqCst store in Note::wake): Dekker pair with stopm's `polling` store
    // followed by `try_consume`: either the M sees the wakeup before it blocks in epoll_wait, or
    // we see it polling and interrupt the poll.
    if m.polling.load(Ordering::SeqCst) {
        if let Some(pl) = netpoll::poller() {
            let _ = pl.wake();
        }
    }
}

/// Wakes the timer M (or starts one) because a timer at `when` was added.
pub(crate) fn timer_added(when: u64) {
    let s = match sched_if_started() {
        Some(s) => s,
        None => return,
    };
    fence(Ordering::SeqCst);
    if when >= s.timer_sleep_until.load(Ordering::SeqCst) {
        return;
    }
    let idle = s.idle.lock();
    if let Some(m) = idle.timer_m {
        drop(idle);
        wake_m(m);
    } else {
        drop(idle);
        wakep();
    }
}

// ---------------------------------------------------------------------------------------------
// The M loop.
// ---------------------------------------------------------------------------------------------

/// An M's life: find a G, run it, repeat; sleep when there is nothing to do.
fn mstart(s: &'static Sched, m: &'static M) -> ! {
    loop {
        let lg = m.lockedg.load(Ordering::Relaxed);
        if !lg.is_null() {
            // SAFETY: lockedg holds a pointer made from a GRef by lock_os_thread.
            let g = unsafe { GRef::from_ptr(lg) };
            stoplockedm(s, m);
            execute(s, m, g);
            continue;
        }
        let p = match m.p.get() {
            Some(p) => p,
            None => {
                stopm(s, m);
                continue;
            }
        };
        if let Some(g) = find_runnable(s, m, p) {
            if m.spinning.load(Ordering::Relaxed) {
                resetspinning(s, m);
            }
            let lm = g.0.lockedm.load(Ordering::Relaxed);
            if !lm.is_null() && !std::ptr::eq(lm, m) {
                // SAFETY: Ms are never freed; lockedm holds a pointer made from a &'static M.
                startlockedm(m, unsafe { &*lm });
                continue;
            }
            execute(s, m, g);
        }
    }
}

/// The M found work after spinning: stop spinning, and if it was the last spinner, wake another
/// so the search for more work goes on.
fn resetspinning(s: &'static Sched, m: &'static M) {
    m.spinning.store(false, Ordering::Relaxed);
    // SeqCst: spinning protocol.
    let prev = s.nmspinning.fetch_sub(1, Ordering::SeqCst);
    if prev == 1 {
        wakep();
    }
}

/// An M wired to a goroutine that is not running (Go's `stoplockedm`): gives its P away, so the
/// other goroutines run elsewhere, and sleeps until the M that dequeues the goroutine hands it a
/// P to run it with ([`startlockedm`]). It is in no idle list meanwhile, so nothing else wakes it.
fn stoplockedm(s: &'static Sched, m: &'static M) {
    // Not spinning: the M just ran its goroutine (mstart resets spinning before `execute`).
    if let Some(p) = m.p.take() {
        p.curg.store(std::ptr::null_mut(), Ordering::Relaxed);
        // Release: as sysmon's hand-off, the owner-only fields go with the P.
        p.status.store(P_IDLE, Ordering::Release);
        handoffp(s, p);
    }
    sleep_until_handed_p(m);
}

/// Sleeps on the M's note until someone hands it a P through `nextp` (`startm`,
/// `startlockedm`), and takes it.
fn sleep_until_handed_p(m: &'static M) {
    loop {
        // Acquire: pairs with the Release store of `nextp` in startm or startlockedm.
        let np = m.nextp.swap(std::ptr::null_mut(), Ordering::Acquire);
        if !np.is_null() {
            // SAFETY: nextp holds a pointer made from a &'static P.
            m.p.set(Some(unsafe { &*np }));
            return;
        }
        m.note.sleep();
    }
}

/// This M dequeued a goroutine wired to another M (Go's `startlockedm`): hands it this M's P
/// and wakes it; the wired M runs the goroutine, and this one, now without a P, goes idle.
fn startlockedm(m: &'static M, locked: &'static M) {
    let p = m.p.take().expect("startlockedm without a P");
    p.curg.store(std::ptr::null_mut(), Ordering::Relaxed);
    p.status.store(P_RUNNING, Ordering::Relaxed);
    // Release: pairs with the Acquire swap in stoplockedm (the P and the G's state go with it).
    locked.nextp.store(p as *const P as *mut P, Ordering::Release);
    wake_m(locked);
}

/// Sleeps until this M is handed a P (or, as the timer M, until the earliest timer is due and a
/// P is free to run it).
fn stopm(s: &'static Sched, m: &'static M) {
    let mut untimed = false;
    loop {
        let next = if untimed { u64::MAX } else { s.next_timer() };
        let mut idle = s.idle.lock();
        idle.midle.push(m);
        s.nmidle.fetch_add(1, Ordering::Relaxed);
        let timed = next != u64::MAX && (idle.timer_m.is_none() || next < s.timer_sleep_until.load(Ordering::Relaxed));
        if timed {
            idle.timer_m = Some(m);
            s.timer_sleep_until.store(next, Ordering::SeqCst);
        }
        drop(idle);
        // Someone waits on the network and no M is blocked in the poller: block there instead of
        // on the note (claiming the poll by swapping `lastpoll` to 0), until the timer if timed.
        let poll = netpoll::poller().filter(|pl| pl.waiters() > 0 && s.lastpoll.swap(0, Ordering::SeqCst) != 0);
        if let Some(pl) = poll {
            // SeqCst: Dekker pair with wake_m (see there).
            m.polling.store(true, Ordering::SeqCst);
            let mut toks = Vec::new();
            if !m.note.try_consume() {
                let timeout = timed.then(|| std::time::Duration::from_nanos(next.saturating_sub(nanotime())));
                let _ = pl.poll(timeout, &mut toks);
            }
            m.polling.store(false, Ordering::Relaxed);
            s.lastpoll.store(nanotime(), Ordering::SeqCst);
            let mut gs = Vec::new();
            // SAFETY: `toks` were just handed back by the runtime's poller.
            unsafe { netpoll::take_runnable(&toks, &mut gs) };
            if !gs.is_empty() {
                // The woken-up path below finds them (any_work) and takes a P for them.
                for g in &gs {
                    s.global.push(*g);
                }
                if gs.len() > 1 {
                    wakep();
                }
            }
        } else if timed {
            let now = nanotime();
            let d = std::time::Duration::from_nanos(next.saturating_sub(now));
            m.note.sleep_timeout(d);
        } else {
            m.note.sleep();
        }
        // Acquire: pairs with the Release store in startm.
        let np = m.nextp.swap(std::ptr::null_mut(), Ordering::Acquire);
        if !np.is_null() {
            // SAFETY: nextp holds a pointer made from a &'static P in startm.
            m.p.set(Some(unsafe { &*np }));
            return;
        }
        // Woken by a timeout or a poke (a new earlier timer): leave the idle list ourselves.
        let mut idle = s.idle.lock();
        if let Some(pos) = idle.midle.iter().position(|x| std::ptr::eq(*x, m)) {
            idle.midle.swap_remove(pos);
            s.nmidle.fetch_sub(1, Ordering::Relaxed);
            if idle.timer_m.is_some_and(|t| std::ptr::eq(t, m)) {
                idle.timer_m = None;
                s.timer_sleep_until.store(u64::MAX, Ordering::SeqCst);
            }
            let due = s.next_timer() <= nanotime();
            if due || s.any_work() {
                if let Some(p) = s.pidleget(&mut idle) {
                    m.p.set(Some(p));
                    return;
                }
                // Every P is busy: their Ms (or sysmon) run the timers. Sleep until handed a P.
                untimed = true;
            } else {
                untimed = false;
            }
        } else {
            // startm already took us off the list and is about to hand us a P.
            drop(idle);
            sleep_until_handed_p(m);
            return;
        }
    }
}

/// How many 3 µs sleeps a spinning M that found nothing takes, still spinning and holding its
/// P, before it gives the P back while other Ps are busy (see `find_runnable`). Without them, in
/// a ping-pong between Ps each hand-off's `wakep` futex-wakes an M that gives up again at once
/// (the measurements are in the benchmark README, run 6). Go sleeps `usleep(3)` in the same
/// place (`runqgrab`) but only when a runnext is there to steal.
const SPIN_LINGER: u32 = 5;

/// Finds a runnable G for `m` on `p`, or gives `p` back and returns None.
fn find_runnable(s: &'static Sched, m: &'static M, mut p: &'static P) -> Option<GRef> {
    let mut linger = 0u32;
    loop {
        if p.timer0.load(Ordering::Relaxed) != u64::MAX {
            time::run_timers(p, nanotime());
        }
        // Fairness: every 61st schedule, look at the global queue first.
        if p.schedtick.load(Ordering::Relaxed).is_multiple_of(61) {
            if let Some(g) = global_get(s, p) {
                return Some(g);
            }
        }
        // SAFETY: this M owns p.
        if let Some(g) = unsafe { p.runqget() } {
            return Some(g);
        }
        if let Some(g) = global_get(s, p) {
            return Some(g);
        }
        // The network, if someone waits on it and no M is blocked polling already.
        if s.lastpoll.load(Ordering::Relaxed) != 0 && netpoll::poller().is_some_and(|pl| pl.waiters() > 0) {
            let mut gs = Vec::new();
            netpoll::poll_now(s, &mut gs);
            if let Some((&first, rest)) = gs.split_first() {
                for &g in rest {
                    // SAFETY: this M owns p.
                    unsafe { p.runqput(g, false) };
                }
                if !rest.is_empty() {
                    wakep();
                }
                return Some(first);
            }
        }
        // Steal.
        let busy = s.allp.len() - s.npidle.load(Ordering::Relaxed);
        if m.spinning.load(Ordering::Relaxed) || 2 * s.nmspinning.load(Ordering::Relaxed) < busy {
            if !m.spinning.load(Ordering::Relaxed) {
                m.spinning.store(true, Ordering::Relaxed);
                s.nmspinning.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(g) = steal_work(s, p) {
                return Some(g);
            }
        } else {
            // Not spinning: still run other Ps' due timers before sleeping.
            let now = nanotime();
            for v in s.allp {
                if !std::ptr::eq(v, p) && v.timers_due(now) {
                    time::run_timers(v, now);
                }
            }
            // SAFETY: this M owns p.
            if let Some(g) = unsafe { p.runqget() } {
                return Some(g);
            }
        }

        // Nothing. A spinning M whose peers are busy lingers a little before giving its P back
        // (sleeping, still spinning, [`SPIN_LINGER`] times): a handoff in flight elsewhere
        // (runnext) is usually picked up by its own P, and while we linger the readiers' wakep
        // finds no idle P and pays no futex wake. Work that arrives meanwhile is found on the
        // next round (the loop re-checks every queue), within a sleep's timer slack.
        if m.spinning.load(Ordering::Relaxed)
            && linger < SPIN_LINGER
            && s.npidle.load(Ordering::Relaxed) + 1 < s.allp.len()
        {
            linger += 1;
            std::thread::sleep(std::time::Duration::from_micros(3));
            continue;
        }
        // Nothing: give the P back.
        let mut idle = s.idle.lock();
        if !s.global.is_empty() {
            drop(idle);
            continue;
        }
        s.pidleput(&mut idle, p);
        m.p.set(None);
        drop(idle);
        let was_spinning = m.spinning.load(Ordering::Relaxed);
        if was_spinning {
            m.spinning.store(false, Ordering::Relaxed);
            s.nmspinning.fetch_sub(1, Ordering::SeqCst);
        }
        // SeqCst: the spinner's fence of the spinning protocol (module docs).
        fence(Ordering::SeqCst);
        if s.any_work() || s.next_timer() <= nanotime() {
            let mut idle = s.idle.lock();
            if let Some(p2) = s.pidleget(&mut idle) {
                drop(idle);
                m.p.set(Some(p2));
                p = p2;
                if was_spinning {
                    m.spinning.store(true, Ordering::Relaxed);
                    s.nmspinning.fetch_add(1, Ordering::SeqCst);
                }
                continue;
            }
        }
        check_dead(s);
        return None;
    }
}

/// Most Gs one `global_get` moves to a local queue.
const GLOBAL_BATCH: usize = 32;

/// Moves a batch from the global queue to `p`'s local queue and returns one G.
fn global_get(s: &'static Sched, p: &'static P) -> Option<GRef> {
    // SAFETY: the caller's M owns p.
    let local = unsafe { p.runq() };
    // A fair share, at most GLOBAL_BATCH: Go takes up to half its runq (128), but a big batch
    // pulls a wave of old Gs (ancestors' siblings in a fan-out tree) in front of the new ones;
    // skynet 1M at 1 P took 1188 ms with batches of 512 and 721 ms with 32 (5 runs each).
    s.global.get_batch(local, s.allp.len(), GLOBAL_BATCH)
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A cheap per-thread xorshift random number (victim selection).
pub(crate) fn fastrand() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            x = (r as *const _ as u64) ^ nanotime() ^ 0x9E37_79B9_7F4A_7C15;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x
    })
}

/// Steals work from other Ps (and runs their due timers). Up to four rounds.
fn steal_work(s: &'static Sched, p: &'static P) -> Option<GRef> {
    let n = s.allp.len();
    if n == 1 {
        return None;
    }
    for round in 0..4 {
        let last = round == 3;
        let start = fastrand() as usize % n;
        let now = nanotime();
        for i in 0..n {
            let v = &s.allp[(start + i) % n];
            if std::ptr::eq(v, p) {
                continue;
            }
            if v.timers_due(now) {
                time::run_timers(v, now);
                // SAFETY: this M owns p; timers ready Gs onto it.
                if let Some(g) = unsafe { p.runqget() } {
                    return Some(g);
                }
            }
            loop {
                // SAFETY: this M owns p.
                match v.stealer.steal_batch_and_pop(unsafe { p.runq() }) {
                    Steal::Success(g) => return Some(g),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
            if last {
                if let Some(g) = steal_runnext(v) {
                    return Some(g);
                }
            }
        }
    }
    None
}

/// Steals `v`'s runnext, but only if `v` has been running one G for a little while: a G that
/// was just readied into runnext is about to run there (a handoff), and stealing it would bounce
/// a ping-pong pair between threads.
fn steal_runnext(v: &'static P) -> Option<GRef> {
    let g = v.runnext.load(Ordering::Acquire);
    if g.is_null() {
        return None;
    }
    let st = v.status.load(Ordering::Relaxed);
    if st != P_USER && st != P_SYSCALL {
        return None;
    }
    let tick = v.schedtick.load(Ordering::Relaxed);
    // Sleep rather than spin, as Go's runqsteal does (usleep(3)): a spinning sibling hyperthread
    // would slow the very ping-pong it waits on, and while we sleep we stay counted as spinning,
    // so the readier's wakep does not pay a futex wake for every handoff.
    std::thread::sleep(std::time::Duration::from_micros(3));
    if v.schedtick.load(Ordering::Relaxed) != tick {
        return None;
    }
    // AcqRel: pairs with runqput's swap (we take ownership of the G it published).
    if v.runnext.compare_exchange(g, std::ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed).is_ok() {
        // SAFETY: runnext holds pointers made from GRefs.
        return Some(unsafe { GRef::from_ptr(g) });
    }
    None
}

/// Marks `g` RUNNING (the Acquire pairs with the Release stores that made it RUNNABLE in
/// ready or spawn, so the fields written by the readier are visible here).
fn casgstatus_running(g: GRef) {
    g::casgstatus(g, g::RUNNABLE, g::RUNNING, "execute");
}

/// Runs `g` on `m` until it parks, yields or finishes.
fn execute(s: &'static Sched, m: &'static M, g: GRef) {
    loop {
        casgstatus_running(g);
        let p = m.p.get().expect("execute without a P");
        p.schedtick.store(p.schedtick.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        m.curg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
        p.curg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
        g.0.preempt.store(false, Ordering::Relaxed);
        // SAFETY: the G is RUNNING and owned by this M (state table in g.rs).
        let exec = unsafe { &mut *g.0.exec.get() };
        if exec.co.is_none() {
            let stack = match get_stack(s, p, exec.custom_stack) {
                Ok(st) => st,
                Err(e) => {
                    eprintln!("fatal error: gort: cannot allocate a goroutine stack: {e}");
                    std::process::abort();
                }
            };
            g.0.stack_lo.store(stack.lo(), Ordering::Relaxed);
            g.0.stack_hi.store(stack.hi(), Ordering::Relaxed);
            let (glo, ghi) = stack.guard_range();
            exec.guard_lo = glo;
            exec.guard_hi = ghi;
            exec.guarded = stack.is_guarded();
            exec.co = Some(Coroutine::with_stack(stack, move |y: &crate::proc::GYielder, ()| goroutine_main(y, g)));
        }
        let r = exec.co.as_mut().expect("coroutine").resume(());
        // Back on the M's own stack. The G may have lost its P (hog retake) or taken another.
        m.curg.store(std::ptr::null_mut(), Ordering::Relaxed);
        let pnow = m.p.get();
        if let Some(pp) = pnow {
            pp.curg.store(std::ptr::null_mut(), Ordering::Relaxed);
        }
        match r {
            CoroutineResult::Return(()) => {
                goexit0(s, m, g);
                return;
            }
            CoroutineResult::Yield(y) => {
                if !exec.guarded {
                    let sp = g.0.park_sp.load(Ordering::Relaxed);
                    if sp != 0 && sp < g.0.stack_lo.load(Ordering::Relaxed) {
                        report_overflow(g, s.stacks.stack_size());
                    }
                }
                match y {
                    Yield::Park(commit) => {
                        // Release: pairs with ready's CAS (Acquire) so the parked state written by
                        // the G (wait reason, regs) is visible to the waker and to scanners.
                        g.0.status.store(g::WAITING, Ordering::Release);
                        // SAFETY: commit points at a closure on the parked G's frozen stack; it
                        // stays valid until the G is resumed, which cannot happen before commit
                        // publishes the G (park's contract), and we never touch it after the call.
                        let keep = unsafe { (*commit)(g) };
                        if keep {
                            return;
                        }
                        // Commit refused: the G runs on (no waker has seen it). A snapshot may
                        // have seen it WAITING, though, and hold it with the scan bit: wait that
                        // out (a plain store would clear the bit under the walker's feet, and the
                        // walker's release would later store WAITING over a queued G).
                        g::casgstatus(g, g::WAITING, g::RUNNABLE, "refused commit");
                        if m.p.get().is_none() {
                            s.global.push(g);
                            wakep();
                            return;
                        }
                        continue;
                    }
                    Yield::Gosched => {
                        g.0.status.store(g::RUNNABLE, Ordering::Release);
                        match m.p.get() {
                            // SAFETY: this M owns its P.
                            Some(pp) => unsafe { pp.runqput(g, false) },
                            None => s.global.push(g),
                        }
                        wakep();
                        return;
                    }
                    Yield::NeedP => {
                        g.0.status.store(g::RUNNABLE, Ordering::Release);
                        s.global.push(g);
                        wakep();
                        return;
                    }
                }
            }
        }
    }
}

#[cold]
fn report_overflow(g: GRef, size: usize) -> ! {
    let name = g.0.name.try_lock().and_then(|n| n.clone());
    crate::signal::fatal_overflow(g.id(), name.as_deref(), size)
}

/// Counts a goroutine about to be spawned against the guard plan's cap: past it, the goroutine's
/// stack could not be guarded, and (unless unguarded stacks are allowed) the spawn fails with an
/// error that says why and what to change.
pub(crate) fn claim_stack(s: &'static Sched) -> std::io::Result<()> {
    let Some(cap) = s.guards.spawn_cap else { return Ok(()) };
    // Relaxed: a counter; nothing is published through it.
    if s.stack_claims.fetch_add(1, Ordering::Relaxed) < cap {
        return Ok(());
    }
    s.stack_claims.fetch_sub(1, Ordering::Relaxed);
    let how = format!(
        "without lightweight guard pages (MADV_GUARD_INSTALL, Linux 6.13) each guard costs two of the \
         vm.max_map_count = {} memory mappings, and {} guarded stacks are all that fit",
        s.guards.max_map_count, s.guards.budget
    );
    Err(std::io::Error::new(
        std::io::ErrorKind::OutOfMemory,
        format!(
            "gort: {cap} goroutines are alive and another one could not get a guarded stack: {how}; \
             raise the limit (sysctl -w vm.max_map_count=N) or set GORT_UNGUARDED_STACKS=1 to run further \
             goroutines on unguarded stacks, whose overflows are detected only after the fact"
        ),
    ))
}

fn get_stack(s: &'static Sched, p: &'static P, custom: usize) -> std::io::Result<Stack> {
    if custom != 0 {
        return crate::stack::alloc_dedicated(custom);
    }
    // SAFETY: this M owns p.
    let cache = unsafe { p.stacks() };
    if let Some(st) = cache.pop() {
        return Ok(st);
    }
    s.stacks.get_batch(STACK_CACHE_MAX / 2, cache)?;
    match cache.pop() {
        Some(st) => Ok(st),
        None => s.stacks.get(),
    }
}

fn put_stack(s: &'static Sched, p: Option<&'static P>, st: Stack) {
    match p {
        Some(p) => {
            // SAFETY: this M owns p.
            let cache = unsafe { p.stacks() };
            cache.push(st);
            if cache.len() > STACK_CACHE_MAX {
                let mut spill: Vec<Stack> = cache.drain(..STACK_CACHE_MAX / 2).collect();
                s.stacks.put_batch(&mut spill);
            }
        }
        None => {
            let _ = s.stacks.put(st);
        }
    }
}

/// A goroutine finished: recycle its stack and G.
fn goexit0(s: &'static Sched, m: &'static M, g: GRef) {
    // SAFETY: the G finished on this M; nobody else references its exec.
    let exec = unsafe { &mut *g.0.exec.get() };
    let co = exec.co.take().expect("coroutine");
    let stack = co.into_stack();
    if exec.custom_stack != 0 {
        drop(stack);
    } else {
        if !exec.guarded && s.stacks.check_released(&stack).is_err() {
            report_overflow(g, s.stacks.stack_size());
        }
        put_stack(s, m.p.get(), stack);
    }
    exec.custom_stack = 0;
    // A goroutine that exits wired to its M releases it (Go would end the thread instead; gort's
    // Ms never exit, and the M's thread state is the user's to restore before exiting).
    if !g.0.lockedm.swap(std::ptr::null_mut(), Ordering::Relaxed).is_null() {
        m.lockedg.store(std::ptr::null_mut(), Ordering::Relaxed);
        g.0.lock_count.set(0);
    }
    if s.guards.spawn_cap.is_some() {
        s.stack_claims.fetch_sub(1, Ordering::Relaxed);
    }
    g.0.status.store(g::DEAD, Ordering::Relaxed);
    if g.0.has_name.swap(false, Ordering::Relaxed) {
        *g.0.name.lock() = None;
    }
    crate::proc::clear_labels(g);
    g.0.stack_lo.store(0, Ordering::Relaxed);
    g.0.stack_hi.store(0, Ordering::Relaxed);
    g.0.park_pc.store(0, Ordering::Relaxed);
    g.0.park_sp.store(0, Ordering::Relaxed);
    g.0.park_fp.store(0, Ordering::Relaxed);
    // Release: a scanner that sees IDLE must not see the old goroutine's fields half-cleared.
    g.0.status.store(g::IDLE, Ordering::Release);
    s.ngoroutines.fetch_sub(1, Ordering::Relaxed);
    gfput(s, m.p.get(), g);
}

fn gfput(s: &'static Sched, p: Option<&'static P>, g: GRef) {
    match p {
        Some(p) => {
            // SAFETY: this M owns p.
            let l = unsafe { p.gfree() };
            l.push(g);
            if l.len() > crate::p::GFREE_MAX {
                let half: Vec<GRef> = l.drain(..crate::p::GFREE_MAX / 2).collect();
                s.gfree.lock().extend(half);
            }
        }
        None => s.gfree.lock().push(g),
    }
}

/// Takes a free G (or allocates one).
pub(crate) fn gfget(s: &'static Sched, p: Option<&'static P>) -> GRef {
    if let Some(p) = p {
        // SAFETY: the caller's M owns p.
        let l = unsafe { p.gfree() };
        if let Some(g) = l.pop() {
            return g;
        }
        let mut gl = s.gfree.lock();
        let take = gl.len().min(crate::p::GFREE_MAX / 2);
        let at = gl.len() - take;
        l.extend(gl.drain(at..));
        drop(gl);
        if let Some(g) = l.pop() {
            return g;
        }
    } else if let Some(g) = s.gfree.lock().pop() {
        return g;
    }
    g::alloc_g()
}

// ---------------------------------------------------------------------------------------------
// Deadlock detection (Go's checkdead).
// ---------------------------------------------------------------------------------------------

/// If nothing can ever run again and some `run` caller waits, tells those callers. Called when
/// an M gives up its P and when a plain thread blocks.
/// Number of threads in this process (`Threads:` in /proc/self/status), if readable.
fn process_threads() -> Option<usize> {
    let st = std::fs::read_to_string("/proc/self/status").ok()?;
    st.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

pub(crate) fn check_dead(s: &'static Sched) {
    if !s.cfg.deadlock_detection || s.run_waiters.lock().is_empty() {
        return;
    }
    if s.npidle.load(Ordering::SeqCst) != s.allp.len()
        || s.nmspinning.load(Ordering::SeqCst) != 0
        || s.ext_active.load(Ordering::SeqCst) > 0
        || s.nsyscall.load(Ordering::SeqCst) > 0
    {
        return;
    }
    let idle = s.idle.lock();
    if idle.pidle.len() != s.allp.len() || !s.global.is_empty() || s.any_work() {
        return;
    }
    if s.next_timer() != u64::MAX || netpoll::poller().is_some_and(|pl| pl.waiters() > 0) {
        return;
    }
    let mut live = false;
    let mut waiting = Vec::new();
    g::for_each_g(|g| {
        let st = g.status();
        match st {
            g::RUNNABLE | g::RUNNING | g::SYSCALL => live = true,
            g::WAITING => {
                let r = crate::g::WaitReason::from_u8(g.0.wait_reason.load(Ordering::Relaxed));
                if r.externally_woken() {
                    live = true;
                }
                waiting.push(g);
            }
            _ => {}
        }
    });
    drop(idle);
    if live || s.ext_active.load(Ordering::SeqCst) > 0 {
        return;
    }
    // Threads the runtime has never seen (a `std::thread` that will send on a channel once it
    // has computed something, a thread blocked reading stdin) may still wake a goroutine, as a
    // goroutine in a system call would in Go. Count the process's threads: anything beyond the
    // Ms, sysmon and the registered plain threads (all parked, as ext_active is 0) is such a
    // thread, and then this is not (yet) a deadlock. Sysmon re-checks while it stays suspect.
    let known = s.mcount.load(Ordering::Relaxed) as isize + 1 + s.ext_threads.load(Ordering::SeqCst);
    if let Some(n) = process_threads() {
        if n as isize > known {
            s.dead_suspect.store(true, Ordering::Relaxed);
            return;
        }
    }
    s.dead_suspect.store(false, Ordering::Relaxed);
    // Only a `run` whose main goroutine is itself stuck is deadlocked; one whose main goroutine
    // has finished is about to wake anyway.
    let waiters: Vec<Arc<RunWaiter>> = {
        let mut rw = s.run_waiters.lock();
        let (stuck, rest): (Vec<_>, Vec<_>) = rw.drain(..).partition(|w| waiting.iter().any(|g| g.id() == w.main_goid));
        *rw = rest;
        stuck
    };
    if waiters.is_empty() {
        return;
    }
    let mut report = String::from("fatal error: all goroutines are asleep - deadlock!\n");
    let now = nanotime();
    waiting.sort_by_key(|g| g.id());
    for g in waiting {
        report.push('\n');
        report.push_str(&crate::proc::describe_waiting(g, now));
    }
    for w in waiters {
        *w.deadlock.lock() = Some(report.clone());
        // The thread is woken by taking its G out of the slot it parks in, never by readying it
        // while the slot still names it: the main goroutine may finish after all, and its
        // completion would then ready the thread a second time, parked on something else.
        // SeqCst: with the waiter's SeqCst publish-then-check in `wait_once_unless`, either we
        // find its G in the slot, or it sees `reported` and does not stay parked.
        w.reported.store(true, Ordering::SeqCst);
        if w.task.done().take_waiter(w.thread_g) {
            // SAFETY: `take_waiter` took the thread's G out of the slot's word, where the `run`
            // thread's park commit published it, and every other taker of that word swaps or
            // CASes it: this is the one `ready` for that park.
            unsafe { crate::park::ready(w.thread_g) };
        }
    }
}
