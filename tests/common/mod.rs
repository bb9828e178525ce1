//! Helpers shared by the integration tests: child processes and a watchdog.
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
