//! Channel stress: many producers and consumers (goroutines, plain threads, both), close racing
//! with senders, receivers and selects. Sized for a 2-core machine (seconds per test) and
//! multiplied by `GORT_STRESS`; every wait is bounded so a lost wake-up fails instead of hanging.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{go, run, stress, PATIENCE};
use gort::chan::{self, Receiver};

/// Total messages through the MPMC tests.
fn messages() -> usize {
    1_000_000 * stress()
}
const PRODUCERS: usize = 4;
const CONSUMERS: usize = 4;
/// Rounds of the close race.
fn close_rounds() -> usize {
    500 * stress()
}
/// Where a worker runs.
#[derive(Clone, Copy, Debug)]
enum On {
    Goroutine,
    Thread,
}

fn start(on: On, f: impl FnOnce() + Send + 'static) {
    match on {
        On::Goroutine => {
            go!(f);
        }
        On::Thread => {
            std::thread::spawn(f);
        }
    }
}

/// Receives `n` results, each within [`common::stress_patience`].
fn collect<T>(rx: &Receiver<T>, n: usize) -> Vec<T> {
    let patience = common::stress_patience();
    (0..n).map(|i| rx.recv_timeout(patience).unwrap_or_else(|e| panic!("result {i} of {n} missing: {e}"))).collect()
}

/// `PRODUCERS` send `messages() / PRODUCERS` (producer, seq) pairs each; `CONSUMERS` receive until
/// closed. Checks: every message delivered exactly once (a shared bitmap), per-producer sequence
/// increasing as each consumer sees it (FIFO), and a checksum.
fn mpmc(cap: usize, producers: On, consumers: On, messages: usize) {
    let per = messages / PRODUCERS;
    let (tx, rx) = chan::chan::<(usize, usize)>(cap);
    let seen: Arc<Vec<AtomicU8>> = Arc::new((0..per * PRODUCERS).map(|_| AtomicU8::new(0)).collect());
    let (done_tx, done) = chan::chan::<(usize, u64)>(CONSUMERS + PRODUCERS);
    for p in 0..PRODUCERS {
        let (tx, done_tx) = (tx.clone(), done_tx.clone());
        start(producers, move || {
            for s in 0..per {
                tx.send((p, s)).unwrap();
            }
            done_tx.send((0, 0)).unwrap();
        });
    }
    drop(tx);
    for _ in 0..CONSUMERS {
        let (rx, seen, done_tx) = (rx.clone(), seen.clone(), done_tx.clone());
        start(consumers, move || {
            let mut last = [None::<usize>; PRODUCERS];
            let (mut n, mut sum) = (0usize, 0u64);
            for (p, s) in rx.iter() {
                assert!(last[p].is_none_or(|l| l < s), "producer {p}: {s} after {:?}", last[p]);
                last[p] = Some(s);
                assert_eq!(seen[p * per + s].swap(1, Ordering::Relaxed), 0, "duplicate ({p}, {s})");
                n += 1;
                sum += (p * per + s) as u64;
            }
            done_tx.send((n, sum)).unwrap();
        });
    }
    let results = collect(&done, PRODUCERS + CONSUMERS);
    let n: usize = results.iter().map(|r| r.0).sum();
    let sum: u64 = results.iter().map(|r| r.1).sum();
    let total = per * PRODUCERS;
    assert_eq!(n, total, "lost messages");
    assert_eq!(sum, (total as u64) * (total as u64 - 1) / 2, "checksum");
    assert!(seen.iter().all(|b| b.load(Ordering::Relaxed) == 1));
}

#[test]
fn mpmc_buffered_goroutines() {
    run(|| mpmc(64, On::Goroutine, On::Goroutine, messages()));
}

#[test]
fn mpmc_unbuffered_goroutines() {
    run(|| mpmc(0, On::Goroutine, On::Goroutine, messages()));
}

#[test]
fn mpmc_buffered_threads() {
    mpmc(64, On::Thread, On::Thread, messages() / 2);
}

#[test]
fn mpmc_thread_producers_goroutine_consumers() {
    run(|| mpmc(16, On::Thread, On::Goroutine, messages() / 4));
}

#[test]
fn mpmc_goroutine_producers_thread_consumers() {
    run(|| mpmc(0, On::Goroutine, On::Thread, messages() / 4));
}

/// Ping-pong between a goroutine and a plain thread over two unbuffered channels.
#[test]
fn ping_pong_thread_goroutine() {
    run(|| {
        let (ping, ping_rx) = chan::chan::<u32>(0);
        let (pong, pong_rx) = chan::chan::<u32>(0);
        let t = std::thread::spawn(move || {
            for v in ping_rx.iter() {
                pong.send(v + 1).unwrap();
            }
        });
        for i in 0..20_000 * stress() as u32 {
            ping.send_timeout(i, PATIENCE).unwrap();
            assert_eq!(pong_rx.recv_timeout(PATIENCE), Ok(i + 1));
        }
        drop(ping);
        gort::blocking(|| t.join().unwrap());
    });
}

