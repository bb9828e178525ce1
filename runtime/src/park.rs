//! park/ready: the one primitive every blocking operation is built on (Go's gopark/goready).
//!
//! # Protocol (why no wakeup is ever lost)
//!
//! `park(reason, commit)` on a goroutine:
//! 1. records the wait reason, when the wait began and the park site (pc, sp, fp: where an
//!    unwind of the parked stack starts);
//! 2. switches to the M's scheduler stack;
//! 3. the M marks the G `WAITING` (Release) — only now, with the G's stack frozen;
//! 4. the M runs `commit(g)`: typically it publishes `g` in a wait queue and releases the lock
//!    guarding that queue. A waker can find `g` only after this publication;
//! 5. `commit` returns true: the G stays parked. It returns false: no one was told about the G,
//!    which is resumed at once.
//!
//! `ready(g)` moves it `WAITING -> RUNNABLE` and queues it in the caller's P's `runnext`.
//! Because the waker can only have found the G after step 4 and the G is `WAITING` from step 3,
//! `ready` always finds `WAITING`: a wakeup cannot arrive "before the park" and be lost.
//!
//! On a plain OS thread the same protocol runs on the thread itself: mark `WAITING`, run
//! `commit`, then block on a futex (`std::thread::park`) until `ready` changes the status.
//!
//! Both are `unsafe fn`s: nothing checks that a commit hands its G to exactly one waker, and a
//! stray `ready` wakes whatever that G waits for next (a reused G: another goroutine), whose
//! wait-queue nodes may still be linked. Each call site in the runtime argues its protocol.
//! Code outside the runtime gets the same effect safely from [`Parker`]/[`Unparker`]
//! (`parker.rs`), which hold a G only while it is parked on them.
//!
//! # Where the switch lands: inlined into the blocking call's caller
//!
//! A resumed goroutine lands inside the code that parked it, and from there it returns through
//! every frame that was live across the switch. The CPU's return-address predictor has never
//! seen the calls that made those frames (they were made before the goroutine last ran, and
//! the M's own calls have filled the predictor since), so the first of those returns is
//! mispredicted to where the M resumed the goroutine, and it costs far more than its few
//! instructions: one such return after each landing made a yield at 1 P half as slow again
//! (the benchmarks' README has the numbers). So [`suspend`], [`park`], [`yield_now`] and the
//! channel's blocking `send` and `recv` are `#[inline(always)]` down to the caller of the
//! blocking API: the goroutine lands in its own frame and goes on with no return to mispredict.
//! Only the switch and the little around it is inlined; the work before the park (taking
//! locks, queueing) and after it runs in calls of their own, whose returns are predicted. A
//! blocking call whose park sits deeper (behind a lock's slow path, say) pays the misprediction
//! once per wake-up, as Go's `gopark` does.
//!
//! # Runtime mode
//!
//! While a goroutine runs user code its P is `P_USER`, and sysmon may take the P away (see
//! `sched/mod.rs`). Runtime code that touches the P first calls [`enter`], which CASes the P to
//! `P_RUNNING` (or notices it was taken and tries to get another); the returned guard puts it
//! back to `P_USER` on the way out. `ready` from user code is the exception: it only swaps the
//! readied G into `runnext`, which needs no ownership (`ready_from_user`).

use std::sync::atomic::Ordering;

use crate::clock::coarse_now;
use crate::g::{self, GRef, WaitReason, Yield, G};
use crate::globrunq::global;
use crate::m::{current_m, resumed_by, M};
use crate::p::{P, P_IDLE, P_RUNNING, P_SYSCALL, P_USER};
use crate::sched::deadlock::check_dead;
use crate::sched::idle::{handoff_wakes_futile, wakep, wakep_after_sc_publish};
use crate::sched::state::sched_if_started;
use crate::threadg::{make_runnable, thread_g, EXT_ACTIVE};

/// Guard returned by [`enter`]; leaves runtime mode on drop (outermost call only). `syscall`:
/// entered from inside `blocking`, so the P goes back to `P_SYSCALL`, not `P_USER`.
pub(crate) struct EnterGuard(Option<GRef>, bool);

