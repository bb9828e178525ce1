//! `Parker`/`Unparker`: a wake-up token for blocking primitives built outside the runtime, on
//! park/ready but without their unsafe contract (the shape of `std::thread::park` and
//! crossbeam's `Parker`).
//!
//! # The word
//!
//! A parker is one `Arc`'d word, shared by the [`Parker`] and its [`Unparker`]s:
//!
//! | value       | meaning                                                                  |
//! |-------------|--------------------------------------------------------------------------|
//! | `EMPTY`     | no token, nobody parked                                                  |
//! | `NOTIFIED`  | a token: the next park returns at once                                   |
//! | `TIMED_OUT` | a `park_timeout`'s timer fired; its park consumes this and returns false |
//! | a G pointer | the owner is parked in `Parker::park`/`park_timeout` on this very parker |
//!
//! # Invariants
//!
//! 1. **A G pointer is in the word only while its G is parked on it.** Only the park commit of
//!    `Parker::park`/`park_timeout` stores one (a CAS from `EMPTY`, with the owner's own G,
//!    already parked), and the owner cannot return from that park before it is readied.
//! 2. **Whoever takes a G pointer out readies it, exactly once.** Every write over a G pointer
//!    is an RMW (the unparker's swap to `NOTIFIED`, the timer's CAS to `TIMED_OUT`), so exactly
//!    one party sees it, and that party readies it. With 1, that is the one `ready` of the park
//!    that published it, which is `ready`'s contract.
//! 3. **Nothing else in the word names a goroutine.** So an `unpark` after the owner moved on,
//!    exited, or had its G reused by another goroutine finds `EMPTY`, `NOTIFIED` or the
//!    owner's *current* park on this parker, never a stranger: it sets `NOTIFIED` in memory the
//!    `Arc` keeps alive, and the next park returns at once.
//! 4. **A `park_timeout`'s timer acts only during that call.** The call stops the timer
//!    (`RawTimer::stop` waits out a running callback) before it reads the outcome, so a late
//!    timer cannot mark a later park timed out.
//!
//! The owner is the one context that calls `park`: `Parker` is `Send` but not `Sync` nor
//! `Clone`, so one goroutine or thread at a time. Reaching one `Parker` from two goroutines
//! through a thread-local (which the spawn contract rules out) cannot break invariant 1 either:
//! a second parker's commit fails on the first's G pointer, and the second one panics.
//!
//! The loom models at the bottom (`--cfg gort_loom`, see `loom.rs`) check that a park always
//! returns (an unpark before or after it, several unparks, a timeout racing an unpark), that a
//! G is readied once (invariant 2), and that an unpark is never lost to a timeout (invariant 4);
//! invariants 1 and 3 are about lifetimes and reuse, which loom does not see.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

use crate::loom::{deadline, park, ready, AtomicUsize, GRef, Ordering, RawTimer, WaitReason, G};

const EMPTY: usize = 0;
const NOTIFIED: usize = 1;
const TIMED_OUT: usize = 2;

/// The panic of a `Parker` found parked on by someone else (module docs, last paragraph).
const SHARED: &str = "gort: a Parker parked on by two goroutines at once (shared through a thread-local?)";

// A G pointer never collides with the three states: Gs are leaked boxes, so aligned and non-null.
const _: () = assert!(std::mem::align_of::<G>() > TIMED_OUT);

/// The shared word (module docs).
struct Inner {
    state: AtomicUsize,
}

