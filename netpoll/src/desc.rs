//! Poll descriptors (Go's `pollDesc`): per-fd reader/writer slots, deadlines and close.
//!
//! # The slots
//!
//! Each descriptor has two slots, `rg` (reader) and `wg` (writer), each an `AtomicUsize` that
//! works as a binary semaphore with a parking spot. A slot holds one of:
//!
//! | value   | meaning                                                                      |
//! |---------|------------------------------------------------------------------------------|
//! | `EMPTY` | nothing pending, nobody waiting                                              |
//! | `READY` | an I/O notification arrived that nobody has consumed yet                     |
//! | `WAIT`  | a waiter is between "I will park" and "I am parked" (its commit not yet run) |
//! | token   | the waiter's [`Token`] (> `WAIT`): it is parked and someone must ready it    |
//!
//! Transitions (W = the one waiter of this mode, E = an epoll event, U = close or a deadline):
//!
//! ```text
//!   W: READY -> EMPTY            consume a notification, do not park        (block)
//!   W: EMPTY -> WAIT             announce the park                          (block)
//!   W: WAIT  -> token            commit: the waiter is now parked           (Commit::commit)
//!   W: any   -> EMPTY            after waking or refusing to park; READY seen = "ready" (finish)
//!   E: EMPTY | WAIT -> READY     notify; nobody to wake
//!   E: token -> READY            notify; E owns the token and returns it to be readied
//!   U: WAIT  -> EMPTY            the waiter's commit will fail, it re-checks and sees the error
//!   U: token -> EMPTY            U owns the token and returns it to be readied
//! ```
//!
//! # Invariants
//!
//! 1. **One waiter per mode.** At most one thread/goroutine runs the waiter side (`prepare`,
//!    `wait`) of a given mode of a given descriptor at a time. The caller serialises (Go's
//!    `fdMutex`); a violation is detected as "two waiters" and panics.
//! 2. **A token leaves a slot exactly once.** Only the waiter stores a token (CAS from `WAIT`),
//!    and every path that removes a token does so with a successful CAS from that exact value,
//!    so exactly one party (event, deadline or close) gets it and must ready it. Whoever takes
//!    it returns it to the runtime; netpoll never dereferences it.
//! 3. **No lost wakeup from events.** A waiter parks only by CAS `WAIT -> token`. If an event
//!    arrived after the waiter's `EMPTY -> WAIT`, the slot is `READY` and the commit fails, so
//!    the waiter does not park; if it arrives after the commit, it finds the token and takes it.
//!    Edge triggering is safe because the waiter always retries the syscall after `READY`, and
//!    the slot is reset (`prepare`) *before* the syscall that saw `EAGAIN`, so an edge for data
//!    that arrived after that syscall lands after the reset.
//! 4. **No lost wakeup from close/deadline (Dekker).** U stores the error bit in `info` and
//!    then reads the slot; the waiter stores `WAIT` into the slot and then reads `info`. All
//!    four accesses are `SeqCst`, so at least one side sees the other: either the waiter sees the
//!    error and does not park, or U sees `WAIT`/token and clears it (the commit then fails, or
//!    the parked waiter is handed back). Under `--cfg gort_loom` each half also has a `SeqCst`
//!    fence between its store and its load (`dekker_fence`), because loom models `SeqCst`
//!    accesses as `AcqRel` only; the models in `desc/loom_models.rs` check this invariant and
//!    invariants 2 and 3 over every interleaving within their bound.
//! 5. **Error bits change only under `lock`**, together with the deadline sequence numbers, so
//!    a deadline timer that fires late (after the deadline was changed, the descriptor closed,
//!    or the descriptor reused) is recognised by its sequence number and ignored.
//! 6. **Stale events are dropped or harmless.** The epoll user data carries the descriptor
//!    index and `fdseq`; `fdseq` is bumped when the registration is dropped, so an event for a
//!    previous registration does not match. The check and the update are not one atomic step:
//!    an event that passed the check just before a drop+reuse can still mark the *new*
//!    registration `READY` or wake its waiter. That is a spurious readiness, which every waiter
//!    tolerates (it retries the syscall and waits again); it can never lose or duplicate a
//!    token (invariant 2).
//! 7. **A drained reader may wait before its syscall.** Only the waiter moves its slot from
//!    `READY` to `EMPTY` (`prepare`, `block`, `finish`), and each time an I/O syscall follows.
//!    So a reader that knows its last syscall emptied the kernel's queue (a short stream read)
//!    may skip `prepare` and the syscall and go straight to `wait`: data that arrived since
//!    raised an edge whose event lands after that reset (invariant 3), as `READY` or by taking
//!    the token. A hang-up or error is not data a short read consumes, though, and its event may
//!    have been discarded by the reset before the read; so the poller records it in the sticky
//!    `hup` flag *before* readying the reader, and a drained reader checks
//!    [`hung_up`](Registration::hung_up) first. The store, the slot accesses and the load are
//!    `SeqCst`: if the event's `ready` saw the slot before the reset, the reader's later load
//!    of `hup` sees the flag; if after, the slot stays `READY` for the reader.

