//! A P's `runnext` slot: the G its running goroutine readied last, which runs next (before the
//! queue). Its owner fills and empties it, thieves take from it, and one protocol runs on it
//! without owning the P: a readier in user code publishes into the slot of its P even if sysmon
//! has taken that P meanwhile and left it idle, where nobody would run the G.
//!
//! # Invariants
//!
//! 1. The slot holds 0 or a G pointer that some runnable G was made from, and a G leaves it
//!    only by an atomic read-modify-write (swap or CAS), so exactly one taker gets it.
//! 2. **No G is left in an idle P's slot.** The readier ([`RunNext::publish_unowned`]) swaps its
//!    G in, then loads the P's status, and takes the G back if the P is idle. Making a P idle
//!    ([`RunNext::rescue_on_idle`]) stores the idle status, then loads the slot, and takes what
//!    it finds. All four accesses are `SeqCst`, a Dekker pair: in the single order of `SeqCst`
//!    accesses, whichever second access comes last sees the other side's first, so the readier
//!    sees the P idle, or the idler sees the G, or both (then the slot's CAS decides who takes
//!    it). A P made running again afterwards (by whoever takes it from the idle list) runs what
//!    is left in its slot as any owner does.
//!
//! loom models `SeqCst` loads and stores as `AcqRel`, so under `--cfg gort_loom` each half has a
//! `SeqCst` fence between its two accesses, which loom does model (as `WaitSlot` does). The
//! models at the bottom run these functions on loom threads; `tests/loom.rs` runs them.

#[cfg(gort_loom)]
use ::loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
#[cfg(not(gort_loom))]
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Between the store and the load of each half of the Dekker pair (module docs); nothing in a
/// normal build, where the accesses themselves are `SeqCst`.
#[inline(always)]
fn dekker_fence() {
    #[cfg(gort_loom)]
    ::loom::sync::atomic::fence(Ordering::SeqCst);
}

/// A `runnext` slot: 0, or a G pointer as an address.
pub(crate) struct RunNext(AtomicUsize);

/// What [`RunNext::publish_unowned`] did.
pub(crate) struct Published {
    /// The G the publish pushed out of the slot (0 if none): the caller queues it.
    pub(crate) displaced: usize,
    /// Whether the P was idle and the published G came back out (the caller queues it).
    pub(crate) took_back: bool,
}

impl RunNext {
    pub(crate) fn new() -> RunNext {
        RunNext(AtomicUsize::new(0))
    }

    /// The slot's G, without taking it.
    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> usize {
        self.0.load(order)
    }

    /// Puts `g` in the slot and returns what was there (0 if nothing): the owner's put. `SeqCst`
    /// (the publish of the spinning protocol, `sched/idle.rs`); Release/Acquire with whoever
    /// takes `g`.
    #[inline]
    pub(crate) fn swap_in(&self, g: usize) -> usize {
        self.0.swap(g, Ordering::SeqCst)
    }

    /// Takes the slot's G, if any: the owner's get. Acquire pairs with the put's Release.
    #[inline]
    pub(crate) fn take(&self) -> usize {
        if self.0.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.0.swap(0, Ordering::AcqRel)
    }

    /// Takes `g` if the slot still holds it (a thief, or a rescue). Acquire pairs with the put.
    #[inline]
    pub(crate) fn take_if(&self, g: usize) -> bool {
        g != 0 && self.0.compare_exchange(g, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// The readier's half of invariant 2: puts `g` in the slot of a P it may no longer own, whose
    /// status word is `status`, and takes `g` back if that P is `idle`.
    #[inline]
    pub(crate) fn publish_unowned(&self, g: usize, status: &AtomicU32, idle: u32) -> Published {
        let displaced = self.swap_in(g);
        dekker_fence();
        // SeqCst: the readier's load of the Dekker pair (module docs).
        let took_back = status.load(Ordering::SeqCst) == idle
            && self.0.compare_exchange(g, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok();
        Published { displaced, took_back }
    }

    /// The idler's half of invariant 2: stores `idle` in the P's `status` and returns the G left
    /// in the slot (0 if none), taken out for the caller to queue.
    pub(crate) fn rescue_on_idle(&self, status: &AtomicU32, idle: u32) -> usize {
        // SeqCst: the idler's store of the Dekker pair; also Release for the P's owner-only
        // fields, which go with it to its next owner.
        status.store(idle, Ordering::SeqCst);
        dekker_fence();
        // SeqCst: the idler's load of the Dekker pair.
        let g = self.0.load(Ordering::SeqCst);
        if self.take_if(g) {
            g
        } else {
            0
        }
    }
}

/// loom models (`--cfg gort_loom`): the real slot functions on loom threads, a readier that does
/// not own the P against the P going idle.
#[cfg(all(test, gort_loom))]
mod loom_models {
    use std::sync::Arc;

    use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

    use super::RunNext;

    const USER: u32 = 2;
    const IDLE: u32 = 0;

    /// A readier publishes G 8 into the slot of a P that goes idle meanwhile (the slot holding
    /// `before`): the readier takes it back or the idler rescues it, never neither, never both;
    /// a G that was there already is displaced to the readier or rescued, exactly once too.
    fn publish_against_idle(before: usize) {
        // A fixed preemption bound, as `crate::loom::model` sets (that seam sits above this
        // module's layer).
        let mut b = ::loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(move || {
            let slot = Arc::new(RunNext::new());
            slot.0.store(before, Ordering::Relaxed);
            let status = Arc::new(AtomicU32::new(USER));
            let rescued = Arc::new(AtomicUsize::new(0));
            let idler = loom::thread::spawn({
                let (slot, status, rescued) = (slot.clone(), status.clone(), rescued.clone());
                move || rescued.store(slot.rescue_on_idle(&status, IDLE), Ordering::Relaxed)
            });
            let p = slot.publish_unowned(8, &status, IDLE);
            idler.join().unwrap();
            let rescued = rescued.load(Ordering::Relaxed);
            let left = slot.0.load(Ordering::Relaxed);
            assert_eq!(left, 0, "a G left in an idle P's slot");
            assert!(p.took_back != (rescued == 8), "G 8 taken back {} and rescued {}", p.took_back, rescued == 8);
            if before != 0 {
                assert!((p.displaced == before) != (rescued == before), "the earlier G lost or taken twice");
            }
        });
    }

    #[test]
    fn publish_into_an_empty_slot_against_idle() {
        publish_against_idle(0);
    }

    #[test]
    fn publish_displacing_against_idle() {
        publish_against_idle(16);
    }
}
