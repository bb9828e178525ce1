//! Goroutine labels, Go's `pprof.Do` / `pprof.Labels`: key-value pairs attached to the running
//! goroutine, inherited by the goroutines it spawns, and recorded with its stack in the
//! goroutine profile (identical stacks with different labels stay separate samples, as in Go).
//!
//! The runtime carries an opaque pointer per G and calls back here to clone and drop it
//! (`gort_runtime::proc::set_label_ops`); the pointer is an `Arc<LabelSet>` turned raw. A set
//! is immutable: [`with_labels`] installs a new set for the duration of a call and puts the
//! old one back, so a parked goroutine's set can be read (and its `Arc` cloned) while the
//! runtime holds the goroutine still.

use std::sync::{Arc, OnceLock};

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

/// The runtime's `LabelOps::clone`.
///
/// # Safety
/// `p` is a live labels pointer of ours (from `Arc::into_raw` in [`with_labels`] or from here).
unsafe fn clone_ptr(p: *mut ()) -> *mut () {
    // SAFETY: per the contract, `p` stands for a live `Arc<LabelSet>` reference.
    unsafe { Arc::increment_strong_count(p as *const LabelSet) };
    p
}

/// The runtime's `LabelOps::drop`.
///
/// # Safety
/// `p` is a labels pointer of ours whose reference the caller gives up.
unsafe fn drop_ptr(p: *mut ()) {
    // SAFETY: per the contract, `p` owns one `Arc<LabelSet>` reference, released here.
    drop(unsafe { Arc::from_raw(p as *const LabelSet) });
}

/// Whether our label operations are the runtime's, once [`register`] has tried.
static OURS: OnceLock<bool> = OnceLock::new();

/// Registers our label operations with the runtime, once; false if someone else's were
/// registered first (then our pointers must not be stored in the runtime).
fn register() -> bool {
    *OURS.get_or_init(|| {
        // SAFETY: the runtime will call these only on labels pointers stored with
        // `swap_current_labels` or made by `clone_ptr`; we store only our own `Arc<LabelSet>`
        // pointers there, and only once these ops are installed (`with_labels` checks).
        unsafe { gort_runtime::proc::set_label_ops(gort_runtime::proc::LabelOps { clone: clone_ptr, drop: drop_ptr }) }
    })
}

/// A new reference to the set behind a runtime labels pointer (`None` for null, or when our
/// label operations are not the runtime's: the pointer is then none of ours).
///
/// # Safety
///
/// `p` must be null or a labels pointer that stays alive for the call: the current goroutine's
/// own, or a parked goroutine's read while the runtime holds it still.
pub(crate) unsafe fn from_ptr(p: *mut ()) -> Option<Arc<LabelSet>> {
    if p.is_null() || OURS.get() != Some(&true) {
        return None;
    }
    // SAFETY: with our ops registered, every labels pointer the runtime holds is one of our
    // `Arc<LabelSet>` references (`swap_current_labels`' contract), alive for the call (the
    // caller's contract); we take a new reference.
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
    assert!(register(), "gort-profiler: another label implementation was registered with the runtime");
    let mut set = self::labels().0;
    for (k, v) in labels {
        match set.iter_mut().find(|(kk, _)| kk == k) {
            Some(e) => e.1 = v.to_string(),
            None => set.push((k.to_string(), v.to_string())),
        }
    }
    set.sort();
    let new = Arc::into_raw(Arc::new(LabelSet(set))) as *mut ();
    // SAFETY: `new` owns one reference to a fresh `Arc<LabelSet>`, and our ops are the
    // registered ones (checked above). What comes back is null or, as whoever stored it had to
    // use our ops' kind of pointer, a reference of ours, owned by `Restore` until it goes back.
    let old = unsafe { gort_runtime::proc::swap_current_labels(new) };
    struct Restore(*mut ());
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: `self.0` is null or the reference taken out above, which `Restore` owns;
            // our ops are the registered ones.
            let ours = unsafe { gort_runtime::proc::swap_current_labels(self.0) };
            if !ours.is_null() {
                // SAFETY: `ours` is the reference stored above (a nested `with_labels` on this
                // goroutine restores before we get here), given back to us.
                unsafe { drop_ptr(ours) };
            }
        }
    }
    let _restore = Restore(old);
    f()
}
