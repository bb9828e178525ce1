//! Plain OS threads' stand-in Gs: a thread that blocks on a channel or a lock parks as a G of
//! kind `Thread`, blocking the thread itself on a futex until `ready` flips its status.
//!
//! Deadlock detection must know whether such a thread may still wake a goroutine: every plain
//! thread that has used the runtime counts in [`EXT_THREADS`] until it exits, and in
//! [`EXT_ACTIVE`] while it is not parked.

use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

use crate::g::{self, GKind, GRef, G};
use crate::m::current_m;

/// Plain threads that have used the runtime and are not blocked in it (deadlock detection: such
/// a thread may still wake a goroutine).
pub(crate) static EXT_ACTIVE: AtomicIsize = AtomicIsize::new(0);
/// Plain threads that have used the runtime and not yet exited (parked or not).
pub(crate) static EXT_THREADS: AtomicIsize = AtomicIsize::new(0);

/// Owned by a plain thread's TLS; its drop at thread exit unregisters the thread.
struct ThreadG {
    _g: GRef,
}

impl Drop for ThreadG {
    fn drop(&mut self) {
        // The thread exits: it can no longer wake anyone.
        EXT_ACTIVE.fetch_sub(1, Ordering::SeqCst);
        EXT_THREADS.fetch_sub(1, Ordering::SeqCst);
    }
}

thread_local! {
    static THREAD_G: Cell<Option<GRef>> = const { Cell::new(None) };
    static THREAD_G_OWNER: std::cell::RefCell<Option<ThreadG>> = const { std::cell::RefCell::new(None) };
}

/// This plain thread's stand-in G, created on first use. Creating it registers the thread as
/// one that may wake goroutines (deadlock detection).
pub(crate) fn thread_g() -> GRef {
    if let Some(g) = THREAD_G.with(|c| c.get()) {
        return g;
    }
    let g: &'static G = Box::leak(Box::new(G::new(GKind::Thread)));
    // SAFETY: the G was just created and is not shared yet.
    unsafe { *g.rare().thread.get() = Some(std::thread::current()) };
    g.status.store(g::RUNNING, Ordering::Relaxed);
    let gr = GRef(g);
    THREAD_G.with(|c| c.set(Some(gr)));
    if current_m().is_none() {
        // Ms are part of the runtime, not outside threads that might wake someone.
        g.outside.store(true, Ordering::Relaxed);
        EXT_THREADS.fetch_add(1, Ordering::SeqCst);
        EXT_ACTIVE.fetch_add(1, Ordering::SeqCst);
        THREAD_G_OWNER.with(|o| *o.borrow_mut() = Some(ThreadG { _g: gr }));
    }
    gr
}

/// The first half of every way of readying a parked G: a thread stand-in is woken here
/// ([`ready_thread`]) and `None` returned; a goroutine is stamped for scheduler timing, moved
/// WAITING -> RUNNABLE and returned, for the caller to queue. `what` names the caller in
/// `setgstatus`'s panic.
///
/// # Safety
///
/// As for [`ready`](crate::park::ready).
#[inline(always)]
pub(crate) unsafe fn make_runnable(g: GRef, what: &str) -> Option<GRef> {
    if g.0.kind == GKind::Thread {
        // SAFETY: the caller's contract is ready_thread's.
        unsafe { ready_thread(g) };
        return None;
    }
    crate::schedstats::stamp_ready(g.0);
    // Acquire (in setgstatus): pairs with the Release store of WAITING in execute; Release
    // publishes what the waker wrote (e.g. a value handed over) to the M that resumes the G
    // (which also gets it through the run queue).
    g::setgstatus(g, g::WAITING, g::RUNNABLE, what);
    Some(g)
}

/// Wakes a thread stand-in parked by `park` (the thread half of `ready`).
///
/// # Safety
///
/// As for [`ready`](crate::park::ready): `g` is a thread stand-in published to the caller by
/// the commit of a park that stays parked, and this is the one wake for that park.
pub(crate) unsafe fn ready_thread(g: GRef) {
    debug_assert!(g.0.kind == GKind::Thread);
    if g.0.outside.load(Ordering::Relaxed) {
        // A plain thread counts as active again from *before* it becomes runnable: otherwise
        // there would be a window where it is neither parked nor counted, and check_dead (which
        // cannot see thread stand-ins in allgs) could declare a deadlock it is about to end.
        // The woken thread does not count itself again (see park_thread).
        EXT_ACTIVE.fetch_add(1, Ordering::SeqCst);
    }
    // Acquire (in setgstatus): pairs with park_thread's store of WAITING; Release publishes
    // what the waker wrote to the thread, which reads it after its Acquire load.
    g::setgstatus(g, g::WAITING, g::RUNNABLE, "ready");
    // SAFETY: a thread stand-in's `thread` is written once when it is created, before it can
    // be published to any waker, and never changed.
    let t = unsafe { (*g.0.rare().thread.get()).as_ref() };
    if let Some(t) = t {
        t.unpark();
    }
}
