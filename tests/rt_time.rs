//! Timers: `sleep`, `Timer` (stop/reset), `after_func`, periodic `RawTimer`, and an idle
//! runtime that sleeps instead of spinning while it waits for the next timer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{after_func, go, run};
use gort::time::{sleep, RawTimer, Timer};

mod common;

/// Generous upper bound for "fires promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);

#[test]
fn sleep_sleeps_at_least_the_duration() {
    run(|| {
        for ms in [0u64, 1, 5, 20] {
            let t = Instant::now();
            sleep(Duration::from_millis(ms));
            let e = t.elapsed();
            assert!(e >= Duration::from_millis(ms) && e < Duration::from_millis(ms) + SLACK, "{ms} ms took {e:?}");
        }
    });
}

/// Ten thousand goroutines sleeping at once, each for its own duration: all wake, none early.
#[test]
fn ten_thousand_sleepers() {
    run(|| {
        let hs: Vec<_> = (0..10_000u64)
            .map(|i| {
                go!(move || {
                    let d = Duration::from_micros(500 + (i * 7919) % 30_000);
                    let t = Instant::now();
                    sleep(d);
                    t.elapsed() >= d
                })
            })
            .collect();
        assert!(hs.into_iter().all(|h| h.join().unwrap()), "a sleeper woke early");
    });
}

#[test]
fn timer_stop_prevents_firing() {
    run(|| {
        let t = Timer::new(Duration::from_millis(30));
        assert!(t.stop(), "stop of a pending timer reports it was pending");
        assert!(!t.stop(), "second stop finds nothing pending");
        sleep(Duration::from_millis(80));
        assert!(!t.has_fired());
    });
}

#[test]
fn timer_reset_and_wait() {
    run(|| {
        let t = Timer::new(Duration::from_secs(3600));
        let start = Instant::now();
        assert!(t.reset(Duration::from_millis(20)), "was pending");
        t.wait();
        let e = start.elapsed();
        assert!(t.has_fired());
        assert!(e >= Duration::from_millis(20) && e < SLACK, "{e:?}");
        // Fired timers can be reset again (reports it was not pending).
        assert!(!t.reset(Duration::from_millis(5)));
        t.wait();
        assert!(t.has_fired());
    });
}

/// A plain thread waits on a timer by blocking.
#[test]
fn timer_wait_from_plain_thread() {
    // Before the timer: its deadline is read when it is made, and making the first timer starts
    // the runtime, which can take a while on a loaded machine.
    let start = Instant::now();
    let t = Timer::new(Duration::from_millis(20));
    t.wait();
    assert!(start.elapsed() >= Duration::from_millis(20));
}

/// `after_func` runs its function in a new goroutine; a stopped one never runs.
#[test]
fn after_func_runs_in_a_goroutine() {
    run(|| {
        let ran_in = Arc::new(AtomicU64::new(0));
        let r = ran_in.clone();
        let _t = after_func(Duration::from_millis(10), move || {
            r.store(gort::runtime::current_id().unwrap(), Ordering::SeqCst);
        });
        let cancelled = Arc::new(AtomicU64::new(0));
        let c = cancelled.clone();
        let stop_me = after_func(Duration::from_millis(10), move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert!(stop_me.stop());
        let deadline = Instant::now() + SLACK;
        while ran_in.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "after_func never ran");
            sleep(Duration::from_millis(1));
        }
        let id = ran_in.load(Ordering::SeqCst);
        assert_ne!(id, gort::runtime::current_id().unwrap());
        sleep(Duration::from_millis(30));
        assert_eq!(cancelled.load(Ordering::SeqCst), 0);
    });
}