use std::io;
#[cfg(not(gort_loom))]
use std::os::fd::RawFd;

#[cfg(not(gort_loom))]
use crate::epoll::Poller;
use crate::loom::{dekker_fence, AtomicU32, AtomicUsize, Mutex, MutexGuard, Ordering};
use crate::{Mode, PollError, Token};

pub(crate) const EMPTY: usize = 0;
pub(crate) const READY: usize = 1;
pub(crate) const WAIT: usize = 2;

/// `info` bit: the registration was closed (evicted) or dropped.
const CLOSING: u32 = 1;
/// `info` bit: the read deadline has passed.
const READ_EXPIRED: u32 = 2;
/// `info` bit: the write deadline has passed.
const WRITE_EXPIRED: u32 = 4;

fn expired_bit(mode: Mode) -> u32 {
    match mode {
        Mode::Read => READ_EXPIRED,
        Mode::Write => WRITE_EXPIRED,
    }
}

/// Token stored in a slot value, if the value is one (invariant 2).
fn token_of(v: usize) -> Option<Token> {
    if v > WAIT {
        Some(Token::from_slot(v))
    } else {
        None
    }
}

/// One poll descriptor. Lives in the [`Pool`](crate::pool::Pool) for the life of the poller and
/// is recycled between registrations.
pub(crate) struct PollDesc {
    /// Registration generation (Go's `fdseq`): part of the epoll user data, bumped when a
    /// registration ends, so events of the previous registration are dropped (invariant 6).
    pub(crate) fdseq: AtomicU32,
    /// Reader slot (Go's `rg`).
    rg: AtomicUsize,
    /// Writer slot (Go's `wg`).
    wg: AtomicUsize,
    /// `CLOSING | READ_EXPIRED | WRITE_EXPIRED`: the lock-free summary that `check` reads
    /// (Go's `atomicInfo`). Written only while holding `lock` (invariant 5).
    info: AtomicU32,
    /// Serialises close, deadline changes and deadline expiry.
    lock: Mutex<Seqs>,
    /// 1 once an event reported a hang-up or an error (invariant 7); reset by `open`.
    hup: AtomicU32,
}

/// Fields protected by `PollDesc::lock`.
struct Seqs {
    /// Mirrors `info & CLOSING`, read under the lock.
    closing: bool,
    /// Read deadline generation (Go's `rseq`). Never reset, so a key from an earlier
    /// registration of this descriptor can never match again.
    rseq: u64,
    /// Write deadline generation (Go's `wseq`).
    wseq: u64,
}

impl Seqs {
    fn seq(&mut self, mode: Mode) -> &mut u64 {
        match mode {
            Mode::Read => &mut self.rseq,
            Mode::Write => &mut self.wseq,
        }
    }
}

impl PollDesc {
    pub(crate) fn new() -> PollDesc {
        PollDesc {
            fdseq: AtomicU32::new(0),
            rg: AtomicUsize::new(EMPTY),
            wg: AtomicUsize::new(EMPTY),
            info: AtomicU32::new(CLOSING),
            lock: Mutex::new(Seqs { closing: true, rseq: 0, wseq: 0 }),
            hup: AtomicU32::new(0),
        }
    }