impl Inner {
    /// Takes the token if there is one.
    fn take_token(&self) -> bool {
        // The load first: without a token (every park that then waits) a failed CAS would still
        // be a locked instruction. A token the load misses is taken by the park's commit CAS,
        // which fails on it. Acquire: pairs with the unparker's Release swap, so what it wrote
        // before unparking is visible to the owner once `park` returns.
        self.state.load(Ordering::Relaxed) == NOTIFIED
            && self.state.compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Parks the current G on the word, waiting for `reason`, if the word is `EMPTY`; returns
    /// when woken, or at once if it is not.
    fn park_once(self: &Arc<Self>, reason: WaitReason) {
        // The commit owns a reference, so the word outlives the CAS that may let the owner run
        // on and drop everything else.
        let me = self.clone();
        let commit = move |g: GRef| {
            // Release: publishes the parked G to the RMW that takes it out (invariant 2).
            me.state.compare_exchange(EMPTY, g.as_ptr() as usize, Ordering::Release, Ordering::Relaxed).is_ok()
        };
        // SAFETY: the commit publishes `g` only in the word, with its last access (the CAS) but
        // for its own `Arc`; a taker takes it by RMW and readies it once (invariant 2). A failed
        // CAS publishes nothing and returns false. It neither parks nor panics.
        unsafe { park(reason, commit) };
    }

    /// [`Unparker::unpark`] (and a [`Waker`]'s `wake`).
    fn unpark(&self) {
        // AcqRel: Release publishes what the caller wrote to the owner's Acquire take; Acquire
        // pairs with the commit's Release CAS when we take a G.
        let w = self.state.swap(NOTIFIED, Ordering::AcqRel);
        if w > TIMED_OUT {
            // SAFETY: our swap took `w` out of the word, where only a parker's commit stores a G
            // pointer, for its own parked G (invariant 1); every other taker uses an RMW too, so
            // this is the one `ready` of that park.
            unsafe { ready(GRef::from_ptr(w as *const G)) };
        }
    }

    /// The `park_timeout` timer: marks the word timed out and readies the owner if it is parked.
    fn time_out(&self) {
        // Acquire: pairs with the commit's Release CAS when we find a G.
        let mut w = self.state.load(Ordering::Acquire);
        loop {
            if w == NOTIFIED || w == TIMED_OUT {
                return; // an unpark came first, or we already fired
            }
            // AcqRel: Acquire as above; Release orders our TIMED_OUT before the owner's read.
            match self.state.compare_exchange(w, TIMED_OUT, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if w != EMPTY {
                        // SAFETY: our CAS took `w` out of the word, where only a parker's commit
                        // stores a G pointer, for its own parked G (invariant 1); every other
                        // taker uses an RMW too, so this is the one `ready` of that park.
                        unsafe { ready(GRef::from_ptr(w as *const G)) };
                    }
                    return;
                }
                Err(v) => w = v,
            }
        }
    }
}

/// The parking half of a wake-up token: one goroutine (or plain thread) parks on it, others
/// wake it through its [`Unparker`]s. For building your own blocking primitives; the runtime's
/// `park`/`ready` underneath need no `unsafe` this way.
///
/// A `Parker` holds at most one token. [`unpark`](Unparker::unpark) makes the token available;
/// [`park`](Parker::park) consumes it, blocking until it is available if it is not. So an
/// `unpark` before the `park` makes that `park` return at once, and several `unpark`s before a
/// `park` count as one. `park` never returns without consuming a token: there are no spurious
/// wake-ups, but a token left over from an earlier `unpark` ends the next `park` at once, so
/// check your condition in a loop, as with `std::thread::park`.
///
/// On a goroutine, parking parks the goroutine (wait reason `sync.Parker.park` in goroutine
/// dumps and profiles) and frees its thread; on a plain OS thread it blocks the thread.
///
/// `Send` but neither `Sync` nor `Clone`: it belongs to the one goroutine or thread that parks
/// on it. An `unpark` that arrives after that goroutine has finished is harmless: it only sets
/// a token that nobody will take.
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<gort_runtime::sync::Parker>(); // not Sync: one owner parks on it
/// ```
/// ```compile_fail
/// let p = gort_runtime::sync::Parker::new();
/// let q = p.clone(); // not Clone: hand out Unparkers instead
/// ```
///
/// ```
/// use gort_runtime::sync::Parker;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let main = || {
///     let p = Parker::new();
///     let u = p.unparker();
///     let done = Arc::new(AtomicBool::new(false));
///     let d = done.clone();
///     let waker = move || {
///         d.store(true, Ordering::Release);
///         u.unpark();
///     };
///     // SAFETY: `waker` holds only `Send` values (an `Arc` and an `Unparker`) and makes no
///     // blocking call.
///     unsafe { gort_runtime::spawn(waker) };
///     while !done.load(Ordering::Acquire) {
///         p.park();
///     }
/// };
/// // SAFETY: `main` holds only `Send` values across its parks (a `Parker`, an `Arc`), and touches
/// // no thread-local.
/// unsafe { gort_runtime::run(main) };
/// ```
pub struct Parker {
    inner: Arc<Inner>,
    /// Not `Sync`: two contexts parking on one word at once would break the module invariants.
    _not_sync: PhantomData<Cell<()>>,
}

