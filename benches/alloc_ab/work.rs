//! The allocation-heavy program of the whole-process allocator A/B (benches/alloc_ab.sh): the
//! same code in three binaries that differ only in their `#[global_allocator]` (`alloc_ab_plain`:
//! `System`; `alloc_ab_sampling`: `gort::profiler::Allocator`; `alloc_ab_forward`: a wrapper that
//! only forwards to `System`, the control). It does what a user's program does: installs the
//! allocator and runs, on the main thread, without starting gort's runtime (the allocator does
//! not need it).
//!
//! `alloc_ab_X run [ROUNDS]` runs ROUNDS rounds (default 60, ~0.6 s on a quiet core), then prints
//! a checksum and the process's CPU time so far (`cpu_us=`, user + system from `getrusage`, so
//! start-up counts and time spent preempted does not); without `run` (a plain `cargo bench`) it
//! does nothing.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::hint::black_box;

/// One round: `format!` keys into a `HashMap` and a `BTreeMap`, short-lived `Vec`s of mixed
/// sizes, strings growing by `push_str` (reallocs); everything freed by the end of the round.
/// The map's hasher is std's SipHash with fixed keys, so that instruction counts repeat from run
/// to run (`RandomState`'s keys move them by ~0.1%).
fn round(r: usize) -> usize {
    const N: usize = 10_000;
    let mut h: HashMap<String, usize, BuildHasherDefault<DefaultHasher>> = HashMap::default();
    let mut b: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut acc = 0usize;
    for i in 0..N {
        let k = format!("key-{r}-{i}");
        let v: Vec<u32> = (0..(i % 48) as u32).collect();
        acc += v.iter().sum::<u32>() as usize;
        let mut s = String::new();
        for j in 0..(i % 7) {
            s.push_str(&k);
            s.push(char::from(b'a' + j as u8));
        }
        acc += s.len();
        if i % 3 == 0 {
            b.insert(k.clone(), v);
        }
        h.insert(k, i);
    }
    acc += black_box(&h).len() + black_box(&b).len();
    acc
}

pub fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("run") {
        return;
    }
    let rounds: usize = args.next().map_or(60, |s| s.parse().expect("ROUNDS: a number"));
    let mut acc = 0usize;
    for r in 0..rounds {
        acc = acc.wrapping_add(round(r));
    }
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage we own; zeroed is a valid rusage.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    println!("checksum={acc} cpu_us={}", us(ru.ru_utime) + us(ru.ru_stime));
}
