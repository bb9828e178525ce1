//! Timer precision on an idle runtime: an M measures how late its timed sleeps wake
//! (`timer_oversleep_ns`), and waits for a timer due sooner than that by spinning instead of
//! sleeping (`timer_spins`). One test per file: another test's goroutines would give the Ms
//! work, and an M with work does not wait for timers at all.

use std::time::Duration;

use common::run;

mod common;

#[test]
fn a_timer_due_sooner_than_a_sleep_would_wake_is_spun_out() {
    run(|| {
        // Idle Ms sleep until these are due; the sleeps that run to their end are measured.
        for _ in 0..20 {
            gort::time::sleep(Duration::from_millis(1));
        }
        let m = gort::runtime::metrics();
        assert!(
            m.timer_oversleep_ns > 0 && m.timer_oversleep_ns <= 50_000,
            "oversleep {} ns after 20 timed sleeps",
            m.timer_oversleep_ns
        );
        // Sleeps due within half the oversleep: the M that finds nothing else to do spins for
        // each (unless preempted past the deadline before it looks, hence a quarter).
        let d = Duration::from_nanos(m.timer_oversleep_ns / 2);
        let before = m.timer_spins;
        for _ in 0..100 {
            gort::time::sleep(d);
        }
        let spins = gort::runtime::metrics().timer_spins - before;
        assert!(spins >= 25, "{spins} of 100 sleeps of {d:?} spun out");
    })
}
