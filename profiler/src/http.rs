//! Go's `net/http/pprof` on gort: [`serve`] starts an HTTP/1.1 server on a
//! [`gort_runtime::net::TcpListener`] whose `/debug/pprof/` routes answer as Go's do, so
//! `go tool pprof http://ADDR/debug/pprof/heap` works against a gort program.
//!
//! Routes (Go's `net/http/pprof` contract):
//!
//! - `/debug/pprof/`: the HTML index (counts, `?debug=1` links, descriptions).
//! - `/debug/pprof/{goroutine,heap,allocs,threadcreate,mutex,block,hog}`: `debug=0` (default) the gzipped proto
//!   as an attachment, `debug=N>0` text; `seconds=N` a delta profile (`NAME-delta`); `gc=` is
//!   accepted and ignored (gort has no GC).
//! - `/debug/pprof/cmdline`, `/debug/pprof/symbol` (GET query or POST body).
//! - `/debug/pprof/profile?seconds=N`: the CPU profile of the next N seconds (default 30).
//! - `/debug/pprof/wall?seconds=N`: the wall-clock profile of the next N seconds ([`crate::wall`]).
//! - `/debug/metrics`: the scheduler's metrics in the OpenMetrics text format ([`crate::metrics`]).
//! - `/debug/pprof/flamegraph?profile=NAME`: an SVG flame graph of any profile ([`crate::flame`]).
//! - `/debug/pprof/goroutineleak`: the groups the leak census suspects ([`crate::leak`]; 503 with
//!   instructions while the census is off).
//! - `/debug/pprof/trace`: 501, not implemented yet.
//!
//! [`handle`] is the routing logic on a parsed [`Request`], testable without sockets. The server
//! answers one request per connection (`Connection: close`), bounds the request head
//! ([`MAX_HEAD`], [`MAX_HEADERS`]) and body ([`MAX_BODY`]), and drops a connection that sends
//! nothing for [`READ_TIMEOUT`]. A malformed request gets a 400 and the server keeps serving.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort_runtime::net::{PollError, TcpListener, TcpStream};

use crate::{lookup, proto, symbolize};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 64 << 10;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 32;
/// Largest request body accepted (a `/debug/pprof/symbol` POST of addresses).
pub const MAX_BODY: usize = 1 << 20;
/// How long a connection may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing a reply may take (a `seconds=N` delta adds N to it).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest `seconds=N` accepted for delta profiles (one day).
pub const MAX_SECONDS: u64 = 86_400;

const NOT_IMPLEMENTED: &str = "not implemented yet in gort";

/// Stack of a connection goroutine: building a profile (symbolizing, encoding) needs more than
/// the default 256 KiB in an unoptimized build. A dedicated stack is mapped lazily, so the
/// headroom costs address space, and one `mmap` per connection.
const CONN_STACK: usize = 4 << 20;

/// A parsed HTTP request: what [`handle`] needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent: path and optional `?query`.
    pub target: String,
    /// The body (empty for GET).
    pub body: Vec<u8>,
}

impl Request {
    /// A `GET target` request.
    pub fn get(target: &str) -> Request {
        Request { method: "GET".into(), target: target.into(), body: Vec::new() }
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The raw query (after `?`), or `""`.
    pub fn raw_query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The first value of query parameter `key`, percent-decoded (Go's `FormValue`; `""` if absent).
    pub fn form_value(&self, key: &str) -> String {
        for kv in self.raw_query().split(['&', ';']) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if unescape(k) == key {
                return unescape(v);
            }
        }
        String::new()
    }
}

/// Query unescaping: `+` is a space, `%XX` a byte; invalid escapes are kept as written.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP response from [`handle`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Length`, `Connection` and `Date`, which the server adds.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![
                ("X-Content-Type-Options".into(), "nosniff".into()),
                ("Content-Type".into(), content_type.into()),
            ],
            body: body.into(),
        }
    }

    /// Go's `serveError`: text/plain, `X-Go-Pprof: 1` (pprof prints the message), a newline.
    pub(crate) fn error(status: u16, msg: &str) -> Response {
        let mut r = Response::new(status, "text/plain; charset=utf-8", format!("{msg}\n"));
        r.headers.push(("X-Go-Pprof".into(), "1".into()));
        r
    }

    pub(crate) fn attachment(filename: &str, body: Vec<u8>) -> Response {
        let mut r = Response::new(200, "application/octet-stream", body);
        r.headers.push(("Content-Disposition".into(), format!("attachment; filename=\"{filename}\"")));
        r
    }

    /// The value of header `name` (case-insensitive), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The standard reason phrase for the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Answers one request as Go's `net/http/pprof` (registered on `http.DefaultServeMux`) would.