impl Drop for EnterGuard {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            let d = g.0.rt_depth.get() - 1;
            g.0.rt_depth.set(d);
            if d == 0 {
                leave_to(if self.1 { P_SYSCALL } else { P_USER });
            }
        }
    }
}

impl EnterGuard {
    /// Drops the guard for a caller that knows this thread's M is `m`: read with no switch
    /// since, or returned by the switch that resumed the caller ([`suspend`]); one thread-local
    /// read less than `drop`.
    #[inline]
    fn leave_on(self, m: &'static M) {
        let this = std::mem::ManuallyDrop::new(self);
        if let Some(g) = this.0 {
            let d = g.0.rt_depth.get() - 1;
            g.0.rt_depth.set(d);
            if d == 0 {
                if let Some(p) = m.p.get() {
                    // Release: pairs with sysmon's Acquire CAS when it retakes the P.
                    p.status.store((if this.1 { P_SYSCALL } else { P_USER }) | m.tag, Ordering::Release);
                }
            }
        }
    }
}

/// Enters runtime mode from goroutine code (see the module docs). Nesting is counted on the G
/// (not inferred from the P's status: after a retake the P is RUNNING for *another* M).
// `inline(always)`: on the park/ready path a call costs more than the body's fast path, and
// the inliner's budget for `ready` is easily tipped.
#[inline(always)]
pub(crate) fn enter() -> EnterGuard {
    let m = match current_m() {
        Some(m) => m,
        None => return EnterGuard(None, false),
    };
    let g = match m.curg() {
        Some(g) => g,
        // Scheduler context (commit closures, timer callbacks): the M already owns its P.
        None => return EnterGuard(None, false),
    };
    enter_on(m, g)
}

/// [`enter`] for a caller that has just read `m = current_m()` and `g = m.curg()` itself (one
/// thread-local read less on a hot path). `enter` never switches goroutines, so `m` stays this
/// thread's M until the caller next parks or yields.
#[inline]
pub(crate) fn enter_on(m: &'static M, g: GRef) -> EnterGuard {
    let d = g.0.rt_depth.get();
    g.0.rt_depth.set(d + 1);
    if d > 0 {
        return EnterGuard(Some(g), false);
    }
    if let Some(p) = m.p.get() {
        // Ours unless sysmon took it, even if it is in `P_USER` again for another M (the tag):
        // taking it from that M would leave its goroutine running without a P, unaware.
        if p.gate.enter(&p.status, P_USER | m.tag, P_RUNNING) {
            return EnterGuard(Some(g), false);
        }
    }
    // The slow path: the P is not ours in user mode (a fresh M resumes us RUNNING, but then
    // depth was already > 0 and we returned above).
    if g.0.status.load(Ordering::Relaxed) == g::SYSCALL {
        enter_in_syscall(m);
        return EnterGuard(Some(g), true);
    }
    // sysmon took the P while we ran user code.
    m.p.set(None);
    reacquire_p(m);
    EnterGuard(Some(g), false)
}

/// Runtime code called from inside `blocking` (the goroutine is in SYSCALL, its P in
/// `P_SYSCALL`, which sysmon may hand off at any moment): take the P back for the duration, as
/// `exitsyscall` would, or, if sysmon already took it, go on without one (a readied goroutine
/// then goes to the global queue and `wakep` finds it an M). Never take another P here: the
/// goroutine is still in its system call, and `exitsyscall` would drop that P again, stranding
/// whatever was queued on it without an M.
fn enter_in_syscall(m: &'static M) {
    if let Some(p) = m.p.get() {
        // Acquire: pairs with entersyscall's Release (the P is ours again, as in exitsyscall).
        if p.status.compare_exchange(P_SYSCALL | m.tag, P_RUNNING, Ordering::Acquire, Ordering::Relaxed).is_err() {
            m.p.set(None);
        }
    }
}

/// Leaves runtime mode: the current P (whichever it is now) goes back to `P_USER`.
#[inline]
pub(crate) fn leave() {
    leave_to(P_USER);
}

