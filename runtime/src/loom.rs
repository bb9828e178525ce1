//! The seam between the lock-free protocols that loom model-checks and the rest of the runtime:
//! [`WaitSlot`](crate::waitslot::WaitSlot), [`Parker`](crate::park::Parker) and `Sema` import
//! their atomics, `park`/`ready`, `GRef`, the lock, the timer and the profiling hooks from here.
//!
//! In a normal build everything here is a re-export of the real thing (or an empty inline
//! function), so those modules compile to exactly the code they would with the imports written
//! out. Under `--cfg gort_loom` the crate is cut down to those modules (see `lib.rs`) and this
//! module supplies loom's atomics and a loom-thread implementation of `park`/`ready` with the
//! same protocol as `park_thread`: the G is marked waiting, the commit runs on the parking thread,
//! and the thread sleeps until `ready` moves it from waiting to runnable (a `ready` of a G that
//! is not waiting panics, which is how a duplicate wakeup shows up). The models live next to the
//! code they check, in `loom_models` modules; `tests/loom.rs` at the root runs them.

#[cfg(not(gort_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

    pub(crate) use crate::g::{GRef, WaitReason, G};
    pub(crate) use crate::lock::Lock;
    pub(crate) use crate::mprof;
    pub(crate) use crate::park::yield_now;
    pub(crate) use crate::park::{current, in_goroutine, park, ready};
    pub(crate) use crate::time::{deadline, nanotime, RawTimer};
}

#[cfg(gort_loom)]
mod imp {
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;
    use std::time::Duration;

    pub(crate) use ::loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

