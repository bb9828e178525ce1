//! `gort::sync` semantics: Mutex (incl. starvation mode), RwLock (writer preference), Once,
//! OnceLock, Cond, WaitGroup, Semaphore; from goroutines and plain threads.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{go, run, wait_state, PATIENCE};
use gort::chan;
use gort::sync::{Cond, Mutex, Once, OnceLock, RwLock, Semaphore, WaitGroup};

#[test]
fn mutex_basics() {
    run(|| {
        let m = Mutex::new(vec![1]);
        {
            let mut g = m.lock();
            g.push(2);
            assert!(m.is_locked());
            assert!(m.try_lock().is_none());
            assert_eq!(format!("{m:?}"), "Mutex { data: <locked> }");
        }
        assert!(!m.is_locked());
        assert_eq!(*m.try_lock().unwrap(), [1, 2]);
        let mut m = m;
        m.get_mut().push(3);
        assert_eq!(m.into_inner(), [1, 2, 3]);
    });
}

/// A goroutine blocked on a held Mutex parks (the P runs others) and gets the lock on unlock.
#[test]
fn mutex_blocks_and_hands_over() {
    run(|| {
        let m = Arc::new(Mutex::new(0));
        let g = m.lock();
        let m2 = m.clone();
        let h = go!(move || {
            *m2.lock() += 1;
        });
        wait_state(h.id(), "sync.Mutex.Lock");
        assert!(!h.is_finished());
        drop(g);
        h.join().unwrap();
        assert_eq!(*m.lock(), 1);
    });
}

/// A guard may move to another goroutine, which unlocks (Go allows unlocking elsewhere).
#[test]
fn mutex_guard_unlocked_elsewhere() {
    run(|| {
        static M: Mutex<u32> = Mutex::new(0);
        let g = M.lock();
        go!(move || {
            let mut g = g;
            *g = 5;
        })
        .join()
        .unwrap();
        assert_eq!(*M.lock(), 5);
    });
}

/// Starvation mode: a goroutine that re-locks in a tight loop cannot keep a waiter out; the
/// waiter gets the lock within a bounded time (Go: after 1 ms it is handed the lock directly).
#[test]
fn mutex_waiter_is_not_starved() {
    run(|| {
        let m = Arc::new(Mutex::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let mut hogs = Vec::new();
        for _ in 0..2 {
            let (m, stop) = (m.clone(), stop.clone());
            hogs.push(go!(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut g = m.lock();
                    *g += 1;
                    // Hold it a little, release, and immediately try again.
                    for _ in 0..200 {
                        std::hint::spin_loop();
                    }
                    drop(g);
                }
            }));
        }
        // Waiters arriving while the hogs run must all get through.
        for _ in 0..50 {
            let t0 = Instant::now();
            let g = m.lock();
            drop(g);
            assert!(t0.elapsed() < Duration::from_secs(5), "waited {:?}", t0.elapsed());
            gort::time::sleep(Duration::from_micros(200));
        }
        stop.store(true, Ordering::Relaxed);
        for h in hogs {
            h.join().unwrap();
        }
    });
}

#[test]
#[should_panic(expected = "unlock of unlocked mutex")]
fn mutex_double_unlock_panics() {
    let m = Mutex::new(());
    let g = m.lock();
    // SAFETY: duplicates the guard (a reference to the mutex) to provoke a second unlock; the
    // data is `()`, so no aliasing access to it can happen.
    let g2: gort::sync::MutexGuard<'_, ()> = unsafe { std::ptr::read(&g) };
    drop(g);
    drop(g2);
}

#[test]
fn rwlock_readers_share_writers_exclude() {
    run(|| {
        let l = Arc::new(RwLock::new(0));
        let r1 = l.read();
        let r2 = l.read();
        assert!(l.try_write().is_none());
        assert_eq!(*r1 + *r2, 0);
        drop((r1, r2));
        let mut w = l.write();
        *w = 7;
        assert!(l.try_read().is_none());
        assert!(l.try_write().is_none());
        drop(w);
        assert_eq!(*l.try_read().unwrap(), 7);
    });
}

