//! Goroutine labels, Go's `pprof.Do` / `pprof.Labels`: key-value pairs attached to the running
//! goroutine, inherited by the goroutines it spawns, and recorded with its stack in the
//! goroutine profile (identical stacks with different labels stay separate samples, as in Go).
//!
//! The runtime carries an opaque pointer per G and calls back here to clone and drop it
//! (`gort_runtime::proc::set_label_ops`); the pointer is an `Arc<LabelSet>` turned raw. A set
//! is immutable: [`with_labels`] installs a new set for the duration of a call and puts the
//! old one back, so a parked goroutine's set can be read (and its `Arc` cloned) while the
//! runtime holds the goroutine still.

use std::sync::{Arc, Once};

/// An immutable, key-sorted set of labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(pub Vec<(String, String)>);

impl LabelSet {
    /// Go's text form: `{"k":"v", "k2":"v2"}`.
    pub fn to_go_string(&self) -> String {
        let kv: Vec<String> = self.0.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
        format!("{{{}}}", kv.join(", "))
    }
}

fn clone_ptr(p: *mut ()) -> *mut () {
    // SAFETY: every labels pointer the runtime holds came from Arc::into_raw in `with_labels`
    // (or from here), and the reference it stands for is alive while the runtime holds it.
    unsafe { Arc::increment_strong_count(p as *const LabelSet) };
    p
}

fn drop_ptr(p: *mut ()) {
    // SAFETY: as above; the runtime gives up exactly the reference it held.
    drop(unsafe { Arc::from_raw(p as *const LabelSet) });
}

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gort_runtime::proc::set_label_ops(gort_runtime::proc::LabelOps { clone: clone_ptr, drop: drop_ptr })
    });
}

/// A new reference to the set behind a runtime labels pointer (`None` for null).
///
/// # Safety
///
/// `p` must be null or a labels pointer that stays alive for the call: the current goroutine's
/// own, or a parked goroutine's read while the runtime holds it still.
pub(crate) unsafe fn from_ptr(p: *mut ()) -> Option<Arc<LabelSet>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees p is a live Arc<LabelSet> pointer; we take a new reference.
    unsafe {
        Arc::increment_strong_count(p as *const LabelSet);
        Some(Arc::from_raw(p as *const LabelSet))
    }
}

/// The current goroutine's labels (empty on a plain thread or without labels).
pub fn labels() -> LabelSet {
    // SAFETY: the current goroutine's own pointer cannot be swapped while we run.
    unsafe { from_ptr(gort_runtime::proc::current_labels()) }.map(|a| (*a).clone()).unwrap_or_default()
}

/// Go's `pprof.Do`: runs `f` with `labels` added to the current goroutine's labels (a key
/// already set is overridden), then restores them. Goroutines spawned inside inherit them.
/// On a plain thread (not a goroutine) `f` just runs: labels live on goroutines.
pub fn with_labels<R>(labels: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    if !gort_runtime::in_goroutine() {
        return f();
    }
    register();
    let mut set = self::labels().0;
    for (k, v) in labels {
        match set.iter_mut().find(|(kk, _)| kk == k) {
            Some(e) => e.1 = v.to_string(),
            None => set.push((k.to_string(), v.to_string())),
        }
    }
    set.sort();
    let new = Arc::into_raw(Arc::new(LabelSet(set))) as *mut ();
    let old = gort_runtime::proc::swap_current_labels(new);
    struct Restore(*mut ());
    impl Drop for Restore {
        fn drop(&mut self) {
            let ours = gort_runtime::proc::swap_current_labels(self.0);
            if !ours.is_null() {
                drop_ptr(ours);
            }
        }
    }
    let _restore = Restore(old);
    f()
}
