//! One-shot runner for gort's scheduler benchmarks: runs ONE workload once and prints
//! `<workload> <unit>=<value>` lines, the format bench/compare.sh reads from gort, Go
//! (bench/go) and the peers (bench/peers). Worker count from GOMAXPROCS.
//!
//! ```text
//! GOMAXPROCS=1 cargo run --release --example bench_runtime -- switch_1p
//! GOMAXPROCS=2 cargo run --release --example bench_runtime -- spawn_join_1m
//! ```
//!
//! Workloads: switch_1p, spawn_join_1m, chained_spawn_1000, yield_200x10k, yield_200x10k_1p,
//! skynet_1m (see bench/README.md). The channel and sync workloads are in
//! `examples/bench_chan.rs`; the memory ones in `examples/bench_mem.rs`.

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::time::Instant;
use workloads::{emit, ns_per};

const WORKLOADS: &[&str] =
    &["switch_1p", "spawn_join_1m", "chained_spawn_1000", "yield_200x10k", "yield_200x10k_1p", "skynet_1m"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 || !WORKLOADS.contains(&args[1].as_str()) {
        eprintln!("usage: bench_runtime WORKLOAD\nworkloads: {}", WORKLOADS.join(" "));
        std::process::exit(2);
    }
    let name = args[1].clone();
    gort::run(move || match name.as_str() {
        "switch_1p" => {
            const N: u64 = 500_000;
            emit(&name, "ns_per_op", ns_per(workloads::switch(N), 2 * N));
        }
        "spawn_join_1m" => {
            const N: usize = 1_000_000;
            emit(&name, "ns_per_op", ns_per(workloads::spawn_join(N), N as u64));
        }
        "chained_spawn_1000" => {
            const ITERS: u32 = 100;
            workloads::chain(1000); // warm-up: fills the stack and G pools
            let start = Instant::now();
            for _ in 0..ITERS {
                assert_eq!(workloads::chain(1000), 1000);
            }
            let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERS);
            emit(&name, "us", us);
        }
        "yield_200x10k" | "yield_200x10k_1p" => {
            let d = workloads::yield_many(200, 10_000);
            emit(&name, "ns_per_op", ns_per(d, 200 * 10_000));
        }
        "skynet_1m" => {
            let start = Instant::now();
            let sum = workloads::skynet(0, workloads::SKYNET_SIZE);
            let elapsed = start.elapsed();
            assert_eq!(sum, workloads::SKYNET_SUM);
            emit(&name, "ms", elapsed.as_secs_f64() * 1e3);
        }
        _ => unreachable!(),
    });
}
