//! The benchmark workloads, shared by the criterion benches (`benches/rt_*.rs`,
//! `benches/chan_*.rs`) and the one-shot runners (`benches/runners/runtime.rs`,
//! `benches/runners/chan.rs`, `benches/runners/mem.rs`), so both measure exactly the same code.
//! Their twins in Go (`benches/go/main.go`), Tokio and may (`benches/peers/src/bin/`) follow the
//! same algorithm step by step; `benches/README.md` lists every workload and where a peer has to
//! differ (Tokio and may have no rendezvous channel, Go has no join handle).
//!
//! Every function here must be called from inside [`run`] (`gort::run`). The worker count is
//! the runtime's (`GOMAXPROCS`), fixed at start; the caller decides it.
//!
//! Each target includes this file with `#[path]` and uses a subset of it, hence the
//! `dead_code` allowance.
//!
//! Spawning goes through [`run`] and the `go!` below, which wrap gort's `unsafe` entry points
//! (a goroutine may resume on another OS thread after any blocking call; the contract is in
//! `gort_runtime::proc`). Their SAFETY comments rest on one rule, checked for this file and the
//! benches and runners that include it: THE RULE. These goroutines hold nothing thread-bound
//! across a blocking call and reach no thread-local: they share state only through gort's
//! channels, `gort::sync::{Mutex, WaitGroup}`, atomics and `Arc`s, all `Send`; the runners'
//! main goroutines print with `println!`, which locks and releases stdout inside std, and read
//! `/proc/self/status` with no lock held. The wrappers expand to the same calls as before, so the
//! benchmarks measure the same code path.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::chan::chan;
use gort::sync::{Mutex, WaitGroup};

/// `gort::run`, safe for the benchmarks: runs `f` as a main goroutine and returns its result.
#[track_caller]
#[inline(always)] // gort::run records the spawn site's pc: keep it in the caller
///
/// With `BENCH_CPU_PROFILE_HZ=N` in the environment the run is CPU-profiled at N Hz (into
/// `io::sink`): the profiler's overhead, measured on the workload itself. A bad value is an error.
/// With `BENCH_WALL=1` the run is inside a wall-clock accounting window (the scheduler's side
/// of the wall-clock profile, without its CPU sampler, whose cost `BENCH_CPU_PROFILE_HZ`
/// measures); `GORT_SCHEDTIMING=1` turns the scheduler's histograms on.
pub fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let hz = std::env::var("BENCH_CPU_PROFILE_HZ").ok().map(|v| {
        v.parse::<u32>().unwrap_or_else(|_| panic!("BENCH_CPU_PROFILE_HZ={v:?}: expected samples per second"))
    });
    if let Some(hz) = hz {
        gort::profiler::set_cpu_profile_rate(hz);
        gort::profiler::start_cpu_profile(std::io::sink()).expect("start the CPU profile");
    }
    let wall = std::env::var("BENCH_WALL").is_ok_and(|v| v == "1");
    if wall {
        gort::runtime::wall::start().expect("open a wall-clock window");
    }
    // SAFETY: `f` follows THE RULE (module docs).
    let r = unsafe { gort::run(f) };
    if wall {
        let p = gort::runtime::wall::stop(&[]);
        assert!(!p.records.is_empty(), "the wall-clock window recorded nothing");
    }
    if hz.is_some() {
        gort::profiler::stop_cpu_profile().expect("stop the CPU profile");
    }
    r
}

/// `gort::spawn` for the workloads: `go!(closure)`. A macro, so that the spawn is the caller's
/// own code exactly as a direct `gort::spawn` call is; the closure is built outside the
/// `unsafe` block.
///
/// `collapse_debuginfo`: the spawn's code carries the `go!` call site's line, as gort's own `go!`
/// (from another crate) does; goroutine dumps print it in `created by`.
#[collapse_debuginfo(yes)]
macro_rules! go {
    ($f:expr) => {{
        let body = $f;
        // SAFETY: the goroutine follows THE RULE (module docs).
        unsafe { gort::spawn(body) }
    }};
}

// ---------------------------------------------------------------------------------------------
// Scheduler
// ---------------------------------------------------------------------------------------------

