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

/// Runs `p`'s timers that are due at `now`. Callable by any M (the heap is locked while popping;
/// callbacks run unlocked).
pub(crate) fn run_timers(p: &P, now: u64) {
    let mut due: Vec<Entry> = Vec::new();
    {
        let mut h = match p.timers.try_lock() {
            Some(h) => h,
            None => return, // someone else is running them
        };
        let t0 = h.pop_due(now, &mut due);
        p.timer0.store(t0, Ordering::Relaxed);
    }
    for e in due {
        match e.target {
            // SAFETY: `sleep`'s commit published `g` in this one entry, which we popped under the
            // heap's lock; a `Target::G` entry is never stale, so no sweep drops it, and it is
            // popped exactly once: this is the one `ready` for that park.
            Target::G(g) => unsafe { ready(g) },
            Target::Func(f, gen) => f.fire(gen, e.when),
        }
    }
}
