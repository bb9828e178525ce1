//! Labels on goroutines: an opaque value the goroutine carries, cloned into the goroutines it
//! spawns and dropped when it exits. The profiler keeps its label sets here (`pprof.Do`); the
//! runtime never looks inside.

use crate::g::Labels;
use crate::m::current_m;

/// The current goroutine's labels (`None` if it has none, or on a plain thread).
pub fn current_labels() -> Option<Labels> {
    let g = current_m().and_then(|m| m.curg())?;
    // SAFETY: `g` is the goroutine running this code: only it writes its labels while it runs.
    unsafe { (*g.0.labels.get()).clone() }
}

/// Replaces the current goroutine's labels and returns the old ones. Goroutines spawned from
/// now on start with a clone of `labels`. On a plain thread nothing is stored and `labels`
/// comes back.
pub fn set_current_labels(labels: Option<Labels>) -> Option<Labels> {
    match current_m().and_then(|m| m.curg()) {
        // SAFETY: `g` is the goroutine running this code: only it touches its labels while it
        // runs (a snapshot reads them only while the goroutine is held still, not running).
        Some(g) => unsafe { std::mem::replace(&mut *g.0.labels.get(), labels) },
        None => labels,
    }
}
