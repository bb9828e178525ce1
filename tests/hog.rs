//! The hog detector: a goroutine that runs 100 ms without entering the scheduler is an event
//! (threshold 10 ms), on its own stack, whether or not work waits; one that parks every
//! millisecond never is. Margins are wide (100 ms spins against a 10 ms threshold, µs-long runs
//! against 50 ms) so that a loaded machine does not decide the outcome; nothing is timed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::prof::{decode_valid, have_go, location_names, pprof, row, tmpdir, top_rows, write};
use common::{go, in_child, run, run_child, run_child_ok, stderr, take_turn, wait_state, PATIENCE};
use gort::profiler::http::{handle, Request};
use gort::profiler::proto::Profile;
use gort::runtime::hog;

/// The in-process tests share the hog table and the threshold: one at a time.
static TURN: Mutex<()> = Mutex::new(());

const SPIN: Duration = Duration::from_millis(100);

/// The busy loop: plain integer work and one relaxed load per 100k rounds, no calls (xorshift:
/// no overflow checks), so the interrupted pc is in the function that expands it. A macro, not a
/// function, so that no inlined frame comes between. Each function seeds it differently: an
/// optimized build merges functions whose bodies are identical into one symbol.
macro_rules! spin_until {
    ($stop:expr, $seed:expr) => {{
        let mut x: u64 = $seed;
        let mut rounds = 0u64;
        while !$stop.load(Ordering::Relaxed) {
            xorshift_rounds!(x, 100_000);
            rounds += 1;
        }
        x ^ rounds
    }};
}

/// `n` rounds of xorshift on `x`: a counted loop, no calls.
macro_rules! xorshift_rounds {
    ($x:ident, $n:expr) => {{
        let mut i = 0u32;
        while i < $n {
            $x ^= $x << 13;
            $x ^= $x >> 7;
            $x ^= $x << 17;
            i += 1;
        }
    }};
}

#[inline(never)]
fn hog_spin_alone(stop: &AtomicBool) -> u64 {
    spin_until!(stop, 0x9e37_79b9_7f4a_7c15)
}

#[inline(never)]
fn hog_spin_beside(stop: &AtomicBool) -> u64 {
    spin_until!(stop, 0x6a09_e667_f3bc_c909)
}

#[inline(never)]
fn hog_spin_traced(stop: &AtomicBool) -> u64 {
    spin_until!(stop, 0xbb67_ae85_84ca_a73b)
}

#[inline(never)]
fn hog_spin_window(stop: &AtomicBool) -> u64 {
    spin_until!(stop, 0x3c6e_f372_fe94_f82b)
}

/// Sleeps 1 ms at a time for 200 ms.
#[inline(never)]
fn sleepy_loop() -> u32 {
    let end = Instant::now() + Duration::from_millis(200);
    let mut n = 0;
    while Instant::now() < end {
        gort::time::sleep(Duration::from_millis(1));
        n += 1;
    }
    n
}

/// A flag a plain thread sets after `d`: the spinner makes no runtime call to learn the time.
fn stop_after(d: Duration) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// The hog profile now, decoded and checked against pprof's rules.
fn hog_profile() -> Profile {
    decode_valid(&write("hog", 0))
}

/// The samples whose leaf location (innermost frame first, physical function last) names `f`:
/// `(count, delay, run)` summed.
fn leaf_values(p: &Profile, f: &str) -> (i64, i64, i64) {
    let mut v = (0, 0, 0);
    for s in &p.sample {
        let Some(&leaf) = s.location_id.first() else { continue };
        if location_names(p, leaf).iter().any(|n| n.contains(f)) {
            v = (v.0 + s.value[0], v.1 + s.value[1], v.2 + s.value[2]);
        }
    }
    v
}

/// Whether any sample has a frame naming `f`.
fn anywhere(p: &Profile, f: &str) -> bool {
    p.sample.iter().any(|s| s.location_id.iter().any(|&l| location_names(p, l).iter().any(|n| n.contains(f))))
}