/// Close racing with plain senders, select senders, plain receivers and select receivers.
///
/// Every send that returned `Ok` must be received exactly once; every send that failed must
/// not be received (its value came back in the error); all workers must finish.
fn close_race(cap: usize, round: usize) {
    const SENDERS: usize = 6;
    const RECEIVERS: usize = 6;
    let (tx, rx) = chan::chan::<(usize, usize)>(cap);
    // Channels nobody ever completes an operation on (no receiver for `idle_tx`, no sender on
    // `idle_rx`), so that selects have a losing arm to unlink.
    let (idle_tx, _idle_tx_rx) = chan::chan::<(usize, usize)>(0);
    let (_idle_rx_tx, idle_rx) = chan::chan::<(usize, usize)>(0);
    let (sent_tx, sent) = chan::chan::<(usize, usize)>(SENDERS);
    let (got_tx, got) = chan::chan::<Vec<(usize, usize)>>(RECEIVERS);
    let started = Arc::new(AtomicUsize::new(0));
    for i in 0..SENDERS {
        let (tx, idle_tx, sent_tx, started) = (tx.clone(), idle_tx.clone(), sent_tx.clone(), started.clone());
        let on = if i % 3 == 2 { On::Thread } else { On::Goroutine };
        start(on, move || {
            started.fetch_add(1, Ordering::Relaxed);
            let mut j = 0;
            loop {
                let r = if i % 2 == 0 {
                    tx.send((i, j))
                } else {
                    gort::select! {
                        r = tx.send((i, j)) => r,
                        _ = idle_tx.send((usize::MAX, 0)) => unreachable!(),
                    }
                };
                match r {
                    Ok(()) => j += 1,
                    Err(e) => {
                        assert_eq!(e.into_inner(), (i, j), "wrong value returned");
                        break;
                    }
                }
            }
            sent_tx.send((i, j)).unwrap();
        });
    }
    for k in 0..RECEIVERS {
        let (rx, idle_rx, got_tx, started) = (rx.clone(), idle_rx.clone(), got_tx.clone(), started.clone());
        let on = if k % 3 == 2 { On::Thread } else { On::Goroutine };
        start(on, move || {
            started.fetch_add(1, Ordering::Relaxed);
            let mut v = Vec::new();
            loop {
                let r = if k % 2 == 0 {
                    rx.recv()
                } else {
                    gort::select! {
                        r = rx.recv() => r,
                        _ = idle_rx.recv() => unreachable!(),
                    }
                };
                match r {
                    Some(x) => v.push(x),
                    None => break,
                }
            }
            got_tx.send(v).unwrap();
        });
    }
    // Let everyone start, then close at a slightly different moment each round.
    while started.load(Ordering::Relaxed) < SENDERS + RECEIVERS {
        gort::runtime::yield_now();
    }
    for _ in 0..round % 7 {
        gort::runtime::yield_now();
    }
    assert!(tx.close());
    assert!(!tx.close(), "second close must report false");
    let sent = collect(&sent, SENDERS);
    let got = collect(&got, RECEIVERS);
    let mut seen = HashSet::new();
    for x in got.into_iter().flatten() {
        assert!(seen.insert(x), "duplicate {x:?}");
    }
    let total: usize = sent.iter().map(|s| s.1).sum();
    assert_eq!(seen.len(), total, "received {} of {} sent", seen.len(), total);
    for (i, n) in sent {
        for j in 0..n {
            assert!(seen.contains(&(i, j)), "lost ({i}, {j})");
        }
    }
}

#[test]
fn close_races_unbuffered() {
    run(|| {
        for round in 0..close_rounds() {
            close_race(0, round);
        }
    });
}

#[test]
fn close_races_buffered() {
    run(|| {
        for round in 0..close_rounds() {
            close_race(8, round);
        }
    });
}

/// Dropping the last `Sender` closes: receivers blocked in `recv` and in `select!` wake with
/// `None`, on goroutines and threads.
#[test]
fn last_sender_drop_wakes_everyone() {
    run(|| {
        for _ in 0..50 * stress() {
            let (tx, rx) = chan::chan::<u8>(0);
            let (other_tx, other_rx) = chan::chan::<u8>(0);
            let (done_tx, done) = chan::chan::<bool>(16);
            for k in 0..8 {
                let (rx, other_rx, done_tx) = (rx.clone(), other_rx.clone(), done_tx.clone());
                start(if k % 4 == 3 { On::Thread } else { On::Goroutine }, move || {
                    let r = if k % 2 == 0 {
                        rx.recv()
                    } else {
                        gort::select! {
                            r = rx.recv() => r,
                            _ = other_rx.recv() => Some(0),
                        }
                    };
                    done_tx.send(r.is_none()).unwrap();
                });
            }
            let tx2 = tx.clone();
            drop(tx);
            gort::runtime::yield_now();
            drop(tx2);
            assert!(collect(&done, 8).into_iter().all(|closed| closed));
            drop(other_tx);
        }
    });
}

