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
//! Unlike Go's, releasing it is a plain store, not an atomic exchange: a channel hand-off takes
//! and releases two locks per side, and a locked instruction is most of what such a hand-off
//! costs. The price is paid by the rare taker that goes to sleep, with an asymmetric fence.
//!
//! # Invariants
//!
//! 1. The word is `UNLOCKED` or `LOCKED`; only a holder stores `UNLOCKED` (`unlock`), and only a
//!    compare-exchange from `UNLOCKED` takes it.
//! 2. **No sleeper is missed.** A taker about to sleep counts itself in the sleeper counter its
//!    lock's address hashes to, then runs a heavy fence (`fence.rs`: `membarrier`, a full fence
//!    on every running thread of the process), then tries the lock once more, then sleeps in
//!    `futex_wait` only while the word reads `LOCKED`. `unlock` stores `UNLOCKED`, then (after
//!    a light fence) reads that counter and wakes one sleeper on the address if it is not zero.
//!    This is `fence.rs`'s asymmetric Dekker pair: either the unlocker's read sees the count, or
//!    the taker's last try sees the lock free (and whoever takes it instead unlocks under the
//!    same rule).
//! 3. After its store `unlock` touches nothing of the lock (the next holder may free it): the
//!    counters are static, and `futex_wake` uses the address only as the key of a wait queue.
//!    Counters are shared by the locks hashing to them, so a sleeper on one lock costs the
//!    others in its bucket a futex call per unlock, never a missed wake.
//! 4. Where `membarrier` cannot be registered, both fences are `SeqCst` fences (`fence.rs`):
//!    correct at the cost of one fence per unlock.
//! 5. Where the heavy fence fails (a forked child that could not register again, `fence.rs`),
//!    the sleeper cannot count on being woken: it sleeps a millisecond at a time and looks again.
//!    Slower, never stuck.
//!
//! The loom model at the bottom checks invariants 1, 2 and 4 (both fences are `SeqCst` fences
//! under loom, and the model's futex is a loom mutex and condition variable that say a lost
//! wake-up as a deadlock); `tests/loom.rs` runs it.

#[cfg(not(gort_loom))]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;

use crate::fence::{heavy_fence, light_fence};
#[cfg(not(gort_loom))]
use os::{futex_wait, futex_wake_one, sleepers};

#[cfg(gort_loom)]
use ::loom::sync::atomic::AtomicU32;
#[cfg(gort_loom)]
use model_os::{futex_wait, futex_wake_one, sleepers};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;

/// Rounds of pausing before the taker yields its thread (Go: 4). None in the model, which is
/// about the sleeping protocol.
///
/// More than Go's because sleeping costs more here: a taker about to sleep runs the heavy fence,
/// an inter-processor interrupt to every other CPU running the process, waited for (on a VM,
/// sent through the host), and then the futex sleep and wake-up, tens of microseconds in all.
/// Spinning about as long as a sleep would cost before sleeping keeps the worst case within
/// twice the best. A PAUSE takes tens of nanoseconds on current x86 (about 140 cycles on Intel
/// since Skylake), so 16 rounds of 30 last roughly 10 to 20 microseconds where Go's 4 last a
/// few: past most of the holds that outlast Go's spin.
const SPIN_ROUNDS: u32 = if cfg!(gort_loom) { 0 } else { 16 };
/// PAUSE instructions between two looks at a held lock (Go: 30).
const SPIN_PAUSES: u32 = 30;
/// Rounds of `sched_yield` before the taker sleeps (Go: 1).
const YIELD_ROUNDS: u32 = if cfg!(gort_loom) { 0 } else { 1 };

/// How long a sleeper that could not fence sleeps before it looks again (invariant 5).
const UNFENCED_NAP: std::time::Duration = std::time::Duration::from_millis(1);

/// A short lock for channel and sync-primitive state (the critical sections are a few dozen
/// instructions, as Go's runtime `lock`'s).
///
/// Unlike a guard-based mutex it may be released from another context than the one that took it:
/// the `commit` closure of `park` releases it off the parked goroutine's stack.
pub(crate) struct Lock(AtomicU32);