/// Waits (on a plain thread) until the profile has an event whose leaf is `f`: sysmon records
/// it a tick or two after the run ends.
fn wait_for_leaf(f: &str) -> Profile {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let p = hog_profile();
        if leaf_values(&p, f).0 >= 1 {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no hog event with leaf {f}; profile:\n{}",
            String::from_utf8_lossy(&write("hog", 1))
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_spinner_alone_is_a_hog_with_its_loop_as_the_leaf() {
    let _t = take_turn(&TURN);
    hog::set_threshold(hog::DEFAULT_THRESHOLD);
    let events = hog::events();
    // The main goroutine only waits in `join`: the spinner is alone, no work waits.
    let stop = stop_after(SPIN);
    run(move || go!(move || hog_spin_alone(&stop)).join().unwrap());
    let p = wait_for_leaf("hog_spin_alone");
    assert!(hog::events() > events);
    let (count, delay, ran) = leaf_values(&p, "hog_spin_alone");
    assert_eq!(count, 1, "one event per run");
    assert!(ran >= 10_000_000 && delay >= 0 && delay <= ran, "run {ran} ns, delay {delay} ns");
    let names: Vec<&str> = p.sample_type.iter().map(|t| p.str(t.r#type)).collect();
    assert_eq!(names, ["count", "delay", "run"]);
    assert_eq!(p.str(p.default_sample_type), "delay");

    let text = String::from_utf8(write("hog", 1)).unwrap();
    assert!(text.starts_with("--- hog:\nthreshold=10000000\n"), "{text}");
    assert!(text.contains("hog_spin_alone"), "{text}");
    let r = handle(&Request::get("/debug/pprof/hog?debug=1"));
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("hog_spin_alone"));
    let index = String::from_utf8(handle(&Request::get("/debug/pprof/")).body).unwrap();
    assert!(index.contains("hog?debug=1") && index.contains("hog threshold"), "{index}");
    assert_eq!(handle(&Request::get("/debug/pprof/hog?debug=-1")).status, 400);

    if have_go() {
        let dir = tmpdir("hog");
        let f = dir.join("hog.pb.gz");
        std::fs::write(&f, write("hog", 0)).unwrap();
        let out = pprof(&["-top", f.to_str().unwrap()]);
        assert!(out.contains("Type: delay"), "{out}");
        let rows = top_rows(&pprof(&["-top", "-sample_index=run", f.to_str().unwrap()]));
        assert!(row(&rows, "hog_spin_alone").flat >= 10e6, "{rows:#?}");
    }
}

/// With one P and a goroutine waiting for it, sysmon also hands the P off (a retake): the event
/// is recorded all the same, with the spinner's stack.
#[test]
fn a_spinner_beside_other_work_is_a_hog_and_loses_its_p() {
    if !in_child() {
        run_child_ok("a_spinner_beside_other_work_is_a_hog_and_loses_its_p", &[("GOMAXPROCS", "1")]);
        return;
    }
    let retakes = hog::retakes();
    let stop = stop_after(SPIN);
    let other = Arc::new(AtomicU64::new(0));
    let o = other.clone();
    run(move || {
        let spinner = go!(move || {
            // Runnable on this P (the only one) while the spinner spins.
            let worker = go!(move || {
                for _ in 0..100 {
                    o.fetch_add(1, Ordering::Relaxed);
                    gort::runtime::yield_now();
                }
            });
            hog_spin_beside(&stop);
            worker
        });
        spinner.join().unwrap().join().unwrap();
    });
    wait_for_leaf("hog_spin_beside");
    assert!(hog::retakes() > retakes, "sysmon handed the P off");
    assert_eq!(other.load(Ordering::Relaxed), 100);
}

#[test]
fn a_goroutine_that_parks_every_millisecond_never_is() {
    let _t = take_turn(&TURN);
    // Its runs last microseconds; a wide margin keeps an OS stall of the thread on a loaded
    // machine from counting as a hog.
    hog::set_threshold(Duration::from_millis(50));
    let events = hog::events();
    let n = run(|| go!(sleepy_loop).join().unwrap());
    // Give sysmon a few ticks to record anything it might have seen.
    std::thread::sleep(Duration::from_millis(50));
    hog::set_threshold(hog::DEFAULT_THRESHOLD);
    assert!(n > 10, "the loop ran ({n} sleeps)");
    assert_eq!(hog::events(), events, "{}", String::from_utf8_lossy(&write("hog", 1)));
    assert!(!anywhere(&hog_profile(), "sleepy_loop"));
}

/// `?seconds=N` is a delta: what happened in the window.
#[test]
fn a_delta_profile_shows_the_window() {
    let _t = take_turn(&TURN);
    hog::set_threshold(hog::DEFAULT_THRESHOLD);
    let gz = run(|| {
        let req = go!(|| handle(&Request::get("/debug/pprof/hog?seconds=1")));
        // The window opens when the request has its first snapshot and sleeps.
        wait_state(req.id(), "sleep");
        let stop = stop_after(SPIN);
        go!(move || hog_spin_window(&stop)).join().unwrap();
        req.join().unwrap()
    });
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("Content-Disposition"), Some("attachment; filename=\"hog-delta\""));
    let p = decode_valid(&gz.body);
    assert!(leaf_values(&p, "hog_spin_window").0 >= 1, "{p:?}");
}

#[test]
fn hogtrace_prints_a_line_naming_the_spinner() {
    if !in_child() {
        let out = run_child("hogtrace_prints_a_line_naming_the_spinner", &[("GORT_HOGTRACE", "1")]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        let line =
            err.lines().find(|l| l.contains("hog_spin_traced")).unwrap_or_else(|| panic!("no trace line:\n{err}"));
        assert!(line.starts_with("gort: hog: goroutine "), "{line}");
        assert!(line.contains(" ran ") && line.contains("(threshold 10ms)"), "{line}");
        return;
    }
    let stop = stop_after(SPIN);
    run(move || go!(move || hog_spin_traced(&stop)).join().unwrap());
    assert!(hog::trace(), "GORT_HOGTRACE=1 applies when the runtime starts");
    let deadline = Instant::now() + PATIENCE;
    while hog::trace_printed() == 0 {
        assert!(Instant::now() < deadline, "no trace line printed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_bad_hogthreshold_stops_the_runtime_with_a_clear_error() {
    if !in_child() {
        let out =
            run_child("a_bad_hogthreshold_stops_the_runtime_with_a_clear_error", &[("GORT_HOGTHRESHOLD", "soon")]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(
                "gort: cannot start the runtime: invalid GORT_HOGTHRESHOLD=\"soon\": expected a positive duration"
            ),
            "{err}"
        );
        return;
    }
    run(|| ());
}

/// Spins in runs of `run`, each ended by a yield: a new run, and a new event, for a detector
/// whose threshold is shorter.
#[inline(never)]
fn hog_spin_in_runs(stop: &AtomicBool, run: Duration) -> u64 {
    let mut x: u64 = 0x510e_527f_ade6_82d1;
    while !stop.load(Ordering::Relaxed) {
        let end = Instant::now() + run;
        while Instant::now() < end {
            xorshift_rounds!(x, 10_000);
        }
        gort::runtime::yield_now();
    }
    x
}

const DUMPS: usize = 200;

// The detector asks a hog's thread for its stack and collects the answer at sysmon's next tick;
// a goroutine dump taken meanwhile finds that thread's request slot taken, and waits for it
// rather than leaving the hog's stack out. With a 10 us threshold the detector asks after
// nearly every 2 ms run, so its slot is taken about half the time. A dump cannot always show a
// goroutine that is switching (it stops nothing; it looks again a few times), hence a share
// rather than none.
#[test]
fn a_dump_shows_a_hog_the_detector_is_asking_about() {
    let _t = take_turn(&TURN);
    gort::start().unwrap();
    hog::set_threshold(Duration::from_micros(10));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let spinner =
        common::spawn_with(gort::Builder::new(), move || hog_spin_in_runs(&s, Duration::from_millis(2))).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let events = hog::events();
    let missing = common::prof::dumps_without("hog_spin_in_runs", DUMPS, Duration::from_micros(300));
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    hog::set_threshold(hog::DEFAULT_THRESHOLD);
    let asked = hog::events() - events;
    assert!(asked >= 20, "the detector asked about {asked} runs: the test did not test");
    // A dump may still catch the spinner between two runs and not find it again (see above); a
    // dump that left the hog's M out would miss it whenever the detector holds it, a share of
    // the dumps many times larger.
    assert!(missing * 20 <= DUMPS, "{missing} of {DUMPS} dumps left the spinner's stack out");
}

// The reverse of the last test: a dump owns a thread's request slot while it waits for the
// answers, and the detector, finding the slot taken when it detects a run on that thread, asks
// again at its next ticks rather than recording the event without a stack. Runs of 10 ms
// against a 1 ms threshold leave the detector several ticks to ask again; dumps 1 ms apart
// hold the hog's slot a large share of the time.
#[test]
fn the_detector_asks_again_when_a_dump_holds_the_hogs_thread() {
    let _t = take_turn(&TURN);
    gort::start().unwrap();
    hog::set_threshold(Duration::from_millis(1));
    let recorded = || hog::records().iter().map(|r| r.count).sum::<i64>();
    let (events, records) = (hog::events(), recorded());
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let spinner =
        common::spawn_with(gort::Builder::new(), move || hog_spin_in_runs(&s, Duration::from_millis(10))).unwrap();
    let s = stop.clone();
    let dumper = std::thread::spawn(move || {
        let mut dumps = 0u64;
        while !s.load(Ordering::Relaxed) {
            std::hint::black_box(gort_runtime::running_stacks());
            dumps += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        dumps
    });
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    let dumps = dumper.join().unwrap();
    // The last event's stack comes at a tick after its run.
    std::thread::sleep(Duration::from_millis(100));
    hog::set_threshold(hog::DEFAULT_THRESHOLD);
    let events = hog::events() - events;
    let stackless = events as i64 - (recorded() - records);
    assert!(events >= 30 && dumps >= 100, "{events} events, {dumps} dumps: the test did not test");
    assert!(stackless * 10 <= events as i64, "{stackless} of {events} events recorded without a stack ({dumps} dumps)");
}
