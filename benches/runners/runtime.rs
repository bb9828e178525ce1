//! One-shot runner for gort's scheduler benchmarks: runs ONE workload once and prints
//! `<workload> <unit>=<value>` lines, the format benches/compare.sh reads from gort, Go
//! (benches/go) and the peers (benches/peers). Worker count from `GOMAXPROCS`.
//!
//! ```text
//! GOMAXPROCS=1 cargo bench --bench bench_runtime -- switch
//! GOMAXPROCS=2 cargo bench --bench bench_runtime -- spawn_join_1m
//! ```
//!
//! Workloads (see `benches/workloads/mod.rs` and benches/README.md): `switch` (meant for
//! GOMAXPROCS=1), `spawn_join_1m`, `chained_spawn_1000`, `yield_200x10k`, `skynet_1m` (join
//! handles) and `skynet_1m_chan` (Go's original, with channels); both skynets also print the
//! process's peak RSS; `sleep_100k` (wake-up lateness of 100k sleeping goroutines, p50 and p99
//! in µs) and `goroutine_profile_100k` / `goroutine_profile_100k_spin` (the goroutine profile of
//! 100k parked goroutines, without / with 2 spinning goroutines: its median time and the
//! longest pause a 1 ms probe sees during it, and without it). The channel and sync workloads are in `benches/runners/chan.rs`, the
//! memory per parked goroutine in `benches/runners/mem.rs`.

#[path = "../workloads/mod.rs"]
mod workloads;

use workloads::{emit, ns_per, proc_status_kib};

const WORKLOADS: &[&str] = &[
    "switch",
    "spawn_join_1m",
    "chained_spawn_1000",
    "yield_200x10k",
    "skynet_1m",
    "skynet_1m_chan",
    "sleep_100k",
    "goroutine_profile_100k",
    "goroutine_profile_100k_spin",
];

fn main() {
    let name = workloads::workload_arg("bench_runtime", WORKLOADS);
    workloads::run(move || match name.as_str() {
        "switch" => {
            const N: u64 = 500_000;
            emit(&name, "ns_per_op", ns_per(workloads::switch(N), 2 * N));
        }
        "spawn_join_1m" => {
            const N: usize = 1_000_000;
            emit(&name, "ns_per_op", ns_per(workloads::spawn_join(N), N as u64));
        }
        "chained_spawn_1000" => {
            const ITERS: u64 = 100;
            let d = workloads::chained_spawn_1000(ITERS);
            emit(&name, "us", d.as_secs_f64() * 1e6 / ITERS as f64);
        }
        "yield_200x10k" => {
            let d = workloads::yield_many(200, 10_000);
            emit(&name, "ns_per_op", ns_per(d, 200 * 10_000));
        }
        "skynet_1m" | "skynet_1m_chan" => {
            let d = workloads::skynet_1m(name == "skynet_1m_chan");
            emit(&name, "ms", d.as_secs_f64() * 1e3);
            emit(&format!("{name}_peak_rss"), "mib", proc_status_kib("VmHWM") / 1024.0);
        }
        "sleep_100k" => {
            let (late, armed) = workloads::sleep_lateness(100_000);
            let us = |q| workloads::quantile(&late, q) as f64 / 1e3;
            emit("sleep_100k_p50", "us", us(0.5));
            emit("sleep_100k_p99", "us", us(0.99));
            println!(
                "# sleep_100k: min {:.1} us, max {:.1} us, last timer armed {:.1} ms after the start",
                us(0.0),
                us(1.0),
                armed.as_secs_f64() * 1e3
            );
        }
        "goroutine_profile_100k" | "goroutine_profile_100k_spin" => {
            let spinners = if name.ends_with("_spin") { 2 } else { 0 };
            let r = workloads::goroutine_profile(100_000, spinners);
            emit(&name, "ms", r.profile.as_secs_f64() * 1e3);
            emit(&format!("{name}_pause"), "us", r.pause.as_secs_f64() * 1e6);
            emit(&format!("{name}_pause_idle"), "us", r.pause_idle.as_secs_f64() * 1e6);
        }
        _ => unreachable!(),
    });
}
