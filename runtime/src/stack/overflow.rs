//! Stack overflow -> a clear fatal message: the SIGSEGV/SIGBUS handler, run on a sigaltstack.
//!
//! # Design
//!
//! Goroutine stacks are fixed-size (see `stack/mod.rs`). When a goroutine overflows, it touches the
//! 64 KiB gap below its stack. A guarded gap faults at once; this module turns that fault into a
//! Go-like report naming the goroutine, instead of a bare `Segmentation fault`:
//!
//! ```text
//! runtime: goroutine stack exceeds 262144-byte limit
//! runtime: sp=0x7f3a5c00fff8 stack=[0x7f3a5c010000, 0x7f3a5c050000]
//! fatal error: stack overflow
//!
//! goroutine 7 [name "worker"]: overflowed its 256 KiB stack (fault at 0x7f3a5c00fff0)
//! hint: raise GORT_STACK_SIZE or use gort::Builder::stack_size
//! ```
//!
//! and aborts (SIGABRT), like Go's `fatal error` (which exits with status 2 instead).
//!
//! * [`install_overflow_handler`] (once per process) installs [`handler`] for SIGSEGV and SIGBUS
//!   with `SA_SIGINFO | SA_ONSTACK`, remembering the previous actions.
//! * [`ensure_altstack`] (once per M thread) gives the thread a signal stack if it has none: the
//!   handler cannot run on the overflowed stack itself. std's threads already have one (std's own
//!   overflow handler), so this usually finds one and does nothing.
//! * The handler asks the scheduler which goroutine this thread is running
//!   (`running_stack_info`) and decides whether the fault is that goroutine's overflow:
//!   the fault address is in its gap (or the page just below its stack), or the interrupted stack
//!   pointer is below its stack *and* its gap was touched (an unguarded overflow that ran through
//!   the gap and faulted further down; `stack/mod.rs` explains the gap scheme). Only then does it
//!   report and abort.
//! * A fault while the thread runs on its M's spare stack (`spare.rs`: a stack walk or a profile
//!   record for the goroutine, whose bounds then say nothing about the fault) is ours only if it
//!   hits the spare stack's guard; that is reported as the spare stack's overflow.
//! * Anything else is not ours and is never swallowed: the handler calls the previous handler if
//!   it was a function (std's handler reports overflows of thread stacks' guard pages and
//!   otherwise resets to SIG_DFL), else resets the signal to SIG_DFL and returns, so the faulting
//!   instruction runs again and kills the process with the original signal.
//! * [`fatal_overflow`] prints the same report for an overflow detected after the fact (the gap
//!   checks in `stack/pool.rs`) and aborts.
//!
//! # Async-signal safety
//!
//! The handler allocates nothing and takes no lock: it formats into a fixed buffer on the signal
//! stack and writes it with one `write(2)` loop. The goroutine name is read with `try_lock` on
//! `G::name`; if the lock is held (possibly by the interrupted code itself) the name is omitted,
//! and the guard is leaked rather than unlocked (the process aborts anyway). `errno` is saved and
//! restored around the handler for the chained path.

use std::cell::UnsafeCell;
use std::mem::{self, MaybeUninit};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::g::GRef;
use crate::m::current_m;
use crate::stack::{gap_size, page_size};
use crate::unwind::Regs;

/// What the signal handler needs to know about the faulting thread's goroutine.
///
/// `guard_lo..guard_hi` is the stack's gap (`Stack::guard_range`); if the scheduler leaves it
/// empty (`0, 0`) the handler assumes the standard gap `[stack_lo - 64 KiB, stack_lo)`.
/// `signal_stack_info` must return `Some` only while the thread runs that goroutine's code (it is
/// read from a signal handler: no locks, no allocation).
#[derive(Clone, Copy)]
pub(crate) struct SignalStackInfo {
    pub goid: u64,
    pub g: Option<GRef>,
    pub stack_lo: usize,
    pub stack_hi: usize,
    pub guard_lo: usize,
    pub guard_hi: usize,
}

/// Size of the signal stack [`ensure_altstack`] maps (plus a guard page below it).
const ALTSTACK_SIZE: usize = 64 * 1024;
/// How much of a goroutine name the report prints.
const MAX_NAME: usize = 120;

