//! gort's network poller: epoll, edge-triggered, with per-fd poll descriptors (Go's
//! `runtime/netpoll.go` + `netpoll_epoll.go`).
//!
//! This crate knows nothing of goroutines. A waiter is an opaque [`Token`] (the runtime uses a
//! pointer to its G); netpoll stores tokens and hands them back, exactly once, when the waiter
//! must be readied. It never dereferences them.
//!
//! ```
//! use std::io::Write;
//! use std::os::fd::AsRawFd;
//! use std::time::Duration;
//! use gort_netpoll::{Mode, Poller, Token};
//!
//! let poller = Poller::new()?;
//! let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
//! a.set_nonblocking(true)?;
//! let reg = poller.register(a.as_raw_fd())?;
//! reg.prepare(Mode::Read)?;
//! // Nothing to read yet: the waiter parks. A runtime would commit its G's token from the
//! // park's commit and block until a poll hands the token back; here the same thread makes
//! // the socket readable and polls.
//! reg.wait(Mode::Read, |commit| {
//!     assert!(commit.commit(Token::new(7)));
//!     b.write_all(b"x").unwrap();
//!     let mut ready = Vec::new();
//!     while ready.is_empty() {
//!         poller.poll(Some(Duration::from_secs(1)), &mut ready).unwrap();
//!     }
//!     assert_eq!(ready, [Token::new(7)]);
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Pieces
//!
//! - [`Poller`]: the epoll set, an eventfd to interrupt a blocked `epoll_wait`
//!   ([`Poller::wake`], Go's `netpollBreak`), and [`Poller::poll`] (Go's `netpoll(delay)`),
//!   which returns the tokens of the waiters that events made runnable.
//! - [`Registration`]: one fd, registered once (`EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLPRI|EPOLLET`), with a
//!   poll descriptor from a type-stable pool: a reader and a writer slot (Go's `rg`/`wg`),
//!   deadline state, and a closing flag. Stale events for a dropped-and-reused descriptor are
//!   recognised by a generation number (Go's `fdseq`) carried in the epoll user data.
//! - The lock-free slot protocol and its invariants are at the top of `desc.rs`.
//!
//! # How a runtime uses it
//!
//! Go's `netpollblock`/`netpollready`/`netpollunblock`, mapped:
//!
//! | Go                                   | here                                                  |
//! |--------------------------------------|-------------------------------------------------------|
//! | `pollOpen` / `pollClose`             | [`Poller::register`] / drop the [`Registration`]      |
//! | `pollReset` (`prepareRead`)          | [`Registration::prepare`]                             |
//! | `pollWait` + `netpollblockcommit`    | [`Registration::wait`] + [`Commit::commit`]           |
//! | `netpoll(delay)` + `netpollready`    | [`Poller::poll`] (returns tokens to ready)            |
//! | `netpollBreak`                       | [`Poller::wake`]                                      |
//! | `pollSetDeadline` / deadline timers  | [`Registration::set_deadline`] / [`Poller::expire`]   |
//! | `pollUnblock` (on close)             | [`Registration::close`] (returns tokens to ready)     |
//! | `netpollAnyWaiters`                  | [`Poller::waiters`]                                   |
//!
//! A blocking read in the runtime's socket type (one reader at a time per socket, e.g. under a
//! per-direction lock):
//!
//! ```no_run
//! # use gort_netpoll::{Mode, Poller, Token};
//! # use std::os::fd::RawFd;
//! # fn park(_commit: impl FnOnce(usize) -> bool) {}
//! # fn sys_read(_fd: RawFd, _buf: &mut [u8]) -> std::io::Result<usize> { Ok(0) }
//! # let poller = Poller::new().unwrap();
//! # let fd: RawFd = 0;
//! # let buf = &mut [0u8; 16][..];
//! let reg = poller.register(fd)?; // fd already O_NONBLOCK
//! reg.prepare(Mode::Read)?; // fails if closed / timed out
//! let n = loop {
//!     match sys_read(reg.fd(), buf) {
//!         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
//!             // Park the goroutine. The runtime's park runs the commit closure on the scheduler
//!             // stack after the G is marked waiting; `false` resumes the G at once.
//!             reg.wait(Mode::Read, |commit| park(move |g_ptr| commit.commit(Token::new(g_ptr))))?;
//!         }
//!         r => break r?,
//!     }
//! };
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The scheduler side (all tokens returned must be readied, as one batch where possible):
//!
//! - `find_runnable`: before stealing or sleeping, `poll(Some(ZERO), &mut toks)` and ready
//!   `toks` (cheap: ~120 ns when empty).
//! - When nothing is runnable and [`waiters`](Poller::waiters) `> 0` or a timer is pending,
//!   one M (and only one) blocks in `poll(Some(until_next_timer))` (`None` if no timer). Whoever
//!   makes work runnable, or adds a timer earlier than the one it sleeps for, calls
//!   [`wake`](Poller::wake).
//! - sysmon: if nobody polled for 10 ms, `poll(Some(ZERO))` and inject the tokens.
//! - Deadlines: the runtime owns the clock and the timers. Setting a deadline calls
//!   `set_deadline(mode, Future)` and arms a timer with the returned key, whose callback calls
//!   [`Poller::expire`]`(key)` and readies the returned token; a past deadline is
//!   `set_deadline(mode, Past)` (ready the returned token), clearing one `Unset`. Old timers may
//!   simply fire: their keys are stale and ignored.
//! - Closing a socket: `close()` (ready the returned tokens), wait for in-flight operations to
//!   finish, drop the registration, then close the fd.
//!
//! Errors are `std::io::Error`s; [`PollError::of`] tells this crate's own (closed, timed out)
//! from the OS's.
//!
//! # Not here (on purpose)
//!
//! - Clocks and timers: the runtime owns them; netpoll records only "deadline passed or not".
//!   Go's combined read+write timer is two keys here.
//! - Level-triggered mode (Go uses it only on Solaris/AIX), and Go's `everr` bit (see `epoll.rs`).
//! - Several waiters per mode: the socket layer serialises them (Go's `fdMutex`).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// The model-checking build (`loom.rs`) keeps only the poll-descriptor protocol.
#![cfg_attr(gort_loom, allow(dead_code, unused_imports))]

