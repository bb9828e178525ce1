//! The global run queue (Go's `sched.runq`, guarded by `sched.lock`): a FIFO of runnable Gs
//! behind a mutex, with batch operations so a P's overflow moves hundreds of Gs under one lock
//! and a hungry P takes a fair batch at once.
//!
//! # Invariants
//!
//! - `len` equals the deque's length; it is written only while `q` is locked, and read without
//!   the lock as a hint (`is_empty`, `len`).
//! - The spinning-M protocol (`sched/idle.rs`) needs "push, then `fence(SeqCst)`, then read `npidle`"
//!   against "`npidle++`, `fence(SeqCst)`, then read the queues": a push stores `len` before
//!   returning (inside the lock, SeqCst), so a submitter's fence orders it before its read of
//!   `npidle`, and a spinner's SeqCst load of `len` after its own fence sees it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_deque::Worker;
use parking_lot::Mutex;

use crate::g::GRef;

/// The global run queue: one per process (the runtime starts once).
static GLOBAL: GlobalQueue = GlobalQueue::new();

/// The global run queue.
#[inline]
pub(crate) fn global() -> &'static GlobalQueue {
    &GLOBAL
}

pub(crate) struct GlobalQueue {
    q: Mutex<VecDeque<GRef>>,
    len: AtomicUsize,
}

impl GlobalQueue {
    const fn new() -> GlobalQueue {
        GlobalQueue { q: Mutex::new(VecDeque::new()), len: AtomicUsize::new(0) }
    }

    /// Appends one G.
    pub(crate) fn push(&self, g: GRef) {
        let mut q = self.q.lock();
        q.push_back(g);
        // SeqCst: the spinning protocol's submitter side (module docs).
        self.len.store(q.len(), Ordering::SeqCst);
    }

    /// Appends every G of `gs`, in order, under one lock (Go's `globrunqputbatch`).
    pub(crate) fn push_batch(&self, gs: impl IntoIterator<Item = GRef>) {
        let mut q = self.q.lock();
        q.extend(gs);
        // SeqCst: as in `push`.
        self.len.store(q.len(), Ordering::SeqCst);
    }

    /// Whether the queue looks empty (a racy hint; SeqCst for the spinner's re-check).
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::SeqCst) == 0
    }

    /// The queue's length (a racy hint, for schedtrace).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Go's `globrunqget`: takes a fair share for one of `nprocs` Ps (`len / nprocs + 1`, at
    /// most `max`), returns the first G and puts the rest on `local`.
    pub(crate) fn get_batch(&self, local: &Worker<GRef>, nprocs: usize, max: usize) -> Option<GRef> {
        if self.is_empty() {
            return None;
        }
        let mut q = self.q.lock();
        let n = (q.len() / nprocs.max(1) + 1).min(q.len()).min(max.max(1));
        let first = q.pop_front();
        for _ in 1..n {
            match q.pop_front() {
                Some(g) => local.push(g),
                None => break,
            }
        }
        // Relaxed: a take never has to be seen by the spinning protocol (only pushes do).
        self.len.store(q.len(), Ordering::Relaxed);
        first
    }
}
