//! The atomics and the lock that the poll-descriptor protocol (`desc.rs`) is built from:
//! std's in a normal build, loom's under `--cfg gort_loom`, where the models in `desc/loom_models.rs`
//! run the real `PollDesc` code through loom's exhaustive scheduler.
//!
//! Everything here is a re-export (or an empty inline function) in a normal build, so the
//! protocol compiles to exactly what it would with std imported directly.

#[cfg(not(gort_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicU32, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};

#[cfg(gort_loom)]
pub(crate) use ::loom::sync::{
    atomic::{AtomicU32, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};

/// Marks the point between the store and the load of each half of a `SeqCst` Dekker pair
/// (`desc.rs` invariant 4). loom models `SeqCst` loads and stores as if they were `AcqRel`, so
/// without help it would report the lost wakeup that the hardware's single `SeqCst` order
/// rules out; under `gort_loom` this is a `SeqCst` fence, which loom does model, and which gives
/// the pair exactly the guarantee the `SeqCst` accesses give it for real. A normal build needs
/// nothing: the accesses themselves are `SeqCst`.
#[inline(always)]
pub(crate) fn dekker_fence() {
    #[cfg(gort_loom)]
    ::loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Runs `f` under loom with a fixed preemption bound, so a model's cost does not depend on the
/// environment (`LOOM_MAX_PREEMPTIONS` is overridden). Every interleaving with at most that
/// many preemptions is explored; the bugs these models look for need one or two.
#[cfg(all(test, gort_loom))]
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(preemptions: usize, f: F) {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    b.check(f);
}
