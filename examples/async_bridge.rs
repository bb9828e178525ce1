//! Goroutines from a Tokio program: spawn them from async code, await their `JoinHandle`s, and
//! talk to them over gort channels with `recv_async`/`send_async`, racing a Tokio timer with
//! `tokio::select!`.
//!
//! ```text
//! cargo run --release --example async_bridge
//! ```
//!
//! Runs by itself and exits: a fan-out of goroutines computing sums of squares, a goroutine
//! pipeline fed and drained by a Tokio task, and a receive that loses a race against a Tokio
//! sleep and then wins one.

use std::time::{Duration, Instant};

use gort::chan::chan;

/// Sum of squares below `n`, the slow way: CPU work for a goroutine.
fn sum_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i % 1_000_003).sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let t0 = Instant::now();

    // 1. Fan out: goroutines spawned from a Tokio task, their handles awaited.
    let handles: Vec<_> = (1..=8u64)
        .map(|k| {
            // SAFETY: the goroutine computes on its arguments and touches no thread-local.
            unsafe { gort::spawn(move || sum_squares(k * 100_000)) }
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.expect("the goroutine panicked");
    }
    println!("fan-out: 8 goroutines, awaited from a Tokio task: total {total}");

    // A goroutine's panic comes back as join's Err.
    // SAFETY: the goroutine only panics.
    let h = unsafe { gort::spawn(|| -> u64 { panic!("a goroutine gives up") }) };
    match h.await {
        Ok(_) => unreachable!(),
        Err(e) => println!("a panicking goroutine, awaited: Err({:?})", e.downcast_ref::<&str>().unwrap()),
    }

    // 2. A pipeline: a Tokio task sends numbers to goroutine workers, which square them and send
    //    the results back; the task receives them with recv_async.
    let (jobs_tx, jobs_rx) = chan::<u64>(0);
    let (results_tx, results_rx) = chan::<u64>(16);
    for _ in 0..4 {
        let (jobs_rx, results_tx) = (jobs_rx.clone(), results_tx.clone());
        // SAFETY: the worker holds channel handles (Send) and touches no thread-local.
        unsafe {
            gort::go!(move || {
                for v in jobs_rx.iter() {
                    results_tx.send(v * v).unwrap();
                }
            })
        };
    }
    drop((jobs_rx, results_tx));
    let feeder = tokio::spawn(async move {
        for v in 1..=1000u64 {
            jobs_tx.send_async(v).await.unwrap();
        }
        // jobs_tx dropped here: the channel closes and the workers end.
    });
    let mut sum = 0;
    let mut n = 0;
    while let Some(sq) = results_rx.recv_async().await {
        sum += sq;
        n += 1;
    }
    feeder.await.unwrap();
    println!("pipeline: {n} squares from 4 goroutine workers, sum {sum}");
    assert_eq!(sum, (1..=1000u64).map(|v| v * v).sum::<u64>());

    // 3. A gort channel against a Tokio timer.
    let (tx, rx) = chan::<&'static str>(0);
    tokio::select! {
        v = rx.recv_async() => unreachable!("nobody sent, yet got {v:?}"),
        _ = tokio::time::sleep(Duration::from_millis(20)) => println!("select: the Tokio sleep won (nobody sent)"),
    }
    // SAFETY: the goroutine holds a Sender (Send) and touches no thread-local.
    unsafe {
        gort::go!(move || {
            gort::time::sleep(Duration::from_millis(5));
            tx.send("hello from a goroutine").unwrap();
        })
    };
    tokio::select! {
        v = rx.recv_async() => println!("select: the gort channel won: {:?}", v.unwrap()),
        _ = tokio::time::sleep(Duration::from_secs(10)) => unreachable!("the goroutine never sent"),
    }

    println!("done in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
}
