//! Helpers shared by the integration tests: safe spawning, child processes, waiting for a
//! goroutine's state, a watchdog, and (in [`prof`]) reading profiles.
#![allow(dead_code)]

pub mod prof;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// This thread's id (a goroutine runs on its M's thread).
pub fn tid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

/// Longest wait for something that must happen; reaching it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(30);

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

/// [`PATIENCE`] for one result of a stress test, which waits for a whole worker's share of the
/// load: four times as long, and scaled with the load.
pub fn stress_patience() -> Duration {
    PATIENCE * 4 * stress() as u32
}

/// Waits until goroutine `id` shows wait reason `state` in `gort::runtime::goroutines()`; returns its
/// snapshot. Fails the test after [`PATIENCE`].
pub fn wait_state(id: u64, state: &str) -> gort::runtime::GoroutineInfo {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(g) = gort::runtime::goroutines().into_iter().find(|g| g.id == id && g.state == state) {
            return g;
        }
        if Instant::now() >= deadline {
            let now: Vec<_> = gort::runtime::goroutines().into_iter().filter(|g| g.id == id).collect();
            panic!("goroutine {id} never reached {state:?}; now {now:?}");
        }
        gort::time::sleep(Duration::from_millis(1));
    }
}

/// Waits until at least `n` goroutines show wait reason `state`. Fails the test after
/// [`PATIENCE`].
pub fn wait_count(state: &str, n: usize) {
    wait_count_every(state, n, Duration::from_millis(1));
}

/// [`wait_count`], polling every `poll` (short, where the wait must add little to what it
/// measures).
pub fn wait_count_every(state: &str, n: usize, poll: Duration) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let k = gort::runtime::goroutines().iter().filter(|g| g.state == state).count();
        if k >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{k} goroutines in {state:?}, never {n}");
        gort::time::sleep(poll);
    }
}

/// Takes `turn`, the lock that serialises the tests of one file that share process-wide state
/// (profile rates, every P). A test that failed holding it poisons it; the next one still runs.
pub fn take_turn(turn: &'static std::sync::Mutex<()>) -> std::sync::MutexGuard<'static, ()> {
    turn.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set in a child process: the test re-run by [`run_child`] takes its child branch.
pub const CHILD_ENV: &str = "GORT_TEST_CHILD";

/// True in a child started by [`run_child`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// A command that runs the current test binary again, without the parent's `GOMAXPROCS` and
/// `GORT_*` (but `GORT_STRESS`): each child sees exactly the configuration its test asks for.
pub fn child_command() -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    for (k, _) in std::env::vars() {
        if k == "GOMAXPROCS" || k.starts_with("GORT_") && k != "GORT_STRESS" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Re-runs test `name` of the current test binary in a child process ([`child_command`]) with
/// `CHILD_ENV=1` plus `env`, and returns its output.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = child_command();
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]).env(CHILD_ENV, "1");
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

/// [`run_child`], asserting that the child passed (its output is the failure message).
pub fn run_child_ok(name: &str, env: &[(&str, &str)]) -> Output {
    let out = run_child(name, env);
    assert!(out.status.success(), "child {name} failed ({}):\n{}\n{}", out.status, stdout(&out), stderr(&out));
    out
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
// one (the contract: the crate docs of `gort_runtime`). The tests use them through the wrappers below, whose
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
#[allow(unused_macros)] // not every test crate spawns
macro_rules! go {
    ($($f:ident)::+ ( $($arg:expr),* $(,)? )) => {{
        let args = ($($arg,)*);
        let body = move || gort::runtime::internal::Apply::apply($($f)::+, args);
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

/// Echoes what `s` reads back to it until EOF, in reads of at most 64 bytes; returns the bytes
/// echoed. A test server's connection loop.
pub fn echo_until_eof<S: std::io::Read + std::io::Write>(mut s: S) -> usize {
    let mut buf = [0u8; 64];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            return total;
        }
        total += n;
        s.write_all(&buf[..n]).unwrap();
    }
}
