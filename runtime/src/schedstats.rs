//! Scheduler timing: how long goroutines wait to run once runnable (scheduling latency) and how
//! long they stay parked, by wait reason, as histograms with a sum and a count.
//!
//! Timing is a switch ([`set_sched_timing`], `GORT_SCHEDTIMING`), because it costs clock reads
//! on the hottest path of the runtime: a timestamp when a goroutine switches out, when it is
//! readied and when it starts running again (three `clock::ticks` per park, ~10
//! ns each on an invariant TSC). Off, the scheduler pays one relaxed load and a branch per
//! transition and writes nothing (stamps left from an earlier period of timing are recognised
//! by their age). The wall-clock profile turns timing on for its window.
//!
//! # Recording
//!
//! Every observation is recorded by the M that starts the goroutine running (in `execute`), into
//! the histograms of the P it owns: one writer per P, so a bucket is bumped with a relaxed load
//! and store, not an atomic read-modify-write. A reader (`read_latency`, `read_park`) sums all Ps' buckets; it may
//! see one observation's bucket without its sum (relaxed), never a torn counter.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::clock::{calibrate_ticks, ticks, ticks_to_ns};
use crate::g::{WaitReason, WallAcc, G};

/// Timing for the histograms (metrics).
pub(crate) const TIMING_METRICS: u8 = 1;
/// Timing for the wall-clock profile.
pub(crate) const TIMING_WALL: u8 = 2;

/// Who wants scheduler timestamps now (`TIMING_*` bits); 0: nobody, the scheduler takes none.
pub(crate) static TIMING: AtomicU8 = AtomicU8::new(0);

/// Whether the scheduler takes timestamps now.
#[inline(always)]
pub(crate) fn timing() -> bool {
    TIMING.load(Ordering::Relaxed) != 0
}

/// When timing was last switched on (ticks). A stamp older than this was taken in an earlier
/// period of timing and is ignored: while timing is off the scheduler writes no stamps at all,
/// so the stamps a goroutine carries may be left over from then.
static EPOCH: AtomicU64 = AtomicU64::new(u64::MAX);

/// The start of the current timing period (see [`EPOCH`]).
#[inline]
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::Relaxed)
}

/// Stamps `g` as made runnable now if timing is on (returns the stamp, or 0). Called by whoever
/// makes it runnable, before publishing that.
#[inline(always)]
pub(crate) fn stamp_ready(g: &G) -> u64 {
    if !timing() {
        return 0;
    }
    let t = ticks_out_of_line();
    g.rare().t_ready.store(t, Ordering::Relaxed);
    t
}

/// Stamps a new goroutine `g` as runnable now if timing is on (not parked; the wall-clock window
/// charges it from now).
#[inline(always)]
pub(crate) fn stamp_spawn(g: &G) {
    if timing() {
        let times = g.rare();
        times.t_park.store(0, Ordering::Relaxed);
        let t = ticks_out_of_line();
        times.t_ready.store(t, Ordering::Relaxed);
        let mut a = g.wall_acc();
        // A new goroutine: the wall-clock window measures it from now, with a fresh tally.
        *a = WallAcc { mark: t, ..WallAcc::ZERO };
    }
}

/// [`ticks`], not inlined: keeps the clock's code out of the hot paths that stamp only while
/// timing is on.
#[inline(never)]
fn ticks_out_of_line() -> u64 {
    ticks()
}

/// Turns a timing user on or off (calibrating the clock first, once).
pub(crate) fn set_timing(bit: u8, on: bool) {
    if on {
        calibrate_ticks();
        if TIMING.load(Ordering::Relaxed) == 0 {
            EPOCH.store(ticks(), Ordering::Relaxed);
        }
        TIMING.fetch_or(bit, Ordering::Relaxed);
    } else {
        TIMING.fetch_and(!bit, Ordering::Relaxed);
    }
}

/// Turns the scheduling-latency and park-duration histograms on or off (off by default; see the
/// module docs for the cost). `GORT_SCHEDTIMING=1` turns them on at start.
pub fn set_sched_timing(on: bool) {
    set_timing(TIMING_METRICS, on);
}

/// Whether the histograms are being recorded.
pub fn sched_timing() -> bool {
    TIMING.load(Ordering::Relaxed) & TIMING_METRICS != 0
}

