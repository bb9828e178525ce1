//! The goroutine profile (`gort::profiler::lookup("goroutine")`): debug=0 read by `go tool
//! pprof`, the leak demo (`examples/leak.rs`) diffed with `-base`, Go's debug=1 and debug=2 texts, and the
//! prost messages checked against a profile written by Go.

mod common;

use std::time::Duration;

use common::prof::*;
use common::{go, run, wait_count};
use gort::chan;
use gort::profiler::goroutine::{render2, GStack};
use gort::profiler::proto::Profile;

/// Serializes the tests of this file: each counts goroutines.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes this file's turn, once the receivers a previous test released have finished (they
/// share the stacks the tests count).
fn turn() -> std::sync::MutexGuard<'static, ()> {
    let t = common::take_turn(&TURN);
    for _ in 0..5000 {
        if !gort::runtime::goroutines().iter().any(|g| g.state == "chan receive") {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    t
}

/// The leak demo's `http_pprof_goroutine` (`examples/leak.rs`): spawns goroutines that block
/// forever on `<-a`. Here the spawning is driven by the test (`spawn` more goroutines per call)
/// instead of a timer.
fn http_pprof_goroutine(a: &chan::Receiver<i32>, spawn: usize) {
    for _ in 0..spawn {
        let a = a.clone();
        go!(move || {
            let _ = a.recv();
        });
    }
}

#[test]
fn leak_demo_diff_with_base() {
    let _t = turn();
    let (tx, rx) = chan::chan::<i32>(0);
    let dir = tmpdir("leak");
    let (g1, g2) = run(move || {
        // Both profiles are taken from the same line, so the profiling goroutine's own stack
        // cancels out in the diff, as the HTTP handler's does in Go's demo.
        let mut ps = Vec::new();
        // (black_box: an unrolled loop would give each iteration its own call site.)
        for (spawn, total) in std::hint::black_box(vec![(5, 5), (20, 25)]) {
            http_pprof_goroutine(&rx, spawn);
            wait_count("chan receive", total);
            ps.push(write("goroutine", 0));
        }
        (ps.remove(0), ps.remove(0))
    });
    let (p1, p2) = (decode_valid(&g1), decode_valid(&g2));
    let count = |p: &Profile, needle: &str| stack_sum(p, needle, 0);
    assert_eq!(count(&p2, "http_pprof_goroutine") - count(&p1, "http_pprof_goroutine"), 20);
    // The delta an HTTP `?seconds=N` request serves: only the 20 new goroutines remain.
    let d = gort::profiler::proto::delta(&p1, &p2).unwrap();
    gort::profiler::proto::validate(&d).unwrap();
    assert_eq!(d.sample.iter().map(|s| s.value[0]).collect::<Vec<_>>(), [20]);
    assert_eq!(count(&d, "http_pprof_goroutine::{{closure}}"), 20);
    std::fs::write(dir.join("g1.pb.gz"), &g1).unwrap();
    std::fs::write(dir.join("g2.pb.gz"), &g2).unwrap();
    drop(tx);
    if !have_go() {
        return;
    }
    let (f1, f2) = (dir.join("g1.pb.gz"), dir.join("g2.pb.gz"));
    let out = pprof(&["-top", "-base", f1.to_str().unwrap(), f2.to_str().unwrap()]);
    let rows = top_rows(&out);
    let recv = row(&rows, "Receiver<T>::recv");
    assert_eq!(recv.flat, 20.0, "{out}");
    let closure = row(&rows, "http_pprof_goroutine::{{closure}}");
    assert_eq!(closure.cum, 20.0, "{out}");
    assert!(out.contains("Showing nodes accounting for 20, 100% of 20 total"), "{out}");
    // -raw parses it and shows names without any symbolization step.
    let raw = pprof(&["-raw", f2.to_str().unwrap()]);
    assert!(raw.contains("gort_runtime::chan::Receiver<T>::recv"), "{raw}");
}

#[test]
fn debug1_text_has_go_shape() {
    let _t = turn();
    let (tx, rx) = chan::chan::<i32>(0);
    let text = run(move || {
        http_pprof_goroutine(&rx, 3);
        wait_count("chan receive", 3);
        String::from_utf8(write("goroutine", 1)).unwrap()
    });
    drop(tx);
    eprintln!("{text}");
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    assert!(head.starts_with("goroutine profile: total "), "{head}");
    let total: i64 = head.rsplit(' ').next().unwrap().parse().unwrap();
    // Groups: "N @ 0x.. 0x..", then "#\t0x..\tname+0x..\tfile:line" lines, then a blank line.
    let groups: Vec<&str> = text.split("\n\n").filter(|g| !g.trim().is_empty()).collect();
    let mut sum = 0;
    let mut saw_recv = false;
    for (i, g) in groups.iter().enumerate() {
        let mut ls = g.lines();
        if i == 0 {
            ls.next();
        }
        let at = ls.next().unwrap();
        let (n, pcs) = at.split_once(" @").unwrap_or_else(|| panic!("bad group line {at:?}"));
        sum += n.parse::<i64>().unwrap();
        assert!(pcs.split_whitespace().all(|p| p.starts_with("0x")), "{at}");
        for l in ls {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l:?}");
            assert_eq!(f[0], "#");
            assert!(f[1].starts_with("0x"));
            assert!(f[2].contains("+0x"), "{l}");
            assert!(f[3].contains(':'), "{l}");
            if f[2].starts_with("gort_runtime::chan::Receiver<T>::recv+") && at.starts_with("3 @") {
                saw_recv = true;
            }
        }
    }
    assert_eq!(sum, total);
    assert!(saw_recv, "{text}");
    // pprof reads Go's legacy text format too.
    if have_go() {
        let f = tmpdir("text1").join("goroutine.txt");
        std::fs::write(&f, &text).unwrap();
        let raw = pprof(&["-raw", f.to_str().unwrap()]);
        assert!(raw.contains("goroutine"), "{raw}");
    }
}

