//! The runtime's clock: monotonic nanoseconds since start, and a coarse copy for timestamps that
//! do not justify a clock read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// The coarse copy, alone on its cache line: every park reads it, so a write to anything beside
/// it would cost each park a miss too.
#[repr(align(128))]
struct Coarse(AtomicU64);
static COARSE: Coarse = Coarse(AtomicU64::new(CLOCK_BASE));
/// How old the coarse copy may get before a `nanotime` call refreshes it.
const COARSE_GRAIN_NS: u64 = 1_000_000;

pub(crate) fn init_epoch() {
    let _ = EPOCH.get_or_init(Instant::now);
}

/// Where the runtime's clock starts: one hour. Readings are never 0 (so 0 can mean "unset")
/// and a timestamp can be moved back in time without underflow (a test backdates a wait by a
/// minute to see how dumps render it).
const CLOCK_BASE: u64 = 3_600_000_000_000;

/// Monotonic nanoseconds on the runtime's clock: `CLOCK_BASE` (one hour) plus the time since
/// the runtime started (vDSO clock, ~20 ns). Only differences between readings mean anything.
#[inline]
pub fn nanotime() -> u64 {
    let now = CLOCK_BASE + EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64;
    // Store only once the copy is a grain old. Every M reads the clock (a spinning M several
    // times per look for work); a store per read would take the line from the other CPUs' caches
    // each time, and the running goroutines' parks, which read it, would miss on it. A load
    // leaves it shared. Two Ms racing here may store out of order: the copy then lags by the
    // gap between their reads, well under the grain.
    if now.saturating_sub(COARSE.0.load(Ordering::Relaxed)) >= COARSE_GRAIN_NS {
        COARSE.0.store(now, Ordering::Relaxed);
    }
    now
}

/// A recent `nanotime()`: at most a grain (1 ms) behind the last one anyone read, and sysmon
/// reads the clock at least every 10 ms. Used for wait timestamps, where a minute-granularity
/// report does not justify a clock read per park.
#[inline]
pub(crate) fn coarse_now() -> u64 {
    COARSE.0.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Ticks: the cheapest monotonic timestamp, for scheduler timing (latency histograms, the
// wall-clock profile), taken several times per goroutine switch while timing is on.
// ---------------------------------------------------------------------------------------------

/// `ns = ticks * TICK_MULT >> 32`; 0 until [`calibrate_ticks`] ran.
static TICK_MULT: AtomicU64 = AtomicU64::new(0);
/// Whether [`ticks`] reads the TSC (an invariant one) rather than [`nanotime`].
static TICKS_TSC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this CPU's time-stamp counter runs at a constant rate in every power state and is
/// synchronized across cores (CPUID 0x8000_0007 EDX bit 8, "invariant TSC"), so that readings
/// on different threads compare.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid` is an unsafe fn before Rust 1.89
fn invariant_tsc() -> bool {
    // SAFETY: CPUID exists on every x86_64 CPU; leaf 0x8000_0000 reports the highest extended
    // leaf, and 0x8000_0007 is read only if it is implemented.
    unsafe {
        let max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
        max >= 0x8000_0007 && std::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
    }
}

/// A monotonic timestamp in ticks: the invariant TSC where there is one (~10 ns, no vDSO call),
/// else [`nanotime`]. Only differences mean anything; [`ticks_to_ns`] converts them. Call
/// [`calibrate_ticks`] once before relying on the TSC.
#[inline(always)]
pub(crate) fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if TICKS_TSC.load(Ordering::Relaxed) {
        return cycles();
    }
    nanotime()
}

/// A free-running counter for pacing, cheaper than [`ticks`] (no calibration, no flag): the TSC
/// on x86_64 (a few ticks per nanosecond, rate unknown), else nanoseconds. Only differences on
/// one thread mean anything, and only roughly: [`CYCLES_100US`] of them are 25-150 µs.
#[inline(always)]
pub(crate) fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC is available on every x86_64 CPU and has no preconditions.
    return unsafe { std::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    return EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64;
}

/// About 100 µs of [`cycles`] (at 3 GHz for the TSC).
#[cfg(target_arch = "x86_64")]
pub(crate) const CYCLES_100US: u64 = 300_000;
/// About 100 µs of [`cycles`].
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const CYCLES_100US: u64 = 100_000;

/// Converts a difference of [`ticks`] to nanoseconds.
#[inline(always)]
pub(crate) fn ticks_to_ns(d: u64) -> u64 {
    ((d as u128 * TICK_MULT.load(Ordering::Relaxed) as u128) >> 32) as u64
}

/// Decides what [`ticks`] reads and measures its rate against [`nanotime`] over ~2 ms (once;
/// later calls return at once). Blocks the caller for the measurement.
pub(crate) fn calibrate_ticks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(target_arch = "x86_64")]
        if invariant_tsc() {
            let n0 = nanotime();
            // SAFETY: RDTSC has no preconditions on x86_64.
            let t0 = unsafe { std::arch::x86_64::_rdtsc() };
            let mut n1 = n0;
            while n1 - n0 < 2_000_000 {
                std::hint::spin_loop();
                n1 = nanotime();
            }
            // SAFETY: as above.
            let t1 = unsafe { std::arch::x86_64::_rdtsc() };
            if t1 > t0 {
                TICK_MULT.store((((n1 - n0) as u128) << 32).div_ceil((t1 - t0) as u128) as u64, Ordering::Relaxed);
                TICKS_TSC.store(true, Ordering::Relaxed);
                return;
            }
        }
        TICK_MULT.store(1 << 32, Ordering::Relaxed);
    });
}
