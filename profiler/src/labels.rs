//! Goroutine labels, Go's `pprof.Do` / `pprof.Labels`: key-value pairs attached to the running
//! goroutine, inherited by the goroutines it spawns, and recorded with its stack in the
//! goroutine profile (identical stacks with different labels stay separate samples, as in Go).
//!
//! The runtime carries an opaque `Arc` per goroutine (`gort_runtime::set_current_labels`),
//! cloned into the goroutines it spawns; the profiler stores an `Arc<LabelSet>` there. A set is
//! immutable: [`with_labels`] installs a new set for the duration of a call and puts the old one
//! back, so a parked goroutine's set can be read while the runtime holds the goroutine still.

use std::sync::Arc;

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

/// The label set in a goroutine's labels slot, if the profiler put it there (the slot is
/// the runtime's opaque `Labels`; anything else someone stored there is not ours to show).
pub(crate) fn from_slot(l: Option<gort_runtime::Labels>) -> Option<Arc<LabelSet>> {
    l?.downcast::<LabelSet>().ok()
}

/// The current goroutine's labels (empty on a plain thread or without labels).
pub fn labels() -> LabelSet {
    from_slot(gort_runtime::current_labels()).map(|a| (*a).clone()).unwrap_or_default()
}

/// Go's `pprof.Do`: runs `f` with `labels` added to the current goroutine's labels (a key
/// already set is overridden), then restores them. Goroutines spawned inside inherit them.
/// On a plain thread (not a goroutine) `f` just runs: labels live on goroutines.
pub fn with_labels<R>(labels: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    if !gort_runtime::in_goroutine() {
        return f();
    }
    let mut set = self::labels().0;
    for (k, v) in labels {
        match set.iter_mut().find(|(kk, _)| kk == k) {
            Some(e) => e.1 = v.to_string(),
            None => set.push((k.to_string(), v.to_string())),
        }
    }
    set.sort();
    let old = gort_runtime::set_current_labels(Some(Arc::new(LabelSet(set))));
    struct Restore(Option<Option<gort_runtime::Labels>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            gort_runtime::set_current_labels(self.0.take().flatten());
        }
    }
    let _restore = Restore(Some(old));
    f()
}
