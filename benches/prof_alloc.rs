//! Overhead of the sampling allocator (`gort::profiler::Allocator`) against plain `System`,
//! on allocation-heavy work (target <= 3%).
//!
//! - `churn/*`: a ring of 1024 live blocks of mixed sizes (16 B to 2 KiB); each element frees
//!   one block and allocates its replacement, through `System` directly or through a sampling
//!   `Allocator<System>` at Go's default rate (512 KiB).
//! - `strings_map/*`: real Rust code on the global allocator: 10k `format!` strings into a
//!   `HashMap`. The global allocator of this binary is a switch that forwards every call either
//!   straight to `System` or to a sampling `Allocator<System>`, so the same code runs on both in
//!   one process (the switch's one relaxed load and branch is paid on both sides). Both sides
//!   also pay for a wrapper around `System`, so this cannot see what the wrapper itself costs a
//!   program: `benches/alloc_ab.sh` measures that, whole-process (benches/README.md).
//!
//! ```text
//! cargo bench --bench prof_alloc
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use gort::profiler::Allocator;

/// Forwards to `System` while [`PLAIN`] is set, else to the sampling allocator. Switching is
/// only done between runs, when everything allocated by the workload has been freed; a block
/// freed on the other side would only leave a stale profile record (both sides end in `System`).
struct Switch;

static PLAIN: AtomicBool = AtomicBool::new(false);
static SAMPLING_GLOBAL: Allocator = Allocator::system();

// SAFETY: both sides are `System` underneath (the sampling allocator forwards to it unchanged),
// so any block can be freed or reallocated through either side.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe {
            if PLAIN.load(Ordering::Relaxed) {
                System.alloc(l)
            } else {
                SAMPLING_GLOBAL.alloc(l)
            }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe {
            if PLAIN.load(Ordering::Relaxed) {
                System.dealloc(p, l)
            } else {
                SAMPLING_GLOBAL.dealloc(p, l)
            }
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe {
            if PLAIN.load(Ordering::Relaxed) {
                System.alloc_zeroed(l)
            } else {
                SAMPLING_GLOBAL.alloc_zeroed(l)
            }
        }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe {
            if PLAIN.load(Ordering::Relaxed) {
                System.realloc(p, l, n)
            } else {
                SAMPLING_GLOBAL.realloc(p, l, n)
            }
        }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

/// A second instance, driven directly (same code path as the global one).
static SAMPLING: Allocator = Allocator::system();

const RING: usize = 1024;

fn churn<A: GlobalAlloc>(a: &A, n: u64) {
    let mut ring: [(usize, usize); RING] = [(0, 0); RING];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..n as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = i % RING;
        let (p, sz) = ring[slot];
        if p != 0 {
            // SAFETY: p was allocated below by the same allocator with this layout.
            unsafe { a.dealloc(p as *mut u8, Layout::from_size_align_unchecked(sz, 8)) };
        }
        let sz = 16 + (x as usize % 2032);
        // SAFETY: non-zero size, valid alignment.
        let p = unsafe { a.alloc(Layout::from_size_align_unchecked(sz, 8)) };
        assert!(!p.is_null());
        // SAFETY: p is a fresh, non-null block of at least 16 bytes.
        unsafe { p.write(1) };
        ring[slot] = (p as usize, sz);
    }
    for (p, sz) in ring {
        if p != 0 {
            // SAFETY: as above.
            unsafe { a.dealloc(p as *mut u8, Layout::from_size_align_unchecked(sz, 8)) };
        }
    }
}

fn strings_map(n: usize) -> usize {
    let mut m = HashMap::new();
    for i in 0..n {
        m.insert(format!("KeyID{i}"), format!("value{i}"));
    }
    black_box(&m).len()
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("prof_alloc");
    g.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    gort::profiler::set_mem_profile_rate(gort::profiler::DEFAULT_MEM_PROFILE_RATE);
    g.bench_function("churn/system", |b| b.iter_custom(|n| time(|| churn(&System, n))));
    g.bench_function("churn/sampling", |b| b.iter_custom(|n| time(|| churn(&SAMPLING, n))));
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("strings_map/system", |b| {
        PLAIN.store(true, Ordering::Relaxed);
        b.iter(|| strings_map(10_000));
        PLAIN.store(false, Ordering::Relaxed);
    });
    g.bench_function("strings_map/sampling", |b| {
        b.iter(|| strings_map(10_000));
    });
    g.finish();
}