mod desc;
#[cfg(not(gort_loom))]
mod epoll;
mod loom;
#[cfg(not(gort_loom))]
mod pool;

use std::fmt;
use std::io;
use std::num::NonZeroUsize;

#[cfg(not(gort_loom))]
pub use desc::Registration;
pub use desc::{Commit, Deadline, DeadlineKey, Wakeups};
#[cfg(not(gort_loom))]
pub use epoll::Poller;

/// Which side of a descriptor a waiter waits on (Go's `'r'` / `'w'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Readable (or EOF, hang-up, error; or for a listener, a connection to accept).
    Read,
    /// Writable (or hang-up, error; or for a connecting socket, the connection finished).
    Write,
}

/// An opaque, non-zero waiter identity (the runtime: a pointer to its G).
///
/// Values 1 and 2 are reserved by the slot encoding; any pointer to an object larger than a
/// byte and not in the first page is fine.
///
/// Making one is safe because this crate never dereferences a token: it only hands each
/// committed token back once. A runtime that turns tokens back into pointers must keep its
/// [`Poller`] to itself, since whoever can reach a poller can commit any token to it (gort's
/// runtime keeps its poller crate-private for exactly this reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(NonZeroUsize);

impl Token {
    /// Smallest valid token value.
    pub const MIN: usize = desc::WAIT + 1;

    /// Wraps `raw`. Panics if `raw < Token::MIN`.
    pub fn new(raw: usize) -> Token {
        assert!(raw >= Token::MIN, "netpoll: token {raw} is reserved (must be >= {})", Token::MIN);
        // The assert above makes raw non-zero.
        Token(NonZeroUsize::new(raw).expect("non-zero"))
    }

    /// The raw value given to [`Token::new`].
    pub fn get(self) -> usize {
        self.0.get()
    }

    pub(crate) fn from_slot(v: usize) -> Token {
        Token::new(v)
    }

    pub(crate) fn slot_value(self) -> usize {
        self.0.get()
    }
}