#[test]
fn debug2_text_has_go_shape() {
    let _t = turn();
    let (tx, rx) = chan::chan::<i32>(0);
    let text = run(move || {
        http_pprof_goroutine(&rx, 2);
        wait_count("chan receive", 2);
        String::from_utf8(write("goroutine", 2)).unwrap()
    });
    drop(tx);
    eprintln!("{text}");
    let blocks: Vec<&str> = text.split("\n\n").collect();
    // The caller first, running.
    assert!(blocks[0].starts_with("goroutine ") && blocks[0].lines().next().unwrap().ends_with("[running]:"));
    let recv: Vec<&&str> = blocks.iter().filter(|b| b.contains("[chan receive]:")).collect();
    assert!(recv.len() >= 2, "{text}");
    for b in recv {
        let ls: Vec<&str> = b.lines().collect();
        assert!(ls[0].starts_with("goroutine ") && ls[0].ends_with(" [chan receive]:"), "{b}");
        assert!(ls[1].starts_with("gort_runtime::chan::Receiver<T>::recv(...)"), "{b}");
        assert!(ls[2].starts_with('\t') && ls[2].contains(".rs:") && ls[2].contains(" +0x"), "{b}");
        assert!(b.contains("http_pprof_goroutine::{{closure}}(...)\n\t"), "{b}");
        let created = ls.iter().position(|l| l.starts_with("created by ")).expect("created by");
        assert!(ls[created].starts_with("created by prof_goroutine::http_pprof_goroutine in goroutine "), "{b}");
        assert!(ls[created + 1].starts_with('\t') && ls[created + 1].contains("prof_goroutine.rs:"), "{b}");
        assert!(ls[created + 1].contains(" +0x"), "Go's `file:line +0xoff`: {b}");
    }
}

/// A goroutine whose body is a plain function (no closure to take the creator's name from):
/// `created by` still names the function that spawned it, from the spawn's return address.
#[test]
fn created_by_names_the_spawner_of_a_fn_item() {
    let _t = turn();
    static RX: std::sync::Mutex<Option<chan::Receiver<()>>> = std::sync::Mutex::new(None);
    fn parked_worker() {
        let rx = RX.lock().unwrap().take().unwrap();
        let _ = rx.recv();
    }
    // Work after the spawn keeps it from being a tail call (a tail-called spawn leaves no frame
    // of its caller to find, with frame pointers as without).
    #[inline(never)]
    fn spawn_the_worker() -> gort::JoinHandle<()> {
        let h = go!(parked_worker);
        std::hint::black_box(&h);
        h
    }
    let (tx, rx) = chan::chan::<()>(0);
    *RX.lock().unwrap() = Some(rx);
    let (text, id) = run(move || {
        let h = spawn_the_worker();
        wait_count("chan receive", 1);
        let text = String::from_utf8(write("goroutine", 2)).unwrap();
        drop(tx);
        let id = h.id();
        h.join().unwrap();
        (text, id)
    });
    let block = text.split("\n\n").find(|b| b.starts_with(&format!("goroutine {id} "))).expect("the worker");
    assert!(block.contains("parked_worker(...)"), "{block}");
    assert!(
        block.contains(
            "\ncreated by prof_goroutine::created_by_names_the_spawner_of_a_fn_item::spawn_the_worker in goroutine "
        ),
        "{block}"
    );
}

