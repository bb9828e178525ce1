//! One-shot runner for the async bridge (`gort::block_on`): runs ONE workload once and prints
//! `<workload> <unit>=<value>` lines, as the other runners do. Worker count from `GOMAXPROCS`.
//!
//! ```text
//! GOMAXPROCS=2 cargo bench --bench bench_bridge -- blockon_pingpong
//! ```
//!
//! Workloads (benches/README.md, "The async bridge"):
//! - `chan_pingpong`: 200k round trips, a goroutine and an echo goroutine over two unbuffered
//!   gort channels (`pingpong_unbuf`); ns per round trip.
//! - `blockon_pingpong`: the same, with the reply leg a `futures` oneshot that the caller
//!   `block_on`s, so each round trip is one park in `block_on` woken from another goroutine;
//!   ns per round trip.
//! - `blockon_event_pingpong`: as `blockon_pingpong`, with the lightest waking future in place
//!   of the oneshot (allocated per round trip, with its own spin locks): one `AtomicWaker` and a
//!   counter, made once, that the echo goroutine bumps and wakes. The bridge's own cost; ns per
//!   round trip.
//! - `blockon_thread_pingpong`: as `blockon_pingpong`, the echo a plain OS thread (a wake from
//!   outside the runtime); ns per round trip.
//! - `blockon_tokio_pingpong`: as `blockon_pingpong`, through `gort::block_on` with the `tokio`
//!   feature (Tokio's context entered on every M for good).
//! - `blockon_tokio_event_pingpong`: `blockon_event_pingpong` through the Tokio bridge: that
//!   bridge's own cost.
//! - `tokio_spawn_blocking`: Tokio's way to the same (async code waiting on another thread):
//!   200k `spawn_blocking` calls, each answering through a Tokio oneshot that a task awaits;
//!   ns per round trip.
//!
//! The HTTP comparison (requests per second through the bridge and on plain Tokio tasks) is
//! the `async_client` example with and without `--plain-tokio`.

#[path = "../workloads/mod.rs"]
mod workloads;

use std::time::{Duration, Instant};

use gort::chan::chan;
use workloads::{emit, ns_per};

const WORKLOADS: &[&str] = &[
    "chan_pingpong",
    "blockon_pingpong",
    "blockon_event_pingpong",
    "blockon_thread_pingpong",
    "blockon_tokio_pingpong",
    "blockon_tokio_event_pingpong",
    "tokio_spawn_blocking",
];

const N: usize = 200_000;

type Reply = futures_channel::oneshot::Sender<usize>;
type Wait = futures_channel::oneshot::Receiver<usize>;

/// `N` round trips: `i` and a oneshot sender out over an unbuffered gort channel, the reply
/// back through the oneshot, awaited with `block_on` (the bare one, or the facade's). `echo`
/// answers them.
fn blockon_pingpong(
    block_on: fn(Wait) -> Result<usize, futures_channel::oneshot::Canceled>,
    echo: impl FnOnce(gort::chan::Receiver<(usize, Reply)>),
) -> Duration {
    let (ping_tx, ping_rx) = chan::<(usize, Reply)>(0);
    echo(ping_rx);
    let start = Instant::now();
    for i in 0..N {
        let (tx, rx) = futures_channel::oneshot::channel();
        ping_tx.send((i, tx)).unwrap();
        assert_eq!(block_on(rx), Ok(i));
    }
    start.elapsed()
}

/// What `blockon_event_pingpong`'s future waits on: the last round answered, and its waker.
#[derive(Default)]
struct Event {
    answered: std::sync::atomic::AtomicUsize,
    waker: atomic_waker::AtomicWaker,
}

/// `N` round trips: `i` out over an unbuffered gort channel, `block_on` (the bare one, or the
/// facade's through Tokio) a future ready once the echo goroutine has answered round `i`
/// through `ev`.
fn blockon_event_pingpong(through_tokio: bool) -> Duration {
    use std::sync::atomic::Ordering;
    let ev = std::sync::Arc::new(Event::default());
    let (ping_tx, ping_rx) = chan::<usize>(0);
    let echo_ev = ev.clone();
    // SAFETY: the goroutine holds only a channel receiver and an `Arc` (`Send`) across its
    // receives, and touches no thread-local (THE RULE, benches/workloads/mod.rs).
    unsafe {
        gort::spawn(move || {
            for v in ping_rx {
                // Release: pairs with the future's Acquire load.
                echo_ev.answered.store(v + 1, Ordering::Release);
                echo_ev.waker.wake();
            }
        })
    };
    let start = Instant::now();
    for i in 0..N {
        ping_tx.send(i).unwrap();
        let answered = std::future::poll_fn(|cx| {
            ev.waker.register(cx.waker());
            // Acquire: pairs with the echo's Release store.
            if ev.answered.load(Ordering::Acquire) == i + 1 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        if through_tokio {
            gort::block_on(answered);
        } else {
            gort::runtime::block_on(answered);
        }
    }
    start.elapsed()
}

fn answer(ping_rx: gort::chan::Receiver<(usize, Reply)>) {
    for (v, reply) in ping_rx {
        reply.send(v).unwrap();
    }
}

/// The echo goroutine.
fn go_answer(ping_rx: gort::chan::Receiver<(usize, Reply)>) {
    // SAFETY: the goroutine holds only a channel receiver and oneshot senders (`Send`) across
    // its receives, and touches no thread-local (THE RULE, benches/workloads/mod.rs).
    unsafe { gort::spawn(move || answer(ping_rx)) };
}

fn main() {
    let name = workloads::workload_arg("bench_bridge", WORKLOADS);
    if name == "tokio_spawn_blocking" {
        let rt = tokio::runtime::Builder::new_multi_thread().build().expect("a Tokio runtime");
        let d = rt.block_on(async {
            tokio::spawn(async {
                let start = Instant::now();
                for i in 0..N {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    tokio::task::spawn_blocking(move || tx.send(i).unwrap());
                    assert_eq!(rx.await, Ok(i));
                }
                start.elapsed()
            })
            .await
            .unwrap()
        });
        emit(&name, "ns_per_op", ns_per(d, N as u64));
        return;
    }
    workloads::run(move || {
        let d = match name.as_str() {
            "chan_pingpong" => workloads::pingpong(N),
            "blockon_pingpong" => blockon_pingpong(gort::runtime::block_on, go_answer),
            "blockon_event_pingpong" => blockon_event_pingpong(false),
            "blockon_tokio_event_pingpong" => blockon_event_pingpong(true),
            "blockon_thread_pingpong" => blockon_pingpong(gort::runtime::block_on, |rx| {
                std::thread::spawn(move || answer(rx));
            }),
            "blockon_tokio_pingpong" => blockon_pingpong(gort::block_on, go_answer),
            _ => unreachable!(),
        };
        emit(&name, "ns_per_op", ns_per(d, N as u64));
    });
}
