//! The way back from user mode: a P in `P_USER` is taken back into runtime mode by its own M
//! when the goroutine calls into the runtime (`park::enter`, on every park), and taken away by
//! sysmon from a goroutine that has computed too long (`sysmon::retake`). A compare-exchange on
//! the status word on both sides would settle who gets it; the M's side is hot and sysmon's is
//! rare, so the M's is plain stores and sysmon pays a heavy fence.
//!
//! # Invariants
//!
//! 1. The M stores `P_RUNNING` over its own `P_USER` without a compare-exchange only in
//!    [`UserGate::enter`]'s fast path: it announces itself (`entering`), runs a light fence,
//!    and finds no retake under way (`retaking`) and the status still its own.
//! 2. Sysmon moves a `P_USER` status only with a compare-exchange, and only in
//!    [`UserGate::retake`]: it announces the retake, runs a heavy fence, and finds no enter
//!    under way. This is `fence.rs`'s asymmetric Dekker pair: the two never both go on. The
//!    announcements are cleared with Release stores, so a side that reads the other's clear
//!    also sees what that side did to the status before.
//! 3. Every other move of a `P_USER` status (an enter that found a retake under way, the M
//!    entering a system call) is a compare-exchange, as is sysmon's: exactly one of those wins.
//!
//! Only the P's M writes `entering`, only sysmon `retaking`: each is a plain store. The loom
//! models at the bottom run an M entering and leaving against a retake, with the P's owner-only
//! state as a loom cell; `tests/loom.rs` runs them.

#[cfg(gort_loom)]
use ::loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(gort_loom))]
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fence::{heavy_fence, light_fence};

/// A P's announcements of an enter and of a retake (invariants 1 and 2).
pub(crate) struct UserGate {
    entering: AtomicU32,
    retaking: AtomicU32,
}

impl UserGate {
    pub(crate) fn new() -> UserGate {
        UserGate { entering: AtomicU32::new(0), retaking: AtomicU32::new(0) }
    }

    /// The M's side: moves `status` from `user` (this M's `P_USER`) to `running`; false if the
    /// P is no longer this M's. Acquire on every path that finds the P taken and given back: the
    /// P's owner-only fields then come from its other owners.
    #[inline(always)]
    pub(crate) fn enter(&self, status: &AtomicU32, user: u32, running: u32) -> bool {
        self.entering.store(1, Ordering::Relaxed);
        light_fence();
        // Acquire: pairs with the clear of a retake, so that its move of the status is seen
        // (invariant 2). The status load may be Relaxed: reading `user`, this M's own, the last
        // store to it was this M's `leave`.
        let fast = self.retaking.load(Ordering::Acquire) == 0 && status.load(Ordering::Relaxed) == user;
        if fast {
            status.store(running, Ordering::Relaxed);
        }
        // Release: a retake that reads this clear sees the store above (invariant 2).
        self.entering.store(0, Ordering::Release);
        // Invariant 3. Acquire: pairs with the Release of whoever last gave the P up.
        fast || status.compare_exchange(user, running, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Sysmon's side: moves `status` from `user` to `idle` if no enter is under way; whether it
    /// did. A retake that finds one (or cannot fence) leaves the P for the next look. Acquire:
    /// the owner-only fields become sysmon's to hand off, after the M's Release store of `user`.
    pub(crate) fn retake(&self, status: &AtomicU32, user: u32, idle: u32) -> bool {
        self.retaking.store(1, Ordering::Relaxed);
        let fenced = heavy_fence();
        // Acquire: pairs with the M's clear, whose status store is then seen (invariant 2).
        let took = fenced
            && self.entering.load(Ordering::Acquire) == 0
            && status.compare_exchange(user, idle, Ordering::Acquire, Ordering::Relaxed).is_ok();
        // Release: an enter that reads this clear sees the move above.
        self.retaking.store(0, Ordering::Release);
        took
    }
}

#[cfg(all(test, gort_loom))]
mod loom_models {
    use ::loom::cell::UnsafeCell;
    use ::loom::sync::atomic::{AtomicU32, Ordering};
    use ::loom::sync::Arc;

    use super::UserGate;

    const IDLE: u32 = 0;
    const RUNNING: u32 = 1;
    const USER: u32 = 2 | 4; // P_USER with an M's tag

    struct P {
        status: AtomicU32,
        gate: UserGate,
        /// The P's owner-only state: written by whoever owns the P.
        owned: UnsafeCell<u32>,
    }
    // SAFETY: `owned` is written only by the P's owner, which the protocol under test makes one
    // at a time (loom checks it).
    unsafe impl Sync for P {}

    /// The M enters and leaves `enters` times (writing the owner-only state while it holds the
    /// P in runtime mode) while sysmon retakes once (writing it if it took the P): loom's cell
    /// reports two owners at once.
    fn enters_against_a_retake(enters: usize, preemptions: usize) {
        let mut b = ::loom::model::Builder::new();
        b.preemption_bound = Some(preemptions);
        b.check(move || {
            let p = Arc::new(P { status: AtomicU32::new(USER), gate: UserGate::new(), owned: UnsafeCell::new(0) });
            let sysmon = {
                let p = p.clone();
                ::loom::thread::spawn(move || {
                    let took = p.gate.retake(&p.status, USER, IDLE);
                    if took {
                        // SAFETY: retaken: the P is sysmon's to hand off.
                        p.owned.with_mut(|o| unsafe { *o += 100 });
                    }
                    took
                })
            };
            let mut lost = false;
            for _ in 0..enters {
                if !p.gate.enter(&p.status, USER, RUNNING) {
                    lost = true;
                    break;
                }
                // SAFETY: entered: the P is this M's in runtime mode.
                p.owned.with_mut(|o| unsafe { *o += 1 });
                // `leave`: Release, as the runtime's.
                p.status.store(USER, Ordering::Release);
            }
            let took = sysmon.join().unwrap();
            let end = p.status.load(Ordering::Relaxed);
            assert_eq!(took, end == IDLE, "retake {took}, status {end}");
            assert!(!lost || took, "the M lost a P nobody took");
        });
    }

    #[test]
    fn an_enter_against_a_retake() {
        enters_against_a_retake(1, 3);
    }

    #[test]
    fn two_enters_against_a_retake() {
        enters_against_a_retake(2, 2);
    }
}
