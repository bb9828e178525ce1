//! `lock_os_thread` (Go's `runtime.LockOSThread`): a wired goroutine stays on its OS thread
//! across every kind of wait, no other goroutine runs on that thread meanwhile, the others keep
//! running (even at GOMAXPROCS=1), and unlocking or exiting gives the thread back.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{go, run, tid};

/// A wired goroutine waits in every way gort has; its thread id never changes, and the
/// goroutines running meanwhile never run on that thread.
fn wired_goroutine_keeps_its_thread() {
    let _w = common::Watchdog::new("wired_goroutine_keeps_its_thread", Duration::from_secs(120));
    run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let others_tids: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let wired_tid = Arc::new(AtomicU64::new(0));
        // Set only while the goroutine is wired (cleared before it unlocks: the thread then
        // serves others, on the same thread after this store).
        let wired_now = Arc::new(AtomicBool::new(false));
        // Background goroutines recording where they run.
        let mut bg = Vec::new();
        for _ in 0..4 {
            let (stop, tids, wired) = (stop.clone(), others_tids.clone(), wired_now.clone());
            bg.push(go!(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t = tid();
                    if wired.load(Ordering::SeqCst) {
                        tids.lock().unwrap().insert(t);
                    }
                    gort::runtime::yield_now();
                }
            }));
        }
        let (ping_tx, ping_rx) = gort::chan::chan::<u32>(0);
        let (pong_tx, pong_rx) = gort::chan::chan::<u32>(0);
        let partner = go!(move || {
            while let Some(v) = ping_rx.recv() {
                pong_tx.send(v + 1).unwrap();
            }
        });
        let wired = {
            let (wired_tid, wired_now) = (wired_tid.clone(), wired_now.clone());
            go!(move || {
                gort::runtime::lock_os_thread();
                assert!(gort::runtime::locked_to_thread());
                let me = tid();
                wired_tid.store(me, Ordering::Relaxed);
                wired_now.store(true, Ordering::SeqCst);
                let m = gort::sync::Mutex::new(0u32);
                for i in 0..500u32 {
                    match i % 5 {
                        0 => {
                            ping_tx.send(i).unwrap();
                            assert_eq!(pong_rx.recv(), Some(i + 1));
                        }
                        1 => gort::time::sleep(Duration::from_micros(50)),
                        2 => gort::runtime::yield_now(),
                        3 => gort::blocking(|| std::thread::sleep(Duration::from_micros(30))),
                        _ => *m.lock() += 1,
                    }
                    assert_eq!(tid(), me, "the wired goroutine moved to another thread at step {i}");
                }
                wired_now.store(false, Ordering::SeqCst);
                gort::runtime::unlock_os_thread();
                assert!(!gort::runtime::locked_to_thread());
                drop(ping_tx);
                me
            })
        };
        let me = wired.join().unwrap();
        partner.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        for h in bg {
            h.join().unwrap();
        }
        let tids = others_tids.lock().unwrap();
        assert!(!tids.is_empty(), "the other goroutines never ran");
        assert!(!tids.contains(&me), "another goroutine ran on the wired thread");
    });
}

/// At GOMAXPROCS=1 a wired goroutine that waits hands the only P to the others, and gets it
/// back when woken; one that exits wired gives its thread back to the scheduler.
fn one_p_keeps_running() {
    let _w = common::Watchdog::new("one_p_keeps_running", Duration::from_secs(120));
    run(|| {
        let (tx, rx) = gort::chan::chan::<u32>(0);
        let wired = go!(move || {
            gort::runtime::lock_os_thread();
            let me = tid();
            let mut sum = 0;
            for _ in 0..200 {
                sum += rx.recv().unwrap();
                assert_eq!(tid(), me);
            }
            sum // exits still wired
        });
        for i in 0..200 {
            tx.send(i).unwrap();
        }
        assert_eq!(wired.join().unwrap(), (0..200).sum::<u32>());
        // The released thread and the P serve ordinary goroutines again.
        let hs: Vec<_> = (0..100u32).map(|i| go!(move || i)).collect();
        assert_eq!(hs.into_iter().map(|h| h.join().unwrap()).sum::<u32>(), (0..100).sum::<u32>());
    });
}

#[test]
fn lock_os_thread() {
    if common::in_child() {
        match std::env::var("WHICH").as_deref() {
            Ok("wired") => wired_goroutine_keeps_its_thread(),
            Ok("one_p") => one_p_keeps_running(),
            other => panic!("unknown scenario {other:?}"),
        }
        return;
    }
    for (which, procs) in [("wired", "2"), ("wired", "1"), ("one_p", "1")] {
        let out = common::run_child("lock_os_thread", &[("WHICH", which), ("GOMAXPROCS", procs)]);
        assert!(out.status.success(), "{which} at GOMAXPROCS={procs}:\n{}", common::stderr(&out));
    }
}
