//! The intrusive doubly linked list under every wait queue: channel wait queues
//! (`chan/queue.rs`, Go's `waitq`) and the sync primitives' wait lists (`sync/waitlist.rs`, the
//! `sudog` queue of Go's `sema.go`). Nodes live elsewhere (on their parked goroutines' stacks)
//! and carry their own [`Links`]; doubly linked so a node can leave from the middle (a woken
//! `select!` arm, a timeout, a `Semaphore` waiter served out of order).
//!
//! # Invariants
//!
//! 1. A node is linked into at most one list, and only while its `queued` flag is true. Links
//!    and flag are read and written only with the lock of the list's owner held; every method
//!    that touches them is `unsafe` for that reason.
//! 2. A linked node stays valid while it is linked (the owners' invariants say why: its goroutine
//!    is parked, or has not yet released the owner's lock).
//! 3. The neighbours of a linked node are linked nodes of the same list.

use std::cell::Cell;
use std::ptr;

/// A node's place in a [`List`].
pub(crate) struct Links<N> {
    queued: Cell<bool>,
    prev: Cell<*const N>,
    next: Cell<*const N>,
}

impl<N> Links<N> {
    pub(crate) const fn new() -> Links<N> {
        Links { queued: Cell::new(false), prev: Cell::new(ptr::null()), next: Cell::new(ptr::null()) }
    }

    /// Whether the node is linked in a list (read with the owner's lock held).
    pub(crate) fn is_queued(&self) -> bool {
        self.queued.get()
    }
}

/// A type whose values can be linked into a [`List`].
pub(crate) trait Linked: Sized {
    fn links(&self) -> &Links<Self>;
}

/// A doubly linked list of nodes it does not own. Guarded by its owner's lock.
pub(crate) struct List<N> {
    head: *const N,
    tail: *const N,
}

impl<N> Default for List<N> {
    fn default() -> Self {
        List::new()
    }
}

impl<N> List<N> {
    pub(crate) const fn new() -> List<N> {
        List { head: ptr::null(), tail: ptr::null() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }
}

impl<N: Linked> List<N> {
    /// Appends `n`.
    ///
    /// # Safety
    /// The owner's lock is held; `n` is not linked and stays valid while linked (invariant 2).
    pub(crate) unsafe fn push_back(&mut self, n: &N) {
        let l = n.links();
        debug_assert!(!l.queued.get());
        l.prev.set(self.tail);
        l.next.set(ptr::null());
        // SAFETY: the tail is a linked node, valid by invariant 2; lock held (invariant 1).
        match unsafe { self.tail.as_ref() } {
            None => self.head = n,
            Some(t) => t.links().next.set(n),
        }
        self.tail = n;
        l.queued.set(true);
    }

    /// Prepends `n`.
    ///
    /// # Safety
    /// As for [`List::push_back`].
    pub(crate) unsafe fn push_front(&mut self, n: &N) {
        let l = n.links();
        debug_assert!(!l.queued.get());
        l.prev.set(ptr::null());
        l.next.set(self.head);
        // SAFETY: the head is a linked node, valid by invariant 2; lock held (invariant 1).
        match unsafe { self.head.as_ref() } {
            None => self.tail = n,
            Some(h) => h.links().prev.set(n),
        }
        self.head = n;
        l.queued.set(true);
    }

    /// The first node, if any.
    ///
    /// # Safety
    /// The owner's lock is held; the reference is used only while it is (or while the node's
    /// owner guarantees it valid).
    pub(crate) unsafe fn front<'a>(&self) -> Option<&'a N> {
        // SAFETY: linked nodes are valid (invariant 2).
        unsafe { self.head.as_ref() }
    }

    /// Unlinks and returns the first node.
    ///
    /// # Safety
    /// As for [`List::front`].
    pub(crate) unsafe fn pop_front<'a>(&mut self) -> Option<&'a N> {
        // SAFETY: the caller's contract.
        let n = unsafe { self.front() }?;
        // SAFETY: lock held; `n` is linked here.
        unsafe { self.remove(n) };
        Some(n)
    }

    /// Unlinks `n` if it is linked.
    ///
    /// # Safety
    /// The owner's lock is held and `n`, if linked, is linked in this list.
    pub(crate) unsafe fn remove(&mut self, n: &N) {
        let l = n.links();
        if !l.queued.get() {
            return;
        }
        let (prev, next) = (l.prev.get(), l.next.get());
        // SAFETY: neighbours of a linked node are linked nodes of this list (invariant 3).
        match unsafe { prev.as_ref() } {
            None => self.head = next,
            Some(p) => p.links().next.set(next),
        }
        // SAFETY: as above.
        match unsafe { next.as_ref() } {
            None => self.tail = prev,
            Some(x) => x.links().prev.set(prev),
        }
        l.prev.set(ptr::null());
        l.next.set(ptr::null());
        l.queued.set(false);
    }

    /// Calls `f` on every linked node, front to back.
    ///
    /// # Safety
    /// The owner's lock is held.
    pub(crate) unsafe fn for_each(&self, mut f: impl FnMut(&N)) {
        let mut p = self.head;
        // SAFETY: linked nodes are valid while the lock is held (invariants 1, 2).
        while let Some(n) = unsafe { p.as_ref() } {
            f(n);
            p = n.links().next.get();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct N(u32, Links<N>);

    impl Linked for N {
        fn links(&self) -> &Links<N> {
            &self.1
        }
    }

    fn ids(l: &List<N>) -> Vec<u32> {
        let mut v = Vec::new();
        // SAFETY: single-threaded test; every node outlives the list's use.
        unsafe { l.for_each(|n| v.push(n.0)) };
        v
    }

    #[test]
    fn push_remove_pop() {
        let ns: Vec<N> = (0..4).map(|i| N(i, Links::new())).collect();
        let mut l = List::new();
        // SAFETY: single-threaded test; the nodes outlive the list's use and are linked once.
        unsafe {
            l.push_back(&ns[1]);
            l.push_back(&ns[2]);
            l.push_front(&ns[0]);
            l.push_back(&ns[3]);
        }
        assert_eq!(ids(&l), [0, 1, 2, 3]);
        // SAFETY: as above.
        unsafe {
            l.remove(&ns[2]); // middle
            l.remove(&ns[2]); // not linked any more: no-op
        }
        assert!(!ns[2].1.is_queued());
        assert_eq!(ids(&l), [0, 1, 3]);
        // SAFETY: as above.
        unsafe { l.remove(&ns[3]) }; // tail
        assert_eq!(ids(&l), [0, 1]);
        // SAFETY: as above.
        let popped: Vec<u32> = std::iter::from_fn(|| unsafe { l.pop_front() }.map(|n| n.0)).collect();
        assert_eq!(popped, [0, 1]);
        assert!(l.is_empty());
        // Re-linking after removal works, at either end.
        // SAFETY: as above.
        unsafe {
            l.push_front(&ns[3]);
            l.push_front(&ns[2]);
        }
        assert_eq!(ids(&l), [2, 3]);
    }
}
