//! The hog detector: a goroutine that checksums a buffer for 300 ms without entering the
//! scheduler, beside a goroutine that sleeps 1 ms at a time. Only the first is reported.
//!
//! ```text
//! cargo run --release --example hog              # trace line, hog profile text, profiles/hog.pb.gz
//! go tool pprof -top profiles/hog.pb.gz
//! ```

use std::time::{Duration, Instant};

/// A checksum over `buf`, `rounds` times: computing, never calling into the runtime.
#[inline(never)]
fn checksum(buf: &[u8], rounds: u32) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for _ in 0..rounds {
        for &b in buf {
            h ^= b as u64;
            h ^= h << 13;
            h ^= h >> 7;
        }
    }
    h
}

/// Checksums for `d` of wall time.
#[inline(never)]
fn crunch(d: Duration) -> u64 {
    let buf: Vec<u8> = (0..64 << 10).map(|i| i as u8).collect();
    let end = Instant::now() + d;
    let mut h = 0;
    while Instant::now() < end {
        h ^= checksum(&buf, 4);
    }
    h
}

/// Sleeps 1 ms at a time for `d`: many short runs, none of them a hog.
#[inline(never)]
fn ticker(d: Duration) -> u32 {
    let end = Instant::now() + d;
    let mut n = 0;
    while Instant::now() < end {
        gort::time::sleep(Duration::from_millis(1));
        n += 1;
    }
    n
}

fn main() {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("usage: hog\n\nRuns a 300 ms hog beside a 1 ms ticker; prints the hog trace and profile.");
        return;
    }
    // What GORT_HOGTRACE=1 does.
    gort::runtime::hog::set_trace(true);
    let main_goroutine = || {
        // SAFETY: the goroutine holds a `Duration` and its own buffer (Send), and reaches no
        // thread-local.
        let hog = unsafe { gort::go!(crunch(Duration::from_millis(300))) };
        // SAFETY: as above; `sleep` is its only blocking call and it holds nothing across it.
        let tick = unsafe { gort::go!(ticker(Duration::from_millis(300))) };
        let ticks = tick.join().unwrap();
        hog.join().unwrap();
        ticks
    };
    // SAFETY: the main goroutine holds only join handles (Send) across its joins.
    let ticks = unsafe { gort::run(main_goroutine) };
    // Let the trace thread print (it reads the binary's symbols the first time).
    let deadline = Instant::now() + Duration::from_secs(10);
    while gort::runtime::hog::trace_printed() < gort::runtime::hog::events() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "ticker: {ticks} sleeps; hog events: {}, retakes: {}\n",
        gort::runtime::hog::events(),
        gort::runtime::hog::retakes()
    );
    let mut text = Vec::new();
    gort::profiler::lookup("hog").unwrap().write_to(&mut text, 1).unwrap();
    println!("{}", String::from_utf8_lossy(&text));
    std::fs::create_dir_all("profiles").unwrap();
    let mut f = std::fs::File::create("profiles/hog.pb.gz").unwrap();
    gort::profiler::lookup("hog").unwrap().write_to(&mut f, 0).unwrap();
    println!("wrote profiles/hog.pb.gz; try: go tool pprof -top profiles/hog.pb.gz");
}
