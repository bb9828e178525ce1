//! Channel and sync benchmarks on 2 Ps: unbuffered ping-pong, buffered MPMC (4 x 4,
//! capacity 1024), contended mutex (4 goroutines x 1M), WaitGroup fan-out of 100k. Workloads in
//! `workloads/mod.rs`; the same programs in Go, Tokio and may are compared by
//! `benches/compare.sh`.
//!
//! ```text
//! cargo bench --bench chan_2p
//! ```

#[path = "workloads/mod.rs"]
mod workloads;

use criterion::{Criterion, SamplingMode, Throughput};
use std::time::Duration;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("chan_2p");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    // One iteration = one round trip.
    g.throughput(Throughput::Elements(1));
    g.bench_function("pingpong_unbuf", |b| b.iter_custom(|n| workloads::run(move || workloads::pingpong(n as usize))));

    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(4 * workloads::MPMC_PER as u64));
    g.bench_function("mpmc_4x4_cap1024", |b| {
        b.iter_custom(|n| workloads::run(move || (0..n).map(|_| workloads::mpmc(workloads::MPMC_PER)).sum()))
    });

    g.throughput(Throughput::Elements(4_000_000)).measurement_time(Duration::from_secs(4));
    g.bench_function("mutex_4x1m", |b| {
        b.iter_custom(|n| workloads::run(move || (0..n).map(|_| workloads::mutex(1_000_000)).sum()))
    });

    g.throughput(Throughput::Elements(100_000)).measurement_time(Duration::from_secs(3));
    g.bench_function("waitgroup_100k", |b| {
        b.iter_custom(|n| workloads::run(move || (0..n).map(|_| workloads::waitgroup(100_000)).sum()))
    });
    g.finish();
}

fn main() {
    // Before the runtime starts (the first `gort::run`): the Ps are fixed then.
    std::env::set_var("GOMAXPROCS", "2");
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