/// Writer preference: once a writer waits, new readers wait behind it (`sync.RWMutex.RLock`),
/// and the writer (`sync.RWMutex.Lock`) runs before them.
#[test]
fn rwlock_pending_writer_blocks_new_readers() {
    run(|| {
        let l = Arc::new(RwLock::new(Vec::new()));
        let r = l.read();
        let l2 = l.clone();
        let writer = go!(move || l2.write().push("writer"));
        wait_state(writer.id(), "sync.RWMutex.Lock");
        assert!(l.try_read().is_none(), "a new reader got in ahead of the waiting writer");
        let l3 = l.clone();
        let reader = go!(move || l3.read().len());
        wait_state(reader.id(), "sync.RWMutex.RLock");
        drop(r);
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), 1, "the reader ran before the writer");
    });
}

#[test]
fn once_runs_once_and_waiters_wait() {
    run(|| {
        static ONCE: Once = Once::new();
        static N: AtomicUsize = AtomicUsize::new(0);
        let (go_tx, go_rx) = chan::chan::<()>(0);
        let first = go!(move || {
            ONCE.call_once(|| {
                go_rx.recv();
                N.fetch_add(1, Ordering::SeqCst);
            })
        });
        wait_state(first.id(), "chan receive");
        let others: Vec<_> = (0..10)
            .map(|_| {
                go!(|| {
                    ONCE.call_once(|| {
                        N.fetch_add(1, Ordering::SeqCst);
                    });
                    // Returns only after the first call finished.
                    assert_eq!(N.load(Ordering::SeqCst), 1);
                })
            })
            .collect();
        for h in &others {
            wait_state(h.id(), "sync.Once.Do");
        }
        assert!(!ONCE.is_completed());
        go_tx.send(()).unwrap();
        first.join().unwrap();
        for h in others {
            h.join().unwrap();
        }
        assert!(ONCE.is_completed());
        assert_eq!(N.load(Ordering::SeqCst), 1);
    });
}

/// As in Go, a panicking function still completes the `Once`.
#[test]
fn once_panic_counts_as_done() {
    run(|| {
        let once = Arc::new(Once::new());
        let o = once.clone();
        assert!(go!(move || o.call_once(|| panic!("boom"))).join().is_err());
        assert!(once.is_completed());
        let mut ran = false;
        once.call_once(|| ran = true);
        assert!(!ran);
    });
}

#[test]
fn once_lock_get_or_init_set() {
    run(|| {
        let cell = Arc::new(OnceLock::<String>::new());
        assert!(cell.get().is_none());
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let cell = cell.clone();
                go!(move || cell.get_or_init(|| format!("init {i}")).clone())
            })
            .collect();
        let vals: Vec<String> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(vals.iter().all(|v| v == &vals[0]), "{vals:?}");
        assert_eq!(cell.set("other".into()), Err("other".into()));
        // A panicking initializer leaves the cell empty for the next caller.
        let c2 = Arc::new(OnceLock::<u32>::new());
        let c = c2.clone();
        assert!(go!(move || *c.get_or_init(|| panic!("boom"))).join().is_err());
        assert_eq!(c2.get(), None);
        assert_eq!(*c2.get_or_init(|| 3), 3);
        assert_eq!(Arc::try_unwrap(c2).unwrap().into_inner(), Some(3));
    });
}

