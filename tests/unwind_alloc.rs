//! The unwinder allocates nothing once built: walks of the running stack (a goroutine's and a
//! plain thread's) and of parked goroutines, counted by a global allocator that counts only
//! while this thread has armed it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{go, run};
use gort::runtime::traceback;
use gort::runtime::unwind::Walk;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to System unchanged; the counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.try_with(|a| a.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.try_with(|a| a.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Runs `f` with this thread's allocations counted; returns what `f` returned and the count.
///
/// Not inlined: the goroutine that calls it twice yields in between, and may then run on another
/// thread; inlined, the compiler could reuse `ARMED`'s address from the first call, which is the
/// first thread's flag (THE RULE in tests/common/mod.rs). `f` must not block.
#[inline(never)]
fn counted<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.load(Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, ALLOCS.load(Ordering::Relaxed) - before)
}

#[inline(never)]
fn deep(n: usize, buf: &mut [usize]) -> Walk {
    if n == 0 {
        return traceback::capture(0, buf);
    }
    let w = deep(n - 1, buf);
    std::hint::black_box(w)
}

#[test]
fn walks_allocate_nothing() {
    run(|| {
        let mut buf = [0usize; 64];
        // The first walk may build the unwinder (the runtime has done it already).
        let first = deep(8, &mut buf);
        assert!(first.len >= 9, "{first:?}");
        let (lens, n) = counted(|| (0..2000).map(|i| deep(i % 16, &mut buf).len).sum::<usize>());
        assert!(lens > 2000 * 3);
        assert_eq!(n, 0, "walks on a goroutine allocated {n} times");

        // Parked goroutines, walked from here while held still.
        let (tx, rx) = gort::chan::chan::<()>(0);
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let rx = rx.clone();
                go!(move || rx.recv())
            })
            .collect();
        while gort::runtime::goroutines()
            .iter()
            .filter(|g| g.wait_reason == Some(gort::runtime::WaitReason::ChanReceive))
            .count()
            < 16
        {
            gort::runtime::yield_now();
        }
        let mut gs = Vec::new();
        gort::runtime::for_each_g(|g| gs.push(g));
        let mut walked = 0;
        let (deepest, n) = counted(|| {
            let mut deepest = 0;
            for g in &gs {
                if let Some(w) = g.with_parked(|p| p.walk(&mut buf)) {
                    walked += 1;
                    deepest = deepest.max(w.len);
                }
            }
            deepest
        });
        assert!(walked >= 16, "walked {walked}");
        assert!(deepest >= 3, "parked stacks of {deepest} frames");
        assert_eq!(n, 0, "walks of parked goroutines allocated {n} times");
        drop(tx);
        for h in hs {
            h.join().unwrap();
        }
    });

    // A plain thread's own stack.
    std::thread::spawn(|| {
        let mut buf = [0usize; 64];
        deep(2, &mut buf);
        let (_, n) = counted(|| {
            for i in 0..500 {
                deep(i % 8, &mut buf);
            }
        });
        assert_eq!(n, 0, "walks on a plain thread allocated {n} times");
    })
    .join()
    .unwrap();
}
