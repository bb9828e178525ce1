//! `gort::profiler::serve`: Go's `net/http/pprof` routes over loopback, fetched with a plain
//! std client (and `go tool pprof` when installed), including while every P is hogged.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::go;
use common::prof::*;
use gort::profiler::Server;

/// One server for the whole file.
fn server() -> SocketAddr {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| gort::profiler::serve("127.0.0.1:0").expect("serve")).local_addr()
}

/// Serializes the tests (the hog test takes every P).
static TURN: Mutex<()> = Mutex::new(());

fn get(path: &str) -> Reply {
    http_get(server(), path)
}

#[test]
fn index_and_text_profiles() {
    let _t = common::take_turn(&TURN);
    let r = get("/debug/pprof/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    let html = r.text();
    for name in ["allocs", "goroutine", "heap", "threadcreate", "cmdline", "profile"] {
        assert!(html.contains(&format!("<a href='{name}?debug=1'>{name}</a>")), "{name} missing:\n{html}");
    }
    assert!(html.contains("full goroutine stack dump"));
    assert!(html.contains("A sampling of all past memory allocations"));

    let r = get("/debug/pprof/goroutine?debug=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert!(r.text().starts_with("goroutine profile: total "), "{}", r.text());
    let r = get("/debug/pprof/goroutine?debug=2");
    assert!(r.text().contains("goroutine "), "{}", r.text());
    let r = get("/debug/pprof/heap?debug=1&gc=1");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("heap profile: "), "{}", r.text());
}

#[test]
fn proto_profiles() {
    let _t = common::take_turn(&TURN);
    for name in ["goroutine", "heap", "allocs", "threadcreate"] {
        let r = get(&format!("/debug/pprof/{name}"));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
        assert_eq!(r.header("Content-Disposition").unwrap(), format!("attachment; filename=\"{name}\""));
        let p = decode_valid(&r.body);
        if name == "goroutine" {
            assert!(p.sample.iter().map(|s| s.value[0]).sum::<i64>() >= 1);
        }
    }
    // A delta profile over one second.
    let r = get("/debug/pprof/goroutine?seconds=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Disposition"), Some("attachment; filename=\"goroutine-delta\""));
    let p = decode_valid(&r.body);
    assert!(p.duration_nanos >= 900_000_000, "{}", p.duration_nanos);
}

#[test]
fn cmdline_and_symbol() {
    let _t = common::take_turn(&TURN);
    let r = get("/debug/pprof/cmdline");
    assert_eq!(r.status, 200);
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(r.text(), args.join("\0"));

    let r = get("/debug/pprof/symbol");
    assert_eq!((r.status, r.text().as_str()), (200, "num_symbols: 1\n"));

    let pc = marker as fn() -> usize as usize;
    let body = format!("{pc:#x}+0x0+junk");
    let raw =
        format!("POST /debug/pprof/symbol HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let r = http_send(server(), raw.as_bytes(), common::PATIENCE);
    assert_eq!(r.status, 200);
    let text = r.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("num_symbols: 1"));
    let line = lines.next().unwrap_or_else(|| panic!("no symbol: {text}"));
    assert!(line.starts_with(&format!("{pc:#x} ")) && line.contains("marker"), "{text}");
    assert_eq!(lines.next(), None, "{text}");
    let r = get(&format!("/debug/pprof/symbol?{pc:#x}"));
    assert!(r.text().contains("marker"), "{}", r.text());
}

#[inline(never)]
fn marker() -> usize {
    std::hint::black_box(7)
}

#[test]
fn errors_and_malformed_requests() {
    let _t = common::take_turn(&TURN);
    let r = get("/debug/pprof/nosuch");
    assert_eq!((r.status, r.text().as_str()), (404, "Unknown profile\n"));
    assert_eq!(r.header("X-Go-Pprof"), Some("1"));
    let r = get("/debug/pprof/heap?seconds=-1");
    assert_eq!((r.status, r.text().as_str()), (400, "invalid value for \"seconds\" - must be a positive integer\n"));
    let r = get("/debug/pprof/heap?seconds=1&debug=1");
    assert_eq!((r.status, r.text().as_str()), (400, "seconds and debug params are incompatible\n"));
    let r = get("/debug/pprof/heap?debug=x");
    assert_eq!(r.status, 400);
    let r = get("/debug/pprof/trace?seconds=1");
    assert_eq!(r.status, 501);
    assert!(r.text().contains("not implemented yet in gort"), "{}", r.text());

    // Garbage, too many headers, an oversized head: 400/431, and the server keeps serving.
    let r = http_send(server(), b"\x01\x02 nonsense\r\n\r\n", common::PATIENCE);
    assert_eq!(r.status, 400);
    let mut many = String::from("GET /debug/pprof/ HTTP/1.1\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(http_send(server(), many.as_bytes(), common::PATIENCE).status, 431);
    let huge = format!("GET /debug/pprof/ HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100 << 10));
    assert_eq!(http_send(server(), huge.as_bytes(), common::PATIENCE).status, 431);
    // A client that connects and sends nothing does not hold anything up.
    let idle = std::net::TcpStream::connect(server()).unwrap();
    assert_eq!(get("/debug/pprof/cmdline").status, 200);
    drop(idle);
}

/// The server answers while every P runs a goroutine that never yields (sysmon hands the
/// accept goroutine a P).
#[test]
fn answers_while_every_p_is_busy() {
    let _t = common::take_turn(&TURN);
    let addr = server();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let n = gort::runtime::gomaxprocs();
    let mut hogs = Vec::new();
    for _ in 0..n {
        let (stop, started) = (stop.clone(), started.clone());
        hogs.push(go!(move || {
            started.fetch_add(1, Ordering::SeqCst);
            let t0 = Instant::now();
            let mut x = 0u64;
            // Never yields; bounded at 60 s in case the test fails to stop it.
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            x
        }));
    }
    let t0 = Instant::now();
    while started.load(Ordering::SeqCst) < n && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let res = std::thread::spawn(move || {
        let raw = b"GET /debug/pprof/goroutine?debug=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let r = http_send(addr, raw, Duration::from_secs(5));
        // gort's own endpoints too: the metrics, and a wall-clock window over the busy Ps.
        let raw = b"GET /debug/metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let m = http_send(addr, raw, Duration::from_secs(5));
        let raw = b"GET /debug/pprof/wall?seconds=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let w = http_send(addr, raw, Duration::from_secs(10));
        (r.status, r.text(), m.status, m.text(), w.status)
    })
    .join();
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
    let (status, text, mstatus, metrics, wstatus) = res.expect("server did not answer while every P was busy");
    assert_eq!(status, 200);
    assert!(text.starts_with("goroutine profile: total "), "{text}");
    assert_eq!(mstatus, 200);
    assert!(metrics.contains("gort_goroutines{state=\"running\"}"), "{metrics}");
    assert_eq!(wstatus, 200, "wall profile while every P was busy");
}

#[test]
fn go_tool_pprof_against_live_server() {
    let _t = common::take_turn(&TURN);
    if !have_go() {
        return;
    }
    let addr = server();
    let out = pprof(&["-raw", &format!("http://{addr}/debug/pprof/goroutine")]);
    assert!(out.contains("Samples:") || out.contains("PeriodType"), "{out}");
    let out = pprof(&["-top", &format!("http://{addr}/debug/pprof/heap")]);
    assert!(out.contains("flat"), "{out}");
}
