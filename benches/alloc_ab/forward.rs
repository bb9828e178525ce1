//! The allocator A/B's control: a wrapper that only forwards to `System` (benches/alloc_ab/work.rs),
//! the least any wrapper costs.
mod work;

use std::alloc::{GlobalAlloc, Layout, System};

struct Forward;

// SAFETY: every method forwards to `System` with the caller's arguments and returns its result.
unsafe impl GlobalAlloc for Forward {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(l) }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc_zeroed(l) }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(p, l) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Forward = Forward;

fn main() {
    work::main()
}