#[test]
fn cond_signal_wakes_one_broadcast_wakes_all() {
    run(|| {
        let state = Arc::new((Mutex::new(0u32), Cond::new()));
        let woke = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for _ in 0..5 {
            let (state, woke) = (state.clone(), woke.clone());
            hs.push(go!(move || {
                let (m, c) = &*state;
                let mut g = m.lock();
                let gen = *g;
                while *g == gen {
                    g = c.wait(g);
                }
                woke.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for h in &hs {
            wait_state(h.id(), "sync.Cond.Wait");
        }
        let (m, c) = &*state;
        // signal with the condition unchanged: the woken waiter re-checks and waits again.
        c.signal();
        gort::time::sleep(Duration::from_millis(10));
        assert_eq!(woke.load(Ordering::SeqCst), 0);
        *m.lock() += 1;
        c.signal();
        let deadline = Instant::now() + PATIENCE;
        while woke.load(Ordering::SeqCst) < 1 {
            assert!(Instant::now() < deadline);
            gort::time::sleep(Duration::from_millis(1));
        }
        gort::time::sleep(Duration::from_millis(10));
        assert_eq!(woke.load(Ordering::SeqCst), 1, "signal woke more than one");
        c.broadcast();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(woke.load(Ordering::SeqCst), 5);
    });
}

#[test]
fn waitgroup_waits_for_all() {
    run(|| {
        let wg = Arc::new(WaitGroup::new());
        let n = Arc::new(AtomicUsize::new(0));
        wg.wait(); // counter 0: returns at once
        for _ in 0..100 {
            wg.add(1);
            let (wg, n) = (wg.clone(), n.clone());
            go!(move || {
                gort::time::sleep(Duration::from_millis(1));
                n.fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
        }
        // Several waiters, on goroutines and a thread.
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (wg, n) = (wg.clone(), n.clone());
                go!(move || {
                    wg.wait();
                    n.load(Ordering::SeqCst)
                })
            })
            .collect();
        let (wg2, n2) = (wg.clone(), n.clone());
        let t = std::thread::spawn(move || {
            wg2.wait();
            n2.load(Ordering::SeqCst)
        });
        wg.wait();
        assert_eq!(n.load(Ordering::SeqCst), 100);
        for w in waiters {
            assert_eq!(w.join().unwrap(), 100);
        }
        assert_eq!(gort::blocking(|| t.join().unwrap()), 100);
        assert_eq!(wg.count(), 0);
        // Reuse after every wait returned.
        wg.add(1);
        wg.done();
        wg.wait();
    });
}

#[test]
#[should_panic(expected = "negative WaitGroup counter")]
fn waitgroup_negative_panics() {
    WaitGroup::new().done();
}

#[test]
fn semaphore_weighted_fifo() {
    run(|| {
        let s = Arc::new(Semaphore::new(10));
        assert_eq!(s.size(), 10);
        s.acquire(7);
        assert!(!s.try_acquire(4));
        assert!(s.try_acquire(3));
        // Queue a big request, then a small one: the small one waits behind the big one (FIFO).
        let (order_tx, order) = chan::chan::<u32>(4);
        let (s1, o1) = (s.clone(), order_tx.clone());
        let big = go!(move || {
            s1.acquire(8);
            o1.send(8).unwrap();
            s1.release(8);
        });
        wait_state(big.id(), "semacquire");
        let (s2, o2) = (s.clone(), order_tx);
        let small = go!(move || {
            s2.acquire(1);
            o2.send(1).unwrap();
            s2.release(1);
        });
        wait_state(small.id(), "semacquire");
        assert!(!s.try_acquire(1), "try_acquire must not jump the queue");
        // 3 units free: enough for the small request, which still waits behind the big one.
        s.release(3);
        gort::time::sleep(Duration::from_millis(10));
        assert_eq!(order.try_recv(), Err(chan::TryRecvError::Empty), "the small request jumped the queue");
        // Now both fit (8 + 1 <= 10) and are granted by the same release.
        s.release(7);
        let mut got = [order.recv_timeout(PATIENCE).unwrap(), order.recv_timeout(PATIENCE).unwrap()];
        got.sort_unstable();
        assert_eq!(got, [1, 8]);
        big.join().unwrap();
        small.join().unwrap();
        assert!(s.try_acquire(10));
        s.release(10);
    });
}

#[test]
#[should_panic(expected = "released more than held")]
fn semaphore_over_release_panics() {
    Semaphore::new(1).release(1);
}

/// Every primitive from plain threads only (no goroutine involved): threads block.
#[test]
fn primitives_from_plain_threads() {
    let m = Arc::new(Mutex::new(0u64));
    let wg = Arc::new(WaitGroup::new());
    let sem = Arc::new(Semaphore::new(2));
    let l = Arc::new(RwLock::new(0u64));
    let ts: Vec<_> = (0..4)
        .map(|_| {
            wg.add(1);
            let (m, wg, sem, l) = (m.clone(), wg.clone(), sem.clone(), l.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    *m.lock() += 1;
                    *l.write() += 1;
                    let _ = *l.read();
                }
                sem.acquire(1);
                sem.release(1);
                wg.done();
            })
        })
        .collect();
    wg.wait();
    assert_eq!(*m.lock(), 80_000);
    assert_eq!(*l.read(), 80_000);
    for t in ts {
        t.join().unwrap();
    }
}
