//! `Mutex<T>`: Go's `sync.Mutex` (`src/sync/mutex.go`) with an RAII guard.
//!
//! # Design (Go's, kept as is)
//!
//! The mutex has two modes. **Normal**: waiters queue FIFO, but a woken waiter competes with
//! goroutines arriving right now (which are on a CPU and usually win), so throughput is high.
//! A newcomer may spin a little (4 rounds of 30 pause instructions, multicore only) when the
//! holder is likely to release soon. **Starvation**: a waiter that failed to get the lock for
//! more than 1 ms switches the mutex to starvation mode; then unlock hands ownership straight to
//! the first waiter (and yields to it), newcomers queue at the tail without spinning, and the
//! mode ends when the last waiter gets the lock or a waiter waited less than 1 ms.
//!
//! # State word invariants
//!
//! `state` = `LOCKED | WOKEN | STARVING | waiters << WAITER_SHIFT`:
//! * `LOCKED`: held. Only the holder clears it (unlock); in starvation mode the unlocker leaves
//!   it clear and the woken waiter sets it (handoff).
//! * `WOKEN`: a goroutine is awake and trying to lock (spinning newcomer or woken waiter), so
//!   unlock need not wake another.
//! * `waiters`: goroutines parked or about to park on `sema`.
//!
//! Blocked goroutines park with reason `sync.Mutex.Lock` and cost no thread; on a plain OS thread
//! the thread blocks. Contended unlocks feed the mutex profile, waits the block profile.

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::g::WaitReason;
use crate::park::preempt_point;

use super::sema::Sema;

const LOCKED: i32 = 1;
const WOKEN: i32 = 2;
const STARVING: i32 = 4;
const WAITER_SHIFT: u32 = 3;
const STARVATION_THRESHOLD_NS: u64 = 1_000_000;

/// Go's `sync.Mutex` without data: the lock under [`Mutex`], `RwLock` and `Once`.
pub(crate) struct RawMutex {
    state: AtomicI32,
    sema: Sema,
    /// Wait reason shown while parked.
    reason: WaitReason,
}

/// Whether spinning can help at all (more than one CPU).
fn multicore() -> bool {
    static NCPU: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *NCPU.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)) > 1
}

impl RawMutex {
    pub(crate) const fn new(reason: WaitReason) -> RawMutex {
        RawMutex { state: AtomicI32::new(0), sema: Sema::new(), reason }
    }

