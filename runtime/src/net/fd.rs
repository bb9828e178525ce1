//! A non-blocking socket registered with the network poller, with blocking-style operations
//! (Go's `internal/poll.FD`). Every socket type in `gort::net` is a thin wrapper around one.
//!
//! On a goroutine an operation that would block parks the goroutine (`IO wait`) until the poller
//! reports readiness, a deadline passes or the socket is closed. On a plain thread it blocks the
//! thread in `poll(2)`, as a std socket would.
//!
//! Readers are serialised by one lock and writers by another (Go's `fdMutex`): the poller has one
//! waiter slot per direction.
//!
//! # Timeouts and deadlines
//!
//! Each direction has a std-style per-operation timeout and a Go-style absolute deadline, kept
//! in atomics ([`Limits`]). The poll descriptor has one deadline state per direction (unset,
//! future with a timer key, past), so:
//!
//! 1. An operation starting with a limit (the earlier of `now + timeout` and the deadline) sets
//!    the descriptor's state and arms a timer for that operation (`arm`); one starting with no
//!    limit resets the state only if something may have set it (`Limits::dirty`), so the common
//!    case costs one atomic load, not the descriptor lock.
//! 2. `set_deadline` also sets the state at once and arms a timer owned by the socket
//!    (`Limits::timer`), so a deadline set while an operation is blocked interrupts it when it
//!    passes (Go's `SetReadDeadline` from another goroutine). A past deadline wakes the blocked
//!    waiter immediately. Setting the state bumps the descriptor's key, so whichever timer armed
//!    last is the one that counts; the others fire into stale keys and do nothing.
//! 3. The race between (1) and (2): `arm` sets the state and then re-reads the deadline; if it
//!    changed meanwhile, it starts over, so the state left behind always reflects the newest
//!    deadline. (A deadline set mid-operation replaces that operation's shorter std timeout:
//!    deadlines win, as in Go, where only deadlines exist.)
//! 4. A wait that times out reports `TimedOut` if the deadline has passed, else `WouldBlock`
//!    (a std timeout, as std reports on Linux).
//!
//! On a plain thread, limits are read once when the operation starts (the thread blocks in
//! `poll(2)` with that timeout); a deadline changed from elsewhere applies to the next operation.
//!
//! # Drained streams
//!
//! A stream read that returns less than it asked for emptied the socket's receive queue (TCP
//! and Unix stream reads copy until the buffer is full or the queue is empty), so the next read
//! on a goroutine ([`PollFd::read_stream`]) waits for readiness *before* its syscall instead of
//! paying one that fails with `EAGAIN` (Tokio does the same). Why that loses no wakeup is the
//! poller's business (invariant 7 of `gort_netpoll`'s `desc.rs`): data that arrived since the
//! short read left a notification the wait consumes, and once the peer hung up or an error or
//! urgent data was reported ([`Registration::hung_up`]), every read tries its syscall first
//! again, since a short read does not consume an EOF. A stale notification costs one `EAGAIN`,
//! as before. Other readers (a `dup`, a plain thread) only take data away, which cannot strand
//! a parked reader; but only a reader holding `rlock` records drained-ness, since an
//! unserialised store could land after a later read's and claim a full queue drained.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gort_netpoll::{Deadline, Mode, PollError, Registration};

use crate::g::WaitReason;
use crate::netpoll::{g_of, poller_init, token};
use crate::park::{in_goroutine, park, ready};
use crate::sync::Mutex;
use crate::time::{nanotime, RawTimer};

/// "No deadline / no timeout" in the atomics below.
const NONE: u64 = 0;

/// Timeouts and deadlines of one direction.
#[derive(Default)]
struct Limits {
    /// std-style per-operation timeout in ns (`set_read_timeout`), `NONE` if unset.
    timeout: AtomicU64,
    /// Go-style absolute deadline in `nanotime` ns (`set_read_deadline`), `NONE` if unset.
    deadline: AtomicU64,
    /// Set whenever the descriptor's deadline state may be other than unset (rule 1), so an
    /// unlimited operation knows it must reset it.
    dirty: AtomicBool,
    /// The socket-owned timer of the current deadline (rule 2). The lock also serialises
    /// concurrent `set_deadline` calls.
    timer: parking_lot::Mutex<Option<RawTimer>>,
}

