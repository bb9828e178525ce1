//! Memory measurements (criterion measures time only). Each measurement needs a fresh process,
//! so `bench_mem WORKLOAD` runs one, and `bench_mem` with no argument re-runs itself once per
//! workload. Prints `<workload> <unit>=<value>` lines (bench/compare.sh's format); timings go
//! on `#` comment lines.
//!
//! ```text
//! GOMAXPROCS=2 cargo run --release --example bench_mem
//! ```
//!
//! - `skynet_1m`: peak RSS (VmHWM from /proc/self/status) of a process that has run skynet 1M
//!   (1,111,111 goroutines, join-handle version) once. Target (issue 2): <= 1 GiB.
//! - `park_100k`: RSS delta / 100k with 100k goroutines parked at once (`gort::park` with reason
//!   `semacquire`; woken with `gort::ready`). Target (issue 2): <= 5 KiB per goroutine.

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::process::Command;
use std::time::Instant;
use workloads::{emit, proc_status_kib};

const WORKLOADS: &[&str] = &["skynet_1m", "park_100k"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            for w in WORKLOADS {
                let status = Command::new(&exe).arg(w).status().expect("re-run bench_mem");
                assert!(status.success(), "bench_mem {w}: {status}");
            }
        }
        Some(w) if args.len() == 2 && WORKLOADS.contains(&w) => {
            let name = w.to_string();
            gort::run(move || measure(&name));
        }
        Some(_) => {
            eprintln!("usage: bench_mem [WORKLOAD]\nworkloads: {}", WORKLOADS.join(" "));
            std::process::exit(2);
        }
    }
}

fn measure(name: &str) {
    match name {
        "skynet_1m" => {
            let start = Instant::now();
            let sum = workloads::skynet(0, workloads::SKYNET_SIZE);
            let elapsed = start.elapsed();
            assert_eq!(sum, workloads::SKYNET_SUM);
            println!("# skynet_1m took {:.1} ms", elapsed.as_secs_f64() * 1e3);
            emit("skynet_1m_peak_rss", "mib", proc_status_kib("VmHWM") / 1024.0);
        }
        "park_100k" => {
            const N: usize = 100_000;
            let kib = workloads::parked_kib_per_g(N);
            emit("park_100k", "kib_per_g", kib);
            println!(
                "# after: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
                proc_status_kib("VmRSS") / 1024.0,
                proc_status_kib("VmHWM") / 1024.0
            );
        }
        _ => unreachable!(),
    }
}
