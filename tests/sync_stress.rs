//! `gort::sync` under load: exact mutex counters (goroutines, threads, mixed), RwLock
//! invariants, WaitGroup over 100k goroutines, Cond broadcast to 10k waiters, semaphore bounds.
//! Sized for a 2-core machine (seconds per test); `GORT_STRESS` multiplies every count.

mod common;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{go, run, stress};
use gort::chan;
use gort::sync::{Cond, Mutex, RwLock, Semaphore, WaitGroup};

const WORKERS: usize = 4;

fn increments() -> u64 {
    1_000_000 * stress() as u64
}
fn wg_goroutines() -> usize {
    100_000 * stress()
}
fn cond_waiters() -> usize {
    10_000 * stress()
}
/// Receives `n` values within [`common::stress_patience`] each.
fn collect<T>(rx: &chan::Receiver<T>, n: usize) -> Vec<T> {
    let patience = common::stress_patience();
    (0..n).map(|i| rx.recv_timeout(patience).unwrap_or_else(|e| panic!("result {i} of {n}: {e}"))).collect()
}

/// 4 goroutines x 1M lock/increment/unlock: the count is exact.
#[test]
fn mutex_counter_goroutines() {
    run(|| {
        let m = Arc::new(Mutex::new(0u64));
        let (done_tx, done) = chan::chan::<()>(WORKERS);
        for _ in 0..WORKERS {
            let (m, done_tx) = (m.clone(), done_tx.clone());
            go!(move || {
                for _ in 0..increments() {
                    *m.lock() += 1;
                }
                done_tx.send(()).unwrap();
            });
        }
        collect(&done, WORKERS);
        assert_eq!(*m.lock(), WORKERS as u64 * increments());
    });
}

/// Two goroutines and two plain threads share the counter.
#[test]
fn mutex_counter_mixed_threads_and_goroutines() {
    run(|| {
        let n_incr: u64 = increments() / 4;
        let m = Arc::new(Mutex::new(0u64));
        let (done_tx, done) = chan::chan::<()>(WORKERS);
        for i in 0..WORKERS {
            let (m, done_tx) = (m.clone(), done_tx.clone());
            let work = move || {
                for _ in 0..n_incr {
                    *m.lock() += 1;
                }
                done_tx.send(()).unwrap();
            };
            if i % 2 == 0 {
                go!(work);
            } else {
                std::thread::spawn(work);
            }
        }
        collect(&done, WORKERS);
        assert_eq!(*m.lock(), WORKERS as u64 * n_incr);
    });
}

