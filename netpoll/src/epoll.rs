//! The epoll backend (Go's `netpoll_epoll.go`): one epoll set, one eventfd to break a blocked
//! `epoll_wait`, and the event loop that turns epoll events into waiter tokens.
//!
//! # Wakeups (`wake`)
//!
//! The eventfd sits in the epoll set, level-triggered, with the reserved user data
//! [`WAKE_DATA`]. `wake` writes to it, so a blocked `epoll_wait` returns. Concurrent wakes are
//! coalesced by `wake_sig` (Go's `netpollWakeSig`): only the caller that turns it from false to
//! true writes. A *blocking* poll that sees the eventfd drains it and then turns `wake_sig`
//! back to false, in that order: a `wake` racing with the drain either finds `wake_sig` still
//! true (and the poller, whose swap synchronises with the waker's, sees the waker's work), or
//! finds it false and writes again (the eventfd stays readable for the next poll). A
//! non-blocking poll leaves the eventfd alone, so the wake stays pending for the poller that
//! blocks (Go does the same).
//!
//! # Events
//!
//! `EPOLLIN|EPOLLRDHUP|EPOLLHUP|EPOLLERR` ready the reader, `EPOLLOUT|EPOLLHUP|EPOLLERR` the
//! writer: on a hang-up or an error both retry their syscall and see EOF or the socket's own
//! error (`ECONNRESET`, ...). Unlike Go there is no sticky "event error" bit (`everr`, only for
//! descriptors that report a bare `EPOLLERR`): the syscall reports the error better. A hang-up,
//! an error or urgent data also sets the descriptor's sticky `hup` flag (`desc.rs`, invariant 7).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::desc::{DeadlineKey, PollDesc, Registration};
use crate::pool::Pool;
use crate::{Mode, Token};

/// epoll user data of the wake eventfd. Never a registration's: pool indices are `< u32::MAX`.
const WAKE_DATA: u64 = u64::MAX;

/// Events fetched per `epoll_wait` (Go: 128). More are left for the next poll.
const EVENTS: usize = 128;

/// Interest set for every registered fd, once, edge-triggered. `EPOLLPRI` (TCP urgent data)
/// only feeds [`HUP_EVENTS`]: a read stops short at the urgent mark with data left behind.
const INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLPRI | libc::EPOLLET) as u32;
/// Events after which a short read no longer proves the queue drained (`Registration::hung_up`).
const HUP_EVENTS: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLPRI) as u32;
/// Events that make a reader runnable (it will see data, EOF or the error).
const READ_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// Events that make a writer runnable.
const WRITE_EVENTS: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// epoll user data of a registration: pool index in the low half, `fdseq` in the high half.
pub(crate) fn event_data(index: u32, fdseq: u32) -> u64 {
    (fdseq as u64) << 32 | index as u64
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `epoll_wait` timeout in milliseconds: -1 blocks, 0 polls; anything else is rounded *up* so a
/// poll until the next timer does not return just before it and spin.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

/// The network poller: an epoll set, its wake eventfd and the pool of poll descriptors.
///
/// All methods take `&self` and may be called from any thread; several threads may poll at
/// once (the runtime normally lets one block and others only poll with a zero timeout).
pub struct Poller {
    /// The epoll set.
    epfd: OwnedFd,
    /// Written by `wake` to break a blocked `epoll_wait`.
    eventfd: OwnedFd,
    /// A wake is pending in the eventfd (Go's `netpollWakeSig`): coalesces concurrent wakes.
    wake_sig: AtomicBool,
    /// Number of waiters parked with a committed token (Go's `netpollWaiters`), plus briefly
    /// those in the middle of committing. Never below the number of parked waiters.
    pub(crate) waiters: AtomicUsize,
    /// Type-stable poll descriptors.
    pool: Pool,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("epfd", &self.epfd.as_raw_fd())
            .field("eventfd", &self.eventfd.as_raw_fd())
            .field("waiters", &self.waiters())
            .finish_non_exhaustive()
    }
}

