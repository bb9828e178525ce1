//! The shared channel (Go's `hchan`): the buffer, the wait queues, and the send, receive and
//! close paths with their direct hand-offs (see the invariants in the module docs of `chan`).

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::atomic::AtomicUsize;
use std::sync::OnceLock;
use std::time::Duration;

use super::error::{RecvTimeoutError, SendTimeoutError};
use super::queue::{Core, Node, Waiter, Wakee, TIMED_OUT};
use crate::g::WaitReason;
use crate::mprof;
use crate::park::{park, park_as, parking, preempt_point, Parking};

/// The shared channel (Go's `hchan`).
pub(crate) struct Chan<T> {
    /// Lock, wait queues, closed flag.
    pub(crate) core: Core,
    /// Buffered values, FIFO. Guarded by `core.lock`.
    pub(crate) buf: std::cell::UnsafeCell<VecDeque<T>>,
    /// Capacity; 0 = unbuffered.
    pub(crate) cap: usize,
    /// Live `Sender`s; the last one to go closes the channel.
    pub(crate) senders: AtomicUsize,
    /// A Go nil channel: nothing ever happens.
    pub(crate) nil: bool,
    /// The runtime timer feeding an [`after`]/[`tick`] channel, stopped when the channel goes.
    pub(crate) timer: OnceLock<crate::time::RawTimer>,
}

// SAFETY: `buf` is only accessed with `core.lock` held; values of T move between threads, hence
// `T: Send`.
unsafe impl<T: Send> Sync for Chan<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Chan<T> {}

/// Outcome of a locked receive attempt.
pub(crate) enum Recv<T> {
    /// A value, and the sender to wake (if one was waiting).
    Value(T, Option<Wakee>),
    /// Closed and drained.
    Closed,
    /// Nothing yet.
    Empty,
}

impl<T> Chan<T> {
    pub(crate) fn new(cap: usize, nil: bool) -> Chan<T> {
        Chan {
            core: Core::new(),
            buf: std::cell::UnsafeCell::new(VecDeque::with_capacity(cap.min(64))),
            cap,
            senders: AtomicUsize::new(1),
            nil,
            timer: OnceLock::new(),
        }
    }

    /// Address that orders locks in `select!` (Go sorts by `hchan` address); 0 for nil.
    pub(crate) fn addr(&self) -> usize {
        if self.nil {
            0
        } else {
            self as *const Chan<T> as usize
        }
    }