impl Limits {
    /// The effective deadline of an operation starting now, and the error kind it times out
    /// with: `WouldBlock` for a std timeout (what std reports on Linux), `TimedOut` for a
    /// deadline (Go's "i/o timeout").
    fn effective(&self) -> Option<(u64, io::ErrorKind)> {
        let t = self.timeout.load(Ordering::Relaxed);
        let d = self.deadline.load(Ordering::Relaxed);
        // The clock is read only for a timeout: most operations have no limit at all.
        let from_timeout = (t != NONE).then(|| nanotime().saturating_add(t));
        match (from_timeout, d != NONE) {
            (Some(a), true) if a < d => Some((a, io::ErrorKind::WouldBlock)),
            (_, true) => Some((d, io::ErrorKind::TimedOut)),
            (Some(a), false) => Some((a, io::ErrorKind::WouldBlock)),
            (None, false) => None,
        }
    }
}

/// A socket `S` (a std socket type, already non-blocking) plus its poller registration.
pub(crate) struct PollFd<S: AsRawFd> {
    /// Dropped before `io` (field order): the fd must leave the epoll set before it is closed,
    /// or the removal could hit a reused fd number.
    reg: Registration<'static>,
    io: S,
    rlock: Mutex<()>,
    wlock: Mutex<()>,
    /// The last goroutine read of a stream came back short (see "Drained streams"). Accessed
    /// only under `rlock`; Relaxed, since the lock orders it.
    drained: AtomicBool,
    read: Limits,
    write: Limits,
}

/// A stream read's size and how to count what it read, for `io_with`'s drained-ness (module
/// docs).
type StreamRead<R> = (usize, fn(&R) -> usize);

impl<S: AsRawFd> PollFd<S> {
    /// Takes over `io`: switches it to non-blocking mode and registers it with the poller.
    pub(crate) fn new(io: S) -> io::Result<PollFd<S>> {
        set_nonblocking(io.as_raw_fd())?;
        let reg = poller_init()?.register(io.as_raw_fd())?;
        Ok(PollFd {
            reg,
            io,
            rlock: Mutex::new(()),
            wlock: Mutex::new(()),
            drained: AtomicBool::new(false),
            read: Limits::default(),
            write: Limits::default(),
        })
    }

    /// The wrapped socket (non-blocking).
    pub(crate) fn get(&self) -> &S {
        &self.io
    }

    /// Gives the socket back, deregistered and in blocking mode.
    pub(crate) fn into_inner(self) -> io::Result<S> {
        let PollFd { reg, io, .. } = self;
        drop(reg);
        set_blocking(io.as_raw_fd())?;
        Ok(io)
    }

    fn limits(&self, mode: Mode) -> &Limits {
        match mode {
            Mode::Read => &self.read,
            Mode::Write => &self.write,
        }
    }