/// Two goroutines each yielding `n` times; run with GOMAXPROCS=1 so every yield is a switch to
/// the other one. Returns the elapsed time for `2 * n` switches.
pub fn switch(n: u64) -> Duration {
    yield_many(2, n as usize)
}

/// Spawns `n` goroutines that return a small value, then joins them all.
pub fn spawn_join(n: usize) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..n).map(|i| go!(move || i * 2)).collect();
    let sum: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = start.elapsed();
    assert_eq!(sum, n * (n - 1));
    elapsed
}

/// Each goroutine spawns the next and joins it, `depth` deep. Returns `depth`.
pub fn chain(depth: usize) -> usize {
    if depth == 0 {
        return 0;
    }
    go!(move || chain(depth - 1)).join().unwrap() + 1
}

/// `iters` chains of 1000 (after one warm-up chain that fills the G and stack pools).
pub fn chained_spawn_1000(iters: u64) -> Duration {
    chain(1000);
    let start = Instant::now();
    for _ in 0..iters {
        assert_eq!(chain(1000), 1000);
    }
    start.elapsed()
}

/// `tasks` goroutines each yielding `yields` times.
pub fn yield_many(tasks: usize, yields: usize) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..tasks)
        .map(|_| {
            go!(move || {
                for _ in 0..yields {
                    gort::runtime::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

/// Sum of `skynet(0, SKYNET_SIZE)`.
pub const SKYNET_SUM: u64 = 499_999_500_000;
/// Leaves of the skynet tree (1,111,111 goroutines in all).
pub const SKYNET_SIZE: u64 = 1_000_000;

/// Skynet with join handles (gort's idiom): each goroutine spawns its 10 children and joins them.
pub fn skynet(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let sub = size / 10;
    let hs: [gort::JoinHandle<u64>; 10] = std::array::from_fn(|i| go!(move || skynet(num + i as u64 * sub, sub)));
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// Skynet exactly as the original Go program (github.com/atemerev/skynet): each goroutine makes
/// an unbuffered channel, starts its 10 children with a clone of its sender, sums 10 receives
/// and sends the sum to its parent.
pub fn skynet_chan(out: gort::chan::Sender<u64>, num: u64, size: u64) {
    if size == 1 {
        out.send(num).unwrap();
        return;
    }
    let (tx, rx) = chan::<u64>(0);
    let sub = size / 10;
    for i in 0..10 {
        let tx = tx.clone();
        drop(go!(move || skynet_chan(tx, num + i * sub, sub)));
    }
    let sum: u64 = (0..10).map(|_| rx.recv().unwrap()).sum();
    out.send(sum).unwrap();
}

/// Runs skynet 1M (join-handle version, or the channel version with `chan == true`) and checks
/// the sum.
pub fn skynet_1m(with_chan: bool) -> Duration {
    let start = Instant::now();
    let sum = if with_chan {
        let (tx, rx) = chan::<u64>(0);
        drop(go!(move || skynet_chan(tx, 0, SKYNET_SIZE)));
        rx.recv().unwrap()
    } else {
        skynet(0, SKYNET_SIZE)
    };
    let elapsed = start.elapsed();
    assert_eq!(sum, SKYNET_SUM);
    elapsed
}

/// `n` goroutines blocked at once on a receive from one unbuffered channel: returns the RSS
/// growth per blocked goroutine in KiB, then closes the channel and waits for them all to exit
/// (a WaitGroup). Goroutines are detached (no JoinHandle), like Go's. Same steps as Go's twin:
/// count the starts, wait for all, sleep 20 ms so the last ones reach the receive, read RSS.
pub fn parked_kib_per_g(n: usize) -> f64 {
    let started = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(WaitGroup::new());
    let (tx, rx) = chan::<()>(0);
    let before = proc_status_kib("VmRSS");
    done.add(n as i64);
    for _ in 0..n {
        let (started, done, rx) = (started.clone(), done.clone(), rx.clone());
        drop(go!(move || {
            started.fetch_add(1, Ordering::Relaxed);
            assert!(rx.recv().is_none());
            done.done();
        }));
    }
    while started.load(Ordering::Relaxed) < n {
        gort::runtime::yield_now();
    }
    gort::time::sleep(Duration::from_millis(20));
    let after = proc_status_kib("VmRSS");
    drop(tx); // the last sender: closes the channel and wakes every receiver
    done.wait();
    (after - before) / n as f64
}

// ---------------------------------------------------------------------------------------------
// Channels and sync
// ---------------------------------------------------------------------------------------------

/// Unbuffered ping-pong: the caller sends `i` on `ping`, an echo goroutine sends it back on
/// `pong`, `n` times. Returns the time for `n` round trips.
pub fn pingpong(n: usize) -> Duration {
    let (ping_tx, ping_rx) = chan::<usize>(0);
    let (pong_tx, pong_rx) = chan::<usize>(0);
    let echo = go!(move || {
        for v in ping_rx {
            pong_tx.send(v).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..n {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv(), Some(i));
    }
    let elapsed = start.elapsed();
    drop(ping_tx);
    echo.join().unwrap();
    elapsed
}

/// Messages per producer in [`mpmc`].
pub const MPMC_PER: usize = 250_000;

/// Buffered MPMC: 4 consumers and 4 producers on one channel of capacity 1024, each producer
/// sending `0..per`; the consumers' sums are checked. Returns the time for `4 * per` messages.
pub fn mpmc(per: usize) -> Duration {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    let (tx, rx) = chan::<usize>(1024);
    let start = Instant::now();
    let cs: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let rx = rx.clone();
            go!(move || rx.into_iter().sum::<usize>())
        })
        .collect();
    let ps: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let tx = tx.clone();
            go!(move || {
                for i in 0..per {
                    tx.send(i).unwrap();
                }
            })
        })
        .collect();
    drop((tx, rx));
    for p in ps {
        p.join().unwrap();
    }
    let total: usize = cs.into_iter().map(|c| c.join().unwrap()).sum();
    let elapsed = start.elapsed();
    assert_eq!(total, PRODUCERS * per * (per - 1) / 2);
    elapsed
}

/// Contended `gort::sync::Mutex`: 4 goroutines each incrementing a shared counter `per` times.
/// Returns the time for `4 * per` lock/unlock pairs.
pub fn mutex(per: usize) -> Duration {
    const G: usize = 4;
    let m = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    let hs: Vec<_> = (0..G)
        .map(|_| {
            let m = m.clone();
            go!(move || {
                for _ in 0..per {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(*m.lock(), G * per);
    elapsed
}

/// WaitGroup fan-out: `add(n)`, `n` detached goroutines each calling `done`, one `wait`.
pub fn waitgroup(n: usize) -> Duration {
    let start = Instant::now();
    let wg = Arc::new(WaitGroup::new());
    wg.add(n as i64);
    for _ in 0..n {
        let wg = wg.clone();
        drop(go!(move || wg.done()));
    }
    wg.wait();
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// Timers, netpoll, the goroutine profile
// ---------------------------------------------------------------------------------------------

/// splitmix64, the generator of [`sleep_durations`]; Go's and Tokio's twins carry the same
/// function, so every runtime sleeps exactly the same durations.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sleeps of `sleep_100k`: `n` durations uniform in [0, 100 ms) at nanosecond resolution,
/// from splitmix64 seeded with 1.
pub fn sleep_durations(n: usize) -> Vec<Duration> {
    let mut state = 1u64;
    (0..n).map(|_| Duration::from_nanos(splitmix64(&mut state) % 100_000_000)).collect()
}

/// How long after the start signal the first `sleep_100k` deadline is: room for 100k goroutines
/// to wake from the start signal and arm their timers before any timer is due (on the shared
/// 2-vCPU box that took up to 450 ms in every runtime under load, hence 1 s).
pub const SLEEP_MARGIN: Duration = Duration::from_secs(1);

/// `sleep_100k`: `n` goroutines are spawned and wait on one channel. Just before closing it the
/// caller reads the clock (`t0`); goroutine `i` then sleeps until `t0 + SLEEP_MARGIN + d[i]`
/// (`d` from [`sleep_durations`]) and records how late it woke: 100k timers armed at once,
/// their deadlines spread over 100 ms. Returns every goroutine's lateness in ns, sorted, and how
/// long after `t0` the last goroutine armed its timer (if that exceeds `SLEEP_MARGIN`, the
/// start-up, not the timers, made the first sleepers late).
pub fn sleep_lateness(n: usize) -> (Vec<i64>, Duration) {
    let armed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let late: Arc<Vec<std::sync::atomic::AtomicI64>> = Arc::new((0..n).map(|_| Default::default()).collect());
    let t0 = Arc::new(std::sync::OnceLock::<Instant>::new());
    let done = Arc::new(WaitGroup::new());
    let (tx, rx) = chan::<()>(0);
    done.add(n as i64);
    for (i, d) in sleep_durations(n).into_iter().enumerate() {
        let (late, t0, done, rx, armed) = (late.clone(), t0.clone(), done.clone(), rx.clone(), armed.clone());
        drop(go!(move || {
            assert!(rx.recv().is_none());
            let t0 = *t0.get().expect("t0 is set before the close");
            armed.fetch_max(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let deadline = t0 + SLEEP_MARGIN + d;
            gort::time::sleep(deadline.saturating_duration_since(Instant::now()));
            let now = Instant::now();
            let l = now.saturating_duration_since(deadline).as_nanos() as i64
                - deadline.saturating_duration_since(now).as_nanos() as i64;
            late[i].store(l, Ordering::Relaxed);
            done.done();
        }));
    }
    t0.set(Instant::now()).unwrap();
    drop((tx, rx)); // closes the channel: every goroutine arms its timer
    done.wait();
    let mut v: Vec<i64> = late.iter().map(|l| l.load(Ordering::Relaxed)).collect();
    v.sort_unstable();
    (v, Duration::from_nanos(armed.load(Ordering::Relaxed)))
}

/// The `q`-quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[i64], q: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Bytes per message of `unix_rtt`.
pub const UNIX_MSG: usize = 64;

/// `unix_rtt`: over a Unix socket pair (`socketpair`), an echo goroutine reads 64-byte
/// messages and writes each back; the caller writes one and reads its echo, `n` times (after
/// 1000 warm-up round trips). Returns the time for `n` round trips.
pub fn unix_rtt(n: usize) -> Duration {
    use std::io::{Read, Write};
    let (a, b) = gort::net::UnixStream::pair().expect("socketpair");
    let echo = go!(move || {
        let mut b = b;
        let mut buf = [0u8; UNIX_MSG];
        loop {
            match b.read_exact(&mut buf) {
                Ok(()) => b.write_all(&buf).expect("echo write"),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                Err(e) => panic!("echo read: {e}"),
            }
        }
    });
    let mut a = a;
    let mut msg = [0u8; UNIX_MSG];
    let mut back = [0u8; UNIX_MSG];
    let mut round = |i: usize| {
        msg[0] = i as u8;
        a.write_all(&msg).expect("write");
        a.read_exact(&mut back).expect("read");
        assert_eq!(back[0], i as u8);
    };
    for i in 0..1000 {
        round(i);
    }
    let start = Instant::now();
    for i in 0..n {
        round(i);
    }
    let elapsed = start.elapsed();
    drop(a); // EOF for the echo goroutine
    echo.join().unwrap();
    elapsed
}

/// What [`goroutine_profile`] measured.
pub struct ProfileRun {
    /// Median time of one `write_to(.., 0)` (gzipped proto), over the measured profiles.
    pub profile: Duration,
    /// The probe's longest lateness (tick interval minus 1 ms) while the profiles were taken.
    pub pause: Duration,
    /// The same over a window of equal length just before, with no profile taken.
    pub pause_idle: Duration,
}

/// Parked in a channel receive two frames below the goroutine's entry, as in
/// benches/prof_goroutine.rs.
#[inline(never)]
fn blocked(rx: gort::chan::Receiver<()>) {
    let _ = rx.recv();
}

/// Profiles taken (after one warm-up) by [`goroutine_profile`].
pub const PROFILES: usize = 5;

/// `goroutine_profile_100k[_spin]`: `n` goroutines parked on one channel, `spinners`
/// goroutines spinning (each yields after every 50 µs of spinning) and a probe goroutine that
/// sleeps 1 ms in a loop and records how late each tick is. One warm-up profile, a window
/// without profiling, then [`PROFILES`] goroutine profiles back to back (debug=0, into a `Vec`).
pub fn goroutine_profile(n: usize, spinners: usize) -> ProfileRun {
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::AtomicU64;
    let started = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = chan::<()>(0);
    let done = Arc::new(WaitGroup::new());
    done.add(n as i64);
    for _ in 0..n {
        let (started, done, rx) = (started.clone(), done.clone(), rx.clone());
        drop(go!(move || {
            started.fetch_add(1, Ordering::Relaxed);
            blocked(rx);
            done.done();
        }));
    }
    while started.load(Ordering::Relaxed) < n {
        gort::runtime::yield_now();
    }
    gort::time::sleep(Duration::from_millis(20));

    let stop = Arc::new(AtomicBool::new(false));
    let spin: Vec<_> = (0..spinners)
        .map(|_| {
            let stop = stop.clone();
            go!(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(50) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                    gort::runtime::yield_now();
                }
                x
            })
        })
        .collect();
    // The probe's longest lateness since main last took it (swap to 0), in ns. `window` moves
    // on when the idle window opens: a sleep that began before (one the warm-up profile
    // delayed) is not the idle window's.
    let longest = Arc::new(AtomicU64::new(0));
    let window = Arc::new(AtomicU64::new(0));
    let probe = {
        let (stop, longest, window) = (stop.clone(), longest.clone(), window.clone());
        go!(move || {
            while !stop.load(Ordering::Relaxed) {
                let w = window.load(Ordering::SeqCst);
                let t = Instant::now();
                gort::time::sleep(Duration::from_millis(1));
                let late = t.elapsed().saturating_sub(Duration::from_millis(1));
                if window.load(Ordering::SeqCst) == w {
                    longest.fetch_max(late.as_nanos() as u64, Ordering::Relaxed);
                }
            }
        })
    };

    let p = gort::profiler::lookup("goroutine").expect("the goroutine profile");
    let profile = || {
        let mut out = Vec::new();
        let t = Instant::now();
        p.write_to(&mut out, 0).expect("goroutine profile");
        assert!(!out.is_empty());
        t.elapsed()
    };
    let warm = profile();
    longest.store(0, Ordering::SeqCst);
    window.fetch_add(1, Ordering::SeqCst);
    gort::time::sleep(warm * PROFILES as u32);
    let pause_idle = Duration::from_nanos(longest.swap(0, Ordering::Relaxed));
    let mut times: Vec<Duration> = (0..PROFILES).map(|_| profile()).collect();
    let pause = Duration::from_nanos(longest.load(Ordering::Relaxed));
    times.sort();

    stop.store(true, Ordering::Relaxed);
    probe.join().unwrap();
    for s in spin {
        s.join().unwrap();
    }
    drop((tx, rx));
    done.wait();
    ProfileRun { profile: times[PROFILES / 2], pause, pause_idle }
}

// ---------------------------------------------------------------------------------------------
// Output helpers
// ---------------------------------------------------------------------------------------------

/// A `Vm...:` field of /proc/self/status (VmRSS, VmHWM, ...), in KiB.
pub fn proc_status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Prints one result line in the format benches/compare.sh parses: `<workload> <unit>=<value>`.
pub fn emit(name: &str, unit: &str, value: f64) {
    println!("{name} {unit}={value:.1}");
}

/// Nanoseconds per operation.
pub fn ns_per(d: Duration, ops: u64) -> f64 {
    d.as_nanos() as f64 / ops as f64
}

/// The workload a one-shot runner is asked for: exactly one argument, one of `workloads`;
/// otherwise prints the usage and exits with status 2.
///
/// `cargo bench` runs every bench binary with its filter arguments followed by `--bench`. Then
/// the runner runs a workload named exactly among them, or exits 0 having run nothing, so that a
/// plain `cargo bench` (or one filtered for the criterion benches) still succeeds.
pub fn workload_arg(bin: &str, workloads: &[&str]) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = format!("usage: {bin} WORKLOAD\nworkloads: {}", workloads.join(" "));
    if args.iter().any(|a| a == "--bench") {
        if let Some(w) = args.iter().find(|a| workloads.contains(&a.as_str())) {
            return w.clone();
        }
        eprintln!("{bin}: one-shot runner, nothing run (`cargo bench --bench {bin} -- WORKLOAD`)\n{usage}");
        std::process::exit(0);
    }
    if args.len() != 1 || !workloads.contains(&args[0].as_str()) {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    args[0].clone()
}
