//! The gort tour: a self-contained demo that exits by itself.
//!
//! ```text
//! cargo run --release --example tour
//! ```
//!
//! It runs the scheduler's classic workloads (skynet, ping-pong over a channel, a fan-out with a
//! WaitGroup, a CPU hog next to a ticker), then reproduces Go's goroutine-leak demo (a
//! goroutine blocked on `<-a` every 20 ms) and heap demo (`leak.rs`, `heap.rs`), and writes
//! pprof files to `profiles/` (two goroutine profiles 10 leaks apart, a heap profile, a CPU
//! profile of the hogs, a mutex profile of the fan-out, a wall-clock profile of handlers that
//! wait on a slow backend, and a flame graph of the CPU profile), prints scheduler metrics
//! plus a grouped goroutine dump, then prints the `go tool pprof` commands to explore them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::chan::{chan, Receiver};
use gort::profiler::proto::Profile;
use lexopt::prelude::*;

/// The sampling allocator, so the heap profile has something to show.
#[global_allocator]
static ALLOC: gort::profiler::Allocator = gort::profiler::Allocator::system();

/// Skynet: a tree of 1,111,111 goroutines, each summing its children's results.
fn skynet(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let (tx, rx) = chan::<u64>(10);
    for i in 0..10 {
        let tx = tx.clone();
        let child = move || {
            let _ = tx.send(skynet(num + i * size / 10, size / 10));
        };
        // SAFETY: a skynet goroutine holds a `Sender` and a `Receiver` (Send) across its spawns,
        // sends and receives, and touches no thread-local.
        unsafe { gort::spawn(child) };
    }
    drop(tx);
    rx.iter().sum()
}

/// The goroutine-leak demo: each request starts a goroutine that waits on a channel nobody
/// will ever send on.
fn leaky_handler() {
    let (_a_tx, a_rx): (_, Receiver<u32>) = chan(0);
    std::mem::forget(_a_tx); // the "sender" is never used, and the channel never closes
                             // SAFETY: the leaked goroutine holds only its `Receiver` (Send) while it blocks.
    unsafe { gort::go!(move || a_rx.recv()) };
}

const USAGE: &str = "\
usage: tour

Runs the scheduler's classic workloads and the goroutine-leak and heap demos, writes pprof
files and a goroutine dump to profiles/ (in the current directory), prints the go tool pprof
commands to explore them, and exits. GOMAXPROCS sets the worker count.

  -h, --help    print this help
";

