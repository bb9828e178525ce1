//! Panics stop at the goroutine boundary; bad configuration is a clear error. (Deadlocks are in
//! `rt_deadlock.rs`, which runs without libtest's harness threads.)

mod common;

use std::time::Duration;

use common::{go, in_child, run, run_child, stderr, stdout};

/// `join` returns the panic payload; the runtime keeps running after many panics.
#[test]
fn join_returns_the_panic() {
    run(|| {
        let hs: Vec<_> = (0..1000u32)
            .map(|i| {
                go!(move || {
                    if i % 2 == 0 {
                        panic!("goroutine {i} gives up");
                    }
                    i
                })
            })
            .collect();
        let mut ok = 0;
        for (i, h) in hs.into_iter().enumerate() {
            match h.join() {
                Ok(v) => {
                    assert_eq!(v as usize, i);
                    ok += 1;
                }
                Err(e) => assert_eq!(e.downcast_ref::<String>().unwrap(), &format!("goroutine {i} gives up")),
            }
        }
        assert_eq!(ok, 500);
        // Still healthy.
        assert_eq!(go!(|| 5).join().unwrap(), 5);
    });
}

/// A panic in the main goroutine comes out of `run` with its payload; `run` works again after.
#[test]
fn main_panic_propagates_out_of_run() {
    let r = std::panic::catch_unwind(|| run(|| -> u32 { panic!("main goroutine fails") }));
    let e = r.unwrap_err();
    assert_eq!(*e.downcast_ref::<&str>().unwrap(), "main goroutine fails");
    assert_eq!(run(|| 3), 3);
}

/// An unjoined panic is printed with the goroutine's id and name; the program carries on.
#[test]
fn unjoined_panic_is_reported_and_program_continues() {
    if in_child() {
        let id = run(|| {
            let h = common::spawn_with(gort::Builder::new().name("doomed"), || panic!("nobody joins me")).unwrap();
            let id = h.id();
            drop(h);
            gort::time::sleep(Duration::from_millis(50));
            let more: u64 = (0..100u64).map(|i| go!(move || i)).map(|h| h.join().unwrap()).sum();
            assert_eq!(more, 4950);
            id
        });
        println!("still alive after goroutine {id}");
        return;
    }
    let out = run_child("unjoined_panic_is_reported_and_program_continues", &[]);
    let (err, outp) = (stderr(&out), stdout(&out));
    assert!(out.status.success(), "child failed: {:?}\n{err}", out.status);
    let id: u64 = outp
        .lines()
        .find_map(|l| l.split("still alive after goroutine ").nth(1))
        .expect("child printed its line")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(err.contains(&format!("goroutine {id} [\"doomed\"] panicked:")), "stderr:\n{err}");
    assert!(err.contains("nobody joins me"), "stderr:\n{err}");
}

/// Garbage in the environment is a clear error naming the variable and the expected form.
#[test]
fn bad_env_values_are_clear_errors() {
    if in_child() {
        run(|| ());
        println!("unreachable: started");
        return;
    }
    let cases = [
        ("GOMAXPROCS", "lots", "an integer from 1 to 1024"),
        ("GOMAXPROCS", "0", "an integer from 1 to 1024"),
        ("GORT_MAXPROCS", "-3", "an integer from 1 to 1024"),
        ("GORT_STACK_SIZE", "huge", ""),
        ("GORT_GUARDED_STACKS", "many", ""),
        ("GORT_SCHEDTRACE", "often", ""),
        ("GORT_DEADLOCK", "maybe", "0, 1, off or on"),
        ("GORT_SCHEDTIMING", "yes", "0, 1, off or on"),
    ];
    for (var, val, expected) in cases {
        let out = run_child("bad_env_values_are_clear_errors", &[(var, val)]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{var}={val} was accepted");
        assert!(err.contains(&format!("invalid {var}=\"{val}\": expected {expected}")), "{var}={val}: stderr:\n{err}");
        assert!(!stdout(&out).contains("unreachable"));
    }
}
