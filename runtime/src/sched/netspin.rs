//! Spinning for the network: an M that finds nothing to run while goroutines wait on sockets
//! keeps its P and polls the network (non-blocking) for up to [`NET_SPIN_NS`] before it gives
//! the P back and blocks in the poller.
//!
//! # Why
//!
//! A request-response peer (a load generator, a client in another process) answers within a
//! few microseconds. If the M blocks in `epoll_wait` meanwhile, the peer's send must wake a
//! sleeping thread: the kernel's wake-up runs in the *sender's* system call, and on a VM it
//! sends an inter-processor interrupt to a halted vCPU, a VM exit on both sides. Then the
//! woken M pays a context switch in and takes its P again. A short spin catches the answer
//! with none of that, at the price of up to [`NET_SPIN_NS`] of CPU per idle moment.
//!
//! # When
//!
//! Only while it pays: a spin that runs out finds the network quiet and counts one up in
//! [`NET_SPINS_FUTILE`]; one that finds a goroutine resets it. From [`NET_SPIN_OFF`] on, Ms
//! no longer spin (a server between bursts, a client waiting on a slow peer: an idle process
//! stays idle). The way back is measured in the poller: an M that blocked there and was woken
//! by the network within [`NET_SPIN_NS`] would have caught that with a spin, and resets the
//! count. Only a spinning M (the spinning protocol's count, `idle.rs`) spins for the network,
//! so at most about half the busy Ps' worth of Ms do, and while one does, readiers do not wake
//! another M: the spinner looks at every queue at each round.
//!
//! The count is a heuristic shared by all Ms, updated with plain loads and stores: a lost
//! update between two Ms costs one spin more or less, nothing else.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The longest an M spins for the network before giving its P back: several round trips of a
/// loopback request-response on a VM, far below a scheduler's time slice.
pub(crate) const NET_SPIN_NS: u64 = 20_000;

/// How many network spins in a row ran out finding nothing (saturating at [`NET_SPIN_OFF`]).
static NET_SPINS_FUTILE: AtomicU32 = AtomicU32::new(0);

/// From this many futile spins in a row, Ms stop spinning for the network.
pub(crate) const NET_SPIN_OFF: u32 = 4;

/// Network spins that found a goroutine, and that ran out (since start).
static NET_SPINS_FOUND: AtomicU64 = AtomicU64::new(0);
static NET_SPINS_RAN_OUT: AtomicU64 = AtomicU64::new(0);

/// Whether an M with nothing to run should spin for the network now.
#[inline]
pub(crate) fn net_spin_on() -> bool {
    NET_SPINS_FUTILE.load(Ordering::Relaxed) < NET_SPIN_OFF
}

/// A network spin ran out: the network stayed quiet for [`NET_SPIN_NS`].
#[cold]
pub(crate) fn note_net_spin_ran_out() {
    NET_SPINS_RAN_OUT.fetch_add(1, Ordering::Relaxed);
    let n = NET_SPINS_FUTILE.load(Ordering::Relaxed);
    if n < NET_SPIN_OFF {
        NET_SPINS_FUTILE.store(n + 1, Ordering::Relaxed);
    }
}

/// A network spin found a goroutine to run (under load, once per request that came in while
/// the M spun: not cold).
pub(crate) fn note_net_spin_found() {
    NET_SPINS_FOUND.fetch_add(1, Ordering::Relaxed);
    NET_SPINS_FUTILE.store(0, Ordering::Relaxed);
}

/// An M blocked in the poller for `ns` and woke with goroutines to run: if a spin would have
/// caught them and spinning is off, turn it back on.
pub(crate) fn note_poll_woke_after(ns: u64) {
    if ns < NET_SPIN_NS && !net_spin_on() {
        NET_SPINS_FUTILE.store(0, Ordering::Relaxed);
    }
}

/// Network spins that found a goroutine (since start).
pub(crate) fn net_spins_found() -> u64 {
    NET_SPINS_FOUND.load(Ordering::Relaxed)
}

/// Network spins that ran out with nothing (since start).
pub(crate) fn net_spins_ran_out() -> u64 {
    NET_SPINS_RAN_OUT.load(Ordering::Relaxed)
}