impl Poller {
    /// Creates the epoll set and the wake eventfd (both close-on-exec). Fails like the
    /// syscalls do, e.g. with `EMFILE` when the process is out of descriptors.
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall, no pointers.
        let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `epfd` is a fresh descriptor that nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        // SAFETY: plain syscall, no pointers.
        let efd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `efd` is a fresh descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        // Level-triggered: the eventfd stays readable until a blocking poll drains it.
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: WAKE_DATA };
        // SAFETY: both fds are open and owned by us; `ev` is a valid epoll_event for the call.
        cvt(unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, efd, &mut ev) })?;
        Ok(Poller { epfd, eventfd, wake_sig: AtomicBool::new(false), waiters: AtomicUsize::new(0), pool: Pool::new() })
    }

    /// Registers `fd` (Go's `pollOpen`): edge-triggered for reading and writing, once for its
    /// whole life. The fd should be non-blocking. Fails with the `epoll_ctl` error (`EBADF`,
    /// `EPERM` for regular files, `EEXIST` if already registered, `ENOSPC`, `ENOMEM`); the
    /// descriptor is then returned to the pool.
    pub fn register(&self, fd: RawFd) -> io::Result<Registration<'_>> {
        let index = self.pool.alloc()?;
        let desc = self.pool.get(index).expect("netpoll: allocated descriptor missing");
        desc.open();
        // Relaxed: the event data is published to the kernel by the epoll_ctl below, and read
        // back only through an event that syscall produces.
        let seq = desc.fdseq.load(Ordering::Relaxed);
        let mut ev = libc::epoll_event { events: INTEREST, u64: event_data(index, seq) };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; a bad `fd` is
        // reported by the kernel, not undefined behaviour.
        if let Err(e) = cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }) {
            let _ = desc.close();
            self.retire(desc, index);
            return Err(e);
        }
        Ok(Registration::new(self, desc, index, fd))
    }

    /// Removes `fd` from the epoll set and recycles the descriptor (Go's `pollClose`). The
    /// descriptor was closed (no waiters, deadlines stale).
    pub(crate) fn deregister(&self, fd: RawFd, desc: &PollDesc, index: u32) {
        // The event pointer may be null for DEL (Linux >= 2.6.9). Errors are ignored: the fd may
        // already be closed, which removed it from the set.
        // SAFETY: plain syscall; a null event is allowed for EPOLL_CTL_DEL.
        unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        self.retire(desc, index);
    }

    fn retire(&self, desc: &PollDesc, index: u32) {
        // Release: pairs with the Acquire load in `dispatch`: an event that reads the new value
        // is dropped (invariant 6 of desc.rs).
        desc.fdseq.fetch_add(1, Ordering::Release);
        self.pool.free(index);
    }

    /// Accounts for a token taken out of a slot: it is no longer parked in the poller.
    pub(crate) fn took(&self, t: Option<Token>) -> Option<Token> {
        if t.is_some() {
            // Relaxed: a statistic; see `Commit::commit` for why it cannot underflow.
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
        t
    }

    /// Polls the network (Go's `netpoll(delay)`): waits up to `timeout` for events (`None`
    /// blocks until an event or a [`wake`](Poller::wake); `Some(ZERO)` does not block; other
    /// timeouts are rounded up to whole milliseconds), then appends to `out` the token of every
    /// parked waiter that an event made runnable. The runtime must ready each of them (as one
    /// batch). Returns the number of tokens appended; 0 also after a wake, a timeout, or an
    /// interrupting signal.
    pub fn poll(&self, timeout: Option<Duration>, out: &mut Vec<Token>) -> io::Result<usize> {
        self.poll_each(timeout, |t| out.push(t))
    }

    /// [`poll`](Poller::poll), handing each token to `f` as it is taken rather than collecting
    /// them, so a poll on the scheduler's path allocates nothing. Returns the number of tokens.
    pub fn poll_each(&self, timeout: Option<Duration>, mut f: impl FnMut(Token)) -> io::Result<usize> {
        let ms = timeout_ms(timeout);
        let mut events = [MaybeUninit::<libc::epoll_event>::uninit(); EVENTS];
        let n = loop {
            // SAFETY: `events` is writable for EVENTS entries; the kernel initialises the first
            // `n` it returns.
            let r = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), events.as_mut_ptr().cast(), EVENTS as _, ms) };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            if ms > 0 {
                // A signal: let the caller recompute its timeout (Go does the same).
                return Ok(0);
            }
        };
        let mut count = 0;
        let mut f = |t| {
            count += 1;
            f(t)
        };
        for ev in &events[..n] {
            // SAFETY: the kernel wrote the first `n` entries.
            let ev = unsafe { ev.assume_init() };
            let (bits, data) = (ev.events, ev.u64);
            if data == WAKE_DATA {
                if ms != 0 {
                    self.drain_wake();
                }
                continue;
            }
            self.dispatch(data, bits, &mut f);
        }
        Ok(count)
    }

    /// Applies one registration event: drops it if stale, else readies the slots it concerns.
    pub(crate) fn dispatch(&self, data: u64, bits: u32, f: &mut impl FnMut(Token)) {
        let (index, seq) = (data as u32, (data >> 32) as u32);
        let Some(desc) = self.pool.get(index) else { return };
        // Acquire: pairs with the Release bump in `retire`.
        if desc.fdseq.load(Ordering::Acquire) != seq {
            return; // an event of an earlier registration of this descriptor
        }
        if bits & HUP_EVENTS != 0 {
            desc.note_hup();
        }
        if bits & READ_EVENTS != 0 {
            if let Some(t) = self.took(desc.ready(Mode::Read)) {
                f(t);
            }
        }
        if bits & WRITE_EVENTS != 0 {
            if let Some(t) = self.took(desc.ready(Mode::Write)) {
                f(t);
            }
        }
    }

    fn drain_wake(&self) {
        let mut buf = 0u64;
        // SAFETY: `buf` is 8 writable bytes; the eventfd is non-blocking, so an already drained
        // counter gives EAGAIN, which is fine to ignore (another poller drained it).
        unsafe { libc::read(self.eventfd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
        // AcqRel: Acquire pairs with the Release of the `wake` swap that set the flag, so the work
        // published before that wake is visible to this poller's caller; see the module docs.
        self.wake_sig.swap(false, Ordering::AcqRel);
    }

    /// Interrupts a blocked [`poll`](Poller::poll) (Go's `netpollBreak`). Call it after
    /// publishing new work or an earlier timer, so the poller's caller sees it. Concurrent and
    /// repeated calls coalesce into one eventfd write until a blocking poll consumes it.
    pub fn wake(&self) -> io::Result<()> {
        // AcqRel: Release pairs with the Acquire swap in `drain_wake` (the caller's work is then
        // visible to the poller); a swap rather than a load keeps a coalesced wake in the
        // flag's release sequence, see the module docs.
        if self.wake_sig.swap(true, Ordering::AcqRel) {
            return Ok(()); // a wake is already pending
        }
        let one = 1u64;
        loop {
            // SAFETY: `one` is 8 readable bytes, the eventfd is open.
            let r = unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            if r == 8 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // The counter is full: the eventfd is readable anyway.
                io::ErrorKind::WouldBlock => return Ok(()),
                _ => {
                    self.wake_sig.store(false, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }

    /// Number of waiters parked on the network (Go's `netpollWaiters`): the scheduler blocks in
    /// [`poll`](Poller::poll) only if this or a timer is pending, and its deadlock detector
    /// counts these goroutines as wakeable. Approximate while waiters are committing.
    pub fn waiters(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// A deadline timer fired (Go's `netpollDeadline`): marks the deadline of `key` as passed,
    /// so waits fail with [`PollError::TimedOut`](crate::PollError::TimedOut), and returns the
    /// parked waiter to ready. Does nothing for a stale key (the deadline was changed, the
    /// registration closed or dropped, even if its descriptor was reused since).
    pub fn expire(&self, key: DeadlineKey) -> Option<Token> {
        let desc = self.pool.get(key.index())?;
        self.took(desc.expire(key))
    }

    /// Whether `fd` is one of the poller's own descriptors (Go's `netpollIsPollDescriptor`).
    pub fn is_poll_descriptor(&self, fd: RawFd) -> bool {
        fd == self.epfd.as_raw_fd() || fd == self.eventfd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(timeout_ms(Some(Duration::from_millis(7))), 7);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), libc::c_int::MAX);
    }

    #[test]
    fn event_data_round_trips() {
        let d = event_data(0x1234_5678, 0x9abc_def0);
        assert_eq!((d as u32, (d >> 32) as u32), (0x1234_5678, 0x9abc_def0));
        assert_ne!(event_data(u32::MAX - 1, u32::MAX), WAKE_DATA);
    }
}