/// A periodic timer ticks repeatedly until stopped, and not after.
#[test]
fn periodic_timer_ticks_until_stopped() {
    run(|| {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let period = 10_000_000;
        let t = RawTimer::with_period(
            gort::runtime::nanotime() + period,
            period,
            Box::new(move || {
                n2.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let deadline = Instant::now() + SLACK;
        while n.load(Ordering::SeqCst) < 5 {
            assert!(Instant::now() < deadline, "only {} ticks", n.load(Ordering::SeqCst));
            sleep(Duration::from_millis(5));
        }
        assert!(t.stop());
        let after_stop = n.load(Ordering::SeqCst);
        sleep(Duration::from_millis(50));
        assert_eq!(n.load(Ordering::SeqCst), after_stop, "ticked after stop");
    });
}

/// CPU time this process has used.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// While every goroutine sleeps, the Ms sleep too (until the next timer): half a second of
/// waiting costs a small fraction of a CPU, not a spinning core.
#[test]
fn idle_runtime_does_not_spin() {
    if !common::in_child() {
        // Alone in a child process, so other tests' work does not count.
        common::run_child_ok("idle_runtime_does_not_spin", &[]);
        return;
    }
    run(|| {
        sleep(Duration::from_millis(50)); // settle: Ms finish spinning
        let (c0, t0) = (cpu_time(), Instant::now());
        let hs: Vec<_> = (0..4).map(|i| go!(move || sleep(Duration::from_millis(400 + i * 30)))).collect();
        for h in hs {
            h.join().unwrap();
        }
        let (cpu, wall) = (cpu_time() - c0, t0.elapsed());
        assert!(cpu < wall / 4, "{cpu:?} of CPU during {wall:?} of sleeping");
    });
}

/// Stopped timers do not pile up in the timer heaps until their deadline: 100k timers armed an
/// hour ahead and stopped at once (a read deadline per read, a timeout per message) have their
/// callbacks released long before the hour is up.
#[test]
fn stopped_timers_are_swept() {
    const N: usize = 100_000;
    struct Counted(Arc<AtomicU64>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    run(|| {
        let dropped = Arc::new(AtomicU64::new(0));
        let hour = 3_600_000_000_000;
        for _ in 0..N {
            let c = Counted(dropped.clone());
            let t = RawTimer::new(
                gort::runtime::nanotime() + hour,
                Box::new(move || {
                    let _ = &c;
                }),
            );
            assert!(t.stop());
        }
        // Each sweep keeps at most the live entries (other tests' sleepers, at most ~10k here)
        // and runs again once the heap has doubled, so nearly all of them are gone.
        let gone = dropped.load(Ordering::SeqCst) as usize;
        assert!(gone >= N / 2, "only {gone} of {N} stopped timers released");
        let left = gort::runtime::internal::timer_entries();
        assert!(left < N / 2, "{left} timer heap entries left");
    });
}

/// Several goroutines (and a plain thread) waiting on one `Timer` all wake when it fires. With a
/// single waiter slot the second waiter's park was refused forever: at GOMAXPROCS=1 it spun on
/// its M and the timer never ran (a hang, at 100% CPU).
#[test]
fn every_waiter_of_a_timer_wakes() {
    if !common::in_child() {
        let out = common::run_child_ok("every_waiter_of_a_timer_wakes", &[("GOMAXPROCS", "1")]);
        assert!(common::stdout(&out).contains("all 5 waiters woke"), "{}", common::stdout(&out));
        return;
    }
    let _w = common::Watchdog::new("every_waiter_of_a_timer_wakes", Duration::from_secs(20));
    let t0 = Instant::now(); // before the timer: its deadline is taken as it is created
    let t = Arc::new(Timer::new(Duration::from_millis(50)));
    let woke = Arc::new(AtomicU64::new(0));
    let thread = {
        let (t, woke) = (t.clone(), woke.clone());
        std::thread::spawn(move || {
            t.wait();
            woke.fetch_add(1, Ordering::SeqCst);
        })
    };
    run({
        let woke = woke.clone();
        move || {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let (t, woke) = (t.clone(), woke.clone());
                    go!(move || {
                        t.wait();
                        woke.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            // Woken by the firing, not eventually by some retake or timeout.
            assert!(t0.elapsed() < SLACK, "the waiters woke only after {:?}", t0.elapsed());
            assert!(t.has_fired());
            // Waiting again on a fired timer returns at once; a reset one waits again.
            t.wait();
            t.reset(Duration::from_millis(20));
            assert!(!t.has_fired());
            t.wait();
        }
    });
    thread.join().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(50));
    println!("all {} waiters woke", woke.load(Ordering::SeqCst));
}

/// A backlog of due timers, in a child at GOMAXPROCS=1: `n` goroutines wait for one start
/// signal, then sleeper `i` sleeps until `margin + at(i)` after it, records `woke(i)` and spins
/// for `spin`. Returns what they recorded, in the order they woke, to `check`, which says what
/// is wrong with it, if anything. Every sleeper must have armed its timer before the first is
/// due, and a sleeper preempted between reading the clock and arming arms late by the
/// preemption: on a box loaded enough for either, an attempt proves nothing and is repeated with
/// a longer margin; three failed attempts panic with what each saw.
fn backlog<T: Send + 'static>(
    n: usize,
    at: fn(usize) -> Duration,
    spin: Duration,
    woke: fn(usize) -> T,
    check: impl Fn(&[T]) -> Result<(), String>,
) {
    let mut seen = Vec::new();
    for margin_ms in [100u64, 400, 1600] {
        let (order, armed_in_time) = run(move || {
            let order = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
            let armed = Arc::new(AtomicU64::new(0));
            let t0 = Arc::new(std::sync::OnceLock::<Instant>::new());
            let (tx, rx) = gort::chan::chan::<()>(0);
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let (order, armed, t0, rx) = (order.clone(), armed.clone(), t0.clone(), rx.clone());
                    go!(move || {
                        assert!(rx.recv().is_none());
                        let t0 = *t0.get().unwrap();
                        let deadline = t0 + Duration::from_millis(margin_ms) + at(i);
                        armed.fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                        sleep(deadline.saturating_duration_since(Instant::now()));
                        order.lock().unwrap().push(woke(i));
                        let t = Instant::now();
                        while t.elapsed() < spin {
                            std::hint::spin_loop();
                        }
                    })
                })
                .collect();
            t0.set(Instant::now()).unwrap();
            drop((tx, rx));
            for h in hs {
                h.join().unwrap();
            }
            let order = std::mem::take(&mut *order.lock().unwrap());
            (order, armed.load(Ordering::Relaxed) < margin_ms * 1000)
        });
        if !armed_in_time {
            seen.push("arming overran the margin".to_string());
            continue;
        }
        assert_eq!(order.len(), n);
        match check(&order) {
            Ok(()) => return,
            Err(e) => seen.push(e),
        }
    }
    panic!("three attempts, none passed: {seen:#?}");
}

/// 20 groups of 100 sleepers, the groups due 1 ms apart (spawn order is not deadline order),
/// each sleeper spinning 50 µs once awake, so every group takes five times as long to run as the
/// gap to the next. The groups wake in deadline order: the backlog waits in the heap, and each
/// woken sleeper joins the tail of the run queue. (A pass that fired everything due, each one
/// into `runnext`, woke the newest of each pass first, and past 256 queued the oldest went to
/// the global queue, to run last.) Within a group the order is free: the deadlines are equal but
/// for the clock reads' jitter.
#[test]
fn a_backlog_of_sleepers_wakes_in_deadline_order() {
    if !common::in_child() {
        common::run_child_ok("a_backlog_of_sleepers_wakes_in_deadline_order", &[("GOMAXPROCS", "1")]);
        return;
    }
    const GROUPS: usize = 20;
    fn group(i: usize) -> usize {
        (i * 7) % GROUPS
    }
    backlog(
        GROUPS * 100,
        |i| Duration::from_millis(group(i) as u64),
        Duration::from_micros(50),
        group,
        |order| {
            // Sleepers that woke after one of a later group.
            let mut latest = 0;
            let early: Vec<(usize, usize)> = order
                .iter()
                .enumerate()
                .filter_map(|(i, &g)| {
                    latest = latest.max(g);
                    (g < latest).then_some((i, g))
                })
                .collect();
            if early.is_empty() {
                return Ok(());
            }
            Err(format!(
                "{} of {} woke after a later group; first (position, group): {:?}",
                early.len(),
                order.len(),
                &early[..early.len().min(10)]
            ))
        },
    );
}

/// 400 sleepers due 1 µs apart, each spinning 10 µs once awake, are fired in batches. While
/// sleepers fired earlier still wait their turn, a pass fires only when the run queue has room
/// for several, so that their cold stacks load together (a pass that fired one sleeper per
/// schedule made each wait out its own page walk). Each sleeper reads how many timers are still
/// in the heap: that count falls a batch at a time.
#[test]
fn a_backlog_of_sleepers_is_fired_in_batches() {
    if !common::in_child() {
        common::run_child_ok("a_backlog_of_sleepers_is_fired_in_batches", &[("GOMAXPROCS", "1")]);
        return;
    }
    const N: usize = 400;
    backlog(
        N,
        |i| Duration::from_micros(((i * 7) % N) as u64),
        Duration::from_micros(10),
        |_| gort::runtime::internal::timer_entries(),
        |pending| {
            // Passes that fired, as the sleepers saw them: one fired a single sleeper per
            // schedule would show almost N.
            let passes = pending.windows(2).filter(|w| w[1] != w[0]).count();
            if passes <= N / 4 {
                return Ok(());
            }
            Err(format!("{passes} passes fired {N} sleepers; heap sizes seen: {:?}", &pending[..pending.len().min(60)]))
        },
    );
}

/// Batching a backlog must not hold sleepers back behind other work: at GOMAXPROCS=1, 256
/// goroutines yield in a loop, counting schedules, while 100 sleepers fall due 5 µs apart
/// (more than one per queue's turn, fewer than one per schedule, in release and debug builds).
/// A sleeper wakes about one run queue's worth of schedules after its deadline (it joins the
/// queue's tail). A pass that waited for the sleepers queued before it to run first, while the
/// queue stayed long, fired one per turn of the queue, and the sleepers fell behind without
/// end.
#[test]
fn sleepers_beside_a_long_run_queue_are_not_held_back() {
    if !common::in_child() {
        common::run_child_ok("sleepers_beside_a_long_run_queue_are_not_held_back", &[("GOMAXPROCS", "1")]);
        return;
    }
    const YIELDERS: u64 = 256;
    const SLEEPERS: usize = 100;
    let waits = run(|| {
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let yielders: Vec<_> = (0..YIELDERS)
            .map(|_| {
                let (ticks, stop) = (ticks.clone(), stop.clone());
                go!(move || {
                    while !stop.load(Ordering::Relaxed) {
                        ticks.fetch_add(1, Ordering::Relaxed);
                        gort::runtime::yield_now();
                    }
                })
            })
            .collect();
        let t0 = Instant::now() + Duration::from_millis(50);
        let sleepers: Vec<_> = (0..SLEEPERS)
            .map(|i| {
                let ticks = ticks.clone();
                let deadline = t0 + Duration::from_micros(5 * i as u64);
                go!(move || {
                    sleep(deadline.saturating_duration_since(Instant::now()));
                    let woke = ticks.load(Ordering::Relaxed);
                    // The schedules since the deadline: the count when the deadline passed is
                    // read by a watcher below; here only the wake's count.
                    (deadline, woke)
                })
            })
            .collect();
        // A plain thread records the count as each deadline passes.
        let watch = {
            let ticks = ticks.clone();
            std::thread::spawn(move || {
                (0..SLEEPERS)
                    .map(|i| {
                        let deadline = t0 + Duration::from_micros(5 * i as u64);
                        while Instant::now() < deadline {
                            std::hint::spin_loop();
                        }
                        ticks.load(Ordering::Relaxed)
                    })
                    .collect::<Vec<u64>>()
            })
        };
        let woke: Vec<u64> = sleepers.into_iter().map(|h| h.join().unwrap().1).collect();
        stop.store(true, Ordering::Relaxed);
        for y in yielders {
            y.join().unwrap();
        }
        let due = watch.join().unwrap();
        woke.iter().zip(&due).map(|(w, d)| w.saturating_sub(*d)).collect::<Vec<u64>>()
    });
    let worst = *waits.iter().max().unwrap();
    assert!(
        worst <= YIELDERS * 3 / 2,
        "a sleeper waited {worst} schedules after its deadline beside {YIELDERS} yielders (all: {waits:?})"
    );
}

/// At GOMAXPROCS=1 a sleeper wakes while two goroutines hand off to each other without pause:
/// a woken sleeper joins the run queue's tail, and the pair, always in `runnext`, must not keep
/// it there (the scheduler takes the queue's head every 61st schedule).
#[test]
fn a_sleeper_wakes_beside_a_runnext_ping_pong() {
    if !common::in_child() {
        common::run_child_ok("a_sleeper_wakes_beside_a_runnext_ping_pong", &[("GOMAXPROCS", "1")]);
        return;
    }
    let _w = common::Watchdog::new("a sleeper beside a ping-pong", common::PATIENCE);
    let woke_after = run(|| {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = gort::chan::chan::<u64>(0);
        let (tx2, rx2) = gort::chan::chan::<u64>(0);
        let s = stop.clone();
        let a = go!(move || {
            while !s.load(Ordering::Relaxed) {
                tx.send(1).unwrap();
                rx2.recv().unwrap();
            }
        });
        let b = go!(move || {
            while let Some(v) = rx.recv() {
                if tx2.send(v).is_err() {
                    break;
                }
            }
        });
        let t = Instant::now();
        sleep(Duration::from_millis(20));
        let woke_after = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        a.join().unwrap();
        b.join().unwrap();
        woke_after
    });
    assert!(woke_after < SLACK, "the sleeper woke after {woke_after:?}");
}

/// The scheduler's threads ask the kernel for exact timeouts: their timed sleeps end when the
/// next timer is due, not up to Linux's default 50 µs later.
#[test]
fn scheduler_threads_have_no_timer_slack() {
    // SAFETY: PR_GET_TIMERSLACK takes no pointer; it returns the calling thread's slack.
    let slack = run(|| go!(|| unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) }).join().unwrap());
    assert_eq!(slack, 1, "a goroutine's thread has the default timer slack (ns)");
}
