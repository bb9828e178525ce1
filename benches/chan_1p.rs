//! Channel benchmarks on 1 P: unbuffered ping-pong, where every round trip is two
//! direct handoffs through `runnext` on one M. Compared with Go, Tokio and may by
//! `benches/compare.sh`.
//!
//! ```text
//! cargo bench --bench chan_1p
//! ```

#[path = "workloads/mod.rs"]
mod workloads;

use criterion::{Criterion, Throughput};
use std::time::Duration;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("chan_1p");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    // One iteration = one round trip.
    g.throughput(Throughput::Elements(1));
    g.bench_function("pingpong_unbuf", |b| b.iter_custom(|n| workloads::run(move || workloads::pingpong(n as usize))));
    g.finish();
}

fn main() {
    // Before the runtime starts (the first `gort::run`): the Ps are fixed then.
    std::env::set_var("GOMAXPROCS", "1");
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
