//! Intrusive wait lists for the sync primitives (the `sudog` queue of Go's `sema.go`), on the
//! runtime's one intrusive list ([`crate::ilist`]).
//!
//! # Invariants
//!
//! 1. A [`WaitNode`] lives on its waiting goroutine's stack. It is linked into at most one list,
//!    only while `queued` is true; links and `queued` are touched only with the lock of the
//!    primitive owning the list held.
//! 2. A node is linked and its goroutine parked in one critical section: the goroutine queues it
//!    with the primitive's lock held and the `park` commit releases that lock. So whoever finds
//!    a node in the list (under the lock) may ready its goroutine, once, after unlinking it.
//!    (`Cond`, whose waiter queues before it parks, tracks the difference in `parked`.)
//! 3. The fields a waker writes (`granted`) are written after unlinking and before `ready`;
//!    after `ready` the waker never touches the node again.

use std::cell::Cell;

use crate::ilist::{Linked, Links, List};
use crate::loom::GRef;

/// One waiting goroutine.
pub(crate) struct WaitNode {
    /// Who to ready.
    pub(crate) g: GRef,
    /// Set by the waker: the resource was handed over (Go's `sudog.ticket`), or `Cond` notified.
    pub(crate) granted: Cell<bool>,
    /// `Cond` only: the goroutine has committed its park (see invariant 2).
    pub(crate) parked: Cell<bool>,
    /// Weight requested (`Semaphore`).
    pub(crate) weight: Cell<i64>,
    /// `nanotime()` when the wait began or was last charged to an unlocker, for the mutex
    /// profile (0 = not profiled).
    pub(crate) since: Cell<u64>,
    links: Links<WaitNode>,
}

impl Linked for WaitNode {
    fn links(&self) -> &Links<WaitNode> {
        &self.links
    }
}

impl WaitNode {
    /// A node for the current goroutine.
    pub(crate) fn new() -> WaitNode {
        WaitNode {
            g: crate::loom::current(),
            granted: Cell::new(false),
            parked: Cell::new(false),
            weight: Cell::new(0),
            since: Cell::new(0),
            links: Links::new(),
        }
    }
}

/// A doubly linked list of [`WaitNode`]s. Guarded by its owner's lock.
pub(crate) type WaitList = List<WaitNode>;