    fn slot(&self, mode: Mode) -> &AtomicUsize {
        match mode {
            Mode::Read => &self.rg,
            Mode::Write => &self.wg,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Seqs> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a free descriptor ready for a new registration. Called with the index freshly
    /// taken from the pool, before the fd is added to epoll.
    pub(crate) fn open(&self) {
        let mut s = self.lock();
        let (r, w) = (self.rg.load(Ordering::Relaxed), self.wg.load(Ordering::Relaxed));
        assert!(token_of(r).is_none() && token_of(w).is_none(), "netpoll: waiter parked on a free descriptor");
        s.closing = false;
        s.rseq += 1;
        s.wseq += 1;
        // Relaxed: nobody waits on this descriptor yet; the registration is handed to its user
        // by ordinary means (a return value), which orders these stores before any use. A stale
        // event racing with this is harmless (invariant 6).
        self.rg.store(EMPTY, Ordering::Relaxed);
        self.wg.store(EMPTY, Ordering::Relaxed);
        self.info.store(0, Ordering::Relaxed);
        self.hup.store(0, Ordering::Relaxed);
    }

    /// An event reported a hang-up or an error: sticky for this registration (invariant 7).
    /// Call before `ready(Mode::Read)` for the same event.
    pub(crate) fn note_hup(&self) {
        // SeqCst: invariant 7, with the slot load of the `ready` that follows.
        self.hup.store(1, Ordering::SeqCst);
    }

    /// Whether an event reported a hang-up or an error (invariant 7).
    pub(crate) fn hung_up(&self) -> bool {
        // SeqCst: invariant 7, after the reader's SeqCst reset of its slot.
        self.hup.load(Ordering::SeqCst) != 0
    }

    /// Go's `netpollcheckerr`: the error a waiter of `mode` must report now, if any.
    pub(crate) fn check(&self, mode: Mode) -> Result<(), PollError> {
        dekker_fence();
        // SeqCst: the waiter's half of the Dekker pair of invariant 4 (after the SeqCst CAS to
        // WAIT in `block`); pairs with the SeqCst `info` RMWs in `close`/`set_deadline`/`expire`.
        let info = self.info.load(Ordering::SeqCst);
        if info & CLOSING != 0 {
            Err(PollError::Closed)
        } else if info & expired_bit(mode) != 0 {
            Err(PollError::TimedOut)
        } else {
            Ok(())
        }
    }

    /// Go's `netpollunblock(ioready = true)`: an epoll event says `mode` is ready.
    /// Returns the parked waiter's token, which the caller must ready.
    pub(crate) fn ready(&self, mode: Mode) -> Option<Token> {
        let slot = self.slot(mode);
        // SeqCst: invariant 7 (seeing READY here, an event does not write the slot, and this
        // load must then precede the reader's reset in the single order).
        let mut old = slot.load(Ordering::SeqCst);
        loop {
            if old == READY {
                return None;
            }
            // AcqRel on success: Acquire pairs with the Release of `Commit::commit`, so whoever
            // readies the token sees everything the waiter did before parking; Release pairs with
            // the Acquire of the waiter's READY consumption in `block`/`finish`. SeqCst on
            // failure: the reload may see READY and return, as the first load (invariant 7).
            match slot.compare_exchange_weak(old, READY, Ordering::AcqRel, Ordering::SeqCst) {
                Ok(_) => return token_of(old),
                Err(v) => old = v,
            }
        }
    }

    /// Go's `netpollunblock(ioready = false)`: a close or an expired deadline. Clears a
    /// pending or parked waiter of `mode` and returns the token to ready, if any.
    fn unblock(&self, mode: Mode) -> Option<Token> {
        let slot = self.slot(mode);
        dekker_fence();
        loop {
            // SeqCst: U's half of the Dekker pair of invariant 4, after the SeqCst `info` RMW;
            // pairs with the SeqCst CAS to WAIT in `block`.
            let old = slot.load(Ordering::SeqCst);
            if old == READY || old == EMPTY {
                // Nobody waiting (a READY stays: the next wait consumes it, then sees the error).
                return None;
            }
            // SeqCst: as above; also Acquire for the token, pairing with `Commit::commit`.
            if slot.compare_exchange(old, EMPTY, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                return token_of(old);
            }
        }
    }

    /// Go's `poll_runtime_pollReset`: before an I/O attempt in `mode`, fails if closed or
    /// timed out, and forgets an unconsumed notification (the attempt itself will see it).
    pub(crate) fn prepare(&self, mode: Mode) -> Result<(), PollError> {
        self.check(mode)?;
        // SeqCst (a locked xchg: a full barrier): the reset must be ordered before the I/O
        // syscall that follows (invariant 3); pairs with the READY CAS of `ready`, which then
        // lands after it for any data the syscall did not see.
        let old = self.slot(mode).swap(EMPTY, Ordering::SeqCst);
        assert!(old <= READY, "netpoll: prepare while another waiter of the same mode is parked");
        Ok(())
    }

    /// First half of Go's `netpollblock`: consume `READY` (returns true) or announce a park by
    /// moving the slot to `WAIT` (returns false).
    fn block(&self, mode: Mode) -> bool {
        let slot = self.slot(mode);
        loop {
            // Acquire: pairs with the Release of `ready`. SeqCst: a reset before a syscall
            // (invariant 7).
            if slot.compare_exchange(READY, EMPTY, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                return true;
            }
            // SeqCst: the waiter's store half of the Dekker pair (invariant 4), followed by the
            // SeqCst load in `check`.
            if slot.compare_exchange(EMPTY, WAIT, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                return false;
            }
            let v = slot.load(Ordering::Relaxed);
            assert!(v == READY || v == EMPTY, "netpoll: two waiters on one mode of one descriptor");
        }
    }

    /// Last step of Go's `netpollblock`: the waiter is running again (woken, or its commit was
    /// refused, or it never parked). Empties the slot; true if a notification was consumed.
    fn finish(&self, mode: Mode) -> bool {
        // Acquire: pairs with the Release of `ready` (a READY consumed here). SeqCst: a reset
        // before a syscall (invariant 7).
        let old = self.slot(mode).swap(EMPTY, Ordering::SeqCst);
        assert!(old <= WAIT, "netpoll: corrupted slot (a token left behind after wakeup)");
        old == READY
    }

    /// Go's `poll_runtime_pollWait`, with the park supplied by the caller.
    pub(crate) fn wait(&self, mode: Mode, waiters: &AtomicUsize, park: &mut dyn FnMut(Commit<'_>)) -> io::Result<()> {
        self.check(mode)?;
        loop {
            let ready = self.block(mode) || {
                if self.check(mode).is_ok() {
                    park(Commit { slot: self.slot(mode), waiters });
                }
                self.finish(mode)
            };
            if ready {
                return Ok(());
            }
            // Woken without a notification: closed or timed out, or a deadline fired and was
            // reset before we ran (Go: "pretend it has not happened and retry").
            self.check(mode)?;
        }
    }

    /// Go's `poll_runtime_pollUnblock`: marks the descriptor closing, invalidates deadline
    /// timers and hands back both waiters. Idempotent.
    pub(crate) fn close(&self) -> Wakeups {
        let mut s = self.lock();
        if s.closing {
            return Wakeups::default();
        }
        s.closing = true;
        s.rseq += 1;
        s.wseq += 1;
        // SeqCst: U's store half of the Dekker pair (invariant 4); pairs with the SeqCst load in
        // `check`, followed by the SeqCst slot accesses of `unblock`.
        self.info.fetch_or(CLOSING, Ordering::SeqCst);
        Wakeups { read: self.unblock(Mode::Read), write: self.unblock(Mode::Write) }
    }

    fn set_deadline(&self, mode: Mode, deadline: Deadline, index: u32) -> (DeadlineKey, Option<Token>) {
        let mut s = self.lock();
        let seq = s.seq(mode);
        *seq += 1;
        let key = DeadlineKey { index, mode, seq: *seq };
        if s.closing {
            // Go ignores deadlines on a closing descriptor; the key can never match (`expire`
            // checks `closing` first).
            return (key, None);
        }
        let bit = expired_bit(mode);
        match deadline {
            Deadline::Unset | Deadline::Future => {
                // SeqCst: keeps every `info` RMW in the one total order of invariant 4 (a cleared
                // bit only lets a waiter park; no wakeup depends on it).
                self.info.fetch_and(!bit, Ordering::SeqCst);
                (key, None)
            }
            Deadline::Past => {
                // SeqCst: U's store half of the Dekker pair (invariant 4), then `unblock`.
                self.info.fetch_or(bit, Ordering::SeqCst);
                (key, self.unblock(mode))
            }
        }
    }

    /// A deadline timer fired (Go's `netpolldeadlineimpl`).
    pub(crate) fn expire(&self, key: DeadlineKey) -> Option<Token> {
        let mut s = self.lock();
        if s.closing || *s.seq(key.mode) != key.seq {
            return None; // stale: reset, closed or reused since the timer was set
        }
        // SeqCst: U's store half of the Dekker pair (invariant 4), then `unblock`.
        self.info.fetch_or(expired_bit(key.mode), Ordering::SeqCst);
        self.unblock(key.mode)
    }
}

/// The capability to park, given to the `park` callback of [`Registration::wait`].
///
/// It is the `WAIT -> token` step (Go's `netpollblockcommit`): call [`commit`](Commit::commit)
/// from the runtime's commit callback, i.e. *after* the waiter is fully parked (its context
/// saved), because from the moment it succeeds another thread may take the token and ready it.
#[derive(Debug)]
pub struct Commit<'a> {
    slot: &'a AtomicUsize,
    waiters: &'a AtomicUsize,
}

impl Commit<'_> {
    /// Publishes `token` as the parked waiter. Returns false when a notification, a close or an
    /// expired deadline arrived since `wait` announced the park: the waiter must not stay parked
    /// (the runtime resumes it at once). Returns true when the waiter is now parked: exactly one
    /// later [`Poller::poll`], [`Registration::close`], [`Registration::set_deadline`] or
    /// [`Poller::expire`] call returns `token`, and the runtime must then ready the waiter.
    pub fn commit(self, token: Token) -> bool {
        // Counted before the CAS so the count never dips below the number of parked waiters
        // (the taker decrements after its CAS, which the CAS below happens-before). Relaxed: a
        // statistic read by the scheduler's heuristics and deadlock check.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        // Release: pairs with the Acquire of the CAS that takes the token (`ready`, `unblock`).
        if self.slot.compare_exchange(WAIT, token.slot_value(), Ordering::Release, Ordering::Relaxed).is_ok() {
            true
        } else {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
}

/// What a deadline now is, as far as waits are concerned (the runtime owns the clock and the
/// timers; netpoll only records whether waits must fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// No deadline: waits never time out.
    Unset,
    /// A deadline in the future: waits proceed; the runtime arms a timer that calls
    /// [`Poller::expire`] with the returned key.
    Future,
    /// A deadline now or in the past: waits fail with [`PollError::TimedOut`], and a parked
    /// waiter is handed back to be readied.
    Past,
}

/// Identifies one deadline setting of one mode of one registration, for [`Poller::expire`].
/// Any later deadline change, a close, or the end of the registration makes it stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeadlineKey {
    index: u32,
    mode: Mode,
    seq: u64,
}

impl DeadlineKey {
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The mode this deadline applies to.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// Waiters handed back by [`Registration::close`]: each must be readied by the runtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wakeups {
    /// The parked reader, if any.
    pub read: Option<Token>,
    /// The parked writer, if any.
    pub write: Option<Token>,
}

impl Wakeups {
    /// True when nobody was parked.
    pub fn is_empty(&self) -> bool {
        self.read.is_none() && self.write.is_none()
    }
}

impl IntoIterator for Wakeups {
    type Item = Token;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Token>, 2>>;

