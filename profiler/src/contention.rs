//! The `mutex` and `block` profiles (Go's `runtime/pprof` `mutex` and `block`), exported from
//! what `gort_runtime::mprof` records.
//!
//! Both are cumulative (everything since the program started; a `?seconds=N` delta is two
//! snapshots subtracted) and off until a rate is set, as in Go:
//! [`set_mutex_profile_fraction`](crate::set_mutex_profile_fraction) and
//! [`set_block_profile_rate`](crate::set_block_profile_rate).
//!
//! - **mutex**: each contended unlock that woke a waiter, on the **unlocker's** stack, charged
//!   the time the waiters spent blocked since the previous such unlock (so the profile names the
//!   code that held the lock, and a holder that kept `n` goroutines out for `t` shows `n * t`).
//! - **block**: each wait in a channel operation, `select!`, `WaitGroup`, `Cond` or contended
//!   mutex, on the **blocked** goroutine's stack.
//!
//! # Format
//!
//! The proto is Go's (`printCountCycleProfile`): sample types `contentions/count` and
//! `delay/nanoseconds`, period type `contentions/count`, period 1 (Go writes 1 for both; the
//! mutex records are already scaled by the fraction at record time, as in Go 1.21 and later).
//!
//! The debug=1 text is Go's (`writeProfileInternal`): a `--- mutex:` (or `--- contention:`)
//! header, `cycles/second=`, for `mutex` the `sampling period=` (the current fraction), then per
//! record, largest delay first, `<cycles> <count> @ 0x..` and its `#` frame lines. gort measures
//! delays in nanoseconds, not CPU cycles, so it writes `cycles/second=1000000000`
//! ([`CYCLES_PER_SECOND`]) and cycles equal to nanoseconds: readers that convert with the header
//! (`go tool pprof` does) get exact nanoseconds.
//!
//! Stacks are trimmed as goroutine stacks are ([`Trim::Goroutine`]): the leading run of runtime
//! frames is hidden except its outermost, the runtime entry point the user called. A mutex
//! record therefore starts at the guard's drop (`<MutexGuard<T> as Drop>::drop`, Go's
//! `sync.(*Mutex).Unlock`) and a block record at the blocking call (`Receiver<T>::recv`, Go's
//! `runtime.chanrecv1`); the user's function is the next frame.

use std::fmt::Write as _;

use gort_runtime::mprof::{self, BlockRecord};

use crate::builder::{frames, Builder, Trim};
use crate::symbol::Symbolizer;

/// The `cycles/second` the debug=1 text declares: delays are in nanoseconds.
pub const CYCLES_PER_SECOND: i64 = 1_000_000_000;

/// Which of the two profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Contended unlocks, on the unlocker's stack.
    Mutex,
    /// Blocking waits, on the blocked goroutine's stack.
    Block,
}

/// The records, largest delay first (Go sorts by cycles), ties by stack for a stable output.
pub fn records(which: Which) -> Vec<BlockRecord> {
    let mut r = match which {
        Which::Mutex => mprof::mutex_profile(),
        Which::Block => mprof::block_profile(),
    };
    r.sort_by(|a, b| b.delay_ns.cmp(&a.delay_ns).then_with(|| a.stack.cmp(&b.stack)));
    r
}

/// The pprof profile.
pub fn proto(sym: &mut Symbolizer, which: Which) -> crate::proto::Profile {
    let mut b = Builder::new(sym, &[("contentions", "count"), ("delay", "nanoseconds")], ("contentions", "count"), 1);
    for r in records(which) {
        let locs = b.locations(&r.stack, Trim::Goroutine);
        b.sample(locs, vec![r.count, r.delay_ns], Vec::new());
    }
    b.finish()
}

/// Go's debug=1 text.
pub fn text1(sym: &mut Symbolizer, which: Which) -> String {
    let mut out = match which {
        Which::Mutex => format!(
            "--- mutex:\ncycles/second={CYCLES_PER_SECOND}\nsampling period={}\n",
            mprof::set_mutex_profile_fraction(-1)
        ),
        Which::Block => format!("--- contention:\ncycles/second={CYCLES_PER_SECOND}\n"),
    };
    for r in records(which) {
        let cycles = (i128::from(r.delay_ns) * i128::from(CYCLES_PER_SECOND) / 1_000_000_000) as i64;
        let _ = write!(out, "{cycles} {} @", r.count);
        for pc in &r.stack {
            let _ = write!(out, " {pc:#x}");
        }
        out.push('\n');
        crate::goroutine::hash_lines(&mut out, &frames(sym, &r.stack, Trim::Goroutine));
        out.push('\n');
    }
    out
}
