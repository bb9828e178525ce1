//! Scheduler benchmarks on 1 P: the switch (two goroutines yielding to each other)
//! and yield 200 x 10k. Workloads in `workloads/mod.rs`; compared with Go, Tokio and may by
//! `benches/compare.sh`.
//!
//! ```text
//! cargo bench --bench rt_1p
//! ```

#[path = "workloads/mod.rs"]
mod workloads;

use criterion::{Criterion, Throughput};
use std::time::Duration;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("rt_1p");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    // One iteration = one switch: each of the two goroutines yields ceil(n/2) times.
    g.throughput(Throughput::Elements(1));
    g.bench_function("switch", |b| {
        b.iter_custom(|n| {
            let per = n.div_ceil(2);
            workloads::run(move || workloads::switch(per)).mul_f64(n as f64 / (2 * per) as f64)
        })
    });

    g.throughput(Throughput::Elements(2_000_000));
    g.bench_function("yield_200x10k", |b| {
        b.iter_custom(|n| workloads::run(move || (0..n).map(|_| workloads::yield_many(200, 10_000)).sum()))
    });
    g.finish();
}

fn main() {
    // Before the runtime starts (the first `gort::run`): the Ps are fixed then.
    std::env::set_var("GOMAXPROCS", "1");
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
