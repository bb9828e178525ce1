//! One-shot runner for gort's channel, sync and netpoll benchmarks: runs ONE workload once and
//! prints `<workload> <unit>=<value>` lines (benches/compare.sh's format, shared with the Go,
//! Tokio and may twins). Worker count from `GOMAXPROCS`.
//!
//! ```text
//! GOMAXPROCS=2 cargo bench --bench bench_chan -- pingpong_unbuf
//! ```
//!
//! Workloads (see `benches/workloads/mod.rs` and benches/README.md):
//! - `pingpong_unbuf`: 200k round trips over two unbuffered channels; ns per round trip.
//! - `mpmc_4x4_cap1024`: 4 producers x 250k messages to 4 consumers over one channel of capacity
//!   1024; ns per message.
//! - `mutex_4x1m`: 4 goroutines x 1M lock/increment/unlock of one `gort::sync::Mutex`; ns per
//!   lock/unlock.
//! - `waitgroup_100k`: `add(100k)`, 100k goroutines calling `done`, `wait`; ns per goroutine.
//! - `unix_rtt`: 50k round trips of a 64-byte message over a Unix socket pair to an echo
//!   goroutine (the network poller's park/wake path); ns per round trip.

#[path = "../workloads/mod.rs"]
mod workloads;

use workloads::{emit, ns_per};

const WORKLOADS: &[&str] = &["pingpong_unbuf", "mpmc_4x4_cap1024", "mutex_4x1m", "waitgroup_100k", "unix_rtt"];

fn main() {
    let name = workloads::workload_arg("bench_chan", WORKLOADS);
    workloads::run(move || match name.as_str() {
        "pingpong_unbuf" => {
            const N: usize = 200_000;
            emit(&name, "ns_per_op", ns_per(workloads::pingpong(N), N as u64));
        }
        "mpmc_4x4_cap1024" => {
            let per = workloads::MPMC_PER;
            emit(&name, "ns_per_op", ns_per(workloads::mpmc(per), 4 * per as u64));
        }
        "mutex_4x1m" => {
            const PER: usize = 1_000_000;
            emit(&name, "ns_per_op", ns_per(workloads::mutex(PER), 4 * PER as u64));
        }
        "waitgroup_100k" => {
            const N: usize = 100_000;
            emit(&name, "ns_per_op", ns_per(workloads::waitgroup(N), N as u64));
        }
        "unix_rtt" => {
            const N: usize = 50_000;
            emit(&name, "ns_per_op", ns_per(workloads::unix_rtt(N), N as u64));
        }
        _ => unreachable!(),
    });
}
