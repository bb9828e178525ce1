//! The goroutine profile of 100k parked goroutines (target: well under 1 s). Each goroutine
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

// THE RULE for this bench's goroutines, on which the two wrappers below rest (gort's entry
// points are `unsafe`: a goroutine may resume on another OS thread after any blocking call; the
// contract is in `gort_runtime::proc`): they hold only channel ends, `Arc`s, atomics, `Instant`s
// and `Duration`s (all `Send`) across blocking calls, and reach no thread-local themselves. The
// profiler's thread-bound state (its symbolizer's std `MutexGuard`, its allocator flag) is taken
// and released inside `write_to`, which never parks.

/// `gort::run`, safe for this bench.
#[track_caller]
#[inline(always)] // gort::run records the spawn site's pc: keep it in the caller
fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    // SAFETY: `f` follows THE RULE above.
    unsafe { gort::run(f) }
}

/// `go!(closure)`, safe for this bench (a macro: the spawn stays the caller's own code).
///
/// `collapse_debuginfo`: the spawn's code carries the `go!` call site's line, as gort's own `go!`
/// (from another crate) does; goroutine dumps print it in `created by`.
#[collapse_debuginfo(yes)]
macro_rules! go {
    ($f:expr) => {{
        let body = $f;
        // SAFETY: the goroutine follows THE RULE above.
        unsafe { gort::spawn(body) }
    }};
}

#[inline(never)]
fn blocked(rx: gort::chan::Receiver<()>) {
    let _ = rx.recv();
}

fn benches(c: &mut Criterion) {
    let (tx, rx) = gort::chan::chan::<()>(0);
    run(move || {
        for _ in 0..N {
            let rx = rx.clone();
            go!(move || blocked(rx));
        }
        while gort::runtime::goroutines().iter().filter(|g| g.state == "chan receive").count() < N {
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
    let (longest_idle, longest_busy, profiles) = run(|| {
        let p = gort::profiler::lookup("goroutine").unwrap();
        let window = |profiling: bool| {
            let (ping_tx, ping_rx) = gort::chan::chan::<()>(0);
            let (pong_tx, pong_rx) = gort::chan::chan::<()>(0);
            let echo = go!(move || while ping_rx.recv().is_some() {
                let _ = pong_tx.send(());
            });
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let pinger = go!(move || {
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
