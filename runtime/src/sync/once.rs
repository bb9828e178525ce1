//! `Once` and `OnceLock<T>`: Go's `sync.Once` (`src/sync/once.go`), plus a value cell on it.
//!
//! A fast-path flag (`done`, Acquire load / Release store) and a slow path under a goroutine-aware
//! mutex: concurrent callers park (reason `sync.Once.Do`) until the first finishes.

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::g::WaitReason;

use super::mutex::RawMutex;

/// Runs a function exactly once (Go's `sync.Once`).
pub struct Once {
    done: AtomicBool,
    m: RawMutex,
}

impl Once {
    /// A fresh `Once`.
    pub const fn new() -> Once {
        Once { done: AtomicBool::new(false), m: RawMutex::new(WaitReason::SyncOnce) }
    }

    /// Calls `f` if no call has run yet; concurrent callers wait until it returns. As in Go, if
    /// `f` panics the `Once` counts as done and later calls do nothing.
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        // Acquire: pairs with the Release store below (f's effects are visible).
        if !self.done.load(Ordering::Acquire) {
            self.call_slow(f);
        }
    }

    #[cold]
    fn call_slow<F: FnOnce()>(&self, f: F) {
        struct Finish<'a>(&'a Once);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                // Release: pairs with the Acquire load in call_once.
                self.0.done.store(true, Ordering::Release);
                // SAFETY: locked by call_slow before this guard was made.
                unsafe { self.0.m.unlock() };
            }
        }
        self.m.lock();
        if self.done.load(Ordering::Relaxed) {
            // SAFETY: locked above.
            unsafe { self.m.unlock() };
            return;
        }
        let _finish = Finish(self);
        f();
    }

    /// Whether a call has completed.
    pub fn is_completed(&self) -> bool {
        // Acquire: as in call_once.
        self.done.load(Ordering::Acquire)
    }
}

impl Default for Once {
    fn default() -> Self {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once").field("done", &self.is_completed()).finish()
    }
}

/// A cell written once, by the first `get_or_init` (Go's `sync.OnceValue`). Unlike [`Once`], a
/// panicking initializer leaves the cell empty for the next caller.
pub struct OnceLock<T> {
    done: AtomicBool,
    m: RawMutex,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once under the mutex before `done` is published (Release), then
// only read: sharing needs `T: Sync + Send` (a value made on one thread is read/dropped on others).
unsafe impl<T: Send + Sync> Sync for OnceLock<T> {}
// SAFETY: moving the cell moves the value.
unsafe impl<T: Send> Send for OnceLock<T> {}

impl<T> OnceLock<T> {
    /// An empty cell.
    pub const fn new() -> OnceLock<T> {
        OnceLock {
            done: AtomicBool::new(false),
            m: RawMutex::new(WaitReason::SyncOnce),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value, if set.
    pub fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release store in `init` (the value is written).
        if self.done.load(Ordering::Acquire) {
            // SAFETY: done => initialized, never written again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// The value, initializing it with `f` if empty; concurrent callers park until it is set.
    pub fn get_or_init<F: FnOnce() -> T>(&self, f: F) -> &T {
        if let Some(v) = self.get() {
            return v;
        }
        let mut f = Some(f);
        self.init(&mut || f.take().expect("gort: OnceLock initializer ran twice")());
        self.get().expect("gort: OnceLock empty after init")
    }

    /// Sets the value if empty; otherwise gives `v` back.
    pub fn set(&self, v: T) -> Result<(), T> {
        let mut v = Some(v);
        self.init(&mut || v.take().expect("gort: OnceLock set twice"));
        match v {
            None => Ok(()),
            Some(v) => Err(v),
        }
    }

    fn init(&self, f: &mut dyn FnMut() -> T) {
        struct Unlock<'a>(&'a RawMutex);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                // SAFETY: locked by `init` before this guard was made.
                unsafe { self.0.unlock() };
            }
        }
        self.m.lock();
        let _unlock = Unlock(&self.m);
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let v = f();
        // SAFETY: not done and we hold the mutex: nobody reads or writes the slot.
        unsafe { (*self.value.get()).write(v) };
        // Release: pairs with the Acquire load in `get`.
        self.done.store(true, Ordering::Release);
    }

    /// The value, if set.
    pub fn into_inner(mut self) -> Option<T> {
        if *self.done.get_mut() {
            *self.done.get_mut() = false;
            // SAFETY: done => initialized; `done` cleared so Drop won't drop it again.
            Some(unsafe { self.value.get_mut().assume_init_read() })
        } else {
            None
        }
    }
}

impl<T> Drop for OnceLock<T> {
    fn drop(&mut self) {
        if *self.done.get_mut() {
            // SAFETY: done => initialized, and dropped once here.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T> Default for OnceLock<T> {
    fn default() -> Self {
        OnceLock::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for OnceLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnceLock").field("value", &self.get()).finish()
    }
}
