//! Running a goroutine on an M (Go's `execute`, `goexit0`): the coroutine's first frame, what
//! the M does when the goroutine switches out, and recycling its stack and G when it finishes.

use std::sync::atomic::Ordering;

use corosensei::{Coroutine, CoroutineResult};

use crate::clock::ticks;
use crate::g::{self, GRef, GYielder, Resumer, Yield, G};
use crate::globrunq::global;
use crate::m::{set_lockedm, M};
use crate::p::{GFREE_MAX, P, STACK_CACHE_MAX};
use crate::park::{enter, leave};
use crate::sched::idle::wakep;
use crate::sched::state::Sched;
use crate::schedstats::{TIMING, TIMING_METRICS, TIMING_WALL};
use crate::stack::Stack;
use crate::wall;

/// Runs on the goroutine's own stack: the first frame of every goroutine.
pub(crate) fn goroutine_main(y: &GYielder, g: GRef) {
    g.0.yielder.set(y as *const GYielder);
    // SAFETY: the G is RUNNING on this M; its exec is ours (state table in g.rs).
    let entry = unsafe { (*g.0.exec.get()).entry.take() };
    // The M resumed us in runtime mode (P RUNNING, depth 0): hand the P to user mode.
    leave();
    if let Some(t) = entry {
        t.run();
    }
    // Back into runtime mode for the exit path (or notice a lost P: the M copes without one).
    std::mem::forget(enter());
    g.0.rt_depth.set(0);
    g.0.yielder.set(std::ptr::null());
}

