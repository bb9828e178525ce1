//! Goroutines and channels from async code: `JoinHandle` as a `Future`, `recv_async` and
//! `send_async` in the same wait queues as goroutines (FIFO with them), cancellation by drop,
//! close, `select!` beside async waiters, and `tokio::select!` over a gort channel.

mod common;

use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::{go, stress, wait_count, PATIENCE};
use gort::chan::{self, SendError, TryRecvError, TrySendError};

/// A waker that counts its wakes and lets a plain thread wait for one.
#[derive(Default)]
struct Flag {
    wakes: Mutex<usize>,
    cv: Condvar,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        *self.wakes.lock().unwrap() += 1;
        self.cv.notify_all();
    }
}

impl Flag {
    fn new() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag::default());
        let w = Waker::from(f.clone());
        (f, w)
    }
    fn count(&self) -> usize {
        *self.wakes.lock().unwrap()
    }
    /// Blocks the thread until woken at least `n` times in all; fails after [`PATIENCE`].
    fn wait_for(&self, n: usize) {
        let g = self.wakes.lock().unwrap();
        let (g, t) = self.cv.wait_timeout_while(g, PATIENCE, |k| *k < n).unwrap();
        assert!(!t.timed_out(), "woken {} times, never {n}", *g);
    }
}

/// Polls `f` once with `w`.
fn poll_with<F: std::future::Future>(f: Pin<&mut F>, w: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(w))
}

async fn patient<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f).await.expect("an async wait never ended")
}

// ---------------------------------------------------------------------------------------------
// JoinHandle as a Future
// ---------------------------------------------------------------------------------------------

/// `gort::spawn` from inside a Tokio multi-thread task, the handle awaited there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_from_tokio_task_and_await() {
    let t = tokio::spawn(async {
        let hs: Vec<_> = (0..20u64)
            .map(|i| {
                go!(move || {
                    gort::time::sleep(Duration::from_millis(1));
                    i * i
                })
            })
            .collect();
        let mut sum = 0;
        for h in hs {
            sum += patient(h).await.unwrap();
        }
        sum
    });
    assert_eq!(patient(t).await.unwrap(), (0..20u64).map(|i| i * i).sum::<u64>());
}

/// A panicking goroutine: awaiting its handle gives what `join` gives, `Err(payload)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaited_panic_is_join_error() {
    let h = go!(|| -> u32 { std::panic::panic_any("boom from a goroutine") });
    let err = patient(h).await.unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"boom from a goroutine"));
    let h = go!(|| -> u32 { std::panic::panic_any("boom again") });
    let err = h.join().unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"boom again"));
}

/// The goroutine's exit wakes the waker of the latest poll, not an earlier one; dropping a
/// polled handle releases its waker.
#[test]
fn join_handle_wakes_latest_waker_and_drop_releases_it() {
    let (gate_tx, gate_rx) = chan::chan::<()>(0);
    let mut h = go!(move || {
        gate_rx.recv();
        7
    });
    let (f1, w1) = Flag::new();
    let (f2, w2) = Flag::new();
    assert!(poll_with(Pin::new(&mut h), &w1).is_pending());
    assert!(poll_with(Pin::new(&mut h), &w2).is_pending());
    gate_tx.send(()).unwrap();
    f2.wait_for(1);
    assert_eq!(f1.count(), 0, "the replaced waker was woken");
    assert!(matches!(poll_with(Pin::new(&mut h), &w2), Poll::Ready(Ok(7))));

    // Dropped before the goroutine ends: the handle's slot lets the waker go at once.
    let (gate_tx, gate_rx) = chan::chan::<()>(0);
    let mut h = go!(move || {
        gate_rx.recv();
    });
    let (f3, w3) = Flag::new();
    assert!(poll_with(Pin::new(&mut h), &w3).is_pending());
    drop(w3);
    assert_eq!(Arc::strong_count(&f3), 2, "the slot holds one clone");
    drop(h);
    assert_eq!(Arc::strong_count(&f3), 1, "the dropped handle kept the waker");
    gate_tx.send(()).unwrap();
    assert_eq!(f3.count(), 0);
}

