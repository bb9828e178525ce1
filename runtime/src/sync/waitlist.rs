//! Intrusive wait lists for the sync primitives (the `sudog` queue of Go's `sema.go`).
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
use std::ptr;

use crate::g::GRef;

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
    /// `nanotime()` when the wait began, for the mutex profile (0 = not profiled).
    pub(crate) since: Cell<u64>,
    queued: Cell<bool>,
    prev: Cell<*const WaitNode>,
    next: Cell<*const WaitNode>,
}

impl WaitNode {
    /// A node for the current goroutine.
    pub(crate) fn new() -> WaitNode {
        WaitNode {
            g: crate::park::current(),
            granted: Cell::new(false),
            parked: Cell::new(false),
            weight: Cell::new(0),
            since: Cell::new(0),
            queued: Cell::new(false),
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
        }
    }
}

/// A doubly linked list of [`WaitNode`]s. Guarded by its owner's lock.
pub(crate) struct WaitList {
    head: *const WaitNode,
    tail: *const WaitNode,
}

impl WaitList {
    pub(crate) const fn new() -> WaitList {
        WaitList { head: ptr::null(), tail: ptr::null() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends (`lifo == false`) or prepends `n`.
    ///
    /// # Safety
    /// The owner's lock is held; `n` is not queued and stays valid while queued.
    pub(crate) unsafe fn push(&mut self, n: &WaitNode, lifo: bool) {
        debug_assert!(!n.queued.get());
        n.queued.set(true);
        if self.head.is_null() {
            n.prev.set(ptr::null());
            n.next.set(ptr::null());
            self.head = n;
            self.tail = n;
        } else if lifo {
            n.prev.set(ptr::null());
            n.next.set(self.head);
            // SAFETY: the head is a queued node, valid by invariant 1.
            unsafe { (*self.head).prev.set(n) };
            self.head = n;
        } else {
            n.next.set(ptr::null());
            n.prev.set(self.tail);
            // SAFETY: the tail is a queued node, valid by invariant 1.
            unsafe { (*self.tail).next.set(n) };
            self.tail = n;
        }
    }

    /// The first node, if any.
    ///
    /// # Safety
    /// The owner's lock is held; the reference is used only while it is.
    pub(crate) unsafe fn front<'a>(&self) -> Option<&'a WaitNode> {
        // SAFETY: queued nodes are valid (invariant 1).
        unsafe { self.head.as_ref() }
    }

    /// Unlinks and returns the first node.
    ///
    /// # Safety
    /// The owner's lock is held.
    pub(crate) unsafe fn pop_front<'a>(&mut self) -> Option<&'a WaitNode> {
        // SAFETY: lock held (caller); queued nodes are valid.
        let n = unsafe { self.head.as_ref() }?;
        // SAFETY: lock held; `n` is queued here.
        unsafe { self.remove(n) };
        Some(n)
    }

    /// Unlinks `n` if queued.
    ///
    /// # Safety
    /// The owner's lock is held and `n`, if queued, is queued in this list.
    pub(crate) unsafe fn remove(&mut self, n: &WaitNode) {
        if !n.queued.get() {
            return;
        }
        let (prev, next) = (n.prev.get(), n.next.get());
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: neighbours of a queued node are queued nodes.
            unsafe { (*prev).next.set(next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { (*next).prev.set(prev) };
        }
        n.queued.set(false);
    }

    /// Calls `f` on every queued node, front to back.
    ///
    /// # Safety
    /// The owner's lock is held.
    pub(crate) unsafe fn for_each(&self, mut f: impl FnMut(&WaitNode)) {
        let mut p = self.head;
        // SAFETY: queued nodes are valid while the lock is held.
        while let Some(n) = unsafe { p.as_ref() } {
            f(n);
            p = n.next.get();
        }
    }
}
