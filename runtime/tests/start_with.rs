//! Starting the runtime with a configuration built in code (its own test binary: the runtime
//! starts once per process).

use gort_runtime::{Config, StartError};

#[test]
fn start_with_a_config_then_refuses_a_second_start() {
    let mut bad = Config::from_lookup(|_| None).unwrap();
    bad.max_procs = 0;
    let e = gort_runtime::start_with(bad.clone()).unwrap_err();
    assert!(matches!(&e, StartError::Config(c) if c.var == "GOMAXPROCS"), "{e}");
    bad.max_procs = 2;
    bad.stack_size = 1024;
    let e = gort_runtime::start_with(bad).unwrap_err();
    assert!(matches!(&e, StartError::Config(c) if c.var == "GORT_STACK_SIZE"), "{e}");

    let mut cfg = Config::from_lookup(|_| None).unwrap();
    cfg.max_procs = 3;
    cfg.stack_size = 64 * 1024;
    gort_runtime::start_with(cfg.clone()).unwrap();
    assert_eq!(gort_runtime::gomaxprocs(), 3);
    assert_eq!(gort_runtime::start_with(cfg), Err(StartError::AlreadyStarted));
    // `start` (from the environment) is a no-op once the runtime runs.
    gort_runtime::start().unwrap();
    assert_eq!(gort_runtime::gomaxprocs(), 3);
    // SAFETY: the goroutine computes and touches no thread-local.
    let v = unsafe { gort_runtime::run(|| 6 * 7) };
    assert_eq!(v, 42);
}
