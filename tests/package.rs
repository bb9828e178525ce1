//! The workspace packages as crates.io would take it: every path dependency carries a version
//! and the manifests are complete (`cargo package --workspace --no-verify`; the build from a copy
//! outside the repository, `tests/downstream.rs`, is the verification).

use std::path::Path;
use std::process::Command;

#[test]
fn workspace_packages() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Next to the other build products, so the packaged files stay out of the source tree.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("package");
    let out = Command::new(env!("CARGO"))
        .args(["package", "--workspace", "--no-verify", "--allow-dirty", "--quiet"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(repo)
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo package failed:\n{stderr}");
    for krate in ["gort-netpoll", "gort-runtime", "gort-profiler", "gort"] {
        let name = format!("{krate}-{}.crate", env!("CARGO_PKG_VERSION"));
        assert!(target.join("package").join(&name).exists(), "{name} was not written:\n{stderr}");
    }
}
