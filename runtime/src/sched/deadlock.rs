//! Deadlock detection (Go's `checkdead`): when nothing can ever run again, every `run` caller
//! whose main goroutine is stuck gets a report of the waiting goroutines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::nanotime;
use crate::g::{self, GRef, WaitReason};
use crate::globrunq::global;
use crate::netpoll;
use crate::sched::state::Sched;
use crate::threadg::{ready_thread, EXT_ACTIVE, EXT_THREADS};

/// A completion slot a `run` thread parks in, seen from here: taking the thread's G out of it
/// is what wakes the thread (`spawn.rs` implements it for its tasks).
pub(crate) trait TakeWaiter: Send + Sync {
    /// Takes `g` out of the slot if it is parked there; true if this call took it.
    fn take_waiter(&self, g: GRef) -> bool;
}

/// A thread blocked in `run` waiting for its main goroutine (deadlock reports go to it).
pub(crate) struct RunWaiter {
    pub(crate) main_goid: u64,
    pub(crate) thread_g: GRef,
    /// The main goroutine's completion slot, where the thread parks.
    pub(crate) done: Arc<dyn TakeWaiter>,
    /// Set (SeqCst) by a deadlock report before it takes the thread out of that slot.
    pub(crate) reported: AtomicBool,
    pub(crate) deadlock: Mutex<Option<String>>,
}

/// Threads blocked in `run`.
pub(crate) static RUN_WAITERS: Mutex<Vec<Arc<RunWaiter>>> = Mutex::new(Vec::new());

/// check_dead found everything asleep but threads it does not know of exist; sysmon re-checks
/// while this is set (such a thread may exit without waking anyone).
pub(crate) static DEAD_SUSPECT: AtomicBool = AtomicBool::new(false);

/// Appends the header of a waiting goroutine and where it was created, as a deadlock report
/// lists it.
fn describe_waiting(out: &mut String, g: GRef, now: u64) {
    use std::fmt::Write as _;
    let r = WaitReason::from_u8(g.0.wait_reason.load(Ordering::Relaxed));
    let waited = now.saturating_sub(g.0.wait_since.load(Ordering::Relaxed));
    g::write_header(out, g.id(), if r == WaitReason::Zero { "waiting" } else { r.as_str() }, waited, None);
    let _ = writeln!(out, "\twaiting for {:.3}s", waited as f64 / 1e9);
    let loc = g.0.created_at.load(Ordering::Relaxed);
    if !loc.is_null() {
        // SAFETY: created_at holds &'static Locations.
        let loc = unsafe { &*loc };
        let parent = g.0.parent_goid.load(Ordering::Relaxed);
        let _ = writeln!(out, "created at {}:{}:{} in goroutine {parent}", loc.file(), loc.line(), loc.column());
    }
}

/// Number of threads in this process (`Threads:` in /proc/self/status), if readable.
fn process_threads() -> Option<usize> {
    let st = std::fs::read_to_string("/proc/self/status").ok()?;
    st.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// If nothing can ever run again and some `run` caller waits, tells those callers. Called when
/// an M gives up its P and when a plain thread blocks.
///
/// While an earlier check suspects threads the runtime does not know of ([`DEAD_SUSPECT`]),
/// this returns at once: sysmon re-checks such a suspicion every 100 ms ([`recheck_dead`]), and
/// a program whose goroutines wait on such threads (futures woken by Tokio's workers) would
/// otherwise pay a walk of every G and a read of /proc each time its Ms go idle.
pub(crate) fn check_dead(s: &'static Sched) {
    if DEAD_SUSPECT.load(Ordering::Relaxed) {
        return;
    }
    recheck_dead(s);
}

/// [`check_dead`], whatever the suspicion: sysmon's re-check.
pub(crate) fn recheck_dead(s: &'static Sched) {
    if !s.cfg.deadlock_detection || RUN_WAITERS.lock().is_empty() {
        return;
    }
    if s.npidle.load(Ordering::SeqCst) != s.allp.len()
        || s.nmspinning.load(Ordering::SeqCst) != 0
        || EXT_ACTIVE.load(Ordering::SeqCst) > 0
        || s.nsyscall.load(Ordering::SeqCst) > 0
    {
        return;
    }
    let idle = s.idle.lock();
    if idle.pidle.len() != s.allp.len() || !global().is_empty() || s.any_work() {
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
                let r = WaitReason::from_u8(g.0.wait_reason.load(Ordering::Relaxed));
                if r.externally_woken() {
                    live = true;
                }
                waiting.push(g);
            }
            _ => {}
        }
    });
    drop(idle);
    if live || EXT_ACTIVE.load(Ordering::SeqCst) > 0 {
        return;
    }
    // Threads the runtime has never seen (a `std::thread` that will send on a channel once it
    // has computed something, a thread blocked reading stdin) may still wake a goroutine, as a
    // goroutine in a system call would in Go. Count the process's threads: anything beyond the
    // Ms, sysmon and the registered plain threads (all parked, as ext_active is 0) is such a
    // thread, and then this is not (yet) a deadlock. Sysmon re-checks while it stays suspect.
    let known = s.mcount.load(Ordering::Relaxed) as isize + 1 + EXT_THREADS.load(Ordering::SeqCst);
    if let Some(n) = process_threads() {
        if n as isize > known {
            DEAD_SUSPECT.store(true, Ordering::Relaxed);
            return;
        }
    }
    DEAD_SUSPECT.store(false, Ordering::Relaxed);
    // Only a `run` whose main goroutine is itself stuck is deadlocked; one whose main goroutine
    // has finished is about to wake anyway.
    let waiters: Vec<Arc<RunWaiter>> = {
        let mut rw = RUN_WAITERS.lock();
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
        describe_waiting(&mut report, g, now);
    }
    for w in waiters {
        *w.deadlock.lock() = Some(report.clone());
        // The thread is woken by taking its G out of the slot it parks in, never by readying it
        // while the slot still names it: the main goroutine may finish after all, and its
        // completion would then ready the thread a second time, parked on something else.
        // SeqCst: with the waiter's SeqCst publish-then-check in `wait_once_unless`, either we
        // find its G in the slot, or it sees `reported` and does not stay parked.
        w.reported.store(true, Ordering::SeqCst);
        if w.done.take_waiter(w.thread_g) {
            // SAFETY: `take_waiter` took the thread's G out of the slot's word, where the `run`
            // thread's park commit published it, and every other taker of that word swaps or
            // CASes it: this is the one `ready` for that park.
            unsafe { ready_thread(w.thread_g) };
        }
    }
}