/// A previous `sigaction`, written once (before our handler is installed) and then only read.
struct SavedAction {
    act: UnsafeCell<MaybeUninit<libc::sigaction>>,
    saved: AtomicBool,
}

// SAFETY: `act` is written once inside `INSTALL.call_once`, before `saved` is set (Release) and
// before the handler that reads it is installed; afterwards it is only read.
unsafe impl Sync for SavedAction {}

static OLD_SEGV: SavedAction =
    SavedAction { act: UnsafeCell::new(MaybeUninit::uninit()), saved: AtomicBool::new(false) };
static OLD_BUS: SavedAction =
    SavedAction { act: UnsafeCell::new(MaybeUninit::uninit()), saved: AtomicBool::new(false) };
static INSTALL: Once = Once::new();
/// Set by the first overflow report: a second fault while reporting just aborts.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// Installs the overflow handler for SIGSEGV and SIGBUS (idempotent). Call once at runtime start,
/// before any goroutine runs.
pub(crate) fn install_overflow_handler() {
    INSTALL.call_once(|| {
        // Prime the page-size cache: the handler must not call sysconf.
        let _ = page_size();
        for (sig, slot) in [(libc::SIGSEGV, &OLD_SEGV), (libc::SIGBUS, &OLD_BUS)] {
            // SAFETY: sigaction with a null new action only reads the current one into `old`.
            let mut old: libc::sigaction = unsafe { mem::zeroed() };
            // SAFETY: as above; `old` is a valid out-pointer.
            if unsafe { libc::sigaction(sig, ptr::null(), &mut old) } != 0 {
                continue;
            }
            // SAFETY: we are inside call_once and our handler is not installed for `sig` yet, so
            // nothing reads `act` concurrently (see `SavedAction`).
            unsafe { (*slot.act.get()).write(old) };
            // Release: pairs with the Acquire load in `chain`, publishing `act`.
            slot.saved.store(true, Ordering::Release);
            // SAFETY: zeroed is a valid sigaction (empty mask, no flags) before we fill it in.
            let mut new: libc::sigaction = unsafe { mem::zeroed() };
            new.sa_sigaction = handler as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: sa_mask is a valid sigset_t to initialise.
            unsafe { libc::sigemptyset(&mut new.sa_mask) };
            // SAFETY: `new` is fully initialised and `handler` has the SA_SIGINFO signature.
            let r = unsafe { libc::sigaction(sig, &new, ptr::null_mut()) };
            debug_assert_eq!(r, 0, "sigaction failed");
        }
    });
}

/// Gives the calling thread a signal stack (64 KiB plus a guard page, leaked: Ms never exit) if
/// it has none or a smaller one (std gives its threads a few KiB, enough for its overflow message
/// but not for the CPU profiler's unwind in a SIGPROF handler). Call at the start of every M thread. Failure (out of memory) is silent: an
/// overflow then kills the process with a plain SIGSEGV instead of the report.
pub(crate) fn ensure_altstack() {
    // SAFETY: zeroed is a valid stack_t for the kernel to fill in.
    let mut old: libc::stack_t = unsafe { mem::zeroed() };
    // SAFETY: a null new stack only queries the current one into `old`.
    if unsafe { libc::sigaltstack(ptr::null(), &mut old) } != 0 {
        return;
    }
    if old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size >= ALTSTACK_SIZE {
        return; // already has one big enough (ours)
    }
    let page = page_size();
    let size = ALTSTACK_SIZE.max(libc::SIGSTKSZ).next_multiple_of(page);
    // SAFETY: a fresh anonymous mapping aliases nothing.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            page + size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return;
    }
    // SAFETY: the lowest page of the mapping just created becomes its guard; failure only loses
    // the guard.
    unsafe { libc::mprotect(p, page, libc::PROT_NONE) };
    let st = libc::stack_t { ss_sp: (p as usize + page) as *mut libc::c_void, ss_flags: 0, ss_size: size };
    // SAFETY: `st` describes memory that stays mapped for the life of the process (leaked).
    if unsafe { libc::sigaltstack(&st, ptr::null_mut()) } != 0 {
        // SAFETY: the mapping was not installed anywhere; unmap it.
        unsafe { libc::munmap(p, page + size) };
    }
}

