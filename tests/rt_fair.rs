//! Fairness without preemption: sysmon hands the P of a CPU hog or of a goroutine stuck in a
//! `blocking` call to another M, so the other goroutines keep running. The tests in this file
//! are serialized (each one loads every P on purpose).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// A 10 ms ticker stays within 20 ms while GOMAXPROCS goroutines spin without yielding.
#[test]
fn ticker_keeps_time_while_hogs_spin() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    gort::run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let spins = Arc::new(AtomicU64::new(0));
        let hogs: Vec<_> = (0..gort::gomaxprocs())
            .map(|_| {
                let (stop, spins) = (stop.clone(), spins.clone());
                gort::spawn(move || {
                    // Pure computation: never enters the runtime.
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                    spins.fetch_add(1, Ordering::Relaxed);
                    x
                })
            })
            .collect();
        // Let the hogs take every P first.
        std::thread::sleep(Duration::from_millis(30));
        let ticker = gort::spawn(|| {
            let period = Duration::from_millis(10);
            let start = Instant::now();
            let mut last = start;
            let mut worst = Duration::ZERO;
            for i in 1..=50u32 {
                let next = start + period * i;
                gort::time::sleep(next.saturating_duration_since(Instant::now()));
                let now = Instant::now();
                worst = worst.max(now - last);
                last = now;
            }
            worst
        });
        let worst = ticker.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        for h in hogs {
            h.join().unwrap();
        }
        eprintln!("worst tick interval with {} hogs: {worst:?}", gort::gomaxprocs());
        assert_eq!(spins.load(Ordering::Relaxed), gort::gomaxprocs() as u64);
        assert!(worst <= Duration::from_millis(20), "a 10 ms tick took {worst:?}");
    });
}

/// With every P's goroutine inside `blocking`, other goroutines still run to completion.
#[test]
fn blocking_keeps_others_running() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    gort::run(|| {
        let n = gort::gomaxprocs();
        let release = Arc::new(AtomicBool::new(false));
        let in_call = Arc::new(AtomicU64::new(0));
        let blockers: Vec<_> = (0..n)
            .map(|_| {
                let (release, in_call) = (release.clone(), in_call.clone());
                gort::spawn(move || {
                    gort::blocking(|| {
                        in_call.fetch_add(1, Ordering::SeqCst);
                        // A thread-blocking wait (std, not the runtime) until released.
                        let t = Instant::now();
                        while !release.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(20) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    })
                })
            })
            .collect();
        let t = Instant::now();
        while in_call.load(Ordering::SeqCst) < n as u64 {
            assert!(t.elapsed() < Duration::from_secs(10), "blockers never started");
            gort::yield_now();
        }
        // All blockers hold their threads; real work still gets done, on other Ms.
        let work: Vec<_> = (0..100u64).map(|i| gort::spawn(move || (0..1000u64).map(|j| i ^ j).sum::<u64>())).collect();
        let total: u64 = work.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(!release.load(Ordering::SeqCst));
        assert_eq!(in_call.load(Ordering::SeqCst), n as u64);
        release.store(true, Ordering::SeqCst);
        for h in blockers {
            h.join().unwrap();
        }
        let expect: u64 = (0..100u64).map(|i| (0..1000u64).map(|j| i ^ j).sum::<u64>()).sum();
        assert_eq!(total, expect);
    });
}

/// `GORT_SCHEDTRACE=ms` prints Go-shaped scheduler lines to stderr.
#[test]
fn schedtrace_prints_lines() {
    if std::env::var_os("GORT_FAIR_CHILD").is_some() {
        gort::run(|| {
            let hs: Vec<_> = (0..4).map(|_| gort::spawn(|| gort::time::sleep(Duration::from_millis(120)))).collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "schedtrace_prints_lines", "--nocapture"])
        .env("GORT_FAIR_CHILD", "1")
        .env("GORT_SCHEDTRACE", "20")
        .env("GOMAXPROCS", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("SCHED ")).collect();
    assert!(lines.len() >= 2, "stderr:\n{err}");
    for l in &lines {
        assert!(l.contains("gomaxprocs=2 idleprocs="), "{l}");
        for k in ["threads=", "spinningthreads=", "idlethreads=", "runqueue="] {
            assert!(l.contains(k), "{l}");
        }
        assert!(l.trim_end().ends_with(']') && l.matches(' ').count() >= 8, "{l}");
    }
}
