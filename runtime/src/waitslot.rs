//! [`WaitSlot`]: a one-shot event with room for one parked waiter (a goroutine finishing, for
//! `join` and `run`).
//!
//! # The word
//!
//! | value       | meaning                                         |
//! |-------------|-------------------------------------------------|
//! | `EMPTY`     | not done, nobody parked                         |
//! | `DONE`      | [`complete`](WaitSlot::complete) has run        |
//! | `WAKER`     | not done; an async task's `Waker` is in `waker` |
//! | `LOCKED`    | not done; the poller is writing `waker`         |
//! | a G pointer | that G is parked on the slot                    |
//!
//! # Invariants
//!
//! 1. **A G pointer is in the word only while its G is parked on it.** Only a park commit stores
//!    one (a CAS from `EMPTY`, with its own, already parked, G).
//! 2. **Whoever takes a G pointer out readies it, exactly once.** Every write over a G pointer is
//!    an RMW (`complete`'s swap, `take_waiter`'s CAS, `wait_once_unless`'s CAS back), so exactly
//!    one party takes it; the commit's own CAS back is followed by returning false, not `ready`.
//! 3. **`wait_once`'s commit touches nothing after publishing.** From its CAS on the G may be
//!    readied, run on another M, drop the slot and reuse its stack.
//! 4. **No lost cancel (Dekker).** `wait_once_unless` publishes its G and then reads `cancel`; a
//!    canceller stores `cancel` and then tries `take_waiter`. All four accesses are `SeqCst`, so
//!    one side sees the other: the waiter takes itself back, or the canceller takes it. Under
//!    `--cfg gort_loom` each half also has a `SeqCst` fence between the two (`dekker_fence`),
//!    because loom models `SeqCst` accesses as `AcqRel` only.
//!
//! 5. **`waker` has one owner at a time.** The poller ([`poll_done`](WaitSlot::poll_done),
//!    [`unregister`](WaitSlot::unregister)) owns it from its CAS to `LOCKED` until its CAS out of
//!    `LOCKED`; `complete` owns it after swapping `WAKER` for `DONE`, and leaves it alone when it
//!    swaps out `LOCKED` (the poller then finds `DONE`, and takes its waker back itself). Nobody
//!    else touches it. A goroutine exit so costs no more than before: the swap it always did,
//!    and one more compare on its result.
//!
//! The loom models at the bottom (`--cfg gort_loom`) check 2 and 4 and that the waiter always
//! wakes; 1 and 3 are about lifetimes, which loom does not see. For 4 they check the pair as the
//! fences make it: weakening one of the `SeqCst` accesses to `AcqRel` would still pass.

use std::cell::UnsafeCell;
use std::task::Waker;

use crate::loom::{dekker_fence, in_goroutine, park, ready, AtomicBool, AtomicUsize, GRef, Ordering, WaitReason, G};

/// A one-shot event with room for one parked waiter or one task's waker (module docs). The
/// waiter's commit and the completer act on the same word, so exactly one of them sees the other.
pub(crate) struct WaitSlot(AtomicUsize, UnsafeCell<Option<Waker>>);

// SAFETY: the cell is handed between threads by the word's protocol (invariant 5), with
// Release/Acquire on the word at each hand-over; `Waker` is Send + Sync.
unsafe impl Sync for WaitSlot {}

const SLOT_EMPTY: usize = 0;
const SLOT_DONE: usize = 1;
const SLOT_WAKER: usize = 2;
const SLOT_LOCKED: usize = 3;

impl WaitSlot {
    crate::loom::const_fn! {
        pub(crate) fn new() -> WaitSlot {
            WaitSlot(AtomicUsize::new(SLOT_EMPTY), UnsafeCell::new(None))
        }
    }

    /// Whether [`complete`](Self::complete) has run.
    pub(crate) fn is_done(&self) -> bool {
        // Acquire: pairs with complete's AcqRel swap (what the completer wrote before is ours).
        self.0.load(Ordering::Acquire) == SLOT_DONE
    }

    /// Parks at most once: returns when done or after a wakeup (check again).
    pub(crate) fn wait_once(&self, reason: WaitReason) {
        if self.is_done() {
            return;
        }
        let word: *const AtomicUsize = &self.0;
        let commit = move |g: GRef| {
            // SAFETY: the slot outlives this commit: its owner is blocked in `wait_once` until
            // the CAS below publishes it, and we touch nothing after that CAS.
            let word = unsafe { &*word };
            // AcqRel: Release publishes the G to the completer's swap; Acquire (on failure,
            // DONE) pairs with that swap's Release.
            word.compare_exchange(SLOT_EMPTY, g.as_ptr() as usize, Ordering::AcqRel, Ordering::Acquire).is_ok()
        };
        // SAFETY: the commit publishes `g` only in the word, with its last access (the CAS);
        // takers (`complete`, `take_waiter`) swap or CAS, so exactly one readies it. A failed
        // CAS (DONE) publishes nothing and returns false. It neither parks nor panics.
        unsafe { park(reason, commit) };
    }

