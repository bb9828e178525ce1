//! The per-P timers as the scheduler runs them: adding one to the caller's P (waking the timer
//! M if it is now the earliest) and running the due ones. The heap itself is `timer_heap.rs`;
//! the user-facing timers are `time/`.

use std::sync::atomic::Ordering;

use crate::p::P;
use crate::park::{ready, with_current_p};
use crate::sched::idle::timer_added;
use crate::sched::state::{sched_if_started, Sched};
use crate::timer_heap::{Entry, Target};

/// Heap entries across all Ps, stale ones included. Test support: shows that stopped timers do
/// not pile up.
// Safe: it only counts, taking each heap's lock as the runtime does.
#[doc(hidden)]
pub fn timer_entries() -> usize {
    let Some(s) = sched_if_started() else { return 0 };
    s.allp.iter().map(|p| p.timers.lock().len()).sum()
}

/// Adds a timer to the caller's P (or P 0 from a plain thread) and wakes an idle M if it is now
/// the earliest.
pub(crate) fn add_timer(s: &'static Sched, when: u64, target: Target) {
    let p: &'static P = with_current_p(|p| p).unwrap_or(&s.allp[0]);
    let stale = {
        let mut h = p.timers.lock();
        let (stale, t0) = h.push(when, target);
        p.timer0.store(t0, Ordering::Relaxed);
        stale
    };
    drop(stale);
    timer_added(when);
}

/// Timers popped per hold of a heap's lock: fired from a buffer on the M's stack, so running
/// timers allocates nothing.
const FIRE_BATCH: usize = 16;

/// Runs `p`'s timers that are due at `now`, earliest first. Callable by any M (the heap is locked
/// while popping; callbacks run unlocked).
pub(crate) fn run_timers(p: &P, now: u64) {
    // A racy hint, exact under the heap's lock: a timer it misses is found on the next pass.
    if !p.timers_due(now) {
        return;
    }
    loop {
        let mut due: [Option<Entry>; FIRE_BATCH] = [const { None }; FIRE_BATCH];
        let mut n = 0;
        {
            let mut h = match p.timers.try_lock() {
                Some(h) => h,
                None => return, // someone else is running them
            };
            while n < FIRE_BATCH {
                match h.pop_if_due(now) {
                    Some(e) => {
                        due[n] = Some(e);
                        n += 1;
                    }
                    None => break,
                }
            }
            p.timer0.store(h.earliest(), Ordering::Relaxed);
        }
        for e in due.iter_mut().take(n).filter_map(Option::take) {
            match e.target {
                // SAFETY: `sleep`'s commit published `g` in this one entry, which we popped under
                // the heap's lock; a `Target::G` entry is never stale, so no sweep drops it, and
                // it is popped exactly once: this is the one `ready` for that park.
                Target::G(g) => unsafe { ready(g) },
                Target::Func(f, gen) => f.fire(gen, e.when),
            }
        }
        if n < FIRE_BATCH {
            return;
        }
    }
}
