//! Profiles in tests: writing them, checking them with our pprof-rules validator, finding
//! samples by function, and driving `go tool pprof`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gort::profiler::proto::{self, Profile, Sample};

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

/// A reply of the profile server (`gort::profiler::serve`).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body of a 200 reply (anything else fails the test).
    pub fn ok_body(self) -> Vec<u8> {
        assert_eq!(self.status, 200, "{}", self.text());
        self.body
    }
}

/// Sends `raw` to the profile server at `addr` and reads the reply until the server closes (it
/// always sends `Connection: close`); checks its `Content-Length`.
pub fn http_send(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Reply {
    let mut c = std::net::TcpStream::connect_timeout(&addr, timeout).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(timeout)).unwrap();
    c.set_write_timeout(Some(timeout)).unwrap();
    c.write_all(raw).expect("write request");
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).expect("read reply");
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        r => panic!("bad reply {r:?}: {:?}", String::from_utf8_lossy(&buf)),
    };
    let headers: Vec<(String, String)> =
        resp.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
    let status = resp.code.unwrap();
    let body = buf[head..].to_vec();
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).unwrap().1.parse().unwrap();
    assert_eq!(body.len(), len, "Content-Length");
    Reply { status, headers, body }
}

/// GET `path` from the profile server at `addr`, within [`super::PATIENCE`].
pub fn http_get(addr: SocketAddr, path: &str) -> Reply {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    http_send(addr, raw.as_bytes(), super::PATIENCE)
}

/// Writes profile `name` with `debug` into memory.
pub fn write(name: &str, debug: u8) -> Vec<u8> {
    let mut v = Vec::new();
    gort::profiler::lookup(name).expect("profile exists").write_to(&mut v, debug).unwrap();
    v
}

/// Takes `n` full goroutine dumps, the `i`-th after a pause of `step` times `i % 7` (so that
/// they fall at varying phases of what the test's goroutines do), and counts those in which
/// `needle` does not appear.
pub fn dumps_without(needle: &str, n: usize, step: Duration) -> usize {
    (0..n)
        .filter(|&i| {
            std::thread::sleep(step * (i % 7) as u32);
            !String::from_utf8(write("goroutine", 2)).unwrap().contains(needle)
        })
        .count()
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

/// The entry of `table` with id `id`: at index `id - 1` where the writer numbered its entries in
/// order (ours do), else found by search (Go's need not).
fn by_id<T>(table: &[T], id: u64, id_of: impl Fn(&T) -> u64) -> Option<&T> {
    let at = usize::try_from(id).ok().and_then(|i| table.get(i.checked_sub(1)?));
    at.filter(|e| id_of(e) == id).or_else(|| table.iter().find(|e| id_of(e) == id))
}

/// The name of function `id`.
pub fn function_name(p: &Profile, id: u64) -> &str {
    p.str(by_id(&p.function, id, |f| f.id).unwrap_or_else(|| panic!("no function {id}")).name)
}

/// The names of the functions of location `id`, innermost (inlined) first.
pub fn location_names(p: &Profile, id: u64) -> Vec<&str> {
    let l = by_id(&p.location, id, |l| l.id).unwrap_or_else(|| panic!("no location {id}"));
    l.line.iter().map(|ln| function_name(p, ln.function_id)).collect()
}

/// The name of the leaf function of sample `s` (the innermost frame), if it has one.
pub fn leaf_name<'a>(p: &'a Profile, s: &Sample) -> Option<&'a str> {
    s.location_id.first().and_then(|&id| location_names(p, id).first().copied())
}

/// Sum of `value[idx]` over the samples whose leaf function's name contains `leaf`.
pub fn leaf_sum(p: &Profile, leaf: &str, idx: usize) -> i64 {
    p.sample.iter().filter(|s| leaf_name(p, s).is_some_and(|n| n.contains(leaf))).map(|s| s.value[idx]).sum()
}

/// Sum of `value[idx]` over the samples with a frame (inlined or not) whose function's name
/// contains `needle`.
pub fn stack_sum(p: &Profile, needle: &str, idx: usize) -> i64 {
    p.sample
        .iter()
        .filter(|s| s.location_id.iter().any(|&id| location_names(p, id).iter().any(|n| n.contains(needle))))
        .map(|s| s.value[idx])
        .sum()
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

/// Parses a value such as `24MB`, `512kB`, `20`, `1.50GB`, `830ms`, `2.90s` into base units
/// (bytes, binary: 1MB = 2^20; nanoseconds).
pub fn parse_value(s: &str) -> f64 {
    let s = s.trim();
    let units = [
        ("GB", (1u64 << 30) as f64),
        ("MB", (1 << 20) as f64),
        ("kB", (1 << 10) as f64),
        ("B", 1.0),
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
    ];
    for (u, m) in units {
        if let Some(n) = s.strip_suffix(u) {
            return n.parse::<f64>().unwrap() * m;
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

/// CPU-profiles `f` at `hz` and returns the profile, decoded and checked.
pub fn cpu_profile(hz: u32, f: impl FnOnce()) -> Profile {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct W(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    gort::profiler::set_cpu_profile_rate(hz);
    gort::profiler::start_cpu_profile(W(buf.clone())).unwrap();
    f();
    gort::profiler::stop_cpu_profile().unwrap();
    let gz = buf.lock().unwrap().clone();
    decode_valid(&gz)
}