/// Leaves runtime mode with the current P (if any) in `status`: `P_USER`, or `P_SYSCALL` for
/// runtime code that ran inside `blocking`.
#[inline]
fn leave_to(status: u32) {
    if let Some(m) = current_m() {
        if let Some(p) = m.p.get() {
            // Release: pairs with sysmon's Acquire CAS when it retakes the P.
            p.status.store(status | m.tag, Ordering::Release);
        }
    }
}

/// A goroutine that lost its P tries to pick up an idle one.
fn reacquire_p(m: &'static M) {
    if let Some(s) = sched_if_started() {
        if let Some(p) = s.try_pidleget() {
            m.p.set(Some(p));
            if let Some(g) = m.curg() {
                p.curg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
            }
        }
    }
}

/// At the entry of a blocking operation (where the goroutine may switch out anyway): yields if
/// sysmon asked it to, as a Go goroutine yields at a function's entry once it has been asked.
/// One thread-local load when nobody asked.
#[inline(always)]
pub(crate) fn preempt_point() {
    if crate::m::preempt_requested() {
        preempt_slow();
    }
}

#[cold]
#[inline(never)]
fn preempt_slow() {
    if let Some(m) = current_m() {
        // Acquire: pairs with sysmon's Release store (`sysmon::ask_to_yield`), so that the
        // goroutine's `preempt` it set first is seen.
        m.preempt.swap(false, Ordering::Acquire);
    }
    safepoint();
}

/// At a safe point (no locks held, about to do something that wants a P): if this goroutine runs
/// without a P, queue it and let it continue once an M with a P picks it up; if sysmon asked it
/// to yield, yield.
pub(crate) fn safepoint() {
    let m = match current_m() {
        Some(m) => m,
        None => return,
    };
    let g = match m.curg() {
        Some(g) => g,
        None => return,
    };
    if m.p.get().is_some() && !g.0.preempt.load(Ordering::Relaxed) {
        return;
    }
    if g.0.status.load(Ordering::Relaxed) == g::SYSCALL {
        return; // inside `blocking`: it gives up or regains its P only in exitsyscall
    }
    if g.0.rt_depth.get() > 0 {
        return; // runtime code may hold the runtime's own locks: it leaves runtime mode first
    }
    // Suspend only in runtime mode: the M that resumes us does so with its P RUNNING.
    let _e = enter();
    match current_m().and_then(|m| m.p.get()) {
        None => {
            suspend(g, Yield::NeedP);
        }
        Some(_) => {
            if g.0.preempt.swap(false, Ordering::Relaxed) {
                crate::hog::count_yield();
                suspend(g, Yield::Gosched);
            }
        }
    }
}

/// Switches from goroutine `g` to its M's scheduler loop with `y`.
///
/// Records the park site first: the registers at a point of the frame this is inlined into
/// (the park's caller's, see the module docs), which stays live and unchanged (with every
/// caller's frame) until the goroutine is resumed, so a profiler can unwind from them, by frame
/// pointers or CFI, while the goroutine is parked. The pc, sp and fp are read together by one
/// `asm!` at one point of that frame, so the unwind tables' rule at that pc holds for that sp.
///
/// Returns the M that resumed the goroutine: this thread's M until the goroutine next switches.
#[inline(always)]
pub(crate) fn suspend(g: GRef, y: Yield) -> &'static M {
    let regs = crate::unwind::Regs::here();
    g.0.park_pc.store(regs.pc, Ordering::Relaxed);
    g.0.park_sp.store(regs.sp, Ordering::Relaxed);
    g.0.park_fp.store(regs.fp, Ordering::Relaxed);
    let yl = g.0.yielder.get();
    debug_assert!(!yl.is_null());
    // SAFETY: yielder was set by goroutine_main to the coroutine's Yielder, which lives at the
    // base of this goroutine's stack for as long as the coroutine runs; we are on that stack.
    let m = resumed_by(unsafe { (*yl).suspend(y) });
    debug_assert!(current_m().is_some_and(|cur| std::ptr::eq(cur, m)), "resumed by another M than this thread's");
    m
}

/// The current G: the running goroutine, or on a plain OS thread that thread's stand-in G.
pub fn current() -> GRef {
    if let Some(m) = current_m() {
        if let Some(g) = m.curg() {
            return g;
        }
    }
    thread_g()
}

