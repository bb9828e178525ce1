//! gort's benchmark workloads on Tokio's multi-thread runtime (`worker_threads` = GOMAXPROCS).
//! Each workload runs inside a spawned task (so spawns go to a worker's local queue, as gort's
//! and Go's do from a goroutine), once per process; benches/compare.sh runs the repetitions.

use gort_bench_peers::{emit, ns_per, proc_status_kib, quantile, sleep_durations, usage, workers, SKYNET_SUM};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::task::{yield_now, JoinHandle};

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

async fn switch_two() {
    const N: usize = 500_000;
    let start = Instant::now();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..N {
                    yield_now().await;
                }
            })
        })
        .collect();
    for h in hs {
        h.await.unwrap();
    }
    emit("switch", "ns_per_op", ns_per(start.elapsed(), 2 * N));
}

async fn spawn_join_1m() {
    const N: usize = 1_000_000;
    let start = Instant::now();
    let hs: Vec<JoinHandle<usize>> = (0..N).map(|i| tokio::spawn(async move { i * 2 })).collect();
    let mut sum = 0;
    for h in hs {
        sum += h.await.unwrap();
    }
    let el = start.elapsed();
    assert_eq!(sum, N * (N - 1));
    emit("spawn_join_1m", "ns_per_op", ns_per(el, N));
}

fn chain(n: usize) -> Pin<Box<dyn Future<Output = usize> + Send>> {
    Box::pin(async move {
        if n == 0 {
            return 0;
        }
        tokio::spawn(chain(n - 1)).await.unwrap() + 1
    })
}

async fn chained_spawn_1000() {
    const ITERS: u32 = 100;
    chain(1000).await;
    let start = Instant::now();
    for _ in 0..ITERS {
        assert_eq!(chain(1000).await, 1000);
    }
    emit("chained_spawn_1000", "us", start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERS));
}

async fn yield_200x10k() {
    const TASKS: usize = 200;
    const YIELDS: usize = 10_000;
    let start = Instant::now();
    let hs: Vec<_> = (0..TASKS)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..YIELDS {
                    yield_now().await;
                }
            })
        })
        .collect();
    for h in hs {
        h.await.unwrap();
    }
    emit("yield_200x10k", "ns_per_op", ns_per(start.elapsed(), TASKS * YIELDS));
}

/// Skynet with join handles: each task spawns its 10 children and awaits them.
fn skynet_join(num: u64, size: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let hs: Vec<_> = (0..10).map(|i| tokio::spawn(skynet_join(num + i * (size / 10), size / 10))).collect();
        let mut sum = 0;
        for h in hs {
            sum += h.await.unwrap();
        }
        sum
    })
}

/// Skynet with channels, as in Go: children send to their parent's channel.
fn skynet_chan(tx: mpsc::Sender<u64>, num: u64, size: u64) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        if size == 1 {
            tx.send(num).await.unwrap();
            return;
        }
        let (ctx, mut crx) = mpsc::channel(1);
        for i in 0..10 {
            tokio::spawn(skynet_chan(ctx.clone(), num + i * (size / 10), size / 10));
        }
        drop(ctx);
        let mut sum = 0;
        for _ in 0..10 {
            sum += crx.recv().await.unwrap();
        }
        tx.send(sum).await.unwrap();
    })
}

async fn skynet_1m(name: &str) {
    let start = Instant::now();
    let sum = if name == "skynet_1m_chan" {
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(skynet_chan(tx, 0, 1_000_000));
        rx.recv().await.unwrap()
    } else {
        skynet_join(0, 1_000_000).await
    };
    let el = start.elapsed();
    assert_eq!(sum, SKYNET_SUM);
    emit(name, "ms", el.as_secs_f64() * 1e3);
    emit(&format!("{name}_peak_rss"), "mib", proc_status_kib("VmHWM") / 1024.0);
}

/// Every task blocks on a receive from one channel that is closed at the end, as in Go.
/// async-channel (Tokio has no MPMC channel); unbounded, as async-channel has no rendezvous.
async fn park_100k() {
    const N: usize = 100_000;
    let started = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = async_channel::unbounded::<()>();
    let mut hs = Vec::with_capacity(N);
    let before = proc_status_kib("VmRSS");
    for _ in 0..N {
        let (started, rx) = (started.clone(), rx.clone());
        hs.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::Relaxed);
            assert!(rx.recv().await.is_err());
        }));
    }
    while started.load(Ordering::Relaxed) < N {
        yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after = proc_status_kib("VmRSS");
    drop(tx); // the last sender: closes the channel and wakes every receiver
    for h in hs {
        h.await.unwrap();
    }
    emit("park_100k", "kib_per_g", (after - before) / N as f64);
}

/// Tokio has no rendezvous channel; two mpsc channels of capacity 1 are the closest.
async fn pingpong() {
    const N: usize = 200_000;
    let (ping_tx, mut ping_rx) = mpsc::channel::<usize>(1);
    let (pong_tx, mut pong_rx) = mpsc::channel::<usize>(1);
    let echo = tokio::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            pong_tx.send(v).await.unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..N {
        ping_tx.send(i).await.unwrap();
        assert_eq!(pong_rx.recv().await, Some(i));
    }
    let el = start.elapsed();
    drop(ping_tx);
    echo.await.unwrap();
    emit("pingpong_unbuf", "ns_per_op", ns_per(el, N));
}