    /// # Safety
    /// The channel lock is held.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn buf(&self) -> &mut VecDeque<T> {
        // SAFETY: guarded by the lock the caller holds.
        unsafe { &mut *self.buf.get() }
    }

    /// Tries to send now; on success returns the receiver to wake. `Err(v)`: would block.
    ///
    /// # Safety
    /// The channel lock is held and the channel is open.
    #[inline(always)]
    pub(crate) unsafe fn send_locked(&self, v: T) -> Result<Option<Wakee>, T> {
        // SAFETY: lock held (caller).
        let st = unsafe { self.core.state() };
        // SAFETY: lock held.
        if let Some(h) = unsafe { st.recvq.claim_front() } {
            // SAFETY: nodes in a Chan<T>'s queues are Node<T>s.
            let n = unsafe { Node::<T>::from_hdr(h) };
            // SAFETY: we claimed the waiter and it is parked: the slot is ours.
            unsafe { n.put(v) };
            n.hdr.success.set(true);
            // SAFETY: lock held, claimed just now.
            return Ok(Some(unsafe { n.hdr.wakee() }));
        }
        // SAFETY: lock held.
        let buf = unsafe { self.buf() };
        if buf.len() < self.cap {
            buf.push_back(v);
            return Ok(None);
        }
        Err(v)
    }

    /// Tries to receive now.
    ///
    /// # Safety
    /// The channel lock is held.
    #[inline(always)]
    pub(crate) unsafe fn recv_locked(&self) -> Recv<T> {
        // SAFETY: lock held (caller).
        let st = unsafe { self.core.state() };
        // SAFETY: lock held.
        if let Some(h) = unsafe { st.sendq.claim_front() } {
            // SAFETY: nodes in a Chan<T>'s queues are Node<T>s.
            let n = unsafe { Node::<T>::from_hdr(h) };
            // SAFETY: claimed and parked: the slot is ours.
            let sv = unsafe { n.take() }.expect("gort: queued sender without a value");
            n.hdr.success.set(true);
            // SAFETY: lock held, claimed just now.
            let g = unsafe { n.hdr.wakee() };
            // SAFETY: lock held.
            let buf = unsafe { self.buf() };
            // An unbuffered channel's buffer holds only values given back by dropped async
            // receivers (see `future.rs`); they were sent first, so they go first.
            if self.cap == 0 && buf.is_empty() {
                return Recv::Value(sv, Some(g));
            }
            // Full buffer: take the head, the sender's value goes to the tail.
            let v = buf.pop_front().expect("gort: sender waiting on a non-full buffer");
            buf.push_back(sv);
            return Recv::Value(v, Some(g));
        }
        // SAFETY: lock held.
        if let Some(v) = unsafe { self.buf() }.pop_front() {
            return Recv::Value(v, None);
        }
        if st.closed {
            Recv::Closed
        } else {
            Recv::Empty
        }
    }

    /// Whether closed (racy snapshot).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.core.lock.lock();
        // SAFETY: lock held.
        let c = unsafe { self.core.state() }.closed;
        // SAFETY: taken above.
        unsafe { self.core.lock.unlock() };
        c
    }

    /// Closes the channel; false if it was closed already (or nil).
    #[inline]
    pub(crate) fn close(&self) -> bool {
        if self.nil {
            return false;
        }
        let mut wake = Vec::new();
        self.core.lock.lock();
        // SAFETY: lock held.
        let st = unsafe { self.core.state() };
        if st.closed {
            // SAFETY: taken above.
            unsafe { self.core.lock.unlock() };
            return false;
        }
        st.closed = true;
        // SAFETY: lock held.
        unsafe {
            st.recvq.claim_all_failed(&mut wake);
            st.sendq.claim_all_failed(&mut wake);
        }
        // SAFETY: taken above.
        unsafe { self.core.lock.unlock() };
        for w in wake {
            // SAFETY: each waiter was claimed (and its node unlinked) by `claim_all_failed`
            // above: queue invariant 3 makes us its one claimer, and invariant 4 says its
            // goroutine committed its park: this is the one wake-up for that wait.
            unsafe { w.wake() };
        }
        true
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.core.lock.lock();
        // SAFETY: lock held.
        let n = unsafe { self.buf() }.len();
        // SAFETY: taken above.
        unsafe { self.core.lock.unlock() };
        n
    }

    /// Blocking send with an optional deadline (nanotime units).
    ///
    /// Inlined into the caller with the park it may make, so that the goroutine, once resumed,
    /// goes on in its caller's frame without returning through a frame that spanned the switch
    /// (see `park`'s docs). Everything else runs out of line, in
    /// [`send_or_queue`](Self::send_or_queue).
    #[inline(always)]
    pub(crate) fn send(&self, v: T, deadline: Option<u64>) -> Result<(), SendTimeoutError<T>> {
        let (step, v) = self.send_or_queue(v, deadline);
        let v = match step {
            Step::Done => return Ok(()),
            // SAFETY: every step but `Done` hands the value back.
            Step::Park => unsafe { v.assume_init() },
            // SAFETY: as above.
            Step::Closed => return Err(SendTimeoutError::Closed(unsafe { v.assume_init() })),
            // SAFETY: as above.
            Step::Timeout => return Err(SendTimeoutError::Timeout(unsafe { v.assume_init() })),
        };
        let node = Node::new(Some(v));
        // SAFETY: `send_or_queue` returned `Park`: the lock is held and the channel open.
        if unsafe { self.queue_and_block(&node, false) } {
            Ok(())
        } else {
            // SAFETY: woken by close: the value is still in our node, which nobody references.
            Err(SendTimeoutError::Closed(unsafe { node.take() }.expect(LOST)))
        }
    }

    /// A send up to the park. `Done` took the value; every other step hands it back (the pair
    /// of the step and a `MaybeUninit` is returned in registers for a word-sized `T`). `Park`
    /// returns with the channel lock held, the channel open and no receiver waiting, for
    /// [`send`](Self::send) to queue and park: only an untimed send parks there, a timed one in
    /// [`send_timed`](Self::send_timed).
    #[inline(never)]
    fn send_or_queue(&self, v: T, deadline: Option<u64>) -> (Step, MaybeUninit<T>) {
        if self.nil {
            return (nil_step(deadline, WaitReason::ChanSendNilChan), MaybeUninit::new(v));
        }
        preempt_point();
        self.core.lock.lock();
        // SAFETY: lock held.
        if unsafe { self.core.state() }.closed {
            // SAFETY: taken above.
            unsafe { self.core.lock.unlock() };
            return (Step::Closed, MaybeUninit::new(v));
        }
        // SAFETY: lock held, open.
        match unsafe { self.send_locked(v) } {
            Ok(g) => {
                // SAFETY: taken above.
                unsafe { self.core.lock.unlock() };
                if let Some(g) = g {
                    // SAFETY: `send_locked` claimed this receiver from the recvq: queue
                    // invariant 3 makes us its one claimer, and invariant 4 says it committed its
                    // park: this is the one wake-up for that wait.
                    unsafe { g.wake() };
                }
                (Step::Done, MaybeUninit::uninit())
            }
            Err(v) => match deadline {
                None => (Step::Park, MaybeUninit::new(v)),
                // SAFETY: lock held (taken above).
                Some(d) => unsafe { self.send_timed(v, d) },
            },
        }
    }

    /// A timed send that must wait (as `send_or_queue`, the value back unless sent).
    ///
    /// # Safety
    /// The channel lock is held; this releases it.
    #[cold]
    #[inline(never)]
    unsafe fn send_timed(&self, v: T, deadline: u64) -> (Step, MaybeUninit<T>) {
        // SAFETY: held, by the contract; the timed path retakes it.
        unsafe { self.core.lock.unlock() };
        let node = Node::new(Some(v));
        let step = match self.block_timed(&node, deadline, false) {
            Some(true) => return (Step::Done, MaybeUninit::uninit()),
            Some(false) => Step::Closed,
            None => Step::Timeout,
        };
        // SAFETY: woken by close, or timed out (node unlinked, unclaimed): the value is still in
        // our node, which nobody references.
        (step, MaybeUninit::new(unsafe { node.take() }.expect(LOST)))
    }

    /// Blocking receive with an optional deadline. Inlined with its park, as [`send`](Self::send).
    #[inline(always)]
    pub(crate) fn recv(&self, deadline: Option<u64>) -> Result<T, RecvTimeoutError> {
        let (step, v) = self.recv_or_queue(deadline);
        match step {
            // SAFETY: `Done` comes with the value.
            Step::Done => return Ok(unsafe { v.assume_init() }),
            Step::Park => {}
            Step::Closed => return Err(RecvTimeoutError::Closed),
            Step::Timeout => return Err(RecvTimeoutError::Timeout),
        }
        let node = Node::new(None);
        // SAFETY: `recv_or_queue` returned `Park`: the lock is held and the channel open.
        if unsafe { self.queue_and_block(&node, true) } {
            // SAFETY: woken by a sender that filled our slot; nobody references the node now.
            Ok(unsafe { node.take() }.expect("gort: woken receiver without a value"))
        } else {
            Err(RecvTimeoutError::Closed)
        }
    }

    /// A receive up to the park: `Done` with the value, or `Park` with the channel lock
    /// held, the channel open and empty, for [`recv`](Self::recv) to queue and park (untimed
    /// only, as in `send`).
    #[inline(never)]
    fn recv_or_queue(&self, deadline: Option<u64>) -> (Step, MaybeUninit<T>) {
        if self.nil {
            return (nil_step(deadline, WaitReason::ChanReceiveNilChan), MaybeUninit::uninit());
        }
        preempt_point();
        self.core.lock.lock();
        // SAFETY: lock held.
        match unsafe { self.recv_locked() } {
            Recv::Value(v, g) => {
                // SAFETY: taken above.
                unsafe { self.core.lock.unlock() };
                if let Some(g) = g {
                    // SAFETY: `recv_locked` claimed this sender from the sendq: queue invariant 3
                    // makes us its one claimer, and invariant 4 says it committed its park: this
                    // is the one wake-up for that wait.
                    unsafe { g.wake() };
                }
                (Step::Done, MaybeUninit::new(v))
            }
            Recv::Closed => {
                // SAFETY: taken above.
                unsafe { self.core.lock.unlock() };
                (Step::Closed, MaybeUninit::uninit())
            }
            Recv::Empty => match deadline {
                None => (Step::Park, MaybeUninit::uninit()),
                // SAFETY: lock held (taken above).
                Some(d) => unsafe { self.recv_timed(d) },
            },
        }
    }

    /// A timed receive that must wait.
    ///
    /// # Safety
    /// The channel lock is held; this releases it.
    #[cold]
    #[inline(never)]
    unsafe fn recv_timed(&self, deadline: u64) -> (Step, MaybeUninit<T>) {
        // SAFETY: held, by the contract.
        unsafe { self.core.lock.unlock() };
        let node = Node::new(None);
        match self.block_timed(&node, deadline, true) {
            Some(true) => {
                // SAFETY: woken by a sender that filled our slot; nobody references the node now.
                let v = unsafe { node.take() }.expect("gort: woken receiver without a value");
                (Step::Done, MaybeUninit::new(v))
            }
            Some(false) => (Step::Closed, MaybeUninit::uninit()),
            None => (Step::Timeout, MaybeUninit::uninit()),
        }
    }

    /// Queues `node` (on the caller's frame, which stays put until we return: we only return
    /// once woken, and the node is then unlinked) for this goroutine and parks until a peer or a
    /// close claims it. True if a peer did.
    ///
    /// # Safety
    /// The channel lock is held, taken by this operation, and the channel is open.
    #[inline(always)]
    unsafe fn queue_and_block(&self, node: &Node<T>, recv: bool) -> bool {
        let who = parking();
        let w = Waiter::of(who.g());
        node.bind(&w, 0);
        // SAFETY: lock held (the contract).
        let st = unsafe { self.core.state() };
        let q = if recv { &mut st.recvq } else { &mut st.sendq };
        // SAFETY: lock held; the node and `w` stay put until we are woken (above).
        unsafe { q.push_back(&node.hdr) };
        self.block(who, if recv { WaitReason::ChanReceive } else { WaitReason::ChanSend });
        node.hdr.success.get()
    }

    /// Parks `who` (the caller) with the channel lock held (queued node already published);
    /// commit releases it.
    #[inline(always)]
    fn block(&self, who: Parking, reason: WaitReason) {
        let t0 = mprof::block_start();
        let commit = |_| {
            // SAFETY: the lock was taken by this operation before parking (Go's unlockf).
            unsafe { self.core.lock.unlock() };
            true
        };
        // Every caller reads `who` after taking the lock; nothing since has parked or yielded.
        // SAFETY: our node (naming this G) was queued under the channel lock: no one reaches the
        // G before the commit's unlock, its last access, and the one claimer (queue invariant 3)
        // readies it once. Unlocking neither parks nor panics. `who` is current (above).
        unsafe { park_as(who, reason, commit) };
        mprof::block_end(t0);
    }

    /// The timed slow path: arms a timer, then retries, then queues and parks. Returns
    /// `Some(success)` when a channel operation (or close) claimed us, `None` on timeout (node
    /// unlinked, slot untouched). Called without the lock.
    fn block_timed(&self, node: &Node<T>, deadline: u64, recv: bool) -> Option<bool> {
        let w = Waiter::new();
        node.bind(&w, 0);
        let core = &self.core as *const Core as usize;
        let hdr = &node.hdr as *const super::queue::Hdr as usize;
        // The timer is armed before taking the channel lock, so a timer implementation that
        // runs callbacks under its own lock cannot deadlock against us (queue invariant 4 covers
        // a callback firing before the node is queued).
        let timer = crate::time::RawTimer::new(
            deadline,
            Box::new(move || {
                // SAFETY: the channel (kept alive by our caller's handle) and the node (on our
                // frame) stay valid until `timer.stop()` below returns; the node is only ever
                // queued on this channel's recvq/sendq per `recv`.
                unsafe { super::queue::fire_timeout(core as *const Core, hdr as *const super::queue::Hdr, recv) }
            }),
        );
        self.core.lock.lock();
        let mut outcome = None;
        if recv {
            // SAFETY: lock held.
            match unsafe { self.recv_locked() } {
                Recv::Value(v, g) => {
                    // SAFETY: node not queued: its slot is ours.
                    unsafe { node.put(v) };
                    outcome = Some((true, g));
                }
                Recv::Closed => outcome = Some((false, None)),
                Recv::Empty => {}
            }
        // SAFETY: lock held.
        } else if unsafe { self.core.state() }.closed {
            outcome = Some((false, None));
        } else {
            // SAFETY: node not queued: the slot is ours.
            let v = unsafe { node.take() }.expect("gort: send without a value");
            // SAFETY: lock held, open.
            match unsafe { self.send_locked(v) } {
                Ok(g) => outcome = Some((true, g)),
                // SAFETY: as above.
                Err(v) => unsafe { node.put(v) },
            }
        }
        let res = if let Some((ok, g)) = outcome {
            // SAFETY: taken above.
            unsafe { self.core.lock.unlock() };
            if let Some(g) = g {
                // SAFETY: `recv_locked`/`send_locked` claimed this peer from its queue: queue
                // invariant 3 makes us its one claimer, and invariant 4 says it committed its
                // park: this is the one wake-up for that wait.
                unsafe { g.wake() };
            }
            Some(ok)
        } else if w.verdict() == TIMED_OUT {
            // SAFETY: taken above.
            unsafe { self.core.lock.unlock() };
            None
        } else {
            // SAFETY: lock held.
            let st = unsafe { self.core.state() };
            let q = if recv { &mut st.recvq } else { &mut st.sendq };
            // SAFETY: lock held; node valid until the timer is stopped and we were woken.
            unsafe { q.push_back(&node.hdr) };
            self.block(parking(), if recv { WaitReason::ChanReceive } else { WaitReason::ChanSend });
            if w.verdict() == TIMED_OUT {
                None
            } else {
                Some(node.hdr.success.get())
            }
        };
        // After stop() the callback is not running and never will: our frame may go.
        timer.stop();
        res
    }
}