impl Lock {
    #[cfg(not(gort_loom))]
    pub(crate) const fn new() -> Lock {
        Lock(AtomicU32::new(UNLOCKED))
    }

    #[cfg(gort_loom)]
    pub(crate) fn new() -> Lock {
        Lock(AtomicU32::new(UNLOCKED))
    }

    #[inline]
    pub(crate) fn lock(&self) {
        // Acquire: pairs with the Release store in `unlock`, so the critical section sees what
        // the last holder wrote in its own.
        if self.0.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
    }

    /// One look-then-try: whether it took the lock.
    #[inline]
    fn try_take(&self) -> bool {
        // Acquire: as in `lock`. Looking first keeps a failing taker from taking the line from
        // the holder as surely as a successful compare-exchange would.
        self.0.load(Ordering::Relaxed) == UNLOCKED
            && self.0.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[cold]
    #[inline(never)]
    // The model has no spinning rounds.
    #[cfg_attr(gort_loom, allow(clippy::reversed_empty_ranges, clippy::absurd_extreme_comparisons))]
    fn lock_contended(&self) {
        let count = sleepers(&self.0);
        loop {
            for round in 0..SPIN_ROUNDS + YIELD_ROUNDS {
                while self.0.load(Ordering::Relaxed) == UNLOCKED {
                    if self.try_take() {
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
            // Invariant 2. SeqCst: the count is the first access of the sleeper's half of the
            // Dekker pair (with `heavy_fence` between it and the try below).
            count.fetch_add(1, Ordering::SeqCst);
            let fenced = heavy_fence();
            let took = self.try_take();
            if !took {
                // Unfenced (invariant 5), an unlock may miss us: look again every millisecond.
                futex_wait(&self.0, LOCKED, if fenced { None } else { Some(UNFENCED_NAP) });
            }
            // Relaxed: an unlocker that reads a stale count only makes one futex call too many.
            count.fetch_sub(1, Ordering::Relaxed);
            if took || self.try_take() {
                return;
            }
        }
    }

    /// # Safety
    /// The lock must be held, taken by the caller's operation (possibly in another context, as a
    /// `park` commit releasing what its goroutine took).
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        let word: *const AtomicU32 = &self.0;
        // Release: pairs with the Acquire of the next taker's compare-exchange.
        self.0.store(UNLOCKED, Ordering::Release);
        // The unlocker's half of invariant 2: the store, then the read of the count.
        light_fence();
        // Relaxed: ordered after the store by the fence above. Invariant 3: from here on, only
        // the address.
        if sleepers(word).load(Ordering::Relaxed) != 0 {
            futex_wake_one(word);
        }
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

/// What the lock needs of the OS: the sleeper counters, the futex.
#[cfg(not(gort_loom))]
mod os {
    use std::sync::atomic::AtomicU32;

    /// Sleeper counters, by lock address (invariant 3).
    const BUCKETS: usize = 64;
    static SLEEPERS: [AtomicU32; BUCKETS] = [const { AtomicU32::new(0) }; BUCKETS];

    /// The sleeper counter of the lock whose word is at `word` (which may be dangling).
    #[inline(always)]
    pub(super) fn sleepers(word: *const AtomicU32) -> &'static AtomicU32 {
        let h = (word as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - BUCKETS.trailing_zeros());
        &SLEEPERS[h]
    }

    /// Sleeps while `word` reads `expected`, at most `timeout` if given (or until a spurious
    /// wake-up or a signal: the caller looks again either way).
    #[cold]
    pub(super) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<std::time::Duration>) {
        let ts =
            timeout.map(|t| libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as _ });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // Every error (EAGAIN: the word changed; EINTR; ETIMEDOUT) sends the caller back to its
        // loop.
        // SAFETY: FUTEX_WAIT reads the u32 at a valid, aligned address that outlives the call
        // (the borrow); the timeout is null or points at `ts`, alive for the call.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                ts_ptr,
            );
        }
    }