/// A handle polled once and then joined: `join` is not stuck on the waker the poll left.
#[test]
fn join_after_poll() {
    let (gate_tx, gate_rx) = chan::chan::<()>(0);
    let mut h = go!(move || {
        gate_rx.recv();
        "done"
    });
    let (_f, w) = Flag::new();
    assert!(poll_with(Pin::new(&mut h), &w).is_pending());
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        gate_tx.send(()).unwrap();
    });
    assert_eq!(h.join().unwrap(), "done");
    opener.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// recv_async / send_async
// ---------------------------------------------------------------------------------------------

async fn round_trips(cap: usize) {
    const N: u64 = 500;
    let (tx, rx) = chan::chan::<u64>(cap);
    let (back_tx, back_rx) = chan::chan::<u64>(cap);
    let echo = go!(move || {
        for v in rx.iter() {
            back_tx.send(v + 1).unwrap();
        }
    });
    for i in 0..N {
        patient(tx.send_async(i)).await.unwrap();
        assert_eq!(patient(back_rx.recv_async()).await, Some(i + 1));
    }
    drop(tx);
    assert_eq!(patient(back_rx.recv_async()).await, None, "close reaches the async receiver");
    patient(echo).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_unbuffered() {
    round_trips(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_buffered() {
    round_trips(4).await;
}

/// A stream from a goroutine into a task and back the other way, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_keep_order() {
    for cap in [0, 1, 16] {
        let (tx, rx) = chan::chan::<u32>(cap);
        let producer = go!(move || {
            for i in 0..2000 {
                tx.send(i).unwrap();
            }
        });
        let mut next = 0;
        while let Some(v) = patient(rx.recv_async()).await {
            assert_eq!(v, next);
            next += 1;
        }
        assert_eq!(next, 2000);
        patient(producer).await.unwrap();

        let (tx, rx) = chan::chan::<u32>(cap);
        let consumer = go!(move || rx.iter().enumerate().all(|(i, v)| i as u32 == v) as usize);
        for i in 0..2000 {
            patient(tx.send_async(i)).await.unwrap();
        }
        drop(tx);
        assert_eq!(patient(consumer).await.unwrap(), 1);
    }
}

/// Async and goroutine receivers wait in one FIFO: values go to them in arrival order.
#[test]
fn async_and_goroutine_receivers_share_one_fifo() {
    let (tx, rx) = chan::chan::<u32>(0);
    let mut a1 = pin!(rx.recv_async());
    let mut a2 = pin!(rx.recv_async());
    let (fa1, wa1) = Flag::new();
    let (fa2, wa2) = Flag::new();
    assert!(poll_with(a1.as_mut(), &wa1).is_pending());
    let rx1 = rx.clone();
    let g1 = go!(move || rx1.recv());
    wait_count("chan receive", 1);
    assert!(poll_with(a2.as_mut(), &wa2).is_pending());
    let rx2 = rx.clone();
    let g2 = go!(move || rx2.recv());
    wait_count("chan receive", 2);
    for v in 0..4 {
        tx.send(v).unwrap();
    }
    fa1.wait_for(1);
    fa2.wait_for(1);
    assert_eq!(poll_with(a1.as_mut(), &wa1), Poll::Ready(Some(0)));
    assert_eq!(g1.join().unwrap(), Some(1));
    assert_eq!(poll_with(a2.as_mut(), &wa2), Poll::Ready(Some(2)));
    assert_eq!(g2.join().unwrap(), Some(3));
}

/// Async and goroutine senders too: a receiver takes values in the senders' arrival order, and
/// on a full buffer the head goes first while waiting senders' values follow in order.
#[test]
fn async_and_goroutine_senders_share_one_fifo() {
    for cap in [0usize, 2] {
        let (tx, rx) = chan::chan::<u32>(cap);
        for v in 0..cap as u32 {
            tx.send(100 + v).unwrap();
        }
        let mut s1 = pin!(tx.send_async(0));
        let mut s2 = pin!(tx.send_async(2));
        let (f1, w1) = Flag::new();
        let (f2, w2) = Flag::new();
        assert!(poll_with(s1.as_mut(), &w1).is_pending());
        let tx1 = tx.clone();
        let g1 = go!(move || tx1.send(1).unwrap());
        wait_count("chan send", 1);
        assert!(poll_with(s2.as_mut(), &w2).is_pending());
        let tx2 = tx.clone();
        let g2 = go!(move || tx2.send(3).unwrap());
        wait_count("chan send", 2);
        let mut got = Vec::new();
        for _ in 0..4 + cap {
            got.push(rx.recv().unwrap());
        }
        let mut want: Vec<u32> = (0..cap as u32).map(|v| 100 + v).collect();
        want.extend([0, 1, 2, 3]);
        assert_eq!(got, want, "cap {cap}");
        f1.wait_for(1);
        f2.wait_for(1);
        assert!(matches!(poll_with(s1.as_mut(), &w1), Poll::Ready(Ok(()))));
        assert!(matches!(poll_with(s2.as_mut(), &w2), Poll::Ready(Ok(()))));
        g1.join().unwrap();
        g2.join().unwrap();
    }
}

/// Re-polling a queued receive with another waker replaces it: only the latest is woken.
#[test]
fn repoll_replaces_waker() {
    let (tx, rx) = chan::chan::<u32>(0);
    let mut f = pin!(rx.recv_async());
    let (f1, w1) = Flag::new();
    let (f2, w2) = Flag::new();
    assert!(poll_with(f.as_mut(), &w1).is_pending());
    assert!(poll_with(f.as_mut(), &w2).is_pending());
    tx.send(5).unwrap();
    f2.wait_for(1);
    assert_eq!(f1.count(), 0);
    assert_eq!(poll_with(f.as_mut(), &w2), Poll::Ready(Some(5)));
}

// ---------------------------------------------------------------------------------------------
// Cancellation and close
// ---------------------------------------------------------------------------------------------

/// A dropped pending receive leaves no waiter: an unbuffered send then finds no receiver.
#[test]
fn dropped_recv_leaves_no_waiter() {
    let (tx, rx) = chan::chan::<u32>(0);
    {
        let mut f = pin!(rx.recv_async());
        let (_f, w) = Flag::new();
        assert!(poll_with(f.as_mut(), &w).is_pending());
        assert!(matches!(tx.try_send(1), Ok(())), "the queued async receiver takes a value");
    }
    // That value came back (module docs of chan::future): the next receive gets it.
    assert_eq!(rx.try_recv(), Ok(1));
    {
        let mut f = pin!(rx.recv_async());
        let (_f, w) = Flag::new();
        assert!(poll_with(f.as_mut(), &w).is_pending());
    }
    assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))), "a dropped receiver still waits");
    // A later blocking send goes to a live receiver.
    let g = go!(move || tx.send(3).unwrap());
    assert_eq!(rx.recv(), Some(3));
    g.join().unwrap();
}

