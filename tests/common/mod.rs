//! Helpers shared by the integration tests: safe spawning, child processes and a watchdog.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The stress knob: `GORT_STRESS=N` multiplies the work of the stress and soak tests (default 1,
/// what CI runs; a bad value is an error, not a silent 1).
pub fn stress() -> usize {
    match std::env::var("GORT_STRESS") {
        Err(_) => 1,
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("GORT_STRESS={v:?}: expected a positive integer"),
        },
    }
}

/// Set in a child process: the test re-run by [`run_child`] takes its child branch.
pub const CHILD_ENV: &str = "GORT_TEST_CHILD";

/// True in a child started by [`run_child`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Re-runs test `name` of the current test binary in a child process with `CHILD_ENV=1` plus
/// `env`, and returns its output. `GOMAXPROCS`/`GORT_*` from the parent are removed first so
/// each child sees exactly the configuration the test asks for.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]).env(CHILD_ENV, "1");
    for (k, _) in std::env::vars() {
        if k == "GOMAXPROCS" || k.starts_with("GORT_") && k != "GORT_STRESS" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Text of a child's stderr, for assertions and failure messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Text of a child's stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Aborts the whole test process if it is still alive after `limit`: a lost wakeup then fails
/// the test with a message instead of hanging CI. Dropping the guard disarms it.
pub struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    pub fn new(what: &'static str, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let step = Duration::from_millis(50);
            let mut waited = Duration::ZERO;
            while waited < limit {
                std::thread::sleep(step);
                waited += step;
                if d.load(Ordering::Relaxed) {
                    return;
                }
            }
            eprintln!("watchdog: {what} did not finish within {limit:?} (lost wakeup or hang)");
            std::process::abort();
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Spawning, for tests
// ---------------------------------------------------------------------------------------------
//
// gort's entry points that run code on a goroutine (`gort::run`, `gort::spawn`, `go!`,
// `Builder::spawn`, `time::after_func`) are `unsafe`: a goroutine may resume on another OS thread
// after any blocking call, and the compiler cannot check that nothing thread-bound is held across
// one (the contract: `gort_runtime::proc`). The tests use them through the wrappers below, whose
// SAFETY comments all rest on one rule, checked for every test crate that includes this module:
//
// THE RULE. The goroutines in these tests hold no thread-bound value across a blocking call, and
// keep no thread-local's address across one. They share state through gort's channels and
// `gort::sync` types, atomics, `Arc`s and other `Send` values. The `std::sync::Mutex` guards they
// take (the park/ready semaphores and slots of rt_park and rt_stack, rt_spawn's logs, prof_heap's
// globals, prof_goroutine's RX) are dropped within the statement or block that takes them, before
// any blocking call; a park's commit closure runs on the M and releases its guard before it
// returns. The guards held across `run` (the TURN and SERIAL locks that serialise tests) are held
// by the test's own plain thread, which never changes threads. The one thread-local a test
// touches on a goroutine (unwind_alloc's ARMED) is set and cleared inside `counted`, a non-inlined
// function whose closure does not block. Output goes through `println!`/`eprintln!`, which lock
// and release stdout/stderr inside std. No test uses `Rc`, `RefCell` or `thread_rng()`.

/// `gort::run`, safe for these tests: runs `f` as a main goroutine and returns its result.
#[track_caller]
#[inline(always)] // gort::run records the spawn site's pc: keep it in the caller
pub fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    // SAFETY: `f` and the goroutines it starts follow THE RULE above.
    unsafe { gort::run(f) }
}

/// `Builder::spawn`, safe for these tests.
#[track_caller]
#[inline(always)] // Builder::spawn records the spawn site's pc: keep it in the caller
pub fn spawn_with<T: Send + 'static>(
    b: gort::Builder,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<gort::JoinHandle<T>> {
    // SAFETY: `f` follows THE RULE above.
    unsafe { b.spawn(f) }
}

/// `gort::time::after_func`, safe for these tests.
pub fn after_func(d: std::time::Duration, f: impl Fn() + Send + Sync + 'static) -> gort::time::RawTimer {
    // SAFETY: `f` follows THE RULE above.
    unsafe { gort::time::after_func(d, f) }
}

/// `gort::go!` (and `gort::spawn`: `go!(f)` spawns the closure or function `f`), safe for these
/// tests. A macro, not a function, so that the spawn happens in the caller's own code (the
/// goroutine's `created by` names the caller). The closure is built outside the `unsafe` block:
/// unsafe operations in its body still need their own.
///
/// `collapse_debuginfo`: the spawn's code carries the `go!` call site's line, as gort's own `go!`
/// (from another crate) does; goroutine dumps print it in `created by`.
#[collapse_debuginfo(yes)]
macro_rules! go {
    ($($f:ident)::+ ( $($arg:expr),* $(,)? )) => {{
        let args = ($($arg,)*);
        let body = move || gort::runtime::proc::Apply::apply($($f)::+, args);
        // SAFETY: the goroutine follows THE RULE (tests/common/mod.rs).
        unsafe { gort::spawn(body) }
    }};
    ($f:expr) => {{
        let body = $f;
        // SAFETY: the goroutine follows THE RULE (tests/common/mod.rs).
        unsafe { gort::spawn(body) }
    }};
}
#[allow(unused_imports)]
pub(crate) use go;
