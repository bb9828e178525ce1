//! sysmon: the monitor thread (Go's `sysmon` in proc.go). It holds no P and runs no goroutines.
//!
//! Every tick (20 µs, doubling after 50 ticks without a retake up to 1 ms while any P is busy,
//! 10 ms when all are idle) it:
//! - **retakes** Ps: a P in `P_SYSCALL` whose goroutine has been in `blocking` for a whole tick
//!   (>= 20 µs) is handed to another M if there is work for it; a goroutine that has run for
//!   10 ms without entering the scheduler while work waits for its P (queued Gs or due timers)
//!   is asked to yield, which it does at the entry of its next blocking operation (a channel
//!   operation, a `Mutex` or `RwLock` lock, a spawn); if it is still running one tick later
//!   (it computes without any), its P is taken and handed off likewise (the hog keeps running
//!   on its thread, without a P, until its next runtime entry). Asking first keeps
//!   `GOMAXPROCS` threads running goroutines: a hand-off lets the hog and the P's new M run at
//!   once, and when they share data (a lock), each slows the other down. Every busy P's run
//!   also goes to the hog detector (`hog.rs`), which reports runs past its threshold whether
//!   or not work waits;
//! - starts an M for a hand-off whose wake was skipped (`sched/idle.rs`) and that stands in
//!   `runnext` behind a goroutine that has not scheduled for a whole tick, while a P idles and
//!   no M spins;
//! - starts an M if a timer is overdue and no M is awake to run it;
//! - refreshes the coarse clock used for wait timestamps;
//! - returns cold stacks' memory (about once a second);
//! - prints `GORT_SCHEDTRACE` lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::nanotime;
use crate::g::G;
use crate::globrunq::global;
use crate::hog;
use crate::netpoll;
use crate::p::{P_IDLE, P_STATE, P_SYSCALL, P_USER};
use crate::sched::deadlock::{recheck_dead, DEAD_SUSPECT};
use crate::sched::idle::{handoff_wakes_futile, handoffp, wakep};
use crate::sched::state::Sched;
use crate::stack::overflow::ensure_altstack;

/// A goroutine running this long without a scheduling point loses its P when work waits.
pub(crate) const FORCE_PREEMPT_NS: u64 = 10_000_000;
/// Free stacks kept hot (resident) in the pool; the rest are scavenged.
const STACKS_KEPT_HOT: usize = 4096;

struct PState {
    schedtick: u64,
    schedwhen: u64,
    syscalltick: u64,
    syscallwhen: u64,
    /// Whether the goroutine of the current run was asked to yield.
    asked: bool,
    hog: hog::Watch,
}

pub(crate) fn start(s: &'static Sched) {
    // Before the thread starts, so that the settings hold once the runtime is running.
    if let Some(d) = s.cfg.hog_threshold {
        hog::set_threshold(d);
    }
    if let Some(on) = s.cfg.hog_trace {
        hog::set_trace(on);
    }
    std::thread::Builder::new().name("gort-sysmon".into()).spawn(move || run(s)).expect("gort: cannot start sysmon");
}

