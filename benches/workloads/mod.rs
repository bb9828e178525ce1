//! The scheduler workloads shared by the criterion benches (`benches/rt_*.rs`) and the
//! one-shot runners (`examples/bench_runtime.rs`, `examples/bench_mem.rs`), so both measure
//! exactly the same code. Their twins in Go, Tokio and may live in `bench/` (see
//! `bench/README.md`). Every function here must be called from inside `gort::run`.
//!
//! Each target includes this file with `#[path]` and uses a subset of it, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// 1. Two goroutines each yielding `n` times; run with GOMAXPROCS=1 so every yield is a
/// switch to the other one. Returns the elapsed time for `2 * n` switches.
pub fn switch(n: u64) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            gort::spawn(move || {
                for _ in 0..n {
                    gort::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

/// 2. Spawn `n` goroutines that return a small value, then join them all.
pub fn spawn_join(n: usize) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..n).map(|i| gort::spawn(move || i * 2)).collect();
    let sum: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = start.elapsed();
    assert_eq!(sum, n * (n - 1));
    elapsed
}

/// 3. Each goroutine spawns the next and joins it, `depth` deep. Returns `depth`.
pub fn chain(depth: usize) -> usize {
    if depth == 0 {
        return 0;
    }
    gort::spawn(move || chain(depth - 1)).join().unwrap() + 1
}

/// 4. `tasks` goroutines each yielding `yields` times.
pub fn yield_many(tasks: usize, yields: usize) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..tasks)
        .map(|_| {
            gort::spawn(move || {
                for _ in 0..yields {
                    gort::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

/// Sum of `skynet(0, SKYNET_SIZE)`.
pub const SKYNET_SUM: u64 = 499_999_500_000;
/// Leaves of the skynet tree (1,111,111 goroutines in all).
pub const SKYNET_SIZE: u64 = 1_000_000;

/// 5. Skynet with join handles: each goroutine spawns its 10 children and joins them.
pub fn skynet(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let sub = size / 10;
    let hs: [gort::JoinHandle<u64>; 10] =
        std::array::from_fn(|i| gort::spawn(move || skynet(num + i as u64 * sub, sub)));
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// 6. `n` goroutines parked at once (with `gort::park`, reason `semacquire`): returns the
/// RSS growth per parked goroutine in KiB, then readies them all and waits for them to exit.
/// Goroutines are detached (no JoinHandle), like Go's.
pub fn parked_kib_per_g(n: usize) -> f64 {
    let parked: Arc<Mutex<Vec<gort::GRef>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let exited = Arc::new(AtomicUsize::new(0));
    let before = proc_status_kib("VmRSS");
    for _ in 0..n {
        let parked = parked.clone();
        let exited = exited.clone();
        drop(gort::spawn(move || {
            gort::park(gort::WaitReason::Semacquire, |g| {
                parked.lock().unwrap().push(g);
                true
            });
            exited.fetch_add(1, Ordering::Release);
        }));
    }
    while parked.lock().unwrap().len() < n {
        gort::yield_now();
    }
    let after = proc_status_kib("VmRSS");
    for g in parked.lock().unwrap().drain(..) {
        gort::ready(g);
    }
    while exited.load(Ordering::Acquire) < n {
        gort::yield_now();
    }
    (after - before) / n as f64
}

/// A `Vm...:` field of /proc/self/status (VmRSS, VmHWM, ...), in KiB.
pub fn proc_status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Prints one result line in the format bench/compare.sh parses: `<workload> <unit>=<value>`.
pub fn emit(name: &str, unit: &str, value: f64) {
    println!("{name} {unit}={value:.1}");
}

/// Nanoseconds per operation.
pub fn ns_per(d: Duration, ops: u64) -> f64 {
    d.as_nanos() as f64 / ops as f64
}
