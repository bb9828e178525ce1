//! The sampling allocator under stress: exact in-use accounting at rate 1 through dealloc and
//! realloc, rate 0 = off, `GORT_MEMPROFILERATE`, and no deadlock when sampled allocations race
//! profile writers, fork, and panics.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::prof::{decode_valid, leaf_sum, write};
use common::{in_child, run_child_ok, take_turn};
use gort::profiler::proto::Profile;

#[global_allocator]
static ALLOC: gort::profiler::Allocator = gort::profiler::Allocator::system();

/// Serializes the tests of this file: the rate is process-wide.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// (inuse_objects, inuse_space, alloc_objects) summed over samples with `leaf` as leaf function.
fn leaf_values(p: &Profile, leaf: &str) -> (i64, i64, i64) {
    (leaf_sum(p, leaf, 2), leaf_sum(p, leaf, 3), leaf_sum(p, leaf, 0))
}

/// One allocation per box and nothing else: `boxes` has room for them (a `collect` here would
/// allocate the Vec in this function too when nothing inlines it).
#[inline(never)]
#[allow(clippy::vec_box)] // one allocation per element is the point
fn alloc_marked_boxes(boxes: &mut Vec<Box<[u8; 1000]>>, n: usize) {
    assert!(boxes.capacity() - boxes.len() >= n);
    for _ in 0..n {
        boxes.push(Box::new([7u8; 1000]));
    }
}

#[inline(never)]
fn grow_marked_vec() -> Vec<u64> {
    let mut v: Vec<u64> = Vec::with_capacity(1);
    for i in 0..5000 {
        v.push(i); // reallocs through the doubling sizes
    }
    v
}

#[test]
fn rate_one_counts_inuse_exactly_through_free_and_realloc() {
    let _t = take_turn(&TURN);
    let old = gort::profiler::mem_profile_rate();
    gort::profiler::set_mem_profile_rate(1);
    let mut boxes = Vec::with_capacity(100);
    alloc_marked_boxes(&mut boxes, 100);
    let v = grow_marked_vec();
    let p = decode_valid(&write("heap", 0));
    assert_eq!(leaf_values(&p, "alloc_marked_boxes"), (100, 100_000, 100));
    let (in_objs, in_bytes, allocs) = leaf_values(&p, "grow_marked_vec");
    assert_eq!(in_objs, 1, "only the last buffer of the growing Vec is in use");
    assert_eq!(in_bytes, (v.capacity() * 8) as i64);
    assert!(allocs >= 10, "every realloc is an allocation: {allocs}");
    boxes.truncate(40);
    drop(v);
    let p = decode_valid(&write("heap", 0));
    assert_eq!(leaf_values(&p, "alloc_marked_boxes"), (40, 40_000, 100));
    assert_eq!(leaf_values(&p, "grow_marked_vec").0, 0);
    gort::profiler::set_mem_profile_rate(old);
    drop(boxes);
}

#[inline(never)]
#[allow(clippy::vec_box)] // one allocation per element is the point
fn alloc_unsampled() -> Vec<Box<[u8; 333]>> {
    (0..1000).map(|_| Box::new([1u8; 333])).collect()
}

#[test]
fn rate_zero_is_off() {
    let _t = take_turn(&TURN);
    let old = gort::profiler::mem_profile_rate();
    gort::profiler::set_mem_profile_rate(0);
    let v = alloc_unsampled();
    gort::profiler::set_mem_profile_rate(old);
    let p = decode_valid(&write("heap", 0));
    assert_eq!(leaf_values(&p, "alloc_unsampled"), (0, 0, 0));
    drop(v);
}

/// Re-runs test `name` of this binary in a child process with `GORT_MEMPROFILERATE=rate`, checks
/// that it passed and returns its stderr.
fn rate_child(name: &str, rate: &str) -> String {
    common::stderr(&run_child_ok(name, &[("GORT_MEMPROFILERATE", rate)]))
}

#[test]
fn env_sets_the_rate() {
    if in_child() {
        assert_eq!(gort::profiler::mem_profile_rate(), 4096);
        return;
    }
    rate_child("env_sets_the_rate", "4096");
}

/// A value that does not parse is reported on stderr, and the default rate is used.
#[test]
fn bad_env_rate_is_reported_and_ignored() {
    if in_child() {
        assert_eq!(gort::profiler::mem_profile_rate(), gort::profiler::DEFAULT_MEM_PROFILE_RATE);
        return;
    }
    let err = rate_child("bad_env_rate_is_reported_and_ignored", "lots");
    assert!(err.contains("gort: ignoring GORT_MEMPROFILERATE=\"lots\": expected a byte count"), "{err}");
}

#[test]
fn no_deadlock_with_writers_fork_and_panics() {
    let _t = take_turn(&TURN);
    let old = gort::profiler::mem_profile_rate();
    gort::profiler::set_mem_profile_rate(1);
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    // Allocators: alloc, realloc, free, at rate 1 (every allocation takes the sampled path).
    for t in 0..3 {
        let stop = stop.clone();
        hs.push(std::thread::spawn(move || {
            let mut keep: Vec<Vec<u8>> = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mut v = vec![t as u8; 16 + i % 200];
                v.extend_from_slice(&[1, 2, 3]);
                keep.push(v);
                if keep.len() > 500 {
                    keep.drain(..250);
                }
                i += 1;
            }
        }));
    }
    // Writers: profiles built while sampled allocations and frees race them.
    for _ in 0..2 {
        let stop = stop.clone();
        hs.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let p = decode_valid(&write("heap", 0));
                assert!(!p.sample.is_empty());
                let _ = write("allocs", 1);
            }
        }));
    }
    // Panics while sampling: the payload and the unwinding allocate and free at rate 1.
    for _ in 0..20 * common::stress() {
        let r = std::thread::spawn(|| {
            let _v = std::hint::black_box(vec![0u8; 100]);
            panic!("boom {}", String::from("sampled"));
        })
        .join();
        assert!(r.is_err());
    }
    // fork while other threads hold (or are about to take) the sampler's lock: the child must
    // be able to allocate.
    for _ in 0..20 * common::stress() {
        // SAFETY: the child only allocates, frees and calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let v: Vec<Box<u64>> = (0..1000).map(Box::new).collect();
            drop(v);
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    gort::profiler::set_mem_profile_rate(old);
}
