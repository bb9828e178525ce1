//! The CPU profiler's signal path is safe: at 1 kHz, while goroutines allocate, park, spawn,
//! exit and do loopback I/O, nothing crashes or deadlocks, every sample is well formed, and the
//! SIGPROF handler allocates nothing (a counting global allocator checks every allocation made
//! while a thread is inside the handler). `GORT_STRESS=N` runs it N times longer.

mod common;

use common::go;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Counting;

static IN_HANDLER_ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; the count is a relaxed atomic, and the check is a
// read of a const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if gort::runtime::cpuprof::in_handler() {
            IN_HANDLER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if gort::runtime::cpuprof::in_handler() {
            IN_HANDLER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[inline(never)]
fn churn(stop: &AtomicBool) -> usize {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let v: Vec<String> = (0..64).map(|i| format!("item {i}")).collect();
        n += std::hint::black_box(v).len();
    }
    n
}

#[test]
fn profiling_at_1khz_under_load_is_safe_and_allocation_free() {
    let run_for = Duration::from_millis(1000) * common::stress() as u32;
    let _w = common::Watchdog::new("cpu profile soak", common::PATIENCE + run_for * 4);
    let stop = Arc::new(AtomicBool::new(false));
    let mut ops = 0;
    let p = common::prof::cpu_profile(1000, || {
        ops = common::run({
            let stop = stop.clone();
            move || {
                let mut hs = Vec::new();
                // Allocation churn.
                for _ in 0..2 {
                    let s = stop.clone();
                    hs.push(go!(move || churn(&s)));
                }
                // Park/ready: a ping-pong.
                let (tx, rx) = gort::chan::chan::<u64>(0);
                let (tx2, rx2) = gort::chan::chan::<u64>(0);
                let s = stop.clone();
                hs.push(go!(move || {
                    let mut n = 0;
                    while !s.load(Ordering::Relaxed) {
                        tx.send(1).unwrap();
                        n += rx2.recv().unwrap() as usize;
                    }
                    drop(tx);
                    n
                }));
                hs.push(go!(move || {
                    let mut n = 0;
                    while let Some(v) = rx.recv() {
                        if tx2.send(v).is_err() {
                            break;
                        }
                        n += 1;
                    }
                    n
                }));
                // Spawn and exit.
                let s = stop.clone();
                hs.push(go!(move || {
                    let mut n = 0;
                    while !s.load(Ordering::Relaxed) {
                        let hs: Vec<_> = (0..16).map(|i| go!(move || i * 2)).collect();
                        for h in hs {
                            n += h.join().unwrap();
                        }
                    }
                    n
                }));
                // Loopback I/O.
                let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = l.local_addr().unwrap();
                hs.push(go!(move || {
                    let mut n = 0;
                    if let Ok((mut c, _)) = l.accept() {
                        let mut b = [0u8; 64];
                        while let Ok(k) = c.read(&mut b) {
                            if k == 0 || c.write_all(&b[..k]).is_err() {
                                break;
                            }
                            n += 1;
                        }
                    }
                    n
                }));
                let s = stop.clone();
                hs.push(go!(move || {
                    let mut c = gort::net::TcpStream::connect(addr).unwrap();
                    let mut n = 0;
                    let mut b = [0u8; 5];
                    while !s.load(Ordering::Relaxed) {
                        c.write_all(b"hello").unwrap();
                        c.read_exact(&mut b).unwrap();
                        n += 1;
                    }
                    n
                }));
                let t = Instant::now();
                while t.elapsed() < run_for {
                    gort::time::sleep(Duration::from_millis(10));
                }
                stop.store(true, Ordering::Relaxed);
                hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
            }
        })
    });
    assert!(ops > 0);
    let samples: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert!(samples >= 200, "only {samples} samples in {run_for:?} at 1 kHz under load");
    for s in &p.sample {
        assert!(!s.location_id.is_empty() && s.value[0] > 0 && s.value[1] == s.value[0] * p.period);
    }
    assert_eq!(IN_HANDLER_ALLOCS.load(Ordering::Relaxed), 0, "the SIGPROF handler allocated");
}
