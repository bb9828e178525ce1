//! The scheduler: G-M-P, after Go's `runtime/proc.go`, one file per idea.
//!
//! # Design
//!
//! A **G** is a goroutine: a corosensei coroutine on a pooled stack. An **M** is an OS thread
//! running the scheduler loop (`mstart`, here). A **P** is the right to run goroutines: exactly
//! `GOMAXPROCS` exist, each with a local run queue, a `runnext` slot and timers. An M must hold a
//! P to run a G; an M without one sleeps on its note in the idle list.
//!
//! Where to find work (`find.rs`), in order: about every 100 µs, work stranded on another P
//! (below); this P's expired timers; one G from the
//! global queue every 61st tick (so the global queue cannot starve behind two goroutines
//! ping-ponging through runnext); `runnext`; the local queue; a batch from the global queue;
//! stealing half of a random victim's queue (and its expired timers), up to four rounds, with
//! `runnext` stolen only from a victim that has not scheduled for a few microseconds;
//! then, if a timer is due sooner than a timed sleep would wake for it (`idle::oversleep_ns`,
//! measured), spin until it is due (`timers::spin_for_timer`); then, while goroutines wait on
//! the network and answers have been coming soon, look again for up to 20 µs
//! (`netspin.rs`); then, while other Ps are busy, linger a few 3 µs sleeps still spinning
//! (`find::SPIN_LINGER`), and finally give the P back, join the idle Ms at once (`idle.rs`
//! says why), and sleep.
//!
//! A P's local queue is bounded (`p::LOCAL_RUNQ_MAX`): past it, the older half moves to
//! the global queue in one batch (Go's `runqputslow`), so recent work runs first and fan-out
//! trees stay narrow. The global queue (`globrunq.rs`) is a locked FIFO, as Go's, taken in
//! fair batches of at most `find::GLOBAL_BATCH`.
//!
//! # Files
//!
//! - `state.rs`: the shared state (Ps, idle lists, counters, stack pool, free Gs);
//! - `idle.rs`: idle Ps and Ms and the spinning protocol (`wakep`, `startm`, `stopm`);
//! - `netspin.rs`: when an M with nothing to run spins for the network before it sleeps;
//! - `deadlock.rs`: deadlock detection;
//! - `timers.rs`: the per-P timers as the scheduler runs them;
//! - `find.rs`: where an M finds work, stealing included;
//! - `execute.rs`: running a goroutine and recycling it when it finishes;
//! - this file: the M loop that ties them together.
//!
//! # Fairness without preemption
//!
//! Rust code cannot be preempted safely at any instruction, so a goroutine switches out only
//! where it enters the runtime. When one has run 10 ms while other work waits, sysmon (see
//! `sysmon.rs`) asks it to yield, and it does at the entry of its next blocking operation (a
//! channel operation, a lock, a spawn), which may switch anyway: Go's cooperative preemption,
//! with those entries for function prologues. One that computes without any by the next sysmon
//! tick keeps its M, but sysmon takes its *P* away and hands it to another M: the OS then
//! time-slices the hog's thread against the others, and the hog reacquires a P (or queues
//! itself) at its next runtime entry. The same retake serves `blocking` calls after 20 µs.
//!
//! Work queued behind such a goroutine does not wait that long if another P is scheduling: about
//! every 100 µs an M looks at the other Ps' ticks, and takes the queue, `runnext` and due timers
//! of one that has stood 300 µs with work waiting (`find::take_stranded`). The same covers a P
//! whose M the OS or the host has descheduled, which no retake helps: the new M would need a
//! CPU too.

pub(crate) mod deadlock;
pub(crate) mod execute;
pub(crate) mod find;
pub(crate) mod idle;
pub(crate) mod netspin;
pub(crate) mod state;
pub(crate) mod timers;

use std::sync::atomic::Ordering;

use crate::g::GRef;
use crate::m::{lockedm_of, M};
use crate::sched::execute::execute;
use crate::sched::find::find_runnable;
use crate::sched::idle::{resetspinning, startlockedm, stoplockedm, stopm};
use crate::sched::state::Sched;

/// An M's life: find a G, run it, repeat; sleep when there is nothing to do.
///
/// `execute` is inlined at its one call site, so that every goroutine this M runs is resumed
/// from the same instruction in this one frame, and switching out lands back in the loop
/// without a return. A return here would be mispredicted: the goroutine's own calls and
/// returns since it was resumed have replaced what the CPU's return-address stack held for
/// this frame (the measurements are in the benchmark README).
pub(crate) fn mstart(s: &'static Sched, m: &'static M) -> ! {
    loop {
        let lg = m.lockedg.load(Ordering::Relaxed);
        let g = if !lg.is_null() {
            // SAFETY: lockedg holds a pointer made from a GRef by lock_os_thread.
            let g = unsafe { GRef::from_ptr(lg) };
            m.t_out.set(0);
            stoplockedm(s, m);
            g
        } else {
            let p = match m.p.get() {
                Some(p) => p,
                None => {
                    m.t_out.set(0);
                    stopm(s, m);
                    continue;
                }
            };
            let Some(g) = find_runnable(s, m, p) else { continue };
            if m.spinning.load(Ordering::Relaxed) {
                resetspinning(s, m);
            }
            if let Some(lm) = lockedm_of(g) {
                if !std::ptr::eq(lm, m) {
                    startlockedm(m, lm);
                    continue;
                }
            }
            g
        };
        execute(s, m, g);
    }
}
