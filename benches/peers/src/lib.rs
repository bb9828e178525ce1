//! Helpers shared by the peer benchmark binaries (`peer_tokio`, `peer_may`): output format,
//! worker count and /proc/self/status readings. The workloads mirror benches/go/main.go and gort's
//! benches/runners/*.rs; see benches/README.md.

use std::time::Duration;

/// Prints one result line: `<workload> <unit>=<value>`.
pub fn emit(name: &str, unit: &str, value: f64) {
    println!("{name} {unit}={value:.1}");
}

/// Nanoseconds per operation.
pub fn ns_per(d: Duration, ops: usize) -> f64 {
    d.as_nanos() as f64 / ops as f64
}

/// Worker threads: `GOMAXPROCS` (set by benches/compare.sh, the same knob Go and gort read),
/// default 2.
pub fn workers() -> usize {
    match std::env::var("GOMAXPROCS") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("GOMAXPROCS={s:?} is not a positive integer")),
        Err(_) => 2,
    }
}

/// A `Vm...:` field of /proc/self/status, in KiB.
pub fn proc_status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Prints the usage line and exits.
pub fn usage(bin: &str, names: &[&str]) -> ! {
    eprintln!("usage: {bin} WORKLOAD\nworkloads: {}", names.join(" "));
    std::process::exit(2)
}

/// Sum of skynet(0, 1M, 10).
pub const SKYNET_SUM: u64 = 499_999_500_000;

/// splitmix64, the generator of the `sleep_100k` durations (the same function as gort's and Go's
/// twins, so every runtime sleeps the same durations).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `sleep_100k` durations: `n` uniform in [0, 100 ms) at nanosecond resolution, seed 1.
pub fn sleep_durations(n: usize) -> Vec<Duration> {
    let mut state = 1u64;
    (0..n).map(|_| Duration::from_nanos(splitmix64(&mut state) % 100_000_000)).collect()
}

/// The `q`-quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[i64], q: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
