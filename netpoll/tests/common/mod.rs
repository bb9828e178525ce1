//! A stand-in runtime for the tests: waiters are plain threads, a token is a pointer to the
//! thread's [`Parker`], and "readying" a token unparks the thread. It checks the protocol's
//! promise: every committed token comes back exactly once.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use gort_netpoll::{Commit, Mode, Poller, Registration, Token};

/// Generous bound for anything that should happen "soon" on a noisy 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// One waiting thread.
pub struct Parker {
    thread: Thread,
    /// A token is published and not yet readied.
    parked: AtomicBool,
    /// Set by `ready`, consumed by `park_on`.
    woken: AtomicBool,
    /// Successful commits.
    pub commits: AtomicUsize,
    /// Tokens readied.
    pub readies: AtomicUsize,
}

impl Parker {
    /// A parker for the calling thread.
    pub fn current() -> Arc<Parker> {
        Arc::new(Parker {
            thread: thread::current(),
            parked: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            commits: AtomicUsize::new(0),
            readies: AtomicUsize::new(0),
        })
    }

    pub fn token(self: &Arc<Self>) -> Token {
        Token::new(Arc::as_ptr(self) as usize)
    }

    /// The park callback: commits this thread's token and sleeps until it is readied.
    pub fn park(self: &Arc<Self>, commit: Commit<'_>) {
        assert!(!self.parked.swap(true, Ordering::Relaxed), "parked twice");
        if !commit.commit(self.token()) {
            self.parked.store(false, Ordering::Relaxed);
            return;
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        // Acquire: pairs with the Release store in `ready`.
        while !self.woken.swap(false, Ordering::Acquire) {
            thread::park_timeout(Duration::from_millis(50));
            assert!(start.elapsed() < PATIENCE, "lost wakeup: parked for {:?}", start.elapsed());
        }
    }
}

/// Readies a token returned by the poller: panics if it was not parked (a second wakeup).
pub fn ready(t: Token) {
    // SAFETY: every token in these tests is `Parker::token` of a parker whose thread is parked
    // in `Parker::park` until `woken` is set below, and which keeps its `Arc` alive until then.
    let p = unsafe { &*(t.get() as *const Parker) };
    let th = p.thread.clone();
    assert!(p.parked.swap(false, Ordering::Relaxed), "token readied twice");
    p.readies.fetch_add(1, Ordering::Relaxed);
    // Release: pairs with the Acquire swap in `Parker::park`. `p` may be gone after this.
    p.woken.store(true, Ordering::Release);
    th.unpark();
}

pub fn ready_all(ts: impl IntoIterator<Item = Token>) {
    ts.into_iter().for_each(ready);
}

/// Runs the poll loop until `stop`, readying every token: the scheduler's part.
pub fn drive(poller: &Poller, stop: &AtomicBool) {
    let mut toks = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        poller.poll(Some(Duration::from_millis(5)), &mut toks).unwrap();
        ready_all(toks.drain(..));
    }
}

/// Waits (bounded) until `cond` holds.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A connected non-blocking Unix stream pair.
pub fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// A blocking read in the style of the runtime: try, and wait on `EAGAIN`.
pub fn read_blocking<R: Read>(reg: &Registration<'_>, mut r: R, buf: &mut [u8], me: &Arc<Parker>) -> io::Result<usize> {
    reg.prepare(Mode::Read)?;
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => reg.wait(Mode::Read, |c| me.park(c))?,
            r => return r,
        }
    }
}

/// A blocking write of the whole buffer in the style of the runtime.
pub fn write_blocking<W: Write>(reg: &Registration<'_>, mut w: W, mut buf: &[u8], me: &Arc<Parker>) -> io::Result<()> {
    reg.prepare(Mode::Write)?;
    while !buf.is_empty() {
        match w.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => reg.wait(Mode::Write, |c| me.park(c))?,
            Err(e) => return Err(e),
            Ok(n) => buf = &buf[n..],
        }
    }
    Ok(())
}