    fn into_iter(self) -> Self::IntoIter {
        [self.read, self.write].into_iter().flatten()
    }
}

/// One fd registered with a [`Poller`] (the handle to its poll descriptor).
///
/// It does not own the fd. Drop it *before* closing the fd: dropping removes the fd from the
/// epoll set, and a closed fd number may already belong to someone else. The borrow of the
/// poller keeps the descriptor's memory valid; Rust's borrow rules guarantee that nobody is
/// inside [`wait`](Registration::wait) when it is dropped.
#[cfg(not(gort_loom))]
#[derive(Debug)]
pub struct Registration<'p> {
    poller: &'p Poller,
    desc: &'p PollDesc,
    index: u32,
    fd: RawFd,
}

impl std::fmt::Debug for PollDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollDesc")
            .field("fdseq", &self.fdseq.load(Ordering::Relaxed))
            .field("rg", &self.rg.load(Ordering::Relaxed))
            .field("wg", &self.wg.load(Ordering::Relaxed))
            .field("info", &self.info.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(not(gort_loom))]
impl<'p> Registration<'p> {
    pub(crate) fn new(poller: &'p Poller, desc: &'p PollDesc, index: u32, fd: RawFd) -> Self {
        Registration { poller, desc, index, fd }
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Fails with the error a waiter of `mode` would get now (Go's `netpollcheckerr`): closed,
    /// then timed out. Cheap (one atomic load): check before every I/O attempt.
    pub fn check(&self, mode: Mode) -> io::Result<()> {
        self.desc.check(mode).map_err(io::Error::from)
    }

    /// Whether an event on this registration reported a hang-up (`EPOLLRDHUP`, `EPOLLHUP`), an
    /// error or urgent data; once true, it stays true. A reader whose last syscall emptied the
    /// kernel's queue may call [`wait`](Registration::wait) before its next syscall, skipping
    /// `prepare`, only while this is false: such an event may have been consumed before that
    /// syscall, which did not report its EOF or error (invariant 7 of `desc.rs`).
    pub fn hung_up(&self) -> bool {
        self.desc.hung_up()
    }

    /// Call before starting an I/O operation in `mode` (Go's `pollReset`): fails if closed or
    /// timed out, and discards a stale readiness notification. Only the single waiter of
    /// `mode` may call it (invariant 1).
    pub fn prepare(&self, mode: Mode) -> io::Result<()> {
        self.desc.prepare(mode).map_err(io::Error::from)
    }

    /// Waits until `mode` is ready, closed or timed out (Go's `pollWait`), after an I/O attempt
    /// failed with `EAGAIN`. Returns `Ok` when the I/O should be retried (readiness may be
    /// spurious: retry and wait again on `EAGAIN`); errors with [`PollError::Closed`] or
    /// [`PollError::TimedOut`] wrapped in an `io::Error`.
    ///
    /// `park` is called when the waiter must block, possibly more than once. It must either
    /// return without calling [`Commit::commit`] or with `commit` having returned false, or call
    /// `commit` once the waiter is fully parked and, if it returned true, return only after the
    /// waiter was readied by whoever got its token. Only the single waiter of `mode` may call
    /// this (invariant 1).
    pub fn wait(&self, mode: Mode, mut park: impl FnMut(Commit<'_>)) -> io::Result<()> {
        self.desc.wait(mode, &self.poller.waiters, &mut park)
    }

    /// Closes the registration for waiting (Go's `pollUnblock`, on `close` of a socket): every
    /// later and current wait fails with [`PollError::Closed`], deadline keys go stale, and the
    /// parked waiters are returned for the runtime to ready. Idempotent. The fd stays in the
    /// epoll set until the registration is dropped.
    pub fn close(&self) -> Wakeups {
        let w = self.desc.close();
        self.poller.took(w.read);
        self.poller.took(w.write);
        w
    }

    /// Records a new deadline state for `mode` (Go's `pollSetDeadline`, minus the clock).
    ///
    /// Returns the key for the runtime's timer (meaningful for [`Deadline::Future`]: pass it
    /// to [`Poller::expire`] when the deadline passes; every older key is now stale, so the
    /// runtime may leave old timers to fire harmlessly), and, for [`Deadline::Past`], the
    /// parked waiter to ready. Ignored on a closed registration.
    pub fn set_deadline(&self, mode: Mode, deadline: Deadline) -> (DeadlineKey, Option<Token>) {
        let (key, tok) = self.desc.set_deadline(mode, deadline, self.index);
        (key, self.poller.took(tok))
    }

    #[cfg(test)]
    pub(crate) fn epoll_data(&self) -> u64 {
        crate::epoll::event_data(self.index, self.desc.fdseq.load(Ordering::Relaxed))
    }
}

#[cfg(not(gort_loom))]
impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let w = self.desc.close();
        // Borrowing rules: no `wait` (hence no `Commit`) can outlive `&self`, so nobody is parked.
        debug_assert!(w.is_empty(), "netpoll: registration dropped with a parked waiter");
        self.poller.took(w.read);
        self.poller.took(w.write);
        self.poller.deregister(self.fd, self.desc, self.index);
    }
}

// The loom models of the slot protocol (run under `--cfg gort_loom`; see `loom.rs`).
#[cfg(all(test, gort_loom))]
mod loom_models;
