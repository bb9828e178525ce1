//! Fairness without preemption: sysmon hands the P of a CPU hog or of a goroutine stuck in a
//! `blocking` call to another M, so the other goroutines keep running. The tests in this file
//! are serialized (each one loads every P on purpose).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{go, run, tid};

mod common;

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs a 10 ms ticker goroutine for 50 ticks and returns the worst interval between ticks.
fn ticker_worst() -> Duration {
    go!(|| {
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
    })
    .join()
    .unwrap()
}

/// Spins until `stop` (or 10 s, so a starved ticker fails instead of hanging), never entering
/// the runtime.
fn spin(stop: &AtomicBool) -> u64 {
    let t = Instant::now();
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(10) {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

/// A 10 ms ticker stays within 20 ms while GOMAXPROCS goroutines spin without yielding.
///
/// On a machine loaded by other processes the OS alone can delay a waking thread past 20 ms.
/// So the same ticker also runs beside the same number of spinning *plain threads* (which hold
/// no P, so only the OS can delay the ticker): the goroutine hogs may cost at most 10 ms more
/// than that control. On a quiet machine the control is ~10 ms and the bound is 20 ms.
#[test]
fn ticker_keeps_time_while_hogs_spin() {
    let _s = common::take_turn(&SERIAL);
    run(|| {
        // Up to three attempts: another process's burst can spoil one, a starvation bug spoils
        // every one (the ticker then waits for the hogs' 10 s cap).
        let mut results = Vec::new();
        for _ in 0..3 {
            let (worst, control) = ticker_beside_hogs();
            results.push((worst, control));
            if worst <= Duration::from_millis(20).max(control + Duration::from_millis(10)) {
                return;
            }
        }
        panic!("a 10 ms tick took too long beside CPU hogs: (worst, control) = {results:?}");
    });
}

/// One measurement: (worst tick beside goroutine hogs, worst tick beside thread hogs).
fn ticker_beside_hogs() -> (Duration, Duration) {
    let n = gort::runtime::gomaxprocs();
    // Control: OS-level competition only.
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || spin(&stop))
        })
        .collect();
    let control = ticker_worst();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    // Goroutine hogs holding every P.
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let hogs: Vec<_> = (0..n)
        .map(|_| {
            let (stop, spins) = (stop.clone(), spins.clone());
            go!(move || {
                let x = spin(&stop);
                spins.fetch_add(1, Ordering::Relaxed);
                x
            })
        })
        .collect();
    // Let the hogs take every P first.
    std::thread::sleep(Duration::from_millis(30));
    let worst = ticker_worst();
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    assert_eq!(spins.load(Ordering::Relaxed), n as u64);
    (worst, control)
}

