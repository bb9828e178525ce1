//! Deadlock detection, run without libtest's harness (`harness = false`): libtest keeps its own
//! threads blocked outside the runtime, and gort rightly refuses to call a deadlock while
//! threads it does not know of might still wake a goroutine. Each scenario runs as `main` of a
//! child process, as in a real program.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{go, run};

const SCENARIO_ENV: &str = "GORT_DEADLOCK_SCENARIO";

fn main() {
    if let Ok(name) = std::env::var(SCENARIO_ENV) {
        scenario(&name);
        return;
    }
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let tests: &[(&str, fn())] = &[
        ("deadlock_is_detected_and_listed", deadlock_is_detected_and_listed),
        ("waits_that_will_end_are_not_deadlocks", waits_that_will_end_are_not_deadlocks),
        ("unknown_thread_defers_then_reports", unknown_thread_defers_then_reports),
        ("detection_can_be_turned_off", detection_can_be_turned_off),
        ("reported_waiter_is_not_woken_again", reported_waiter_is_not_woken_again),
        ("dropped_waker_is_a_deadlock", dropped_waker_is_a_deadlock),
    ];
    let mut n = 0;
    for (name, f) in tests {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            continue;
        }
        f();
        println!("test {name} ... ok");
        n += 1;
    }
    println!("test result: ok. {n} passed");
}

fn child(name: &str, env: &[(&str, &str)]) -> (Output, String, String) {
    let mut cmd = common::child_command();
    cmd.env(SCENARIO_ENV, name);
    cmd.envs(env.iter().copied());
    // A watchdog: a scenario that hangs is a failure, not a stuck CI run.
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        for _ in 0..600 {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return false;
            }
        }
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        true
    });
    let _ = &mut child;
    let out = child.wait_with_output().unwrap();
    assert!(!killer.join().unwrap(), "scenario {name} hung (killed after 60 s)");
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    (out, o, e)
}

