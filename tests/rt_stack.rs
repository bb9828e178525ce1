//! Goroutine stacks through the public API: overflows die with a clear message (in a child
//! process), and a million goroutines can be alive at once on default system settings.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::sync::Mutex;

use common::{go, in_child, run, run_child, run_child_ok};
use gort::runtime::{GRef, WaitReason};

/// Unbounded recursion with a 1 KiB frame (the branch keeps the compiler from complaining).
#[inline(never)]
fn recurse(n: u64) -> u64 {
    let mut frame = [n; 128];
    std::hint::black_box(&mut frame);
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    recurse(n + 1).wrapping_add(frame[7])
}

/// Child: a named goroutine recursing without bound (on a `stack_size` stack if non-zero).
fn overflow_child(stack_size: usize) -> ! {
    run(move || {
        let mut b = gort::Builder::new().name("deep");
        if stack_size != 0 {
            b = b.stack_size(stack_size);
        }
        let h = common::spawn_with(b, || recurse(0)).unwrap();
        let _ = h.join();
    });
    // Reaching this means the overflow went unnoticed.
    std::process::exit(3)
}

fn assert_overflow_report(out: &Output, size_text: &str) {
    let err = common::stderr(out);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "expected an abort, got {:?}; stderr:\n{err}", out.status);
    assert!(err.contains("fatal error: stack overflow"), "stderr:\n{err}");
    assert!(err.contains("goroutine "), "stderr:\n{err}");
    assert!(err.contains(&format!("overflowed its {size_text} stack")), "stderr:\n{err}");
    assert!(err.contains("[name \"deep\"]"), "stderr:\n{err}");
}

#[test]
fn overflow_on_guarded_stack_is_reported() {
    if in_child() {
        overflow_child(0);
    }
    let out = run_child("overflow_on_guarded_stack_is_reported", &[("GORT_STACK_SIZE", "256k")]);
    assert_overflow_report(&out, "256 KiB");
    let err = common::stderr(&out);
    assert!(err.contains("runtime: goroutine stack exceeds 262144-byte limit"), "stderr:\n{err}");
}

#[test]
fn overflow_on_unguarded_stack_is_reported() {
    if in_child() {
        overflow_child(0);
    }
    // No guards at all: the overflow runs through the unguarded gap (and beyond), and must still
    // end in the report, not in silent corruption or a bare SIGSEGV.
    let out = run_child(
        "overflow_on_unguarded_stack_is_reported",
        &[("GORT_GUARDED_STACKS", "0"), ("GORT_STACK_SIZE", "256k")],
    );
    assert_overflow_report(&out, "256 KiB");
}

#[test]
fn overflow_on_dedicated_stack_is_reported() {
    if in_child() {
        overflow_child(96 * 1024);
    }
    let out = run_child("overflow_on_dedicated_stack_is_reported", &[]);
    assert_overflow_report(&out, "96 KiB");
}

/// Child: a goroutine recursing without bound on its M's spare stack (where stack walks run).
fn spare_overflow_child() -> ! {
    run(|| {
        let h = go!(|| {
            // SAFETY: the recursion never parks (it never returns either: it overflows).
            unsafe { gort::runtime::traceback::on_spare_stack(|| recurse(0)) }
        });
        let _ = h.join();
    });
    std::process::exit(3)
}

/// An overflow of the spare stack is reported as such (not as the goroutine's, whose stack is
/// not the one that overflowed, and not as a bare SIGSEGV).
#[test]
fn overflow_on_the_spare_stack_is_reported() {
    if in_child() {
        spare_overflow_child();
    }
    let out = run_child("overflow_on_the_spare_stack_is_reported", &[]);
    let err = common::stderr(&out);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "expected an abort, got {:?}; stderr:\n{err}", out.status);
    assert!(err.contains("fatal error: stack overflow on the M's spare stack"), "stderr:\n{err}");
    assert!(!err.contains("overflowed its"), "stderr:\n{err}");
}