/// Tokio has no MPMC channel; async-channel's bounded channel is the usual choice.
async fn mpmc() {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const PER: usize = 250_000;
    let (tx, rx) = async_channel::bounded::<usize>(1024);
    let start = Instant::now();
    let cs: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut s = 0;
                while let Ok(v) = rx.recv().await {
                    s += v;
                }
                s
            })
        })
        .collect();
    let ps: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..PER {
                    tx.send(i).await.unwrap();
                }
            })
        })
        .collect();
    drop((tx, rx));
    for p in ps {
        p.await.unwrap();
    }
    let mut total = 0;
    for c in cs {
        total += c.await.unwrap();
    }
    let el = start.elapsed();
    assert_eq!(total, PRODUCERS * PER * (PER - 1) / 2);
    emit("mpmc_4x4_cap1024", "ns_per_op", ns_per(el, PRODUCERS * PER));
}

/// tokio::sync::Mutex (the lock a task may hold across an await, like Go's).
async fn mutex_4x1m() {
    const G: usize = 4;
    const PER: usize = 1_000_000;
    let m = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    let hs: Vec<_> = (0..G)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move {
                for _ in 0..PER {
                    *m.lock().await += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.await.unwrap();
    }
    let el = start.elapsed();
    assert_eq!(*m.lock().await, G * PER);
    emit("mutex_4x1m", "ns_per_op", ns_per(el, G * PER));
}

/// Tokio has no WaitGroup: a countdown plus a Notify, which is what a WaitGroup is.
async fn waitgroup_100k() {
    const N: usize = 100_000;
    let start = Instant::now();
    let wg = Arc::new((AtomicUsize::new(N), Notify::new()));
    for _ in 0..N {
        let wg = wg.clone();
        tokio::spawn(async move {
            if wg.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                wg.1.notify_one();
            }
        });
    }
    while wg.0.load(Ordering::Acquire) != 0 {
        wg.1.notified().await;
    }
    emit("waitgroup_100k", "ns_per_op", ns_per(start.elapsed(), N));
}

/// 100k tasks wait on one channel (async-channel, closed to start them); just before the close
/// the clock is read (`t0`); task `i` then sleeps until `t0 + 1 s + d[i]` and records how late
/// it woke. Tokio's timer wheel has 1 ms slots: a sleep ends at the first millisecond tick at or
/// after its deadline.
async fn sleep_100k() {
    const N: usize = 100_000;
    const MARGIN: Duration = Duration::from_secs(1);
    let armed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let late: Arc<Vec<std::sync::atomic::AtomicI64>> = Arc::new((0..N).map(|_| Default::default()).collect());
    let t0 = Arc::new(std::sync::OnceLock::<Instant>::new());
    let (tx, rx) = async_channel::unbounded::<()>();
    let mut hs = Vec::with_capacity(N);
    for (i, d) in sleep_durations(N).into_iter().enumerate() {
        let (late, t0, rx, armed) = (late.clone(), t0.clone(), rx.clone(), armed.clone());
        hs.push(tokio::spawn(async move {
            assert!(rx.recv().await.is_err());
            let t0 = *t0.get().expect("t0 is set before the close");
            armed.fetch_max(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let deadline = t0 + MARGIN + d;
            tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
            let now = Instant::now();
            let l = now.saturating_duration_since(deadline).as_nanos() as i64
                - deadline.saturating_duration_since(now).as_nanos() as i64;
            late[i].store(l, Ordering::Relaxed);
        }));
    }
    t0.set(Instant::now()).unwrap();
    drop((tx, rx));
    for h in hs {
        h.await.unwrap();
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

/// 50k round trips of a 64-byte message over `tokio::net::UnixStream::pair` to an echo task,
/// after 1000 warm-up round trips.
async fn unix_rtt() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const N: usize = 50_000;
    let (mut a, mut b) = tokio::net::UnixStream::pair().expect("socketpair");
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            match b.read_exact(&mut buf).await {
                Ok(_) => b.write_all(&buf).await.expect("echo write"),
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
            a.write_all(&msg).await.expect("write");
            a.read_exact(&mut back).await.expect("read");
            assert_eq!(back[0], i as u8);
        }
        if timed {
            el = start.elapsed();
        }
    }
    drop(a);
    echo.await.unwrap();
    emit("unix_rtt", "ns_per_op", ns_per(el, N));
}

async fn dispatch(name: String) {
    match name.as_str() {
        "switch" => switch_two().await,
        "spawn_join_1m" => spawn_join_1m().await,
        "chained_spawn_1000" => chained_spawn_1000().await,
        "yield_200x10k" => yield_200x10k().await,
        "skynet_1m" | "skynet_1m_chan" => skynet_1m(&name).await,
        "park_100k" => park_100k().await,
        "pingpong_unbuf" => pingpong().await,
        "mpmc_4x4_cap1024" => mpmc().await,
        "mutex_4x1m" => mutex_4x1m().await,
        "waitgroup_100k" => waitgroup_100k().await,
        "sleep_100k" => sleep_100k().await,
        "unix_rtt" => unix_rtt().await,
        _ => unreachable!(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 || !WORKLOADS.contains(&args[1].as_str()) {
        usage("peer_tokio", WORKLOADS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_time()
        .enable_io()
        .build()
        .expect("tokio runtime");
    let name = args[1].clone();
    rt.block_on(async move { tokio::spawn(dispatch(name)).await.unwrap() });
}