/// Runs `g` on `m` until it parks, yields or finishes. Inlined into the M loop, its one
/// caller (see `mstart`).
#[inline(always)]
pub(crate) fn execute(s: &'static Sched, m: &'static M, g: GRef) {
    loop {
        // Waits while a snapshot holds `g`; Acquire: pairs with the Release stores that made it
        // RUNNABLE in ready or spawn, so the fields written by the readier are visible here.
        g::setgstatus_running(g, "execute");
        let p = m.p.get().expect("execute without a P");
        p.schedtick.store(p.schedtick.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        m.curg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
        p.curg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
        g.0.preempt.store(false, Ordering::Relaxed);
        let tm = TIMING.load(Ordering::Relaxed);
        if tm != 0 {
            timed_start(m, p, g, tm);
        }
        crate::cpuprof::on_execute(m);
        crate::mhooks::on_execute(m);
        // SAFETY: the G is RUNNING and owned by this M (state table in g.rs).
        let exec = unsafe { &mut *g.0.exec.get() };
        if exec.co.is_none() {
            let stack = match get_stack(s, p, exec.custom_stack) {
                Ok(st) => st,
                Err(e) => {
                    eprintln!("fatal error: gort: cannot allocate a goroutine stack: {e}");
                    std::process::abort();
                }
            };
            g.0.stack_lo.store(stack.lo(), Ordering::Relaxed);
            g.0.stack_hi.store(stack.hi(), Ordering::Relaxed);
            let (glo, ghi) = stack.guard_range();
            exec.guard_lo = glo;
            exec.guard_hi = ghi;
            exec.guarded = stack.is_guarded();
            exec.co = Some(Coroutine::with_stack(stack, move |y: &GYielder, _: Resumer| goroutine_main(y, g)));
        }
        let r = exec.co.as_mut().expect("coroutine").resume(m.resumer());
        // Back on the M's own stack. The G may have lost its P (hog retake) or taken another.
        m.curg.store(std::ptr::null_mut(), Ordering::Relaxed);
        let pnow = m.p.get();
        if let Some(pp) = pnow {
            pp.curg.store(std::ptr::null_mut(), Ordering::Relaxed);
        }
        let tm = TIMING.load(Ordering::Relaxed);
        if tm != 0 {
            timed_switch_out(m, pnow, g, tm, &r);
        }
        match r {
            CoroutineResult::Return(()) => {
                goexit0(s, m, g);
                return;
            }
            CoroutineResult::Yield(y) => {
                if !exec.guarded {
                    let sp = g.0.park_sp.load(Ordering::Relaxed);
                    if sp != 0 && sp < g.0.stack_lo.load(Ordering::Relaxed) {
                        report_overflow(g, s.stacks.stack_size());
                    }
                }
                match y {
                    Yield::Park => {
                        let commit = m.park_commit.take().expect("a parking goroutine left its commit");
                        // Release: pairs with ready's CAS (Acquire) so the parked state written by
                        // the G (wait reason, regs) is visible to the waker and to scanners.
                        g.0.status.store(g::WAITING, Ordering::Release);
                        // SAFETY: commit points at a closure on the parked G's frozen stack; it
                        // stays valid until the G is resumed, which cannot happen before commit
                        // publishes the G (park's contract), and we never touch it after the call.
                        let keep = unsafe { (*commit)(g) };
                        if keep {
                            return;
                        }
                        // Commit refused: the G runs on (no waker has seen it). A snapshot may
                        // hold it, having seen it WAITING: resuming it waits that out.
                        g::setgstatus(g, g::WAITING, g::RUNNABLE, "refused commit");
                        if tm != 0 {
                            let t = g.0.rare();
                            t.t_park.store(0, Ordering::Relaxed);
                            t.t_ready.store(0, Ordering::Relaxed);
                        }
                        if m.p.get().is_none() {
                            global().push(g);
                            wakep();
                            return;
                        }
                        continue;
                    }
                    Yield::Gosched => {
                        g.0.status.store(g::RUNNABLE, Ordering::Release);
                        match m.p.get() {
                            Some(pp) => {
                                // SAFETY: this M owns its P.
                                unsafe { pp.runqput(g, false) };
                                // With one P, ours, no P is idle for another M to run the G
                                // on: `wakep` would only pay its fence.
                                if s.allp.len() > 1 {
                                    wakep();
                                }
                            }
                            None => {
                                global().push(g);
                                wakep();
                            }
                        }
                        return;
                    }
                    Yield::NeedP => {
                        g.0.status.store(g::RUNNABLE, Ordering::Release);
                        global().push(g);
                        wakep();
                        return;
                    }
                }
            }
        }
    }
}

/// `g` starts running with scheduler timing on: stamps it, records its latency and park, and
/// charges the wall-clock window. Out of line, so that timing off costs `execute` one load.
#[inline(never)]
fn timed_start(m: &'static M, p: &'static P, g: GRef, tm: u8) {
    let t = match m.t_out.replace(0) {
        0 => ticks(),
        t => t,
    };
    let times = g.0.rare();
    times.t_run.store(t, Ordering::Relaxed);
    if tm & TIMING_METRICS != 0 {
        let (t_park, t_ready) = (times.t_park.load(Ordering::Relaxed), times.t_ready.load(Ordering::Relaxed));
        p.stats.record_start(t_park, t_ready, t, g.0.wait_reason.load(Ordering::Relaxed));
    }
    if tm & TIMING_WALL != 0 {
        // SAFETY: this M holds `g` (RUNNING, not yet resumed): its stack is frozen.
        unsafe { wall::run(p.id, g.0, t) };
    }
}

/// `g` switched out with scheduler timing on: stamps it (parked, or runnable again after a
/// yield) and charges the wall-clock window.
#[inline(never)]
fn timed_switch_out(m: &'static M, p: Option<&'static P>, g: GRef, tm: u8, r: &CoroutineResult<Yield, ()>) {
    let t_out = ticks();
    m.t_out.set(t_out);
    let times = g.0.rare();
    times.t_out.store(t_out, Ordering::Relaxed);
    match r {
        CoroutineResult::Yield(Yield::Park) => times.t_park.store(t_out, Ordering::Relaxed),
        CoroutineResult::Yield(_) => {
            times.t_park.store(0, Ordering::Relaxed);
            times.t_ready.store(t_out, Ordering::Relaxed);
        }
        CoroutineResult::Return(()) => {}
    }
    if tm & TIMING_WALL != 0 && matches!(r, CoroutineResult::Return(())) {
        // SAFETY: `g` just finished on this M, which holds it.
        unsafe { wall::exit(p.map_or(0, |p| p.id), g.0, t_out) };
    }
}

#[cold]
fn report_overflow(g: GRef, size: usize) -> ! {
    let name = g.0.name_now();
    crate::stack::overflow::fatal_overflow(g.id(), name.as_deref(), size)
}

/// Counts a goroutine about to be spawned against the guard plan's cap: past it, the goroutine's
/// stack could not be guarded, and (unless unguarded stacks are allowed) the spawn fails with an
/// error that says why and what to change.
pub(crate) fn claim_stack(s: &'static Sched) -> std::io::Result<()> {
    let Some(cap) = s.guards.spawn_cap else { return Ok(()) };
    // Relaxed: a counter; nothing is published through it.
    if s.stack_claims.fetch_add(1, Ordering::Relaxed) < cap {
        return Ok(());
    }
    s.stack_claims.fetch_sub(1, Ordering::Relaxed);
    let how = format!(
        "without lightweight guard pages (MADV_GUARD_INSTALL, Linux 6.13) each guard costs two of the \
         vm.max_map_count = {} memory mappings, and {} guarded stacks are all that fit",
        s.guards.max_map_count, s.guards.budget
    );
    Err(std::io::Error::new(
        std::io::ErrorKind::OutOfMemory,
        format!(
            "gort: {cap} goroutines are alive and another one could not get a guarded stack: {how}; \
             raise the limit (sysctl -w vm.max_map_count=N) or set GORT_UNGUARDED_STACKS=1 to run further \
             goroutines on unguarded stacks, whose overflows are detected only after the fact"
        ),
    ))
}

fn get_stack(s: &'static Sched, p: &'static P, custom: usize) -> std::io::Result<Stack> {
    if custom != 0 {
        return crate::stack::alloc_dedicated(custom);
    }
    // SAFETY: this M owns p.
    let cache = unsafe { p.stacks() };
    if let Some(st) = cache.pop() {
        return Ok(st);
    }
    s.stacks.get_batch(STACK_CACHE_MAX / 2, cache)?;
    match cache.pop() {
        Some(st) => Ok(st),
        None => s.stacks.get(),
    }
}

fn put_stack(s: &'static Sched, p: Option<&'static P>, st: Stack) {
    match p {
        Some(p) => {
            // SAFETY: this M owns p.
            let cache = unsafe { p.stacks() };
            cache.push(st);
            if cache.len() > STACK_CACHE_MAX {
                s.stacks.put_batch(cache.drain(..STACK_CACHE_MAX / 2));
            }
        }
        None => {
            let _ = s.stacks.put(st);
        }
    }
}

/// A goroutine finished: recycle its stack and G.
fn goexit0(s: &'static Sched, m: &'static M, g: GRef) {
    // SAFETY: the G finished on this M; nobody else references its exec.
    let exec = unsafe { &mut *g.0.exec.get() };
    let co = exec.co.take().expect("coroutine");
    let stack = co.into_stack();
    if exec.custom_stack != 0 {
        drop(stack);
    } else {
        if !exec.guarded && s.stacks.check_released(&stack).is_err() {
            report_overflow(g, s.stacks.stack_size());
        }
        put_stack(s, m.p.get(), stack);
    }
    exec.custom_stack = 0;
    // A goroutine that exits wired to its M releases it (Go would end the thread instead; gort's
    // Ms never exit, and the M's thread state is the user's to restore before exiting).
    // Loads before the swaps below: only the G's owner writes these slots, so a slot that reads
    // empty is empty, and most goroutines leave them empty (a swap is a locked instruction).
    if !g.0.lockedm.load(Ordering::Relaxed).is_null() && set_lockedm(g, None) {
        m.lockedg.store(std::ptr::null_mut(), Ordering::Relaxed);
        g.0.lock_count.set(0);
    }
    if s.guards.spawn_cap.is_some() {
        s.stack_claims.fetch_sub(1, Ordering::Relaxed);
    }
    g.0.status.store(g::DEAD, Ordering::Relaxed);
    if g.0.has_name.load(Ordering::Relaxed) {
        g.0.has_name.store(false, Ordering::Relaxed);
        *g.0.rare().name.lock() = None;
    }
    // `block_on`'s spare state word: a waker of it may outlive the goroutine, and a goroutine
    // that reuses this G must not share a word with it (`parker.rs`, `WakerParker`).
    if let Some(r) = g.0.rare_if_any() {
        drop(r.block_on_spare.take());
    }
    if !g.0.labels.load(Ordering::Relaxed).is_null() {
        // SAFETY: the G finished on this M, which owns it until it goes on the free list; the
        // old reference is ours and released by `labels_from_ref`.
        drop(unsafe { crate::g::labels_from_ref(g.0.swap_labels(std::ptr::null())) });
    }
    g.0.stack_lo.store(0, Ordering::Relaxed);
    g.0.stack_hi.store(0, Ordering::Relaxed);
    g.0.park_pc.store(0, Ordering::Relaxed);
    g.0.park_sp.store(0, Ordering::Relaxed);
    g.0.park_fp.store(0, Ordering::Relaxed);
    // Release: a scanner that sees IDLE must not see the old goroutine's fields half-cleared.
    g.0.status.store(g::IDLE, Ordering::Release);
    count_live(s, m.p.get(), -1);
    gfput(s, m.p.get(), g);
}

/// Adds `d` to the live goroutines' count: to `p`'s share, which only its owner (the caller's
/// M, in runtime mode) writes, or without a P to the shared rest.
pub(crate) fn count_live(s: &'static Sched, p: Option<&'static P>, d: isize) {
    match p {
        // Relaxed: a count, read only as a sum (`Sched::live_goroutines`).
        Some(p) => p.nlive.0.store(p.nlive.0.load(Ordering::Relaxed) + d, Ordering::Relaxed),
        None => {
            s.nlive_other.fetch_add(d, Ordering::Relaxed);
        }
    }
}

fn gfput(s: &'static Sched, p: Option<&'static P>, g: GRef) {
    match p {
        Some(p) => {
            // SAFETY: this M owns p.
            let l = unsafe { p.gfree() };
            l.push(g);
            if l.len() > GFREE_MAX {
                s.gfree.lock().extend(l.drain(..GFREE_MAX / 2));
            }
        }
        None => s.gfree.lock().push(g),
    }
}

/// Takes a free G (or allocates one).
pub(crate) fn gfget(s: &'static Sched, p: Option<&'static P>) -> GRef {
    if let Some(p) = p {
        // SAFETY: the caller's M owns p.
        let l = unsafe { p.gfree() };
        if let Some(g) = l.pop() {
            return g;
        }
        let mut gl = s.gfree.lock();
        let take = gl.len().min(GFREE_MAX / 2);
        let at = gl.len() - take;
        l.extend(gl.drain(at..));
        drop(gl);
        if let Some(g) = l.pop() {
            return g;
        }
    } else if let Some(g) = s.gfree.lock().pop() {
        return g;
    }
    g::alloc_g()
}
