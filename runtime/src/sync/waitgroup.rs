//! `WaitGroup`: Go's `sync.WaitGroup` (`src/sync/waitgroup.go`).
//!
//! # State word
//!
//! `state` = counter (high 32 bits, signed) | waiters (low 32 bits). `add` changes the counter;
//! when it drops to 0 with waiters, `add` resets the word to 0 and releases `sema` once per
//! waiter. `wait` returns at once on a 0 counter, else bumps the waiter count with a CAS and parks
//! on `sema` (reason `sync.WaitGroup.Wait`). As in Go, `add` with a positive delta while the
//! counter is 0 must happen before `wait`, and a group may be reused only after every `wait` of
//! the previous round has returned; violations panic with Go's messages.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::g::WaitReason;

use super::sema::Sema;

/// Waits for a collection of goroutines to finish (Go's `sync.WaitGroup`).
///
/// ```ignore
/// let wg = Arc::new(WaitGroup::new());
/// for _ in 0..10 {
///     wg.add(1);
///     let wg = wg.clone();
///     // SAFETY: the goroutine holds an `Arc<WaitGroup>` (Send) and no thread-bound value.
///     unsafe { gort::go!(move || { /* work */ wg.done() }) };
/// }
/// wg.wait();
/// ```
pub struct WaitGroup {
    state: AtomicU64,
    sema: Sema,
}

impl WaitGroup {
    /// A group with counter 0.
    pub const fn new() -> WaitGroup {
        WaitGroup { state: AtomicU64::new(0), sema: Sema::new() }
    }

    /// Adds `delta` (may be negative) to the counter; at 0 every waiter is released.
    ///
    /// # Panics
    /// If the counter goes negative, or on misuse Go detects (add racing with wait).
    pub fn add(&self, delta: i64) {
        let d = i32::try_from(delta).expect("sync: WaitGroup delta out of range");
        // AcqRel: Release publishes the adder's work to the waiter that sees the counter reach
        // 0 (its Acquire load/CAS); Acquire lets the last adder see the waiter registrations.
        let state =
            self.state.fetch_add(((d as i64) << 32) as u64, Ordering::AcqRel).wrapping_add(((d as i64) << 32) as u64);
        let v = (state >> 32) as i32;
        let w = state as u32;
        if v < 0 {
            panic!("sync: negative WaitGroup counter");
        }
        if w != 0 && d > 0 && v == d {
            panic!("sync: WaitGroup misuse: Add called concurrently with Wait");
        }
        if v > 0 || w == 0 {
            return;
        }
        // Counter 0 with waiters: nobody may touch the state now but us.
        // Relaxed: the check only detects misuse.
        if self.state.load(Ordering::Relaxed) != state {
            panic!("sync: WaitGroup misuse: Add called concurrently with Wait");
        }
        // Relaxed: the sema releases below order the waiters' wake-up.
        self.state.store(0, Ordering::Relaxed);
        for _ in 0..w {
            self.sema.release(false);
        }
    }

    /// Decrements the counter by one.
    pub fn done(&self) {
        self.add(-1);
    }

    /// Blocks until the counter is 0.
    pub fn wait(&self) {
        // Acquire: pairs with add's AcqRel so the finished work is visible.
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state >> 32 == 0 {
                return;
            }
            // AcqRel: registers us as a waiter (seen by the last add's Acquire).
            match self.state.compare_exchange_weak(state, state + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.sema.acquire(false, WaitReason::SyncWaitGroupWait, false);
                    // Relaxed: misuse check only.
                    if self.state.load(Ordering::Relaxed) != 0 {
                        panic!("sync: WaitGroup is reused before previous Wait has returned");
                    }
                    return;
                }
                Err(x) => state = x,
            }
        }
    }

    /// The counter (a racy snapshot, for diagnostics).
    pub fn count(&self) -> i64 {
        (self.state.load(Ordering::Relaxed) >> 32) as i32 as i64
    }
}

impl Default for WaitGroup {
    fn default() -> Self {
        WaitGroup::new()
    }
}

impl std::fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitGroup").field("count", &self.count()).finish()
    }
}