impl Parker {
    /// A parker without a token.
    pub fn new() -> Parker {
        Parker { inner: Arc::new(Inner { state: AtomicUsize::new(EMPTY) }), _not_sync: PhantomData }
    }

    /// A handle that wakes this parker; clone it freely.
    pub fn unparker(&self) -> Unparker {
        Unparker { inner: self.inner.clone() }
    }

    /// A [`Waker`] whose `wake` is an [`unpark`](Unparker::unpark) of this parker: what
    /// `block_on` hands a future. It holds the word, never a G, so a wake after the owner moved
    /// on or exited only leaves a token (invariant 3).
    pub(crate) fn waker(&self) -> Waker {
        Waker::from(self.inner.clone())
    }

    /// Blocks until the token is available, then consumes it. Returns at once if an
    /// [`unpark`](Unparker::unpark) came first (since the last `park` consumed the token).
    ///
    /// Memory: what an unparker wrote before its `unpark` is visible after the `park` that
    /// consumes the token.
    ///
    /// # Panics
    /// If another goroutine is parked on this very parker at the same time, which only a
    /// `Parker` shared through a thread-local can arrange.
    pub fn park(&self) {
        self.park_for(WaitReason::SyncParker);
    }

    /// [`park`](Parker::park), shown in goroutine dumps as waiting for `reason` (`block_on`
    /// parks as `future`).
    pub(crate) fn park_for(&self, reason: WaitReason) {
        while !self.inner.take_token() {
            self.inner.park_once(reason);
            // Woken by an unpark, or not parked because a token came first: NOTIFIED either way
            // (no timer runs outside `park_timeout`), unless someone else parks on this word.
            assert_eq!(self.inner.state.load(Ordering::Relaxed), NOTIFIED, "{SHARED}");
        }
    }

    /// As [`park`](Parker::park), but gives up after `timeout`: returns true if it consumed the
    /// token, false if the time ran out (a zero `timeout` only takes a waiting token). Timed
    /// with the runtime's timers, like [`sleep`](crate::time::sleep).
    ///
    /// An `unpark` that comes as the time runs out is either taken by this call (which then
    /// returns true) or left for the next `park`; it is never lost.
    ///
    /// # Panics
    /// As for [`park`](Parker::park).
    pub fn park_timeout(&self, timeout: Duration) -> bool {
        if self.inner.take_token() {
            return true;
        }
        if timeout.is_zero() {
            return false;
        }
        let inner = self.inner.clone();
        let timer = RawTimer::new(deadline(timeout), Box::new(move || inner.time_out()));
        self.inner.park_once(WaitReason::SyncParker);
        // Woken by an unpark or the timer, or not parked because one of them came first: the
        // word is NOTIFIED or TIMED_OUT. Once the timer is stopped, only unparks change it, and
        // only to NOTIFIED (invariant 4).
        timer.stop();
        loop {
            let w = self.inner.state.load(Ordering::Relaxed);
            assert!(w == NOTIFIED || w == TIMED_OUT, "{SHARED}");
            // Acquire: pairs with the unparker's Release swap (as in `take_token`). A failure
            // means an unpark replaced TIMED_OUT: read again.
            if self.inner.state.compare_exchange(w, EMPTY, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return w == NOTIFIED;
            }
        }
    }
}

/// A [`Parker`] with the [`Waker`] of its word: what `block_on` polls with. Each call leases
/// one ([`WakerParker::take`]) and hands it back when done ([`Lease::give_back`]), and the pair
/// is kept for the next call, so a typical call allocates nothing.
///
/// # Who reuses a pair
///
/// A waker may outlive its call (futures such as `AtomicWaker` keep the last waker they were
/// given), and its late wake sets `NOTIFIED` in the word: only that, never a G (invariant 3).
/// Where the spare is kept decides whose later call can see such a token:
///
/// - **A goroutine** keeps its own spare in its G (`GRare::block_on_spare`), shared or not. A late
///   wake from one of its earlier calls can reach only its own later calls: the word is reset
///   to `EMPTY` before each call's first poll (the owner takes a token a late wake left: it is
///   running, so the word holds no G pointer, and the wake cannot be the new call's, whose
///   future has not been polled yet), so a late wake costs nothing unless it lands during a
///   later call, which it then makes poll once more, as a spurious wake would. Every wake after
///   the reset stands, so none of the call's own is lost. The goroutine's M drops the spare
///   when the goroutine exits (`goexit0`), before the G can be reused: a new goroutine on the G
///   starts with a fresh word, and the exited goroutine's wakers keep an orphan one alive.
/// - **A plain thread** (not a goroutine) keeps a thread-local spare, and only one that nobody
///   else holds (the parker and our waker hold the word's only references), so no late wake
///   reaches any later call on the thread.
pub(crate) struct WakerParker {
    pub(crate) parker: Parker,
    pub(crate) waker: Waker,
}

