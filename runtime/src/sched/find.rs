//! Finding work for an M (Go's `findRunnable`): timers, the global queue's fair share, the
//! local queue, the network, stealing from other Ps, and giving the P back.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crossbeam_deque::Steal;

use crate::clock::{cycles, nanotime, CYCLES_100US};
use crate::fastrand::fastrand;
use crate::g::GRef;
use crate::globrunq::global;
use crate::m::M;
use crate::netpoll;
use crate::p::{P, P_RUNNING, P_STATE, P_USER};
use crate::sched::deadlock::check_dead;
use crate::sched::idle::{note_futile_spin, sleep_until_handed_p, wakep};
use crate::sched::netspin::{net_spin_on, note_net_spin_found, note_net_spin_ran_out, NET_SPIN_NS};
use crate::sched::state::Sched;
use crate::sched::timers::{run_timers, spin_for_timer};

/// How many 3 µs sleeps a spinning M that found nothing takes, still spinning and holding its
/// P, before it gives the P back while other Ps are busy (see `find_runnable`). Without them, in
/// a ping-pong between Ps each hand-off's `wakep` futex-wakes an M that gives up again at once
/// (the measurements are in the benchmark README, run 6). Go sleeps `usleep(3)` in the same
/// place (`runqgrab`) but only when a runnext is there to steal.
const SPIN_LINGER: u32 = 5;

/// Most schedules between two readings of the cycle counter by [`take_stranded`]'s pacing.
const STRANDED_MAX_STRIDE: u64 = 64;

/// How long work may wait on a P that stays on one goroutine (or in the runtime) before a P that
/// schedules takes it (see [`take_stranded`]).
const STRANDED_NS: u64 = 300_000;

/// Goroutines taken by [`take_stranded`] (since start).
static STRANDED_TAKES: AtomicU64 = AtomicU64::new(0);

/// Goroutines a P that was scheduling took from a P that stayed on one goroutine while they
/// waited (since start).
pub(crate) fn stranded_takes() -> u64 {
    STRANDED_TAKES.load(Ordering::Relaxed)
}

/// Finds a runnable G for `m` on `p`, or gives `p` back and returns None.
// `inline`: its one caller, the M loop, is in another module (another codegen unit), and a
// call per schedule is measurable on a park-per-operation workload.
#[inline]
pub(crate) fn find_runnable(s: &'static Sched, m: &'static M, mut p: &'static P) -> Option<GRef> {
    let mut linger = 0u32;
    // When this M began spinning for the network (`netspin.rs`), 0 if it has not.
    let mut net_spin_since = 0u64;
    if s.allp.len() > 1 {
        let tick = p.schedtick.load(Ordering::Relaxed);
        // SAFETY: this M owns p.
        if tick >= unsafe { p.watcher() }.next_tick {
            if let Some(g) = take_stranded(s, p, tick) {
                return Some(g);
            }
        }
    }
    loop {
        if p.timer0.load(Ordering::Relaxed) != u64::MAX {
            m.t_out.set(0);
            run_timers(p, p, nanotime());
        }
        // Fairness: every 61st schedule, look at the global queue first, then at the local
        // queue's head before `runnext`: a pair handing off through `runnext` would otherwise
        // keep the queue's goroutines (a timer's sleepers, a yielder) waiting for as long as it
        // runs.
        if p.schedtick.load(Ordering::Relaxed).is_multiple_of(61) {
            // Other Ms fill the global queue: what is found there may have been readied after
            // the last switch-out.
            m.t_out.set(0);
            if let Some(g) = global_get(s, p) {
                return Some(g);
            }
            // SAFETY: this M owns p.
            if let Some(g) = unsafe { p.runq().pop() } {
                return Some(g);
            }
        }
        // SAFETY: this M owns p.
        if let Some(g) = unsafe { p.runqget() } {
            return Some(g);
        }
        // Past the fast path: the last switch-out's tick no longer stands for now.
        m.t_out.set(0);
        if let Some(g) = global_get(s, p) {
            return Some(g);
        }
        // The network, if someone waits on it and no M is blocked polling already.
        if netpoll::worth_polling() {
            let (mut first, mut more) = (None, false);
            netpoll::poll_now(|g| {
                if first.is_none() {
                    first = Some(g);
                } else {
                    // SAFETY: this M owns p.
                    unsafe { p.runqput(g, false) };
                    more = true;
                }
            });
            if let Some(g) = first {
                if more {
                    wakep();
                }
                if net_spin_since != 0 {
                    note_net_spin_found();
                }
                return Some(g);
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
                    run_timers(p, v, now);
                }
            }
            // SAFETY: this M owns p.
            if let Some(g) = unsafe { p.runqget() } {
                return Some(g);
            }
        }

        // Nothing, but a timer is due too soon to sleep for: wait for it here, with the P.
        if spin_for_timer(s, p) {
            continue;
        }
        // Nothing, but goroutines wait on the network and answers have been coming soon: look
        // again, every queue and the network, for a while before giving the P back. A yield
        // between rounds lets a thread that shares this CPU (the peer, perhaps) answer.
        if m.spinning.load(Ordering::Relaxed) && net_spin_on() && netpoll::worth_polling() {
            let now = nanotime();
            if net_spin_since == 0 {
                net_spin_since = now;
            }
            if now - net_spin_since < NET_SPIN_NS {
                std::thread::yield_now();
                continue;
            }
            note_net_spin_ran_out();
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
        match give_p_back(s, m, p) {
            Some(p2) => p = p2,
            None => return None,
        }
    }
}

