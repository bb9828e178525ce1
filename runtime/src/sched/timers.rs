//! The per-P timers as the scheduler runs them: adding one to the caller's P (waking the timer
//! M if it is now the earliest) and running the due ones. The heap itself is `timer_heap.rs`;
//! the user-facing timers are `time/`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::nanotime;
use crate::g::prefetch_desc;
use crate::globrunq::global;
use crate::p::P;
use crate::park::{ready_from_timer, with_current_p};
use crate::sched::idle::{oversleep_ns, timer_added, wakep};
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
/// timers allocates nothing. Also how long the firing M's run queue may grow by a pass.
const FIRE_BATCH: usize = 16;

/// While sleepers an earlier pass queued are still waiting their turn (a backlog of due
/// timers), a pass fires only once the run queue has room for this many (a whole batch: the
/// queue has emptied), or once this many passes in a row have held the backlog back (when other
/// goroutines keep the queue long), and then fires this many: each sleeper's first look at its
/// stack waits for a page walk (a cold stack, on a page of its own), and walks started together
/// overlap, where one per pass does not. A sleeper held back waits at most this many schedules
/// more than it would have.
const FIRE_REFILL: usize = FIRE_BATCH;

/// The fewest timers a pass fires, however long the run queue, unless it holds a backlog back
/// (see [`FIRE_REFILL`]): a queue that other work keeps long does not starve the timers. One:
/// each schedule runs one goroutine, so a pass that adds no more than that to a queue already at
/// [`FIRE_BATCH`] keeps it there.
const FIRE_MIN: usize = 1;

/// Runs `p`'s timers that are due at `now`, earliest first, from the scheduler of an M that owns
/// `owner` (`p` itself, or a P it steals timers from). Callbacks run unlocked; the heap is locked
/// only while popping.
///
/// A pass fires at most enough timers to bring `owner`'s run queue up to [`FIRE_BATCH`] (and at
/// least [`FIRE_MIN`]), and the goroutines it wakes join the queue's tail. So when timers fall
/// due faster than their goroutines run, the backlog waits in the heap, in deadline order, and
/// is fired a few at a time between runs (in refills of [`FIRE_REFILL`] while the sleepers of
/// earlier passes still wait their turn). A pass that fired everything due would take longer
/// the more was due, let the next pass find even more, and leave a queue in which each pass's
/// newest sleeper (through `runnext`) went ahead of all the older ones.
pub(crate) fn run_timers(owner: &'static P, p: &P, now: u64) {
    // A racy hint, exact under the heap's lock: a timer it misses is found on the next pass.
    if !p.timers_due(now) {
        return;
    }
    let queued = owner.runq_len();
    let tick = owner.schedtick.load(Ordering::Relaxed);
    let room = FIRE_BATCH.saturating_sub(queued);
    let mut budget = room.max(FIRE_MIN);
    // Sleepers an earlier pass queued at the tail have not all had their turn yet.
    let backlog = tick < owner.timer_fifo_until.load(Ordering::Relaxed);
    if room < FIRE_REFILL && backlog {
        let held = owner.timer_held.load(Ordering::Relaxed);
        if held < FIRE_REFILL as u32 {
            owner.timer_held.store(held + 1, Ordering::Relaxed);
            return;
        }
        // Other goroutines keep the queue long: fire what one pass per schedule would have
        // fired meanwhile (the held passes' and this one's), so that the timers keep their pace
        // behind them.
        budget = (held as usize + 1) * FIRE_MIN;
    }
    owner.timer_held.store(0, Ordering::Relaxed);
    // The pass's first sleeper runs next (as Go's timers ready into `runnext`), so that a sleeper
    // behind goroutines that each run a long slice waits for none of them, unless that would
    // have it overtake goroutines it should follow: sleepers an earlier pass queued (a stream of
    // due timers would run newest first), a hand-off waiting in `runnext`, or a backlog
    // (goroutines woken together, whose start it would delay).
    let mut jump = !backlog
        && owner.runnext.load(Ordering::Relaxed) == 0
        && queued + crate::globrunq::global().len() <= FIRE_BATCH;
    let mut tailed = false;
    let mut woke = false;
    while budget > 0 {
        let mut due: [Option<Entry>; FIRE_BATCH] = [const { None }; FIRE_BATCH];
        let mut n = 0;
        let lim = budget.min(FIRE_BATCH);
        {
            let mut h = match p.timers.try_lock() {
                Some(h) => h,
                None => break, // someone else is running them
            };
            while n < lim {
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
        // The sleepers have not run for a while: start all their descriptors and stacks loading
        // at once, in a loop of nothing else, so that their misses (each with a page walk)
        // overlap.
        for e in due.iter().take(n).flatten() {
            if let Target::G(g, stack) = e.target {
                prefetch_desc(g);
                stack.prefetch();
            }
        }
        for e in due.iter_mut().take(n).filter_map(Option::take) {
            match e.target {
                Target::G(g, _) => {
                    // SAFETY: `sleep`'s commit published `g` in this one entry, popped once under
                    // the heap's lock (no sweep drops a `Target::G`): the park's one `ready`. This M
                    // owns `owner` in scheduler context (the caller's contract).
                    unsafe { ready_from_timer(owner, g, jump) };
                    tailed |= !jump;
                    jump = false;
                    woke = true;
                }
                Target::Func(f, gen) => f.fire(gen, e.when),
            }
        }
        budget -= n;
        if n < lim {
            break;
        }
    }
    if tailed {
        // Each schedule runs one goroutine: by this tick the last sleeper queued here has had its
        // turn (sooner if a thief took it; later only behind `runnext` hand-offs).
        owner.timer_fifo_until.store(tick + owner.runq_len() as u64, Ordering::Relaxed);
    }
    if woke {
        // One wake-up for the pass: the goroutines went to a queue that other Ps steal from.
        wakep();
    }
}

/// Waits [`spin_for_timer`] spun (since start).
static SPINS: AtomicU64 = AtomicU64::new(0);

/// Waits for a timer that an M spun out instead of sleeping through (since start).
pub(crate) fn spins() -> u64 {
    SPINS.load(Ordering::Relaxed)
}

/// If the earliest timer is due sooner than a timed sleep would wake for it, spins on the clock
/// until it is due, or until work turns up on `p` or the global queue, and returns true: the
/// caller looks for work again. Sleeping would deliver the timer late by the oversleep (`stopm`
/// measures it), and everything due meanwhile later still; the spin costs at most that much CPU.
/// Work readied on other Ps meanwhile waits at most as long, as it would behind a sleep.
pub(crate) fn spin_for_timer(s: &'static Sched, p: &'static P) -> bool {
    let near = oversleep_ns();
    if near == 0 {
        return false;
    }
    let next = s.next_timer();
    if next == u64::MAX {
        return false;
    }
    let now = nanotime();
    // A timer already due is the caller's to run, not to wait for.
    if next <= now || next - now > near {
        return false;
    }
    SPINS.fetch_add(1, Ordering::Relaxed);
    // The wait is idle time: load the sleeper it is for, which would otherwise take its misses
    // (descriptor, then stack) one after another once due.
    let sleeper = p.timers.try_lock().and_then(|h| h.earliest_sleeper());
    if let Some((g, stack)) = sleeper {
        prefetch_desc(g);
        stack.prefetch();
    }
    while nanotime() < next && !p.has_work() && global().is_empty() {
        for _ in 0..16 {
            std::hint::spin_loop();
        }
    }
    true
}