    /// Stands in for `g::WaitReason`: the models' parks need no real reason.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum WaitReason {
        SyncParker,
        Future,
        Model,
    }

    const RUNNING: usize = 0;
    const WAITING: usize = 1;
    const RUNNABLE: usize = 2;

    /// A loom thread's stand-in G. Aligned like the real one, so a pointer to it never collides
    /// with the small states of the words that hold G pointers.
    #[repr(align(8))]
    pub(crate) struct G {
        status: AtomicUsize,
        thread: ::loom::thread::Thread,
    }

    #[derive(Clone, Copy)]
    pub(crate) struct GRef(&'static G);

    impl PartialEq for GRef {
        fn eq(&self, other: &GRef) -> bool {
            std::ptr::eq(self.0, other.0)
        }
    }
    impl Eq for GRef {}

    impl std::fmt::Debug for GRef {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "G({:p})", self.0)
        }
    }

    impl GRef {
        pub(crate) fn as_ptr(self) -> *const G {
            self.0
        }

        /// # Safety
        /// `p` came from [`as_ptr`](GRef::as_ptr) (the Gs are leaked, so it is still valid).
        pub(crate) unsafe fn from_ptr(p: *const G) -> GRef {
            // SAFETY: per the contract, `p` points to a leaked, hence 'static, G.
            GRef(unsafe { &*p })
        }
    }

    ::loom::thread_local! {
        static ME: Cell<Option<GRef>> = Cell::new(None);
    }

    /// This loom thread's G, made on first use. Leaked: a model run is short and its Gs are few.
    pub(crate) fn current() -> GRef {
        ME.with(|me| {
            if let Some(g) = me.get() {
                return g;
            }
            let g =
                GRef(Box::leak(Box::new(G { status: AtomicUsize::new(RUNNING), thread: ::loom::thread::current() })));
            me.set(Some(g));
            g
        })
    }

    pub(crate) fn in_goroutine() -> bool {
        false
    }

    /// `park_thread`'s protocol on a loom thread.
    ///
    /// # Safety
    /// As for the real `park`: the models' commits are the production ones.
    pub(crate) unsafe fn park<F: FnOnce(GRef) -> bool>(_reason: WaitReason, commit: F) {
        let g = current();
        // SeqCst: as park_thread's store of WAITING, ordered before the commit publishes the G.
        g.0.status.store(WAITING, Ordering::SeqCst);
        if !commit(g) {
            g.0.status.store(RUNNING, Ordering::Relaxed);
            return;
        }
        // Acquire: pairs with ready's AcqRel CAS (what the waker wrote is ours).
        while g.0.status.load(Ordering::Acquire) == WAITING {
            ::loom::thread::park();
        }
        g.0.status.store(RUNNING, Ordering::Relaxed);
    }

    /// `ready` for a loom thread's G.
    ///
    /// # Safety
    /// As for the real `ready`.
    pub(crate) unsafe fn ready(g: GRef) {
        // AcqRel: Acquire pairs with park's SeqCst store of WAITING; Release with its Acquire load.
        let r = g.0.status.compare_exchange(WAITING, RUNNABLE, Ordering::AcqRel, Ordering::Relaxed);
        assert!(r.is_ok(), "ready of a G that is not parked (a second wakeup)");
        g.0.thread.unpark();
    }

    /// Stands in for `lock::Lock` (which a park commit may unlock for the thread that
    /// locked it): a flag under a loom mutex, waited for on a condvar, so loom sees a blocked
    /// thread rather than a spinning one.
    pub(crate) struct Lock {
        held: ::loom::sync::Mutex<bool>,
        freed: ::loom::sync::Condvar,
    }

    impl Lock {
        pub(crate) fn new() -> Lock {
            Lock { held: ::loom::sync::Mutex::new(false), freed: ::loom::sync::Condvar::new() }
        }

        pub(crate) fn lock(&self) {
            let mut held = self.held.lock().unwrap();
            while *held {
                held = self.freed.wait(held).unwrap();
            }
            *held = true;
        }

        /// # Safety
        /// As for the real one: held by the caller's operation.
        pub(crate) unsafe fn unlock(&self) {
            *self.held.lock().unwrap() = false;
            self.freed.notify_one();
        }
    }

    pub(crate) fn yield_now() {
        ::loom::thread::yield_now();
    }

    pub(crate) fn nanotime() -> u64 {
        0
    }

    pub(crate) fn deadline(_d: Duration) -> u64 {
        0
    }

    /// Stands in for `time::RawTimer`: a loom thread of its own runs the callback at a moment of
    /// loom's choosing, unless `stop` comes first; `stop` waits out a running callback, as the
    /// real one does.
    pub(crate) struct RawTimer {
        armed: Arc<AtomicBool>,
        thread: RefCell<Option<::loom::thread::JoinHandle<()>>>,
    }

    impl RawTimer {
        pub(crate) fn new(_when: u64, f: Box<dyn Fn() + Send + Sync>) -> RawTimer {
            let armed = Arc::new(AtomicBool::new(true));
            let a = armed.clone();
            // AcqRel: the callback or `stop`, not both, claims the firing.
            let thread = ::loom::thread::spawn(move || {
                if a.swap(false, Ordering::AcqRel) {
                    f()
                }
            });
            RawTimer { armed, thread: RefCell::new(Some(thread)) }
        }

        pub(crate) fn stop(&self) -> bool {
            // AcqRel: as in the timer's thread.
            let prevented = self.armed.swap(false, Ordering::AcqRel);
            if let Some(t) = self.thread.borrow_mut().take() {
                t.join().expect("timer callback panicked");
            }
            prevented
        }
    }

    /// The profiling hooks `Sema` calls: profiling is off in the models.
    pub(crate) mod mprof {
        pub(crate) fn block_start() -> Option<u64> {
            None
        }
        pub(crate) fn block_end(_t0: Option<u64>) {}
        pub(crate) fn mutex_profiling() -> bool {
            false
        }
        pub(crate) fn mutex_event(_delay: u64) {}
    }

    /// Runs `f` under loom with a fixed preemption bound, so a model's cost does not depend on
    /// the environment (`LOOM_MAX_PREEMPTIONS` is overridden).
    #[cfg(test)]
    pub(crate) fn model<F: Fn() + Sync + Send + 'static>(preemptions: usize, f: F) {
        let mut b = ::loom::model::Builder::new();
        b.preemption_bound = Some(preemptions);
        b.check(f);
    }
}

pub(crate) use imp::*;

/// Marks the point between the store and the load of each half of a `SeqCst` Dekker pair. loom
/// models `SeqCst` loads and stores as if they were `AcqRel`, so without help it would report a
/// lost wakeup that the single `SeqCst` order rules out; under `gort_loom` this is a `SeqCst`
/// fence, which loom does model and which gives the pair the guarantee the `SeqCst` accesses
/// give it for real. A normal build needs nothing: the accesses themselves are `SeqCst`.
#[inline(always)]
pub(crate) fn dekker_fence() {
    #[cfg(gort_loom)]
    ::loom::sync::atomic::fence(Ordering::SeqCst);
}

/// A `const fn` in a normal build, a plain `fn` under `gort_loom` (loom's atomics have no const
/// constructors): for the constructors of the modelled types.
macro_rules! const_fn {
    ($(#[$m:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(gort_loom))]
        $(#[$m])* $vis const fn $($rest)*
        #[cfg(gort_loom)]
        $(#[$m])* $vis fn $($rest)*
    };
}
pub(crate) use const_fn;
