//! Profile events recorded on the goroutine that causes them, deep in its stack: the walk of the
//! goroutine's own stack, and the profile's bookkeeping after it, run on its M's spare stack, so
//! a sampled allocation or a block event with only a few KiB of stack left is recorded, with its
//! stack, instead of overflowing the goroutine's stack because profiling is on. Each scenario
//! runs in a child process, where an overflow aborts.

mod common;

use common::prof::{decode_valid, leaf_sum, stack_sum, write};
use common::{go, in_child, run, run_child_ok};

#[global_allocator]
static ALLOC: gort::profiler::Allocator = gort::profiler::Allocator::system();

/// Stack left below the frame where the event happens: enough for what stays on the goroutine
/// (the allocator's or the channel's frames up to the switch to the spare stack) at any
/// opt-level, too little for the unwinder's walk even at the test profile's.
const FREE: usize = 5 * 1024;

/// A goroutine stack small enough that the recursion down to [`FREE`] is short.
const STACK: usize = 64 * 1024;

/// Recurses until at most `free` bytes of the goroutine's stack are left below this frame, then
/// runs `f` there.
#[inline(never)]
fn with_stack_left(free: usize, f: &mut dyn FnMut()) {
    let pad = [0u8; 256];
    let here = std::hint::black_box(&pad).as_ptr() as usize;
    if here - gort::runtime::current_stack_bounds().0 > free {
        with_stack_left(free, f);
    } else {
        f();
    }
    std::hint::black_box(&pad);
}

/// Allocations kept by the deep goroutine: one box each, sampled at rate 1.
const BOXES: usize = 8;

#[inline(never)]
#[allow(clippy::vec_box)] // one allocation per element is the point
fn alloc_deep(boxes: &mut Vec<Box<[u8; 100]>>) {
    for _ in 0..BOXES {
        boxes.push(Box::new([7u8; 100]));
    }
}

/// Every allocation sampled (`GORT_MEMPROFILERATE=1`), eight of them with 5 KiB of a 64 KiB
/// stack left: all eight are in the heap profile, leaf `alloc_deep`.
#[test]
fn sampled_allocation_with_little_stack_left() {
    if in_child() {
        let n = run(|| {
            let b = gort::Builder::new().name("deep").stack_size(STACK);
            let h = common::spawn_with(b, || {
                let mut boxes = Vec::with_capacity(BOXES);
                with_stack_left(FREE, &mut || alloc_deep(&mut boxes));
                boxes
            })
            .unwrap();
            let boxes = h.join().unwrap();
            let p = decode_valid(&write("heap", 0));
            let n = leaf_sum(&p, "alloc_deep", 2);
            drop(boxes);
            n
        });
        assert_eq!(n, BOXES as i64, "in-use objects allocated by alloc_deep");
        println!("deep samples: {n}");
        return;
    }
    let out = run_child_ok("sampled_allocation_with_little_stack_left", &[("GORT_MEMPROFILERATE", "1")]);
    assert!(common::stdout(&out).contains("deep samples: 8"), "{}", common::stdout(&out));
}

/// A receiver that blocks on `rx` with little stack left.
#[inline(never)]
fn block_deep(rx: &gort::chan::Receiver<u32>) -> u32 {
    rx.recv().unwrap()
}

/// The block profile at rate 1 records a channel wait made with 5 KiB of a 64 KiB stack left
/// (its event is recorded on the goroutine that waited, as it wakes).
#[test]
fn block_event_with_little_stack_left() {
    if in_child() {
        let n = run(|| {
            gort::profiler::set_block_profile_rate(1);
            let (tx, rx) = gort::chan::chan::<u32>(0);
            let b = gort::Builder::new().name("deep").stack_size(STACK);
            let h = common::spawn_with(b, move || {
                let mut got = 0;
                with_stack_left(FREE, &mut || got = block_deep(&rx));
                got
            })
            .unwrap();
            common::wait_count("chan receive", 1);
            go!(move || tx.send(7).unwrap()).join().unwrap();
            assert_eq!(h.join().unwrap(), 7);
            gort::profiler::set_block_profile_rate(0);
            let p = gort::profiler::lookup("block").unwrap().to_proto();
            stack_sum(&p, "block_deep", 0)
        });
        assert_eq!(n, 1, "block events in block_deep");
        println!("deep block events: {n}");
        return;
    }
    let out = run_child_ok("block_event_with_little_stack_left", &[]);
    assert!(common::stdout(&out).contains("deep block events: 1"), "{}", common::stdout(&out));
}