/// With every P's goroutine inside `blocking`, other goroutines still run to completion.
#[test]
fn blocking_keeps_others_running() {
    let _s = common::take_turn(&SERIAL);
    run(|| {
        let n = gort::runtime::gomaxprocs();
        let release = Arc::new(AtomicBool::new(false));
        let in_call = Arc::new(AtomicU64::new(0));
        let blockers: Vec<_> = (0..n)
            .map(|_| {
                let (release, in_call) = (release.clone(), in_call.clone());
                go!(move || {
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
            gort::runtime::yield_now();
        }
        // All blockers hold their threads; real work still gets done, on other Ms.
        let work: Vec<_> = (0..100u64).map(|i| go!(move || (0..1000u64).map(|j| i ^ j).sum::<u64>())).collect();
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
    if common::in_child() {
        run(|| {
            let hs: Vec<_> = (0..4).map(|_| go!(|| gort::time::sleep(Duration::from_millis(120)))).collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        return;
    }
    let out = common::run_child_ok("schedtrace_prints_lines", &[("GORT_SCHEDTRACE", "20"), ("GOMAXPROCS", "2")]);
    let err = common::stderr(&out);
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

/// Readying a goroutine from inside `blocking`: at GOMAXPROCS=2 with the other P idle, a
/// receiver parked, `blocking(|| tx.send(v))`. The sender's P is in its system call; the ready
/// must not take the idle P for itself (exitsyscall would drop it again with the receiver queued
/// on it and no M to run it until sysmon's retake, ~10 ms later). The receiver wakes at once, and
/// the idle-P bookkeeping agrees with itself afterwards.
#[test]
fn ready_from_inside_blocking_wakes_at_once() {
    if !common::in_child() {
        common::run_child_ok("ready_from_inside_blocking_wakes_at_once", &[("GOMAXPROCS", "2")]);
        return;
    }
    let rounds = 15 * common::stress();
    let _w = common::Watchdog::new(
        "ready_from_inside_blocking_wakes_at_once",
        Duration::from_secs(60) * common::stress() as u32,
    );
    let retakes_before = gort::runtime::internal::syscall_retakes();
    let mut lat = run(move || {
        let mut lat = Vec::new();
        for _ in 0..rounds {
            let (tx, rx) = gort::chan::chan::<Instant>(0);
            let (back_tx, back_rx) = gort::chan::chan::<Duration>(0);
            go!(move || {
                let sent = rx.recv().unwrap();
                back_tx.send(sent.elapsed()).unwrap();
            });
            // Let the receiver park, the other M go idle with its P, and sysmon back off to its
            // longest sleep (so nothing but the ready itself can bring the receiver in soon).
            gort::time::sleep(Duration::from_millis(60));
            // Waking from the sleep started a spinning M; let it give up and park its P.
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(2) {
                std::hint::spin_loop();
            }
            gort::blocking(|| tx.send(Instant::now()).unwrap());
            lat.push(back_rx.recv().unwrap());
        }
        lat
    });
    lat.sort();
    let median = lat[lat.len() / 2];
    // Each `blocking` call lasts microseconds: sysmon, which hands off a P only after a whole
    // tick in the same call, should never need to. With the bug every round left the sender's P
    // in its system call for sysmon to find, and the receiver waited for that (ms, not µs).
    let retakes = gort::runtime::internal::syscall_retakes() - retakes_before;
    assert!(retakes < rounds as u64 / 3, "sysmon had to retake {retakes} Ps in {rounds} rounds (latencies {lat:?})");
    assert!(median < Duration::from_millis(5), "median wake latency {median:?} (all: {lat:?})");
    // Every P goes idle again, and the counter agrees with the idle list.
    let t0 = Instant::now();
    loop {
        let (n, list) = gort::runtime::internal::idle_procs();
        if n == 2 && list == 2 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "idle Ps: counter {n}, list {list}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Readying from user code does not enter the runtime: the readied goroutine is published into
/// the `runnext` of the readier's P, which sysmon may have taken meanwhile (handed to another M,
/// or left idle when that M ran out of work). Three hogs at GOMAXPROCS=4 spin 0-24 ms at a time
/// (long enough for sysmon to retake their Ps, since their readied partners wait for them) and
/// then hand a token to a partner parked on an unbuffered channel. A wake lost in the `runnext`
/// of an idle P would leave a partner parked for good and its hog's next send blocked: every
/// token must arrive. (Without the runtime's rescue of such wakes, about half the runs hang.)
#[test]
fn readies_from_a_hog_whose_p_was_taken_arrive() {
    if !common::in_child() {
        common::run_child_ok("readies_from_a_hog_whose_p_was_taken_arrive", &[("GOMAXPROCS", "4")]);
        return;
    }
    const HOGS: u64 = 3;
    let rounds = 80 * common::stress() as u64;
    let _w = common::Watchdog::new(
        "readies_from_a_hog_whose_p_was_taken_arrive",
        Duration::from_secs(60) * common::stress() as u32,
    );
    let retakes_before = gort::runtime::hog::retakes();
    let got = run(move || {
        let (done_tx, done_rx) = gort::chan::chan::<u64>(0);
        for h in 0..HOGS {
            let (tx, rx) = gort::chan::chan::<u64>(0);
            let done_tx = done_tx.clone();
            go!(move || {
                let mut sum = 0;
                while let Some(v) = rx.recv() {
                    sum += v;
                }
                done_tx.send(sum).unwrap();
            });
            go!(move || {
                let mut seed = h + 1;
                for i in 1..=rounds {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let t = Instant::now();
                    let spin = Duration::from_micros((seed >> 33) % 24_000);
                    while t.elapsed() < spin {
                        std::hint::spin_loop();
                    }
                    tx.send(i).unwrap();
                }
            });
        }
        drop(done_tx);
        let mut got = Vec::new();
        while let Some(s) = done_rx.recv() {
            got.push(s);
        }
        got
    });
    let want = rounds * (rounds + 1) / 2;
    assert_eq!(got, vec![want; HOGS as usize], "tokens lost");
    // The test means nothing unless sysmon took Ps from the hogs while partners were queued.
    let retakes = gort::runtime::hog::retakes() - retakes_before;
    assert!(retakes > 0, "sysmon never retook a hog's P");
}

/// Work queued behind a goroutine that keeps its P does not wait for sysmon's 10 ms retake while
/// another P is scheduling. At GOMAXPROCS=2 a spinner that yields every 50 µs keeps one P busy
/// (so that P never goes looking for work as an idle one would), and the main goroutine, on the
/// other P, spawns a partner (into its P's `runnext`) and then spins without yielding until the
/// partner has run. The spinner's P takes the partner (counted in `stranded_takes`) and runs it
/// on the spinner's thread. Nothing is timed: without the take, the partner would run after
/// sysmon's retake, on a third thread, and the count would not move. An attempt in which the
/// spinner shares the main goroutine's thread proves nothing and is retried, as is one spoiled
/// by an idle M that stole the partner first (it has one look at a P that spins).
#[test]
fn work_stranded_behind_a_spinning_goroutine_moves_to_a_scheduling_p() {
    const NAME: &str = "work_stranded_behind_a_spinning_goroutine_moves_to_a_scheduling_p";
    if !common::in_child() {
        common::run_child_ok(NAME, &[("GOMAXPROCS", "2")]);
        return;
    }
    let _w = common::Watchdog::new(NAME, Duration::from_secs(60));
    run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let spinner_tid = Arc::new(AtomicU64::new(0));
        let spinner = {
            let (stop, spinner_tid) = (stop.clone(), spinner_tid.clone());
            go!(move || {
                while !stop.load(Ordering::Relaxed) {
                    spinner_tid.store(tid(), Ordering::Relaxed);
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(50) {
                        std::hint::spin_loop();
                    }
                    gort::runtime::yield_now();
                }
            })
        };
        let mut attempts = Vec::new();
        for _ in 0..5 {
            // Let the spinner settle on a P of its own (the timer wakes us on the other).
            gort::time::sleep(Duration::from_millis(20));
            let me = tid();
            let before = gort::runtime::metrics().stranded_takes;
            let ran_on = Arc::new(AtomicU64::new(0));
            let partner = {
                let ran_on = ran_on.clone();
                go!(move || ran_on.store(tid(), Ordering::Release))
            };
            let t = Instant::now();
            while ran_on.load(Ordering::Acquire) == 0 && t.elapsed() < Duration::from_secs(10) {
                std::hint::spin_loop();
            }
            let spun = t.elapsed();
            partner.join().unwrap();
            let (ran_on, spinner_on) = (ran_on.load(Ordering::Relaxed), spinner_tid.load(Ordering::Relaxed));
            let took = gort::runtime::metrics().stranded_takes - before;
            if took > 0 && ran_on == spinner_on && ran_on != me {
                stop.store(true, Ordering::Relaxed);
                spinner.join().unwrap();
                return;
            }
            attempts.push(format!(
                "main on {me}, spinner on {spinner_on}, partner ran on {ran_on} after {spun:?}, takes {took}"
            ));
        }
        panic!("no scheduling P took the partner stranded behind the spinning main goroutine: {attempts:#?}");
    });
}

/// A hand-off whose wake was skipped still runs while its readier computes. At GOMAXPROCS=2 a
/// ping-pong runs first: hand-offs wake nobody at start, and a ping-pong keeps it so (any M a
/// hand-off wakes never finds the partner before the pair's own P takes it), so it runs until
/// `futile_spins` reads 4 or more. Then the pinging goroutine (not the main one, which runs on the test's thread
/// without a P) sends to the parked echo goroutine, which lands in its P's `runnext` with no
/// wake, and spins without yielding until the echo has run. sysmon finds the
/// echo standing behind a goroutine that has not scheduled for a whole tick and wakes an M,
/// which takes it (counted in `stranded_wakes`). Nothing is timed: without that wake the echo
/// would run only when sysmon retakes the spinner's P after 10 ms, and the count would not move.
/// An attempt in which something else woke an M first (the count did not move) is retried.
#[test]
fn a_handoff_that_woke_nobody_runs_while_its_readier_computes() {
    const NAME: &str = "a_handoff_that_woke_nobody_runs_while_its_readier_computes";
    if !common::in_child() {
        // Not beside this file's tests that load every P: their threads would preempt the pair.
        let _s = common::take_turn(&SERIAL);
        common::run_child_ok(NAME, &[("GOMAXPROCS", "2")]);
        return;
    }
    let _w = common::Watchdog::new(NAME, Duration::from_secs(120));
    run(|| go!(attempts).join().unwrap());

    fn attempts() {
        let mut attempts = Vec::new();
        for _ in 0..5 {
            let (ping_tx, ping_rx) = gort::chan::chan::<u64>(0);
            let (pong_tx, pong_rx) = gort::chan::chan::<u64>(0);
            let ran = Arc::new(AtomicBool::new(false));
            let echo = {
                let ran = ran.clone();
                go!(move || {
                    while let Some(v) = ping_rx.recv() {
                        if v == u64::MAX {
                            ran.store(true, Ordering::Release);
                            return;
                        }
                        pong_tx.send(v).unwrap();
                    }
                })
            };
            // Ping-pong until hand-offs wake nobody. Each round trip ends with the echo parked in
            // its receive (it parked to let this goroutine run).
            let mut batches = 0;
            while batches == 0 || gort::runtime::metrics().futile_spins < 4 && batches < 100 {
                for i in 0..10_000 {
                    ping_tx.send(i).unwrap();
                    assert_eq!(pong_rx.recv(), Some(i));
                }
                batches += 1;
            }
            // The last round trip may have left the echo runnable rather than parked (when this
            // goroutine's receive found it waiting to send): let it run into its receive. Then
            // wait (computing) for the last woken M to stop spinning: one still looking would
            // take the echo itself.
            gort::runtime::yield_now();
            let t = Instant::now();
            while gort::runtime::metrics().procs_spinning != 0 && t.elapsed() < Duration::from_secs(1) {
                std::hint::spin_loop();
            }
            let futile = gort::runtime::metrics().futile_spins;
            let before = gort::runtime::metrics().stranded_wakes;
            ping_tx.send(u64::MAX).unwrap();
            let t = Instant::now();
            while !ran.load(Ordering::Acquire) && t.elapsed() < Duration::from_secs(10) {
                std::hint::spin_loop();
            }
            let spun = t.elapsed();
            let woken = gort::runtime::metrics().stranded_wakes - before;
            echo.join().unwrap();
            assert!(ran.load(Ordering::Relaxed), "the echo never ran");
            if futile >= 4 && woken > 0 && spun < Duration::from_secs(10) {
                return;
            }
            attempts.push(format!(
                "{batches} batches, futile spins {futile}, echo ran after {spun:?}, sysmon wakes {woken}"
            ));
        }
        panic!("no attempt showed sysmon waking an M for a hand-off that woke nobody: {attempts:#?}");
    }
}

/// A sleeper whose timer comes due while goroutines take turns in long slices runs at the next
/// turn, before the goroutines already queued (as Go's timers ready into `runnext`). At
/// GOMAXPROCS=1 two goroutines each spin 2 ms and yield; the main goroutine sleeps 5 ms. The
/// slice during which its timer came due must be followed by the sleeper, not by the other
/// spinner. Nothing is timed but the order; every 61st schedule runs the queue's head first
/// (fairness), so a trial may see the other spinner first: three trials, one must hold.
#[test]
fn a_sleeper_runs_at_the_next_turn_before_queued_goroutines() {
    const NAME: &str = "a_sleeper_runs_at_the_next_turn_before_queued_goroutines";
    if !common::in_child() {
        common::run_child_ok(NAME, &[("GOMAXPROCS", "1")]);
        return;
    }
    let _w = common::Watchdog::new(NAME, Duration::from_secs(60));
    run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        // (who, when the slice ended); the sleeper logs when it woke.
        let log = Arc::new(Mutex::new(Vec::<(char, Instant)>::new()));
        let spinners: Vec<_> = ['a', 'b']
            .into_iter()
            .map(|id| {
                let (stop, log) = (stop.clone(), log.clone());
                go!(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        while t.elapsed() < Duration::from_millis(2) {
                            std::hint::spin_loop();
                        }
                        log.lock().unwrap().push((id, Instant::now()));
                        gort::runtime::yield_now();
                    }
                })
            })
            .collect();
        let mut trials = Vec::new();
        for _ in 0..3 {
            gort::time::sleep(Duration::from_millis(1));
            let due = Instant::now() + Duration::from_millis(5);
            gort::time::sleep(due - Instant::now());
            let l = std::mem::take(&mut *log.lock().unwrap());
            let ended: Vec<char> = l.iter().skip_while(|(_, at)| *at < due).map(|(who, _)| *who).collect();
            // The slice that was running when the timer came due logged its end, and only then
            // did the sleeper run; anything logged after that ran before the sleeper.
            if ended.len() == 1 {
                stop.store(true, Ordering::Relaxed);
                for s in spinners {
                    s.join().unwrap();
                }
                return;
            }
            trials.push(ended);
        }
        panic!("the woken sleeper waited behind queued goroutines: slices ended after its timer was due: {trials:?}");
    });
}

/// A goroutine that runs past its slice while another waits is asked to yield, and yields at
/// its next blocking operation's entry (here `Mutex::lock`) instead of losing its P: at
/// GOMAXPROCS=1 one thread runs goroutines at a time. Two goroutines lock a mutex in a loop for
/// 200 ms each: they take turns, about one per 10 ms slice. With the P handed off instead, the
/// old hog and the P's new M would both run for the rest of the hog's run, and the turns would
/// come by the hundred thousand. (A hog that the OS deschedules past sysmon's next tick cannot
/// answer and loses its P, but gives up its thread at its next lock.)
#[test]
fn a_long_run_yields_at_its_next_lock_when_asked() {
    if !common::in_child() {
        let _s = common::take_turn(&SERIAL);
        common::run_child_ok("a_long_run_yields_at_its_next_lock_when_asked", &[("GOMAXPROCS", "1")]);
        return;
    }
    static LAST: AtomicU64 = AtomicU64::new(0);
    static TURNS: AtomicU64 = AtomicU64::new(0);
    let (retakes0, yields0) = (gort::runtime::hog::retakes(), gort::runtime::hog::yields());
    let t0 = Instant::now();
    let wakes0 = run(sysmon_wakes);
    run(|| {
        let m = Arc::new(gort::sync::Mutex::new(0u64));
        let hs: Vec<_> = (1..=2u64)
            .map(|id| {
                let m = m.clone();
                go!(move || {
                    let t = Instant::now();
                    let mut i = 0u64;
                    while !i.is_multiple_of(1024) || t.elapsed() < Duration::from_millis(200) {
                        if LAST.swap(id, Ordering::Relaxed) != id {
                            TURNS.fetch_add(1, Ordering::Relaxed);
                        }
                        *m.lock() += 1;
                        i += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let ms = t0.elapsed().as_millis() as u64;
    let wakes = sysmon_wakes() - wakes0;
    let slices = ms / 10 + 2;
    let retakes = gort::runtime::hog::retakes() - retakes0;
    let yields = gort::runtime::hog::yields() - yields0;
    let turns = TURNS.load(Ordering::Relaxed);
    let seen = format!(
        "{turns} turns, {yields} yields, {retakes} retakes in {slices} slices, {wakes} sysmon wakes in {ms} ms"
    );
    assert!(yields >= 2, "the goroutines did not yield when asked: {seen}");
    // A turn per slice, and around a retake a few more while the old hog reaches its lock.
    assert!(turns <= 2 * slices + 4 * retakes, "two threads ran goroutines at GOMAXPROCS=1: {seen}");
    // An ask is not a retake: sysmon keeps its busy pace (a tick per ms) instead of going back
    // to 20 µs ticks after each one, which would wake it ~50 times more per slice and, on a
    // box whose other CPU is busy, take those wakes out of the goroutines' CPU. A retake does
    // restart the fast ticks; a loaded box only makes sysmon's sleeps longer.
    assert!(wakes <= 2 * ms + 60 * retakes + 100, "sysmon ticked fast after asks: {seen}");
}

/// Context switches of sysmon's thread so far: one per tick (it sleeps between ticks). The
/// thread names itself when it starts, which on a loaded machine can be a while after the
/// runtime's start: wait for it (up to 10 s).
fn sysmon_wakes() -> u64 {
    let t = Instant::now();
    loop {
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            if std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim() != "gort-sysmon" {
                continue;
            }
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            return status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches"))
                .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
                .sum();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no gort-sysmon thread after 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}