/// The tour takes no arguments; `--help` prints the usage and exits.
fn parse_args() -> Result<(), lexopt::Error> {
    let mut parser = lexopt::Parser::from_env();
    if let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = parse_args() {
        eprintln!("tour: {e}");
        std::process::exit(2);
    }
    let tour = || {
        let mut report = String::new();
        println!("gort tour: GOMAXPROCS={}", gort::runtime::gomaxprocs());

        let t = Instant::now();
        let sum = skynet(0, 1_000_000);
        assert_eq!(sum, 499_999_500_000);
        println!("  skynet 1M:            {:>8.1} ms (1,111,111 goroutines, sum {sum})", ms(t));

        let t = Instant::now();
        let (ping_tx, ping_rx) = chan::<u32>(0);
        let (pong_tx, pong_rx) = chan::<u32>(0);
        let n = 200_000;
        let echo = move || {
            for v in ping_rx.iter() {
                pong_tx.send(v + 1).unwrap();
            }
        };
        // SAFETY: the echo goroutine holds two channel ends (Send) and nothing thread-bound.
        let echo = unsafe { gort::spawn(echo) };
        for i in 0..n {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv(), Some(i + 1));
        }
        drop(ping_tx);
        echo.join().unwrap();
        println!("  channel ping-pong:    {:>8.1} ns per round trip ({n} round trips)", ms(t) * 1e6 / n as f64);

        let t = Instant::now();
        let wg = Arc::new(gort::sync::WaitGroup::new());
        let total = Arc::new(gort::sync::Mutex::new(0u64));
        for i in 0..100_000u64 {
            wg.add(1);
            let (wg, total) = (wg.clone(), total.clone());
            let work = move || {
                *total.lock() += i;
                wg.done();
            };
            // SAFETY: the worker holds two `Arc`s (Send) and a `gort::sync::Mutex` guard, which
            // belongs to the goroutine, not to the thread.
            unsafe { gort::spawn(work) };
        }
        wg.wait();
        assert_eq!(*total.lock(), 4_999_950_000);
        println!("  WaitGroup fan-out:    {:>8.1} ms (100k goroutines, one Mutex)", ms(t));

        // Four goroutines taking turns on one Mutex, each holding it 200 µs of CPU: the mutex
        // profile (every contention recorded, Go's fraction 1) charges the waits to the holder.
        gort::profiler::set_mutex_profile_fraction(1);
        let t = Instant::now();
        let lock = Arc::new(gort::sync::Mutex::new(0u64));
        let holders: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                let body = move || hold_lock(&lock, 50);
                // SAFETY: the goroutine holds an `Arc` and a `gort::sync::Mutex` guard (the
                // goroutine's, not the thread's) across its blocking lock calls.
                unsafe { gort::spawn(body) }
            })
            .collect();
        holders.into_iter().for_each(|h| h.join().unwrap());
        gort::profiler::set_mutex_profile_fraction(0);
        println!("  contended Mutex:      {:>8.1} ms (4 goroutines x 50 turns of 200 us)", ms(t));
        std::fs::create_dir_all("profiles").expect("create profiles/");
        let mutex = write_profile("mutex", "profiles/mutex.pb.gz");

        // A CPU hog per P that never yields, next to a 10 ms ticker: sysmon hands the hogs' Ps
        // to other threads, so the ticker keeps time. The CPU profile sees the hogs.
        let cpu_file = std::fs::File::create("profiles/cpu.pb.gz").expect("create profiles/cpu.pb.gz");
        gort::profiler::start_cpu_profile(cpu_file).expect("start the CPU profile");
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..gort::runtime::gomaxprocs())
            .map(|_| {
                let stop = stop.clone();
                let hog = move || busy_loop(&stop);
                // SAFETY: the hog never blocks and holds only an `Arc<AtomicBool>`.
                unsafe { gort::spawn(hog) }
            })
            .collect();
        let ticks = gort::time::tick(Duration::from_millis(10));
        let (mut last, mut worst) = (Instant::now(), Duration::ZERO);
        for _ in 0..20 {
            ticks.recv();
            worst = worst.max(last.elapsed());
            last = Instant::now();
        }
        stop.store(true, Ordering::Relaxed);
        hogs.into_iter().for_each(|h| h.join().unwrap());
        gort::profiler::stop_cpu_profile().expect("write profiles/cpu.pb.gz");
        let cpu = Profile::decode_any(&std::fs::read("profiles/cpu.pb.gz").expect("read profiles/cpu.pb.gz"))
            .expect("decode the CPU profile");
        let svg = std::fs::File::create("profiles/flame.svg").expect("create profiles/flame.svg");
        gort::profiler::write_flamegraph(&cpu, "cpu", None, std::io::BufWriter::new(svg))
            .expect("write the flame graph");
        println!(
            "  10 ms ticker beside {} CPU hogs: worst interval {:.1} ms",
            gort::runtime::gomaxprocs(),
            ms_d(worst)
        );

        // The leak demo: a "request" every 20 ms leaks one goroutine. Two goroutine profiles,
        // 10 leaks apart, show it the way `go tool pprof -base` does.
        for _ in 0..5 {
            leaky_handler();
            gort::time::sleep(Duration::from_millis(20));
        }
        let g1 = write_profile("goroutine", "profiles/goroutine-1.pb.gz");
        let before = gort::runtime::num_goroutine();
        for _ in 0..10 {
            leaky_handler();
            gort::time::sleep(Duration::from_millis(20));
        }
        gort::time::sleep(Duration::from_millis(20));
        let g2 = write_profile("goroutine", "profiles/goroutine-2.pb.gz");
        let after = gort::runtime::num_goroutine();

        // The wall-clock profile: four "handlers" that each wait 5 ms for a slow backend, then
        // compute for about 0.5 ms. The CPU profile sees only the computing; the wall-clock
        // profile sees where the time goes. Scheduling latency is timed meanwhile.
        gort::runtime::set_sched_timing(true);
        let stop = Arc::new(AtomicBool::new(false));
        let handlers: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                let h = move || {
                    gort::profiler::with_labels(&[("handler", "page")], || {
                        while !stop.load(Ordering::Relaxed) {
                            slow_backend();
                            spin_for(Duration::from_micros(500));
                        }
                    })
                };
                // SAFETY: a handler holds an `Arc<AtomicBool>` and touches no thread-local.
                unsafe { gort::spawn(h) }
            })
            .collect();
        let wall = gort::profiler::wall::profile_for(Duration::from_millis(500), gort::time::sleep)
            .expect("wall-clock profile");
        stop.store(true, Ordering::Relaxed);
        handlers.into_iter().for_each(|h| h.join().unwrap());
        std::fs::write("profiles/wall.pb.gz", &wall).expect("write profiles/wall.pb.gz");
        let wall = Profile::decode_any(&wall).expect("decode the wall-clock profile");
        let metrics = gort::runtime::metrics();

        // The heap demo: 12 MiB + 24 MiB of slices and a 999,999-entry map, kept alive.
        let kept = (new_slice_in_heap1(), new_map_in_heap());
        let heap = write_profile("heap", "profiles/heap.pb.gz");
        std::hint::black_box(&kept);

        // What `go tool pprof -top` would say, in brief.
        writeln!(report, "CPU profile of the hogs, top 5 by CPU time (innermost function of the tour):").unwrap();
        for (f, n) in top5_user(&cpu, 1) {
            writeln!(report, "  {:>8.1} ms  {f}", n as f64 / 1e6).unwrap();
        }
        writeln!(report, "mutex profile, top 5 by delay (the function that held the lock):").unwrap();
        for (f, n) in top5_user(&mutex, 1) {
            writeln!(report, "  {:>8.3} ms  {f}", n as f64 / 1e6).unwrap();
        }
        writeln!(report, "goroutine profile 2, top 5 by count (leaf function):").unwrap();
        for (f, n) in top5(&g2, 0) {
            writeln!(report, "  {n:>8}  {f}").unwrap();
        }
        let inuse = heap.sample_type.iter().position(|t| heap.str(t.r#type) == "inuse_space").unwrap_or(0);
        writeln!(report, "heap profile, top 5 by inuse_space (leaf function):").unwrap();
        for (f, n) in top5(&heap, inuse) {
            writeln!(report, "  {:>8.1} MB  {f}", n as f64 / (1 << 20) as f64).unwrap();
        }
        writeln!(
            report,
            "wall-clock profile (0.5 s) of 4 handlers and the backends they started, by state (go tool pprof -tags):"
        )
        .unwrap();
        for (state, ns) in by_state(&wall) {
            writeln!(report, "  {:>8.1} ms  {state}", ns as f64 / 1e6).unwrap();
        }
        writeln!(report, "scheduler metrics (gort::runtime::metrics(), served at /debug/metrics):").unwrap();
        let lat = &metrics.sched_latency;
        writeln!(
            report,
            "  scheduling latency: {} transitions, mean {:.1} us, p99 < {:.1} us",
            lat.count(),
            lat.sum_ns as f64 / lat.count().max(1) as f64 / 1e3,
            quantile_bound_ns(lat, 0.99) as f64 / 1e3
        )
        .unwrap();
        for (reason, h) in &metrics.park_durations {
            writeln!(
                report,
                "  parks in [{reason}]: {}, mean {:.2} ms",
                h.count(),
                h.sum_ns as f64 / h.count().max(1) as f64 / 1e6
            )
            .unwrap();
        }
        writeln!(
            report,
            "  goroutines created {}, threads {}, stacks in use {} ({} KiB reserved)",
            metrics.goroutines_created,
            metrics.threads,
            metrics.stacks_in_use,
            metrics.stack_bytes_in_use >> 10
        )
        .unwrap();
        writeln!(report, "the leak, profile 2 minus profile 1 (go tool pprof -base):").unwrap();
        let diff = gort::profiler::proto::delta(&g1, &g2).expect("two goroutine profiles");
        for s in diff.sample.iter().filter(|s| s.value[0] > 0) {
            let names = stack_names(&diff, s);
            if names.iter().any(|n| n.starts_with("gort_profiler")) {
                continue; // the goroutine taking the profiles
            }
            let user = names.iter().find(|n| !n.starts_with("gort_runtime")).cloned().unwrap_or_default();
            writeln!(report, "  +{} goroutines blocked in {} called from {user}", s.value[0], names[0]).unwrap();
        }

        let gs = gort::runtime::goroutines();
        let mut groups: BTreeMap<(String, String), usize> = BTreeMap::new();
        for g in &gs {
            let site = g.created_at.map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            *groups.entry((g.state.clone(), site)).or_default() += 1;
        }
        writeln!(report, "goroutines: {before} at the first profile, {after} at the second (+{})", after - before)
            .unwrap();
        let mut by_count: Vec<_> = groups.into_iter().collect();
        by_count.sort_by_key(|e| std::cmp::Reverse(e.1));
        for ((state, site), n) in &by_count {
            writeln!(report, "{n:>6} @ [{state}] created at {site}").unwrap();
        }
        report
    };
    // The allocator's sampling state is reached only inside the allocator, and the profiler's
    // inside `to_proto`, which does not park.
    // SAFETY: the main goroutine holds only `Send` values across its blocking calls (channel ends,
    // `Arc`s, handles, profiles, a `String`); stdout is locked inside each `println!`; no TLS.
    let out = unsafe { gort::run(tour) };
    std::fs::write("profiles/goroutines.txt", &out).expect("write profiles/goroutines.txt");
    println!("\n{out}");
    println!("The [chan receive] group is the leak: goroutines started by leaky_handler, each blocked");
    println!("on a channel nobody sends to. Wrote profiles/goroutine-1.pb.gz, goroutine-2.pb.gz,");
    println!("heap.pb.gz, cpu.pb.gz, mutex.pb.gz, wall.pb.gz (pprof format), flame.svg (open it in a browser:");
    println!("click to zoom, Ctrl-F to search) and goroutines.txt. Explore them with Go's pprof:");
    println!("  go tool pprof -top -base profiles/goroutine-1.pb.gz profiles/goroutine-2.pb.gz");
    println!("  go tool pprof -top -sample_index=inuse_space profiles/heap.pb.gz");
    println!("  go tool pprof -top profiles/cpu.pb.gz");
    println!("  go tool pprof -top profiles/mutex.pb.gz");
    println!("  go tool pprof -top -tagfocus 'state=chan receive' profiles/wall.pb.gz");
    println!("Run the tests with:  cargo test --workspace");
}