/// A pair leased by one `block_on` call, and where it goes back.
pub(crate) struct Lease {
    pub(crate) wp: Box<WakerParker>,
    /// The goroutine whose spare it is; `None` on a plain thread.
    home: Option<home::Home>,
}

#[cfg(not(gort_loom))]
thread_local! {
    /// A plain thread's spare, if the last one given back on it was unshared. (Not under loom,
    /// whose model threads share one OS thread and whose executions each have their own
    /// atomics.)
    static SPARE: Cell<Option<Box<WakerParker>>> = const { Cell::new(None) };
}

/// A goroutine's spare (the type's docs): in its G.
#[cfg(not(gort_loom))]
mod home {
    use std::any::Any;

    use crate::g::GRef;
    use crate::m::current_m;

    pub(super) type Home = GRef;

    /// The calling goroutine, if the caller is one.
    pub(super) fn current() -> Option<GRef> {
        current_m().and_then(|m| m.curg())
    }

    /// Takes the goroutine's spare. Only the goroutine itself calls this (`g` is the running
    /// goroutine: see `GRare::block_on_spare`).
    pub(super) fn take(g: GRef) -> Option<Box<dyn Any + Send>> {
        g.0.rare_if_any()?.block_on_spare.take()
    }

    /// Stores the goroutine's spare, dropping one a nested call left there first.
    pub(super) fn put(g: GRef, spare: Box<dyn Any + Send>) {
        g.0.rare().block_on_spare.set(Some(spare));
    }
}

/// Under loom every model thread stands for a goroutine, whose spare is a loom thread-local (a
/// std one would be shared by the model threads, which run on one OS thread), so the models
/// reuse words the way goroutines do.
#[cfg(gort_loom)]
mod home {
    use std::any::Any;
    use std::cell::Cell;

    pub(super) type Home = ();

    ::loom::thread_local! {
        static SLOT: Cell<Option<Box<dyn Any + Send>>> = Cell::new(None);
    }

    pub(super) fn current() -> Option<()> {
        Some(())
    }

    pub(super) fn take(_: ()) -> Option<Box<dyn Any + Send>> {
        SLOT.with(Cell::take)
    }

    pub(super) fn put(_: (), spare: Box<dyn Any + Send>) {
        SLOT.with(|s| s.set(Some(spare)));
    }
}

impl WakerParker {
    fn new() -> Box<WakerParker> {
        let parker = Parker::new();
        let waker = parker.waker();
        Box::new(WakerParker { parker, waker })
    }

    /// A pair for one call: the goroutine's spare (reset) or the plain thread's, else a new one.
    pub(crate) fn take() -> Lease {
        if let Some(g) = home::current() {
            let wp = match home::take(g).map(|b| b.downcast::<WakerParker>()) {
                Some(Ok(wp)) => {
                    // Drops a token a late wake left: the owner is running, so the word is EMPTY
                    // or NOTIFIED (invariant 1), and a token now comes from a wake before this
                    // call's first poll, which sees the future's state for itself. A wake racing
                    // this lands before it (taken, as above) or after it (it stands: one more
                    // poll). `take_token`, an RMW, not a plain store: the word's writes stay
                    // RMWs (but the unshared reset in `give_back`), in one order the loom models
                    // can check; its plain load first makes it free without a token.
                    wp.parker.inner.take_token();
                    wp
                }
                // Nothing but a `WakerParker` is ever stored in the slot.
                _ => WakerParker::new(),
            };
            return Lease { wp, home: Some(g) };
        }
        #[cfg(not(gort_loom))]
        if let Some(wp) = SPARE.try_with(Cell::take).ok().flatten() {
            return Lease { wp, home: None };
        }
        Lease { wp: WakerParker::new(), home: None }
    }
}