    #[inline]
    pub(crate) fn lock(&self) {
        // Acquire: pairs with the Release in unlock (the previous holder's writes).
        if self.state.compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return;
        }
        self.lock_slow();
    }

    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        let old = self.state.load(Ordering::Relaxed);
        if old & (LOCKED | STARVING) != 0 {
            return false;
        }
        // Acquire: pairs with the Release in unlock.
        self.state.compare_exchange(old, old | LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[cold]
    fn lock_slow(&self) {
        let mut wait_start = 0u64;
        let mut starving = false;
        let mut awoke = false;
        let mut iter = 0;
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            // Spin while locked in normal mode, if it may pay off (Go's runtime_canSpin).
            if old & (LOCKED | STARVING) == LOCKED && iter < 4 && multicore() {
                // Tell unlock not to wake others while we are awake and spinning.
                if !awoke
                    && old & WOKEN == 0
                    && old >> WAITER_SHIFT != 0
                    && self.state.compare_exchange(old, old | WOKEN, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                {
                    awoke = true;
                }
                for _ in 0..30 {
                    std::hint::spin_loop();
                }
                iter += 1;
                old = self.state.load(Ordering::Relaxed);
                continue;
            }
            let mut new = old;
            // Don't try to acquire a starving mutex: newcomers queue.
            if old & STARVING == 0 {
                new |= LOCKED;
            }
            if old & (LOCKED | STARVING) != 0 {
                new += 1 << WAITER_SHIFT;
            }
            // Switch to starvation mode, but only if the mutex is still locked (an unlocked
            // mutex in starvation mode would have no one to hand it over).
            if starving && old & LOCKED != 0 {
                new |= STARVING;
            }
            if awoke {
                assert!(new & WOKEN != 0, "sync: inconsistent mutex state");
                new &= !WOKEN;
            }
            // AcqRel: Acquire when this CAS takes the lock (pairs with unlock's Release);
            // Release keeps our waiter registration ordered before we park.
            match self.state.compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if old & (LOCKED | STARVING) == 0 {
                        return; // locked with the CAS
                    }
                    // Waited before: queue at the front.
                    let lifo = wait_start != 0;
                    if wait_start == 0 {
                        wait_start = crate::time::nanotime();
                    }
                    self.sema.acquire(lifo, self.reason, true);
                    starving = starving || crate::time::nanotime().saturating_sub(wait_start) > STARVATION_THRESHOLD_NS;
                    // Acquire: in starvation mode ownership was handed to us by the unlocker's
                    // release of `sema` (which synchronizes too); pairs with unlock's Release.
                    old = self.state.load(Ordering::Acquire);
                    if old & STARVING != 0 {
                        // Handed off: the state is inconsistent (LOCKED clear, we still count as
                        // a waiter) until we fix it.
                        assert!(
                            old & (LOCKED | WOKEN) == 0 && old >> WAITER_SHIFT != 0,
                            "sync: inconsistent mutex state"
                        );
                        let mut delta = LOCKED - (1 << WAITER_SHIFT);
                        if !starving || old >> WAITER_SHIFT == 1 {
                            // Exit starvation mode (Go: do it here, considering the wait time).
                            delta -= STARVING;
                        }
                        // Acquire: pairs with the unlocker's Release.
                        self.state.fetch_add(delta, Ordering::Acquire);
                        return;
                    }
                    awoke = true;
                    iter = 0;
                }
                Err(x) => old = x,
            }
        }
    }

    /// # Safety
    /// The mutex must be locked (by the caller's logical owner: Go allows another goroutine to
    /// unlock).
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        // Release: publishes the critical section to the next locker's Acquire.
        let new = self.state.fetch_sub(LOCKED, Ordering::Release) - LOCKED;
        if new != 0 {
            self.unlock_slow(new);
        }
    }

    #[cold]
    fn unlock_slow(&self, new: i32) {
        assert!((new + LOCKED) & LOCKED != 0, "sync: unlock of unlocked mutex");
        if new & STARVING == 0 {
            let mut old = new;
            loop {
                // No waiters, or someone already woken/locked/handed: nothing to do.
                if old >> WAITER_SHIFT == 0 || old & (LOCKED | WOKEN | STARVING) != 0 {
                    return;
                }
                // Take one waiter and mark it woken.
                let new = (old - (1 << WAITER_SHIFT)) | WOKEN;
                match self.state.compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        self.sema.release(false);
                        return;
                    }
                    Err(x) => old = x,
                }
            }
        } else {
            // Starvation: hand ownership to the next waiter and yield to it. LOCKED stays clear;
            // the waiter sets it. While STARVING is set newcomers do not take the lock.
            self.sema.release(true);
        }
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }
}

/// A mutual-exclusion lock protecting a `T` (Go's `sync.Mutex`, data inside as in Rust).
///
/// Contended lockers spin briefly, then park their goroutine (reason `sync.Mutex.Lock`; a plain
/// thread blocks). A waiter starved for more than 1 ms switches the mutex to Go's starvation
/// mode (direct handoff). Not reentrant; no poisoning (a panic while locked just unlocks).
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one goroutine/thread at a time, so it may be shared
// and sent when `T` may be sent.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `v`.
    pub const fn new(v: T) -> Mutex<T> {
        Mutex { raw: RawMutex::new(WaitReason::SyncMutexLock), data: UnsafeCell::new(v) }
    }

    /// The protected value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, parking the goroutine while another holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        preempt_point();
        self.raw.lock();
        MutexGuard { m: self }
    }

    /// Locks if free right now (Go's `TryLock`).
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if self.raw.try_lock() {
            Some(MutexGuard { m: self })
        } else {
            None
        }
    }

    /// Whether some goroutine holds the lock (a racy snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Some(g) => f.debug_struct("Mutex").field("data", &&*g).finish(),
            None => f.debug_struct("Mutex").field("data", &format_args!("<locked>")).finish(),
        }
    }
}

/// Access to a locked [`Mutex`]; unlocks when dropped. It may be held across blocking calls
/// (the goroutine parks holding it, like Go) and be sent to another goroutine that unlocks.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(crate) m: &'a Mutex<T>,
}

// SAFETY: the guard is `&mut T` plus the duty to unlock, which any goroutine/thread may do.
unsafe impl<T: ?Sized + Send> Send for MutexGuard<'_, T> {}
// SAFETY: shared access to the guard only gives `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// The mutex this guard locks (for `Cond::wait`).
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.m
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.m.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, exclusively.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard holds the lock.
        unsafe { self.m.raw.unlock() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