/// Code on the spare stack sees the spare stack's bounds as its own, not its goroutine's.
#[test]
fn current_stack_bounds_on_the_spare_stack() {
    let (outside, inside, local) = run(|| {
        go!(|| {
            let outside = gort::runtime::current_stack_bounds();
            // SAFETY: the closure never parks.
            let (inside, local) = unsafe {
                gort::runtime::traceback::on_spare_stack(|| {
                    let x = 0u8;
                    (gort::runtime::current_stack_bounds(), std::hint::black_box(&x) as *const u8 as usize)
                })
            };
            (outside, inside, local)
        })
        .join()
        .unwrap()
    });
    assert!(local >= inside.0 && local < inside.1, "{local:#x} not in {inside:x?}");
    assert!(inside.1 <= outside.0 || inside.0 >= outside.1, "{inside:x?} overlaps the goroutine's {outside:x?}");
}

/// A read of an unguarded stack's gap from outside the goroutine (what a debugger or a profiler
/// reading `/proc/PID/mem` does: here `process_vm_readv`) faults in the zero page, which
/// `mincore` reports resident. That is no overflow: the goroutine exits, its stack is checked
/// and reused, and the process goes on (before, it aborted with "stack overflow").
#[test]
fn outside_read_of_a_gap_is_no_overflow() {
    if in_child() {
        run(|| {
            for round in 0..4 {
                let (tx, rx) = gort::chan::chan::<usize>(0);
                let (done_tx, done_rx) = gort::chan::chan::<()>(0);
                let h = go!(move || {
                    tx.send(gort::runtime::current_stack_bounds().0).unwrap();
                    done_rx.recv();
                });
                let lo = rx.recv().unwrap();
                let mut buf = [0u8; 64];
                let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
                let remote = libc::iovec { iov_base: (lo - 64) as *mut libc::c_void, iov_len: 64 };
                // SAFETY: reads our own process's memory into `buf` through the kernel, as a
                // debugger would; the remote range is the parked goroutine's mapped gap.
                let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
                assert_eq!(n, 64, "process_vm_readv: {}", std::io::Error::last_os_error());
                assert!(buf.iter().all(|&b| b == 0));
                drop(done_tx);
                h.join().unwrap();
                // Reuse the stack: its check starts clean again.
                go!(move || round).join().unwrap();
            }
        });
        println!("outside reads: no overflow");
        return;
    }
    let out = run_child_ok(
        "outside_read_of_a_gap_is_no_overflow",
        &[("GORT_GUARDED_STACKS", "0"), ("GORT_STACK_SIZE", "256k"), ("GOMAXPROCS", "1")],
    );
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert!(stdout.contains("outside reads: no overflow"), "{stdout}");
    assert!(!stderr.contains("stack overflow"), "{stderr}");
}