/// Takes profile `name`, writes it (gzipped pprof) to `path` and returns it.
fn write_profile(name: &str, path: &str) -> Profile {
    let p = gort::profiler::lookup(name).expect("known profile").to_proto();
    std::fs::write(path, p.encode_gz()).expect("write profile file");
    p
}

/// Function names of a sample's stack, leaf first (inlined callees first, as pprof orders them).
fn stack_names(p: &Profile, s: &gort::profiler::proto::Sample) -> Vec<String> {
    let mut v = Vec::new();
    for id in &s.location_id {
        let Some(loc) = p.location.iter().find(|l| l.id == *id) else { continue };
        for line in &loc.line {
            if let Some(f) = p.function.iter().find(|f| f.id == line.function_id) {
                v.push(p.str(f.name).to_string());
            }
        }
    }
    if v.is_empty() {
        v.push("?".to_string());
    }
    v
}

/// Like [`top5`], by the innermost function of this program: not the standard library's, which
/// an optimised leaf often is (`wrapping_add` inlined into the loop that calls it), nor gort's
/// (a mutex profile's leaf is the unlock; the function above it held the lock).
fn top5_user(p: &Profile, idx: usize) -> Vec<(String, i64)> {
    let std =
        ["core::", "std::", "alloc::", "<core::", "<std::", "<alloc::", "<u64", "gort_runtime::", "<gort_runtime::"];
    let mut by: BTreeMap<String, i64> = BTreeMap::new();
    for s in &p.sample {
        let names = stack_names(p, s);
        let f = names.iter().find(|n| !std.iter().any(|p| n.starts_with(p))).unwrap_or(&names[0]);
        *by.entry(f.clone()).or_default() += s.value[idx];
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.truncate(5);
    v
}

/// `go tool pprof -top`'s first five rows: value `idx` summed by leaf function.
fn top5(p: &Profile, idx: usize) -> Vec<(String, i64)> {
    let mut by: BTreeMap<String, i64> = BTreeMap::new();
    for s in &p.sample {
        *by.entry(stack_names(p, s).swap_remove(0)).or_default() += s.value[idx];
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.truncate(5);
    v
}

/// A CPU hog: arithmetic the optimizer cannot remove, until told to stop.
#[inline(never)]
fn busy_loop(stop: &AtomicBool) {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
}

/// Takes `lock` `turns` times, holding it for 200 µs of work each time.
#[inline(never)]
fn hold_lock(lock: &gort::sync::Mutex<u64>, turns: u32) {
    for _ in 0..turns {
        let mut g = lock.lock();
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(200) {
            *g = std::hint::black_box(g.wrapping_add(1));
        }
    }
}

#[inline(never)]
fn new_slice_in_heap1() -> (Vec<u8>, Vec<u8>) {
    let a = vec![1u8; 12 << 20];
    (a, new_slice_in_heap2())
}

#[inline(never)]
fn new_slice_in_heap2() -> Vec<u8> {
    vec![2u8; 24 << 20]
}

#[inline(never)]
fn new_map_in_heap() -> std::collections::HashMap<String, String> {
    let m = (0..999_999).map(|i| (format!("KeyID{i}"), format!("value{i}"))).collect();
    // Not a tail call: `collect` as this function's last act compiles to a jump, which leaves
    // no frame of ours on the stack, and the map would be charged to our caller.
    std::hint::black_box(m)
}

/// A handler's slow dependency: a backend goroutine answers after 5 ms.
#[inline(never)]
fn slow_backend() -> u32 {
    let (tx, rx) = chan::<u32>(1);
    let backend = move || {
        gort::time::sleep(Duration::from_millis(5));
        let _ = tx.send(42);
    };
    // SAFETY: the backend holds a `Sender` (Send) and touches no thread-local.
    unsafe { gort::go!(backend) };
    rx.recv().unwrap_or(0)
}

/// Computes for `d` without entering the runtime.
#[inline(never)]
fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::black_box(t);
    }
}

/// A wall-clock profile's handler time by `state` label, largest first.
fn by_state(p: &Profile) -> Vec<(String, i64)> {
    let mut m: BTreeMap<String, i64> = BTreeMap::new();
    for s in &p.sample {
        let lab: BTreeMap<&str, &str> = s.label.iter().map(|l| (p.str(l.key), p.str(l.str))).collect();
        if lab.get("handler") == Some(&"page") {
            *m.entry(lab.get("state").copied().unwrap_or("?").to_string()).or_default() += s.value[0];
        }
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// The upper bound of the histogram bucket holding quantile `q`.
fn quantile_bound_ns(h: &gort::runtime::Histogram, q: f64) -> u64 {
    let want = (h.count() as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (k, n) in h.buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return gort::runtime::schedstats::bucket_bound_ns(k).unwrap_or(u64::MAX);
        }
    }
    u64::MAX
}

fn ms(t: Instant) -> f64 {
    ms_d(t.elapsed())
}

fn ms_d(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
