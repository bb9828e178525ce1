//! The wall-clock profile: where goroutines of known behaviour spent a window (measured exactly
//! from the scheduler's transitions), how it shares the CPU sampler with the CPU profile, and
//! what `go tool pprof` makes of its `state` label. One window at a time: the tests take turns.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::prof::{decode_valid, have_go, location_names, pprof, tmpdir};
use gort::profiler::proto::Profile;

static TURN: Mutex<()> = Mutex::new(());

/// Spins for `d` of wall time without entering the runtime.
#[inline(never)]
fn wall_spin(d: Duration) -> u64 {
    let t = Instant::now();
    let mut x = 1u64;
    while t.elapsed() < d {
        for i in 0..1000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

/// A goroutine labelled `who=spinner` that spins `spin` and sleeps `nap`, over and over, until
/// `stop`.
fn spinner(stop: &Arc<AtomicBool>, spin: Duration, nap: Duration) -> gort::JoinHandle<()> {
    let s = stop.clone();
    common::spawn_with(gort::Builder::new(), move || {
        gort::profiler::with_labels(&[("who", "spinner")], || {
            while !s.load(Ordering::Relaxed) {
                wall_spin(spin);
                gort::time::sleep(nap);
            }
        })
    })
    .unwrap()
}

fn labels_of(p: &Profile, s: &gort::profiler::proto::Sample) -> HashMap<String, String> {
    s.label.iter().map(|l| (p.str(l.key).to_string(), p.str(l.str).to_string())).collect()
}

/// Nanoseconds by (`who` label, `state` label).
fn split(p: &Profile) -> HashMap<(String, String), i64> {
    let mut m = HashMap::new();
    for s in &p.sample {
        let l = labels_of(p, s);
        let state = l.get("state").cloned().unwrap_or_else(|| panic!("a sample without a state label: {l:?}"));
        let who = l.get("who").cloned().unwrap_or_default();
        *m.entry((who, state)).or_default() += s.value[0];
    }
    m
}

/// Running time charged to stacks with a frame whose function's name contains `needle`.
fn running_in(p: &Profile, needle: &str) -> i64 {
    p.sample
        .iter()
        .filter(|s| labels_of(p, s).get("state").map(String::as_str) == Some("running"))
        .filter(|s| s.location_id.iter().any(|&id| location_names(p, id).iter().any(|n| n.contains(needle))))
        .map(|s| s.value[0])
        .sum()
}

fn wall_profile(d: Duration) -> Profile {
    let gz = gort::profiler::wall::profile_for(d, std::thread::sleep).expect("wall profile");
    decode_valid(&gz)
}

#[test]
fn each_goroutines_time_splits_by_state_and_sums_to_the_window() {
    let _t = common::take_turn(&TURN);
    gort::start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = spinner(&stop, Duration::from_millis(40), Duration::from_millis(40));
    // Waits on a channel for the whole window.
    let (tx, rx) = gort::chan::chan::<()>(0);
    let waiter = common::spawn_with(gort::Builder::new(), move || {
        gort::profiler::with_labels(&[("who", "receiver")], || {
            let _ = rx.recv();
        })
    })
    .unwrap();
    // Waits on a mutex its holder keeps for the whole window.
    let m = Arc::new(gort::sync::Mutex::new(0u32));
    let (held_tx, held_rx) = gort::chan::chan::<()>(1);
    let (release_tx, release_rx) = gort::chan::chan::<()>(0);
    let m2 = m.clone();
    let holder = common::spawn_with(gort::Builder::new(), move || {
        let g = m2.lock();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
        drop(g);
    })
    .unwrap();
    held_rx.recv().unwrap();
    let m3 = m.clone();
    let locker = common::spawn_with(gort::Builder::new(), move || {
        gort::profiler::with_labels(&[("who", "locker")], || {
            *m3.lock() += 1;
        })
    })
    .unwrap();
    common::wait_count("sync.Mutex.Lock", 1);
    common::wait_count("chan receive", 2);

    let window = Duration::from_millis(1200);
    let p = wall_profile(window);
    stop.store(true, Ordering::Relaxed);
    drop(tx);
    release_tx.send(()).unwrap();
    for h in [spinner, waiter, holder, locker] {
        h.join().unwrap();
    }

    let types: Vec<(&str, &str)> = p.sample_type.iter().map(|t| (p.str(t.r#type), p.str(t.unit))).collect();
    assert_eq!(types, [("wall", "nanoseconds")]);
    let w = p.duration_nanos as f64;
    assert!(w >= window.as_nanos() as f64 * 0.99, "window {w} ns");
    let m = split(&p);
    let get = |who: &str, state: &str| *m.get(&(who.to_string(), state.to_string())).unwrap_or(&0) as f64;
    let sum = |who: &str| m.iter().filter(|((w, _), _)| w == who).map(|(_, &v)| v as f64).sum::<f64>();
    let near = |what: &str, v: f64, want: f64| {
        assert!(
            (v - want).abs() <= 0.05 * w,
            "{what}: {:.1} ms, want {:.1} ms (window {:.1} ms); all: {m:?}",
            v / 1e6,
            want / 1e6,
            w / 1e6
        )
    };
    for who in ["spinner", "receiver", "locker"] {
        near(&format!("{who}'s total"), sum(who), w);
    }
    near("spinner running", get("spinner", "running"), w / 2.0);
    near("spinner sleeping", get("spinner", "sleep") + get("spinner", "runnable"), w / 2.0);
    near("receiver in chan receive", get("receiver", "chan receive"), w);
    near("locker in sync.Mutex.Lock", get("locker", "sync.Mutex.Lock"), w);

    // Waiting time is charged to the park site: the receiver's to its closure's recv.
    let recv_stack: Vec<&str> = p
        .sample
        .iter()
        .filter(|s| labels_of(&p, s).get("who").map(String::as_str) == Some("receiver"))
        .flat_map(|s| s.location_id.iter().flat_map(|&id| location_names(&p, id)))
        .collect();
    assert!(recv_stack.iter().any(|n| n.contains("prof_wall")), "receiver's stack: {recv_stack:?}");
    // Running time lands on the spinning function, spread over the CPU samples.
    let spin = running_in(&p, "wall_spin");
    assert!(spin as f64 >= 0.8 * get("spinner", "running"), "{spin} ns of running time in wall_spin");
}

/// Restores the hog threshold when dropped, so a failing test leaves the others theirs.
struct HogThreshold(Duration);

impl Drop for HogThreshold {
    fn drop(&mut self) {
        gort::runtime::hog::set_threshold(self.0);
    }
}

// A goroutine running at a window's close is charged with the labels from its own answer to
// the close's stack request; an M that cannot answer at once (sysmon's hog detector holds its
// request slot until its next tick, or the signal lands while it runs off the goroutine's
// stack) is asked again, not charged without labels. A tiny hog threshold keeps the slot busy:
// the detector asks the spinner's M after almost every one of its runs.
#[test]
fn a_running_goroutine_keeps_its_labels_when_its_m_is_busy_answering() {
    let _t = common::take_turn(&TURN);
    gort::start().unwrap();
    let _restore = HogThreshold(gort::runtime::hog::threshold());
    gort::runtime::hog::set_threshold(Duration::from_micros(10));
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = spinner(&stop, Duration::from_millis(3), Duration::from_micros(500));
    std::thread::sleep(Duration::from_millis(50));
    let mut unlabelled = Vec::new();
    for _ in 0..25 {
        let p = wall_profile(Duration::from_millis(20));
        let m = split(&p);
        let of = |who: &str| m.iter().filter(|((w, _), _)| w == who).map(|(_, &v)| v).sum::<i64>();
        if of("") > of("spinner") / 10 {
            unlabelled.push(m);
        }
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(unlabelled.is_empty(), "{} of 25 windows lost the spinner's labels: {unlabelled:?}", unlabelled.len());
}

/// Three park sites, one function each. Each passes its own constant to `black_box`, so the
/// bodies differ: an optimized build merges identical functions into one symbol.
#[inline(never)]
fn nap_a() {
    gort::time::sleep(Duration::from_millis(2));
    black_box(1u8); // not a tail call: the function keeps its frame
}
#[inline(never)]
fn nap_b() {
    gort::time::sleep(Duration::from_millis(2));
    black_box(2u8); // not a tail call: the function keeps its frame
}
#[inline(never)]
fn nap_c() {
    gort::time::sleep(Duration::from_millis(2));
    black_box(3u8); // not a tail call: the function keeps its frame
}

/// Waiting time charged to stacks through `needle`, for goroutines labelled `who`, by `key`'s
/// label value.
fn waited_in(p: &Profile, who: &str, needle: &str, key: &str) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for s in &p.sample {
        let l = labels_of(p, s);
        if l.get("who").map(String::as_str) != Some(who) || l.get("state").map(String::as_str) == Some("running") {
            continue;
        }
        if s.location_id.iter().any(|&id| location_names(p, id).iter().any(|n| n.contains(needle))) {
            *m.entry(l.get(key).cloned().unwrap_or_default()).or_default() += s.value[0];
        }
    }
    m
}

// A goroutine that parks at more sites than it keeps tallies for, and one that changes its
// labels at every park: each site and each label set gets its share, and each goroutine's time
// still sums to the window.
#[test]
fn rotating_park_sites_and_labels_are_each_charged() {
    let _t = common::take_turn(&TURN);
    gort::start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let rotor = common::spawn_with(gort::Builder::new(), move || {
        gort::profiler::with_labels(&[("who", "rotor")], || {
            while !s.load(Ordering::Relaxed) {
                nap_a();
                nap_b();
                nap_c();
            }
        })
    })
    .unwrap();
    let s = stop.clone();
    let phaser = common::spawn_with(gort::Builder::new(), move || {
        while !s.load(Ordering::Relaxed) {
            for (phase, nap) in [("a", nap_a as fn()), ("b", nap_b), ("c", nap_c)] {
                gort::profiler::with_labels(&[("who", "phaser"), ("phase", phase)], nap);
            }
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let p = wall_profile(Duration::from_millis(900));
    stop.store(true, Ordering::Relaxed);
    rotor.join().unwrap();
    phaser.join().unwrap();

    let w = p.duration_nanos as f64;
    let m = split(&p);
    for who in ["rotor", "phaser"] {
        let total = m.iter().filter(|((x, _), _)| x == who).map(|(_, &v)| v as f64).sum::<f64>();
        assert!((total - w).abs() <= 0.05 * w, "{who}: {:.1} ms in a {:.1} ms window: {m:?}", total / 1e6, w / 1e6);
    }
    for nap in ["nap_a", "nap_b", "nap_c"] {
        let v = waited_in(&p, "rotor", nap, "who").values().sum::<i64>() as f64;
        assert!((v - w / 3.0).abs() <= 0.07 * w, "rotor in {nap}: {:.1} ms of {:.1}", v / 1e6, w / 1e6);
    }
    for (phase, nap) in [("a", "nap_a"), ("b", "nap_b"), ("c", "nap_c")] {
        let by_phase = waited_in(&p, "phaser", nap, "phase");
        let v = by_phase.get(phase).copied().unwrap_or(0) as f64;
        assert!((v - w / 3.0).abs() <= 0.07 * w, "phaser in {nap}: {by_phase:?} of {:.1} ms", w / 1e6);
        assert_eq!(by_phase.len(), 1, "phaser in {nap} under other labels: {by_phase:?}");
    }
}

#[test]
fn one_window_at_a_time_and_the_cpu_profile_shares_the_sampler() {
    let _t = common::take_turn(&TURN);
    gort::start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let busy = common::spawn_with(gort::Builder::new(), move || {
        while !s.load(Ordering::Relaxed) {
            wall_spin(Duration::from_millis(5));
            gort::runtime::yield_now();
        }
    })
    .unwrap();
    let (res_tx, res_rx) = std::sync::mpsc::channel();
    let outer = std::thread::spawn(move || {
        let r = gort::profiler::wall::profile_for(Duration::from_millis(900), std::thread::sleep);
        res_tx.send(()).unwrap();
        r
    });
    std::thread::sleep(Duration::from_millis(150));
    let second = gort::profiler::wall::profile_for(Duration::from_millis(10), std::thread::sleep);
    assert_eq!(second.unwrap_err().to_string(), "wall profiling already in use");
    // A CPU profile during the wall window joins the running sampler.
    let cpu = common::prof::cpu_profile(100, || std::thread::sleep(Duration::from_millis(400)));
    let cpu_busy = common::prof::stack_sum(&cpu, "wall_spin", 0);
    assert!(cpu_busy >= 10, "{cpu_busy} CPU samples in wall_spin");
    assert!(res_rx.recv_timeout(Duration::from_secs(30)).is_ok());
    let wall = decode_valid(&outer.join().unwrap().unwrap());
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    let running = running_in(&wall, "wall_spin");
    assert!(running >= 300_000_000, "{running} ns running in wall_spin over 900 ms");
    // And after both, a new window opens.
    wall_profile(Duration::from_millis(50));
}

#[test]
fn go_tool_pprof_focuses_on_a_state() {
    let _t = common::take_turn(&TURN);
    if !have_go() {
        return;
    }
    gort::start().unwrap();
    let (tx, rx) = gort::chan::chan::<()>(0);
    let h = common::spawn_with(gort::Builder::new(), move || {
        let _ = rx.recv();
    })
    .unwrap();
    common::wait_count("chan receive", 1);
    let gz = gort::profiler::wall::profile_for(Duration::from_millis(300), std::thread::sleep).unwrap();
    drop(tx);
    h.join().unwrap();
    let dir = tmpdir("wall");
    let f = dir.join("wall.pb.gz");
    std::fs::write(&f, gz).unwrap();
    let out = pprof(&["-top", "-tagfocus", "state=chan receive", f.to_str().unwrap()]);
    assert!(out.contains("prof_wall"), "{out}");
    let tags = pprof(&["-tags", f.to_str().unwrap()]);
    assert!(tags.contains("chan receive"), "{tags}");
}
