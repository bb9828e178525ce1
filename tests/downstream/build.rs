//! Records the flags this crate is compiled with, so the test can check which build it got.

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').filter(|f| !f.is_empty()).collect();
    println!("cargo::rustc-env=DOWNSTREAM_RUSTFLAGS={}", flags.join(" "));
}
