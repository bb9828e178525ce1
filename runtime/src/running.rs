//! Stacks of goroutines that are running right now, on other threads, without stopping the world:
//! each M running one is asked, with a signal of its own (SIGURG, as Go's preemption requests),
//! to walk its goroutine's stack from its signal handler into the M's request slot; the asker
//! waits a bounded time for the answers.
//!
//! # The request protocol (per M)
//!
//! `M::stack_req` goes `IDLE -> REQUESTED` (the asker, Release, then `tgkill`), `REQUESTED ->
//! WRITING` (the handler's CAS, Acquire), `WRITING -> DONE` (the handler, Release, after writing
//! the slot), `DONE -> IDLE` (the asker, after an Acquire load of DONE and its copy). An asker
//! that gives up CASes `REQUESTED -> IDLE`; if that fails the handler is writing, and the asker
//! waits for DONE (the handler takes microseconds). Only the handler holding WRITING writes
//! `M::stack_data`; only the asker reads it, after DONE. The asker whose `IDLE -> REQUESTED`
//! CAS succeeded owns the M's slot until it stores IDLE again; another asker finds the slot
//! busy, and asks again until the slot is free (within its patience). Two askers exist:
//! [`running_stacks`] (one call at a time, `ASK`), which waits a bounded time for its answers,
//! and sysmon's hog detector (`hog.rs`), which asks one M with [`request`] and never waits: it
//! collects the answer with [`answer`] at a later tick (asking again at the next ticks if the
//! slot was busy), or gives up with [`withdraw`].
//!
//! A goroutine inside `blocking` is not asked: the signal would interrupt its system call, and
//! code that does not retry `EINTR` would see it. SIGURG's disposition is taken only if nobody
//! else has one (SIG_DFL or SIG_IGN); otherwise running goroutines keep an empty stack. A SIGURG
//! that reaches a thread with no request pending does nothing.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::g::{self, labels_from_ref, Labels};
use crate::m::{current_m, M, STACK_IDLE as IDLE};
use crate::unwind::{walk, Regs, WalkCtx};

const REQUESTED: u32 = 1;
const WRITING: u32 = 2;
const DONE: u32 = 3;

/// A running goroutine's stack, leaf first (the first address is the interrupted pc).
#[derive(Clone, Debug)]
pub struct RunningStack {
    /// The goroutine's id.
    pub id: u64,
    /// Its stack; empty if it was running runtime code off its own stack.
    pub pcs: Vec<usize>,
    /// The walk stopped at the depth limit.
    pub truncated: bool,
    /// Its labels.
    pub labels: Option<Labels>,
}

/// One [`running_stacks`] at a time.
static ASK: Mutex<()> = Mutex::new(());
/// Whether SIGURG's handler is ours (installed on first use, never removed).
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// How long to wait for the Ms to answer.
const PATIENCE: Duration = Duration::from_millis(50);

/// The stacks of the goroutines running on other threads now (not the caller's), each walked
/// by its own thread from a SIGURG handler. Bounded: an M that does not answer within 50 ms
/// (or whose request slot the hog detector holds that long) is left out.
pub fn running_stacks() -> Vec<RunningStack> {
    let _one = ASK.lock().unwrap_or_else(|e| e.into_inner());
    if installed() {
        ask()
    } else {
        Vec::new()
    }
}

/// Whether [`running_stacks`] can ask anything: SIGURG's disposition is ours.
pub(crate) fn can_ask() -> bool {
    installed()
}

fn installed() -> bool {
    *INSTALLED.get_or_init(install_handler)
}

/// Asks `m`'s thread for the stack of the goroutine it runs, without waiting: on
/// [`Sent::Yes`] the caller owns `m`'s slot until [`answer`] returns `Some` or [`withdraw`]
/// returns. [`Sent::Busy`]: another asker's request is pending on `m` (it may be free at the
/// next try); [`Sent::Failed`]: SIGURG is someone else's, or the signal could not be sent.
pub(crate) fn request(m: &'static M) -> Sent {
    if !installed() {
        return Sent::Failed;
    }
    // SAFETY: getpid has no preconditions.
    send(m, unsafe { libc::getpid() })
}

/// The answer to the caller's [`request`] on `m`, once `m` gave it (`Some(None)`: `m` was not
/// running a goroutine on that goroutine's stack); then `m`'s slot is free again.
pub(crate) fn answer(m: &'static M) -> Option<Option<RunningStack>> {
    // Acquire: pairs with the handler's Release store of DONE.
    (m.stack_req.load(Ordering::Acquire) == DONE).then(|| take(m))
}

/// Gives up the caller's [`request`] on `m`. If the handler has already taken it, waits for its
/// answer (it takes microseconds) and returns it; `m`'s slot is free when this returns.
pub(crate) fn withdraw(m: &'static M) -> Option<RunningStack> {
    if m.stack_req.compare_exchange(REQUESTED, IDLE, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        return None;
    }
    // The handler is writing (or done).
    // Acquire: pairs with the handler's Release store of DONE.
    while m.stack_req.load(Ordering::Acquire) != DONE {
        std::hint::spin_loop();
    }
    take(m)
}

/// What [`send`] or [`request`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sent {
    /// Asked: the caller owns the slot.
    Yes,
    /// Another asker owns the slot.
    Busy,
    /// The signal could not be sent.
    Failed,
}

