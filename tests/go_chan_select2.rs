//! <https://github.com/golang/go/blob/master/test/chan/select2.go>: a long run of blocking
//! selects must not grow the heap (Go checked that `select` no longer leaked a `sudog` per call).
//! Here it is stricter: a select and the channel operations it waits on allocate nothing at
//! all (wait-queue nodes live on the blocked goroutine's stack), measured with a counting global
//! allocator. In its own test binary, because the allocator counts the whole process.
//!
//! Source: golang/go `test/chan/select2.go`, Copyright 2010 The Go Authors, BSD-style license.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use common::{go, run};
use gort::chan::{self, Receiver, Sender};

/// Counts live bytes and allocation calls.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N: usize = 100_000;

fn sender(c: Sender<i32>, n: usize) {
    for _ in 0..n {
        c.send(1).unwrap();
    }
}

fn receiver(c: &Receiver<i32>, dummy: &Receiver<i32>, n: usize) {
    for _ in 0..n {
        gort::select! {
            _ = c.recv() => {},
            _ = dummy.recv() => panic!("dummy"),
        }
    }
}

#[test]
fn main() {
    run(|| {
        let (c_tx, c) = chan::chan::<i32>(0);
        let (_dummy_tx, dummy) = chan::chan::<i32>(0);

        // Warm up (goroutine, stack and run-queue pools).
        let h = go!(sender(c_tx.clone(), N));
        receiver(&c, &dummy, N);
        h.join().unwrap();
        let (live0, calls0) = (LIVE.load(Ordering::Relaxed), CALLS.load(Ordering::Relaxed));

        // Second time: the footprint must not grow (Go allows 110 kB; we allow 64 kB for the
        // goroutine we spawn) and the selects themselves allocate nothing.
        let h = go!(sender(c_tx.clone(), N));
        receiver(&c, &dummy, N);
        h.join().unwrap();
        let (live1, calls1) = (LIVE.load(Ordering::Relaxed), CALLS.load(Ordering::Relaxed));
        assert!(live1 - live0 < 64 * 1024, "heap grew by {} bytes", live1 - live0);
        // A handful of allocations for the spawn and join; nothing per select (100,000 of them).
        assert!(calls1 - calls0 < 1_000, "{} allocations for {N} selects", calls1 - calls0);
    });
}