fn scenario(name: &str) {
    match name {
        "deadlock" => {
            run(|| {
                let (_tx, rx) = gort::chan::chan::<u32>(0);
                let rx2 = rx.clone();
                let _h = common::spawn_with(gort::Builder::new().name("stuck"), move || rx2.recv()).unwrap();
                gort::time::sleep(Duration::from_millis(20));
                rx.recv(); // nobody will ever send
            });
            println!("unreachable: run returned");
        }
        "will_end" => {
            run(|| {
                // A pending timer will deliver.
                let (tx, rx) = gort::chan::chan::<u32>(1);
                let _t = common::after_func(Duration::from_millis(30), move || {
                    let _ = tx.try_send(1);
                });
                assert_eq!(rx.recv(), Some(1));
                // A goroutine in a blocking call will come back and send.
                let (tx, rx) = gort::chan::chan::<u32>(0);
                go!(move || {
                    gort::blocking(|| std::thread::sleep(Duration::from_millis(50)));
                    tx.send(2).unwrap();
                });
                assert_eq!(rx.recv(), Some(2));
                // A plain thread the runtime has never seen will send once it wakes up.
                let (tx, rx) = gort::chan::chan::<u32>(0);
                let t = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    tx.send(3).unwrap();
                });
                assert_eq!(rx.recv(), Some(3));
                t.join().unwrap();
            });
            println!("all waits ended");
        }
        "unknown_thread" => {
            // A thread that might have woken us exits without doing so: the deadlock is
            // reported once it is gone (sysmon re-checks).
            let t = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
            run(move || {
                let (_tx, rx) = gort::chan::chan::<u32>(0);
                let _keep = t;
                rx.recv();
            });
            println!("unreachable: run returned");
        }
        "woken_again" => {
            // The first run deadlocks; its report reaches this thread, which catches it. The
            // main goroutine stays parked on `rx1`.
            let (tx1, rx1) = gort::chan::chan::<u32>(0);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                run(move || {
                    rx1.recv();
                })
            }));
            let report = r.expect_err("the first run deadlocks");
            let report = report.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(report.contains("deadlock"), "{report}");
            // Later that main goroutine is released and finishes: its join slot completes. The
            // thread must not be readied by it: the deadlock report already woke it, and it is
            // now parked on something else.
            let (tx2, rx2) = gort::chan::chan::<u32>(0);
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                tx1.send(1).unwrap();
                std::thread::sleep(Duration::from_millis(200));
                tx2.send(2).unwrap();
            });
            let t0 = std::time::Instant::now();
            let got = rx2.recv();
            let waited = t0.elapsed();
            assert_eq!(got, Some(2), "woken after {waited:?}");
            assert!(waited >= Duration::from_millis(250), "woken early, after {waited:?}");
            t.join().unwrap();
            println!("not woken again");
        }
        "dropped_waker" => {
            // The bare `block_on`: `gort::block_on` would start the Tokio bridge (the tests build
            // the crate with its `tokio` feature), whose threads, unknown to the runtime, might
            // wake someone, so no deadlock would be called.
            run(|| {
                // Pending with the waker dropped, not kept: nothing can ever wake the goroutine.
                let stuck = go!(|| gort::runtime::block_on(std::future::poll_fn(|cx| {
                    drop(cx.waker().clone());
                    std::task::Poll::<()>::Pending
                })));
                gort::runtime::block_on(std::future::pending::<()>());
                drop(stuck);
            });
            println!("unreachable: run returned");
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn deadlock_is_detected_and_listed() {
    let (out, o, e) = child("deadlock", &[]);
    assert!(!out.status.success(), "the deadlock went unnoticed:\n{e}");
    assert!(e.contains("fatal error: all goroutines are asleep - deadlock!"), "stderr:\n{e}");
    // Both goroutines are listed, with wait reason, time waited and creation site.
    assert!(e.matches("[chan receive]:").count() >= 2, "stderr:\n{e}");
    assert!(e.contains("waiting for "), "stderr:\n{e}");
    assert!(e.contains("created at ") && e.contains("rt_deadlock.rs"), "stderr:\n{e}");
    assert!(!o.contains("unreachable"));
}

fn waits_that_will_end_are_not_deadlocks() {
    let (out, o, e) = child("will_end", &[]);
    assert!(out.status.success(), "a wait that would end was called a deadlock:\n{e}");
    assert!(o.contains("all waits ended"));
}

fn unknown_thread_defers_then_reports() {
    let (out, o, e) = child("unknown_thread", &[]);
    assert!(!out.status.success());
    assert!(e.contains("fatal error: all goroutines are asleep - deadlock!"), "stderr:\n{e}");
    assert!(!o.contains("unreachable"));
}

/// A `run` woken by a deadlock report leaves nothing behind that could wake its thread later,
/// when the stuck main goroutine finishes after all.
fn reported_waiter_is_not_woken_again() {
    let (out, o, e) = child("woken_again", &[]);
    assert!(out.status.success(), "stdout:\n{o}\nstderr:\n{e}");
    assert!(o.contains("not woken again"), "stdout:\n{o}\nstderr:\n{e}");
}

/// Goroutines parked in `block_on` on futures whose wakers are gone are deadlocked, listed
/// with the wait reason `future`.
fn dropped_waker_is_a_deadlock() {
    let (out, o, e) = child("dropped_waker", &[]);
    assert!(!out.status.success(), "the deadlock went unnoticed:\n{e}");
    assert!(e.contains("fatal error: all goroutines are asleep - deadlock!"), "stderr:\n{e}");
    assert!(e.matches("[future]:").count() >= 2, "stderr:\n{e}");
    assert!(!o.contains("unreachable"));
}

fn detection_can_be_turned_off() {
    // With GORT_DEADLOCK=0 the same program just hangs: the watchdog kill proves it waited.
    let mut cmd = common::child_command();
    cmd.env(SCENARIO_ENV, "deadlock").env("GORT_DEADLOCK", "0");
    let mut c = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.try_wait().unwrap().is_none(), "the process exited although detection was off");
    c.kill().unwrap();
    c.wait().unwrap();
}