fn time(f: impl FnOnce()) -> Duration {
    let t = std::time::Instant::now();
    f();
    t.elapsed()
}

/// CPU time of this thread (time spent preempted by other processes does not count).
fn cpu_time(f: impl FnOnce()) -> Duration {
    let now = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec, which we own.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let t = now();
    f();
    now() - t
}

/// Interleaved A/B rounds (robust to a busy machine: both sides see the same noise, and thread
/// CPU time leaves out preemption), median per side. Printed after criterion's own numbers.
fn ab_summary() {
    // `PROF_ALLOC_ROUNDS` for a longer sitting on a noisy machine.
    let rounds: usize = std::env::var("PROF_ALLOC_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(21);
    const OPS: u64 = 2_000_000;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut sys, mut samp, mut fast, mut off, mut on) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let default = gort::profiler::DEFAULT_MEM_PROFILE_RATE;
    for round in 0..rounds {
        // Alternate the order each round so warm-up effects do not favour one side.
        let ns = |a: &dyn Fn()| cpu_time(a).as_secs_f64() * 1e9 / OPS as f64;
        // `None`: plain `System`; `Some(rate)`: the sampling allocator at that rate.
        let ms = |rate: Option<usize>| {
            PLAIN.store(rate.is_none(), Ordering::Relaxed);
            gort::profiler::set_mem_profile_rate(rate.unwrap_or(default));
            let t = cpu_time(|| {
                black_box(strings_map(50_000));
            });
            PLAIN.store(false, Ordering::Relaxed);
            t.as_secs_f64() * 1e3
        };
        gort::profiler::set_mem_profile_rate(default);
        if round % 2 == 0 {
            sys.push(ns(&|| churn(&System, OPS)));
            samp.push(ns(&|| churn(&SAMPLING, OPS)));
            off.push(ms(None));
            on.push(ms(Some(default)));
        } else {
            samp.push(ns(&|| churn(&SAMPLING, OPS)));
            sys.push(ns(&|| churn(&System, OPS)));
            on.push(ms(Some(default)));
            off.push(ms(None));
        }
        gort::profiler::set_mem_profile_rate(1 << 40);
        fast.push(ns(&|| churn(&SAMPLING, OPS)));
    }
    gort::profiler::set_mem_profile_rate(default);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let pct = |a: f64, b: f64| (b / a - 1.0) * 100.0;
    println!("prof_alloc A/B, interleaved, thread CPU time, {rounds} rounds (median | min):");
    let (ms, mp, mf) = (median(sys.clone()), median(samp.clone()), median(fast.clone()));
    let (ns, np, nf) = (min(&sys), min(&samp), min(&fast));
    println!(
        "  churn: System {ms:.2} | {ns:.2} ns/op, sampling Allocator {mp:.2} | {np:.2} ns/op: overhead {:+.1}% | {:+.1}%",
        pct(ms, mp),
        pct(ns, np)
    );
    println!("  churn, sampling Allocator at rate 2^40 (fast path only): {mf:.2} | {nf:.2} ns/op");
    let (mo, mn, no, nn) = (median(off.clone()), median(on.clone()), min(&off), min(&on));
    // Each round measures both sides back to back: the median of the per-round ratios is the
    // estimate least disturbed by a neighbour's load, which moves both sides of a round alike.
    let paired = median(off.iter().zip(&on).map(|(a, b)| pct(*a, *b)).collect());
    let churn_paired = median(sys.iter().zip(&samp).map(|(a, b)| pct(*a, *b)).collect());
    println!("  churn: median of per-round overheads {churn_paired:+.1}%");
    println!(
        "  strings_map(50k): System {mo:.2} | {no:.2} ms, sampling Allocator at 512 KiB {mn:.2} | {nn:.2} ms: \
         overhead {:+.1}% | {:+.1}%, median of per-round overheads {paired:+.1}%",
        pct(mo, mn),
        pct(no, nn)
    );
}

fn main() {
    // Keep freed memory in glibc's heap between runs (no trimming, no mmap for big blocks): each
    // run then measures allocator work, not the kernel's page faults on memory handed back and
    // taken again, which otherwise dominate and vary 2x from run to run on this VM.
    // SAFETY: mallopt only changes glibc's tuning parameters; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    if !std::env::args().any(|a| a == "--list") {
        ab_summary();
    }
}
