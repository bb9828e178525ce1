//! Lock contention for the `mutex` and `block` profiles, served by gort's `net/http/pprof`.
//!
//! ```text
//! cargo run --release --example mutex -- --addr 127.0.0.1:6060
//! go tool pprof -top http://127.0.0.1:6060/debug/pprof/mutex
//! ```
//!
//! Four goroutines (`worker`) take one `gort::sync::Mutex` in a loop, each for a moment;
//! `slow_holder` holds it 10 ms at a time and `fast_holder` 1 ms. With the mutex profile fraction
//! at 1, the mutex profile charges the waiters' time to the code that held the lock: nearly all
//! of it to `slow_holder`, a few percent to `fast_holder` (`-top` lists them by cum). The block
//! profile (rate 1) shows the other side: where goroutines waited (`worker` and `fast_holder`,
//! in `Mutex::lock`). Runs until Ctrl-C, or `--exit-after-secs N`. Build it with `--release`:
//! unoptimized, encoding a proto profile can overflow the server goroutine's 256 KiB stack.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use gort::sync::Mutex;
use lexopt::prelude::*;

const USAGE: &str = "\
usage: mutex [--addr ADDR] [--exit-after-secs N]

Contends on one mutex from six goroutines and serves /debug/pprof/ for go tool pprof.

  --addr ADDR            address to serve /debug/pprof/ on (default 127.0.0.1:6060)
  --exit-after-secs N    exit after N seconds (default: run until Ctrl-C)
  -h, --help             print this help
";

struct Args {
    addr: String,
    exit_after_secs: Option<u64>,
}

/// The command line. `--help` prints the usage and exits.
fn parse_args() -> Result<Args, lexopt::Error> {
    let mut args = Args { addr: "127.0.0.1:6060".to_string(), exit_after_secs: None };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => args.addr = socket_addr(&mut parser, "--addr")?,
            Long("exit-after-secs") => args.exit_after_secs = Some(number(&mut parser, "--exit-after-secs")?),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(args)
}

/// An address option's value, resolved now so that a typo is a usage error, not a failed bind.
fn socket_addr(parser: &mut lexopt::Parser, opt: &str) -> Result<String, lexopt::Error> {
    let v = parser.value()?.string()?;
    match v.to_socket_addrs() {
        Ok(_) => Ok(v),
        Err(e) => Err(format!("{opt} {v}: {e}").into()),
    }
}

fn number(parser: &mut lexopt::Parser, opt: &str) -> Result<u64, lexopt::Error> {
    let v = parser.value()?.string()?;
    v.parse().map_err(|e| format!("{opt} {v}: {e}").into())
}

/// Holds the lock 10 ms at a time (the mutex profile's main culprit).
#[inline(never)]
fn slow_holder(m: &Mutex<u64>) {
    loop {
        let mut g = m.lock();
        *g += 1;
        gort::time::sleep(Duration::from_millis(10));
        drop(g);
        gort::time::sleep(Duration::from_millis(1));
    }
}

/// Holds the lock 1 ms at a time.
#[inline(never)]
fn fast_holder(m: &Mutex<u64>) {
    loop {
        let mut g = m.lock();
        *g += 1;
        gort::time::sleep(Duration::from_millis(1));
        drop(g);
        gort::time::sleep(Duration::from_millis(1));
    }
}

/// Takes the lock briefly, over and over: mostly waiting for the holders.
#[inline(never)]
fn worker(m: &Mutex<u64>) {
    loop {
        *m.lock() += 1;
        gort::time::sleep(Duration::from_micros(100));
    }
}

fn main() {
    let Args { addr, exit_after_secs: exit_after } = parse_args().unwrap_or_else(|e| {
        eprintln!("mutex: {e}");
        std::process::exit(2);
    });
    let demo = move || {
        gort::profiler::set_mutex_profile_fraction(1);
        gort::profiler::set_block_profile_rate(1);
        let srv = gort::profiler::serve(&addr).unwrap_or_else(|e| panic!("serve {addr}: {e}"));
        let m = Arc::new(Mutex::new(0u64));
        for _ in 0..4 {
            let m = m.clone();
            // SAFETY: the worker holds an `Arc<Mutex<u64>>` and gort's guard (both Send) across
            // its lock waits and sleeps; it touches no thread-local.
            unsafe { gort::go!(move || worker(&m)) };
        }
        let (m1, m2) = (m.clone(), m);
        // SAFETY: as the workers: an `Arc<Mutex<u64>>` and gort's guard, no thread-local.
        unsafe {
            gort::go!(move || slow_holder(&m1));
            gort::go!(move || fast_holder(&m2));
        }
        let a = srv.local_addr();
        println!("pprof on http://{a}/debug/pprof/");
        println!("  go tool pprof -top http://{a}/debug/pprof/mutex");
        println!("  go tool pprof -top http://{a}/debug/pprof/block");
        println!("  curl 'http://{a}/debug/pprof/mutex?debug=1'");
        match exit_after {
            Some(s) => gort::time::sleep(Duration::from_secs(s)),
            None => loop {
                gort::time::sleep(Duration::from_secs(3600));
            },
        }
        srv.close();
    };
    // SAFETY: the main goroutine holds the server handle and a `Duration` (Send) across its
    // sleeps; stdout is locked and released inside each `println!`; it touches no thread-local.
    unsafe { gort::run(demo) };
}
