//! `gort::sync::Parker`/`Unparker`: the safe wake-up token. Tokens before and after a park,
//! coalescing, goroutines and plain threads on either side, timeouts, a late unpark that must
//! not wake whoever reuses the owner's G, and a ping-pong stress.

mod common;

use common::{go, run, PATIENCE};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Watchdog;
use gort::chan;
use gort::sync::{Parker, Unparker};

#[test]
fn handles_are_send_and_unparker_is_sync() {
    fn send<T: Send>() {}
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    send::<Parker>();
    send_sync_clone::<Unparker>();
}

#[test]
fn unpark_before_park_returns_at_once() {
    let _w = Watchdog::new("unpark_before_park_returns_at_once", PATIENCE);
    run(|| {
        let p = Parker::new();
        p.unparker().unpark();
        p.park();
    });
    // On a plain thread too.
    let p = Parker::new();
    p.unparker().unpark();
    p.park();
}

#[test]
fn unpark_from_another_goroutine_wakes_a_parked_goroutine() {
    let _w = Watchdog::new("unpark_from_another_goroutine", PATIENCE);
    run(|| {
        let (tx, rx) = chan::chan(1);
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let owner = go!(move || {
            let p = Parker::new();
            tx.send(p.unparker()).unwrap();
            while !d.load(Ordering::Acquire) {
                p.park();
            }
        });
        let u = rx.recv().unwrap();
        // Parked as a goroutine (its thread is free), with its wait reason in the dump.
        let info = common::wait_state(owner.id(), "sync.Parker.park");
        assert_eq!(info.wait_reason, Some(gort::runtime::WaitReason::SyncParker));
        go!(move || {
            done.store(true, Ordering::Release);
            u.unpark();
        });
        owner.join().unwrap();
    });
}

#[test]
fn unpark_from_a_plain_thread_wakes_a_parked_goroutine() {
    let _w = Watchdog::new("unpark_from_a_plain_thread", PATIENCE);
    run(|| {
        let p = Parker::new();
        let u = p.unparker();
        let me = gort::runtime::current_id().unwrap();
        let t = std::thread::spawn(move || {
            common::wait_state(me, "sync.Parker.park");
            u.unpark();
        });
        p.park();
        t.join().unwrap();
    });
}

#[test]
fn goroutine_unparks_a_parked_plain_thread() {
    let _w = Watchdog::new("goroutine_unparks_a_parked_plain_thread", PATIENCE);
    let p = Parker::new();
    let u = p.unparker();
    let woke = Arc::new(AtomicBool::new(false));
    let w = woke.clone();
    let h = go!(move || {
        gort::time::sleep(Duration::from_millis(20));
        w.store(true, Ordering::Release);
        u.unpark();
    });
    p.park();
    assert!(woke.load(Ordering::Acquire), "park returned before the unpark");
    h.join().unwrap();
}

/// Many unparks before a park release it once: exactly one park returns at once, the next
/// times out.
#[test]
fn repeated_unparks_coalesce() {
    let _w = Watchdog::new("repeated_unparks_coalesce", PATIENCE);
    let check = || {
        let p = Parker::new();
        let u = p.unparker();
        for _ in 0..100 {
            u.clone().unpark();
        }
        p.park();
        assert!(!p.park_timeout(Duration::from_millis(20)), "a second token survived");
        assert!(!p.park_timeout(Duration::ZERO));
    };
    run(check);
    check();
}

#[test]
fn park_timeout_times_out_or_takes_the_token() {
    let _w = Watchdog::new("park_timeout_times_out_or_takes_the_token", PATIENCE);
    let check = || {
        let p = Parker::new();
        let u = p.unparker();
        assert!(!p.park_timeout(Duration::ZERO));
        let t = Instant::now();
        assert!(!p.park_timeout(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30), "returned after {:?}", t.elapsed());
        // The timer of a finished call leaves nothing behind: no token, no stale timeout.
        assert!(!p.park_timeout(Duration::from_millis(5)));
        u.unpark();
        assert!(p.park_timeout(Duration::ZERO));
        u.unpark();
        assert!(p.park_timeout(PATIENCE));
        // An unpark during the wait ends it early.
        let t = Instant::now();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            u.unpark();
        });
        assert!(p.park_timeout(PATIENCE));
        assert!(t.elapsed() < PATIENCE / 2);
        h.join().unwrap();
    };
    run(check);
    check();
}

