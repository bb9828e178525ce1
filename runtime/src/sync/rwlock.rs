//! `RwLock<T>`: Go's `sync.RWMutex` (`src/sync/rwmutex.go`) with RAII guards.
//!
//! # Protocol (Go's)
//!
//! * `reader_count` counts readers holding or waiting; a writer subtracts `MAX_READERS` from it
//!   so later readers see a negative count and park on `reader_sem` (reason
//!   `sync.RWMutex.RLock`). Writer preference: a pending writer blocks new readers.
//! * The writer then waits (reason `sync.RWMutex.Lock`, on `writer_sem`) for the `r` readers
//!   that were active when it announced itself: `reader_wait` counts them down, and the last
//!   departing one releases `writer_sem`.
//! * Writers exclude each other with the inner mutex `w`.
//!
//! All counter operations are SeqCst as in Go (the reader/writer handshake on `reader_count` and
//! `reader_wait` is Dekker-like: each side writes one counter then reads the other).

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::g::WaitReason;
use crate::park::preempt_point;

use super::mutex::RawMutex;
use super::sema::Sema;

const MAX_READERS: i32 = 1 << 30;

/// Go's `sync.RWMutex` without data.
pub(crate) struct RawRwLock {
    w: RawMutex,
    writer_sem: Sema,
    reader_sem: Sema,
    reader_count: AtomicI32,
    reader_wait: AtomicI32,
}

impl RawRwLock {
    pub(crate) const fn new() -> RawRwLock {
        RawRwLock {
            w: RawMutex::new(WaitReason::SyncRWMutexLock),
            writer_sem: Sema::new(),
            reader_sem: Sema::new(),
            reader_count: AtomicI32::new(0),
            reader_wait: AtomicI32::new(0),
        }
    }

    pub(crate) fn read(&self) {
        // SeqCst: see the module docs (pairs with the writer's subtraction in `write`).
        if self.reader_count.fetch_add(1, Ordering::SeqCst) + 1 < 0 {
            // A writer is pending: wait for it.
            self.reader_sem.acquire(false, WaitReason::SyncRWMutexRLock, true);
        }
    }

    pub(crate) fn try_read(&self) -> bool {
        // SeqCst: as in `read`.
        let mut c = self.reader_count.load(Ordering::SeqCst);
        loop {
            if c < 0 {
                return false;
            }
            // SeqCst: as in `read`.
            match self.reader_count.compare_exchange(c, c + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(x) => c = x,
            }
        }
    }

    /// # Safety
    /// A read lock must be held.
    pub(crate) unsafe fn read_unlock(&self) {
        // SeqCst: as in `read`.
        let r = self.reader_count.fetch_sub(1, Ordering::SeqCst) - 1;
        if r < 0 {
            assert!(r + 1 != 0 && r + 1 != -MAX_READERS, "sync: RUnlock of unlocked RWMutex");
            // A writer is pending: the last reader it waits for releases it.
            // SeqCst: pairs with the writer's addition in `write`.
            if self.reader_wait.fetch_sub(1, Ordering::SeqCst) - 1 == 0 {
                self.writer_sem.release(false);
            }
        }
    }

    pub(crate) fn write(&self) {
        self.w.lock();
        // Announce the writer to readers.
        // SeqCst: as in `read`.
        let r = self.reader_count.fetch_sub(MAX_READERS, Ordering::SeqCst);
        // Wait for active readers.
        // SeqCst: pairs with the readers' decrement in `read_unlock`.
        if r != 0 && self.reader_wait.fetch_add(r, Ordering::SeqCst) + r != 0 {
            self.writer_sem.acquire(false, WaitReason::SyncRWMutexLock, true);
        }
    }

    pub(crate) fn try_write(&self) -> bool {
        if !self.w.try_lock() {
            return false;
        }
        // SeqCst: as in `read`.
        if self.reader_count.compare_exchange(0, -MAX_READERS, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            // SAFETY: locked just above.
            unsafe { self.w.unlock() };
            return false;
        }
        true
    }

    /// # Safety
    /// The write lock must be held.
    pub(crate) unsafe fn write_unlock(&self) {
        // Announce to readers there is no active writer.
        // SeqCst: as in `read`.
        let r = self.reader_count.fetch_add(MAX_READERS, Ordering::SeqCst) + MAX_READERS;
        assert!(r < MAX_READERS, "sync: Unlock of unlocked RWMutex");
        // Unblock readers that arrived while we held the lock.
        for _ in 0..r {
            self.reader_sem.release(false);
        }
        // SAFETY: `write` locked it.
        unsafe { self.w.unlock() };
    }
}

/// A reader-writer lock protecting a `T` (Go's `sync.RWMutex`). Writers are preferred: once a
/// writer waits, new readers wait behind it. Blocked goroutines park with Go's reasons
/// (`sync.RWMutex.RLock`, `sync.RWMutex.Lock`).
pub struct RwLock<T: ?Sized> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

// SAFETY: writers get exclusive access, readers shared access: `Send` needs `T: Send`, sharing
// needs `T: Send + Sync` (readers on several threads see `&T`).
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    /// An unlocked lock holding `v`.
    pub const fn new(v: T) -> RwLock<T> {
        RwLock { raw: RawRwLock::new(), data: UnsafeCell::new(v) }
    }

    /// The protected value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access (`RLock`); parks while a writer holds or waits for the lock.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        preempt_point();
        self.raw.read();
        RwLockReadGuard { l: self }
    }

    /// Exclusive access (`Lock`).
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        preempt_point();
        self.raw.write();
        RwLockWriteGuard { l: self }
    }

    /// Shared access if available right now (`TryRLock`).
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.raw.try_read().then(|| RwLockReadGuard { l: self })
    }

    /// Exclusive access if available right now (`TryLock`).
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.raw.try_write().then(|| RwLockWriteGuard { l: self })
    }

    /// The value, through exclusive access.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_read() {
            Some(g) => f.debug_struct("RwLock").field("data", &&*g).finish(),
            None => f.debug_struct("RwLock").field("data", &format_args!("<locked>")).finish(),
        }
    }
}

/// Shared access to a [`RwLock`]; releases when dropped.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    l: &'a RwLock<T>,
}

/// Exclusive access to a [`RwLock`]; releases when dropped.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    l: &'a RwLock<T>,
}

// SAFETY: a read guard only gives `&T`; releasing from another thread is allowed.
unsafe impl<T: ?Sized + Sync> Send for RwLockReadGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: a write guard gives `&mut T`.
unsafe impl<T: ?Sized + Send> Send for RwLockWriteGuard<'_, T> {}
// SAFETY: shared access to the guard gives `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read lock is held: no writer.
        unsafe { &*self.l.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard holds a read lock.
        unsafe { self.l.raw.read_unlock() }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write lock is held.
        unsafe { &*self.l.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write lock is held, exclusively.
        unsafe { &mut *self.l.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard holds the write lock.
        unsafe { self.l.raw.write_unlock() }
    }
}