/// Deep but bounded recursion within the stack is fine (and the stack is reused afterwards).
#[test]
fn deep_recursion_within_the_stack_is_fine() {
    #[inline(never)]
    fn depth(n: u64) -> u64 {
        let mut frame = [n; 128];
        std::hint::black_box(&mut frame);
        if n == 0 {
            return 0;
        }
        depth(n - 1).wrapping_add(1) + (frame[0] & std::hint::black_box(0))
    }
    let r = run(|| {
        // ~1 KiB frames: 150 of them fit easily in the default 256 KiB stack.
        let hs: Vec<_> = (0..64).map(|_| go!(|| depth(150))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(r, 64 * 150);
}

/// Goroutines parked by `million_goroutines_alive_at_once`, waiting to be readied.
static PARKED: Mutex<Vec<GRef>> = Mutex::new(Vec::new());

/// One million goroutines alive (parked) at once, on default system settings
/// (`vm.max_map_count` = 65530: one mapping plus a guard per stack would stop at ~32k).
#[test]
fn million_goroutines_alive_at_once() {
    const N: usize = 1_000_000;
    let (peak, sum) = run(|| {
        PARKED.lock().unwrap().reserve(N);
        let mut handles = Vec::with_capacity(N);
        for i in 0..N {
            handles.push(go!(move || {
                // SAFETY: the commit publishes `g` in `PARKED`, which the test drains once,
                // readying each G it takes; the push is its last act. It does not park, and
                // the vector has room reserved.
                unsafe {
                    gort::runtime::park(WaitReason::Semacquire, |g| {
                        PARKED.lock().unwrap().push(g);
                        true
                    })
                };
                i as u64
            }));
        }
        while PARKED.lock().unwrap().len() < N {
            gort::runtime::yield_now();
        }
        let peak = gort::runtime::num_goroutine();
        let parked = std::mem::take(&mut *PARKED.lock().unwrap());
        for g in parked {
            // SAFETY: taken out of `PARKED`, where each goroutine's park published its own G.
            unsafe { gort::runtime::ready(g) };
        }
        let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        (peak, sum)
    });
    assert!(peak >= N, "num_goroutine peaked at {peak}");
    assert_eq!(sum, (N as u64 - 1) * N as u64 / 2);
}

/// Mappings in use (lines of /proc/self/maps).
fn maps_now() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().count()
}

/// Child: goroutines parked on a channel until `Builder::spawn` refuses one (or `limit` run).
/// Prints how many were alive, how many mappings they added, and the refusal.
fn guard_budget_child(limit: usize) {
    let maps0 = maps_now();
    run(move || {
        let (tx, rx) = gort::chan::chan::<()>(0);
        let mut hs = Vec::new();
        let mut refused = None;
        while hs.len() < limit {
            let rx = rx.clone();
            match common::spawn_with(gort::Builder::new(), move || rx.recv()) {
                Ok(h) => hs.push(h),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
            if hs.len() % 64 == 0 {
                gort::runtime::yield_now(); // let them start (and take their stacks)
            }
        }
        common::wait_count("chan receive", hs.len());
        println!("alive {} maps_added {}", hs.len(), maps_now() - maps0);
        if let Some(e) = refused {
            println!("refused: {e}");
            assert_eq!(e.kind(), std::io::ErrorKind::OutOfMemory);
            // spawn panics with the same reason, as std::thread::spawn does.
            let p = std::panic::catch_unwind(|| go!(|| ())).expect_err("spawn past the cap panics");
            let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("vm.max_map_count"), "{msg}");
        }
        drop(tx);
        for h in hs {
            h.join().unwrap();
        }
        // Finished goroutines give their claims back.
        common::spawn_with(gort::Builder::new(), || ()).expect("spawn after the others finished").join().unwrap();
        println!("spawn works again");
    });
}

/// On a kernel without lightweight guards (forced here) every stack is guarded, as many as
/// `vm.max_map_count` (injected: 8000) leaves room for; the next spawn is refused with the
/// sysctl's name, unless GORT_UNGUARDED_STACKS=1 lets it run on an unguarded stack.
#[test]
fn guard_budget_follows_max_map_count() {
    if in_child() {
        let limit = std::env::var("LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
        guard_budget_child(limit);
        return;
    }
    let env = [("GORT_STACK_GUARDS", "mprotect"), ("GORT_MAX_MAP_COUNT", "8000"), ("GORT_STACK_SIZE", "64k")];
    let o = common::stdout(&run_child_ok("guard_budget_follows_max_map_count", &env));
    let nums: Vec<usize> = o
        .lines()
        .find_map(|l| l.split_once("alive ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("{o}"))
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (alive, added) = (nums[0], nums[1]);
    // 8000 - reserve (2048 + 500) - what the process maps already, two mappings per guard.
    assert!((1500..2750).contains(&alive), "{alive} goroutines before the refusal\n{o}");
    assert!(added >= 2 * alive * 9 / 10, "{alive} stacks added only {added} mappings: not all guarded\n{o}");
    assert!(o.contains("refused: ") && o.contains("GORT_UNGUARDED_STACKS"), "{o}");
    assert!(o.contains("spawn works again"), "{o}");

    // Opted in: past the budget goroutines still start, on unguarded stacks.
    let mut env2 = env.to_vec();
    env2.push(("GORT_UNGUARDED_STACKS", "1"));
    env2.push(("LIMIT", "5000"));
    let o = common::stdout(&run_child_ok("guard_budget_follows_max_map_count", &env2));
    assert!(o.contains("alive 5000 ") && !o.contains("refused"), "{o}");
}