/// End to end: a goroutine blocked (by the clock) over a minute shows `, 1 minutes` in the
/// debug=2 dump and its wait time in `goroutines()`.
#[test]
fn long_wait_shows_minutes_end_to_end() {
    let _t = turn();
    let (text, id) = run(|| {
        let (tx, rx) = chan::chan::<()>(0);
        let h = go!(move || rx.recv());
        let id = h.id();
        wait_count("chan receive", 1);
        let mut found = None;
        gort::runtime::for_each_g(|g| {
            if g.id() == h.id() {
                found = Some(g);
            }
        });
        found.expect("the receiver's G").backdate_wait(61_000_000_000);
        let info = gort::runtime::goroutines().into_iter().find(|g| g.id == h.id()).unwrap();
        assert!(info.waiting_ns >= 61_000_000_000, "{}", info.waiting_ns);
        let text = String::from_utf8(write("goroutine", 2)).unwrap();
        tx.send(()).unwrap();
        h.join().unwrap();
        (text, id)
    });
    assert!(text.contains(&format!("goroutine {id} [chan receive, 1 minutes]:")), "{text}");
}

#[test]
fn long_wait_shows_minutes() {
    // Nobody waits a minute in a test: the dump is rendered from a snapshot whose wait time is
    // set by hand (the runtime measures the real one; `render2` is the formatting step).
    let mut sym = gort::profiler::symbol::Symbolizer::new();
    let g = |id, state: &str, ns| GStack {
        id,
        state: state.into(),
        waiting_ns: ns,
        pcs: Some(Vec::new()),
        truncated: false,
        parent_id: 1,
        created_at: None,
        created_pcs: Default::default(),
        current: false,
        entry_name: None,
        labels: None,
    };
    let text = render2(
        &mut sym,
        &[g(7, "chan receive", 61_000_000_000), g(8, "sleep", 59_000_000_000), g(9, "select", 150_000_000_000)],
    );
    assert!(text.contains("goroutine 7 [chan receive, 1 minutes]:"), "{text}");
    assert!(text.contains("goroutine 8 [sleep]:"), "{text}");
    assert!(text.contains("goroutine 9 [select, 2 minutes]:"), "{text}");
}