/// Sends `m` a request, if its slot is free: the caller then owns the slot.
fn send(m: &'static M, pid: libc::pid_t) -> Sent {
    // Release: pairs with the handler's Acquire CAS (our request comes before its signal).
    if m.stack_req.compare_exchange(IDLE, REQUESTED, Ordering::Release, Ordering::Relaxed).is_err() {
        return Sent::Busy;
    }
    // SAFETY: tgkill sends SIGURG to `m`'s thread, which lives as long as the process (Ms never
    // exit); our handler is installed (callers checked `installed`).
    if unsafe { libc::syscall(libc::SYS_tgkill, pid, m.tid, libc::SIGURG) } != 0 {
        m.stack_req.store(IDLE, Ordering::Relaxed);
        return Sent::Failed;
    }
    Sent::Yes
}

/// Whether `m` runs a goroutine that may be asked: not one inside `blocking`.
fn runs_askable(m: &M) -> bool {
    m.curg().is_some_and(|g| g.status() != g::SYSCALL)
}

fn ask() -> Vec<RunningStack> {
    let me = current_m();
    let mut pending: Vec<&'static M> = Vec::new();
    // Ms to ask again: their slot was held by sysmon's hog detector (until its next tick, when
    // it collects its answer; a hog is exactly the goroutine whose stack a dump taken meanwhile
    // should show), or their answer came from off the goroutine's stack. Within the same
    // patience.
    let mut busy: Vec<&'static M> = Vec::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    for m in crate::m::all() {
        if me.is_some_and(|me| std::ptr::eq(me, m)) || !runs_askable(m) {
            continue;
        }
        match send(m, pid) {
            Sent::Yes => pending.push(m),
            Sent::Busy => busy.push(m),
            Sent::Failed => {}
        }
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !pending.is_empty() || !busy.is_empty() {
        busy.retain(|&m| {
            if !runs_askable(m) {
                return false;
            }
            match send(m, pid) {
                Sent::Yes => {
                    pending.push(m);
                    false
                }
                Sent::Busy => true,
                Sent::Failed => false,
            }
        });
        let patient = Instant::now() < deadline;
        pending.retain(|&m| {
            // Acquire: pairs with the handler's Release store of DONE.
            if m.stack_req.load(Ordering::Acquire) != DONE {
                return true;
            }
            match take(m) {
                // Caught between its goroutine's stack and its own (a switch, a scheduler
                // round): ask again.
                Some(r) if r.pcs.is_empty() && patient => busy.push(m),
                r => out.extend(r),
            }
            false
        });
        if pending.is_empty() && busy.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for m in pending.drain(..) {
                out.extend(withdraw(m));
            }
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    out
}

/// Copies `m`'s answer out and frees its slot. Caller saw DONE (Acquire).
fn take(m: &'static M) -> Option<RunningStack> {
    // SAFETY: the slot is DONE: its writer is finished and nobody writes it until we store IDLE
    // (protocol in the module docs).
    let d = unsafe { &*m.stack_data.get() };
    // SAFETY: the handler took this reference for the slot; we own it now.
    let labels = unsafe { labels_from_ref(d.labels) };
    let r = (d.goid != 0).then(|| RunningStack {
        id: d.goid,
        pcs: d.pcs[..d.len].to_vec(),
        truncated: d.truncated,
        labels,
    });
    // Release: our reads of the slot come before a later writer's.
    m.stack_req.store(IDLE, Ordering::Release);
    r
}

fn install_handler() -> bool {
    crate::sig::install_unless_foreign(libc::SIGURG, handler).unwrap_or(false)
}

extern "C" fn handler(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let _errno = crate::sig::ErrnoGuard::save();
    if let Some(m) = current_m() {
        // Acquire: pairs with the asker's Release (the request).
        if m.stack_req.compare_exchange(REQUESTED, WRITING, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            // SAFETY: we hold the slot in WRITING: nobody else touches it (module docs).
            let d = unsafe { &mut *m.stack_data.get() };
            d.goid = 0;
            d.len = 0;
            d.truncated = false;
            d.labels = std::ptr::null();
            if let Some(g) = m.curg() {
                d.goid = g.id();
                // SAFETY: the kernel passes the interrupted context to an SA_SIGINFO handler.
                let regs = unsafe { Regs::from_ucontext(ctx) };
                let b = (g.0.stack_lo.load(Ordering::Relaxed), g.0.stack_hi.load(Ordering::Relaxed));
                if b.1 != 0 && regs.sp >= b.0 && regs.sp < b.1 {
                    // SAFETY: the goroutine runs on this thread, interrupted by this handler on
                    // the signal stack: its frames from `regs` up are live and still, every read
                    // is bounds-checked against its stack, and the walk allocates nothing.
                    let w = unsafe { walk(regs, b, 0, &mut d.pcs, WalkCtx::NoAllocate) };
                    d.len = w.len;
                    d.truncated = w.truncated;
                    // SAFETY: `g` runs on this thread, interrupted (labels_ref's handler case).
                    d.labels = unsafe { g.0.labels_ref() };
                }
            }
            // Release: pairs with the asker's Acquire load of DONE.
            m.stack_req.store(DONE, Ordering::Release);
        }
    }
}
