//! The heap profile keeps its records off the user's heap: at rate 1, thousands of samples at
//! new sites (each a new record, growing every table) make exactly one call each to the wrapped
//! allocator, the user's own. A record allocated from the global allocator would sit between the
//! user's blocks and change how the heap is trimmed and grown.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the calls that reach it from a thread that armed it.
struct Counting;

static CALLS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if ARMED.try_with(|a| a.get()).unwrap_or(false) {
        CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to System unchanged; the counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: gort::profiler::Allocator<Counting> = gort::profiler::Allocator::new(Counting);

/// Runs `f` with this thread's calls into `Counting` counted; returns the count. Not inlined, so
/// `ARMED`'s address is computed here (the test runs on one plain thread anyway).
#[inline(never)]
fn counted(f: impl FnOnce()) -> usize {
    let before = CALLS.load(Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    CALLS.load(Ordering::Relaxed) - before
}

#[inline(never)]
fn alloc_sized(n: usize, out: &mut Vec<Vec<u8>>) {
    // `out` has room: only the new vectors allocate.
    for i in 0..n {
        out.push(Vec::with_capacity(5000 + i));
    }
}

#[test]
fn samples_take_nothing_from_the_global_allocator() {
    const N: usize = 3000;
    gort::profiler::set_mem_profile_rate(1);
    // The first sample builds the unwinder (its copies of the unwind tables live on the heap).
    drop(std::hint::black_box(vec![0u8; 64]));
    let heap = gort::profiler::lookup("heap").expect("the heap profile");
    let records = heap.count();
    let mut out = Vec::with_capacity(N);
    let calls = counted(|| alloc_sized(N, &mut out));
    let after = heap.count();
    assert_eq!(out.len(), N);
    assert_eq!(calls, N, "{N} sampled allocations made {calls} calls to the wrapped allocator");
    assert!(after >= records + N, "{N} new sizes, one record each: {records} -> {after} records");
    drop(out);
    gort::profiler::set_mem_profile_rate(gort::profiler::DEFAULT_MEM_PROFILE_RATE);
}
