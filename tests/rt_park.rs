//! park/ready, the primitive under every blocking operation: no lost wakeups, commit refusal,
//! goroutines and plain threads waking each other.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{go, run, Watchdog};
use gort::runtime::{GRef, WaitReason};

/// A counting semaphore built directly on park/ready, the way the runtime's own primitives are.
#[derive(Default)]
struct Sem {
    st: Mutex<(u64, Option<GRef>)>,
}

impl Sem {
    fn acquire(&self) {
        loop {
            {
                let mut st = self.st.lock().unwrap();
                if st.0 > 0 {
                    st.0 -= 1;
                    return;
                }
            }
            // Publish ourselves only if no permit arrived meanwhile (the check and the publish
            // are under the same lock `release` takes): the wakeup cannot be lost.
            let commit = |g| {
                let mut st = self.st.lock().unwrap();
                if st.0 > 0 {
                    return false;
                }
                assert!(st.1.is_none(), "one waiter per Sem in these tests");
                st.1 = Some(g);
                true
            };
            // Its assert holds: each Sem here has one waiter.
            // SAFETY: the commit publishes `g` only in `st.1`, under the lock `release` takes it
            // under (once, by `take`); then it only drops the guard, else returns false. No park.
            unsafe { gort::runtime::park(WaitReason::Semacquire, commit) };
        }
    }

    fn release(&self) {
        let w = {
            let mut st = self.st.lock().unwrap();
            st.0 += 1;
            st.1.take()
        };
        if let Some(g) = w {
            // SAFETY: we took `g` out of `st.1` under the lock, where `acquire`'s commit
            // published it: the one `ready` for that park.
            unsafe { gort::runtime::ready(g) };
        }
    }
}

/// Ping-pong over park/ready, `rounds` hand-offs each way, between `a` and `b` sides.
fn ping_pong(ping: Arc<Sem>, pong: Arc<Sem>, rounds: u64, counter: Arc<AtomicU64>) -> impl FnOnce() {
    move || {
        for _ in 0..rounds {
            ping.acquire();
            counter.fetch_add(1, Ordering::Relaxed);
            pong.release();
        }
    }
}

