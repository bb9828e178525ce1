//! gort's benchmark workloads on may 0.3 (stackful coroutines; `set_workers` = GOMAXPROCS).
//! Each workload runs inside a coroutine, once per process; benches/compare.sh runs the
//! repetitions. may's channels are unbounded (no rendezvous, no capacity), noted per workload.

use gort_bench_peers::{emit, ns_per, proc_status_kib, quantile, sleep_durations, usage, workers, SKYNET_SUM};
use may::coroutine::yield_now;
use may::go;
use may::sync::{mpmc, mpsc, Mutex, WaitGroup};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKLOADS: &[&str] = &[
    "switch",
    "spawn_join_1m",
    "chained_spawn_1000",
    "yield_200x10k",
    "skynet_1m",
    "skynet_1m_chan",
    "park_100k",
    "pingpong_unbuf",
    "mpmc_4x4_cap1024",
    "mutex_4x1m",
    "waitgroup_100k",
    "sleep_100k",
    "unix_rtt",
];

fn switch_two() {
    const N: usize = 500_000;
    let start = Instant::now();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            go!(|| {
                for _ in 0..N {
                    yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    emit("switch", "ns_per_op", ns_per(start.elapsed(), 2 * N));
}

fn spawn_join_1m() {
    const N: usize = 1_000_000;
    let start = Instant::now();
    let hs: Vec<_> = (0..N).map(|i| go!(move || i * 2)).collect();
    let sum: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let el = start.elapsed();
    assert_eq!(sum, N * (N - 1));
    emit("spawn_join_1m", "ns_per_op", ns_per(el, N));
}

fn chain(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    go!(move || chain(n - 1)).join().unwrap() + 1
}

fn chained_spawn_1000() {
    const ITERS: u32 = 100;
    chain(1000);
    let start = Instant::now();
    for _ in 0..ITERS {
        assert_eq!(chain(1000), 1000);
    }
    emit("chained_spawn_1000", "us", start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERS));
}

fn yield_200x10k() {
    const TASKS: usize = 200;
    const YIELDS: usize = 10_000;
    let start = Instant::now();
    let hs: Vec<_> = (0..TASKS)
        .map(|_| {
            go!(|| {
                for _ in 0..YIELDS {
                    yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    emit("yield_200x10k", "ns_per_op", ns_per(start.elapsed(), TASKS * YIELDS));
}

fn skynet_join(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let hs: Vec<_> = (0..10).map(|i| go!(move || skynet_join(num + i * (size / 10), size / 10))).collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

fn skynet_chan(tx: mpsc::Sender<u64>, num: u64, size: u64) {
    if size == 1 {
        tx.send(num).unwrap();
        return;
    }
    let (ctx, crx) = mpsc::channel();
    for i in 0..10 {
        let ctx = ctx.clone();
        go!(move || skynet_chan(ctx, num + i * (size / 10), size / 10));
    }
    let sum: u64 = (0..10).map(|_| crx.recv().unwrap()).sum();
    tx.send(sum).unwrap();
}

fn skynet_1m(name: &str) {
    let start = Instant::now();
    let sum = if name == "skynet_1m_chan" {
        let (tx, rx) = mpsc::channel();
        go!(move || skynet_chan(tx, 0, 1_000_000));
        rx.recv().unwrap()
    } else {
        skynet_join(0, 1_000_000)
    };
    let el = start.elapsed();
    assert_eq!(sum, SKYNET_SUM);
    emit(name, "ms", el.as_secs_f64() * 1e3);
    emit(&format!("{name}_peak_rss"), "mib", proc_status_kib("VmHWM") / 1024.0);
}

/// Every coroutine blocks on a receive from one channel that is closed at the end, as in Go
/// (may's mpmc channel; unbounded: may has no rendezvous).
fn park_100k() {
    const N: usize = 100_000;
    let started = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpmc::channel::<()>();
    let mut hs = Vec::with_capacity(N);
    let before = proc_status_kib("VmRSS");
    for _ in 0..N {
        let (started, rx) = (started.clone(), rx.clone());
        hs.push(go!(move || {
            started.fetch_add(1, Ordering::Relaxed);
            assert!(rx.recv().is_err());
        }));
    }
    while started.load(Ordering::Relaxed) < N {
        yield_now();
    }
    may::coroutine::sleep(Duration::from_millis(20));
    let after = proc_status_kib("VmRSS");
    drop(tx); // the last sender: closes the channel and wakes every receiver
    for h in hs {
        h.join().unwrap();
    }
    emit("park_100k", "kib_per_g", (after - before) / N as f64);
}

/// may has no rendezvous channel; two unbounded mpsc channels carry the ping and the pong.
fn pingpong() {
    const N: usize = 200_000;
    let (ping_tx, ping_rx) = mpsc::channel::<usize>();
    let (pong_tx, pong_rx) = mpsc::channel::<usize>();
    let echo = go!(move || {
        while let Ok(v) = ping_rx.recv() {
            pong_tx.send(v).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..N {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv(), Ok(i));
    }
    let el = start.elapsed();
    drop(ping_tx);
    echo.join().unwrap();
    emit("pingpong_unbuf", "ns_per_op", ns_per(el, N));
}

/// may's MPMC channel is unbounded (no capacity 1024).
fn mpmc_4x4() {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const PER: usize = 250_000;
    let (tx, rx) = mpmc::channel::<usize>();
    let start = Instant::now();
    let cs: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let rx = rx.clone();
            go!(move || {
                let mut s = 0;
                while let Ok(v) = rx.recv() {
                    s += v;
                }
                s
            })
        })
        .collect();
    let ps: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let tx = tx.clone();
            go!(move || {
                for i in 0..PER {
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
    let el = start.elapsed();
    assert_eq!(total, PRODUCERS * PER * (PER - 1) / 2);
    emit("mpmc_4x4_cap1024", "ns_per_op", ns_per(el, PRODUCERS * PER));
}

fn mutex_4x1m() {
    const G: usize = 4;
    const PER: usize = 1_000_000;
    let m = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    let hs: Vec<_> = (0..G)
        .map(|_| {
            let m = m.clone();
            go!(move || {
                for _ in 0..PER {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let el = start.elapsed();
    assert_eq!(*m.lock().unwrap(), G * PER);
    emit("mutex_4x1m", "ns_per_op", ns_per(el, G * PER));
}

/// may's WaitGroup is crossbeam-shaped: a clone is `add(1)`, a drop is `done()`.
fn waitgroup_100k() {
    const N: usize = 100_000;
    let start = Instant::now();
    let wg = WaitGroup::new();
    for _ in 0..N {
        let wg = wg.clone();
        go!(move || drop(wg));
    }
    wg.wait();
    emit("waitgroup_100k", "ns_per_op", ns_per(start.elapsed(), N));
}

/// 100k coroutines wait on one channel (closed to start them); just before the close the clock
/// is read (`t0`); coroutine `i` then sleeps until `t0 + 1 s + d[i]` and records how late it
/// woke (`may::coroutine::sleep`, may's timer list).
fn sleep_100k() {
    const N: usize = 100_000;
    const MARGIN: Duration = Duration::from_secs(1);
    let armed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let late: Arc<Vec<std::sync::atomic::AtomicI64>> = Arc::new((0..N).map(|_| Default::default()).collect());
    let t0 = Arc::new(std::sync::OnceLock::<Instant>::new());
    let (tx, rx) = mpmc::channel::<()>();
    let hs: Vec<_> = sleep_durations(N)
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let (late, t0, rx, armed) = (late.clone(), t0.clone(), rx.clone(), armed.clone());
            go!(move || {
                assert!(rx.recv().is_err());
                let t0 = *t0.get().expect("t0 is set before the close");
                armed.fetch_max(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                let deadline = t0 + MARGIN + d;
                may::coroutine::sleep(deadline.saturating_duration_since(Instant::now()));
                let now = Instant::now();
                let l = now.saturating_duration_since(deadline).as_nanos() as i64
                    - deadline.saturating_duration_since(now).as_nanos() as i64;
                late[i].store(l, Ordering::Relaxed);
            })
        })
        .collect();
    t0.set(Instant::now()).unwrap();
    drop((tx, rx));
    for h in hs {
        h.join().unwrap();
    }
    let mut v: Vec<i64> = late.iter().map(|l| l.load(Ordering::Relaxed)).collect();
    v.sort_unstable();
    let us = |q| quantile(&v, q) as f64 / 1e3;
    emit("sleep_100k_p50", "us", us(0.5));
    emit("sleep_100k_p99", "us", us(0.99));
    println!(
        "# sleep_100k: min {:.1} us, max {:.1} us, last timer armed {:.1} ms after the start",
        us(0.0),
        us(1.0),
        armed.load(Ordering::Relaxed) as f64 / 1e6
    );
}

/// 50k round trips of a 64-byte message over may's `UnixStream::pair` to an echo coroutine,
/// after 1000 warm-up round trips.
fn unix_rtt() {
    use std::io::{Read, Write};
    const N: usize = 50_000;
    let (mut a, mut b) = may::os::unix::net::UnixStream::pair().expect("socketpair");
    let echo = go!(move || {
        let mut buf = [0u8; 64];
        loop {
            match b.read_exact(&mut buf) {
                Ok(()) => b.write_all(&buf).expect("echo write"),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                Err(e) => panic!("echo read: {e}"),
            }
        }
    });
    let (mut msg, mut back) = ([0u8; 64], [0u8; 64]);
    let mut el = Duration::ZERO;
    for (rounds, timed) in [(1000, false), (N, true)] {
        let start = Instant::now();
        for i in 0..rounds {
            msg[0] = i as u8;
            a.write_all(&msg).expect("write");
            a.read_exact(&mut back).expect("read");
            assert_eq!(back[0], i as u8);
        }
        if timed {
            el = start.elapsed();
        }
    }
    drop(a);
    echo.join().unwrap();
    emit("unix_rtt", "ns_per_op", ns_per(el, N));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 || !WORKLOADS.contains(&args[1].as_str()) {
        usage("peer_may", WORKLOADS);
    }
    may::config().set_workers(workers());
    let name = args[1].clone();
    go!(move || match name.as_str() {
        "switch" => switch_two(),
        "spawn_join_1m" => spawn_join_1m(),
        "chained_spawn_1000" => chained_spawn_1000(),
        "yield_200x10k" => yield_200x10k(),
        "skynet_1m" | "skynet_1m_chan" => skynet_1m(&name),
        "park_100k" => park_100k(),
        "pingpong_unbuf" => pingpong(),
        "mpmc_4x4_cap1024" => mpmc_4x4(),
        "mutex_4x1m" => mutex_4x1m(),
        "waitgroup_100k" => waitgroup_100k(),
        "sleep_100k" => sleep_100k(),
        "unix_rtt" => unix_rtt(),
        _ => unreachable!(),
    })
    .join()
    .unwrap();
}