/// A value handed to a receive that is dropped before it is polled goes to the next waiting
/// receiver, or back in front of the buffer, ahead of later values; never lost.
#[test]
fn value_of_dropped_recv_is_not_lost() {
    // To the next waiting receiver (a goroutine here).
    let (tx, rx) = chan::chan::<u32>(0);
    let mut f = Box::pin(rx.recv_async());
    let (_f, w) = Flag::new();
    assert!(poll_with(f.as_mut(), &w).is_pending());
    let rx2 = rx.clone();
    let g = go!(move || rx2.recv());
    wait_count("chan receive", 1);
    tx.send(1).unwrap(); // to the async receiver, first in the queue
    drop(f);
    assert_eq!(g.join().unwrap(), Some(1));

    // Back to the front of an unbuffered channel, ahead of a blocked sender's later value.
    let mut f = Box::pin(rx.recv_async());
    assert!(poll_with(f.as_mut(), &w).is_pending());
    tx.send(10).unwrap();
    let tx2 = tx.clone();
    let g = go!(move || tx2.send(11).unwrap());
    wait_count("chan send", 1);
    drop(f);
    assert_eq!(rx.len(), 1, "the given-back value is counted");
    assert_eq!(rx.recv(), Some(10));
    assert_eq!(rx.recv(), Some(11));
    g.join().unwrap();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

    // A closed channel keeps it for receivers to drain.
    let mut f = Box::pin(rx.recv_async());
    assert!(poll_with(f.as_mut(), &w).is_pending());
    tx.send(20).unwrap();
    tx.close();
    drop(f);
    assert_eq!(rx.recv(), Some(20));
    assert_eq!(rx.recv(), None);
}