/// What the out-of-line half of a blocking channel operation did, for its inlined half.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Sent, or received (with the value).
    Done,
    /// Must park: the lock is held and the channel open.
    Park,
    /// The channel is closed (a send's value handed back).
    Closed,
    /// The deadline passed (a send's value handed back).
    Timeout,
}

/// A value the channel code handed back is missing: a bug here, not the caller's.
const LOST: &str = "gort: lost value";

/// An operation on a nil channel: blocks forever, or until the deadline.
#[cold]
fn nil_step(deadline: Option<u64>, forever: WaitReason) -> Step {
    match deadline {
        Some(d) => {
            nil_wait(d);
            Step::Timeout
        }
        None => block_forever(forever),
    }
}

/// A nil channel with a timeout: sleeps until the deadline.
fn nil_wait(deadline: u64) {
    let now = crate::time::nanotime();
    if deadline > now {
        crate::time::sleep(Duration::from_nanos(deadline - now));
    }
}

/// Parks forever (Go's `block()`): nothing will ever ready the goroutine.
pub(crate) fn block_forever(reason: WaitReason) -> ! {
    loop {
        // SAFETY: the commit publishes the G nowhere and returns true: it stays parked forever,
        // which `park` allows; nothing can ever ready it.
        unsafe { park(reason, |_| true) };
    }
}

/// Deadline in nanotime units for a timeout `d` (saturating).
pub(crate) fn deadline_after(d: Duration) -> u64 {
    crate::time::nanotime().saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
