//! The runtime's clock: monotonic nanoseconds since start, and a coarse copy for timestamps that
//! do not justify a clock read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();
static COARSE: AtomicU64 = AtomicU64::new(CLOCK_BASE);

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
    COARSE.store(now, Ordering::Relaxed);
    now
}

/// The last `nanotime()` anyone read (sysmon refreshes it at least every 10 ms). Used for wait
/// timestamps, where a minute-granularity report does not justify a clock read per park.
#[inline]
pub(crate) fn coarse_now() -> u64 {
    COARSE.load(Ordering::Relaxed)
}