/// A dropped pending send is withdrawn: the receiver never sees its value.
#[test]
fn dropped_send_is_withdrawn() {
    let (tx, rx) = chan::chan::<u32>(0);
    {
        let mut f = pin!(tx.send_async(1));
        let (_f, w) = Flag::new();
        assert!(poll_with(f.as_mut(), &w).is_pending());
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let g = go!(move || tx.send(2).unwrap());
    assert_eq!(rx.recv(), Some(2));
    g.join().unwrap();
}

/// Close wakes waiting async receivers and senders with what `recv`/`send` give: `None`, and
/// the value back in `SendError`. (A task that polls only after the close gets the same.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_wakes_async_waiters() {
    let (tx, rx) = chan::chan::<u32>(0);
    let (stx, _srx) = chan::chan::<u32>(0);
    let receivers: Vec<_> = (0..4)
        .map(|_| {
            let rx = rx.clone();
            tokio::spawn(async move { rx.recv_async().await })
        })
        .collect();
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let stx = stx.clone();
            tokio::spawn(async move { stx.send_async(40 + i).await })
        })
        .collect();
    // Give the tasks time to queue, so that the close finds them waiting.
    tokio::time::sleep(Duration::from_millis(20)).await;
    tx.close();
    stx.close();
    for r in receivers {
        assert_eq!(patient(r).await.unwrap(), None);
    }
    for (i, s) in senders.into_iter().enumerate() {
        assert!(matches!(patient(s).await.unwrap(), Err(SendError(v)) if v == 40 + i as u32));
    }
    assert!(matches!(patient(tx.send_async(9)).await, Err(SendError(9))));
}

/// Close reaches a send that is waiting: it fails with its value, as `send` does.
#[test]
fn close_fails_waiting_async_send() {
    let (tx, _rx) = chan::chan::<u32>(1);
    tx.send(0).unwrap();
    let mut f = pin!(tx.send_async(1));
    let (fl, w) = Flag::new();
    assert!(poll_with(f.as_mut(), &w).is_pending());
    tx.close();
    fl.wait_for(1);
    assert!(matches!(poll_with(f.as_mut(), &w), Poll::Ready(Err(SendError(1)))));
}

// ---------------------------------------------------------------------------------------------
// select
// ---------------------------------------------------------------------------------------------

/// gort's `select!` beside async waiters in the same queues: a select's send arm hands its value
/// to a waiting task; a select's receive arm queued behind a task gets the second value.
#[test]
fn goroutine_select_with_async_waiters() {
    let (tx, rx) = chan::chan::<u32>(0);
    let (_otx, orx) = chan::chan::<u32>(0);
    let mut f = pin!(rx.recv_async());
    let (fl, w) = Flag::new();
    assert!(poll_with(f.as_mut(), &w).is_pending());
    let tx2 = tx.clone();
    let g = go!(move || {
        gort::select! {
            tx2.send(1) => 1,
            _ = orx.recv() => 2,
        }
    });
    assert_eq!(g.join().unwrap(), 1);
    fl.wait_for(1);
    assert_eq!(poll_with(f.as_mut(), &w), Poll::Ready(Some(1)));

    let mut f = pin!(rx.recv_async());
    assert!(poll_with(f.as_mut(), &w).is_pending());
    let (_otx, orx) = chan::chan::<u32>(0);
    let rx2 = rx.clone();
    let g = go!(move || {
        gort::select! {
            v = rx2.recv() => v,
            _ = orx.recv() => None,
        }
    });
    wait_count("select", 1);
    tx.send(2).unwrap();
    tx.send(3).unwrap();
    assert_eq!(g.join().unwrap(), Some(3));
    fl.wait_for(2);
    assert_eq!(poll_with(f.as_mut(), &w), Poll::Ready(Some(2)));
}

