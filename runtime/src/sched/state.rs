//! The scheduler's shared state: the Ps, the idle P and M lists behind the sched lock, the
//! counters the spinning protocol reads without it, the stack pool and the free G list.

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::env::Config;
use crate::g::GRef;
use crate::globrunq::global;
use crate::m::M;
use crate::p::{P, P_IDLE, P_RUNNING};
use crate::stack::{GuardPlan, StackPool};

/// State protected by the sched lock.
pub(crate) struct Idle {
    /// Idle Ps.
    pub(crate) pidle: Vec<&'static P>,
    /// Idle Ms, sleeping on their notes (or about to: `find::give_p_back`); a stack.
    pub(crate) midle: Vec<&'static M>,
    /// The one idle M sleeping with a timeout (until the earliest timer), if any.
    pub(crate) timer_m: Option<&'static M>,
}

impl Idle {
    /// Whether `m` is on the idle M list.
    pub(crate) fn holds(&self, m: &'static M) -> bool {
        self.midle.iter().any(|x| std::ptr::eq(*x, m))
    }
}

pub(crate) struct Sched {
    pub(crate) cfg: Config,
    /// The M loop (`sched/mod.rs`), handed down so that the idle protocol can start Ms without
    /// depending on the loop they run.
    pub(crate) mstart: fn(&'static Sched, &'static M) -> !,
    pub(crate) allp: &'static [P],
    pub(crate) idle: Mutex<Idle>,
    /// Number of idle Ps (mirrors `idle.pidle.len()`, readable without the lock).
    pub(crate) npidle: AtomicUsize,
    /// Number of spinning Ms.
    pub(crate) nmspinning: AtomicUsize,
    /// Number of idle Ms.
    pub(crate) nmidle: AtomicUsize,
    pub(crate) mcount: AtomicUsize,
    pub(crate) stacks: StackPool,
    /// How many goroutines may hold a stack, so that each is guarded.
    pub(crate) guards: GuardPlan,
    /// Goroutines spawned and not yet finished, counted against `guards.spawn_cap`.
    pub(crate) stack_claims: AtomicUsize,
    /// Global free G list.
    pub(crate) gfree: Mutex<Vec<GRef>>,
    /// Live goroutines' share that is not on a P's `nlive`: spawned, or finished, by an M
    /// without a P (a plain thread's spawn, an exit after a lost P).
    pub(crate) nlive_other: AtomicIsize,
    pub(crate) next_goid: AtomicU64,
    pub(crate) main_goid_taken: AtomicBool,
    /// Deadline of the timer M's sleep (u64::MAX when none sleeps with a timeout).
    pub(crate) timer_sleep_until: AtomicU64,
    /// Goroutines currently inside `blocking`.
    pub(crate) nsyscall: AtomicUsize,
}

static SCHED: OnceLock<&'static Sched> = OnceLock::new();

impl Sched {
    /// Live goroutines (spawned and not yet finished): the Ps' shares and the rest, summed. Not
    /// a snapshot: spawns and exits during the sum may be counted or not.
    pub(crate) fn live_goroutines(&self) -> usize {
        let sum: isize = self.allp.iter().map(|p| p.nlive.0.load(Ordering::Relaxed)).sum::<isize>()
            + self.nlive_other.load(Ordering::Relaxed);
        sum.max(0) as usize
    }

    pub(crate) fn idle_counts(&self) -> (usize, usize) {
        let idle = self.idle.lock();
        (self.npidle.load(Ordering::SeqCst), idle.pidle.len())
    }
}

/// The scheduler if it has started.
#[inline]
pub(crate) fn sched_if_started() -> Option<&'static Sched> {
    SCHED.get().copied()
}

/// The scheduler, for code that only runs once it has started (on an M, on a goroutine, or
/// with a G that a started runtime made).
#[inline]
pub(crate) fn started() -> &'static Sched {
    SCHED.get().copied().expect("gort: the runtime has not started")
}

/// Publishes the scheduler (once, by `start`, before it starts any thread that reads it).
pub(crate) fn publish(s: &'static Sched) {
    let _ = SCHED.set(s);
}

impl Sched {
    /// Puts `p` on the idle list. Caller holds the sched lock (`idle`).
    ///
    /// A goroutine readied from user code into the `runnext` of a P that was taken from its M
    /// (`park::ready_from_user`) may land here after the last check of the P's queues: it is
    /// moved to the global queue, which the callers re-check after their fence (`runnext.rs`,
    /// invariant 2).
    pub(crate) fn pidleput(&self, idle: &mut Idle, p: &'static P) {
        let g = p.runnext.rescue_on_idle(&p.status, P_IDLE);
        idle.pidle.push(p);
        // SeqCst: part of the spinning protocol (module docs): pairs with the fence in wakep.
        self.npidle.fetch_add(1, Ordering::SeqCst);
        if g != 0 {
            // SAFETY: runnext only ever holds pointers made from GRefs.
            global().push(unsafe { GRef::from_ptr(g as *const crate::g::G) });
        }
    }

    /// Takes an idle P, marking it RUNNING for its new owner. Caller holds the sched lock.
    pub(crate) fn pidleget(&self, idle: &mut Idle) -> Option<&'static P> {
        let p = idle.pidle.pop()?;
        self.npidle.fetch_sub(1, Ordering::SeqCst);
        p.status.store(P_RUNNING, Ordering::Relaxed);
        Some(p)
    }

    /// Puts `m` on the idle M list. Caller holds the sched lock.
    pub(crate) fn mput(&self, idle: &mut Idle, m: &'static M) {
        idle.midle.push(m);
        self.nmidle.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the M that joined the idle list last (for `startm`). Caller holds the sched lock.
    pub(crate) fn mget(&self, idle: &mut Idle) -> Option<&'static M> {
        let m = idle.midle.pop()?;
        self.forget_idle_m(idle, m);
        Some(m)
    }

    /// Takes `m` itself off the idle list; false if it is not there (`startm` took it, to hand
    /// it a P). Caller holds the sched lock.
    pub(crate) fn mremove(&self, idle: &mut Idle, m: &'static M) -> bool {
        let Some(pos) = idle.midle.iter().position(|x| std::ptr::eq(*x, m)) else {
            return false;
        };
        idle.midle.swap_remove(pos);
        self.forget_idle_m(idle, m);
        true
    }

    /// The bookkeeping of an M leaving the idle list: the count, and the timer M's post.
    fn forget_idle_m(&self, idle: &mut Idle, m: &'static M) {
        self.nmidle.fetch_sub(1, Ordering::Relaxed);
        if idle.timer_m.is_some_and(|t| std::ptr::eq(t, m)) {
            idle.timer_m = None;
            self.timer_sleep_until.store(u64::MAX, Ordering::SeqCst);
        }
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
    pub(crate) fn any_work(&self) -> bool {
        !global().is_empty() || self.allp.iter().any(|p| p.has_work())
    }

    /// Earliest timer across all Ps.
    pub(crate) fn next_timer(&self) -> u64 {
        self.allp.iter().map(|p| p.timer0.load(Ordering::Relaxed)).min().unwrap_or(u64::MAX)
    }
}
