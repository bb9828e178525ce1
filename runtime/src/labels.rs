//! Labels on goroutines: an opaque value the goroutine carries, cloned into the goroutines it
//! spawns and dropped when it exits. The profiler keeps its label sets here (`pprof.Do`); the
//! runtime never looks inside.

use crate::g::{labels_from_ref, labels_into_ref, Labels};
use crate::m::current_m;

/// The current goroutine's labels (`None` if it has none, or on a plain thread).
pub fn current_labels() -> Option<Labels> {
    let g = current_m().and_then(|m| m.curg())?;
    // SAFETY: `g` is the goroutine running this code (labels_ref's first case); the reference
    // taken is ours to release.
    unsafe { labels_from_ref(g.0.labels_ref()) }
}

/// Replaces the current goroutine's labels and returns the old ones. Goroutines spawned from
/// now on start with a clone of `labels`. On a plain thread nothing is stored and `labels`
/// comes back.
pub fn set_current_labels(labels: Option<Labels>) -> Option<Labels> {
    match current_m().and_then(|m| m.curg()) {
        Some(g) => {
            // The wall profile charges running time with the labels it ran under.
            let old = crate::wall::relabel(g.0, || {
                // SAFETY: `g` is the goroutine running this code, which may change its own slot.
                unsafe { g.0.swap_labels(labels_into_ref(labels)) }
            });
            // SAFETY: the slot's old reference came back to us; `labels_from_ref` releases it.
            unsafe { labels_from_ref(old) }
        }
        None => labels,
    }
}