fn run(s: &'static Sched) -> ! {
    ensure_altstack();
    let mut st: Vec<PState> = s
        .allp
        .iter()
        .map(|_| PState {
            schedtick: 0,
            schedwhen: 0,
            syscalltick: 0,
            syscallwhen: 0,
            asked: false,
            hog: hog::Watch::default(),
        })
        .collect();
    let mut delay_us: u64 = 20;
    let mut idle_ticks = 0u32;
    let start = nanotime();
    let mut last_trace = start;
    let mut last_scavenge = start;
    let mut last_dead_check = start;
    loop {
        std::thread::sleep(Duration::from_micros(delay_us));
        let now = nanotime();
        let retook = retake(s, &mut st, now);
        let all_idle = s.npidle.load(Ordering::Relaxed) == s.allp.len();
        let max_us = if all_idle && s.nsyscall.load(Ordering::Relaxed) == 0 { 10_000 } else { 1_000 };
        if retook {
            idle_ticks = 0;
            delay_us = 20;
        } else {
            idle_ticks += 1;
            if idle_ticks > 50 {
                delay_us = (delay_us * 2).min(max_us);
            }
        }
        delay_us = delay_us.min(max_us);
        // An overdue timer and nobody awake to run it (every M asleep, a P idle): start one.
        if s.next_timer().saturating_add(1_000_000) < now
            && s.npidle.load(Ordering::Relaxed) > 0
            && s.nmspinning.load(Ordering::Relaxed) == 0
        {
            wakep();
        }
        // Nobody has polled the network for 10 ms (every M busy): poll for them.
        let last = netpoll::LASTPOLL.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) > 10_000_000 {
            let mut any = false;
            netpoll::poll_now(|g| {
                global().push(g);
                any = true;
            });
            if any {
                wakep();
            }
        }
        // Everything asleep except threads the runtime does not know: re-check for a deadlock
        // (one of them may have exited), at most every 100 ms.
        if all_idle && DEAD_SUSPECT.load(Ordering::Relaxed) && now - last_dead_check > 100_000_000 {
            last_dead_check = now;
            recheck_dead(s);
        }
        if now - last_scavenge > 1_000_000_000 {
            last_scavenge = now;
            s.stacks.scavenge(STACKS_KEPT_HOT);
            crate::blockcache::scavenge();
        }
        if let Some(ms) = s.cfg.schedtrace_ms {
            if now - last_trace >= ms * 1_000_000 {
                last_trace = now;
                eprintln!("{}", schedtrace_line(s, (now - start) / 1_000_000));
            }
        }
    }
}

/// Ms woken for a skipped hand-off standing behind a goroutine that did not schedule for a
/// whole tick (`Metrics::stranded_wakes`).
pub(crate) static STRANDED_WAKES: AtomicU64 = AtomicU64::new(0);

/// Ps taken from a goroutine in `blocking` (handed off because it stayed there a whole tick).
pub(crate) static SYSCALL_RETAKES: AtomicU64 = AtomicU64::new(0);

/// Asks goroutine `g` (a `curg` sysmon read from a P whose `status` it read as `P_USER`) to
/// yield at its next blocking operation (`park::preempt_point`): its `preempt`, then the flag
/// of the M that status names, which the goroutine reads without knowing its G. If the M has
/// moved on to another goroutine meanwhile, that one looks once for a request not meant for it.
fn ask_to_yield(g: *mut G, status: u32) {
    if g.is_null() {
        return;
    }
    // SAFETY: curg holds pointers made from GRefs (never freed).
    unsafe { (*g).preempt.store(true, Ordering::Relaxed) };
    let tag = status & !P_STATE;
    if let Some(m) = crate::m::all().into_iter().find(|m| m.tag == tag) {
        // Release: pairs with the Acquire swap in `preempt_point`'s slow path (the `preempt`
        // above is seen with it).
        m.preempt.store(true, Ordering::Release);
    }
}

