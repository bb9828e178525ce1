//! An asymmetric fence: a Dekker pair (each side stores, then reads what the other side stored)
//! whose frequent side pays no hardware fence, because its rare side pays for both.
//!
//! The frequent side runs [`light_fence`] between its store and its read: a compiler barrier
//! only. The rare side runs [`heavy_fence`] between its two accesses: `membarrier`, which makes
//! every running thread of the process execute a full fence wherever it stands. Wherever that
//! fence falls in the frequent side's sequence, either its read comes after it and sees the rare
//! side's store, or its store came before it and the rare side's read sees that store.
//!
//! Two pairs use it: the runtime's lock (`lock.rs`: an unlock is the frequent side, a taker
//! about to sleep the rare one), and the hold on a switched-out goroutine (`g/hold.rs`: an M
//! starting a goroutine is the frequent side, a scanner that holds it still the rare one).
//!
//! # Invariants
//!
//! 1. A light fence skips the hardware fence only once registration has succeeded, and every
//!    heavy fence from then on uses `membarrier`.
//! 2. Where `membarrier` cannot be registered (kernels before 4.14, seccomp filters), both
//!    sides run a `SeqCst` fence: a symmetric Dekker pair, correct at the cost of one fence on
//!    the frequent side.
//! 3. A child after `fork` inherits the static that says `membarrier` is registered; Linux
//!    carries the registration over too (6.x does; the test below says which), and where the
//!    fence fails with EPERM anyway the heavy side registers again. Should that fail as well,
//!    [`heavy_fence`] returns false, and its caller must not count on the pair (the lock's
//!    sleeper naps and looks again; a scanner reads nothing).
//!
//! Under loom (`--cfg gort_loom`) both sides are `SeqCst` fences, the symmetric pair of
//! invariant 2: loom has no asymmetric fence.

#[cfg(not(gort_loom))]
pub(crate) use os::{heavy_fence, light_fence, register_heavy_fence};

#[cfg(gort_loom)]
pub(crate) use model::{heavy_fence, light_fence};

#[cfg(not(gort_loom))]
mod os {
    use std::sync::atomic::{compiler_fence, fence, AtomicBool, Ordering};
    use std::sync::OnceLock;

    /// Whether `membarrier` is registered (invariant 1); set once, false to true.
    static HEAVY: AtomicBool = AtomicBool::new(false);

    /// The frequent side's fence: the compiler must not swap its store and its read; the
    /// hardware may, and the heavy side's `membarrier` covers that, unless it is not available
    /// (invariant 2).
    #[inline(always)]
    pub(crate) fn light_fence() {
        if HEAVY.load(Ordering::Relaxed) {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// Linux UAPI `membarrier` commands (`linux/membarrier.h`).
    pub(super) const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    /// Runs `membarrier(cmd, 0)`; whether it succeeded.
    pub(super) fn membarrier(cmd: libc::c_long) -> bool {
        // SAFETY: `membarrier` takes integer arguments and touches no memory of ours.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0) == 0 }
    }

    /// The rare side's fence: a full fence on every thread of the process that is running, as if
    /// each had executed one where it stands (`membarrier`), or a plain `SeqCst` fence where
    /// `membarrier` is unavailable (invariant 2). Costs a system call and an interrupt per other
    /// CPU running a thread of ours. Returns whether every light fence is now sure to be paired
    /// (invariants 1 and 2), or not (invariant 3).
    #[cold]
    pub(crate) fn heavy_fence() -> bool {
        if !register_heavy_fence() {
            // Invariant 2: light fences are hardware fences too.
            fence(Ordering::SeqCst);
            return true;
        }
        // EPERM, the one failure left once registered, would mean a forked child that did not
        // inherit the registration (invariant 3): register again.
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
            || (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
    }

    /// Registers the process for `membarrier`'s private expedited fence, once, and says whether
    /// it could: light fences are compiler barriers from then on. The runtime's start calls it,
    /// so goroutines never pay the hardware fence; a pair used before that (a plain thread's
    /// channel) pays it until the first start or heavy fence.
    #[cold]
    pub(crate) fn register_heavy_fence() -> bool {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED.get_or_init(|| {
            let ok = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
            // Relaxed: light fences read it only to skip their hardware fence, which is right
            // once any heavy side that could need it is sure to use `membarrier` (the
            // `OnceLock` says so to every heavy side from now on).
            HEAVY.store(ok, Ordering::Relaxed);
            ok
        })
    }

    /// Whether light fences skip their hardware fence (for tests).
    #[cfg(test)]
    pub(crate) fn heavy_registered() -> bool {
        HEAVY.load(Ordering::Relaxed)
    }
}

#[cfg(gort_loom)]
mod model {
    use ::loom::sync::atomic::{fence, Ordering};

    pub(crate) fn light_fence() {
        fence(Ordering::SeqCst);
    }

    pub(crate) fn heavy_fence() -> bool {
        fence(Ordering::SeqCst);
        true
    }
}

#[cfg(all(test, not(gort_loom)))]
pub(crate) use os::heavy_registered;

#[cfg(all(test, not(gort_loom)))]
mod tests {
    use super::os;
    use super::*;

    /// A forked child inherits the static that says `membarrier` is registered; where it does not
    /// inherit the registration too (invariant 3), the heavy fence registers again rather than
    /// fail. Exit codes: 0 the child had to register again and could, 2 it did not have to, 1
    /// the fence failed.
    #[test]
    fn heavy_fence_works_in_a_forked_child() {
        assert!(register_heavy_fence(), "membarrier could not be registered");
        // SAFETY: the child makes raw system calls and `_exit`s; the `OnceLock` it reads was
        // initialised above, so no lock another thread held at the fork is taken.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let inherited = os::membarrier(os::MEMBARRIER_CMD_PRIVATE_EXPEDITED);
            let code = if !heavy_fence() {
                1
            } else if inherited {
                2
            } else {
                0
            };
            // SAFETY: `_exit` ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "the child died: {status:#x}");
        let code = libc::WEXITSTATUS(status);
        assert!(code != 1, "the heavy fence failed in a forked child");
        eprintln!("forked child: registration {}", if code == 0 { "redone" } else { "inherited" });
    }
}