/// A mutex held across a park (sleep, channel receive): the other goroutines park too, and the
/// count stays exact.
#[test]
fn mutex_held_across_park() {
    run(|| {
        let m = Arc::new(Mutex::new(Vec::new()));
        let wg = Arc::new(WaitGroup::new());
        let n = 50 * stress();
        for i in 0..n {
            wg.add(1);
            let (m, wg) = (m.clone(), wg.clone());
            go!(move || {
                let mut g = m.lock();
                let before = g.len();
                gort::time::sleep(Duration::from_micros(100));
                assert_eq!(g.len(), before, "someone got in while the lock was held");
                g.push(i);
                drop(g);
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(m.lock().len(), n);
    });
}

/// Readers and writers: writers see exclusive access, readers never see a torn pair.
#[test]
fn rwlock_invariant_under_load() {
    run(|| {
        let rounds = 50_000 * stress() as u64;
        let l = Arc::new(RwLock::new((0u64, 0u64)));
        let readers_inside = Arc::new(AtomicI64::new(0));
        let (done_tx, done) = chan::chan::<u64>(8);
        for w in 0..8 {
            let (l, inside, done_tx) = (l.clone(), readers_inside.clone(), done_tx.clone());
            let work = move || {
                let mut reads = 0;
                for i in 0..rounds {
                    if (i + w) % 10 == 0 {
                        let mut g = l.write();
                        assert_eq!(inside.load(Ordering::SeqCst), 0, "writer with readers inside");
                        g.0 += 1;
                        g.1 += 1;
                    } else {
                        let g = l.read();
                        inside.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(g.0, g.1, "torn read");
                        reads += 1;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                done_tx.send(reads).unwrap();
            };
            if w == 7 {
                std::thread::spawn(work);
            } else {
                go!(work);
            }
        }
        let reads: u64 = collect(&done, 8).into_iter().sum();
        let g = l.read();
        assert_eq!(g.0, 8 * rounds - reads);
        assert_eq!(g.0, g.1);
    });
}

/// 100,000 goroutines each `done()` one unit; `wait` returns once all did, not before.
#[test]
fn waitgroup_100k_goroutines() {
    run(|| {
        let wg = Arc::new(WaitGroup::new());
        let n = Arc::new(AtomicUsize::new(0));
        wg.add(wg_goroutines() as i64);
        for _ in 0..wg_goroutines() {
            let (wg, n) = (wg.clone(), n.clone());
            go!(move || {
                n.fetch_add(1, Ordering::Relaxed);
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(n.load(Ordering::Relaxed), wg_goroutines());
    });
}

/// 10,000 goroutines wait on one Cond; one broadcast wakes every one of them.
#[test]
fn cond_broadcast_10k() {
    run(|| {
        let state = Arc::new((Mutex::new((false, 0usize)), Cond::new()));
        let (done_tx, done) = chan::chan::<()>(cond_waiters());
        for _ in 0..cond_waiters() {
            let (state, done_tx) = (state.clone(), done_tx.clone());
            go!(move || {
                let (m, c) = &*state;
                let mut g = m.lock();
                g.1 += 1;
                while !g.0 {
                    g = c.wait(g);
                }
                drop(g);
                done_tx.send(()).unwrap();
            });
        }
        // Wait until all are waiting (they registered under the lock before waiting).
        let deadline = Instant::now() + common::stress_patience();
        while state.0.lock().1 < cond_waiters() {
            assert!(Instant::now() < deadline, "waiters did not arrive");
            gort::time::sleep(Duration::from_millis(1));
        }
        state.0.lock().0 = true;
        state.1.broadcast();
        collect(&done, cond_waiters());
    });
}

/// Cond ping-pong: producer/consumer over a one-slot mailbox with signal, goroutine and
/// thread; no wake-up is lost.
#[test]
fn cond_signal_mailbox() {
    run(|| {
        let n = 50_000 * stress() as u64;
        let state = Arc::new((Mutex::new(None::<u64>), Cond::new()));
        let s2 = state.clone();
        let consumer = std::thread::spawn(move || {
            let (m, c) = &*s2;
            let mut sum = 0;
            for _ in 0..n {
                let mut g = m.lock();
                while g.is_none() {
                    g = c.wait(g);
                }
                sum += g.take().unwrap();
                c.signal();
            }
            sum
        });
        let (m, c) = &*state;
        for i in 0..n {
            let mut g = m.lock();
            while g.is_some() {
                g = c.wait(g);
            }
            *g = Some(i);
            c.signal();
        }
        assert_eq!(gort::blocking(|| consumer.join().unwrap()), n * (n - 1) / 2);
    });
}

/// A weighted semaphore never lets more than its size in.
#[test]
fn semaphore_bounds_concurrency() {
    run(|| {
        let sem = Arc::new(Semaphore::new(5));
        let inside = Arc::new(AtomicI64::new(0));
        let (done_tx, done) = chan::chan::<()>(16);
        for w in 0..16i64 {
            let (sem, inside, done_tx) = (sem.clone(), inside.clone(), done_tx.clone());
            let work = move || {
                let weight = 1 + w % 3;
                for _ in 0..5_000 * stress() {
                    sem.acquire(weight);
                    let now = inside.fetch_add(weight, Ordering::SeqCst) + weight;
                    assert!(now <= 5, "{now} units inside");
                    inside.fetch_sub(weight, Ordering::SeqCst);
                    sem.release(weight);
                }
                done_tx.send(()).unwrap();
            };
            if w % 8 == 7 {
                std::thread::spawn(work);
            } else {
                go!(work);
            }
        }
        collect(&done, 16);
        assert!(sem.try_acquire(5));
    });
}
