//! Idle Ps and Ms, and the spinning protocol that wakes Ms: `wakep`, `startm`, `stopm`,
//! `handoffp`, and the hand-offs of Ms wired to a goroutine (`lock_os_thread`).
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
//! looks for work to steal. Whoever makes a G runnable calls `wakep`, which starts a new
//! spinning M only if there is an idle P **and no M is spinning already** (one spinner at a
//! time finds new work; when it finds some it stops spinning, and if it was the last spinner it
//! calls `wakep` so the search continues). The delicate part is the spinner giving up:
//!
//! - submitter: push G (Release); `fence(SeqCst)`; read `npidle`/`nmspinning` (or push G
//!   with a `SeqCst` RMW and no fence: `wakep_after_sc_publish`).
//! - spinner:   `pidleput` (npidle++); `nmspinning--`; `fence(SeqCst)`; re-check every queue.
//!
//! With both fences, either the submitter sees the spinner gone (and an idle P) and starts an M,
//! or the spinner's re-check sees the G and takes a P back. No G is stranded.
//!
//! One exception, by choice: a goroutine that readies another into its own P's empty `runnext`
//! (a hand-off: it will usually block next, and its P then runs the G) skips the wake while
//! wakes keep failing: while Ms woken to spin have found nothing [`FUTILE_SKIP`] times more
//! than they found work ([`FUTILE_SPINS`]). In a ping-pong every such wake is futile (the
//! owner takes its `runnext` long before a thief may), and each one costs the woken thread a
//! spin and a linger, and the pair a preemption whenever the two share a CPU. The G is not
//! lost: its P runs it at its next schedule, a thief takes it as usual, and if the P does not
//! schedule for a whole sysmon tick (its goroutine computes on) sysmon wakes an M for it. Woken
//! Ms that find work bring the count down, so waking resumes once it pays again.
//!
//! Which M the submitter starts matters too: the idle list is a stack, and an M joins it in the
//! same critical section in which it gives its P back (`find::give_p_back`), before its re-check
//! and long before it sleeps. So a G readied meanwhile goes to the M that is still running on its
//! CPU, which its wake-up reaches without a futex, rather than to one asleep, which the kernel
//! may queue behind the submitter on the submitter's CPU (it places a wakee there when no CPU is
//! idle at that instant) while the giver's CPU goes idle. Such an M, taken off the list by
//! `startm`, finds itself gone from the list at its re-check or in `stopm` and waits for the P
//! it is handed.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::clock::nanotime;
use crate::globrunq::global;
use crate::m::{current_m, set_current_m, M};
use crate::netpoll;
use crate::p::{P, P_IDLE, P_RUNNING};
use crate::sched::netspin::note_poll_woke_after;
use crate::sched::state::{sched_if_started, Sched};

/// Ms woken to spin for readied work that gave their P back having found nothing, less those
/// that found work, between 0 and [`FUTILE_MAX`] (an M that spins on its own, its goroutine
/// having parked, does not count). A hint (Relaxed, racy updates), for the hand-off exception
/// in the module docs. It starts at the ceiling: a program's first hand-offs wake nobody until
/// woken Ms have found work a few times (sysmon's wake for a stranded hand-off counts), so that
/// a pair's first thousand hand-offs do not keep waking a thread, which the OS may then place
/// beside the pair.
pub(crate) static FUTILE_SPINS: AtomicU32 = AtomicU32::new(FUTILE_MAX);

/// The futile-spin count from which a hand-off into an empty `runnext` wakes nobody.
pub(crate) const FUTILE_SKIP: u32 = 4;
/// Its ceiling: once waking has stopped, it takes this many woken Ms finding work, less
/// [`FUTILE_SKIP`] - 1, to start again, so that a stolen partner now and then (a pair whose
/// thread the OS preempted) does not turn the futile wakes back on at once.
pub(crate) const FUTILE_MAX: u32 = 8;

/// Counts an M woken to spin that found nothing and goes to sleep.
#[cold]
pub(crate) fn note_futile_spin() {
    let n = FUTILE_SPINS.load(Ordering::Relaxed);
    if n < FUTILE_MAX {
        FUTILE_SPINS.store(n + 1, Ordering::Relaxed);
    }
}

/// Counts an M woken to spin that found work.
#[cold]
fn note_useful_spin() {
    let n = FUTILE_SPINS.load(Ordering::Relaxed);
    if n > 0 {
        FUTILE_SPINS.store(n - 1, Ordering::Relaxed);
    }
}