/// `find_runnable`'s end: gives `p` back and joins the idle Ms, unless work turned up meanwhile;
/// returns the P to look again with, or None to go to sleep (`stopm`). Out of line: the loop
/// above is the scheduler's hot path.
#[cold]
#[inline(never)]
fn give_p_back(s: &'static Sched, m: &'static M, p: &'static P) -> Option<&'static P> {
    let mut idle = s.idle.lock();
    if !global().is_empty() {
        return Some(p);
    }
    s.pidleput(&mut idle, p);
    m.p.set(None);
    // Join the idle Ms now, not in `stopm`: work readied meanwhile then wakes this M, still
    // running (`idle.rs`, the spinning protocol, says why that matters).
    s.mput(&mut idle, m);
    m.idle_early.set(true);
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
        if !idle.holds(m) {
            // `startm` took this M off the list for that work and is handing it a P (with
            // `spinning` set as its caller counted it).
            drop(idle);
            m.idle_early.set(false);
            sleep_until_handed_p(m);
            return m.p.get();
        }
        if let Some(p2) = s.pidleget(&mut idle) {
            s.mremove(&mut idle, m);
            m.idle_early.set(false);
            drop(idle);
            m.p.set(Some(p2));
            if was_spinning {
                m.spinning.store(true, Ordering::Relaxed);
                s.nmspinning.fetch_add(1, Ordering::SeqCst);
            }
            return Some(p2);
        }
    }
    // Woken to spin, it found nothing (`idle.rs`). Only this M's thread touches the flag now.
    if was_spinning && m.woken_to_spin.load(Ordering::Relaxed) {
        m.woken_to_spin.store(false, Ordering::Relaxed);
        note_futile_spin();
    }
    check_dead(s);
    None
}

/// Most Gs one `global_get` moves to a local queue.
const GLOBAL_BATCH: usize = 32;