/// `seconds=N` sleeps N seconds (on a goroutine, with `gort_runtime::time::sleep`).
pub fn handle(req: &Request) -> Response {
    let path = req.path();
    match path {
        "/debug/pprof" => {
            let mut r =
                Response::new(301, "text/html; charset=utf-8", "<a href=\"/debug/pprof/\">Moved Permanently</a>.\n");
            r.headers.push(("Location".into(), "/debug/pprof/".into()));
            return r;
        }
        "/debug/pprof/cmdline" => {
            let args: Vec<String> = std::env::args().collect();
            return Response::new(200, "text/plain; charset=utf-8", args.join("\0"));
        }
        "/debug/pprof/symbol" => return symbol(req),
        "/debug/pprof/profile" => return cpu_profile(req),
        "/debug/pprof/wall" => return wall_profile(req),
        "/debug/metrics" => return Response::new(200, crate::metrics::CONTENT_TYPE, crate::metrics::encode()),
        "/debug/pprof/flamegraph" => return crate::flame::serve(req),
        "/debug/pprof/goroutineleak" => return crate::leak::serve(req),
        "/debug/pprof/trace" => return Response::error(501, NOT_IMPLEMENTED),
        _ => {}
    }
    let Some(name) = path.strip_prefix("/debug/pprof/") else {
        return Response::new(404, "text/plain; charset=utf-8", "404 page not found\n");
    };
    if name.is_empty() {
        return index();
    }
    named(req, name)
}

/// `/debug/pprof/profile?seconds=N`: Go's `pprof.Profile`. A missing or bad `seconds` means 30,
/// as in Go; the connection's goroutine sleeps through the window while the others go on.
fn cpu_profile(req: &Request) -> Response {
    let secs = match req.form_value("seconds").parse::<i64>() {
        Ok(s) if s > 0 => s as u64,
        _ => 30,
    };
    if secs > MAX_SECONDS {
        return Response::error(400, "profile duration exceeds server's WriteTimeout");
    }
    match crate::cpu::profile_for(Duration::from_secs(secs), gort_runtime::time::sleep) {
        Ok(body) => Response::attachment("profile", body),
        Err(e) => Response::error(500, &format!("Could not enable CPU profiling: {e}")),
    }
}

/// `/debug/pprof/wall?seconds=N`: the wall-clock profile of the next N seconds (default 30; a
/// `seconds` that is not a positive integer is a 400).
fn wall_profile(req: &Request) -> Response {
    let v = req.form_value("seconds");
    let secs = if v.is_empty() {
        30
    } else {
        match v.parse::<u64>() {
            Ok(s) if s > 0 => s,
            _ => return Response::error(400, "invalid value for \"seconds\" - must be a positive integer"),
        }
    };
    if secs > MAX_SECONDS {
        return Response::error(400, "profile duration exceeds server's WriteTimeout");
    }
    match crate::wall::profile_for(Duration::from_secs(secs), gort_runtime::time::sleep) {
        Ok(body) => Response::attachment("wall", body),
        Err(e) => Response::error(500, &format!("Could not enable wall-clock profiling: {e}")),
    }
}

