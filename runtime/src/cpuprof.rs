//! CPU profile sampling (Go 1.18+'s design): SIGPROF from a per-M CPU-time timer, stacks
//! unwound inside the handler into a preallocated lock-free buffer that the profiler drains.
//!
//! # Timers
//!
//! Each M gets its own timer on its thread's CPU clock (`pthread_getcpuclockid`, so the thread
//! that starts the profile arms every existing M at once, a goroutine that never yields
//! included) delivering SIGPROF to that very thread (`SIGEV_THREAD_ID`), with the first expiry
//! randomised in `(0, period]` so that Ms do not tick in step. An M created later arms its own
//! the first time it starts a goroutine (`on_execute`: one relaxed load per `execute` when
//! nothing changed). Other threads are covered by the process's `setitimer(ITIMER_PROF)`. The
//! handler keeps one source per thread, as Go's `validSIGPROF` does: `SI_TIMER` on a thread
//! whose own timer is armed for this profile, `SI_KERNEL` (the process timer) on every other.
//! The kernel may hand the process timer's signal to any thread, a sleeping one included, so a
//! thread takes it only if it used at least half a period of CPU since the last one it took.
//! A per-thread timer's signal that
//! coalesced expirations reports them in `si_overrun`: a sample weighs `1 + si_overrun` periods.
//!
//! # The handler
//!
//! Runs on the thread's signal stack (Ms get 64 KiB, see `stack::overflow::ensure_altstack`),
//! saves and restores `errno`, allocates nothing and takes no lock:
//! - the interrupted registers come from the `ucontext`;
//! - on an M, the stack walked is the running goroutine's if the interrupted stack pointer is
//!   inside it, else the M's own (scheduler code), else, if it is on the M's spare stack (a walk
//!   the goroutine asked for, `stack/spare.rs`), the spare stack's frames followed by the
//!   goroutine's from where it switched; anything else (mid-switch, on a stack that is none of
//!   these) is counted as a lost sample, shown as the pseudo-frame `gort::lost_samples`;
//! - the walk is the runtime's unwinder with [`WalkCtx::NoAllocate`] (every read bounds-checked);
//!   a plain thread records its interrupted pc only, since its signal stack may be std's small
//!   one;
//! - the sample goes into a slot of `BUF` claimed with one `fetch_add` and one CAS; a full
//!   buffer counts the sample as lost.
//!
//! # Invariants of the buffer
//!
//! 1. A slot's state goes `FREE -> WRITING` (a writer's CAS), `WRITING -> FULL` (that writer,
//!    Release), `FULL -> FREE` (the one reader, Release, after copying it out). Only the holder
//!    of `WRITING` writes the slot's data; only the reader reads it, after an Acquire load of
//!    `FULL`.
//! 2. There is one reader at a time (`drain` holds `READER`).
//! 3. A writer that finds its slot not `FREE` (the reader has not caught up) drops the sample
//!    and counts it lost; it never waits.
//!
//! SIGPROF's disposition is never reset once installed: a signal may still be in flight after a
//! profile stops, and it then finds `RATE == 0` and returns.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::g::{labels_from_ref, Labels};
use crate::m::{current_m, M};
use crate::traceback::{cached_thread_stack_bounds, walk_interrupted_on_spare, MAX_DEPTH};
use crate::unwind::{walk, Regs, WalkCtx};

/// Samples per second while a profile runs; 0: off.
static RATE: AtomicU32 = AtomicU32::new(0);
/// Bumped at every start and stop: an M re-arms (or disarms) its timer when it sees a change.
static GEN: AtomicU64 = AtomicU64::new(0);
/// Sample periods dropped because the buffer was full.
static LOST: AtomicU64 = AtomicU64::new(0);
/// Samples the handler took and the nanoseconds it spent on them (its cost, for the benchmarks).
static HANDLED: AtomicU64 = AtomicU64::new(0);
static HANDLER_NS: AtomicU64 = AtomicU64::new(0);
/// Whether our SIGPROF handler is installed (never uninstalled).
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Serialises start, stop and the handler installation.
static CONTROL: Mutex<()> = Mutex::new(());
/// The single reader of the buffer.
static READER: Mutex<()> = Mutex::new(());

