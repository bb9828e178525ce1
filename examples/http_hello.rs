//! HTTP/1.1 hello world on gort: one goroutine per connection, plain blocking code.
//!
//! ```text
//! cargo run --release --example http_hello -- --addr 127.0.0.1:8080
//! GOMAXPROCS=1 cargo run --release --example http_hello
//! curl -i http://127.0.0.1:8080/
//! ```
//!
//! Every request gets `200 OK`, `Content-Type: text/plain`, `Hello, World!`. Keep-alive is the
//! HTTP/1.1 default (HTTP/1.0 asks for it with `Connection: keep-alive`); pipelined requests are
//! parsed (`httparse`) out of one read and answered with one write. `accept` backs off on errors
//! such as EMFILE the way Go's `http.Server` does (5 ms doubling to 1 s). `tests/net_http.rs`
//! includes this file to test the server logic.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::ToSocketAddrs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gort::net::{TcpListener, TcpStream};
use lexopt::prelude::*;

const BODY: &[u8] = b"Hello, World!";
/// Largest request head accepted (Go's default is 1 MiB; a hello server needs less).
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 32;

/// Accepts connections forever, one goroutine each. Returns only if the listener is closed.
pub fn serve(l: TcpListener) -> io::Error {
    let mut backoff = Duration::ZERO;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                backoff = Duration::ZERO;
                let conn = move || {
                    let _ = handle(s);
                };
                // SAFETY: the connection goroutine owns its `TcpStream`, buffers and `DateCache`
                // (all Send) and blocks only in the stream's reads and writes; it touches no
                // thread-local.
                unsafe { gort::spawn(conn) };
            }
            Err(e) if is_closed(&e) => return e,
            Err(e) => {
                // Go's http.Server: "Accept error: ...; retrying in 5ms", doubling up to 1 s.
                backoff = if backoff.is_zero() {
                    Duration::from_millis(5)
                } else {
                    (backoff * 2).min(Duration::from_secs(1))
                };
                eprintln!("http: Accept error: {e}; retrying in {backoff:?}");
                gort::time::sleep(backoff);
            }
        }
    }
}

fn is_closed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string().contains("closed network connection")
}

/// Serves one connection until the client closes it, asks to, or sends something we reject.
pub fn handle(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut rbuf: Vec<u8> = vec![0; 4096];
    let mut filled = 0; // rbuf[..filled] holds unparsed bytes
    let mut wbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut date = DateCache::default();
    loop {
        // Answer every complete request in the buffer (pipelining), then write once.
        let mut start = 0;
        let mut close = false;
        // Uninitialised: httparse writes the headers it reports, and filling 32 empty ones per
        // request costs more than parsing a small request.
        let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        while !close && start < filled {
            let mut req = httparse::Request::new(&mut []);
            let head_len = match req.parse_with_uninit_headers(&rbuf[start..filled], &mut headers) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => break,
                Err(_) => {
                    respond(&mut wbuf, &mut date, "400 Bad Request", true);
                    s.write_all(&wbuf)?;
                    return Ok(());
                }
            };
            let mut body_len = 0usize;
            let mut keep_alive = req.version == Some(1);
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    body_len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                } else if h.name.eq_ignore_ascii_case("connection") {
                    if h.value.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    // Not needed for a hello server: refuse rather than misframe.
                    respond(&mut wbuf, &mut date, "501 Not Implemented", true);
                    s.write_all(&wbuf)?;
                    return Ok(());
                }
            }
            if filled - start < head_len + body_len {
                break; // the body has not arrived yet
            }
            start += head_len + body_len;
            close = !keep_alive;
            respond(&mut wbuf, &mut date, "200 OK", close);
        }
        if !wbuf.is_empty() {
            s.write_all(&wbuf)?;
            wbuf.clear();
        }
        if close {
            return Ok(());
        }
        // Keep the unparsed tail at the front and read more.
        rbuf.copy_within(start..filled, 0);
        filled -= start;
        if filled == rbuf.len() {
            if rbuf.len() >= MAX_HEAD {
                respond(&mut wbuf, &mut date, "431 Request Header Fields Too Large", true);
                s.write_all(&wbuf)?;
                return Ok(());
            }
            rbuf.resize(rbuf.len() * 2, 0);
        }
        let n = s.read(&mut rbuf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
    }
}

fn respond(w: &mut Vec<u8>, date: &mut DateCache, status: &str, close: bool) {
    let ok = status.starts_with("200");
    let body: &[u8] = if ok { BODY } else { status.as_bytes() };
    w.extend_from_slice(b"HTTP/1.1 ");
    w.extend_from_slice(status.as_bytes());
    w.extend_from_slice(b"\r\nServer: gort\r\nContent-Type: text/plain\r\nDate: ");
    w.extend_from_slice(date.get());
    w.extend_from_slice(b"\r\nContent-Length: ");
    w.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    if close {
        w.extend_from_slice(b"\r\nConnection: close");
    }
    w.extend_from_slice(b"\r\n\r\n");
    w.extend_from_slice(body);
}

/// The `Date` header (RFC 7231 IMF-fixdate), formatted at most once a second per connection.
#[derive(Default)]
struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl DateCache {
    fn get(&mut self) -> &[u8] {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if now != self.secs || self.text[0] == 0 {
            self.secs = now;
            self.text.copy_from_slice(http_date(now).as_bytes());
        }
        &self.text
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for `secs` since the Unix epoch.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

const USAGE: &str = "\
usage: http_hello [--addr ADDR] [--pprof ADDR]

HTTP/1.1 hello world on gort, one goroutine per connection. GOMAXPROCS sets the worker count.

  --addr ADDR    address to listen on (default 127.0.0.1:8080)
  --pprof ADDR   also serve /debug/pprof/ there (profile the server under load)
  -h, --help     print this help
";

/// The listen address and the pprof address, if any. `--help` prints the usage and exits.
fn parse_args() -> Result<(String, Option<String>), lexopt::Error> {
    let mut addr = "127.0.0.1:8080".to_string();
    let mut pprof = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => addr = socket_addr(&mut parser, "--addr")?,
            Long("pprof") => pprof = Some(socket_addr(&mut parser, "--pprof")?),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok((addr, pprof))
}

/// An address option's value, resolved now so that a typo is a usage error, not a failed bind.
fn socket_addr(parser: &mut lexopt::Parser, opt: &str) -> Result<String, lexopt::Error> {
    let v = parser.value()?.string()?;
    match v.to_socket_addrs() {
        Ok(_) => Ok(v),
        Err(e) => Err(format!("{opt} {v}: {e}").into()),
    }
}

pub fn main() {
    let (addr, pprof) = parse_args().unwrap_or_else(|e| {
        eprintln!("http_hello: {e}");
        std::process::exit(2);
    });
    let server = move || {
        let _pprof = pprof.map(|a| {
            let s = gort::profiler::serve(&a).unwrap_or_else(|e| panic!("serve pprof on {a}: {e}"));
            eprintln!("pprof on http://{}/debug/pprof/", s.local_addr());
            s
        });
        let l = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        eprintln!(
            "http_hello listening on http://{} (GOMAXPROCS={})",
            l.local_addr().unwrap(),
            gort::runtime::gomaxprocs()
        );
        let e = serve(l);
        eprintln!("http_hello: {e}");
    };
    // SAFETY: `serve` holds its listener and a `Duration` (Send) across `accept` and `sleep`;
    // stderr is locked and released inside each `eprintln!`, and no thread-local is touched.
    unsafe { gort::run(server) };
}
