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
    drop(tx);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
