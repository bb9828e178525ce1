//! Everything at once, for a while: spawn/join bursts, `select!` with timeouts, close racing with
//! senders and receivers, a contended `Mutex`, a buffered MPMC channel, plain threads on
//! channels, TCP over loopback, and goroutine/heap/threadcreate profiles taken in a loop
//! meanwhile. Every part checks its own totals; a watchdog turns a hang into a failure.
//! `GORT_STRESS=N` runs N times as many rounds (1, a few seconds, is what CI runs).

mod common;

use common::{go, run};

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gort::chan::{self, RecvTimeoutError};
use gort::sync::{Mutex, WaitGroup};

#[test]
fn soak() {
    let rounds = 400 * common::stress();
    let _w = common::Watchdog::new("soak", Duration::from_secs(120 + 60 * common::stress() as u64));
    run(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let profiles = Arc::new(AtomicU64::new(0));
        // Profiles in a loop, beside everything else.
        let profiler = {
            let (stop, profiles) = (stop.clone(), profiles.clone());
            go!(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (name, debug) in
                        [("goroutine", 0), ("goroutine", 1), ("goroutine", 2), ("heap", 0), ("threadcreate", 1)]
                    {
                        let mut out = Vec::new();
                        gort::profiler::lookup(name).expect("profile").write_to(&mut out, debug).unwrap();
                        assert!(!out.is_empty(), "{name} debug={debug} wrote nothing");
                    }
                    profiles.fetch_add(1, Ordering::Relaxed);
                    gort::time::sleep(Duration::from_millis(5));
                }
            })
        };
        // A loopback echo server: one goroutine per connection.
        let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = go!(move || {
            let mut conns = Vec::new();
            while let Ok((mut c, _)) = listener.accept() {
                conns.push(go!(move || {
                    let mut buf = [0u8; 256];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => c.write_all(&buf[..n]).unwrap(),
                        }
                    }
                }));
                if conns.len() == 4 {
                    break;
                }
            }
            for c in conns {
                c.join().unwrap();
            }
        });

        for round in 0..rounds {
            let wg = Arc::new(WaitGroup::new());

            // Spawn/join bursts, nested.
            let spawned = Arc::new(AtomicU64::new(0));
            for _ in 0..8 {
                let (wg, spawned) = (wg.clone(), spawned.clone());
                wg.add(1);
                go!(move || {
                    let hs: Vec<_> = (0..50u64).map(|i| go!(move || i)).collect();
                    let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
                    assert_eq!(sum, 49 * 50 / 2);
                    spawned.fetch_add(50, Ordering::Relaxed);
                    wg.done();
                });
            }

            // select! with timeouts: a slow sender against short timeouts.
            let (tx, rx) = chan::chan::<u32>(0);
            wg.add(1);
            let wg2 = wg.clone();
            go!(move || {
                let (mut got, mut timeouts) = (0, 0);
                while got < 5 {
                    gort::select! {
                        v = rx.recv() => { v.expect("sender alive"); got += 1; },
                        _ = gort::time::after(Duration::from_micros(200)).recv() => timeouts += 1,
                    }
                }
                assert!(timeouts < 100_000);
                wg2.done();
            });
            go!(move || {
                for i in 0..5 {
                    gort::time::sleep(Duration::from_micros(300));
                    tx.send(i).unwrap();
                }
            });

            // Close racing with senders and receivers: everything sent before the close is
            // received exactly once, and everyone returns.
            let (ctx, crx) = chan::chan::<u64>(4);
            let received = Arc::new(AtomicU64::new(0));
            let sent = Arc::new(AtomicU64::new(0));
            let mut racers = Vec::new();
            for _ in 0..3 {
                let (ctx, sent) = (ctx.clone(), sent.clone());
                racers.push(go!(move || {
                    for v in 0..20 {
                        if ctx.send(v).is_err() {
                            break;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }));
                let (crx, received) = (crx.clone(), received.clone());
                racers.push(go!(move || {
                    while crx.recv().is_some() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            gort::runtime::yield_now();
            ctx.close();
            // A receiver that is not racing drains what the others left.
            while let Some(_v) = crx.recv() {
                received.fetch_add(1, Ordering::Relaxed);
            }
            for r in racers {
                r.join().unwrap();
            }
            assert_eq!(received.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));

            // A contended Mutex, goroutines and a plain thread.
            let m = Arc::new(Mutex::new(0u64));
            for _ in 0..4 {
                let (m, wg) = (m.clone(), wg.clone());
                wg.add(1);
                go!(move || {
                    for _ in 0..500 {
                        *m.lock() += 1;
                    }
                    wg.done();
                });
            }
            let mt = {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        *m.lock() += 1;
                    }
                })
            };

            // MPMC through a buffered channel, a plain thread among the producers.
            let (mtx, mrx) = chan::chan::<u64>(16);
            let total = Arc::new(AtomicU64::new(0));
            let mut consumers = Vec::new();
            for _ in 0..3 {
                let (mrx, total) = (mrx.clone(), total.clone());
                consumers.push(go!(move || loop {
                    match mrx.recv_timeout(common::PATIENCE) {
                        Ok(v) => {
                            total.fetch_add(v, Ordering::Relaxed);
                        }
                        Err(RecvTimeoutError::Closed) => return,
                        Err(e) => panic!("consumer: {e:?}"),
                    }
                }));
            }
            let mut producers = Vec::new();
            for p in 0..3u64 {
                let mtx = mtx.clone();
                producers.push(go!(move || {
                    for i in 0..200 {
                        mtx.send(p * 1000 + i).unwrap();
                    }
                }));
            }
            let thread_producer = {
                let mtx = mtx.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        mtx.send(3000 + i).unwrap();
                    }
                })
            };
            drop(mtx);

            // TCP round trips on one connection per round (the server takes four).
            if round < 4 {
                let mut c = gort::net::TcpStream::connect(addr).unwrap();
                let mut buf = [0u8; 5];
                for _ in 0..20 {
                    c.write_all(b"hello").unwrap();
                    c.read_exact(&mut buf).unwrap();
                    assert_eq!(&buf, b"hello");
                }
            }

            for p in producers {
                p.join().unwrap();
            }
            gort::blocking(|| thread_producer.join().unwrap());
            for c in consumers {
                c.join().unwrap();
            }
            let expect: u64 = (0..4u64).map(|p| (0..200).map(|i| p * 1000 + i).sum::<u64>()).sum();
            assert_eq!(total.load(Ordering::Relaxed), expect);
            wg.wait();
            gort::blocking(|| mt.join().unwrap());
            assert_eq!(*m.lock(), 2500);
            assert_eq!(spawned.load(Ordering::Relaxed), 400);
        }
        stop.store(true, Ordering::Relaxed);
        profiler.join().unwrap();
        server.join().unwrap();
        assert!(profiles.load(Ordering::Relaxed) > 0, "no profile was taken during the soak");
    });
}
