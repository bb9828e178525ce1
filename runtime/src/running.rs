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
//! `M::stack_data`; only the asker reads it, after DONE. One asker at a time (`ASK`).
//!
//! A goroutine inside `blocking` is not asked: the signal would interrupt its system call, and
//! code that does not retry `EINTR` would see it. SIGURG's disposition is taken only if nobody
//! else has one (SIG_DFL or SIG_IGN); otherwise running goroutines keep an empty stack. A SIGURG
//! that reaches a thread with no request pending does nothing.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
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

/// One asker at a time; also guards the handler's installation.
static ASK: Mutex<Option<bool>> = Mutex::new(None);

/// How long to wait for the Ms to answer.
const PATIENCE: Duration = Duration::from_millis(50);

/// The stacks of the goroutines running on other threads now (not the caller's), each walked
/// by its own thread from a SIGURG handler. Bounded: an M that does not answer within 50 ms is
/// left out.
pub fn running_stacks() -> Vec<RunningStack> {
    let mut installed = ASK.lock().unwrap_or_else(|e| e.into_inner());
    if *installed.get_or_insert_with(install_handler) {
        ask()
    } else {
        Vec::new()
    }
}

fn ask() -> Vec<RunningStack> {
    let me = current_m();
    let mut pending: Vec<&'static M> = Vec::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    for m in crate::m::all() {
        if me.is_some_and(|me| std::ptr::eq(me, m)) {
            continue;
        }
        let Some(g) = m.curg() else { continue };
        if g.status() == g::SYSCALL {
            continue;
        }
        // Release: pairs with the handler's Acquire CAS (our request comes before its signal).
        if m.stack_req.compare_exchange(IDLE, REQUESTED, Ordering::Release, Ordering::Relaxed).is_err() {
            continue;
        }
        // SAFETY: tgkill sends SIGURG to `m`'s thread, which lives as long as the process (Ms
        // never exit); our handler is installed.
        if unsafe { libc::syscall(libc::SYS_tgkill, pid, m.tid, libc::SIGURG) } != 0 {
            m.stack_req.store(IDLE, Ordering::Relaxed);
            continue;
        }
        pending.push(m);
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !pending.is_empty() {
        pending.retain(|m| {
            // Acquire: pairs with the handler's Release store of DONE.
            if m.stack_req.load(Ordering::Acquire) != DONE {
                return true;
            }
            out.extend(take(m));
            false
        });
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for m in pending.drain(..) {
                if m.stack_req.compare_exchange(REQUESTED, IDLE, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                    continue;
                }
                // The handler is writing: it finishes in microseconds.
                while m.stack_req.load(Ordering::Acquire) != DONE {
                    std::hint::spin_loop();
                }
                out.extend(take(m));
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