/// `/debug/pprof/NAME`: Go's `handler.ServeHTTP`.
fn named(req: &Request, name: &str) -> Response {
    let Some(p) = lookup(name) else {
        return Response::error(404, "Unknown profile");
    };
    let debug_s = req.form_value("debug");
    let debug: i64 = if debug_s.is_empty() {
        0
    } else {
        match debug_s.parse::<i64>() {
            Ok(d) if d >= 0 => d,
            // Go ignores a bad debug (Atoi fails -> 0); a clear 400 is more useful.
            _ => return Response::error(400, "invalid value for \"debug\" - must be a non-negative integer"),
        }
    };
    let sec = req.form_value("seconds");
    if !sec.is_empty() {
        let secs = match sec.parse::<i64>() {
            Ok(s) if s > 0 => s as u64,
            _ => return Response::error(400, "invalid value for \"seconds\" - must be a positive integer"),
        };
        if secs > MAX_SECONDS {
            return Response::error(400, "profile duration exceeds server's WriteTimeout");
        }
        if debug != 0 {
            return Response::error(400, "seconds and debug params are incompatible");
        }
        let p0 = p.to_proto();
        gort_runtime::time::sleep(Duration::from_secs(secs));
        let p1 = p.to_proto();
        return match proto::delta(&p0, &p1) {
            Ok(d) => Response::attachment(&format!("{name}-delta"), d.encode_gz()),
            Err(e) => Response::error(500, &format!("failed to compute delta: {e}")),
        };
    }
    // gc= is accepted and ignored: gort has no garbage collector to run first.
    let mut out = Vec::new();
    if let Err(e) = p.write_to(&mut out, debug.min(2) as u8) {
        return Response::error(500, &format!("Could not write profile: {e}"));
    }
    if debug != 0 {
        Response::new(200, "text/plain; charset=utf-8", out)
    } else {
        Response::attachment(name, out)
    }
}

/// `/debug/pprof/symbol`: GET query or POST body of `0xADDR+0xADDR...`.
fn symbol(req: &Request) -> Response {
    let input: &[u8] = if req.method == "POST" { &req.body } else { req.raw_query().as_bytes() };
    let mut out = String::from("num_symbols: 1\n");
    for word in input.split(|&b| b == b'+') {
        let Some(pc) = std::str::from_utf8(word).ok().and_then(parse_uint) else { continue };
        if pc == 0 {
            continue;
        }
        if let Some(name) = usize::try_from(pc).ok().and_then(symbolize) {
            out.push_str(&format!("{pc:#x} {name}\n"));
        }
    }
    Response::new(200, "text/plain; charset=utf-8", out)
}

/// Go's `strconv.ParseUint(s, 0, 64)` for the forms pprof sends: `0x` hex or decimal.
fn parse_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// One row of the index: name, count, description.
struct Entry {
    name: &'static str,
    count: usize,
    desc: &'static str,
}

/// `/debug/pprof/`: Go 1.19's index page.
fn index() -> Response {
    let mut entries: Vec<Entry> =
        crate::profiles().iter().map(|p| Entry { name: p.name(), count: p.count(), desc: p.description() }).collect();
    entries.push(Entry { name: "cmdline", count: 0, desc: "The command line invocation of the current program" });
    entries.push(Entry {
        name: "goroutineleak",
        count: gort_runtime::census::report().map_or(0, |r| r.leaks.len()),
        desc: "Groups of parked goroutines (same wait reason and stack) that grew over the leak census's window \
               without ever shrinking. Needs the census: GORT_LEAKCHECK=10s or census::start.",
    });
    entries.push(Entry {
        name: "profile",
        count: 0,
        desc: "CPU profile. You can specify the duration in the seconds GET parameter. After you get the profile \
               file, use the go tool pprof command to investigate the profile.",
    });
    entries.push(Entry {
        name: "wall",
        count: 0,
        desc: "Wall-clock profile (gort): where every goroutine's time went over the seconds GET parameter \
               (default 30), running, runnable or waiting, by stack, with a state label on every sample \
               (go tool pprof -tagfocus 'state=IO wait').",
    });
    entries.push(Entry {
        name: "trace",
        count: 0,
        desc: "A trace of execution of the current program. You can specify the duration in the seconds GET \
               parameter. After you get the trace file, use the go tool trace command to investigate the trace. \
               (Not implemented yet in gort.)",
    });
    entries.sort_by_key(|e| e.name);
    let mut s = String::from(
        "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{\n\tdisplay:inline-block;\n\t\
         width:6rem;\n}\n</style>\n</head>\n<body>\n/debug/pprof/<br>\n<br>\nTypes of profiles available:\n\
         <table>\n<thead><td>Count</td><td>Profile</td></thead>\n",
    );
    for e in &entries {
        let flame = if lookup(e.name).is_some() {
            format!("<td><a href='flamegraph?profile={}'>flame graph</a></td>", html_escape(e.name))
        } else if e.name == "profile" || e.name == "wall" {
            format!("<td><a href='flamegraph?profile={}&amp;seconds=10'>flame graph (10 s)</a></td>", e.name)
        } else {
            String::new()
        };
        s.push_str(&format!(
            "\t<tr>\n\t<td>{}</td><td><a href='{}?debug=1'>{}</a></td>{flame}\n\t</tr>\n",
            e.count,
            html_escape(e.name),
            html_escape(e.name)
        ));
    }
    s.push_str(
        "</table>\n<a href=\"goroutine?debug=2\">full goroutine stack dump</a>\n<br>\n\
         <a href=\"/debug/metrics\">scheduler metrics</a> (OpenMetrics text, for Prometheus)\n<br>\n<p>\n\
         Profile Descriptions:\n<ul>\n",
    );
    for e in &entries {
        s.push_str(&format!(
            "<li><div class=profile-name>{}: </div> {}</li>\n",
            html_escape(e.name),
            html_escape(e.desc)
        ));
    }
    s.push_str("</ul>\n</p>\n</body>\n</html>\n");
    Response::new(200, "text/html; charset=utf-8", s)
}

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '\'' => o.push_str("&#39;"),
            '"' => o.push_str("&#34;"),
            c => o.push(c),
        }
    }
    o
}