/// Reports an overflow detected after the fact (a goroutine's stack pointer below its stack when
/// it switched out, or its unguarded gap found touched when its stack was released) and aborts.
pub(crate) fn fatal_overflow(goid: u64, name: Option<&str>, stack_size: usize) -> ! {
    let mut m = Msg::new();
    overflow_header(&mut m, stack_size, None);
    goroutine_line(&mut m, goid, name.map(str::as_bytes), stack_size);
    m.str(b" (found after the fact: it ran into the unguarded gap below its stack)\n");
    m.str(b"hint: raise GORT_STACK_SIZE or use gort::Builder::stack_size; GORT_GUARDED_STACKS guards more stacks so the overflow faults where it happens\n");
    m.write_stderr();
    // SAFETY: abort has no preconditions and is async-signal-safe.
    unsafe { libc::abort() }
}

/// The scheduler's view of this thread's goroutine (plus a test override).
fn stack_info() -> Option<SignalStackInfo> {
    #[cfg(test)]
    {
        // Acquire: pairs with the Release store in `tests::set_test_info`.
        let p = tests::TEST_INFO.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: the test leaks the info it publishes; it is never freed.
            return Some(unsafe { *p });
        }
    }
    running_stack_info()
}

/// For the SIGSEGV handler: the running goroutine's stack description. Async-signal-safe: reads
/// a thread-local and the running G's own fields.
fn running_stack_info() -> Option<SignalStackInfo> {
    let m = current_m()?;
    let g = m.curg()?;
    // SAFETY: the G runs on this very thread (we are in its signal handler), so its exec is
    // owned by this thread and not being written concurrently.
    let exec = unsafe { &*g.0.exec.get() };
    Some(SignalStackInfo {
        goid: g.id(),
        g: Some(g),
        stack_lo: g.0.stack_lo.load(Ordering::Relaxed),
        stack_hi: g.0.stack_hi.load(Ordering::Relaxed),
        guard_lo: exec.guard_lo,
        guard_hi: exec.guard_hi,
    })
}

/// Whether any byte of the page at `addr` (page-aligned) is resident (one `mincore`).
fn page_resident(addr: usize) -> bool {
    let mut v = [0u8; 1];
    // SAFETY: mincore only inspects page tables and writes one byte into `v`.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, page_size(), v.as_mut_ptr()) };
    r == 0 && v[0] & 1 != 0
}

/// The gap of `si`'s stack: the scheduler's, or the standard one below `stack_lo`.
fn gap_of(si: &SignalStackInfo) -> (usize, usize) {
    if si.guard_hi > si.guard_lo {
        (si.guard_lo, si.guard_hi)
    } else {
        (si.stack_lo.saturating_sub(gap_size()), si.stack_lo)
    }
}

/// Whether a fault at `addr` with stack pointer `sp` is `si`'s goroutine overflowing its stack.
/// `gap_touched` is asked only when the answer depends on it (it costs a syscall).
fn is_overflow(si: &SignalStackInfo, addr: usize, sp: usize, gap_touched: impl FnOnce(usize) -> bool) -> bool {
    if si.stack_hi <= si.stack_lo {
        return false;
    }
    let (glo, ghi) = gap_of(si);
    // A fault in the gap (guarded) or just below the stack.
    if (glo..ghi).contains(&addr) || (si.stack_lo.saturating_sub(page_size())..si.stack_lo).contains(&addr) {
        return true;
    }
    // An unguarded overflow that ran through the gap and faulted further down: the stack pointer
    // is below the stack, the fault is at the stack pointer (a push, a call or a stack probe; a
    // big frame probes up to the gap size below it), and the gap's top page was touched.
    sp != 0
        && sp < si.stack_lo
        && addr < sp.saturating_add(page_size())
        && addr >= sp.saturating_sub(gap_size() + page_size())
        && gap_touched(ghi - page_size())
}

