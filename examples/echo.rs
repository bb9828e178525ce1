//! TCP echo server on gort: one goroutine per connection, plain blocking code.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:7000
//! GOMAXPROCS=1 cargo run --release --example echo
//! ```
//!
//! `accept` backs off on errors such as EMFILE (5 ms doubling to 1 s, like Go's `http.Server`).

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use gort::net::{TcpListener, TcpStream};
use lexopt::prelude::*;

fn echo(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}

const USAGE: &str = "\
usage: echo [--addr ADDR]

TCP echo server on gort, one goroutine per connection. GOMAXPROCS sets the worker count.

  --addr ADDR   address to listen on (default 127.0.0.1:7000)
  -h, --help    print this help
";

/// The listen address. `--help` prints the usage and exits.
fn parse_args() -> Result<String, lexopt::Error> {
    let mut addr = "127.0.0.1:7000".to_string();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => addr = socket_addr(&mut parser, "--addr")?,
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(addr)
}

/// An address option's value, resolved now so that a typo is a usage error, not a failed bind.
fn socket_addr(parser: &mut lexopt::Parser, opt: &str) -> Result<String, lexopt::Error> {
    let v = parser.value()?.string()?;
    match v.to_socket_addrs() {
        Ok(_) => Ok(v),
        Err(e) => Err(format!("{opt} {v}: {e}").into()),
    }
}

fn main() {
    let addr = parse_args().unwrap_or_else(|e| {
        eprintln!("echo: {e}");
        std::process::exit(2);
    });
    let server = move || {
        let l = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        eprintln!("echo listening on {} (GOMAXPROCS={})", l.local_addr().unwrap(), gort::runtime::gomaxprocs());
        let mut backoff = Duration::ZERO;
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    backoff = Duration::ZERO;
                    let conn = move || {
                        let _ = echo(s);
                    };
                    // SAFETY: the connection goroutine owns its `TcpStream` and buffer (Send) and
                    // blocks only in the stream's reads and writes; it touches no thread-local.
                    unsafe { gort::spawn(conn) };
                }
                Err(e) => {
                    backoff = if backoff.is_zero() {
                        Duration::from_millis(5)
                    } else {
                        (backoff * 2).min(Duration::from_secs(1))
                    };
                    eprintln!("echo: accept error: {e}; retrying in {backoff:?}");
                    gort::time::sleep(backoff);
                }
            }
        }
    };
    // SAFETY: the server goroutine holds its listener and `Duration`s (Send) across `accept` and
    // `sleep`; stderr is locked and released inside each `eprintln!`, and it touches no
    // thread-local.
    unsafe { gort::run(server) };
}
