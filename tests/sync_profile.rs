//! Mutex and block profile hooks (`gort::runtime::mprof`): what is recorded, with which
//! delay, on whose stack; nothing when both are off.
//!
//! The rates are process-wide, so the tests here take turns (one lock) and compare snapshots
//! taken before and after (records are cumulative, as in Go).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{go, run, take_turn, wait_state, PATIENCE};
use gort::chan;
use gort::runtime::mprof::{self, BlockRecord};
use gort::sync::{Mutex, MutexGuard, WaitGroup};

/// Serializes the tests of this file (the profile rates are global).
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long the blocking party is kept waiting.
const DELAY: Duration = Duration::from_millis(50);

/// Records in `after` that are new or grew since `before` (count and delay differences).
fn delta(before: &[BlockRecord], after: &[BlockRecord]) -> Vec<BlockRecord> {
    let old: HashMap<&[usize], (i64, i64)> = before.iter().map(|r| (&r.stack[..], (r.count, r.delay_ns))).collect();
    after
        .iter()
        .filter_map(|r| {
            let (c, d) = old.get(&r.stack[..]).copied().unwrap_or((0, 0));
            (r.count != c).then(|| BlockRecord { stack: r.stack.clone(), count: r.count - c, delay_ns: r.delay_ns - d })
        })
        .collect()
}

/// Whether `stack` holds a return address inside the function `name` (this file's, by its
/// last path segment). Looked up by symbol, not by an address window: a blocking channel
/// operation is inlined into its caller, so how far into the caller the wait's return address
/// lies depends on the build.
fn has_frame_in(stack: &[usize], name: &str) -> bool {
    let want = format!("sync_profile::{name}");
    // `pc - 1`: inside the call instruction (a return address is just past it).
    stack.iter().any(|&pc| gort::profiler::symbolize(pc.wrapping_sub(1)).is_some_and(|f| f == want))
}

/// The one record of `new` with a frame in the function `what`: one event that waited at least
/// [`DELAY`].
fn one_wait_in<'a>(new: &'a [BlockRecord], what: &str) -> &'a BlockRecord {
    let rec = new
        .iter()
        .find(|r| has_frame_in(&r.stack, what))
        .unwrap_or_else(|| panic!("no record with {what} on its stack: {new:?}"));
    assert_eq!(rec.count, 1);
    assert!(rec.delay_ns >= DELAY.as_nanos() as i64, "delay {} ns < {DELAY:?}", rec.delay_ns);
    rec
}

/// Starts a goroutine that locks `m` (held by the caller) in [`lock_here`] and waits until it
/// blocks there.
fn blocked_locker(m: &Arc<Mutex<u32>>) -> gort::JoinHandle<()> {
    let m2 = m.clone();
    let locker = go!(move || lock_here(&m2));
    wait_state(locker.id(), "sync.Mutex.Lock");
    locker
}

#[inline(never)]
fn block_here(rx: &chan::Receiver<u32>) -> Option<u32> {
    let v = rx.recv();
    std::hint::black_box(v)
}

#[inline(never)]
fn lock_here(m: &Mutex<u32>) {
    let g = m.lock();
    std::hint::black_box(&*g);
}

#[inline(never)]
fn unlock_here(g: MutexGuard<'_, u32>) {
    drop(std::hint::black_box(g));
}

/// With `set_block_profile_rate(1)` a blocking receive records one event, on the blocked
/// goroutine's stack, lasting at least as long as the sender made it wait.
#[test]
fn block_profile_records_blocking_receive() {
    let _t = take_turn(&TURN);
    run(|| {
        mprof::set_block_profile_rate(1);
        assert_eq!(mprof::block_profile_rate(), 1);
        let before = mprof::block_profile();
        let (tx, rx) = chan::chan::<u32>(0);
        let h = go!(move || block_here(&rx));
        // Start the clock only once the receiver is blocked: its wait is then >= DELAY.
        wait_state(h.id(), "chan receive");
        gort::time::sleep(DELAY);
        tx.send(1).unwrap();
        assert_eq!(h.join().unwrap(), Some(1));
        mprof::set_block_profile_rate(0);
        let new = delta(&before, &mprof::block_profile());
        let rec = one_wait_in(&new, "block_here");
        assert!(rec.delay_ns < PATIENCE.as_nanos() as i64);
    });
}

