//! The `http_hello` example's server logic over loopback: pipelining, keep-alive, close.
mod common;

#[allow(dead_code)]
#[path = "../examples/http_hello.rs"]
mod http_hello;

use std::io::{Read, Write};
use std::time::Duration;

use common::{go, run, Watchdog};
use gort::net::{TcpListener, TcpStream};

/// Reads exactly `n` HTTP responses (each with a Content-Length body) and returns them.
fn read_responses(c: &mut TcpStream, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = resp.parse(&buf) {
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            if buf.len() >= head + len {
                out.push(String::from_utf8(buf[..head + len].to_vec()).unwrap());
                buf.drain(..head + len);
                continue;
            }
        }
        let k = c.read(&mut chunk).unwrap();
        assert!(k > 0, "server closed early after {} responses", out.len());
        buf.extend_from_slice(&chunk[..k]);
    }
    assert!(buf.is_empty(), "extra bytes: {:?}", String::from_utf8_lossy(&buf));
    out
}

#[test]
fn pipelined_keep_alive_and_close() {
    let _w = Watchdog::new("http", Duration::from_secs(60));
    run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        go!(move || http_hello::serve(l));

        // A pipelined pair in one write.
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /again HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let rs = read_responses(&mut c, 2);
        for r in &rs {
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
            assert!(r.contains("Content-Type: text/plain\r\n"), "{r}");
            assert!(r.ends_with("\r\n\r\nHello, World!"), "{r}");
            assert!(!r.contains("Connection: close"), "{r}");
        }
        // Keep-alive: the same connection serves a request split across writes, with a body.
        c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Len").unwrap();
        gort::time::sleep(Duration::from_millis(10));
        c.write_all(b"gth: 5\r\n\r\nab").unwrap();
        gort::time::sleep(Duration::from_millis(10));
        c.write_all(b"cdeGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let rs = read_responses(&mut c, 2);
        assert!(rs[0].ends_with("Hello, World!") && !rs[0].contains("Connection: close"));
        assert!(rs[1].contains("Connection: close\r\n"), "{}", rs[1]);
        // ... after which the server closes.
        assert_eq!(c.read(&mut [0; 16]).unwrap(), 0);

        // HTTP/1.0 without keep-alive: one response, then EOF. Garbage: 400.
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut all = String::new();
        c.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 200 OK") && all.ends_with("Hello, World!"), "{all}");
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"\x00\x01 nonsense\r\n\r\n").unwrap();
        let mut all = String::new();
        c.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 400"), "{all}");
    });
}

#[test]
fn http_date_format() {
    assert_eq!(http_hello_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_hello_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_hello_date(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
}

fn http_hello_date(s: u64) -> String {
    http_hello::http_date(s)
}