#[test]
fn raw_parses_goroutine_and_threadcreate() {
    let _t = turn();
    let (g, t) = run(|| (write("goroutine", 0), write("threadcreate", 0)));
    let pg = decode_valid(&g);
    assert_eq!(pg.str(pg.sample_type[0].r#type), "goroutine");
    assert_eq!(pg.str(pg.sample_type[0].unit), "count");
    assert!(pg.mapping[0].has_functions && pg.mapping[0].has_filenames && pg.mapping[0].has_line_numbers);
    assert!(pg.mapping[0].has_inline_frames);
    assert_ne!(pg.str(pg.mapping[0].build_id), "");
    let pt = decode_valid(&t);
    assert_eq!(pt.str(pt.sample_type[0].r#type), "threadcreate");
    assert!(pt.sample.iter().map(|s| s.value[0]).sum::<i64>() >= 1);
    let text = String::from_utf8(write("threadcreate", 1)).unwrap();
    assert!(text.starts_with("threadcreate profile: total "), "{text}");
    // Real creation stacks (Go's mp.createstack): they run through the runtime's newm.
    assert!(!gort::runtime::threads().is_empty());
    assert!(text.contains("gort_runtime::sched::idle::newm"), "{text}");
    assert!(text.contains("gort_runtime::sched::idle::startm"), "{text}");
    if !have_go() {
        return;
    }
    let dir = tmpdir("raw");
    for (name, data) in [("goroutine", &g), ("threadcreate", &t)] {
        let f = dir.join(format!("{name}.pb.gz"));
        std::fs::write(&f, data).unwrap();
        let raw = pprof(&["-raw", f.to_str().unwrap()]);
        assert!(raw.contains(&format!("PeriodType: {name} count")), "{raw}");
    }
}

#[test]
fn go_written_fixture_decodes() {
    // tests/fixtures/go_goroutine.pb.gz: written by Go 1.19 (tests/fixtures/go_goroutine.go):
    // three goroutines blocked in main.blocked on a channel receive.
    let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go_goroutine.pb.gz")).unwrap();
    let p = decode_valid(&data);
    assert_eq!(p.str(p.sample_type[0].r#type), "goroutine");
    assert_eq!(p.str(p.period_type.as_ref().unwrap().r#type), "goroutine");
    assert_eq!(p.period, 1);
    assert!(p.time_nanos > 0);
    let three = p.sample.iter().find(|s| s.value == [3]).expect("the 3 blocked goroutines");
    let names: Vec<&str> = three.location_id.iter().map(|&id| location_names(&p, id)[0]).collect();
    assert_eq!(names, ["runtime.gopark", "runtime.chanrecv", "runtime.chanrecv1", "main.blocked"]);
    let m = &p.mapping[0];
    assert!(m.has_functions && m.memory_start > 0 && m.memory_limit > m.memory_start);
    // Re-encoding with our messages round-trips.
    let again = Profile::decode_any(&p.encode_gz()).unwrap();
    assert_eq!(again, p);
}

#[test]
fn labels_split_groups_and_are_inherited() {
    let _t = turn();
    let (tx, rx) = chan::chan::<i32>(0);
    let (text, gz, dump) = run(move || {
        use gort::profiler::{labels, with_labels};
        assert!(labels().0.is_empty());
        with_labels(&[("worker", "a")], || {
            assert_eq!(labels().0, [("worker".to_string(), "a".to_string())]);
            http_pprof_goroutine(&rx, 2); // inherited by the spawned goroutines
            with_labels(&[("worker", "b"), ("shard", "1")], || http_pprof_goroutine(&rx, 3));
            assert_eq!(labels().0.len(), 1, "nested labels restored");
        });
        assert!(labels().0.is_empty(), "labels restored");
        http_pprof_goroutine(&rx, 1);
        wait_count("chan receive", 6);
        (
            String::from_utf8(write("goroutine", 1)).unwrap(),
            write("goroutine", 0),
            String::from_utf8(write("goroutine", 2)).unwrap(),
        )
    });
    drop(tx);
    let (text, gz, dump) = (text, gz, dump);
    // The full dump names each goroutine's labels in its header, as Go 1.27 does.
    let headers = |l: &str| {
        dump.lines().filter(|h| h.starts_with("goroutine ") && h.ends_with(&format!(", labels:{l}]:"))).count()
    };
    assert_eq!(headers("{\"worker\":\"a\"}"), 2, "{dump}");
    assert_eq!(headers("{\"shard\":\"1\", \"worker\":\"b\"}"), 3, "{dump}");
    assert!(text.contains("\n3 @ ") && text.contains("# labels: {\"shard\":\"1\", \"worker\":\"b\"}\n"), "{text}");
    assert!(text.contains("\n2 @ ") && text.contains("# labels: {\"worker\":\"a\"}\n"), "{text}");
    let p = decode_valid(&gz);
    let with = |k: &str, v: &str| -> i64 {
        p.sample
            .iter()
            .filter(|s| s.label.iter().any(|l| p.str(l.key) == k && p.str(l.str) == v))
            .map(|s| s.value[0])
            .sum()
    };
    assert_eq!((with("worker", "a"), with("worker", "b"), with("shard", "1")), (2, 3, 3));
    if have_go() {
        let f = tmpdir("labels").join("g.pb.gz");
        std::fs::write(&f, &gz).unwrap();
        let out = pprof(&["-top", "-tagfocus=worker=b", f.to_str().unwrap()]);
        assert!(out.contains("Showing nodes accounting for 3, "), "{out}");
    }
}

/// Spins until `stop`, never parking.
#[inline(never)]
fn running_marker_spin(stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

/// A goroutine that is running on another thread when the profile is taken (it never parks) is
/// walked by its own thread: its stack is in the dump and in the grouped profile, not "stack
/// unavailable".
#[test]
fn running_goroutines_show_their_stacks() {
    let _t = common::take_turn(&TURN);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let h = common::spawn_with(gort::Builder::new(), move || running_marker_spin(&s2)).unwrap();
    let id = h.id();
    common::wait_state(id, "running");
    let dump = String::from_utf8(write("goroutine", 2)).unwrap();
    let block =
        dump.split("\n\n").find(|b| b.starts_with(&format!("goroutine {id} "))).unwrap_or_else(|| panic!("{dump}"));
    let text1 = String::from_utf8(write("goroutine", 1)).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
    assert!(block.contains("running_marker_spin"), "{block}");
    assert!(!block.contains("stack unavailable"), "{block}");
    assert!(text1.contains("running_marker_spin"), "{text1}");
}

// Writing a gzipped profile from a goroutine fits a small stack: gzip's compressor is built on
// a stack of its own. Built in place it needs more than 64 KiB even optimized, and more than a
// default goroutine's 256 KiB unoptimized; the rest of writing a profile fits 64 KiB at
// opt-level 0 and 1.
#[test]
fn a_goroutine_with_a_small_stack_writes_every_profile() {
    let _t = turn();
    gort::start().unwrap();
    let names = ["goroutine", "heap", "allocs", "threadcreate", "hog", "mutex", "block"];
    let h =
        common::spawn_with(gort::Builder::new().stack_size(64 << 10), move || names.map(|n| (n, write(n, 0)))).unwrap();
    for (name, gz) in h.join().unwrap() {
        let p = decode_valid(&gz);
        assert!(!p.sample_type.is_empty(), "{name}: no sample types");
    }
}

/// Spins a moment between yields until `stop`: a goroutine that is switching much of the time.
#[inline(never)]
fn switchy_loop(stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut x: u64 = 0x1f83_d9ab_fb41_bd6b;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for _ in 0..100 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        gort::runtime::yield_now();
    }
    x
}

const SWITCHY_DUMPS: usize = 200;

// A dump stops nothing: a goroutine switching between running and switched out can be running
// when the first pass holds the parked ones and switched out when the second asks the running
// ones. It is looked for again, so nearly every dump shows it.
#[test]
fn a_dump_shows_a_goroutine_that_keeps_switching() {
    let _t = turn();
    gort::start().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = common::spawn_with(gort::Builder::new(), move || switchy_loop(&s)).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let missing = dumps_without("switchy_loop", SWITCHY_DUMPS, Duration::from_micros(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
    assert!(missing * 50 <= SWITCHY_DUMPS, "{missing} of {SWITCHY_DUMPS} dumps left the goroutine's stack out");
}

// A dump walks every goroutine on the P of the goroutine that asked for it. At one P, others of
// that P get to run during the walk: it yields between batches once per millisecond of walking,
// where it used to keep the P until sysmon took it (after 10 ms). A goroutine that counts and
// yields runs about once per yield (a few to a few hundred times over a walk of 20k goroutines,
// whatever the build); without the yields, not at all (a walk under 10 ms). A dump during which
// sysmon took the P anyway (the OS kept the walking thread off its CPU that long; the counter
// then runs freely on the P's new thread) says nothing, and is taken again.
#[test]
fn a_dump_at_one_p_lets_the_ps_other_goroutines_run() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const NAME: &str = "a_dump_at_one_p_lets_the_ps_other_goroutines_run";
    if !common::in_child() {
        let _t = turn();
        common::run_child_ok(NAME, &[("GOMAXPROCS", "1")]);
        return;
    }
    let (runs, profile) = run(|| {
        let (tx, rx) = chan::chan::<()>(0);
        for _ in 0..20_000 {
            let rx = rx.clone();
            go!(move || {
                let _ = rx.recv();
            });
        }
        gort::time::sleep(Duration::from_millis(20));
        let (ran, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (r, s) = (ran.clone(), stop.clone());
        let counter = go!(move || {
            while !s.load(Ordering::Relaxed) {
                r.fetch_add(1, Ordering::Relaxed);
                gort::runtime::yield_now();
            }
        });
        // The first profile loads the symbols, which takes long enough for sysmon to take the P.
        let mut p = write("goroutine", 0);
        let mut runs = Vec::new();
        for _ in 0..5 {
            gort::runtime::yield_now();
            let (before, retakes) = (ran.load(Ordering::Relaxed), gort::runtime::hog::retakes());
            p = write("goroutine", 0);
            let during = ran.load(Ordering::Relaxed) - before;
            runs.push((during, gort::runtime::hog::retakes() != retakes));
        }
        stop.store(true, Ordering::Relaxed);
        counter.join().unwrap();
        drop(tx);
        (runs, p)
    });
    let p = decode_valid(&profile);
    let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert!(total >= 20_000, "the profile counted {total} goroutines");
    let clean: Vec<u64> = runs.iter().filter(|r| !r.1).map(|r| r.0).collect();
    assert!(!clean.is_empty(), "sysmon took the P during every dump: {runs:?}");
    assert!(
        clean.iter().all(|n| (1..=5_000).contains(n)),
        "times the counting goroutine ran during each dump (and whether sysmon took the P): {runs:?}"
    );
}
