//! Go's heap-profile demo (`http_pprof_heap`) with gort's `net/http/pprof`.
//!
//! ```text
//! cargo run --release --example heap -- --addr 127.0.0.1:6060
//! go tool pprof -top -sample_index=inuse_space http://127.0.0.1:6060/debug/pprof/heap
//! ```
//!
//! `new_map_in_heap` fills a map with 999,999 `KeyID{i}` -> `value{i}` entries,
//! `new_slice_in_heap1` allocates 12 MiB and calls `new_slice_in_heap2`, which allocates
//! 24 MiB; each then blocks forever (Go: `<-make(chan int)`), so everything stays live. The
//! heap profile shows ~60 MB in `new_map_in_heap`, 24 MB flat in `new_slice_in_heap2` and
//! 12 MB flat / 36 MB cum in `new_slice_in_heap1`, as Go does. Runs until Ctrl-C, or
//! `--exit-after-secs N`.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::time::Duration;

use lexopt::prelude::*;

#[global_allocator]
static A: gort::profiler::Allocator = gort::profiler::Allocator::system();

const MIB: usize = 1 << 20;

const USAGE: &str = "\
usage: heap [--addr ADDR] [--exit-after-secs N]

Keeps ~100 MB live in three functions and serves /debug/pprof/ for go tool pprof.

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

/// Go: `<-make(chan int)`; the sender is kept, so this never returns.
fn block_forever() {
    let (_tx, rx) = gort::chan::chan::<i32>(0);
    rx.recv();
}

#[inline(never)]
fn new_map_in_heap() {
    let mut m = HashMap::new();
    for i in 0..999_999 {
        m.insert(format!("KeyID{i}"), format!("value{i}"));
    }
    let m = std::hint::black_box(m);
    block_forever();
    println!("Size of gMap: {}", m.len());
}

#[inline(never)]
fn new_slice_in_heap1() {
    let s1 = std::hint::black_box(vec![0u8; 12 * MIB]);
    new_slice_in_heap2();
    println!("Size of gSlice1: {}", s1.len());
}

#[inline(never)]
fn new_slice_in_heap2() {
    let s2 = std::hint::black_box(vec![0u8; 24 * MIB]);
    block_forever();
    println!("Size of gSlice2: {}", s2.len());
}

fn main() {
    let Args { addr, exit_after_secs: exit_after } = parse_args().unwrap_or_else(|e| {
        eprintln!("heap: {e}");
        std::process::exit(2);
    });
    let demo = move || {
        let srv = gort::profiler::serve(&addr).unwrap_or_else(|e| panic!("serve {addr}: {e}"));
        // SAFETY: the two goroutines hold a `HashMap` and `Vec`s (Send) while they block on a
        // channel receive; they touch no thread-local.
        unsafe {
            gort::go!(new_map_in_heap());
            gort::go!(new_slice_in_heap1());
        }
        let a = srv.local_addr();
        println!("pprof on http://{a}/debug/pprof/");
        println!("  go tool pprof -top -sample_index=inuse_space http://{a}/debug/pprof/heap");
        println!("  go tool pprof -top -sample_index=alloc_space http://{a}/debug/pprof/allocs");
        println!("  go tool pprof -list 'new_slice_in_heap1' http://{a}/debug/pprof/heap");
        println!("  curl 'http://{a}/debug/pprof/heap?debug=1'");
        match exit_after {
            Some(s) => gort::time::sleep(Duration::from_secs(s)),
            None => loop {
                gort::time::sleep(Duration::from_secs(3600));
            },
        }
        srv.close();
    };
    // SAFETY: the main goroutine holds the server handle and a `Duration` (Send) across its
    // sleeps; stdout is locked and released inside each `println!`, and it touches no
    // thread-local (the allocator's sampling state is reached only inside the allocator).
    unsafe { gort::run(demo) };
}
