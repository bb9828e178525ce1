//! Scheduler benchmarks on 2 Ps: spawn+join 1M, chained spawn 1000, yield 200 x 10k,
//! skynet 1M (join handles and Go's channel version). Workloads in `workloads/mod.rs`; the
//! same programs in Go, Tokio and may are compared by `benches/compare.sh`, and memory (skynet's
//! peak RSS, KiB per parked goroutine) by `benches/runners/mem.rs` (criterion measures time).
//!
//! ```text
//! cargo bench --bench rt_2p
//! ```

#[path = "workloads/mod.rs"]
mod workloads;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use std::time::Duration;

/// Sums `iters` runs of a workload, each run inside `gort::run`.
fn runs(iters: u64, f: fn() -> Duration) -> Duration {
    workloads::run(move || (0..iters).map(|_| f()).sum())
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("rt_2p");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).sampling_mode(SamplingMode::Flat);

    g.throughput(Throughput::Elements(1_000_000)).measurement_time(Duration::from_secs(8));
    g.bench_function("spawn_join_1m", |b| b.iter_custom(|n| runs(n, || workloads::spawn_join(1_000_000))));

    g.throughput(Throughput::Elements(1000)).measurement_time(Duration::from_secs(4));
    g.bench_function("chained_spawn_1000", |b| {
        b.iter_custom(|n| workloads::run(move || workloads::chained_spawn_1000(n)))
    });

    g.throughput(Throughput::Elements(2_000_000)).measurement_time(Duration::from_secs(5));
    g.bench_function("yield_200x10k", |b| b.iter_custom(|n| runs(n, || workloads::yield_many(200, 10_000))));

    g.throughput(Throughput::Elements(1_111_111)).measurement_time(Duration::from_secs(15));
    for with_chan in [true, false] {
        let id = BenchmarkId::new("skynet_1m", if with_chan { "chan" } else { "join" });
        g.bench_with_input(id, &with_chan, |b, &with_chan| {
            b.iter_custom(|n| workloads::run(move || (0..n).map(|_| workloads::skynet_1m(with_chan)).sum()))
        });
    }
    g.finish();
}

fn main() {
    // Before the runtime starts (the first `gort::run`): the Ps are fixed then.
    std::env::set_var("GOMAXPROCS", "2");
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
