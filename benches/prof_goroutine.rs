//! The goroutine profile of 100k parked goroutines (issue 5: well under 1 s). Each goroutine
//! is parked in a channel receive, two frames below its entry; the profile walks every one of
//! them (holding each still only for its own walk), groups the stacks and writes the gzipped
//! proto.
//!
//! ```text
//! cargo bench --bench prof_goroutine
//! ```

use std::time::Duration;

use criterion::{Criterion, Throughput};

const N: usize = 100_000;

#[inline(never)]
fn blocked(rx: gort::chan::Receiver<()>) {
    let _ = rx.recv();
}

fn benches(c: &mut Criterion) {
    let (tx, rx) = gort::chan::chan::<()>(0);
    gort::run(move || {
        for _ in 0..N {
            let rx = rx.clone();
            gort::go!(move || blocked(rx));
        }
        while gort::goroutines().iter().filter(|g| g.state == "chan receive").count() < N {
            gort::time::sleep(Duration::from_millis(10));
        }
    });
    let mut g = c.benchmark_group("prof_goroutine");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(N as u64));
    let p = gort::profiler::lookup("goroutine").unwrap();
    g.bench_function("profile_100k/debug0", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            p.write_to(&mut out, 0).unwrap();
            out.len()
        })
    });
    g.bench_function("profile_100k/debug1", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            p.write_to(&mut out, 1).unwrap();
            out.len()
        })
    });
    g.finish();
    pauses();
    drop(tx);
}

/// While the 100k goroutines stay parked: a ping-pong pair measures its longest round trip for a
/// while without profiling, then while profiles are taken back to back. A stop-the-world walk
/// would show as a round trip as long as the whole profile (tens of ms); gort holds each parked
/// goroutine only for its own walk, and the pair never waits on it.
fn pauses() {
    let (longest_idle, longest_busy, profiles) = gort::run(|| {
        let p = gort::profiler::lookup("goroutine").unwrap();
        let window = |profiling: bool| {
            let (ping_tx, ping_rx) = gort::chan::chan::<()>(0);
            let (pong_tx, pong_rx) = gort::chan::chan::<()>(0);
            let echo = gort::go!(move || while ping_rx.recv().is_some() {
                let _ = pong_tx.send(());
            });
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let pinger = gort::go!(move || {
                let mut longest = Duration::ZERO;
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = std::time::Instant::now();
                    ping_tx.send(()).unwrap();
                    pong_rx.recv().unwrap();
                    longest = longest.max(t.elapsed());
                }
                longest
            });
            let mut n = 0;
            let until = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < until {
                if profiling {
                    let mut out = Vec::new();
                    p.write_to(&mut out, 0).unwrap();
                    n += 1;
                } else {
                    gort::time::sleep(Duration::from_millis(10));
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let longest = pinger.join().unwrap();
            echo.join().unwrap();
            (longest, n)
        };
        let (idle, _) = window(false);
        let (busy, n) = window(true);
        (idle, busy, n)
    });
    println!(
        "prof_goroutine pauses, ping-pong beside 100k parked goroutines, 2 s each: longest round trip \
         {longest_idle:?} without profiling, {longest_busy:?} during {profiles} back-to-back goroutine profiles"
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
