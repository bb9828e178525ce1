//! The runtime side of the network poller (Go's `netpoll.go` glue in `proc.go`): one global
//! [`Poller`] created on first use, the conversions between its opaque tokens and Gs, and the
//! batch readying of what a poll returns.
//!
//! Who polls (see `sched/`):
//! - `find_runnable` polls without blocking before it steals, when someone waits on the network
//!   and no M is blocked in `epoll_wait` already;
//! - one idle M at a time blocks in `epoll_wait` until the next timer (it is then also the timer
//!   M); `wake_m` interrupts it with the poller's eventfd;
//! - sysmon polls if nobody has for 10 ms.
//!
//! [`LASTPOLL`] is the `nanotime` of the last poll, or 0 while an M is blocked in one (Go's
//! `sched.lastpoll`): an M claims the blocking poll by swapping it to 0.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use gort_netpoll::{Poller, Token};

use crate::clock::nanotime;
use crate::g::{GRef, G};
use crate::threadg::make_runnable;

/// `nanotime` of the last network poll; 0 while an M is blocked in one.
pub(crate) static LASTPOLL: AtomicU64 = AtomicU64::new(1);

static POLLER: OnceLock<Poller> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// The poller, if anything has used the network yet.
#[inline]
pub(crate) fn poller() -> Option<&'static Poller> {
    POLLER.get()
}

/// Whether a non-blocking poll could find anything: goroutines wait on the network and no M is
/// blocked in the poller (which would get their events first).
#[inline]
pub(crate) fn worth_polling() -> bool {
    LASTPOLL.load(Ordering::Relaxed) != 0 && poller().is_some_and(|pl| pl.waiters() > 0)
}

/// The poller, created on first use (Go's `netpollGenericInit`).
///
/// Private to the runtime: every token in it must name a G parked on it (see [`g_of`]), so no
/// code outside may register with it or commit to it.
pub(crate) fn poller_init() -> io::Result<&'static Poller> {
    if let Some(p) = POLLER.get() {
        return Ok(p);
    }
    let _l = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = POLLER.get() {
        return Ok(p);
    }
    let p = Poller::new()?;
    let _ = POLLER.set(p);
    Ok(POLLER.get().expect("poller just set"))
}

/// The token naming `g` in the poller (its descriptor's address; Gs are never freed).
pub(crate) fn token(g: GRef) -> Token {
    Token::new(g.as_ptr() as usize)
}

/// The G a token names.
///
/// # Safety
/// `t` must come from the runtime's poller, whose tokens are all made by [`token`] (the poller
/// is crate-private and only `PollFd` commits to it).
pub(crate) unsafe fn g_of(t: Token) -> GRef {
    // SAFETY: per the contract, `t` is a G pointer from `GRef::as_ptr`.
    unsafe { GRef::from_ptr(t.get() as *const G) }
}

/// Marks the G of `t` runnable and returns it (an entry of Go's `netpollready` list), for the
/// caller to run or queue. A thread stand-in is readied (unparked) directly: `None`.
///
/// # Safety
/// `t` must have just been handed back by the runtime's poller, and not be readied otherwise:
/// the poller hands each committed token back exactly once, and the G it names is then parked
/// in `PollFd::io_until` waiting for exactly this.
pub(crate) unsafe fn take_runnable(t: Token) -> Option<GRef> {
    // SAFETY: `t` comes from the runtime's poller (contract).
    let g = unsafe { g_of(t) };
    // SAFETY: the poller handed the token back once, out of the slot this G's park committed
    // it to (contract): the one `ready` for that park. We queue a goroutine ourselves.
    unsafe { make_runnable(g, "netpoll") }
}

/// A non-blocking poll (sysmon, or an M about to steal): hands each runnable G to `f`, as the
/// poll takes it (nothing is collected: this is on an idle M's every round).
pub(crate) fn poll_now(mut f: impl FnMut(GRef)) {
    let pl = match poller() {
        Some(pl) if pl.waiters() > 0 => pl,
        _ => return,
    };
    let r = pl.poll_each(Some(Duration::ZERO), |t| {
        // SAFETY: `t` was just handed back by the runtime's poller.
        if let Some(g) = unsafe { take_runnable(t) } {
            f(g);
        }
    });
    if r.is_ok() {
        let last = LASTPOLL.load(Ordering::Relaxed);
        if last != 0 {
            // Relaxed: a hint for sysmon; losing the race to a blocking poller is harmless.
            let _ = LASTPOLL.compare_exchange(last, nanotime(), Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}
