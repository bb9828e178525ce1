//! Helpers for the `prof_*` tests (included with `#[path]`): writing profiles, checking them
//! with our pprof-rules validator, and driving `go tool pprof`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use gort::profiler::proto::{self, Profile};

/// Whether `go tool pprof` can run. Under `CI=true` its absence is a failure, not a skip.
pub fn have_go() -> bool {
    let ok = Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("`go` (golang-go, for `go tool pprof`) is required under CI=true");
    }
    if !ok {
        eprintln!("skipping the `go tool pprof` part: `go` not found");
    }
    ok
}

/// Writes profile `name` with `debug` into memory.
pub fn write(name: &str, debug: u8) -> Vec<u8> {
    let mut v = Vec::new();
    gort::profiler::lookup(name).expect("profile exists").write_to(&mut v, debug).unwrap();
    v
}

/// Decodes a gzipped profile and checks it against pprof's rules.
pub fn decode_valid(gz: &[u8]) -> Profile {
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "not gzip");
    let p = Profile::decode_any(gz).expect("decodes");
    if let Err(e) = proto::validate(&p) {
        panic!("invalid profile: {e}");
    }
    p
}

/// A fresh directory for profile files.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gort-prof-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `go tool pprof ARGS...`; panics with its stderr on failure; returns stdout.
pub fn pprof(args: &[&str]) -> String {
    let out = Command::new("go")
        .arg("tool")
        .arg("pprof")
        .args(args)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .env("PPROF_BINARY_PATH", "/nonexistent")
        .output()
        .expect("go tool pprof runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "go tool pprof {args:?} failed:\n{stderr}\n{stdout}");
    eprintln!("$ go tool pprof {}\n{stdout}{stderr}", args.join(" "));
    stdout
}

/// One row of `pprof -top`: flat, cum (in the profile's unit, parsed), and the name.
#[derive(Debug, Clone)]
pub struct TopRow {
    pub flat: f64,
    pub cum: f64,
    pub name: String,
}

/// Parses a value such as `24MB`, `512kB`, `20`, `1.50GB` into base units (pprof's units are
/// binary: 1MB = 2^20).
pub fn parse_value(s: &str) -> f64 {
    let s = s.trim();
    let units = [("GB", 1u64 << 30), ("MB", 1 << 20), ("kB", 1 << 10), ("B", 1)];
    for (u, m) in units {
        if let Some(n) = s.strip_suffix(u) {
            return n.parse::<f64>().unwrap() * m as f64;
        }
    }
    s.parse().unwrap_or_else(|_| panic!("not a value: {s:?}"))
}

/// The rows of `pprof -top` output.
pub fn top_rows(out: &str) -> Vec<TopRow> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in out.lines() {
        if line.trim_start().starts_with("flat") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            continue;
        }
        rows.push(TopRow { flat: parse_value(f[0]), cum: parse_value(f[3]), name: f[5..].join(" ") });
    }
    rows
}

/// The row whose name contains `needle`.
pub fn row<'a>(rows: &'a [TopRow], needle: &str) -> &'a TopRow {
    rows.iter().find(|r| r.name.contains(needle)).unwrap_or_else(|| panic!("no row with {needle:?} in {rows:#?}"))
}