/// Timeouts racing unparks: each round one unpark lands near the end of a short timed park;
/// it is either taken by that park or left for the next one, never lost (an untimed `park`
/// after a timeout must return).
#[test]
fn timeouts_never_lose_an_unpark() {
    const ROUNDS: u64 = 2000;
    let _w = Watchdog::new("timeouts_never_lose_an_unpark", Duration::from_secs(120));
    run(|| {
        let p = Parker::new();
        let u = p.unparker();
        let (go_tx, go_rx) = chan::chan::<u64>(0);
        let unparker = go!(move || {
            while let Some(i) = go_rx.recv() {
                if i % 3 != 0 {
                    gort::time::sleep(Duration::from_micros(i % 50));
                }
                u.unpark();
            }
        });
        let (mut taken, mut timed_out) = (0, 0);
        for i in 0..ROUNDS {
            go_tx.send(i).unwrap();
            if p.park_timeout(Duration::from_micros(20)) {
                taken += 1;
            } else {
                timed_out += 1;
                p.park();
            }
        }
        drop(go_tx);
        unparker.join().unwrap();
        assert_eq!(taken + timed_out, ROUNDS);
        // Every round's token was consumed: none is left.
        assert!(!p.park_timeout(Duration::from_millis(5)));
    });
}

/// An unpark that comes after the owner goroutine finished, once other goroutines have reused
/// its G (checked by identity), wakes none of them: it only sets a token in the dead parker.
/// Were the `Unparker` to hold the owner's G, the first late unpark would ready the goroutine
/// now running on that G, parked in a channel receive, which would then return `None` (and
/// corrupt its wait queue). One P (a child process), so the next spawn reuses the G at once.
#[test]
fn late_unpark_wakes_no_stranger() {
    const N: usize = 200;
    if !common::in_child() {
        common::run_child_ok("late_unpark_wakes_no_stranger", &[("GOMAXPROCS", "1")]);
        return;
    }
    let _w = Watchdog::new("late_unpark_wakes_no_stranger", PATIENCE);
    run(|| {
        let (tx, rx) = chan::chan(1);
        let owner = go!(move || {
            let p = Parker::new();
            tx.send((p.unparker(), gort::runtime::current())).unwrap();
            p.park();
        });
        let (u, owner_g) = rx.recv().unwrap();
        u.unpark();
        owner.join().unwrap();

        let (vtx, vrx) = chan::chan::<usize>(0);
        let reused = Arc::new(AtomicBool::new(false));
        let woke = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let (vrx, reused, woke) = (vrx.clone(), reused.clone(), woke.clone());
                go!(move || {
                    if gort::runtime::current() == owner_g {
                        reused.store(true, Ordering::Relaxed);
                    }
                    let v = vrx.recv();
                    woke.fetch_add(1, Ordering::SeqCst);
                    v
                })
            })
            .collect();
        common::wait_count("chan receive", N);
        assert!(reused.load(Ordering::Relaxed), "no new goroutine reused the owner's G");

        for n in [1, 1000] {
            for _ in 0..n {
                u.unpark();
            }
            for _ in 0..10 {
                gort::runtime::yield_now();
            }
            gort::time::sleep(Duration::from_millis(20));
            assert_eq!(woke.load(Ordering::SeqCst), 0, "a late unpark woke a stranger");
        }

        for i in 0..N {
            vtx.send(i).unwrap();
        }
        let mut got: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap().expect("woken without a value")).collect();
        got.sort_unstable();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
    });
}

/// Two goroutines hand a turn back and forth through two Parkers, on both Ps.
#[test]
fn ping_pong_between_two_parkers() {
    let rounds = 200_000 * common::stress() as u64;
    let _w = Watchdog::new("ping_pong_between_two_parkers", Duration::from_secs(120) * common::stress() as u32);
    run(move || {
        // The turn counter: even for A, odd for B.
        let turn = Arc::new(AtomicU64::new(0));
        let (pa, pb) = (Parker::new(), Parker::new());
        let (ua, ub) = (pa.unparker(), pb.unparker());
        let side = move |me: u64, p: Parker, other: Unparker, turn: Arc<AtomicU64>| {
            move || {
                for _ in 0..rounds {
                    while turn.load(Ordering::Acquire) % 2 != me {
                        p.park();
                    }
                    turn.fetch_add(1, Ordering::Release);
                    other.unpark();
                }
            }
        };
        let side_a = side(0, pa, ub, turn.clone());
        let a = go!(side_a);
        let side_b = side(1, pb, ua, turn.clone());
        let b = go!(side_b);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(turn.load(Ordering::Relaxed), 2 * rounds);
    });
}