/// The SIGSEGV/SIGBUS handler. Async-signal-safe.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let _errno = crate::sig::ErrnoGuard::save();
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // SAFETY: ctx is the kernel's ucontext_t.
    let sp = unsafe { Regs::from_ucontext(ctx) }.sp;
    // si_code > 0: a fault raised by the kernel (not kill/sigqueue from another process).
    if code > 0 {
        match spare_fault(addr, sp) {
            // On the M's spare stack the goroutine's bounds say nothing about the fault: only an
            // overflow of the spare stack itself is ours.
            Some(Some(bounds)) => report_spare_overflow(addr, sp, bounds),
            Some(None) => {}
            None => {
                if let Some(si) = stack_info() {
                    if is_overflow(&si, addr, sp, page_resident) {
                        report_fault(&si, addr, sp);
                    }
                }
            }
        }
    }
    // SAFETY: called from the handler with the kernel's arguments.
    unsafe { chain(sig, info, ctx) };
}

/// For a fault at `addr` with stack pointer `sp`: `None` if the thread is not on its M's spare
/// stack (`stack/spare.rs`), else the stack's bounds if the fault is its overflow (in its guard).
/// Async-signal-safe.
fn spare_fault(addr: usize, sp: usize) -> Option<Option<(usize, usize)>> {
    let spare = &current_m()?.spare;
    let (glo, lo) = spare.guard_range()?;
    let (_, hi) = spare.bounds()?;
    // A frame that faults in the guard may have moved sp into it already.
    (sp >= glo && sp < hi).then_some((addr >= glo && addr < lo).then_some((lo, hi)))
}

/// Prints the report for an overflow of the M's spare stack `[lo, hi)` (runtime work deeper than
/// the stack was made for: a runtime bug, not the program's) and aborts. Async-signal-safe.
fn report_spare_overflow(addr: usize, sp: usize, (lo, hi): (usize, usize)) -> ! {
    if REPORTING.swap(true, Ordering::Relaxed) {
        // SAFETY: abort has no preconditions and is async-signal-safe.
        unsafe { libc::abort() }
    }
    let mut m = Msg::new();
    m.str(b"runtime: spare stack exceeds ");
    m.dec((hi - lo) as u64);
    m.str(b"-byte limit\n");
    sp_and_stack(&mut m, sp, lo, hi);
    m.str(b" fault at ");
    m.hex(addr as u64);
    m.str(b"\nfatal error: stack overflow on the M's spare stack (stack walks and profile records run there)\n");
    m.write_stderr();
    // SAFETY: abort has no preconditions and is async-signal-safe.
    unsafe { libc::abort() }
}

/// Passes a fault that is not ours to the previous handler, or to the default action.
///
/// # Safety
/// Only from [`handler`], with the arguments the kernel passed it.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let slot = if sig == libc::SIGBUS { &OLD_BUS } else { &OLD_SEGV };
    // Acquire: pairs with the Release store in install_overflow_handler, publishing `act`.
    if slot.saved.load(Ordering::Acquire) {
        // SAFETY: `saved` says `act` was written, and it is never written again.
        let old = unsafe { (*slot.act.get()).assume_init_ref() };
        let h = old.sa_sigaction;
        if h != libc::SIG_DFL && h != libc::SIG_IGN {
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the saved handler has the three-argument signature.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: without SA_SIGINFO the saved handler has the one-argument signature.
                let f: extern "C" fn(libc::c_int) = unsafe { mem::transmute(h) };
                f(sig);
            }
            return;
        }
    }
    // SIG_DFL, SIG_IGN (ignoring a fault would loop forever) or unknown: reset to the default
    // action and return; the faulting instruction runs again and the fault kills the process.
    // SAFETY: zeroed is SIG_DFL with an empty mask and no flags.
    let dfl: libc::sigaction = unsafe { mem::zeroed() };
    // SAFETY: valid action for a valid signal.
    unsafe { libc::sigaction(sig, &dfl, ptr::null_mut()) };
}

