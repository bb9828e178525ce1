//! The runtime's cheap random numbers (xorshift64*, per thread): poll order in `select!`, steal
//! victims, profile sampling. Not for anything that must be unpredictable.

use std::cell::Cell;

thread_local! {
    /// Per-thread xorshift state (read and written within one call: never held across a park).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A cheap per-thread random number.
#[inline(never)]
pub(crate) fn fastrand() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            // Seed from this thread's TLS address and a global counter.
            static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0x9E37_79B9_7F4A_7C15);
            x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
                ^ (r as *const Cell<u64> as u64).rotate_left(32)
                | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}