/// Whether a hand-off into an empty `runnext` should skip its wake (module docs).
#[inline]
pub(crate) fn handoff_wakes_futile() -> bool {
    FUTILE_SPINS.load(Ordering::Relaxed) >= FUTILE_SKIP
}

/// Tries to start a spinning M to run Gs, if there is an idle P and nobody is spinning.
/// Called after making a G runnable.
pub(crate) fn wakep() {
    // SeqCst: the submitter's fence of the spinning protocol (module docs).
    fence(Ordering::SeqCst);
    wakep_after_sc_publish();
}

/// [`wakep`] for a submitter that published its G with a `SeqCst` read-modify-write (`ready`'s
/// swap into `runnext`), which takes the fence's place: the spinner's fence and that RMW are
/// ordered in the single total order of `SeqCst` operations, so either the spinner's re-check
/// after its fence sees the G, or this function's `SeqCst` loads, which follow the RMW in that
/// order, see the spinner's `npidle`/`nmspinning` updates made before its fence. (On x86 the
/// RMW is a locked instruction already; the fence would be a second one.)
pub(crate) fn wakep_after_sc_publish() {
    let s = match sched_if_started() {
        Some(s) => s,
        None => return,
    };
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
    let m = s.mget(&mut idle);
    drop(idle);
    match m {
        Some(m) => {
            m.spinning.store(spinning, Ordering::Relaxed);
            m.woken_to_spin.store(spinning, Ordering::Relaxed);
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
    let n = crate::traceback::capture_stack(0, &mut buf);
    let create_stack = buf[..n].to_vec();
    let r = std::thread::Builder::new().name(format!("gort-m{id}")).spawn(move || {
        let mut m = M::new(id, std::thread::current());
        m.create_stack = create_stack;
        let m: &'static M = Box::leak(Box::new(m));
        m.created_by.store(creator as usize, Ordering::Relaxed);
        crate::m::register(m);
        set_current_m(m);
        crate::stack::overflow::ensure_altstack();
        // Timed sleeps end when the next timer is due: Linux's default slack (50 µs) would let
        // every such wake-up come that much later, to batch it with others. An error (an old
        // or restricted kernel) leaves the default.
        // SAFETY: PR_SET_TIMERSLACK takes an integer and sets this thread's slack; no memory is
        // passed.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        // Cached now: the SIGPROF handler may only read it.
        crate::traceback::thread_stack_bounds();
        // SAFETY: pp was made from a &'static P above.
        let p: &'static P = unsafe { &*(pp as *const P) };
        m.p.set(Some(p));
        m.spinning.store(spinning, Ordering::Relaxed);
        m.woken_to_spin.store(spinning, Ordering::Relaxed);
        (s.mstart)(s, m);
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
    if p.has_work() || !global().is_empty() || p.timer0.load(Ordering::Relaxed) != u64::MAX {
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

/// The M found work after spinning: stop spinning, and if it was the last spinner, wake another
/// so the search for more work goes on.
pub(crate) fn resetspinning(s: &'static Sched, m: &'static M) {
    m.spinning.store(false, Ordering::Relaxed);
    // Woken to spin, it found work: that wake paid (module docs). A load and a store, not a
    // swap: while the M runs, only its own thread touches the flag.
    if m.woken_to_spin.load(Ordering::Relaxed) {
        m.woken_to_spin.store(false, Ordering::Relaxed);
        note_useful_spin();
    }
    // SeqCst: spinning protocol.
    let prev = s.nmspinning.fetch_sub(1, Ordering::SeqCst);
    if prev == 1 {
        wakep();
    }
}

/// An M wired to a goroutine that is not running (Go's `stoplockedm`): gives its P away, so the
/// other goroutines run elsewhere, and sleeps until the M that dequeues the goroutine hands it a
/// P to run it with ([`startlockedm`]). It is in no idle list meanwhile, so nothing else wakes it.
pub(crate) fn stoplockedm(s: &'static Sched, m: &'static M) {
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
pub(crate) fn sleep_until_handed_p(m: &'static M) {
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
pub(crate) fn startlockedm(m: &'static M, locked: &'static M) {
    let p = m.p.take().expect("startlockedm without a P");
    p.curg.store(std::ptr::null_mut(), Ordering::Relaxed);
    p.status.store(P_RUNNING, Ordering::Relaxed);
    // Release: pairs with the Acquire swap in stoplockedm (the P and the G's state go with it).
    locked.nextp.store(p as *const P as *mut P, Ordering::Release);
    wake_m(locked);
}

/// Sleeps until this M is handed a P (or, as the timer M, until the earliest timer is due and a
/// P is free to run it).
pub(crate) fn stopm(s: &'static Sched, m: &'static M) {
    let mut untimed = false;
    loop {
        // What a timed sleep that ran to its end aimed at: how late the M is back with a P is
        // the oversleep that `spin_for_timer` covers.
        let mut timed_out = None;
        let next = if untimed { u64::MAX } else { s.next_timer() };
        let mut idle = s.idle.lock();
        if m.idle_early.replace(false) {
            // Joined when it gave its P back (`find::give_p_back`); since then `startm` may have
            // taken it off the list for new work.
            if !idle.holds(m) {
                drop(idle);
                sleep_until_handed_p(m);
                return;
            }
        } else {
            s.mput(&mut idle, m);
        }
        let timed = next != u64::MAX && (idle.timer_m.is_none() || next < s.timer_sleep_until.load(Ordering::Relaxed));
        if timed {
            idle.timer_m = Some(m);
            s.timer_sleep_until.store(next, Ordering::SeqCst);
        }
        drop(idle);
        // Someone waits on the network and no M is blocked in the poller: block there instead of
        // on the note (claiming the poll by swapping `lastpoll` to 0), until the timer if timed.
        let poll = netpoll::poller().filter(|pl| pl.waiters() > 0 && netpoll::LASTPOLL.swap(0, Ordering::SeqCst) != 0);
        if let Some(pl) = poll {
            // SeqCst: Dekker pair with wake_m (see there).
            m.polling.store(true, Ordering::SeqCst);
            let mut n = 0usize;
            if !m.note.try_consume() {
                let t = nanotime();
                let timeout = timed.then(|| std::time::Duration::from_nanos(next.saturating_sub(t)));
                // The woken-up path below finds the Gs (any_work) and takes a P for them.
                let _ = pl.poll_each(timeout, |t| {
                    // SAFETY: `t` was just handed back by the runtime's poller.
                    if let Some(g) = unsafe { netpoll::take_runnable(t) } {
                        global().push(g);
                        n += 1;
                    }
                });
                if n > 0 {
                    note_poll_woke_after(nanotime() - t);
                }
            }
            m.polling.store(false, Ordering::Relaxed);
            netpoll::LASTPOLL.store(nanotime(), Ordering::SeqCst);
            if n > 1 {
                wakep();
            }
        } else if timed {
            // Aim early by what sleeps overshoot, so the M is back in time to spin out the rest
            // (`spin_for_timer`) and the timer fires on time.
            let aim = next.saturating_sub(oversleep_ns());
            let now = nanotime();
            if aim > now && !m.note.sleep_timeout(std::time::Duration::from_nanos(aim - now)) {
                timed_out = Some(aim);
            }
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
        if s.mremove(&mut idle, m) {
            // Due within the oversleep counts as due: the sleep above aimed that early.
            let due = s.next_timer() <= nanotime().saturating_add(oversleep_ns());
            if due || s.any_work() {
                if let Some(p) = s.pidleget(&mut idle) {
                    drop(idle);
                    m.p.set(Some(p));
                    if let Some(aim) = timed_out {
                        note_oversleep(aim, nanotime());
                    }
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

/// How late this process's Ms are back with a P from a timed sleep, in ns: a moving average
/// over the sleeps that ran to their end (`note_oversleep`). On a VM that is mostly the
/// hypervisor's timer round trip (tens of µs), on bare metal a few µs.
static OVERSLEEP_NS: AtomicU64 = AtomicU64::new(0);

/// The most an M spins waiting for a timer (`sched/timers.rs`), however late sleeps have been:
/// a host that stalled one sleep for milliseconds must not turn every wait into a spin.
const SPIN_FOR_TIMER_MAX_NS: u64 = 50_000;

/// Records that an M whose timed sleep was meant to end at `due` (a `nanotime`) was back with a
/// P at `woke`.
fn note_oversleep(due: u64, woke: u64) {
    let late = woke.saturating_sub(due).min(SPIN_FOR_TIMER_MAX_NS);
    let avg = OVERSLEEP_NS.load(Ordering::Relaxed);
    // An average over about eight sleeps: one stall moves it an eighth of the way. Relaxed: a
    // racy update between two Ms loses one sample, and the value only steers a heuristic.
    OVERSLEEP_NS.store(avg - avg / 8 + late / 8, Ordering::Relaxed);
}

/// How late an M is back with a P from a timed sleep, in ns (0 before the first has ended).
pub(crate) fn oversleep_ns() -> u64 {
    OVERSLEEP_NS.load(Ordering::Relaxed)
}