/// Prints the report for a fault in `si`'s gap and aborts. Async-signal-safe.
fn report_fault(si: &SignalStackInfo, addr: usize, sp: usize) -> ! {
    if REPORTING.swap(true, Ordering::Relaxed) {
        // A fault while reporting: no second report.
        // SAFETY: abort has no preconditions and is async-signal-safe.
        unsafe { libc::abort() }
    }
    let size = si.stack_hi - si.stack_lo;
    let mut m = Msg::new();
    overflow_header(&mut m, size, Some((sp, si.stack_lo, si.stack_hi)));
    let mut name_buf = [0u8; MAX_NAME];
    let name = si.g.and_then(|g| read_name(g, &mut name_buf)).map(|n| &name_buf[..n]);
    goroutine_line(&mut m, si.goid, name, size);
    m.str(b" (fault at ");
    m.hex(addr as u64);
    m.str(b")\nhint: raise GORT_STACK_SIZE or use gort::Builder::stack_size\n");
    m.write_stderr();
    // SAFETY: abort has no preconditions and is async-signal-safe.
    unsafe { libc::abort() }
}

/// Copies the goroutine's name into `buf` (truncated) without blocking; `None` if it has no name
/// or the name lock is held.
fn read_name(g: GRef, buf: &mut [u8; MAX_NAME]) -> Option<usize> {
    if !g.0.has_name.load(Ordering::Relaxed) {
        return None;
    }
    // Never allocates: a G with a name has its `GRare` block already.
    let guard = g.0.rare_if_any()?.name.try_lock()?;
    let n = guard.as_deref().map(|name| {
        let mut n = name.len().min(MAX_NAME);
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        buf[..n].copy_from_slice(&name.as_bytes()[..n]);
        n
    });
    // Never unlock from a signal handler (unlocking may wake waiters); the process aborts next.
    mem::forget(guard);
    n
}

/// `runtime: goroutine stack exceeds N-byte limit` [+ `runtime: sp=.. stack=[.., ..]`] +
/// `fatal error: stack overflow`, then a blank line.
fn overflow_header(m: &mut Msg, size: usize, regs: Option<(usize, usize, usize)>) {
    m.str(b"runtime: goroutine stack exceeds ");
    m.dec(size as u64);
    m.str(b"-byte limit\n");
    if let Some((sp, lo, hi)) = regs {
        if sp != 0 {
            sp_and_stack(m, sp, lo, hi);
            m.str(b"\n");
        }
    }
    m.str(b"fatal error: stack overflow\n\n");
}

/// `runtime: sp=0x.. stack=[0x.., 0x..]` (no newline).
fn sp_and_stack(m: &mut Msg, sp: usize, lo: usize, hi: usize) {
    m.str(b"runtime: sp=");
    m.hex(sp as u64);
    m.str(b" stack=[");
    m.hex(lo as u64);
    m.str(b", ");
    m.hex(hi as u64);
    m.str(b"]");
}

/// `goroutine 7 [name "worker"]: overflowed its 256 KiB stack` (no newline).
fn goroutine_line(m: &mut Msg, goid: u64, name: Option<&[u8]>, size: usize) {
    m.str(b"goroutine ");
    m.dec(goid);
    if let Some(name) = name {
        m.str(b" [name \"");
        m.str(&name[..name.len().min(MAX_NAME)]);
        m.str(b"\"]");
    }
    m.str(b": overflowed its ");
    if size.is_multiple_of(1 << 20) {
        m.dec((size >> 20) as u64);
        m.str(b" MiB");
    } else if size.is_multiple_of(1024) {
        m.dec((size >> 10) as u64);
        m.str(b" KiB");
    } else {
        m.dec(size as u64);
        m.str(b"-byte");
    }
    m.str(b" stack");
}

/// A fixed-size message buffer: formatting without allocation (async-signal-safe).
struct Msg {
    buf: [u8; 768],
    len: usize,
}