/// Buckets per histogram. Bucket 0 holds durations below 256 ns; bucket `k` (1 <= k < 29) holds
/// `[2^(k+7), 2^(k+8))` ns; the last is unbounded (from 2^36 ns, about 69 s).
pub const BUCKETS: usize = 30;

/// The upper bound (exclusive) of bucket `k` in nanoseconds; `None` for the last.
pub fn bucket_bound_ns(k: usize) -> Option<u64> {
    (k + 1 < BUCKETS).then(|| 1u64 << (k + 8))
}

#[inline(always)]
fn bucket(ns: u64) -> usize {
    ((64 - ns.leading_zeros()) as usize).saturating_sub(8).min(BUCKETS - 1)
}

/// A duration histogram with one writer (see the module docs).
pub(crate) struct Hist {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Hist {
    const fn new() -> Hist {
        Hist { buckets: [const { AtomicU64::new(0) }; BUCKETS], sum_ns: AtomicU64::new(0) }
    }

    /// Records `ns`. Only the single writer (the P's owner) calls it.
    #[inline(always)]
    fn record(&self, ns: u64) {
        let b = &self.buckets[bucket(ns)];
        b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.sum_ns.store(self.sum_ns.load(Ordering::Relaxed).wrapping_add(ns), Ordering::Relaxed);
    }

    fn add_to(&self, out: &mut Histogram) {
        for (o, b) in out.buckets.iter_mut().zip(&self.buckets) {
            *o += b.load(Ordering::Relaxed);
        }
        out.sum_ns = out.sum_ns.wrapping_add(self.sum_ns.load(Ordering::Relaxed));
    }
}

/// A snapshot of a duration histogram: per-bucket counts (not cumulative; see [`BUCKETS`] and
/// [`bucket_bound_ns`]) and the sum of all observations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket.
    pub buckets: [u64; BUCKETS],
    /// Sum of the observations, in nanoseconds.
    pub sum_ns: u64,
}

impl Histogram {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// One P's histograms.
pub(crate) struct SchedStats {
    latency: Hist,
    park: [Hist; WaitReason::ALL.len()],
}

/// Durations above this (~19.5 hours) are discarded: the two timestamps came from different
/// clocks (timing was switched on while the clock source was being decided).
const MAX_NS: u64 = 1 << 46;

impl SchedStats {
    pub(crate) const fn new() -> SchedStats {
        SchedStats { latency: Hist::new(), park: [const { Hist::new() }; WaitReason::ALL.len()] }
    }

    /// Records one goroutine's start: `t_run - t_ready` as scheduling latency and, if it was
    /// parked, `t_ready - t_park` as a park of `reason`. Timestamps are ticks; one older than
    /// the timing period ([`epoch`]; 0 for "not parked") is not used.
    #[inline]
    pub(crate) fn record_start(&self, t_park: u64, t_ready: u64, t_run: u64, reason: u8) {
        if t_ready < epoch() || t_run < t_ready {
            return;
        }
        let lat = ticks_to_ns(t_run - t_ready);
        if lat < MAX_NS {
            self.latency.record(lat);
        }
        if t_park >= epoch() && t_ready >= t_park {
            let d = ticks_to_ns(t_ready - t_park);
            if d < MAX_NS {
                self.park[(reason as usize).min(WaitReason::ALL.len() - 1)].record(d);
            }
        }
    }
}

/// Scheduling latency (runnable to running) summed over `stats`.
pub(crate) fn read_latency<'a>(stats: impl Iterator<Item = &'a SchedStats>) -> Histogram {
    let mut h = Histogram::default();
    for s in stats {
        s.latency.add_to(&mut h);
    }
    h
}

/// Park durations of `reason` summed over `stats`.
pub(crate) fn read_park<'a>(stats: impl Iterator<Item = &'a SchedStats>, reason: WaitReason) -> Histogram {
    let mut h = Histogram::default();
    for s in stats {
        s.park[reason as usize].add_to(&mut h);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(255), 0);
        assert_eq!(bucket(256), 1);
        assert_eq!(bucket(511), 1);
        assert_eq!(bucket(512), 2);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for k in 0..BUCKETS - 1 {
            let hi = bucket_bound_ns(k).unwrap();
            assert_eq!(bucket(hi - 1), k, "bucket {k}");
            assert_eq!(bucket(hi), k + 1, "bucket {k}");
        }
        assert_eq!(bucket_bound_ns(BUCKETS - 1), None);
    }
}
