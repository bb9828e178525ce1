//! A goroutine's labels slot (`G::labels`): a thin atomic pointer to an `Arc<Labels>`, so that
//! a SIGPROF or stack-request handler interrupting the goroutine can take a reference with one
//! atomic increment; and the conversions between the slot's references and `Labels`.

use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Labels, G};

impl G {
    /// A new reference to the labels in the slot (null if none): one atomic increment, no
    /// allocation, no lock, so a signal handler may call it.
    ///
    /// # Safety
    ///
    /// The slot must not change during the call: the caller is the goroutine itself, or runs on
    /// its thread while it is interrupted (a signal handler), or holds it while it cannot run
    /// (its spawner before it is runnable, the M that saw it finish, a snapshot holding it). Only
    /// those change the slot, and each releases the slot's old reference only after the swap.
    pub(crate) unsafe fn labels_ref(&self) -> *const Labels {
        let p = self.labels.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: `p` came from `Arc::into_raw` and the slot still owns a reference (it
            // cannot change during the call, per the contract), so the count is at least one.
            unsafe { Arc::increment_strong_count(p) };
        }
        p
    }

    /// Puts `new` (a reference from [`labels_into_ref`] or [`G::labels_ref`], or null) in the
    /// slot and returns the reference the slot held (null if none), now the caller's.
    ///
    /// # Safety
    ///
    /// As for [`G::labels_ref`], and the caller must be one of those allowed to change the slot
    /// (not a signal handler).
    pub(crate) unsafe fn swap_labels(&self, new: *const Labels) -> *const Labels {
        // Release: a reader that Acquires the pointer sees the `Labels` it points to.
        self.labels.swap(new as *mut Labels, Ordering::AcqRel)
    }
}

/// A reference to `l` in the form a labels slot holds (null for `None`).
pub(crate) fn labels_into_ref(l: Option<Labels>) -> *const Labels {
    l.map_or(ptr::null(), |l| Arc::into_raw(Arc::new(l)))
}

/// Takes one reference made by [`labels_into_ref`] or [`G::labels_ref`] back and returns (a
/// clone of) the labels.
///
/// # Safety
///
/// `p` is null or such a reference, and the caller owns it (it is released here).
pub(crate) unsafe fn labels_from_ref(p: *const Labels) -> Option<Labels> {
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from `Arc::into_raw` of an `Arc<Labels>` and the caller owns this
    // reference (contract); it is released when the `Arc` drops.
    let outer = unsafe { Arc::from_raw(p) };
    Some((*outer).clone())
}
