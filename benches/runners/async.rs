//! One-shot runner for the async side: a round trip between a Tokio task and a goroutine over
//! gort channels (`send_async`/`recv_async` on the task's side), beside the same round trip
//! between two goroutines and between two Tokio tasks over Tokio's `mpsc`. Prints
//! `<workload> ns_per_op=<value>` (benches/compare.sh's format); one round trip is one op.
//!
//! ```text
//! GOMAXPROCS=1 cargo bench --bench bench_async -- rt_task_goroutine
//! ```
//!
//! Workloads (each 100k round trips, one Tokio worker where Tokio runs, gort's worker count from
//! `GOMAXPROCS`):
//! - `rt_task_goroutine`: a Tokio task sends on an unbuffered gort channel, a goroutine echoes
//!   on another; the task awaits the echo. Crosses between the Tokio worker and a gort M twice.
//! - `rt_goroutine_goroutine`: `workloads::pingpong`, the same over two goroutines.
//! - `rt_tokio_mpsc`: two Tokio tasks over two `tokio::sync::mpsc` channels of capacity 1
//!   (Tokio has no rendezvous channel), both on the one worker.
//!
//! The Tokio sides run in a spawned task, on the worker (not in `block_on`'s thread).

#[path = "../workloads/mod.rs"]
mod workloads;

use std::time::{Duration, Instant};

use gort::chan::chan;
use workloads::{emit, ns_per};

const WORKLOADS: &[&str] = &["rt_task_goroutine", "rt_goroutine_goroutine", "rt_tokio_mpsc"];
const N: usize = 100_000;

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn task_goroutine(n: usize) -> Duration {
    let (ping_tx, ping_rx) = chan::<usize>(0);
    let (pong_tx, pong_rx) = chan::<usize>(0);
    // SAFETY: THE RULE of workloads/mod.rs: the echo holds only channel handles (Send).
    let echo = unsafe {
        gort::go!(move || {
            for v in ping_rx {
                pong_tx.send(v).unwrap();
            }
        })
    };
    // On a worker (`block_on` would run it on this thread, outside the runtime's workers).
    let rt = tokio_rt();
    rt.block_on(rt.spawn(async move {
        let start = Instant::now();
        for i in 0..n {
            ping_tx.send_async(i).await.unwrap();
            assert_eq!(pong_rx.recv_async().await, Some(i));
        }
        let elapsed = start.elapsed();
        drop(ping_tx);
        echo.await.unwrap();
        elapsed
    }))
    .unwrap()
}

fn tokio_mpsc(n: usize) -> Duration {
    let rt = tokio_rt();
    rt.block_on(rt.spawn(async move {
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<usize>(1);
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<usize>(1);
        let echo = tokio::spawn(async move {
            while let Some(v) = ping_rx.recv().await {
                pong_tx.send(v).await.unwrap();
            }
        });
        let start = Instant::now();
        for i in 0..n {
            ping_tx.send(i).await.unwrap();
            assert_eq!(pong_rx.recv().await, Some(i));
        }
        let elapsed = start.elapsed();
        drop(ping_tx);
        echo.await.unwrap();
        elapsed
    }))
    .unwrap()
}

fn main() {
    let name = workloads::workload_arg("bench_async", WORKLOADS);
    let d = match name.as_str() {
        "rt_task_goroutine" => task_goroutine(N),
        "rt_goroutine_goroutine" => workloads::run(|| workloads::pingpong(N)),
        "rt_tokio_mpsc" => tokio_mpsc(N),
        _ => unreachable!(),
    };
    emit(&name, "ns_per_op", ns_per(d, N as u64));
}
