//! The runtime's short lock, shared by channels and `sync`: one home for the lock every wait
//! queue is guarded by.
//!
//! A futex lock as Go's runtime `lock`: a contended taker spins before it sleeps, pausing
//! between looks. How long it pauses decides how often the lock's line changes caches under
//! contention: a taker that looks again at once takes the line back from the holder in the middle
//! of each critical section, and a channel shared by goroutines on two Ps then pays a line
//! transfer per operation instead of a few per batch. (parking_lot's lock, used here before,
//! looks after 2, 4 and 8 pauses, then yields the thread.)
//!
//! # Invariants
//!
//! * The word is `UNLOCKED`, `LOCKED`, or `SLEEPING` (locked, and a taker may be asleep in
//!   `futex_wait` on it). Only `unlock` stores `UNLOCKED`, and it wakes one sleeper when the word
//!   it replaced was `SLEEPING`.
//! * A taker that has slept takes the lock as `SLEEPING`, not `LOCKED`: other sleepers may remain,
//!   and the next unlock must wake one. At worst that is one wake-up too many, never one too few.
//! * `futex_wait` sleeps only while the word still reads `SLEEPING` (the kernel checks it under
//!   the futex's own lock), so an unlock between the swap to `SLEEPING` and the sleep is not lost.

use std::sync::atomic::{AtomicU32, Ordering};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const SLEEPING: u32 = 2;

/// Rounds of pausing before the taker yields its thread (Go: 4).
const SPIN_ROUNDS: u32 = 4;
/// PAUSE instructions between two looks at a held lock (Go: 30).
const SPIN_PAUSES: u32 = 30;
/// Rounds of `sched_yield` before the taker sleeps (Go: 1).
const YIELD_ROUNDS: u32 = 1;

/// A short lock for channel and sync-primitive state (the critical sections are a few dozen
/// instructions, as Go's runtime `lock`'s).
///
/// Unlike a guard-based mutex it may be released from another context than the one that took it:
/// the `commit` closure of `park` releases it off the parked goroutine's stack.
pub(crate) struct Lock(AtomicU32);

impl Lock {
    pub(crate) const fn new() -> Lock {
        Lock(AtomicU32::new(UNLOCKED))
    }

    #[inline]
    pub(crate) fn lock(&self) {
        // Acquire: pairs with the Release swap in `unlock`, so the critical section sees what the
        // last holder wrote in its own.
        if self.0.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        // What the word becomes when this taker gets the lock (invariant 2).
        let mut take_as = LOCKED;
        loop {
            for round in 0..SPIN_ROUNDS + YIELD_ROUNDS {
                // Look before trying: a failed compare-exchange would take the line from the
                // holder as surely as a successful one.
                while self.0.load(Ordering::Relaxed) == UNLOCKED {
                    // Acquire: as in `lock`.
                    if self.0.compare_exchange(UNLOCKED, take_as, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                        return;
                    }
                }
                if round < SPIN_ROUNDS {
                    for _ in 0..SPIN_PAUSES {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::yield_now();
                }
            }
            // Acquire: as in `lock`, for when the swap finds the lock free and takes it.
            if self.0.swap(SLEEPING, Ordering::Acquire) == UNLOCKED {
                return;
            }
            take_as = SLEEPING;
            futex_wait(&self.0, SLEEPING);
        }
    }

    /// # Safety
    /// The lock must be held, taken by the caller's operation (possibly in another context, as a
    /// `park` commit releasing what its goroutine took).
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        // Release: pairs with the Acquire of the next taker's exchange.
        if self.0.swap(UNLOCKED, Ordering::Release) == SLEEPING {
            futex_wake_one(&self.0);
        }
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

/// Sleeps while `word` reads `expected` (or until a spurious wake-up or a signal: the caller
/// looks again either way).
#[cold]
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the u32 at a valid, aligned address that outlives the call (the
    // borrow); the null timeout means no timeout. Every error (EAGAIN: the word changed; EINTR)
    // sends the caller back to its loop.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one thread asleep in `futex_wait` on `word`, if any.
#[cold]
fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as the key of the kernel's wait queue; it neither
    // reads nor writes memory there.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    struct Counter {
        lock: Lock,
        n: UnsafeCell<u64>,
    }
    // SAFETY: `n` is only touched with `lock` held.
    unsafe impl Sync for Counter {}

    /// More threads than CPUs, so that takers exhaust their spins and sleep, and every increment
    /// must survive: a lost wake-up hangs the test, a broken exclusion loses counts.
    #[test]
    fn excludes_and_wakes_sleepers() {
        const THREADS: u64 = 8;
        const PER: u64 = 20_000;
        let c = Arc::new(Counter { lock: Lock::new(), n: UnsafeCell::new(0) });
        let hs: Vec<_> = (0..THREADS)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for k in 0..PER {
                        c.lock.lock();
                        // SAFETY: the lock is held.
                        unsafe { *c.n.get() += 1 };
                        if (k + i) % 1000 == 0 {
                            // Hold it long enough for the others to go to sleep on it.
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                        // SAFETY: taken above.
                        unsafe { c.lock.unlock() };
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.lock.0.load(Ordering::Relaxed), UNLOCKED);
        c.lock.lock();
        // SAFETY: the lock is held and every other thread is gone.
        assert_eq!(unsafe { *c.n.get() }, THREADS * PER);
        // SAFETY: taken above.
        unsafe { c.lock.unlock() };
    }

    /// Released by another thread than the one that took it, as a park commit does.
    #[test]
    fn unlocks_from_another_thread_and_wakes_the_waiter() {
        let l = Arc::new(Lock::new());
        l.lock();
        let waiter = {
            let l = l.clone();
            std::thread::spawn(move || {
                l.lock();
                // SAFETY: taken above.
                unsafe { l.unlock() };
            })
        };
        // Let the waiter run out of spins and announce that it sleeps.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while l.0.load(Ordering::Relaxed) != SLEEPING {
            assert!(std::time::Instant::now() < deadline, "the waiter never went to sleep");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let l2 = l.clone();
        // SAFETY: `l` is held by this test's operation; this thread releases it on its behalf.
        std::thread::spawn(move || unsafe { l2.unlock() }).join().unwrap();
        waiter.join().unwrap();
        assert_eq!(l.0.load(Ordering::Relaxed), UNLOCKED);
    }
}