/// Takes Ps from goroutines stuck in `blocking` or hogging the CPU (asking hogs first). Returns
/// whether it took a P or woke an M, which restarts the fast ticks. An ask does not: the asked
/// goroutine yields at its next blocking operation, and a tick at the busy pace is soon enough
/// to find out whether it did. Fast ticks after every ask woke sysmon ~50 times per 10 ms slice,
/// and when the box's other CPUs were busy each wake took the goroutines' CPU.
fn retake(s: &'static Sched, st: &mut [PState], now: u64) -> bool {
    let mut took = false;
    for (i, p) in s.allp.iter().enumerate() {
        let ps = &mut st[i];
        let status = p.status.load(Ordering::Relaxed);
        if status & P_STATE != P_USER {
            ps.hog.ended(now);
        }
        match status & P_STATE {
            P_SYSCALL => {
                let t = p.syscalltick.load(Ordering::Relaxed);
                if t != ps.syscalltick {
                    ps.syscalltick = t;
                    ps.syscallwhen = now;
                    continue;
                }
                // In the same blocking call for at least one tick. Keep the P only if nothing
                // waits for it and another M is already free to pick up new work.
                let work = p.has_work() || !global().is_empty() || p.timer0.load(Ordering::Relaxed) != u64::MAX;
                let free_m = s.nmspinning.load(Ordering::Relaxed) + s.npidle.load(Ordering::Relaxed) > 0;
                if !work && free_m && now - ps.syscallwhen < FORCE_PREEMPT_NS {
                    continue;
                }
                // Acquire: pairs with the Release in entersyscall; the P's owner-only fields
                // become ours to hand off.
                if p.status.compare_exchange(status, P_IDLE, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    took = true;
                    SYSCALL_RETAKES.fetch_add(1, Ordering::Relaxed);
                    handoffp(s, p);
                }
            }
            P_USER => {
                let t = p.schedtick.load(Ordering::Relaxed);
                if t != ps.schedtick {
                    ps.hog.ended(now);
                    ps.schedtick = t;
                    ps.schedwhen = now;
                    ps.asked = false;
                    continue;
                }
                ps.hog.running(p, t, now - ps.schedwhen, now);
                // A hand-off whose wake was skipped (`idle.rs`), left in `runnext` behind a
                // goroutine that has not scheduled for a whole tick (it computes on), with a P
                // idle and nobody looking: wake an M to take it. Only then: other work standing
                // behind a P whose thread the OS has descheduled is `take_stranded`'s, and a
                // thread woken for it would only compete for the same busy CPUs.
                if handoff_wakes_futile()
                    && p.runnext.load(Ordering::Relaxed) != 0
                    && s.npidle.load(Ordering::Relaxed) > 0
                    && s.nmspinning.load(Ordering::Relaxed) == 0
                {
                    STRANDED_WAKES.fetch_add(1, Ordering::Relaxed);
                    wakep();
                    took = true;
                }
                if now - ps.schedwhen < FORCE_PREEMPT_NS {
                    continue;
                }
                let work = p.has_work() || !global().is_empty() || p.timers_due(now);
                if !work {
                    continue;
                }
                let g = p.curg.load(Ordering::Relaxed);
                if !ps.asked {
                    // A tick for the goroutine to reach a blocking operation and yield.
                    ps.asked = true;
                    ask_to_yield(g, status);
                    continue;
                }
                // Against the M's way back into runtime mode (`usergate.rs`).
                if p.gate.retake(&p.status, status, P_IDLE) {
                    // Again: it gives up its thread at its next blocking operation.
                    ask_to_yield(g, status);
                    took = true;
                    hog::count_retake();
                    ps.hog.ended(now);
                    ps.schedwhen = now;
                    ps.asked = false;
                    handoffp(s, p);
                }
            }
            _ => {
                ps.schedtick = p.schedtick.load(Ordering::Relaxed);
                ps.schedwhen = now;
                ps.asked = false;
            }
        }
    }
    took
}

/// One `GORT_SCHEDTRACE` line, in the shape of Go's `GODEBUG=schedtrace`.
pub(crate) fn schedtrace_line(s: &Sched, ms: u64) -> String {
    let queues: Vec<String> = s.allp.iter().map(|p| p.runq_len().to_string()).collect();
    format!(
        "SCHED {}ms: gomaxprocs={} idleprocs={} threads={} spinningthreads={} idlethreads={} runqueue={} [{}]",
        ms,
        s.allp.len(),
        s.npidle.load(Ordering::Relaxed),
        s.mcount.load(Ordering::Relaxed) + 1,
        s.nmspinning.load(Ordering::Relaxed),
        s.nmidle.load(Ordering::Relaxed),
        global().len(),
        queues.join(" ")
    )
}
