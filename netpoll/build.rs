//! Declares `cfg(gort_loom)`: the build in which the poll-descriptor protocol runs on loom's
//! model-checked atomics (see `src/loom.rs`).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(gort_loom)");
}