const FREE: u32 = 0;
const WRITING: u32 = 1;
const FULL: u32 = 2;
/// Slots in the buffer: at 1 kHz on 2 Ms, about half a second of samples between drains.
const SLOTS: usize = 1024;

struct Slot {
    state: AtomicU32,
    data: UnsafeCell<SlotData>,
}

#[derive(Clone, Copy)]
struct SlotData {
    /// Periods this sample stands for (`1 + si_overrun`).
    weight: u32,
    /// A reference to the running goroutine's labels (`G::labels_ref`), or null.
    labels: *const Labels,
    len: u32,
    pcs: [usize; MAX_DEPTH],
}

// SAFETY: `data` is written only by the writer holding the slot in WRITING and read only by the
// reader after it saw FULL (invariant 1 in the module docs); the state word orders the two. The
// labels pointer in it is a reference owned by the slot, `Labels` being `Send + Sync`.
unsafe impl Sync for Slot {}

static BUF: [Slot; SLOTS] = [const {
    Slot {
        state: AtomicU32::new(FREE),
        data: UnsafeCell::new(SlotData { weight: 0, labels: std::ptr::null(), len: 0, pcs: [0; MAX_DEPTH] }),
    }
}; SLOTS];
/// Next slot a writer claims (modulo SLOTS).
static HEAD: AtomicUsize = AtomicUsize::new(0);
/// Next slot the reader looks at (modulo SLOTS); touched only under READER.
static TAIL: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's CPU time at the last process-timer sample it took.
    static LAST_CPU: Cell<u64> = const { Cell::new(0) };
    /// Set while this thread runs the SIGPROF handler (tests check the handler allocates nothing).
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Why a CPU profile could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpuProfileError {
    /// A profile is running already (Go's "cpu profiling already in use").
    InUse,
    /// Someone else's SIGPROF handler is installed (another profiler): gort does not replace it.
    ForeignHandler,
    /// The rate is out of range, or the system refused a timer or the handler.
    Os(String),
}

impl std::fmt::Display for CpuProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CpuProfileError::InUse => f.write_str("cpu profiling already in use"),
            CpuProfileError::ForeignHandler => f.write_str(
                "cpu profiling unavailable: another SIGPROF handler is installed (another profiler?); \
                 gort does not replace it",
            ),
            CpuProfileError::Os(e) => write!(f, "cpu profiling unavailable: {e}"),
        }
    }
}

impl std::error::Error for CpuProfileError {}

/// Starts sampling at `hz` samples per second of CPU time per thread. Fails if a profile runs
/// already or another SIGPROF handler is installed.
pub fn start(hz: u32) -> Result<(), CpuProfileError> {
    if hz == 0 || hz > 1_000_000 {
        return Err(CpuProfileError::Os(format!("rate {hz} Hz out of range (1 to 1000000)")));
    }
    let _c = CONTROL.lock().unwrap_or_else(|e| e.into_inner());
    if RATE.load(Ordering::Relaxed) != 0 {
        return Err(CpuProfileError::InUse);
    }
    install_handler()?;
    // A handler that was already past its RATE check when the last profile stopped may have
    // filled a slot after that profile's final drain: drop such leftovers.
    drain(|_, _, _| {});
    LOST.store(0, Ordering::Relaxed);
    // Release: an M that sees the new GEN (Acquire in on_execute) sees the rate.
    RATE.store(hz, Ordering::Release);
    let gen = GEN.fetch_add(1, Ordering::Release) + 1;
    for m in crate::m::all() {
        arm(m, gen, hz);
    }
    set_process_timer(hz)
}

/// Stops sampling. Samples already taken stay in the buffer for [`drain`].
pub fn stop() {
    let _c = CONTROL.lock().unwrap_or_else(|e| e.into_inner());
    if RATE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let _ = set_process_timer(0);
    RATE.store(0, Ordering::Release);
    GEN.fetch_add(1, Ordering::Release);
    // Any signal still coming finds RATE == 0.
    for m in crate::m::all() {
        disarm(m);
    }
}