/// Whether the caller runs on a goroutine.
pub fn in_goroutine() -> bool {
    current_m().is_some_and(|m| !m.curg.load(Ordering::Relaxed).is_null())
}

/// Parks the current G with `reason` until [`ready`] is called for it: the primitive under every
/// blocking operation of the runtime. To build a primitive of your own, [`Parker`](crate::sync::Parker) does this
/// safely.
///
/// `commit(g)` runs once the G has stopped running: on a goroutine, on its M after the switch,
/// with the G already marked waiting; on a plain OS thread, on the thread itself just before it
/// blocks. It is where the G is handed to whoever will wake it, typically by pushing it on a
/// wait queue and releasing that queue's lock. It returns true to stay parked, false to resume
/// at once.
///
/// While parked, the goroutine's stack is frozen: wait-queue nodes may live on it and be
/// referenced by raw pointer from other threads until the G is readied. On a plain OS thread,
/// the thread blocks.
///
/// # Safety
///
/// The runtime takes `commit`'s word for who may wake the G:
///
/// - If `commit` returns true, it has published `g` for exactly one later [`ready`]: to one
///   place (a wait queue, a word) from which exactly one waker will take it. Or it has
///   published `g` nowhere, and then the G stays parked forever.
/// - If it returns false, it has published `g` nowhere: the G runs on at once, and any later
///   `ready` for this park would wake whatever the G waits for next.
/// - From the instant `g` is published, the G may be readied and run on another thread. From
///   then on `commit` may touch the parked goroutine's stack (its locals, wait-queue nodes on
///   it, anything the caller of `park` lent it) or anything the goroutine may free or reuse
///   once it runs only while the goroutine provably cannot get there yet, e.g. because its
///   first act when it runs is to take a lock `commit` still holds (`select!` does this).
///   Simplest is to publish last.
/// - `commit` must not park or block waiting for another goroutine, and must not panic. It
///   runs on the scheduler (or, on a plain thread, inside this park, with the thread already
///   marked waiting), where a nested park would publish the same G twice and a panic would
///   unwind past a published G. Short locks are fine: the runtime's own commits release one.
#[inline(always)]
pub unsafe fn park<F: FnOnce(GRef) -> bool>(reason: WaitReason, commit: F) {
    // SAFETY: the caller's contract, and `parking()` is the caller's own.
    unsafe { park_as(parking(), reason, commit) }
}

/// Who is about to park: a goroutine and the M running it, or a plain thread (its stand-in G).
/// Read once by a blocking operation that names its G before parking (in a wait-queue node)
/// and then parks, so that it pays one thread-local read, not two.
#[derive(Clone, Copy)]
pub(crate) struct Parking {
    m: Option<&'static M>,
    g: GRef,
}

impl Parking {
    /// The G that will park.
    #[inline(always)]
    pub(crate) fn g(self) -> GRef {
        self.g
    }
}

/// The caller, as [`park_as`] takes it.
#[inline(always)]
pub(crate) fn parking() -> Parking {
    if let Some(m) = current_m() {
        if let Some(g) = m.curg() {
            return Parking { m: Some(m), g };
        }
    }
    Parking { m: None, g: thread_g() }
}

/// [`park`] for a caller that already read [`parking`].
///
/// # Safety
///
/// [`park`]'s contract, and `who` was read by this goroutine (or thread) since it last parked
/// or yielded: a goroutine may have moved to another M at a switch.
#[inline(always)]
pub(crate) unsafe fn park_as<F: FnOnce(GRef) -> bool>(who: Parking, reason: WaitReason, commit: F) {
    let (Some(m), g) = (who.m, who.g) else {
        // SAFETY: the caller's contract for `commit` is the one `park_thread` needs.
        return unsafe { park_thread(reason, commit) };
    };
    // Left after the switch back, maybe on another M: the one the switch returns.
    let e = enter_on(m, g);
    g.0.wait_reason.store(reason as u8, Ordering::Relaxed);
    g.0.wait_since.store(coarse_now(), Ordering::Relaxed);
    let mut commit = Some(commit);
    let mut call = |g: GRef| -> bool {
        let f = commit.take().expect("commit runs once");
        f(g)
    };
    let dynref: &mut dyn FnMut(GRef) -> bool = &mut call;
    // SAFETY: erases the closure's lifetime. The pointer is used only by the M loop while this
    // frame is suspended inside `suspend` below, i.e. while `call` is alive (see execute()).
    let raw: crate::m::Commit = unsafe { std::mem::transmute(dynref) };
    // `enter_on` does not switch goroutines: `m` is still this thread's M.
    m.park_commit.set(Some(raw));
    let m = suspend(g, Yield::Park);
    g.0.wait_reason.store(0, Ordering::Relaxed);
    e.leave_on(m);
}

