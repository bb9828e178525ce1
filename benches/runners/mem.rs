//! Memory measurements (criterion measures time only). Each measurement needs a fresh process,
//! so `bench_mem WORKLOAD` runs one, and `bench_mem` with no argument re-runs itself once per
//! workload. Prints `<workload> <unit>=<value>` lines (benches/compare.sh's format); timings go
//! on `#` comment lines.
//!
//! ```text
//! GOMAXPROCS=2 cargo bench --bench bench_mem -- park_100k
//! ```
//!
//! - `park_100k`: RSS growth / 100k with 100k goroutines blocked at once on a receive from one
//!   unbuffered channel (then closed). Target: <= 5 KiB per goroutine.
//! - `skynet_1m`: peak RSS (VmHWM from /proc/self/status) of a process that has run skynet 1M
//!   (1,111,111 goroutines, join-handle version) once. Target: <= 1 GiB.
//!   `bench_runtime skynet_1m` prints the same figure next to the time.
//! - `g_size`: `size_of::<G>()`, the goroutine descriptor's bytes (one of the floors under
//!   `park_100k`, benches/README.md "Floors"); not a measurement, not run by compare.sh.

#[path = "../workloads/mod.rs"]
mod workloads;

use std::process::Command;
use workloads::{emit, proc_status_kib};

const WORKLOADS: &[&str] = &["park_100k", "skynet_1m", "g_size"];

fn main() {
    if std::env::args().len() == 1 {
        let exe = std::env::current_exe().expect("current_exe");
        for w in &WORKLOADS[..2] {
            let status = Command::new(&exe).arg(w).status().expect("re-run bench_mem");
            assert!(status.success(), "bench_mem {w}: {status}");
        }
        return;
    }
    let name = workloads::workload_arg("bench_mem", WORKLOADS);
    workloads::run(move || match name.as_str() {
        "park_100k" => {
            const N: usize = 100_000;
            emit("park_100k", "kib_per_g", workloads::parked_kib_per_g(N));
            println!(
                "# after: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
                proc_status_kib("VmRSS") / 1024.0,
                proc_status_kib("VmHWM") / 1024.0
            );
        }
        "skynet_1m" => {
            let d = workloads::skynet_1m(false);
            println!("# skynet_1m took {:.1} ms", d.as_secs_f64() * 1e3);
            emit("skynet_1m_peak_rss", "mib", proc_status_kib("VmHWM") / 1024.0);
        }
        "g_size" => emit("g_size", "bytes", std::mem::size_of::<gort_runtime::g::G>() as f64),
        _ => unreachable!(),
    });
}
