//! The runtime's short lock, shared by channels and `sync`: one home for the lock every wait
//! queue is guarded by.

use parking_lot::lock_api::RawMutex as _;

/// A short lock for channel and sync-primitive state (a futex-backed parking_lot lock: the
/// critical sections are a few dozen instructions, as Go's runtime `lock`).
///
/// Unlike a guard-based mutex it may be released from another context than the one that took it:
/// the `commit` closure of `park` releases it off the parked goroutine's stack.
pub(crate) struct Lock(parking_lot::RawMutex);

impl Lock {
    pub(crate) const fn new() -> Lock {
        Lock(<parking_lot::RawMutex as parking_lot::lock_api::RawMutex>::INIT)
    }

    #[inline]
    pub(crate) fn lock(&self) {
        self.0.lock();
    }

    /// # Safety
    /// The lock must be held, taken by the caller's operation (possibly in another context, as a
    /// `park` commit releasing what its goroutine took).
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        // SAFETY: the caller guarantees the lock is held by its own operation.
        unsafe { self.0.unlock() }
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}