impl Msg {
    fn new() -> Msg {
        Msg { buf: [0; 768], len: 0 }
    }
    /// Appends `s`, truncated at the buffer's end.
    fn str(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }
    fn dec(&mut self, mut v: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.str(&tmp[i..]);
    }
    fn hex(&mut self, mut v: u64) {
        let mut tmp = [0u8; 18];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        i -= 2;
        tmp[i] = b'0';
        tmp[i + 1] = b'x';
        self.str(&tmp[i..]);
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Writes the message to fd 2 (retrying short writes and EINTR).
    fn write_stderr(&self) {
        let mut b = self.as_bytes();
        while !b.is_empty() {
            // SAFETY: `b` is a valid readable buffer of b.len() bytes.
            let n = unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
            if n > 0 {
                b = &b[n as usize..];
            } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            } else {
                return;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stack::{GuardKind, StackPool};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Output};
    use std::sync::atomic::AtomicPtr;

    /// Test override for `stack_info` (the scheduler is not involved in unit tests).
    pub(crate) static TEST_INFO: AtomicPtr<SignalStackInfo> = AtomicPtr::new(ptr::null_mut());

    fn set_test_info(si: SignalStackInfo) {
        // Release: pairs with the Acquire load in `stack_info`.
        TEST_INFO.store(Box::into_raw(Box::new(si)), Ordering::Release);
    }

    const CHILD_ENV: &str = "GORT_SIGNAL_TEST_CHILD";

    /// Re-runs test `name` in a child process with `CHILD_ENV=mode`.
    fn run_child(name: &str, mode: &str) -> Output {
        Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, mode)
            .output()
            .unwrap()
    }

    fn child_mode() -> Option<String> {
        std::env::var(CHILD_ENV).ok()
    }

    #[inline(never)]
    fn recurse(n: u64) -> u64 {
        let mut frame = [n; 64];
        std::hint::black_box(&mut frame);
        if std::hint::black_box(n) == u64::MAX {
            return 0;
        }
        recurse(n + 1) + frame[3]
    }

    /// Child: overflow a pool stack on a coroutine; `budget` 0 gives an unguarded gap.
    fn overflow_in_child(budget: usize, kind: GuardKind) -> ! {
        install_overflow_handler();
        ensure_altstack();
        let pool = StackPool::with_guard_kind(64 * 1024, budget, kind);
        // A few stacks so that ours has a neighbour below it (slot 1 and up).
        let _below = pool.get().unwrap();
        let s = pool.get().unwrap();
        let (glo, ghi) = s.guard_range();
        set_test_info(SignalStackInfo {
            goid: 42,
            g: None,
            stack_lo: s.lo(),
            stack_hi: s.hi(),
            guard_lo: glo,
            guard_hi: ghi,
        });
        let mut co = corosensei::Coroutine::with_stack(s, |_: &corosensei::Yielder<(), ()>, ()| recurse(0));
        let _ = co.resume(());
        std::process::exit(3) // unreachable: the overflow aborts
    }

    fn assert_overflow_report(out: &Output) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "status {:?}, stderr:\n{err}", out.status);
        assert!(err.contains("runtime: goroutine stack exceeds 65536-byte limit\n"), "{err}");
        assert!(err.contains("fatal error: stack overflow\n"), "{err}");
        assert!(err.contains("goroutine 42: overflowed its 64 KiB stack (fault at 0x"), "{err}");
        assert!(err.contains("hint: raise GORT_STACK_SIZE"), "{err}");
    }

    #[test]
    fn guarded_overflow_is_reported() {
        if let Some(mode) = child_mode() {
            let kind = if mode == "mprotect" { GuardKind::Mprotect } else { GuardKind::Auto };
            overflow_in_child(1000, kind);
        }
        for mode in ["mprotect", "auto"] {
            let out = run_child("stack::overflow::tests::guarded_overflow_is_reported", mode);
            assert_overflow_report(&out);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("runtime: sp=0x"), "{err}");
        }
    }

    #[test]
    fn unguarded_runaway_overflow_is_reported() {
        if child_mode().is_some() {
            overflow_in_child(0, GuardKind::Auto);
        }
        let out = run_child("stack::overflow::tests::unguarded_runaway_overflow_is_reported", "1");
        assert_overflow_report(&out);
    }

    #[test]
    fn foreign_fault_is_not_swallowed() {
        if child_mode().is_some() {
            install_overflow_handler();
            ensure_altstack();
            let pool = StackPool::new(64 * 1024, 1);
            let s = pool.get().unwrap();
            set_test_info(SignalStackInfo {
                goid: 42,
                g: None,
                stack_lo: s.lo(),
                stack_hi: s.hi(),
                guard_lo: 0,
                guard_hi: 0,
            });
            // A fault nowhere near the goroutine's stack: a write to a PROT_NONE page.
            // SAFETY: fresh mapping, deliberately inaccessible.
            let p = unsafe {
                libc::mmap(ptr::null_mut(), 4096, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
            };
            // SAFETY: deliberately faulting write, in the child.
            unsafe { ptr::write_volatile(p as *mut u8, 1) };
            std::process::exit(3);
        }
        let out = run_child("stack::overflow::tests::foreign_fault_is_not_swallowed", "1");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "status {:?}, stderr:\n{err}", out.status);
        assert!(!err.contains("stack overflow"), "{err}");
    }

    #[test]
    fn fatal_overflow_message() {
        if child_mode().is_some() {
            fatal_overflow(7, Some("worker"), 256 * 1024);
        }
        let out = run_child("stack::overflow::tests::fatal_overflow_message", "1");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stderr:\n{err}");
        assert!(
            err.contains(
                "runtime: goroutine stack exceeds 262144-byte limit\nfatal error: stack overflow\n\n\
             goroutine 7 [name \"worker\"]: overflowed its 256 KiB stack (found after the fact"
            ),
            "{err}"
        );
    }

    #[test]
    fn ensure_altstack_installs_one() {
        std::thread::spawn(|| {
            ensure_altstack();
            // SAFETY: zeroed is a valid out value; null new stack only queries.
            let mut st: libc::stack_t = unsafe { mem::zeroed() };
            // SAFETY: as above.
            assert_eq!(unsafe { libc::sigaltstack(ptr::null(), &mut st) }, 0);
            assert_eq!(st.ss_flags & libc::SS_DISABLE, 0);
            assert!(st.ss_size >= libc::SIGSTKSZ);
            let before = st.ss_sp;
            ensure_altstack(); // idempotent
                               // SAFETY: as above.
            assert_eq!(unsafe { libc::sigaltstack(ptr::null(), &mut st) }, 0);
            assert_eq!(st.ss_sp, before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn overflow_classification() {
        let page = page_size();
        let lo = 0x7000_0000_0000usize;
        let si = SignalStackInfo { goid: 1, g: None, stack_lo: lo, stack_hi: lo + 0x40000, guard_lo: 0, guard_hi: 0 };
        let never = |_| panic!("gap_touched asked needlessly");
        assert!(is_overflow(&si, lo - 8, lo - 8, never));
        assert!(is_overflow(&si, lo - gap_size(), lo - gap_size(), never));
        // Below the gap, sp far above: a wild pointer, not ours.
        assert!(!is_overflow(&si, lo - gap_size() - 8, lo + 0x1000, |_| true));
        // Inside the stack: not an overflow.
        assert!(!is_overflow(&si, lo + 0x100, lo + 0x80, |_| true));
        // Ran through the gap and beyond: ours only if the gap was touched.
        let far = lo - 10 * gap_size();
        assert!(is_overflow(&si, far - 8, far, |a| a == lo - page));
        assert!(!is_overflow(&si, far - 8, far, |_| false));
        // Fault far from sp (sp below the stack, e.g. on another stack): not ours.
        assert!(!is_overflow(&si, far - 4 * gap_size(), far, |_| true));
        // Empty info.
        let none = SignalStackInfo { stack_lo: 0, stack_hi: 0, ..si };
        assert!(!is_overflow(&none, 8, 8, |_| true));
    }

    #[test]
    fn message_formatting() {
        let mut m = Msg::new();
        m.dec(0);
        m.str(b" ");
        m.dec(18446744073709551615);
        m.str(b" ");
        m.hex(0);
        m.str(b" ");
        m.hex(0xdead_beef);
        assert_eq!(m.as_bytes(), b"0 18446744073709551615 0x0 0xdeadbeef");
        let mut m = Msg::new();
        goroutine_line(&mut m, 3, None, 3 << 20);
        assert_eq!(m.as_bytes(), b"goroutine 3: overflowed its 3 MiB stack");
        let mut m = Msg::new();
        goroutine_line(&mut m, 3, Some(b"x"), 20000);
        assert_eq!(m.as_bytes(), b"goroutine 3 [name \"x\"]: overflowed its 20000-byte stack");
        let mut m = Msg::new();
        for _ in 0..100 {
            m.str(b"0123456789");
        }
        assert_eq!(m.as_bytes().len(), 768, "truncates, never overflows");
    }
}