/// The sampling rate of the running profile (0: none).
pub fn rate() -> u32 {
    RATE.load(Ordering::Relaxed)
}

/// Sample periods lost since the profile started because the buffer was full (samples taken
/// between stacks are in the buffer, with an empty stack).
pub fn lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// Samples taken since the process started and the total nanoseconds the handler spent taking
/// them (thread CPU time inside the handler): what profiling costs per sample.
#[doc(hidden)]
pub fn handler_cost() -> (u64, u64) {
    (HANDLED.load(Ordering::Relaxed), HANDLER_NS.load(Ordering::Relaxed))
}

/// This thread's CPU time in ns (`clock_gettime` is async-signal-safe).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether the calling thread is inside the SIGPROF handler (for tests of its allocations).
#[doc(hidden)]
pub fn in_handler() -> bool {
    IN_HANDLER.with(|c| c.get())
}

/// Hands every sample in the buffer to `f(stack, weight, labels)`, leaf first (the first address
/// is the interrupted pc, the rest return addresses), with the running goroutine's labels, and
/// frees the slots. An empty stack is a sample taken between stacks. Call it often enough that
/// the buffer does not fill (a few times a second at 1 kHz).
pub fn drain(mut f: impl FnMut(&[usize], u32, Option<Labels>)) {
    let _r = READER.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let t = TAIL.load(Ordering::Relaxed);
        let slot = &BUF[t % SLOTS];
        // Acquire: pairs with the writer's Release store of FULL (invariant 1).
        if slot.state.load(Ordering::Acquire) != FULL {
            // Empty, or a writer claimed it and has not finished: the rest waits for the next
            // drain (writers that lap the reader meanwhile drop their samples, never corrupt).
            return;
        }
        // SAFETY: the slot is FULL: its writer is done and nobody writes it until we free it.
        let d = unsafe { *slot.data.get() };
        // Release: pairs with a writer's CAS (Acquire) from FREE: our copy happens-before its
        // writes.
        slot.state.store(FREE, Ordering::Release);
        TAIL.store(t + 1, Ordering::Relaxed);
        // SAFETY: the handler took this reference for the slot, and the slot is ours now.
        let labels = unsafe { labels_from_ref(d.labels) };
        f(&d.pcs[..d.len as usize], d.weight, labels);
    }
}

/// Arms the calling M's own timer if a profile started since it last looked (an M created after
/// the start). Called by `execute` before it runs a goroutine.
#[inline]
pub(crate) fn on_execute(m: &'static M) {
    // Relaxed: a change is picked up at the next execute at worst; the slow path reloads.
    if m.cpu_gen.load(Ordering::Relaxed) != GEN.load(Ordering::Relaxed) {
        rearm(m);
    }
}

#[cold]
fn rearm(m: &'static M) {
    let _c = CONTROL.lock().unwrap_or_else(|e| e.into_inner());
    // Acquire: pairs with start's Release stores (the rate that goes with this generation).
    let gen = GEN.load(Ordering::Acquire);
    let hz = RATE.load(Ordering::Acquire);
    if hz == 0 {
        m.cpu_gen.store(gen, Ordering::Relaxed);
        return;
    }
    arm(m, gen, hz);
}