/// Makes a G parked by [`park`] runnable. A goroutine goes to the caller's P's `runnext`, so a
/// handoff (a channel send to a waiting receiver) runs it next; a plain thread is unblocked.
/// Callable from goroutines, plain threads, `park` commits and timer callbacks.
///
/// # Safety
///
/// `g` must have been published to the caller by the `commit` of a [`park`] that returned (or
/// will return) true: the caller took it out of the one place that commit put it (popped it
/// from a wait queue under the queue's lock, swapped it out of a word), so nobody else can
/// ready it for that park. And this must be the only `ready` for that park.
///
/// A `GRef` obtained any other way ([`current`], [`for_each_g`](crate::for_each_g), a copy kept
/// from an earlier park) must not be readied: a G is reused by a new goroutine once its own
/// exits, and a thread parks again after it wakes, so a late or duplicate `ready` wakes a park
/// that never published the G to the caller, while that park's wait-queue nodes may still be
/// linked and its stack frames gone once it runs on. Readying a G that is not parked at all
/// panics.
pub unsafe fn ready(g: GRef) {
    // SAFETY: the caller's contract is make_runnable's.
    let Some(g) = (unsafe { make_runnable(g, "ready") }) else { return };
    // `enter`, with the M read once: nothing here parks or yields, so `m` stays this thread's M.
    let Some(m) = current_m() else {
        global().push(g);
        return wakep();
    };
    let e = match m.curg() {
        Some(cur) if cur.0.rt_depth.get() == 0 => {
            if let Some(p) = m.p.get() {
                // SAFETY: `m` is this thread's M, running `cur` in user mode, and `p` its P.
                return unsafe { ready_from_user(m, cur, p, g) };
            }
            enter_on(m, cur)
        }
        Some(cur) => enter_on(m, cur),
        // Scheduler context (commit closures, timer callbacks): the M already owns its P.
        None => EnterGuard(None, false),
    };
    // SAFETY: after entering, this M owns its P (if it has one) in runtime mode.
    unsafe { put_next(m.p.get(), g) };
    e.leave_on(m);
}

/// [`ready`] for a goroutine the scheduler's timer pass woke: into `p`'s `runnext` with `next`
/// (the pass's first, most overdue sleeper: it runs before what was already queued, as Go's
/// `goready` from a timer does), else to the tail of `p`'s run queue, so that the rest run in the
/// order their timers fired. The caller calls [`wakep`] once for the pass.
///
/// # Safety
///
/// As for [`ready`]; and the caller's M owns `p` in scheduler context.
pub(crate) unsafe fn ready_from_timer(p: &'static P, g: GRef, next: bool) {
    // SAFETY: the caller's contract is make_runnable's.
    let Some(g) = (unsafe { make_runnable(g, "timer") }) else { return };
    // SAFETY: the caller owns `p` (contract).
    unsafe { p.runqput(g, next) };
}

/// Queues the runnable `g` to run next on `p` (or, without a P, on the global queue) and wakes
/// an M for it if the spinning protocol asks for one.
///
/// # Safety
///
/// The caller's M owns `p` in runtime mode.
#[inline]
pub(crate) unsafe fn put_next(p: Option<&'static P>, g: GRef) {
    match p {
        Some(p) => {
            // SAFETY: the caller owns `p` (contract).
            unsafe { p.runqput(g, true) };
            // `runqput(.., true)` published `g` with a SeqCst swap into `runnext`.
            wakep_after_sc_publish();
        }
        None => {
            global().push(g);
            wakep();
        }
    }
}

