//! The loom models of the lock-free protocols (netpoll's poll-descriptor slots, `WaitSlot`,
//! `Parker`/`Unparker`, `block_on`, `Sema`, a P's `runnext` slot, the runtime's lock, a goroutine's hold, a P's way back from user mode), run as part of the normal
//! test suite.
//!
//! They only exist in a build with `--cfg gort_loom` (loom's atomics replace std's in the
//! modelled code, and the rest of each crate is compiled out), so this test builds and runs them
//! with a child cargo: `RUSTFLAGS="--cfg gort_loom" cargo test -p gort-netpoll -p gort-runtime
//! --lib --release loom_models::`, in a target dir of their own next to this build's, since
//! every crate in it is built with that cfg. Run that command directly to run them alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Models per crate: netpoll's `desc/loom_models.rs`; the runtime's in `waitslot.rs`,
/// `parker.rs`, `block_on.rs`, `sync/sema.rs`, `runnext.rs`, `lock.rs`, `g/hold.rs` and `usergate.rs`. A model that silently stops
/// running is a model that checks nothing, so the count is pinned.
const MODELS: [(&str, usize); 2] = [("gort_netpoll", 4), ("gort_runtime", 21)];

#[test]
fn loom_models_pass() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `CARGO_TARGET_TMPDIR` is `<target dir>/tmp` of this build, however the target dir was chosen.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("loom");
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from(env!("CARGO")), PathBuf::from);
    let out = Command::new(&cargo)
        .args(["test", "-p", "gort-netpoll", "-p", "gort-runtime", "--lib", "--release", "--", "loom_models::"])
        .current_dir(repo)
        .stdin(Stdio::null())
        // Flags of the outer build would override RUSTFLAGS (or be replaced by it, and then
        // rebuild everything on each flip); the models need exactly the cfg.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env("RUSTFLAGS", "--cfg gort_loom")
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loom models failed ({}):\n{stdout}\n{stderr}", out.status);

    // libtest prints "Running unittests src/lib.rs (.../deps/<crate>-<hash>)" on stderr, then
    // "test result: ok. N passed; ..." for that binary on stdout, in the same order.
    let crates: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Running unittests "))
        .map(|l| l.rsplit('/').next().unwrap_or(l).split('-').next().unwrap_or(l))
        .collect();
    let passed: Vec<usize> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .map(|l| l.split(' ').next().and_then(|n| n.parse().ok()).expect("a count of passed tests"))
        .collect();
    let ran: Vec<(&str, usize)> = crates.into_iter().zip(passed).collect();
    assert_eq!(ran, MODELS, "models run per crate:\n{stdout}\n{stderr}");
}