    /// [`wait_once`](Self::wait_once) for a plain thread that someone else may need to wake
    /// without completing the event: after publishing itself it checks `cancel`, and if that is
    /// set takes itself back out (or, if [`take_waiter`](Self::take_waiter) already did, stays
    /// parked for the `ready` that follows it). Only for plain threads: the commit runs on the
    /// waiting thread itself, whose frame (and so `self` and `cancel`) outlives it, which is what
    /// lets it touch the slot after publishing.
    pub(crate) fn wait_once_unless(&self, reason: WaitReason, cancel: &AtomicBool) {
        debug_assert!(!in_goroutine(), "wait_once_unless is for plain threads");
        if self.is_done() || cancel.load(Ordering::SeqCst) {
            return;
        }
        let (word, cancel): (*const AtomicUsize, *const AtomicBool) = (&self.0, cancel);
        let commit = move |g: GRef| {
            // SAFETY: on a plain thread `park` runs this commit on the waiting thread itself,
            // before it blocks, so the slot and the flag (borrowed by our caller) are alive.
            let (word, cancel) = unsafe { (&*word, &*cancel) };
            // SeqCst: pairs with the canceller's SeqCst store of `cancel` and its SeqCst
            // take_waiter: one of us sees the other's write (a Dekker pair).
            if word.compare_exchange(SLOT_EMPTY, g.as_ptr() as usize, Ordering::SeqCst, Ordering::Acquire).is_err() {
                return false;
            }
            dekker_fence();
            if cancel.load(Ordering::SeqCst) {
                // Cancelled meanwhile: take ourselves back out, unless the canceller (or the
                // completer) already took us and will ready us.
                return word
                    .compare_exchange(g.as_ptr() as usize, SLOT_EMPTY, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err();
            }
            true
        };
        // Touching the word after publishing is safe only because the waiter is a plain thread
        // running this commit itself (see above).
        // SAFETY: the commit publishes `g` only in the word; whoever takes it out (`complete`'s
        // swap, `take_waiter`'s CAS, or the commit's CAS back, then returning false) is the one
        // waker. It neither parks nor panics.
        unsafe { park(reason, commit) };
    }

    /// Takes `g` out of the slot if it is the parked waiter there. True means the caller now
    /// owns the wakeup and must `ready(g)`; false means `g` is not parked here (never was, was
    /// already taken, or the event completed and its completer readies it).
    pub(crate) fn take_waiter(&self, g: GRef) -> bool {
        dekker_fence();
        // SeqCst: see wait_once_unless. Acquire on success also pairs with the waiter's publish.
        self.0.compare_exchange(g.as_ptr() as usize, SLOT_EMPTY, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// Parks until done.
    pub(crate) fn wait(&self, reason: WaitReason) {
        // A waker left by an earlier poll would make `wait_once`'s commit fail forever.
        self.unregister();
        while !self.is_done() {
            self.wait_once(reason);
        }
    }

    /// For a future: true if done; otherwise stores `waker` (replacing an earlier one unless it
    /// wakes the same task) for [`complete`](Self::complete) to wake, and returns false. One
    /// poller at a time (the owner of the `JoinHandle`), never while a G is parked here.
    pub(crate) fn poll_done(&self, waker: &Waker) -> bool {
        // Acquire: pairs with complete's AcqRel swap, like `is_done`.
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            match cur {
                SLOT_DONE => return true,
                SLOT_EMPTY | SLOT_WAKER => {}
                _ => panic!("gort: a join handle polled while joined elsewhere"),
            }
            // Acquire: the cell as the last owner (a previous poll) left it.
            match self.0.compare_exchange(cur, SLOT_LOCKED, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        // SAFETY: we hold LOCKED: the cell is ours (invariant 5).
        let cell = unsafe { &mut *self.1.get() };
        let old = match cell {
            Some(w) if w.will_wake(waker) => None,
            _ => cell.replace(waker.clone()),
        };
        // Release: publishes the waker to complete's swap (its Acquire half).
        let done = self.0.compare_exchange(SLOT_LOCKED, SLOT_WAKER, Ordering::Release, Ordering::Acquire).is_err();
        if done {
            // `complete` swapped LOCKED for DONE and left the cell to us: take our waker back.
            cell.take();
        }
        drop(old);
        done
    }

    /// Drops a waker stored by [`poll_done`](Self::poll_done), if any (a future given up).
    pub(crate) fn unregister(&self) {
        // Relaxed: a plain look; the CAS below is what takes the cell.
        if self.0.load(Ordering::Relaxed) != SLOT_WAKER {
            return;
        }
        // Acquire: pairs with poll_done's Release (the waker written there).
        if self.0.compare_exchange(SLOT_WAKER, SLOT_LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            // SAFETY: we hold LOCKED: the cell is ours (invariant 5).
            let w = unsafe { (*self.1.get()).take() };
            // Relaxed: nothing to publish (the cell is empty); fails only to DONE, which
            // `complete` left as it is.
            let _ = self.0.compare_exchange(SLOT_LOCKED, SLOT_EMPTY, Ordering::Relaxed, Ordering::Relaxed);
            drop(w);
        }
    }

    /// Marks the event done and readies the waiter, if one is parked. Everything written before
    /// is visible to whoever sees it done.
    pub(crate) fn complete(&self) {
        // AcqRel: Release publishes what the completer wrote (a join result); Acquire pairs with
        // the waiter's publishing CAS.
        let w = self.0.swap(SLOT_DONE, Ordering::AcqRel);
        if w > SLOT_LOCKED {
            // SAFETY: only `wait_once`'s commit stores a G pointer in the word, publishing its
            // own parked G; our swap took it out, and every other taker swaps or CASes the same
            // word, so this is the one `ready` for that park.
            unsafe { ready(GRef::from_ptr(w as *const G)) };
        } else if w == SLOT_WAKER {
            // SAFETY: we swapped WAKER out: the cell is ours (invariant 5); the swap's Acquire
            // saw the poller's write.
            if let Some(waker) = unsafe { (*self.1.get()).take() } {
                waker.wake();
            }
        }
    }
}

/// loom models (`--cfg gort_loom`): the real `WaitSlot` on loom threads, whose `park`/`ready`
/// follow `park_thread` (`crate::loom`). A lost wakeup is a thread parked forever, which loom
/// reports as a deadlock; a second `ready` for one park panics in `ready`.
#[cfg(all(test, gort_loom))]
mod loom_models {
    use std::sync::Arc;

    use super::{WaitSlot, SLOT_DONE};
    use crate::loom::{current, model, ready, AtomicBool, AtomicUsize, Ordering, WaitReason};

    /// `wait` (the `wait_once` commit) against `complete`: the waiter always wakes, finds the
    /// slot done, and sees what the completer wrote before completing.
    #[test]
    fn complete_wakes_waiter() {
        model(3, || {
            let slot = Arc::new(WaitSlot::new());
            let result = Arc::new(AtomicUsize::new(0));
            let completer = loom::thread::spawn({
                let (slot, result) = (slot.clone(), result.clone());
                move || {
                    result.store(7, Ordering::Relaxed);
                    slot.complete();
                }
            });
            slot.wait(WaitReason::Model);
            assert!(slot.is_done());
            assert_eq!(result.load(Ordering::Relaxed), 7, "the completer's writes are visible");
            completer.join().unwrap();
        });
    }

    /// `wait_once_unless` against a canceller doing what `run`'s deadlock report does (store
    /// `cancel`, then `take_waiter` and `ready` what it took) and a completer, all at once: the
    /// thread always wakes, with the event done or cancelled, readied at most once (a second
    /// `ready` panics), and no G is left in the word.
    #[test]
    fn cancel_or_complete_wakes_thread_waiter() {
        model(3, || {
            let slot = Arc::new(WaitSlot::new());
            let cancel = Arc::new(AtomicBool::new(false));
            let me = current();
            let canceller = loom::thread::spawn({
                let (slot, cancel) = (slot.clone(), cancel.clone());
                move || {
                    // SeqCst: the canceller's store half of the Dekker pair (module invariant 4).
                    cancel.store(true, Ordering::SeqCst);
                    if slot.take_waiter(me) {
                        // SAFETY: take_waiter took our G out of the word: the one ready of its park.
                        unsafe { ready(me) };
                    }
                }
            });
            let completer = loom::thread::spawn({
                let slot = slot.clone();
                move || slot.complete()
            });
            slot.wait_once_unless(WaitReason::Model, &cancel);
            assert!(slot.is_done() || cancel.load(Ordering::Relaxed), "woken for nothing");
            canceller.join().unwrap();
            completer.join().unwrap();
            assert_eq!(slot.0.load(Ordering::Relaxed), SLOT_DONE, "a G left in the word");
        });
    }

    /// The Dekker pair alone (no completer, so only the cancel can end the wait), with a deeper
    /// preemption bound.
    #[test]
    fn cancel_wakes_thread_waiter() {
        model(4, || {
            let slot = Arc::new(WaitSlot::new());
            let cancel = Arc::new(AtomicBool::new(false));
            let me = current();
            let canceller = loom::thread::spawn({
                let (slot, cancel) = (slot.clone(), cancel.clone());
                move || {
                    // SeqCst: as above.
                    cancel.store(true, Ordering::SeqCst);
                    if slot.take_waiter(me) {
                        // SAFETY: as above.
                        unsafe { ready(me) };
                    }
                }
            });
            slot.wait_once_unless(WaitReason::Model, &cancel);
            assert!(cancel.load(Ordering::Relaxed));
            canceller.join().unwrap();
            assert!(slot.0.load(Ordering::Relaxed) <= SLOT_DONE, "a G left in the word");
        });
    }
}