/// Arms `m`'s timer on its thread's CPU clock for generation `gen` at `hz`. Caller holds
/// `CONTROL`. On failure `m` keeps no timer and the process timer covers it.
fn arm(m: &'static M, gen: u64, hz: u32) {
    disarm(m);
    let period = 1_000_000_000u64 / hz as u64;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `m.pthread` is a live thread (Ms never exit); `clock` is a valid out-pointer.
    if unsafe { libc::pthread_getcpuclockid(m.pthread, &mut clock) } != 0 {
        m.cpu_gen.store(gen, Ordering::Relaxed);
        return;
    }
    // SAFETY: zeroed is a valid sigevent (the padding is private); we set the fields we use.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_THREAD_ID;
    sev.sigev_signo = libc::SIGPROF;
    sev.sigev_notify_thread_id = m.tid;
    let mut id: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `sev` and `id` are valid for the call; the timer signals `m`'s thread only.
    if unsafe { libc::timer_create(clock, &mut sev, &mut id) } != 0 {
        m.cpu_gen.store(gen, Ordering::Relaxed);
        return;
    }
    // First expiry at a random point of the first period, so that Ms do not tick in step.
    let first = 1 + crate::fastrand::fastrand() % period;
    let spec = libc::itimerspec { it_interval: timespec(period), it_value: timespec(first) };
    // SAFETY: `id` was just created by timer_create; `spec` is valid.
    if unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) } != 0 {
        // SAFETY: `id` is ours and not armed.
        unsafe { libc::timer_delete(id) };
        m.cpu_gen.store(gen, Ordering::Relaxed);
        return;
    }
    *m.cpu_timer.lock() = Some(id as usize);
    // Release: the handler that sees the armed generation (its Acquire) sees the flag below.
    m.cpu_armed.store(true, Ordering::Relaxed);
    m.cpu_gen.store(gen, Ordering::Release);
}

/// Deletes `m`'s timer, if any.
fn disarm(m: &'static M) {
    m.cpu_armed.store(false, Ordering::Relaxed);
    if let Some(id) = m.cpu_timer.lock().take() {
        // SAFETY: `id` came from timer_create in `arm` and was taken out of the M's slot under its
        // lock, so it is deleted once.
        unsafe { libc::timer_delete(id as libc::timer_t) };
    }
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as libc::c_long }
}