/// 10 million park/ready hand-offs between goroutines, in four concurrent pairs so both Ps are
/// busy and goroutines migrate between Ms (stealing); none is lost.
#[test]
fn ping_pong_ten_million_no_lost_wakeup() {
    const PAIRS: u64 = 4;
    let rounds = 10_000_000 / PAIRS / 2 * common::stress() as u64;
    let _w = Watchdog::new("ping_pong_ten_million", Duration::from_secs(300) * common::stress() as u32);
    let counter = Arc::new(AtomicU64::new(0));
    let c = counter.clone();
    run(move || {
        let mut hs = Vec::new();
        for _ in 0..PAIRS {
            let (a, b) = (Arc::new(Sem::default()), Arc::new(Sem::default()));
            // `ping_pong` builds the goroutine's closure here (not `go!(f(args))`, which would
            // call it in the goroutine).
            let (side_a, side_b) =
                (ping_pong(a.clone(), b.clone(), rounds, c.clone()), ping_pong(b, a.clone(), rounds, c.clone()));
            hs.push(go!(side_a));
            hs.push(go!(side_b));
            a.release(); // serve
        }
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(counter.load(Ordering::Relaxed), PAIRS * rounds * 2);
}

/// Ping-pong between a goroutine and a plain OS thread: truly across threads every time.
#[test]
fn ping_pong_goroutine_and_thread() {
    const ROUNDS: u64 = 20_000;
    let _w = Watchdog::new("ping_pong_goroutine_and_thread", Duration::from_secs(120));
    let (a, b) = (Arc::new(Sem::default()), Arc::new(Sem::default()));
    let counter = Arc::new(AtomicU64::new(0));
    let t = std::thread::spawn(ping_pong(b.clone(), a.clone(), ROUNDS, counter.clone()));
    let c = counter.clone();
    run(move || {
        a.release();
        ping_pong(a, b, ROUNDS, c)();
    });
    t.join().unwrap();
    assert_eq!(counter.load(Ordering::Relaxed), 2 * ROUNDS);
}

/// A commit that refuses resumes the goroutine at once, never marked as parked afterwards.
#[test]
fn refused_commit_resumes_immediately() {
    run(|| {
        let calls = Arc::new(AtomicU64::new(0));
        for _ in 0..1000 {
            let c = calls.clone();
            // SAFETY: the commit publishes the G nowhere and returns false.
            unsafe {
                gort::runtime::park(WaitReason::Semacquire, move |_| {
                    c.fetch_add(1, Ordering::Relaxed);
                    false
                })
            };
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1000);
        let me = gort::runtime::current_id().unwrap();
        let info = gort::runtime::goroutines().into_iter().find(|g| g.id == me).unwrap();
        assert_eq!(info.state, "running");
    });
}

/// While parked a goroutine shows its wait reason and a growing wait time; once readied, it
/// runs again.
#[test]
fn parked_goroutine_is_visible_and_readied() {
    run(|| {
        let slot: Arc<Mutex<Option<GRef>>> = Arc::default();
        let s = slot.clone();
        let h = go!(move || {
            // SAFETY: the commit publishes `g` in `slot`, from which the test takes it once to
            // ready it; the store is its last act. It does not park or panic.
            unsafe {
                gort::runtime::park(WaitReason::Sleep, |g| {
                    *s.lock().unwrap() = Some(g);
                    true
                })
            };
            "woken"
        });
        let g = loop {
            if let Some(g) = slot.lock().unwrap().take() {
                break g;
            }
            gort::runtime::yield_now();
        };
        assert_eq!(g.id(), h.id());
        gort::time::sleep(Duration::from_millis(20));
        let info = gort::runtime::goroutines().into_iter().find(|i| i.id == h.id()).unwrap();
        assert_eq!(info.state, "sleep");
        assert_eq!(info.wait_reason, Some(WaitReason::Sleep));
        assert!(info.waiting_ns >= 15_000_000, "waited {} ns", info.waiting_ns);
        // SAFETY: we took `g` out of `slot`, where the goroutine's park published it.
        unsafe { gort::runtime::ready(g) };
        assert_eq!(h.join().unwrap(), "woken");
    });
}

/// A plain thread parks (blocking itself) and a goroutine readies it, and the other way round.
#[test]
fn plain_thread_parks_and_readies() {
    let slot: Arc<Mutex<Option<GRef>>> = Arc::default();
    let woke = Arc::new(AtomicBool::new(false));
    let (s, w) = (slot.clone(), woke.clone());
    let t = std::thread::spawn(move || {
        // SAFETY: the commit publishes `g` in `slot`, from which the goroutine below takes it
        // once to ready it; the store is its last act. It does not park or panic.
        unsafe {
            gort::runtime::park(WaitReason::Semacquire, |g| {
                *s.lock().unwrap() = Some(g);
                true
            })
        };
        w.store(true, Ordering::SeqCst);
    });
    run(move || {
        let g = loop {
            if let Some(g) = slot.lock().unwrap().take() {
                break g;
            }
            gort::time::sleep(Duration::from_millis(1));
        };
        assert!(!g.is_goroutine());
        // SAFETY: we took `g` out of `slot`, where the thread's park published it.
        unsafe { gort::runtime::ready(g) };
    });
    t.join().unwrap();
    assert!(woke.load(Ordering::SeqCst));
}

/// A snapshot holds a parked goroutine still: its park registers lie on its own stack, the
/// frame-pointer chain can be walked, and a goroutine readied meanwhile runs only after the
/// snapshot lets go.
#[test]
fn snapshot_holds_a_parked_goroutine_still() {
    run(|| {
        let slot: Arc<Mutex<Option<GRef>>> = Arc::default();
        let ran = Arc::new(AtomicBool::new(false));
        let (s, r) = (slot.clone(), ran.clone());
        let h = go!(move || {
            // SAFETY: the commit publishes `g` in `slot`, from which the test takes it once to
            // ready it; the store is its last act. It does not park or panic.
            unsafe {
                gort::runtime::park(WaitReason::Semacquire, |g| {
                    *s.lock().unwrap() = Some(g);
                    true
                })
            };
            r.store(true, Ordering::SeqCst);
        });
        let g = loop {
            if let Some(g) = slot.lock().unwrap().take() {
                break g;
            }
            gort::runtime::yield_now();
        };
        let mut readier = None;
        let frames = g
            .with_parked(|p| {
                // Started only now that the goroutine is held, so its resume must wait for us.
                // SAFETY: we took `g` out of `slot`, where the goroutine's park published it, and
                // ready it only here.
                readier = Some(std::thread::spawn(move || unsafe { gort::runtime::ready(g) }));
                assert_eq!(p.id(), h.id());
                assert_eq!(p.wait_reason(), Some(WaitReason::Semacquire));
                let (lo, hi) = p.stack_bounds();
                let regs = p.regs();
                assert!(lo < regs.sp && regs.sp < hi, "sp {:#x} outside [{lo:#x}, {hi:#x})", regs.sp);
                // Walk the frozen stack from the park site with this build's unwinder.
                let mut buf = [0usize; 64];
                let frames = p.walk(&mut buf).len;
                // The M that took it waits on the hold: the goroutine cannot run yet.
                std::thread::sleep(Duration::from_millis(50));
                assert!(!ran.load(Ordering::SeqCst), "the goroutine ran while held");
                frames
            })
            .expect("the goroutine is parked");
        assert!(frames >= 2, "walked only {frames} frames");
        readier.unwrap().join().unwrap();
        let id = h.id();
        h.join().unwrap();
        assert!(ran.load(Ordering::SeqCst));
        // Finished (or reused by another goroutine, which is then not this id): nothing to hold.
        assert!(g.with_parked(|p| p.id()) != Some(id));
    });
}

/// A commit that refuses after a snapshot has seen the goroutine WAITING and holds it: the
/// goroutine must not run on until the snapshot lets go. (With the hold a bit in the status
/// word, a refused commit once stored RUNNABLE over it: the goroutine ran while "held", and the
/// snapshot's release then stored WAITING over it, queued, so an M panicked on its status.)
#[test]
fn refused_commit_waits_for_a_snapshot() {
    let _w = Watchdog::new("refused_commit_waits_for_a_snapshot", Duration::from_secs(60));
    run(|| {
        for _ in 0..20 {
            let parked: Arc<Mutex<Option<GRef>>> = Arc::default();
            let held = Arc::new(AtomicBool::new(false));
            let ran_while_held = Arc::new(AtomicBool::new(false));
            let released = Arc::new(AtomicBool::new(false));
            let snap = {
                let (parked, held, released) = (parked.clone(), held.clone(), released.clone());
                std::thread::spawn(move || {
                    let g = loop {
                        if let Some(g) = *parked.lock().unwrap() {
                            break g;
                        }
                        std::thread::yield_now();
                    };
                    let got = g.with_parked(|_| {
                        held.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        released.store(true, Ordering::SeqCst);
                    });
                    assert!(got.is_some(), "the goroutine was not WAITING for the snapshot");
                })
            };
            let h = {
                let (parked, held, ran, released) = (parked.clone(), held.clone(), ran_while_held.clone(), released);
                go!(move || {
                    // SAFETY: the commit hands `g` to no waker (the snapshot thread only holds it
                    // still, never readies it) and returns false; it neither parks nor panics.
                    unsafe {
                        gort::runtime::park(WaitReason::Semacquire, |g| {
                            *parked.lock().unwrap() = Some(g);
                            while !held.load(Ordering::SeqCst) {
                                std::hint::spin_loop();
                            }
                            false // refuse: nobody was told
                        })
                    };
                    if !released.load(Ordering::SeqCst) {
                        ran.store(true, Ordering::SeqCst);
                    }
                    // Go through the run queue once, as a goroutine does after a refused park.
                    gort::runtime::yield_now();
                })
            };
            h.join().unwrap();
            snap.join().unwrap();
            assert!(!ran_while_held.load(Ordering::SeqCst), "the goroutine ran while a snapshot held it");
        }
    });
}

/// A scan of every goroutine (`for_each_g_held`, a batch held at a time, one heavy fence per
/// batch) while pairs of goroutines hand off to each other as fast as they can: a goroutine held
/// still makes no progress until it is let go (its count of wakes does not move while it is
/// held), and the scan does find them held.
#[test]
fn a_batched_scan_holds_goroutines_that_keep_handing_off() {
    let _w = Watchdog::new("a_batched_scan_holds_goroutines_that_keep_handing_off", Duration::from_secs(120));
    run(|| {
        const PAIRS: usize = 8;
        const TRIPS: u64 = 20_000;
        type Wakes = Arc<Mutex<std::collections::HashMap<u64, Arc<AtomicU64>>>>;
        let wakes: Wakes = Arc::default();
        let done = Arc::new(AtomicU64::new(0));
        let mut hs = Vec::new();
        for _ in 0..PAIRS {
            let (a_tx, a_rx) = gort::chan::chan::<u64>(0);
            let (b_tx, b_rx) = gort::chan::chan::<u64>(0);
            for (tx, rx, first) in [(a_tx, b_rx, true), (b_tx, a_rx, false)] {
                let (wakes, done) = (wakes.clone(), done.clone());
                hs.push(go!(move || {
                    let n = Arc::new(AtomicU64::new(0));
                    wakes.lock().unwrap().insert(gort::runtime::current_id().unwrap(), n.clone());
                    for i in 0..TRIPS {
                        if first {
                            tx.send(i).unwrap();
                        }
                        rx.recv().unwrap();
                        n.fetch_add(1, Ordering::Relaxed);
                        if !first {
                            tx.send(i).unwrap();
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }));
            }
        }
        let (mut held, mut scans) = (0u64, 0u64);
        while done.load(Ordering::SeqCst) < 2 * PAIRS as u64 {
            let snapshot = wakes.lock().unwrap().clone();
            gort::runtime::for_each_g_held(|_, p| {
                let Some(n) = p.and_then(|p| snapshot.get(&p.id())) else { return };
                let before = n.load(Ordering::Relaxed);
                for _ in 0..2000 {
                    std::hint::spin_loop();
                }
                assert_eq!(n.load(Ordering::Relaxed), before, "a held goroutine ran");
                held += 1;
            });
            scans += 1;
            gort::runtime::yield_now();
        }
        for h in hs {
            h.join().unwrap();
        }
        assert!(held >= 100, "only {held} goroutines held in {scans} scans");
    });
}