/// Moves a batch from the global queue to `p`'s local queue and returns one G.
fn global_get(s: &'static Sched, p: &'static P) -> Option<GRef> {
    // SAFETY: the caller's M owns p.
    let local = unsafe { p.runq() };
    // A fair share, at most GLOBAL_BATCH: Go takes up to half its runq (128), but a big batch
    // pulls a wave of old Gs (ancestors' siblings in a fan-out tree) in front of the new ones
    // (skynet's A/B of batch sizes is in the benchmark README, run 5).
    global().get_batch(local, s.allp.len(), GLOBAL_BATCH)
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
                run_timers(p, v, now);
                // SAFETY: this M owns p; timers ready Gs onto it.
                if let Some(g) = unsafe { p.runqget() } {
                    return Some(g);
                }
            }
            if let Some(g) = steal_batch(p, v) {
                return Some(g);
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

/// Takes work that waits on another P whose `schedtick` has stood for [`STRANDED_NS`]: that P
/// has stayed on one goroutine (or in the runtime) all that time, so its queue, its `runnext`
/// and its due timers are stranded behind it. Its M may be descheduled (by the OS for a kernel
/// thread, by the host for a stolen vCPU: milliseconds on a busy VM), or its goroutine long.
/// Idle Ps steal such work anyway; this is for the case where every P is busy, each with a
/// goroutine that keeps yielding back to it, so that none goes looking. sysmon's retake would
/// free the P only after 10 ms, and only by starting another thread, which then competes for a
/// CPU with the ones already running. The stuck P's own goroutine is not touched.
///
/// Paced to look about every 100 µs, whatever the rate of schedules: another P's tick is on a
/// line its owner writes at every schedule, and reading it at every few of ours would cost both
/// Ps a cache miss each time, which Ps that switch every few dozen ns feel. So this P reads the
/// cycle counter every `stride` schedules (`tick` is its own `schedtick`), doubling the stride
/// while the looks come too often and halving it while they come too seldom; the runtime clock
/// is read only for a P that stood with work waiting.
#[inline(never)]
fn take_stranded(s: &'static Sched, p: &'static P, tick: u64) -> Option<GRef> {
    // SAFETY: this M owns p.
    let wr = unsafe { p.watcher() };
    let c = cycles();
    let gap = c.wrapping_sub(wr.last);
    if gap < CYCLES_100US {
        wr.stride = (wr.stride * 2).clamp(1, STRANDED_MAX_STRIDE);
        wr.next_tick = tick + wr.stride;
        return None;
    }
    if gap > 2 * CYCLES_100US {
        wr.stride = (wr.stride / 2).max(1);
    }
    wr.next_tick = tick + wr.stride;
    wr.last = c;
    // A P with work of its own (beyond the goroutine that just yielded back to it) takes none:
    // the stranded work would only wait in its queue instead, and moving it costs both Ps
    // misses (a spawner's helper would keep taking children it has no time to run).
    // SAFETY: this M owns p.
    if unsafe { p.runq() }.len() + usize::from(p.runnext.load(Ordering::Relaxed) != 0) > 1 {
        return None;
    }
    wr.peers.resize(s.allp.len(), crate::p::Watch::default());
    for (v, w) in s.allp.iter().zip(wr.peers.iter_mut()) {
        let tick = v.schedtick.load(Ordering::Relaxed);
        let st = v.status.load(Ordering::Relaxed) & P_STATE;
        if tick != w.tick || (st != P_USER && st != P_RUNNING) || std::ptr::eq(v, p) {
            *w = crate::p::Watch { tick, since: 0 };
            continue;
        }
        if !v.has_work() && v.timer0.load(Ordering::Relaxed) == u64::MAX {
            w.since = 0;
            continue;
        }
        let now = nanotime();
        if w.since == 0 {
            // The tick stood since the last look, one check ago at least: start the clock now
            // (late rather than early, so that a P is never judged on a guess).
            w.since = now;
            continue;
        }
        if now - w.since < STRANDED_NS {
            continue;
        }
        if v.timers_due(now) {
            // Its sleepers join our queue; the next schedule finds them.
            run_timers(p, v, now);
        }
        if let Some(g) = steal_batch(p, v).or_else(|| take_runnext(v, v.runnext.load(Ordering::Relaxed))) {
            STRANDED_TAKES.fetch_add(1, Ordering::Relaxed);
            return Some(g);
        }
    }
    None
}

/// Steals `v`'s runnext, but only if `v` did not schedule for a little while: a G that was just
/// readied into runnext is about to run there (a handoff), and stealing it would bounce a
/// ping-pong pair between threads. Whatever `v`'s state: a P whose M is in the scheduler (or
/// was just handed the P) and was descheduled by the kernel right there strands its runnext as
/// surely as one running a long goroutine, and an M that saw it at its re-check before going idle
/// would otherwise cycle between giving a P back and taking one again.
// Out of line: it sleeps anyway, and its code would otherwise sit in the scheduler's hot loop.
#[cold]
#[inline(never)]
fn steal_runnext(v: &'static P) -> Option<GRef> {
    let g = v.runnext.load(Ordering::Relaxed);
    if g == 0 {
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
    take_runnext(v, g)
}

/// Moves half of `v`'s queue to `p`'s (the caller's M owns `p`) and returns one of them.
fn steal_batch(p: &'static P, v: &'static P) -> Option<GRef> {
    loop {
        // SAFETY: the caller's M owns p.
        match v.stealer.steal_batch_and_pop(unsafe { p.runq() }) {
            Steal::Success(g) => return Some(g),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

/// Takes `g` (read from `v`'s runnext) if the slot still holds it.
fn take_runnext(v: &'static P, g: usize) -> Option<GRef> {
    // The CAS Acquires the G the put published (we take ownership of it).
    // SAFETY: runnext holds pointers made from GRefs.
    v.runnext.take_if(g).then(|| unsafe { GRef::from_ptr(g as *const crate::g::G) })
}