/// Sender<T> values that hold resources: values left in a closed, dropped channel are dropped
/// exactly once, and values returned by failed sends are not dropped by the channel.
#[test]
fn buffered_values_dropped_once() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct D;
    impl Drop for D {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    run(|| {
        let (tx, rx) = chan::chan::<D>(10);
        for _ in 0..10 {
            tx.send(D).ok().unwrap();
        }
        tx.close();
        let back = tx.send(D).unwrap_err().into_inner();
        assert_eq!(DROPS.load(Ordering::Relaxed), 0);
        drop(back);
        assert_eq!(DROPS.load(Ordering::Relaxed), 1);
        drop(rx.recv());
        assert_eq!(DROPS.load(Ordering::Relaxed), 2);
        drop((tx, rx));
        assert_eq!(DROPS.load(Ordering::Relaxed), 11);
    });
}

/// Every way a blocking send or receive can end hands its value over exactly once: delivered
/// through a parked receiver or sender, returned by a send that a close woke or that timed
/// out, on an open, closed or nil channel; nothing is dropped twice or lost.
#[test]
fn blocking_outcomes_move_values_once() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug)]
    struct V(u32);
    impl V {
        /// The only way to make one: every `V` is counted.
        fn new(id: u32) -> V {
            LIVE.fetch_add(1, Ordering::Relaxed);
            V(id)
        }
    }
    impl Drop for V {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
    run(|| {
        let (tx, rx) = chan::chan::<V>(0);
        // A receiver parked first, then a sender parked first.
        let h = go!({
            let rx = rx.clone();
            move || rx.recv()
        });
        common::wait_state(h.id(), "chan receive");
        tx.send(V::new(1)).unwrap();
        assert_eq!(h.join().unwrap().map(|v| v.0), Some(1));
        let h = go!({
            let tx = tx.clone();
            move || tx.send(V::new(2))
        });
        common::wait_state(h.id(), "chan send");
        assert_eq!(rx.recv().map(|v| v.0), Some(2));
        assert!(h.join().unwrap().is_ok());
        // Timed out, with the value back.
        match tx.send_timeout(V::new(3), Duration::from_millis(2)) {
            Err(chan::SendTimeoutError::Timeout(v)) => assert_eq!(v.0, 3),
            r => panic!("want Timeout(V(3)), got {r:?}"),
        }
        assert_eq!(rx.recv_timeout(Duration::from_millis(2)).map(|v| v.0), Err(chan::RecvTimeoutError::Timeout));
        // A parked sender and a parked receiver woken by close.
        let (tx2, rx2) = chan::chan::<V>(0);
        let hs = go!({
            let tx = tx.clone();
            move || tx.send(V::new(4))
        });
        let hr = go!(move || rx2.recv());
        common::wait_state(hs.id(), "chan send");
        common::wait_state(hr.id(), "chan receive");
        tx.close();
        tx2.close();
        assert_eq!(hs.join().unwrap().unwrap_err().into_inner().0, 4);
        assert!(hr.join().unwrap().is_none());
        // Closed before the send: the value back at once.
        assert_eq!(tx.send(V::new(5)).unwrap_err().into_inner().0, 5);
        // A nil channel with a deadline.
        let (ntx, nrx) = chan::nil::<V>();
        match ntx.send_timeout(V::new(6), Duration::from_millis(2)) {
            Err(chan::SendTimeoutError::Timeout(v)) => assert_eq!(v.0, 6),
            r => panic!("want Timeout(V(6)), got {r:?}"),
        }
        assert_eq!(nrx.recv_timeout(Duration::from_millis(2)).map(|v| v.0), Err(chan::RecvTimeoutError::Timeout));
        assert_eq!(LIVE.load(Ordering::Relaxed), 0, "values leaked or dropped twice");
    });
}

/// Many goroutines each doing short timed receives/sends while values flow: every value is
/// delivered once, timeouts lose nothing.
#[test]
fn timeouts_lose_nothing() {
    run(|| {
        let n = 20_000 * stress();
        let (tx, rx) = chan::chan::<usize>(0);
        let (res_tx, res) = chan::chan::<Vec<usize>>(4);
        for _ in 0..4 {
            let (rx, res_tx) = (rx.clone(), res_tx.clone());
            go!(move || {
                let mut v = Vec::new();
                loop {
                    match rx.recv_timeout(Duration::from_micros(50)) {
                        Ok(x) => v.push(x),
                        Err(chan::RecvTimeoutError::Timeout) => {}
                        Err(chan::RecvTimeoutError::Closed) => break,
                    }
                }
                res_tx.send(v).unwrap();
            });
        }
        for i in 0..n {
            let mut v = i;
            loop {
                match tx.send_timeout(v, Duration::from_micros(30)) {
                    Ok(()) => break,
                    Err(chan::SendTimeoutError::Timeout(back)) => v = back,
                    Err(chan::SendTimeoutError::Closed(_)) => unreachable!(),
                }
            }
        }
        drop(tx);
        let mut all: Vec<usize> = collect(&res, 4).into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    });
}
