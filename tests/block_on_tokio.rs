//! The `tokio` feature: `gort::block_on` with Tokio's reactor and timer, from goroutines.
//! (`cargo test` enables the feature through the crate's dev-dependency on itself.)

mod common;

use std::time::{Duration, Instant};

use common::{go, run, wait_count};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serializes the tests that count goroutines in the `future` state.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `tokio::time::sleep` from many goroutines at once: each parks on gort (shown as `future`)
/// while Tokio's timer runs, and all wake.
#[test]
fn tokio_sleep_from_goroutines() {
    let _t = common::take_turn(&TURN);
    let total = run(|| {
        let t0 = Instant::now();
        let hs: Vec<_> = (0..100u64)
            .map(|i| {
                go!(move || gort::block_on(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    i
                }))
            })
            .collect();
        wait_count("future", 100);
        let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(t0.elapsed() >= Duration::from_millis(50));
        total
    });
    assert_eq!(total, (0..100).sum::<u64>());
}

/// A Tokio TCP echo server on the bridge's runtime, and goroutines that connect, write and read
/// back through `tokio::net::TcpStream`.
#[test]
fn tokio_tcp_round_trip_from_goroutines() {
    let handle = gort::tokio_bridge::handle();
    let listener = handle.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    handle.spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                    }
                }
            });
        }
    });
    let echoed = run(move || {
        let hs: Vec<_> = (0..16u32)
            .map(|i| {
                go!(move || gort::block_on(async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let mut total = 0;
                    for round in 0..10u32 {
                        let msg = format!("goroutine {i} round {round}");
                        s.write_all(msg.as_bytes()).await.unwrap();
                        let mut back = vec![0u8; msg.len()];
                        s.read_exact(&mut back).await.unwrap();
                        assert_eq!(back, msg.as_bytes());
                        total += back.len();
                    }
                    total
                }))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    let want: usize = (0..16u32).flat_map(|i| (0..10u32).map(move |r| format!("goroutine {i} round {r}").len())).sum();
    assert_eq!(echoed, want);
}

/// A poll that makes a blocking gort call (here a channel receive that parks) may resume on
/// another thread, which has Tokio's context too: the rest of the poll still reaches Tokio's
/// timer, and nothing is left wired.
#[test]
fn a_poll_that_parks_on_gort_keeps_tokio_reachable() {
    run(|| {
        let (tx, rx) = gort::chan::chan::<u32>(0);
        go!(move || {
            gort::time::sleep(Duration::from_millis(10));
            tx.send(7).unwrap();
        });
        let got = gort::block_on(async move {
            let v = rx.recv().unwrap();
            assert!(tokio::runtime::Handle::try_current().is_ok(), "no Tokio context after the park");
            tokio::time::sleep(Duration::from_millis(1)).await;
            v
        });
        assert_eq!(got, 7);
        assert!(!gort::runtime::locked_to_thread(), "left wired to its thread");
    });
}

/// Once the runtime is chosen, every goroutine sees its context wherever it runs, outside
/// `block_on` too: goroutines spread over the Ps and moved between threads by their parks all
/// find it, and `tokio::spawn` from a goroutine works.
#[test]
fn every_goroutine_sees_the_context_once_chosen() {
    let handle = gort::tokio_bridge::handle().clone();
    let seen = run(move || {
        let hs: Vec<_> = (0..64)
            .map(|i| {
                let handle = handle.clone();
                go!(move || {
                    let mut seen = 0;
                    for _ in 0..20 {
                        gort::time::sleep(Duration::from_micros(100 + i));
                        if let Ok(h) = tokio::runtime::Handle::try_current() {
                            seen += usize::from(h.id() == handle.id());
                        }
                    }
                    let task = tokio::spawn(async move { i * 2 });
                    assert_eq!(gort::block_on(task).unwrap(), i * 2);
                    seen
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    assert_eq!(seen, 64 * 20);
}

/// On a plain thread `block_on` enters the context for the call only: the caller's thread is
/// left as it was.
#[test]
fn a_plain_thread_is_left_without_the_context() {
    std::thread::spawn(|| {
        let v = gort::block_on(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            5
        });
        assert_eq!(v, 5);
        assert!(tokio::runtime::Handle::try_current().is_err(), "context left on the caller's thread");
    })
    .join()
    .unwrap();
}

/// Once `block_on` has chosen a runtime, `set_handle` gives the handle back.
#[test]
fn set_handle_after_start_is_refused() {
    let _ = gort::tokio_bridge::handle();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert!(gort::tokio_bridge::set_handle(rt.handle().clone()).is_err());
}