/// Sets (or, with 0, clears) the process CPU timer that covers threads without their own.
fn set_process_timer(hz: u32) -> Result<(), CpuProfileError> {
    let us = if hz == 0 { 0 } else { (1_000_000 / hz as u64).max(1) };
    let tv = libc::timeval { tv_sec: (us / 1_000_000) as libc::time_t, tv_usec: (us % 1_000_000) as libc::suseconds_t };
    let it = libc::itimerval { it_interval: tv, it_value: tv };
    // SAFETY: `it` is a valid itimerval; the old value is not asked for.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &it, std::ptr::null_mut()) } != 0 {
        return Err(CpuProfileError::Os(format!("setitimer: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

fn install_handler() -> Result<(), CpuProfileError> {
    if INSTALLED.load(Ordering::Relaxed) {
        return Ok(());
    }
    match crate::sig::install_unless_foreign(libc::SIGPROF, handler) {
        Ok(true) => {}
        Ok(false) => return Err(CpuProfileError::ForeignHandler),
        Err(e) => return Err(CpuProfileError::Os(format!("sigaction: {e}"))),
    }
    INSTALLED.store(true, Ordering::Relaxed);
    Ok(())
}

extern "C" fn handler(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let _errno = crate::sig::ErrnoGuard::save();
    IN_HANDLER.with(|c| c.set(true));
    // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler.
    unsafe { sample(info, ctx) };
    IN_HANDLER.with(|c| c.set(false));
}

/// # Safety
/// `info` and `ctx` are what the kernel passed to the SIGPROF handler.
unsafe fn sample(info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Acquire: pairs with start's Release (a sample belongs to a running profile).
    if RATE.load(Ordering::Acquire) == 0 {
        return;
    }
    // SAFETY: `info` is valid (contract).
    let code = unsafe { (*info).si_code };
    let m = current_m();
    // Acquire: pairs with `arm`'s Release store of the generation.
    let own_timer = m.is_some_and(|m| {
        m.cpu_gen.load(Ordering::Acquire) == GEN.load(Ordering::Relaxed) && m.cpu_armed.load(Ordering::Relaxed)
    });
    let t0 = thread_cpu_ns();
    // One source per thread (module docs). The kernel may deliver the process timer's signal to
    // any thread that does not block it, sleeping ones included: take it only on a thread that
    // used at least half a period of CPU since the last one it took.
    if !own_timer && code == libc::SI_KERNEL {
        let half = 500_000_000 / RATE.load(Ordering::Relaxed).max(1) as u64;
        if t0.saturating_sub(LAST_CPU.with(|c| c.get())) < half {
            return;
        }
        LAST_CPU.with(|c| c.set(t0));
    }
    let weight = match (own_timer, code) {
        (true, libc::SI_TIMER) => {
            // `si_overrun` follows `si_tid` in the timer member of siginfo's union (offset 20 on
            // 64-bit Linux); the libc crate does not name it.
            // SAFETY: for SI_TIMER the kernel filled the timer member; the read is in bounds.
            let overrun = unsafe { *((info as *const u8).add(20) as *const i32) };
            1 + overrun.max(0) as u32
        }
        (false, libc::SI_KERNEL) => 1,
        _ => return,
    };
    // SAFETY: `ctx` is the handler's ucontext (contract).
    let regs = unsafe { Regs::from_ucontext(ctx) };
    let idx = HEAD.fetch_add(1, Ordering::Relaxed);
    let slot = &BUF[idx % SLOTS];
    // Acquire: pairs with the reader's Release store of FREE (its copy is done).
    if slot.state.compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed).is_err() {
        LOST.fetch_add(weight as u64, Ordering::Relaxed);
        return;
    }
    // SAFETY: we hold the slot in WRITING (invariant 1): nobody else touches its data.
    let d = unsafe { &mut *slot.data.get() };
    d.weight = weight;
    d.labels = std::ptr::null();
    d.len = 0;
    match m {
        Some(m) => {
            let g = m.curg();
            let gb = g.map(|g| (g.0.stack_lo.load(Ordering::Relaxed), g.0.stack_hi.load(Ordering::Relaxed)));
            let tb = cached_thread_stack_bounds();
            let inside = |b: (usize, usize)| b.1 != 0 && regs.sp >= b.0 && regs.sp < b.1;
            let bounds = match gb {
                Some(b) if inside(b) => {
                    if let Some(g) = g {
                        // SAFETY: `g` runs on this thread, interrupted by this handler
                        // (labels_ref's signal-handler case); the reference goes with the slot.
                        d.labels = unsafe { g.0.labels_ref() };
                    }
                    Some(b)
                }
                _ if inside(tb) => Some(tb),
                _ => None,
            };
            let len = if let Some(b) = bounds {
                // SAFETY: `b` are the bounds of the stack the interrupted code runs on (its sp is
                // inside), whose frames stay put while this handler runs on the signal stack;
                // every read is bounds-checked and the walk allocates nothing.
                Some(unsafe { walk(regs, b, 0, &mut d.pcs, WalkCtx::NoAllocate) }.len)
            } else if let (Some(g), Some(gb), true) = (g, gb, m.spare.contains(regs.sp)) {
                // SAFETY: `g` runs on this thread, interrupted (labels_ref's handler case).
                d.labels = unsafe { g.0.labels_ref() };
                // SAFETY: the interrupted sp is on this M's spare stack, and `gb` are the bounds
                // of the goroutine it runs.
                Some(unsafe { walk_interrupted_on_spare(regs, m, gb, &mut d.pcs) })
            } else {
                None
            };
            if let Some(len) = len {
                d.len = len as u32;
                if d.len == 0 {
                    d.pcs[0] = regs.pc;
                    d.len = 1;
                }
            }
            // No bounds: between stacks (a switch in progress); an empty stack marks it.
        }
        None => {
            d.pcs[0] = regs.pc;
            d.len = 1;
        }
    }
    // Release: pairs with the reader's Acquire load (our writes to `data` come first).
    slot.state.store(FULL, Ordering::Release);
    HANDLED.fetch_add(1, Ordering::Relaxed);
    HANDLER_NS.fetch_add(thread_cpu_ns().saturating_sub(t0), Ordering::Relaxed);
}