/// Blocking selects, WaitGroup waits and contended mutex waits feed the block profile too.
#[test]
fn block_profile_records_select_waitgroup_and_mutex_waits() {
    let _t = take_turn(&TURN);
    run(|| {
        mprof::set_block_profile_rate(1);
        let before = mprof::block_profile();
        let (tx, rx) = chan::chan::<u32>(0);
        let (_idle_tx, idle) = chan::chan::<u32>(0);
        let sel = go!(move || {
            gort::select! {
                v = rx.recv() => v,
                v = idle.recv() => v,
            }
        });
        wait_state(sel.id(), "select");
        let wg = Arc::new(WaitGroup::new());
        wg.add(1);
        let wg2 = wg.clone();
        let waiter = go!(move || wg2.wait());
        wait_state(waiter.id(), "sync.WaitGroup.Wait");
        let m = Arc::new(Mutex::new(0));
        let g = m.lock();
        let locker = blocked_locker(&m);
        gort::time::sleep(DELAY);
        tx.send(1).unwrap();
        wg.done();
        drop(g);
        sel.join().unwrap();
        waiter.join().unwrap();
        locker.join().unwrap();
        mprof::set_block_profile_rate(0);
        let new = delta(&before, &mprof::block_profile());
        let long: Vec<_> = new.iter().filter(|r| r.delay_ns >= DELAY.as_nanos() as i64).collect();
        assert!(long.len() >= 3, "expected select, WaitGroup and Mutex events: {new:?}");
        assert!(long.iter().any(|r| has_frame_in(&r.stack, "lock_here")), "no mutex wait: {new:?}");
    });
}

/// With `set_mutex_profile_fraction(1)` a contended Mutex records the waiter's delay on the
/// stack of the goroutine that unlocked (Go's attribution), not the waiter's.
#[test]
fn mutex_profile_records_contention_on_unlocker_stack() {
    let _t = take_turn(&TURN);
    run(|| {
        assert_eq!(mprof::set_mutex_profile_fraction(1), 0);
        assert_eq!(mprof::set_mutex_profile_fraction(-1), 1, "negative only reads");
        let before = mprof::mutex_profile();
        let m = Arc::new(Mutex::new(0));
        let g = m.lock();
        let locker = blocked_locker(&m);
        gort::time::sleep(DELAY);
        unlock_here(g);
        locker.join().unwrap();
        mprof::set_mutex_profile_fraction(0);
        let new = delta(&before, &mprof::mutex_profile());
        one_wait_in(&new, "unlock_here");
        assert!(!new.iter().any(|r| has_frame_in(&r.stack, "lock_here")), "charged to the waiter");
    });
}

/// A fraction r > 1 samples about 1 in r events and scales what it records by r.
#[test]
fn mutex_profile_fraction_scales() {
    let _t = take_turn(&TURN);
    run(|| {
        mprof::set_mutex_profile_fraction(2);
        let before = mprof::mutex_profile();
        let m = Arc::new(Mutex::new(0));
        for _ in 0..40 {
            let g = m.lock();
            let locker = blocked_locker(&m);
            unlock_here(g);
            locker.join().unwrap();
        }
        mprof::set_mutex_profile_fraction(0);
        let new = delta(&before, &mprof::mutex_profile());
        let count: i64 = new.iter().map(|r| r.count).sum();
        // 40 events sampled at 1/2, each scaled by 2: expected 40; P(count outside 8..=72) is
        // below 1e-6 (binomial(40, 1/2) outside 4..=36).
        assert!(count % 2 == 0 && (8..=72).contains(&count), "count {count}");
    });
}

/// With both profiles off (the default) nothing is recorded.
#[test]
fn nothing_recorded_when_off() {
    let _t = take_turn(&TURN);
    run(|| {
        mprof::set_block_profile_rate(0);
        mprof::set_mutex_profile_fraction(0);
        let (b0, m0) = (mprof::block_profile(), mprof::mutex_profile());
        let (tx, rx) = chan::chan::<u32>(0);
        let h = go!(move || block_here(&rx));
        wait_state(h.id(), "chan receive");
        tx.send(1).unwrap();
        h.join().unwrap();
        let m = Arc::new(Mutex::new(0));
        let g = m.lock();
        let locker = blocked_locker(&m);
        unlock_here(g);
        locker.join().unwrap();
        assert_eq!(delta(&b0, &mprof::block_profile()), []);
        assert_eq!(delta(&m0, &mprof::mutex_profile()), []);
    });
}

/// A rate far above the events' length samples them with probability delay/rate: short blocks
/// (well under a millisecond here, against a rate of 1000 s) are almost never recorded.
#[test]
fn long_rate_skips_short_events() {
    let _t = take_turn(&TURN);
    run(|| {
        mprof::set_block_profile_rate(1_000_000_000_000);
        let before = mprof::block_profile();
        let (tx, rx) = chan::chan::<u32>(0);
        let h = go!(move || while block_here(&rx).is_some() {});
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        drop(tx);
        h.join().unwrap();
        mprof::set_block_profile_rate(0);
        let new = delta(&before, &mprof::block_profile());
        // Each event is kept with probability < 1e-6 (blocks under 1 ms): expect none; any kept
        // one is counted rate/delay times and charged the full rate.
        for r in &new {
            assert!(r.count > 1000 && r.delay_ns == 1_000_000_000_000, "{r:?}");
        }
    });
}