/// The errors of waiting itself (Go's `pollErrClosing`, `pollErrTimeout`), delivered inside an
/// `io::Error` (kinds `Other` and `TimedOut`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PollError {
    /// The registration was closed ([`Registration::close`]).
    Closed,
    /// The deadline of this mode passed.
    TimedOut,
}

impl PollError {
    /// The `PollError` inside `err`, if it is one of ours.
    pub fn of(err: &io::Error) -> Option<PollError> {
        err.get_ref().and_then(|e| e.downcast_ref::<PollError>()).copied()
    }
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PollError::Closed => "use of closed network connection",
            PollError::TimedOut => "i/o timeout",
        })
    }
}

impl std::error::Error for PollError {}

impl From<PollError> for io::Error {
    fn from(e: PollError) -> io::Error {
        let kind = match e {
            PollError::Closed => io::ErrorKind::Other,
            PollError::TimedOut => io::ErrorKind::TimedOut,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(all(test, not(gort_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn poll_error_round_trips_through_io_error() {
        let e: io::Error = PollError::TimedOut.into();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(PollError::of(&e), Some(PollError::TimedOut));
        assert_eq!(PollError::of(&io::Error::from_raw_os_error(libc::EAGAIN)), None);
        assert_eq!(PollError::of(&PollError::Closed.into()), Some(PollError::Closed));
    }

    /// The runtime keeps the poller in a static and moves registrations and commits across
    /// threads (a goroutine migrates between Ms).
    #[test]
    fn shareable_across_threads_and_static() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Poller>();
        send_sync::<Registration<'static>>();
        send_sync::<Commit<'static>>();
        send_sync::<Wakeups>();
        static POLLER: std::sync::OnceLock<Poller> = std::sync::OnceLock::new();
        let poller: &'static Poller = POLLER.get_or_init(|| Poller::new().unwrap());
        let (a, b) = pipe();
        let reg: Registration<'static> = poller.register(a).unwrap();
        std::thread::spawn(move || drop(reg)).join().unwrap();
        close(a);
        close(b);
    }

    #[test]
    #[should_panic(expected = "reserved")]
    fn token_rejects_reserved_values() {
        Token::new(2);
    }

    /// A stale event (one fetched for a registration that was dropped, delivered after its
    /// descriptor was reused) neither readies the new registration nor takes its waiter.
    #[test]
    fn stale_event_after_close_and_reuse_is_dropped() {
        let poller = Poller::new().unwrap();
        let (a, b) = pipe();
        let old = poller.register(a).unwrap();
        let stale = old.epoll_data();
        drop(old);
        let new = poller.register(b).unwrap();
        assert_eq!(new.epoll_data() as u32, stale as u32, "LIFO reuse of the descriptor");
        assert_ne!(new.epoll_data(), stale);

        // Park a fake waiter on the new registration's read slot, then deliver the stale event.
        let all = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLHUP) as u32;
        let parked = AtomicUsize::new(0);
        let mut out = Vec::new();
        let mut rounds = 0;
        let r = new.wait(Mode::Read, |c| {
            rounds += 1;
            if rounds == 1 {
                assert!(c.commit(Token::new(0x1000)));
                parked.store(1, Ordering::Relaxed);
                poller.dispatch(stale, all, &mut |t| out.push(t));
                assert!(out.is_empty(), "stale event readied a waiter");
                // The fresh event takes the token, exactly once.
                poller.dispatch(new.epoll_data(), all, &mut |t| out.push(t));
                poller.dispatch(new.epoll_data(), all, &mut |t| out.push(t));
                assert_eq!(out, vec![Token::new(0x1000)]);
            } else {
                panic!("parked twice");
            }
        });
        assert!(r.is_ok());
        assert_eq!(parked.load(Ordering::Relaxed), 1);
        assert_eq!(poller.waiters(), 0);
        // Unknown indices are ignored too.
        poller.dispatch(crate::epoll::event_data(1 << 30, 0), all, &mut |t| out.push(t));
        assert_eq!(out.len(), 1);
        drop(new);
        close(a);
        close(b);
    }

    fn pipe() -> (i32, i32) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
        (fds[0], fds[1])
    }

    fn close(fd: i32) {
        // SAFETY: the test owns `fd`.
        unsafe { libc::close(fd) };
    }
}