/// `tokio::select!` of a gort receive against a Tokio sleep, both outcomes; the losing receive
/// leaves no waiter behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_select_recv_against_sleep() {
    let (tx, rx) = chan::chan::<u32>(0);
    // The receive wins.
    let tx2 = tx.clone();
    let g = go!(move || tx2.send(1).unwrap());
    let got = tokio::select! {
        v = rx.recv_async() => v,
        _ = tokio::time::sleep(PATIENCE) => panic!("the receive never won"),
    };
    assert_eq!(got, Some(1));
    patient(g).await.unwrap();
    // The sleep wins (nobody sends).
    let timed_out = tokio::select! {
        _ = rx.recv_async() => false,
        _ = tokio::time::sleep(Duration::from_millis(5)) => true,
    };
    assert!(timed_out);
    assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))), "the losing receive still waits");
    let g = go!(move || tx.send(3).unwrap());
    assert_eq!(patient(rx.recv_async()).await, Some(3));
    patient(g).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Stress
// ---------------------------------------------------------------------------------------------

/// A goroutine sends 0..N while a task keeps racing `recv_async` against `yield_now` (ready at
/// its second poll), so many receives are dropped mid-wait, some right after a value was handed
/// to them. Every value arrives exactly once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_recv_dropped_against_send() {
    for cap in [0usize, 3] {
        let n = 3000 * stress() as u64;
        let (tx, rx) = chan::chan::<u64>(cap);
        let producer = go!(move || {
            for i in 0..n {
                tx.send(i).unwrap();
                if i % 7 == 0 {
                    gort::runtime::yield_now();
                }
            }
        });
        let (mut next, mut lost_races) = (0u64, 0u64);
        loop {
            let v = tokio::select! {
                v = rx.recv_async() => v,
                _ = tokio::task::yield_now() => {
                    lost_races += 1;
                    continue;
                }
            };
            match v {
                Some(v) => {
                    assert_eq!(v, next, "cap {cap}: out of order or lost");
                    next += 1;
                }
                None => break,
            }
        }
        assert_eq!(next, n, "cap {cap}");
        patient(producer).await.unwrap();
        eprintln!("cap {cap}: {lost_races} receives dropped mid-wait");
    }
}

/// Many async receivers and goroutine receivers on one channel, fed by goroutine and async
/// senders: every value is received exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_mixed_many() {
    const SENDERS: u64 = 4;
    let per = 2000 * stress() as u64;
    for cap in [0usize, 8] {
        let (tx, rx) = chan::chan::<u64>(cap);
        let sum = Arc::new(AtomicUsize::new(0));
        let count = Arc::new(AtomicUsize::new(0));
        let mut goroutines = Vec::new();
        let mut tasks = Vec::new();
        for s in 0..SENDERS {
            let tx = tx.clone();
            if s % 2 == 0 {
                goroutines.push(go!(move || {
                    for i in 0..per {
                        tx.send(s * per + i).unwrap();
                    }
                }));
            } else {
                tasks.push(tokio::spawn(async move {
                    for i in 0..per {
                        tx.send_async(s * per + i).await.unwrap();
                    }
                }));
            }
        }
        drop(tx);
        for r in 0..6 {
            let rx = rx.clone();
            let (sum, count) = (sum.clone(), count.clone());
            if r % 2 == 0 {
                goroutines.push(go!(move || {
                    for v in rx.iter() {
                        sum.fetch_add(v as usize, Ordering::Relaxed);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            } else {
                tasks.push(tokio::spawn(async move {
                    while let Some(v) = rx.recv_async().await {
                        sum.fetch_add(v as usize, Ordering::Relaxed);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
        drop(rx);
        for t in tasks {
            patient(t).await.unwrap();
        }
        for g in goroutines {
            patient(g).await.unwrap();
        }
        let total = SENDERS * per;
        assert_eq!(count.load(Ordering::Relaxed) as u64, total, "cap {cap}");
        assert_eq!(sum.load(Ordering::Relaxed) as u64, total * (total - 1) / 2, "cap {cap}");
    }
}