/// [`ready`] from goroutine code in user mode (`cur` on `m`, whose P is `p`), without entering
/// runtime mode: publishing into `runnext` is one atomic swap, which needs no ownership of the
/// P, so the enter's CAS and the leave's store are saved (a ping-pong readies once per
/// operation). Ownership is needed only for a G the swap displaces, which goes to the P's queue.
/// `p` may have been taken from us meanwhile and left idle: `runnext.rs` (invariant 2) makes
/// sure that `g` does not stay in its slot.
///
/// # Safety
///
/// As for [`ready`]; `m` is this thread's M, running `cur` with `rt_depth` 0, and `p` is `m.p`.
#[inline]
unsafe fn ready_from_user(m: &'static M, cur: GRef, p: &'static P, g: GRef) {
    let r = p.runnext.publish_unowned(g.as_ptr() as usize, &p.status, P_IDLE);
    if r.displaced != 0 {
        // SAFETY: runnext only ever holds pointers made from GRefs.
        let old = unsafe { GRef::from_ptr(r.displaced as *const G) };
        let e = enter_on(m, cur);
        match m.p.get() {
            // SAFETY: after entering, this M owns its P in runtime mode.
            Some(p2) => unsafe { p2.runqput(old, false) },
            None => global().push(old),
        }
        e.leave_on(m);
    }
    if r.took_back {
        global().push(g);
        return wakep();
    }
    // A hand-off into an empty slot, while wakes keep finding nothing, wakes nobody (`idle.rs`,
    // the exception to the spinning protocol).
    if r.displaced == 0 && handoff_wakes_futile() {
        return;
    }
    // The publish was a SeqCst swap.
    wakep_after_sc_publish();
}

/// Runs `f` with the current M's P if the caller owns one in runtime mode.
pub(crate) fn with_current_p<R>(f: impl FnOnce(Option<&'static P>) -> R) -> R {
    f(current_m().and_then(|m| m.p.get()))
}

/// [`park`] on a plain OS thread (or an M outside any goroutine): blocks the thread.
///
/// # Safety
/// As for [`park`].
unsafe fn park_thread<F: FnOnce(GRef) -> bool>(reason: WaitReason, commit: F) {
    let g = thread_g();
    // An M parking in scheduler context (a misuse we tolerate) is not an outside thread.
    let ext = isize::from(g.0.outside.load(Ordering::Relaxed));
    g.0.wait_reason.store(reason as u8, Ordering::Relaxed);
    // SeqCst: ordered with ready's CAS; Release would do, SeqCst keeps check_dead's view simple.
    g.0.status.store(g::WAITING, Ordering::SeqCst);
    EXT_ACTIVE.fetch_sub(ext, Ordering::SeqCst);
    if !commit(g) {
        g.0.status.store(g::RUNNING, Ordering::Relaxed);
        EXT_ACTIVE.fetch_add(ext, Ordering::SeqCst);
        return;
    }
    if let Some(s) = sched_if_started() {
        check_dead(s);
    }
    // Acquire: pairs with ready's AcqRel CAS.
    while g.0.status.load(Ordering::Acquire) == g::WAITING {
        std::thread::park();
    }
    // Counted active again by `ready`, before it made us runnable.
    g.0.status.store(g::RUNNING, Ordering::Relaxed);
}

/// Yields the processor: the goroutine goes to the back of its P's queue and others run (Go's
/// `runtime.Gosched`). On a plain thread, `std::thread::yield_now`.
#[inline(always)]
pub fn yield_now() {
    let Some((m, g)) = current_m().and_then(|m| Some((m, m.curg()?))) else {
        return yield_thread();
    };
    let e = enter_on(m, g);
    // `enter_on` does not switch goroutines: `m` is still this thread's M.
    let y = if m.p.get().is_none() {
        Yield::NeedP
    } else {
        g.0.preempt.store(false, Ordering::Relaxed);
        Yield::Gosched
    };
    let m = suspend(g, y);
    e.leave_on(m);
}

/// [`yield_now`] on a plain thread, out of the inlined body.
#[cold]
#[inline(never)]
fn yield_thread() {
    std::thread::yield_now()
}