/// Serializes `r` as an HTTP/1.1 reply with `Connection: close`.
pub fn encode_response(r: &Response) -> Vec<u8> {
    let mut w = Vec::with_capacity(r.body.len() + 256);
    w.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status)).as_bytes());
    for (k, v) in &r.headers {
        w.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    w.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", r.body.len()).as_bytes());
    w.extend_from_slice(&r.body);
    w
}

/// A running pprof server (from [`serve`]).
pub struct Server {
    listener: Arc<TcpListener>,
    addr: SocketAddr,
}

impl Server {
    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections (requests in progress finish).
    pub fn close(&self) {
        self.listener.close();
    }
}

/// Starts the pprof HTTP server on `addr`: binds now, then accepts on a goroutine, one
/// goroutine per connection. Go's `http.ListenAndServe(addr, nil)` with `net/http/pprof`
/// imported, without blocking the caller.
pub fn serve(addr: impl ToSocketAddrs) -> io::Result<Server> {
    let listener = Arc::new(TcpListener::bind(addr)?);
    let addr = listener.local_addr()?;
    let l = listener.clone();
    let accept = move || accept_loop(&l);
    // It reaches no thread-local of its own.
    // SAFETY: the accept goroutine holds an `Arc<TcpListener>` and accepted `TcpStream`s (Send);
    // its one thread-bound use, stderr, is locked and released inside `eprintln!`.
    unsafe { gort_runtime::spawn(accept) };
    Ok(Server { listener, addr })
}

fn accept_loop(l: &TcpListener) {
    let mut backoff = Duration::ZERO;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                backoff = Duration::ZERO;
                // A connection goroutine blocks only in its socket's reads and writes and in
                // `sleep` (a `seconds=` delta). The profiler's thread-bound state (the
                // `SYMBOLIZER` std `MutexGuard`, the allocator's `NoSample` thread-local flag)
                // lives inside one call of `Profile::write_to`, `to_proto` or `symbolize`, none
                // of which parks or is inlined across a blocking call (`NoSample` sets and
                // restores its flag through `LocalKey::with` in its own constructor and
                // destructor, both on one side of any park).
                let conn = move || {
                    let _ = serve_conn(s);
                };
                // SAFETY: across its blocking calls the goroutine holds only `Send` values (the
                // `TcpStream`, buffers, request, reply), and thread-bound state never outlives
                // one non-parking call (above).
                let spawned = unsafe { gort_runtime::Builder::new().stack_size(CONN_STACK).spawn(conn) };
                if let Err(e) = spawned {
                    eprintln!("gort pprof: cannot start a connection goroutine: {e}");
                }
            }
            Err(e) if PollError::of(&e) == Some(PollError::Closed) => return,
            Err(e) => {
                // Go's http.Server: back off 5 ms doubling to 1 s (EMFILE and the like).
                backoff = if backoff.is_zero() {
                    Duration::from_millis(5)
                } else {
                    (backoff * 2).min(Duration::from_secs(1))
                };
                eprintln!("gort pprof: accept error: {e}; retrying in {backoff:?}");
                gort_runtime::time::sleep(backoff);
            }
        }
    }
}