    /// Wakes one thread asleep in `futex_wait` on `word`, if any. `word` may be dangling: the
    /// kernel uses a private futex's address only as the key of its wait queue.
    #[cold]
    pub(super) fn futex_wake_one(word: *const AtomicU32) {
        // SAFETY: FUTEX_WAKE neither reads nor writes memory at the address (invariant 3); a
        // recycled address at worst wakes a waiter of another futex, which looks again.
        unsafe {
            libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
        }
    }
}

/// The model's OS: one sleeper counter for every lock, and a futex made of a loom mutex (the
/// kernel's bucket lock, under which `futex_wait` reads the word) and condition variable.
#[cfg(gort_loom)]
mod model_os {
    use ::loom::sync::atomic::{AtomicU32, Ordering};
    use ::loom::sync::{Condvar, Mutex};

    ::loom::lazy_static! {
        static ref SLEEPERS: AtomicU32 = AtomicU32::new(0);
        /// Queued waiters: (futex address, waiter's token); a wake removes one.
        static ref QUEUE: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
        static ref WOKEN: Condvar = Condvar::new();
    }

    pub(super) fn sleepers(_word: *const AtomicU32) -> &'static AtomicU32 {
        &SLEEPERS
    }

    /// Blocks until a wake removes this waiter, unless the word no longer reads `expected`. No
    /// timeout: a model that needs one has lost a wake-up, and loom reports the deadlock.
    pub(super) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<std::time::Duration>) {
        let mut q = QUEUE.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        let token = &q as *const _ as usize;
        q.push((word as *const AtomicU32 as usize, token));
        while q.iter().any(|&(_, t)| t == token) {
            q = WOKEN.wait(q).unwrap();
        }
    }

    pub(super) fn futex_wake_one(word: *const AtomicU32) {
        let mut q = QUEUE.lock().unwrap();
        if let Some(i) = q.iter().position(|&(a, _)| a == word as usize) {
            q.remove(i);
            WOKEN.notify_all();
        }
    }
}

#[cfg(all(test, not(gort_loom)))]
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
        while sleepers(&l.0).load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "the waiter never went to sleep");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let l2 = l.clone();
        // SAFETY: `l` is held by this test's operation; this thread releases it on its behalf.
        std::thread::spawn(move || unsafe { l2.unlock() }).join().unwrap();
        waiter.join().unwrap();
        assert_eq!(l.0.load(Ordering::Relaxed), UNLOCKED);
        // The waiter slept, so it ran the heavy fence: on this project's kernels that is
        // `membarrier`, and unlocks run without a hardware fence.
        assert!(crate::fence::heavy_registered(), "membarrier could not be registered");
    }
}

#[cfg(all(test, gort_loom))]
mod loom_models {
    use super::*;
    use ::loom::cell::UnsafeCell;
    use ::loom::sync::Arc;

    struct Counter {
        lock: Lock,
        n: UnsafeCell<u32>,
    }
    // SAFETY: `n` is only touched with `lock` held.
    unsafe impl Sync for Counter {}

    /// `threads` threads take and release one lock `rounds` times each, incrementing a counter
    /// under it: loom's cell reports two holders at once, its deadlock check a sleeper nobody
    /// woke, and the count a lost increment.
    fn contend(threads: usize, rounds: u32) {
        let mut b = ::loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(move || {
            let c = Arc::new(Counter { lock: Lock::new(), n: UnsafeCell::new(0) });
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    let c = c.clone();
                    ::loom::thread::spawn(move || {
                        for _ in 0..rounds {
                            c.lock.lock();
                            // SAFETY: the lock is held.
                            c.n.with_mut(|n| unsafe { *n += 1 });
                            // SAFETY: taken above.
                            unsafe { c.lock.unlock() };
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            // SAFETY: every other thread is gone.
            assert_eq!(c.n.with(|n| unsafe { *n }), threads as u32 * rounds);
            assert_eq!(c.lock.0.load(Ordering::Relaxed), UNLOCKED);
        });
    }

    #[test]
    fn two_takers_twice_each() {
        contend(2, 2);
    }

    #[test]
    fn three_takers() {
        contend(3, 1);
    }
}
