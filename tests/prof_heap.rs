//! The heap and allocs profiles, with the sampling allocator installed as this test binary's
//! global allocator: the heap demo (`examples/heap.rs`) read back through `go tool pprof -top
//! -sample_index=inuse_space`, the four sample types, `allocs`' default, Go's debug=1 text.
//!
//! One test function: the demo's allocations are process-wide state the checks share.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::prof::*;
use common::{go, run};

#[global_allocator]
static ALLOC: gort::profiler::Allocator = gort::profiler::Allocator::system();

const MIB: usize = 1 << 20;

// The demo's globals: kept alive, as Go's gMap, gSlice1, gSlice2.
static G_MAP: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
static G_SLICE1: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static G_SLICE2: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn new_map_in_heap() {
    let mut m = HashMap::new();
    for i in 0..999_999 {
        m.insert(format!("KeyID{i}"), format!("value{i}"));
    }
    *G_MAP.lock().unwrap() = Some(m);
}

fn new_slice_in_heap1() {
    *G_SLICE1.lock().unwrap() = vec![0u8; 12 * MIB];
    new_slice_in_heap2();
}

fn new_slice_in_heap2() {
    *G_SLICE2.lock().unwrap() = vec![0u8; 24 * MIB];
}

/// Spawns `n` goroutines that stay parked until `gate` closes (each needs its own descriptor).
#[inline(never)]
fn spawn_parked(n: usize, gate: &gort::chan::Receiver<()>, handles: &mut Vec<gort::JoinHandle<()>>) {
    for _ in 0..n {
        let rx = gate.clone();
        handles.push(go!(move || {
            rx.recv();
        }));
    }
}

/// Memory the runtime holds for goroutines (their descriptors) shows under the runtime's own
/// frame, as Go's shows under `runtime.malg`, not as the spawning function's allocation.
fn runtime_memory_is_the_runtimes() {
    const N: usize = 10_000;
    gort::profiler::set_mem_profile_rate(4096);
    let mut handles = Vec::with_capacity(N);
    run(move || {
        let (tx, rx) = gort::chan::chan::<()>(0);
        spawn_parked(N, &rx, &mut handles);
        let p = decode_valid(&write("heap", 0));
        drop(tx);
        for h in handles {
            h.join().unwrap();
        }
        let descriptors = leaf_sum(&p, "gort_runtime::g::alloc_g", 3);
        assert!(descriptors > 0, "no goroutine descriptors under gort_runtime::g::alloc_g");
        assert_eq!(leaf_sum(&p, "spawn_parked", 3), 0, "runtime memory charged to the spawner");
    });
    gort::profiler::set_mem_profile_rate(gort::profiler::DEFAULT_MEM_PROFILE_RATE);
}

#[test]
fn heap_demo() {
    assert_eq!(gort::profiler::mem_profile_rate(), 512 * 1024);
    run(|| {
        let (tx, rx) = gort::chan::chan::<()>(0);
        let t2 = tx.clone();
        go!(move || {
            new_map_in_heap();
            t2.send(()).unwrap();
        });
        go!(move || {
            new_slice_in_heap1();
            tx.send(()).unwrap();
        });
        rx.recv();
        rx.recv();
    });
    let heap = write("heap", 0);
    let p = decode_valid(&heap);
    let types: Vec<(&str, &str)> = p.sample_type.iter().map(|t| (p.str(t.r#type), p.str(t.unit))).collect();
    assert_eq!(
        types,
        [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")]
    );
    let pt = p.period_type.as_ref().unwrap();
    assert_eq!((p.str(pt.r#type), p.str(pt.unit), p.period), ("space", "bytes", 512 * 1024));
    assert_eq!(p.default_sample_type, 0, "heap leaves the default (pprof shows inuse_space)");
    // Every sample carries its object size as the numeric label `bytes`.
    assert!(p.sample.iter().all(|s| s.label.len() == 1 && p.str(s.label[0].key) == "bytes" && s.label[0].num > 0));
    // The 24 MiB slice is always sampled and reported exactly.
    assert_eq!(leaf_sum(&p, "new_slice_in_heap2", 3), 24 * MIB as i64);
    assert_eq!(leaf_sum(&p, "new_slice_in_heap1", 3), 12 * MIB as i64);
    let map = leaf_sum(&p, "new_map_in_heap", 3);
    assert!(map > 24 * MIB as i64, "map in-use {map}");

    let allocs = decode_valid(&write("allocs", 0));
    assert_eq!(allocs.str(allocs.default_sample_type), "alloc_space");

    // Go's debug=1 text.
    let text = String::from_utf8(write("heap", 1)).unwrap();
    let head = text.lines().next().unwrap();
    assert!(head.starts_with("heap profile: ") && head.ends_with(" @ heap/1048576"), "{head}");
    let big = text.lines().find(|l| l.starts_with("1: 25165824 [1: 25165824] @ 0x")).expect("the 24 MiB record");
    let after: Vec<&str> = text.lines().skip_while(|l| *l != big).skip(1).take_while(|l| l.starts_with('#')).collect();
    assert!(after[0].starts_with("#\t0x") && after[0].contains("new_slice_in_heap2+0x"), "{text}");

    runtime_memory_is_the_runtimes();

    if !have_go() {
        return;
    }
    let dir = tmpdir("heap");
    let (fh, fa) = (dir.join("heap.pb.gz"), dir.join("allocs.pb.gz"));
    std::fs::write(&fh, &heap).unwrap();
    std::fs::write(&fa, write("allocs", 0)).unwrap();
    let out = pprof(&["-top", "-sample_index=inuse_space", fh.to_str().unwrap()]);
    let rows = top_rows(&out);
    let two = row(&rows, "new_slice_in_heap2");
    assert!((two.flat / (24 * MIB) as f64 - 1.0).abs() < 0.01, "{out}");
    let one = row(&rows, "new_slice_in_heap1");
    assert!((one.flat / (12 * MIB) as f64 - 1.0).abs() < 0.01, "{out}");
    assert!((one.cum / (36 * MIB) as f64 - 1.0).abs() < 0.01, "{out}");
    let largest = rows.iter().max_by(|a, b| a.flat.total_cmp(&b.flat)).unwrap();
    assert!(largest.name.contains("new_map_in_heap"), "{out}");
    for f in [&fh, &fa] {
        let raw = pprof(&["-raw", f.to_str().unwrap()]);
        assert!(raw.contains("prof_heap::new_slice_in_heap2"), "{raw}");
    }
    let out = pprof(&["-top", fa.to_str().unwrap()]);
    assert!(out.contains("Type: alloc_space"), "{out}");
    // pprof also reads Go's legacy debug=1 text (it unsamples with the `@ heap/N` rate).
    let ft = dir.join("heap.txt");
    std::fs::write(&ft, &text).unwrap();
    let raw = pprof(&["-raw", ft.to_str().unwrap()]);
    assert!(raw.contains("25165824"), "{raw}");
}
