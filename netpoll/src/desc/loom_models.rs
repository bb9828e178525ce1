//! loom models of the slot protocol: the real `PollDesc` code, a waiter on the model's main
//! thread, and events, closes and deadlines on other threads, explored over every interleaving
//! within a preemption bound. What they check, against the invariants in `desc.rs`:
//!
//! - the waiter always returns (a lost wakeup is a thread parked forever: loom reports the
//!   deadlock), with the result the racing party dictates (invariants 3 and 4);
//! - every committed park's token comes out of the slot exactly once, to whoever readies it
//!   (invariant 2), and whoever takes it sees what the waiter wrote before parking;
//! - the poller's waiter count ends at zero.
//!
//! What they cannot see: the epoll side (`fdseq` and stale events, invariant 6) and the kernel's
//! own ordering of readiness against the syscall (modelled as a `Relaxed` flag, which is weaker
//! than the kernel and so asks more of the slot). `SeqCst` accesses are modelled as `AcqRel`
//! plus the `dekker_fence` at each half of the Dekker pair (see `crate::loom`), so the models
//! check the pair as the fences make it, and cannot tell whether the accesses themselves stay
//! `SeqCst`: weakening one of the four to `AcqRel` would still pass. Nor do they see
//! lifetimes: a `Commit` used after the waiter ran on is a borrow-checker matter.

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread::{self, Thread};

use super::{Deadline, PollDesc};
use crate::loom::model;
use crate::{Commit, Mode, PollError, Token};

const TOKEN: usize = 0x1000;

/// One registration, its one reader, and the runtime's bookkeeping around them.
struct World {
    desc: PollDesc,
    /// `Poller::waiters`.
    waiters: AtomicUsize,
    /// Parks the waiter committed.
    committed: AtomicUsize,
    /// Tokens handed back and readied.
    readied: AtomicUsize,
    /// Written (`Relaxed`) by the waiter before each commit; whoever takes the token must see it.
    before_park: AtomicUsize,
    /// The waiter's thread.
    waiter: Thread,
}

impl World {
    /// A fresh registration whose waiter is the calling thread.
    fn new() -> Arc<World> {
        let desc = PollDesc::new();
        desc.open();
        Arc::new(World {
            desc,
            waiters: AtomicUsize::new(0),
            committed: AtomicUsize::new(0),
            readied: AtomicUsize::new(0),
            before_park: AtomicUsize::new(0),
            waiter: thread::current(),
        })
    }

    /// What the runtime does with a token netpoll hands back: `Poller::took`, then `ready`.
    fn ready(&self, t: Option<Token>) {
        let Some(t) = t else { return };
        assert_eq!(t.get(), TOKEN);
        assert_eq!(self.before_park.load(Ordering::Relaxed), 1, "the taker must see the waiter's writes");
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        // Release: pairs with the Acquire load of the parked waiter.
        self.readied.fetch_add(1, Ordering::Release);
        self.waiter.unpark();
    }

    /// The waiter side: `Registration::wait` with a park that blocks the thread until readied.
    fn wait(&self, mode: Mode) -> Result<(), PollError> {
        let mut park = |c: Commit<'_>| {
            self.before_park.store(1, Ordering::Relaxed);
            if c.commit(Token::new(TOKEN)) {
                let n = self.committed.fetch_add(1, Ordering::Relaxed) + 1;
                // Acquire: pairs with the Release of `ready`.
                while self.readied.load(Ordering::Acquire) < n {
                    thread::park();
                }
            }
        };
        self.desc.wait(mode, &self.waiters, &mut park).map_err(|e| PollError::of(&e).expect("a PollError"))
    }

    /// Every committed park was readied exactly once, and nobody is left counted as waiting.
    fn check_balanced(&self) {
        assert_eq!(self.readied.load(Ordering::Relaxed), self.committed.load(Ordering::Relaxed));
        assert_eq!(self.waiters.load(Ordering::Relaxed), 0);
        assert!(super::token_of(self.desc.rg.load(Ordering::Relaxed)).is_none(), "a token left in the slot");
    }
}

/// Invariant 3 with edge triggering: data arrives and its event fires while the reader resets
/// the slot, tries the read, and waits. The reader always gets the data.
#[test]
fn event_wakes_waiter() {
    model(3, || {
        let w = World::new();
        let data = Arc::new(AtomicBool::new(false));
        let ev = thread::spawn({
            let (w, data) = (w.clone(), data.clone());
            move || {
                data.store(true, Ordering::Relaxed);
                w.ready(w.desc.ready(Mode::Read));
            }
        });
        w.desc.prepare(Mode::Read).unwrap();
        // The non-blocking read: EAGAIN until the data is there.
        while !data.load(Ordering::Relaxed) {
            w.wait(Mode::Read).unwrap();
        }
        ev.join().unwrap();
        w.check_balanced();
    });
}

/// Invariant 4 (the Dekker pair): a close racing with the reader's wait. The reader always
/// comes back, with `Closed`.
#[test]
fn close_wakes_waiter() {
    model(3, || {
        let w = World::new();
        let closer = thread::spawn({
            let w = w.clone();
            move || {
                let wk = w.desc.close();
                assert!(wk.write.is_none());
                w.ready(wk.read);
            }
        });
        let r = w.desc.prepare(Mode::Read).and_then(|()| w.wait(Mode::Read));
        assert_eq!(r, Err(PollError::Closed));
        closer.join().unwrap();
        w.check_balanced();
    });
}

/// Invariant 4 for deadlines: the deadline timer fires while the reader waits. The reader always
/// comes back, with `TimedOut`.
#[test]
fn deadline_wakes_waiter() {
    model(3, || {
        let w = World::new();
        let (key, none) = w.desc.set_deadline(Mode::Read, Deadline::Future, 0);
        assert!(none.is_none());
        let timer = thread::spawn({
            let w = w.clone();
            move || w.ready(w.desc.expire(key))
        });
        let r = w.desc.prepare(Mode::Read).and_then(|()| w.wait(Mode::Read));
        assert_eq!(r, Err(PollError::TimedOut));
        timer.join().unwrap();
        w.check_balanced();
    });
}

/// Invariant 2: an event and a close both go for the parked reader's token; exactly one gets
/// it, and the reader returns either ready (it consumed the event) or closed.
#[test]
fn event_and_close_take_the_token_once() {
    model(3, || {
        let w = World::new();
        let ev = thread::spawn({
            let w = w.clone();
            move || w.ready(w.desc.ready(Mode::Read))
        });
        let closer = thread::spawn({
            let w = w.clone();
            move || w.ready(w.desc.close().read)
        });
        let r = w.desc.prepare(Mode::Read).and_then(|()| w.wait(Mode::Read));
        assert!(matches!(r, Ok(()) | Err(PollError::Closed)), "{r:?}");
        ev.join().unwrap();
        closer.join().unwrap();
        w.check_balanced();
    });
}
