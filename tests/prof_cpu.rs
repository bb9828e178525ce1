//! The CPU profile: where the samples land, how they split between goroutines, how they add up
//! against the CPU time the process used, and what `go tool pprof` makes of them. One profile at
//! a time per process: the tests take turns.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::prof::{cpu_profile, decode_valid, have_go, pprof, stack_sum, tmpdir};

static TURN: Mutex<()> = Mutex::new(());

/// Spins for `iters` rounds of arithmetic the optimizer cannot remove.
#[inline(never)]
fn cpu_spin_a(iters: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// The same work under another name (a second goroutine's).
#[inline(never)]
fn cpu_spin_b(iters: u64) -> u64 {
    let mut x = 3u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Spins until `stop`.
#[inline(never)]
fn busy_until(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(cpu_spin_a(10_000));
    }
    n
}

/// Process CPU time (user + system) so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn total(p: &gort::profiler::proto::Profile, idx: usize) -> i64 {
    p.sample.iter().map(|s| s.value[idx]).sum()
}

#[test]
fn samples_land_in_the_busy_function_with_go_sample_types() {
    let _t = common::take_turn(&TURN);
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = common::spawn_with(gort::Builder::new(), move || busy_until(&s2)).unwrap();
    let p = cpu_profile(500, || std::thread::sleep(Duration::from_millis(800)));
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let types: Vec<(&str, &str)> = p.sample_type.iter().map(|t| (p.str(t.r#type), p.str(t.unit))).collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let pt = p.period_type.as_ref().unwrap();
    assert_eq!((p.str(pt.r#type), p.str(pt.unit)), ("cpu", "nanoseconds"));
    assert_eq!(p.period, 2_000_000);
    assert!(p.time_nanos > 0 && p.duration_nanos >= 700_000_000, "{} {}", p.time_nanos, p.duration_nanos);
    let n = total(&p, 0);
    let busy = stack_sum(&p, "cpu_spin_a", 0);
    assert!(n >= 100, "only {n} samples in 800 ms at 500 Hz");
    assert!(busy * 100 >= n * 90, "{busy} of {n} samples in cpu_spin_a");
    for s in &p.sample {
        assert_eq!(s.value[1], s.value[0] * p.period, "cpu/nanoseconds = samples x period");
    }
}

/// Walks its own stack over and over for `d`.
#[inline(never)]
fn walks_in_a_loop(d: Duration) -> usize {
    let mut buf = [0usize; 64];
    let t0 = Instant::now();
    let mut frames = 0;
    while t0.elapsed() < d {
        frames += gort::runtime::traceback::capture(0, &mut buf).len;
    }
    frames
}

/// A goroutine that walks its own stack spends most of its time on its M's spare stack, where
/// the walk runs: the samples taken there carry the unwinder's frames and, below the switch, the
/// goroutine's own, not an empty (lost) stack.
#[test]
fn samples_on_the_spare_stack_carry_the_goroutines_frames() {
    let _t = common::take_turn(&TURN);
    let p = cpu_profile(500, || {
        let h = common::spawn_with(gort::Builder::new(), || walks_in_a_loop(Duration::from_millis(600))).unwrap();
        assert!(h.join().unwrap() > 0);
    });
    let frames = |s: &gort::profiler::proto::Sample| -> Vec<&str> {
        s.location_id.iter().flat_map(|&id| common::prof::location_names(&p, id)).collect()
    };
    let (mut walking, mut stitched) = (0, 0);
    for s in &p.sample {
        let names = frames(s);
        if names.iter().any(|n| n.contains("gort_runtime::unwind::")) {
            walking += s.value[0];
            if names.iter().any(|n| n.contains("walks_in_a_loop")) {
                stitched += s.value[0];
            }
        }
    }
    let n = stack_sum(&p, "walks_in_a_loop", 0);
    let lost = stack_sum(&p, "gort::lost_samples", 0);
    assert!(n >= 100, "only {n} samples in walks_in_a_loop in 600 ms at 500 Hz");
    assert!(walking * 2 >= n, "{walking} of {n} samples in the unwinder");
    assert_eq!(stitched, walking, "samples in the unwinder without the goroutine's frames");
    assert!(lost * 20 <= n, "{lost} lost samples against {n}");
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn two_to_one_work_shows_two_to_one() {
    let _t = common::take_turn(&TURN);
    // The two goroutines take strict turns (a channel hands the turn over), `a` doing twice `b`'s
    // work per turn, and each measures the CPU time of its own turns. The samples must split as
    // that CPU time does: the work alone is not enough, as the CPU time a unit of work takes
    // moves with the host (a busy hyperthread sibling). Turns of several sampling periods keep
    // the error at each hand-over (a sample falls due in one goroutine's turn and is taken at the
    // next timer tick) small against a turn.
    let turns = 10;
    let chunk = 30_000_000u64;
    let (to_a, a_rx) = gort::chan::chan::<()>(1);
    let (to_b, b_rx) = gort::chan::chan::<()>(1);
    let mut cpu = (Duration::ZERO, Duration::ZERO);
    let p = cpu_profile(500, || {
        to_a.send(()).unwrap();
        let a = common::spawn_with(gort::Builder::new(), move || {
            let mut used = Duration::ZERO;
            for _ in 0..turns {
                a_rx.recv().unwrap();
                let t = thread_cpu();
                black_box(cpu_spin_a(2 * chunk));
                used += thread_cpu() - t;
                to_b.send(()).unwrap();
            }
            used
        })
        .unwrap();
        let b = common::spawn_with(gort::Builder::new(), move || {
            let mut used = Duration::ZERO;
            for _ in 0..turns {
                b_rx.recv().unwrap();
                let t = thread_cpu();
                black_box(cpu_spin_b(chunk));
                used += thread_cpu() - t;
                // The last turn's hand-back finds `a` gone; the buffer takes it.
                let _ = to_a.send(());
            }
            used
        })
        .unwrap();
        cpu = (a.join().unwrap(), b.join().unwrap());
    });
    let a = stack_sum(&p, "cpu_spin_a", 0) as f64;
    let b = stack_sum(&p, "cpu_spin_b", 0) as f64;
    assert!(b > 60.0, "too few samples: a={a} b={b}");
    let want = cpu.0.as_secs_f64() / cpu.1.as_secs_f64();
    // Twice the work took about twice the CPU: a sanity check on the measurement itself.
    assert!((1.5..=2.5).contains(&want), "a used {:?}, b {:?}", cpu.0, cpu.1);
    let ratio = a / b;
    assert!(
        (0.9..=1.1).contains(&(ratio / want)),
        "a={a} b={b}: ratio {ratio:.2}, CPU used {:?} / {:?} = {want:.2}, want within 10%",
        cpu.0,
        cpu.1
    );
}

/// With GOMAXPROCS goroutines busy, the sampled CPU time equals the CPU time the process used
/// (getrusage) within 10%.
fn check_sampled_cpu_matches_measured_cpu() {
    let procs = gort::runtime::gomaxprocs();
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..procs)
        .map(|_| {
            let s = stop.clone();
            common::spawn_with(gort::Builder::new(), move || busy_until(&s)).unwrap()
        })
        .collect();
    // Let the goroutines settle on their Ms before measuring.
    std::thread::sleep(Duration::from_millis(50));
    // Measured inside the profile's window: the profile is built after sampling stops, and
    // building it (symbolizing, slow in an unoptimized build) is no part of what was sampled.
    let (mut used, mut wall) = (Duration::ZERO, Duration::ZERO);
    let p = cpu_profile(250, || {
        let (c0, t0) = (cpu_time(), Instant::now());
        std::thread::sleep(Duration::from_millis(1000));
        (used, wall) = (cpu_time() - c0, t0.elapsed());
    });
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let sampled = Duration::from_nanos(total(&p, 1) as u64);
    let ratio = sampled.as_secs_f64() / used.as_secs_f64();
    assert!(
        (0.9..=1.1).contains(&ratio),
        "sampled {sampled:?} of CPU against {used:?} used ({wall:?} wall, {procs} Ps): ratio {ratio:.3}"
    );
}

#[test]
fn sampled_cpu_matches_measured_cpu() {
    let _t = common::take_turn(&TURN);
    check_sampled_cpu_matches_measured_cpu();
}

#[test]
fn sampled_cpu_matches_measured_cpu_at_1_and_2_ps() {
    if common::in_child() {
        return check_sampled_cpu_matches_measured_cpu();
    }
    let _t = common::take_turn(&TURN);
    for procs in ["1", "2"] {
        common::run_child_ok("sampled_cpu_matches_measured_cpu_at_1_and_2_ps", &[("GOMAXPROCS", procs)]);
    }
}

#[test]
fn a_second_start_is_refused_as_in_go() {
    let _t = common::take_turn(&TURN);
    gort::profiler::start_cpu_profile(std::io::sink()).unwrap();
    let e = gort::profiler::start_cpu_profile(std::io::sink()).unwrap_err();
    assert_eq!(e.to_string(), "cpu profiling already in use");
    gort::profiler::stop_cpu_profile().unwrap();
    // Stopping twice does nothing, and a new profile can start.
    gort::profiler::stop_cpu_profile().unwrap();
    gort::profiler::start_cpu_profile(std::io::sink()).unwrap();
    gort::profiler::stop_cpu_profile().unwrap();
}

#[test]
fn http_profile_serves_go_tool_pprof() {
    let _t = common::take_turn(&TURN);
    let server = gort::profiler::serve("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = common::spawn_with(gort::Builder::new(), move || busy_until(&s2)).unwrap();
    // The server keeps answering while a profile runs.
    let url = format!("http://{addr}/debug/pprof/profile?seconds=1");
    let t = std::thread::spawn(move || common::prof::http_get(addr, "/debug/pprof/profile?seconds=1"));
    std::thread::sleep(Duration::from_millis(200));
    let idx = common::prof::http_get(addr, "/debug/pprof/");
    assert_eq!(idx.status, 200);
    let busy = common::prof::http_get(addr, "/debug/pprof/profile?seconds=1");
    assert_eq!(busy.status, 500, "{}", String::from_utf8_lossy(&busy.body));
    assert_eq!(String::from_utf8_lossy(&busy.body), "Could not enable CPU profiling: cpu profiling already in use\n");
    let r = t.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert_eq!(r.status, 200);
    let p = decode_valid(&r.body);
    assert!(stack_sum(&p, "busy_until", 0) > 0, "no samples in busy_until");
    if !have_go() {
        return;
    }
    let dir = tmpdir("cpu");
    let file = dir.join("cpu.pb.gz");
    std::fs::write(&file, &r.body).unwrap();
    let top = pprof(&["-top", "-cum", file.to_str().unwrap()]);
    assert!(top.contains("cpu_spin_a"), "{url}\n{top}");
}

/// The labels of a sample's goroutine, as `key=value` strings.
fn sample_labels(p: &gort::profiler::proto::Profile, s: &gort::profiler::proto::Sample) -> Vec<String> {
    s.label.iter().map(|l| format!("{}={}", p.str(l.key), p.str(l.str))).collect()
}

#[test]
fn samples_carry_the_goroutines_labels() {
    let _t = common::take_turn(&TURN);
    let n = 80_000_000u64;
    let p = cpu_profile(500, || {
        let a = common::spawn_with(gort::Builder::new(), move || {
            gort::profiler::with_labels(&[("worker", "a")], || {
                // A goroutine spawned inside inherits the labels.
                let child = common::spawn_with(gort::Builder::new(), move || cpu_spin_b(n / 2)).unwrap();
                cpu_spin_a(n);
                child.join().unwrap();
            })
        })
        .unwrap();
        a.join().unwrap();
        let plain = common::spawn_with(gort::Builder::new(), move || cpu_spin_b(n / 2)).unwrap();
        plain.join().unwrap();
    });
    let mut a_labelled = 0;
    let mut b_labelled = 0;
    let mut b_plain = 0;
    for s in &p.sample {
        let names: Vec<&str> = s.location_id.iter().flat_map(|&id| common::prof::location_names(&p, id)).collect();
        let labels = sample_labels(&p, s);
        if names.iter().any(|n| n.contains("cpu_spin_a")) {
            assert_eq!(labels, ["worker=a"], "{names:?}");
            a_labelled += s.value[0];
        } else if names.iter().any(|n| n.contains("cpu_spin_b")) {
            if labels.is_empty() {
                b_plain += s.value[0];
            } else {
                assert_eq!(labels, ["worker=a"], "{names:?}");
                b_labelled += s.value[0];
            }
        }
    }
    assert!(
        a_labelled > 10 && b_labelled > 5 && b_plain > 5,
        "a={a_labelled} b(labelled)={b_labelled} b(plain)={b_plain}"
    );
    if !have_go() {
        return;
    }
    let f = tmpdir("cpu-labels").join("cpu.pb.gz");
    std::fs::write(&f, p.encode_gz()).unwrap();
    let top = pprof(&["-top", "-tagfocus", "worker=a", f.to_str().unwrap()]);
    assert!(top.contains("cpu_spin_a"), "{top}");
}

extern "C" fn foreign_sigprof(_: libc::c_int) {}

/// Another profiler's SIGPROF handler is refused with a clear error, never replaced (in a child
/// process: the handler stays installed).
#[test]
fn a_foreign_sigprof_handler_is_refused_not_replaced() {
    if !common::in_child() {
        common::run_child_ok("a_foreign_sigprof_handler_is_refused_not_replaced", &[]);
        return;
    }
    // SAFETY: zeroed is a valid sigaction; the handler does nothing and is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = foreign_sigprof as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGPROF, &sa, std::ptr::null_mut()), 0);
    }
    let e = gort::profiler::start_cpu_profile(std::io::sink()).unwrap_err();
    assert!(e.to_string().contains("another SIGPROF handler is installed"), "{e}");
    // Still the foreign one.
    // SAFETY: reading the current action into a zeroed struct.
    let cur = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut old);
        old.sa_sigaction
    };
    assert_eq!(cur, foreign_sigprof as extern "C" fn(libc::c_int) as usize);
    assert!(!gort::profiler::cpu_profile_running());
}