/// Reads one request (bounded), answers it, closes.
fn serve_conn(mut s: TcpStream) -> io::Result<()> {
    s.set_read_deadline(Some(Instant::now() + READ_TIMEOUT));
    let req = match read_request(&mut s) {
        Ok(r) => r,
        Err(Some(resp)) => {
            s.set_write_deadline(Some(Instant::now() + WRITE_TIMEOUT));
            s.write_all(&encode_response(&resp))?;
            // Go's closeWriteAndWait: closing with unread input would reset the connection and
            // the client could lose the reply, so drain (bounded) until the client closes.
            let _ = s.shutdown(std::net::Shutdown::Write);
            s.set_read_deadline(Some(Instant::now() + Duration::from_secs(1)));
            let mut sink = [0u8; 4096];
            for _ in 0..256 {
                if matches!(s.read(&mut sink), Ok(0) | Err(_)) {
                    break;
                }
            }
            return Ok(());
        }
        Err(None) => return Ok(()),
    };
    let resp = handle(&req);
    s.set_write_deadline(Some(Instant::now() + WRITE_TIMEOUT));
    s.write_all(&encode_response(&resp))?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Reads a request: `Err(Some(reply))` for one to reject, `Err(None)` if the peer went away.
fn read_request(s: &mut TcpStream) -> Result<Request, Option<Response>> {
    let bad = |msg: &str| Some(Response::new(400, "text/plain; charset=utf-8", format!("400 Bad Request: {msg}\n")));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let mut body_len = 0usize;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        match std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()) {
                            Some(n) => body_len = n,
                            None => return Err(bad("invalid Content-Length")),
                        }
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(Some(Response::error(501, "Transfer-Encoding is not supported")));
                    }
                }
                if body_len > MAX_BODY {
                    return Err(Some(Response::error(413, "request body too large")));
                }
                let method = req.method.unwrap_or("GET").to_string();
                let target = req.path.unwrap_or("/").to_string();
                let mut body = buf[head..].to_vec();
                while body.len() < body_len {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return Err(None),
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                    }
                }
                body.truncate(body_len);
                return Ok(Request { method, target, body });
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Some(Response::new(431, "text/plain; charset=utf-8", "431 too many headers\n")))
            }
            Err(e) => return Err(bad(&e.to_string())),
        }
        if buf.len() >= MAX_HEAD {
            return Err(Some(Response::new(431, "text/plain; charset=utf-8", "431 request head too large\n")));
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
                return Err(Some(Response::new(408, "text/plain; charset=utf-8", "408 Request Timeout\n")))
            }
            Err(_) => return Err(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        let r = Request::get("/debug/pprof/heap?debug=1&gc=1&x=a%20b+c");
        assert_eq!(r.path(), "/debug/pprof/heap");
        assert_eq!(r.form_value("debug"), "1");
        assert_eq!(r.form_value("x"), "a b c");
        assert_eq!(r.form_value("nope"), "");
        assert_eq!(unescape("%zz%4"), "%zz%4");
    }

    #[test]
    fn errors() {
        let r = handle(&Request::get("/debug/pprof/nope"));
        assert_eq!((r.status, &r.body[..]), (404, &b"Unknown profile\n"[..]));
        assert_eq!(r.header("X-Go-Pprof"), Some("1"));
        let r = handle(&Request::get("/debug/pprof/goroutine?seconds=x"));
        assert_eq!(r.status, 400);
        assert_eq!(r.body, b"invalid value for \"seconds\" - must be a positive integer\n");
        let r = handle(&Request::get("/debug/pprof/goroutine?seconds=1&debug=1"));
        assert_eq!(r.body, b"seconds and debug params are incompatible\n");
        assert_eq!(handle(&Request::get("/debug/pprof/trace")).status, 501);
        assert_eq!(handle(&Request::get("/debug/pprof/mutex?debug=x")).status, 400);
        assert_eq!(handle(&Request::get("/debug/pprof/hog?debug=x")).status, 400);
        assert_eq!(handle(&Request::get("/debug/pprof/hog?seconds=0")).status, 400);
        for bad in ["x", "0", "-1", "1.5", "100000000"] {
            let r = handle(&Request::get(&format!("/debug/pprof/wall?seconds={bad}")));
            assert_eq!(r.status, 400, "wall?seconds={bad}");
        }
        assert_eq!(handle(&Request::get("/other")).status, 404);
        assert_eq!(handle(&Request::get("/debug/pprof")).status, 301);
    }
}
