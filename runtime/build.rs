//! Chooses the stack unwinder by what this build is. A frame-pointer walk is right only when
//! every frame of ours keeps its frame pointer, which holds only when the build forces them
//! (`-C force-frame-pointers=yes`). Without that, `rbp` is an ordinary register that often holds
//! a plausible stack address, and a frame-pointer walk would return a believable wrong stack; so
//! every other build unwinds with DWARF CFI (`.eh_frame`).
//!
//! Cargo passes the flags it compiles this crate with in `CARGO_ENCODED_RUSTFLAGS` (0x1f between
//! flags): RUSTFLAGS, `build.rustflags` or `target.*.rustflags` from whichever `.cargo/config.toml`
//! the build started under. A dependency's own config never applies.

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo::rustc-check-cfg=cfg(gort_frame_pointers)");
    // Set by hand (`RUSTFLAGS="--cfg gort_loom"`) for the loom models; see `src/loom.rs`.
    println!("cargo::rustc-check-cfg=cfg(gort_loom)");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if forces_frame_pointers(flags.split('\x1f')) {
        println!("cargo::rustc-cfg=gort_frame_pointers");
    }
}

/// Whether the last `force-frame-pointers` setting among `flags` turns them on (rustc takes the
/// last occurrence of a `-C` option).
fn forces_frame_pointers<'a>(flags: impl Iterator<Item = &'a str>) -> bool {
    let mut on = false;
    let mut prev_c = false;
    for f in flags {
        let opt = if prev_c {
            Some(f)
        } else {
            f.strip_prefix("-C").or_else(|| f.strip_prefix("--codegen=")).or_else(|| f.strip_prefix("--codegen "))
        };
        prev_c = f == "-C" || f == "--codegen";
        let Some(opt) = opt else { continue };
        let opt = opt.trim();
        if let Some(v) = opt.strip_prefix("force-frame-pointers") {
            on = match v.strip_prefix('=') {
                None => v.is_empty(),
                Some(v) => matches!(v, "yes" | "y" | "on" | "true" | "always"),
            };
        }
    }
    on
}