impl Lease {
    /// Hands the pair back (the type's docs): to its goroutine as it is, or as the plain
    /// thread's spare if its word is ours alone, with the word reset to `EMPTY` (else it is
    /// dropped).
    pub(crate) fn give_back(self) {
        let Lease { wp, home } = self;
        if let Some(g) = home {
            home::put(g, wp);
            return;
        }
        #[cfg(not(gort_loom))]
        if Arc::strong_count(&wp.parker.inner) == 2 {
            // Acquire: the count was read Relaxed; this fence pairs with the Release decrement
            // of every other clone's drop, so their wakes (stores to the word) happen before
            // our reset.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            // Nobody else holds the word, so nobody can race this store.
            wp.parker.inner.state.store(EMPTY, Ordering::Relaxed);
            let _ = SPARE.try_with(|s| s.set(Some(wp)));
        }
    }
}

impl Default for Parker {
    fn default() -> Parker {
        Parker::new()
    }
}

impl fmt::Debug for Parker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parker").finish_non_exhaustive()
    }
}

/// The waking half of a [`Parker`]: `Clone`, `Send` and `Sync`; call
/// [`unpark`](Unparker::unpark) from any goroutine, plain thread or timer callback.
#[derive(Clone)]
pub struct Unparker {
    inner: Arc<Inner>,
}

impl Unparker {
    /// Makes the token available, and wakes the parker's owner if it is parked on it. Tokens do
    /// not add up: several `unpark`s before a `park` release it once.
    pub fn unpark(&self) {
        self.inner.unpark();
    }
}

impl Wake for Inner {
    fn wake(self: Arc<Self>) {
        self.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.unpark();
    }
}

impl fmt::Debug for Unparker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unparker").finish_non_exhaustive()
    }
}

/// loom models (`--cfg gort_loom`): the real `Parker`/`Unparker` on loom threads, whose
/// `park`/`ready` follow `park_thread` and whose timer is a loom thread that fires at any moment
/// unless stopped (`crate::loom`). A lost token is a park that never returns (loom reports the
/// deadlock); a second `ready` panics; `park`'s own assertion catches a word that is not
/// `NOTIFIED` after a wakeup.
#[cfg(all(test, gort_loom))]
mod loom_models {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Parker, EMPTY};
    use crate::loom::{model, AtomicUsize, Ordering};

    /// An unpark before, during or after the park: the park returns and sees the unparker's
    /// writes.
    #[test]
    fn unpark_wakes_park() {
        model(3, || {
            let p = Parker::new();
            let u = p.unparker();
            let data = Arc::new(AtomicUsize::new(0));
            let t = loom::thread::spawn({
                let data = data.clone();
                move || {
                    data.store(1, Ordering::Relaxed);
                    u.unpark();
                }
            });
            p.park();
            assert_eq!(data.load(Ordering::Relaxed), 1, "the unparker's writes are visible");
            t.join().unwrap();
            assert_eq!(p.inner.state.load(Ordering::Relaxed), EMPTY);
        });
    }

    /// Two unparks racing with one park: the park returns, and at most one token is left over
    /// (tokens do not add up).
    #[test]
    fn unparks_coalesce() {
        model(3, || {
            let p = Parker::new();
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let u = p.unparker();
                    loom::thread::spawn(move || u.unpark())
                })
                .collect();
            p.park();
            for t in ts {
                t.join().unwrap();
            }
            p.park_timeout(Duration::ZERO);
            assert!(!p.park_timeout(Duration::ZERO), "two tokens from two unparks");
        });
    }

    /// `park_timeout` against an unpark and its own timer: it returns either way, and an unpark
    /// it did not take (it timed out) is left for the next park, never lost.
    #[test]
    fn timeout_races_unpark() {
        model(3, || {
            let p = Parker::new();
            let u = p.unparker();
            let t = loom::thread::spawn(move || u.unpark());
            let got = p.park_timeout(Duration::from_secs(1));
            t.join().unwrap();
            if !got {
                assert!(p.park_timeout(Duration::ZERO), "the unpark was lost to the timeout");
            }
            assert_eq!(p.inner.state.load(Ordering::Relaxed), EMPTY);
        });
    }
}