    /// std's `set_read_timeout`/`set_write_timeout`: `Some(ZERO)` is an error, as in std.
    pub(crate) fn set_timeout(&self, mode: Mode, d: Option<Duration>) -> io::Result<()> {
        let ns = match d {
            None => NONE,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"))
            }
            Some(d) => d.as_nanos().clamp(1, u64::MAX as u128) as u64,
        };
        self.limits(mode).timeout.store(ns, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn timeout(&self, mode: Mode) -> Option<Duration> {
        let ns = self.limits(mode).timeout.load(Ordering::Relaxed);
        (ns != NONE).then(|| Duration::from_nanos(ns))
    }

    /// Go's `SetReadDeadline`/`SetWriteDeadline`: operations (including one blocked right now)
    /// fail with `TimedOut` once `at` has passed; `None` clears it.
    pub(crate) fn set_deadline(&self, mode: Mode, at: Option<Instant>) {
        let ns = match at {
            None => NONE,
            Some(at) => {
                let now_i = Instant::now();
                let now = nanotime();
                if at <= now_i {
                    now.max(1)
                } else {
                    now.saturating_add((at - now_i).as_nanos().min(u64::MAX as u128) as u64)
                }
            }
        };
        let lim = self.limits(mode);
        let mut timer = lim.timer.lock();
        // SeqCst, both: the store must precede our descriptor update in the order `arm`'s
        // re-read observes (rule 3).
        lim.deadline.store(ns, Ordering::SeqCst);
        lim.dirty.store(true, Ordering::SeqCst);
        if ns == NONE {
            *timer = None;
            self.reg.set_deadline(mode, Deadline::Unset);
        } else if ns <= nanotime() {
            *timer = None;
            // A goroutine blocked right now must notice a deadline in the past at once.
            if let (_, Some(t)) = self.reg.set_deadline(mode, Deadline::Past) {
                // SAFETY: the runtime's poller handed `t` back just now, out of the slot it was
                // committed to.
                unsafe { ready_token(t) };
            }
        } else {
            let (key, _) = self.reg.set_deadline(mode, Deadline::Future);
            *timer = poller_init().ok().map(|pl| {
                RawTimer::new(
                    ns,
                    Box::new(move || {
                        if let Some(t) = pl.expire(key) {
                            // SAFETY: the runtime's poller handed `t` back just now, out of the
                            // slot it was committed to.
                            unsafe { ready_token(t) };
                        }
                    }),
                )
            });
        }
    }

    /// Runs `op` until it does not report `WouldBlock`, waiting for readiness in between.
    pub(crate) fn io<R>(&self, mode: Mode, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.io_with(mode, || self.limits(mode).effective(), None, op)
    }

    /// A read of a stream socket into buffers of `len` bytes in all (`read`, `read_vectored`;
    /// not `peek`, which leaves the data queued): [`io`](Self::io), but a read after a short
    /// one waits for readiness first (module docs, "Drained streams").
    pub(crate) fn read_stream(&self, len: usize, op: impl FnMut(&S) -> io::Result<usize>) -> io::Result<usize> {
        self.io_with(Mode::Read, || self.read.effective(), Some((len, |n: &usize| *n)), op)
    }

    /// [`io`](Self::io) with an explicit deadline (`nanotime` ns) and its timeout error kind.
    pub(crate) fn io_until<R>(
        &self,
        mode: Mode,
        limit: Option<(u64, io::ErrorKind)>,
        op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.io_with(mode, move || limit, None, op)
    }

    /// The operation's limit is computed by `limit` once this operation holds its direction's
    /// lock, not before: a deadline set while it queued for the lock (Go's "cancel the readers",
    /// a deadline in the past) must apply to it. Computed earlier, the stale limit would make
    /// `arm` reset the descriptor's past state and park with no deadline at all.
    ///
    /// `stream`: for a stream read, the bytes asked for and how to count the bytes read; it
    /// records and uses drained-ness (module docs).
    fn io_with<R>(
        &self,
        mode: Mode,
        limit: impl Fn() -> Option<(u64, io::ErrorKind)>,
        stream: Option<StreamRead<R>>,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        if !in_goroutine() {
            return self.io_thread(mode, limit(), op);
        }
        let _serial = match mode {
            Mode::Read => self.rlock.lock(),
            Mode::Write => self.wlock.lock(),
        };
        let (_timer, limit) = self.arm(mode, &limit);
        let kind = limit.map(|l| l.1).unwrap_or(io::ErrorKind::TimedOut);
        // A drained stream keeps the notifications that came since its last read (`wait`
        // consumes one, or parks), where `prepare` would discard them.
        let mut drained = stream.is_some() && self.drained.load(Ordering::Relaxed) && !self.reg.hung_up();
        if !drained {
            self.reg.prepare(mode).map_err(|e| self.map_err(mode, e, kind))?;
        }
        loop {
            if !drained {
                let r = op(&self.io);
                if let (Some((len, count)), Ok(v)) = (stream, &r) {
                    let n = count(v);
                    self.drained.store(n > 0 && n < len, Ordering::Relaxed);
                }
                match r {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return r,
                }
            }
            drained = false;
            self.reg
                .wait(mode, |c| {
                    // SAFETY: the commit publishes `g` only in the descriptor's slot, with its last
                    // access (the CAS); a token leaves a slot once, to its one readier. Refused, it
                    // publishes nothing and returns false; it neither parks nor panics.
                    unsafe { park(WaitReason::IoWait, move |g| c.commit(token(g))) }
                })
                .map_err(|e| self.map_err(mode, e, kind))?;
        }
    }

    /// Maps the poller's `TimedOut` to the right kind (rule 4).
    fn map_err(&self, mode: Mode, e: io::Error, kind: io::ErrorKind) -> io::Error {
        if PollError::of(&e) != Some(PollError::TimedOut) {
            return e;
        }
        let d = self.limits(mode).deadline.load(Ordering::SeqCst);
        if d != NONE && d <= nanotime() {
            timeout_error(io::ErrorKind::TimedOut)
        } else {
            timeout_error(kind)
        }
    }

    /// Sets the poller's deadline state for this operation and arms its timer (rules 1 and 3),
    /// with the limit `limit()` computes after the deadline was read (so a deadline that changes
    /// at any point is seen by the re-check). Returns the timer and the limit used.
    fn arm(
        &self,
        mode: Mode,
        limit: &impl Fn() -> Option<(u64, io::ErrorKind)>,
    ) -> (Option<RawTimer>, Option<(u64, io::ErrorKind)>) {
        let lim = self.limits(mode);
        loop {
            let seen = lim.deadline.load(Ordering::SeqCst);
            let l = limit();
            let timer = self.arm_once(mode, l);
            // SeqCst: pairs with set_deadline's stores; if a new deadline slipped in between our
            // read and our descriptor update, redo with it (rule 3).
            if lim.deadline.load(Ordering::SeqCst) == seen {
                return (timer, l);
            }
        }
    }

    fn arm_once(&self, mode: Mode, limit: Option<(u64, io::ErrorKind)>) -> Option<RawTimer> {
        let lim = self.limits(mode);
        let when = match limit {
            None => {
                // The fast path: nothing set since the last reset, skip the descriptor lock. The
                // load first spares the common case a locked swap; a load that sees false orders
                // like a swap that reads false (rule 3's re-read covers a racing set_deadline).
                if lim.dirty.load(Ordering::SeqCst) && lim.dirty.swap(false, Ordering::SeqCst) {
                    self.reg.set_deadline(mode, Deadline::Unset);
                }
                return None;
            }
            Some((when, _)) => when,
        };
        lim.dirty.store(true, Ordering::SeqCst);
        if when <= nanotime() {
            self.reg.set_deadline(mode, Deadline::Past);
            return None;
        }
        let (key, _) = self.reg.set_deadline(mode, Deadline::Future);
        let pl = poller_init().ok()?;
        Some(RawTimer::new(
            when,
            Box::new(move || {
                if let Some(t) = pl.expire(key) {
                    // SAFETY: the runtime's poller handed `t` back just now, out of the slot it
                    // was committed to.
                    unsafe { ready_token(t) };
                }
            }),
        ))
    }

    /// The plain-thread path: block the thread in poll(2).
    fn io_thread<R>(
        &self,
        mode: Mode,
        limit: Option<(u64, io::ErrorKind)>,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            self.reg.check(mode).map_err(|e| self.map_err(mode, e, io::ErrorKind::TimedOut))?;
            match op(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
            let ms = match limit {
                None => -1,
                Some((when, kind)) => {
                    let now = nanotime();
                    if now >= when {
                        return Err(timeout_error(kind));
                    }
                    ((when - now).div_ceil(1_000_000)).min(i32::MAX as u64) as i32
                }
            };
            let events = match mode {
                Mode::Read => libc::POLLIN | libc::POLLRDHUP,
                Mode::Write => libc::POLLOUT,
            };
            let mut pfd = libc::pollfd { fd: self.io.as_raw_fd(), events, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }

    /// Wakes every goroutine blocked on this socket with "use of closed network connection"
    /// (Go's `pollUnblock`); later operations fail the same way.
    pub(crate) fn close_waiters(&self) {
        for t in self.reg.close() {
            // SAFETY: the runtime's poller handed `t` back just now, out of the slot it was
            // committed to.
            unsafe { ready_token(t) };
        }
    }
}

impl<S: AsRawFd> AsRawFd for PollFd<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

/// Readies the G a poller token names.
///
/// # Safety
/// `t` must have been handed back by the runtime's poller (`poll`, `expire`, `close`,
/// `set_deadline`), which takes a token out of its slot exactly once, and not be readied
/// otherwise.
unsafe fn ready_token(t: gort_netpoll::Token) {
    // SAFETY: every token in the runtime's poller was committed by `PollFd::io_until`'s park for
    // its own parked G (the poller is private to the runtime), and the caller holds the one copy
    // handed back for that park.
    unsafe { ready(g_of(t)) };
}

fn timeout_error(kind: io::ErrorKind) -> io::Error {
    match kind {
        io::ErrorKind::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
        _ => io::Error::new(io::ErrorKind::TimedOut, PollError::TimedOut),
    }
}

/// `send(2)` with `MSG_NOSIGNAL`: a closed peer is `EPIPE` (`BrokenPipe`), never SIGPIPE. For
/// socket types whose std `write` uses `write(2)` (Unix streams).
pub(crate) fn send_nosignal(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `sendmsg(2)` of `bufs` with `MSG_NOSIGNAL` (vectored [`send_nosignal`]).
pub(crate) fn sendv_nosignal(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::c_int::MAX as usize) as _;
    // SAFETY: `msg` points at `bufs`, which stays borrowed (and valid for reads) for the call;
    // the kernel only reads through it.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The timeout and deadline methods every socket type shares, delegating to its `fd: PollFd`.
macro_rules! limit_methods {
    () => {
        /// Per-read timeout, as std's (`None`: wait forever; `Some(ZERO)` is an error). An
        /// expired one is `WouldBlock`, as std reports on Linux.
        pub fn set_read_timeout(&self, d: Option<std::time::Duration>) -> std::io::Result<()> {
            self.fd.set_timeout(gort_netpoll::Mode::Read, d)
        }

        /// Per-write timeout, as std's.
        pub fn set_write_timeout(&self, d: Option<std::time::Duration>) -> std::io::Result<()> {
            self.fd.set_timeout(gort_netpoll::Mode::Write, d)
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.fd.timeout(gort_netpoll::Mode::Read))
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.fd.timeout(gort_netpoll::Mode::Write))
        }

        /// Go's `SetReadDeadline`: reads fail with `TimedOut` ("i/o timeout") from `at` on,
        /// including one blocked right now (on a goroutine). `None` clears it.
        pub fn set_read_deadline(&self, at: Option<std::time::Instant>) {
            self.fd.set_deadline(gort_netpoll::Mode::Read, at)
        }

        /// Go's `SetWriteDeadline`.
        pub fn set_write_deadline(&self, at: Option<std::time::Instant>) {
            self.fd.set_deadline(gort_netpoll::Mode::Write, at)
        }

        /// Go's `SetDeadline`: both directions.
        pub fn set_deadline(&self, at: Option<std::time::Instant>) {
            self.set_read_deadline(at);
            self.set_write_deadline(at);
        }
    };
}
pub(crate) use limit_methods;

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    set_flag(fd, true)
}

fn set_blocking(fd: RawFd) -> io::Result<()> {
    set_flag(fd, false)
}

fn set_flag(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own; bad fds are reported as errors.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    // SAFETY: as above.
    if new != flags && unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
