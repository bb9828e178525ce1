//! `/debug/pprof/flamegraph`: an SVG flame graph of a live profile, fetched with a plain client
//! and (when installed) loaded in headless Chromium.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::go;
use common::prof::*;
use gort::chan;
use gort::profiler::Server;

/// One server for the whole file.
fn server() -> SocketAddr {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| gort::profiler::serve("127.0.0.1:0").expect("serve")).local_addr()
}

/// Serializes the tests: each parks its own markers and counts on seeing them.
static TURN: Mutex<()> = Mutex::new(());

const MARKER: &str = "flame_marker_wait";

/// Parks the calling goroutine under a name no other frame has.
#[inline(never)]
fn flame_marker_wait(rx: chan::Receiver<()>) {
    let _ = std::hint::black_box(rx.recv());
}

/// Runs `f` while `n` goroutines are parked in [`flame_marker_wait`].
fn with_markers<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let (tx, rx) = chan::chan::<()>(0);
    let hs: Vec<_> = (0..n).map(|_| go!(flame_marker_wait(rx.clone()))).collect();
    for h in &hs {
        common::wait_state(h.id(), "chan receive");
    }
    let r = f();
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
    r
}

fn svg(path: &str) -> String {
    let r = http_get(server(), path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.header("Content-Type"), Some("image/svg+xml"), "{path}");
    let text = r.text();
    assert!(text.contains("<svg"), "{path}: not an SVG:\n{text}");
    text
}

#[test]
fn flamegraph_of_live_profiles() {
    let _t = common::take_turn(&TURN);
    let text = with_markers(3, || svg("/debug/pprof/flamegraph?profile=goroutine"));
    assert!(text.contains(MARKER), "{MARKER} missing from the flame graph:\n{text}");
    assert!(text.contains("goroutine: goroutine (count)"), "{text}");
    // The default profile is the CPU profile (of `seconds`, 30 by default as Go's).
    let text = svg("/debug/pprof/flamegraph?seconds=1");
    assert!(text.contains("profile: "), "{text}");

    // Every other profile renders too, and heap takes a sample type as pprof's -sample_index.
    for name in ["heap", "allocs", "threadcreate"] {
        svg(&format!("/debug/pprof/flamegraph?profile={name}"));
    }
    assert!(svg("/debug/pprof/flamegraph?profile=heap").contains("heap: inuse_space (bytes)"));
    assert!(svg("/debug/pprof/flamegraph?profile=allocs").contains("allocs: alloc_space (bytes)"));
    assert!(svg("/debug/pprof/flamegraph?profile=heap&sample_index=alloc_objects").contains("alloc_objects (count)"));
    svg("/debug/pprof/flamegraph?profile=goroutine&seconds=1");

    // A differential graph over one second: widths from the later profile, each frame's title
    // with its change (`NAME (N count, W%; +D%)`).
    let text = with_markers(3, || svg("/debug/pprof/flamegraph?profile=goroutine&diff_base=1"));
    assert!(text.contains("change since the base profile"), "{text}");
    let title = text.split("<title>").find(|t| t.contains(MARKER)).unwrap_or_else(|| panic!("{text}"));
    assert!(title.contains("(3 count, ") && title.contains("%; "), "{title}");

    let r = http_get(server(), "/debug/pprof/flamegraph?profile=goroutine&diff_base=x");
    assert_eq!((r.status, r.text().as_str()), (400, "invalid value for \"diff_base\" - must be a positive integer\n"));
    let r = http_get(server(), "/debug/pprof/flamegraph?profile=goroutine&diff_base=1&seconds=1");
    assert_eq!((r.status, r.text().as_str()), (400, "seconds and diff_base params are incompatible\n"));
    let r = http_get(server(), "/debug/pprof/flamegraph?profile=nosuch");
    assert_eq!((r.status, r.text().as_str()), (404, "Unknown profile\n"));
    let r = http_get(server(), "/debug/pprof/flamegraph?profile=goroutine&seconds=0");
    assert_eq!((r.status, r.text().as_str()), (400, "invalid value for \"seconds\" - must be a positive integer\n"));
    let r = http_get(server(), "/debug/pprof/flamegraph?profile=heap&sample_index=nope");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("inuse_space"), "{}", r.text());

    let index = http_get(server(), "/debug/pprof/").text();
    for name in ["allocs", "goroutine", "heap", "threadcreate"] {
        assert!(index.contains(&format!("<a href='flamegraph?profile={name}'>flame graph</a>")), "{index}");
    }
}

/// Whether headless Chromium can run. Under `CI=true` its absence is a failure, not a skip.
fn have_chromium() -> bool {
    let ok = Command::new("chromium").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("`chromium` (for the browser test) is required under CI=true");
    }
    if !ok {
        eprintln!("skipping the browser test: `chromium` not found");
    }
    ok
}

/// The DOM headless Chromium builds from `url` (after its scripts ran). Killed after 60 s.
fn dump_dom(url: &str) -> String {
    let profile = tmpdir("flame-chromium");
    let mut child = Command::new("chromium")
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Read the pipes on threads: a full pipe would stall Chromium and the deadline would fire.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(&mut out).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut err).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let _ = std::fs::remove_dir_all(&profile);
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("chromium {url}: {s}\n{err}"),
        None => panic!("chromium {url}: no result within 60 s\n{err}"),
    }
}

#[test]
fn flamegraph_in_a_browser() {
    let _t = common::take_turn(&TURN);
    if !have_chromium() {
        return;
    }
    let addr = server();
    let index = dump_dom(&format!("http://{addr}/debug/pprof/"));
    assert!(index.contains("flamegraph?profile=goroutine"), "{index}");
    let dom = with_markers(3, || dump_dom(&format!("http://{addr}/debug/pprof/flamegraph?profile=goroutine")));
    assert!(dom.contains("<svg"), "{dom}");
    assert!(dom.contains(MARKER), "{MARKER} missing from the DOM:\n{dom}");
}
