//! Go's goroutine-leak demo (`http_pprof_goroutine`) with gort's `net/http/pprof`.
//!
//! ```text
//! cargo run --release --example leak -- --addr 127.0.0.1:6060 --interval-ms 2000
//! cargo run --release --example leak -- --interval-ms 200 --exit-after-secs 10
//! cargo run --release --example leak -- --interval-ms 200 --leakcheck-ms 500 --exit-after-secs 6
//! ```
//!
//! Serves `/debug/pprof/` on `--addr`, then starts one goroutine per `--interval-ms`, each
//! blocked forever on a channel receive (`<-a`): the leak. Two goroutine profiles taken some
//! seconds apart and diffed with `go tool pprof -top -base` show the leaked goroutines, parked
//! in `Receiver::recv` under `leak::http_pprof_goroutine::{{closure}}` (Go: `runtime.gopark`
//! under `main.http_pprof_goroutine.func1`). Runs until Ctrl-C, or `--exit-after-secs N`.
//!
//! `--leakcheck-ms MS` finds the leak without the diff: it starts gort's leak census
//! (`gort::runtime::census`, a census of parked goroutines every MS milliseconds), prints the
//! finder's report once per window of census points, and serves it at
//! `/debug/pprof/goroutineleak`. (`GORT_LEAKCHECK=500ms` in the environment does the same
//! without the printing.)

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use lexopt::prelude::*;

const USAGE: &str = "\
usage: leak [--addr ADDR] [--interval-ms MS] [--leakcheck-ms MS] [--exit-after-secs N]

Leaks one goroutine every MS milliseconds (each blocked forever on a channel receive) and
serves /debug/pprof/ so that two goroutine profiles, diffed, show the leak.

  --addr ADDR            address to serve /debug/pprof/ on (default 127.0.0.1:6060)
  --interval-ms MS       time between two leaks (default 2000)
  --leakcheck-ms MS      run the leak census every MS milliseconds and print what it finds
                         once per window (also at /debug/pprof/goroutineleak)
  --exit-after-secs N    exit after N seconds (default: run until Ctrl-C)
  -h, --help             print this help
";

struct Args {
    addr: String,
    interval_ms: u64,
    leakcheck_ms: Option<u64>,
    exit_after_secs: Option<u64>,
}

/// The command line. `--help` prints the usage and exits.
fn parse_args() -> Result<Args, lexopt::Error> {
    let mut args =
        Args { addr: "127.0.0.1:6060".to_string(), interval_ms: 2000, leakcheck_ms: None, exit_after_secs: None };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => args.addr = socket_addr(&mut parser, "--addr")?,
            Long("interval-ms") => args.interval_ms = number(&mut parser, "--interval-ms")?,
            Long("leakcheck-ms") => match number(&mut parser, "--leakcheck-ms")? {
                0 => return Err("--leakcheck-ms 0: the census interval must be positive".into()),
                ms => args.leakcheck_ms = Some(ms),
            },
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

/// Go's demo: `a := make(chan int)`; every interval `go func() { <-a }()`, forever (or until
/// `deadline`).
#[inline(never)]
fn http_pprof_goroutine(interval: Duration, deadline: Option<Instant>) {
    let (_a_tx, a) = gort::chan::chan::<i32>(0);
    let mut leaked = 0u64;
    while deadline.is_none_or(|d| Instant::now() < d) {
        gort::time::sleep(interval);
        let a = a.clone();
        // SAFETY: the leaked goroutine holds only its `Receiver` (Send) while it blocks.
        unsafe {
            gort::go!(move || {
                a.recv();
            })
        };
        leaked += 1;
        if leaked.is_multiple_of(10) {
            eprintln!("leak: {leaked} goroutines blocked on <-a (num_goroutine = {})", gort::runtime::num_goroutine());
        }
    }
}

/// Prints the leak finder's report every `window` census intervals, until `deadline`.
#[inline(never)]
fn print_leaks(every: Duration, deadline: Option<Instant>) {
    while deadline.is_none_or(|d| Instant::now() + every < d) {
        gort::time::sleep(every);
        let mut text = Vec::new();
        match gort::profiler::leak::write_to(&mut text, 1) {
            Ok(()) => println!("--- /debug/pprof/goroutineleak?debug=1\n{}", String::from_utf8_lossy(&text)),
            Err(e) => eprintln!("leak: {e}"),
        }
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("leak: {e}");
        std::process::exit(2);
    });
    let addr = args.addr;
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let exit_after = args.exit_after_secs.map(Duration::from_secs);
    let leakcheck = args.leakcheck_ms.map(Duration::from_millis);
    let demo = move || {
        let srv = gort::profiler::serve(&addr).unwrap_or_else(|e| panic!("serve {addr}: {e}"));
        let a = srv.local_addr();
        println!("pprof on http://{a}/debug/pprof/ ; one goroutine leaks every {interval:?}");
        println!("take two goroutine profiles some seconds apart and diff them:");
        println!("  go tool pprof -proto http://{a}/debug/pprof/goroutine > g1.pb.gz");
        println!("  sleep 10");
        println!("  go tool pprof -proto http://{a}/debug/pprof/goroutine > g2.pb.gz");
        println!("  go tool pprof -top -base g1.pb.gz g2.pb.gz");
        println!("or in one step (a 10 s delta on the server):");
        println!("  go tool pprof -top 'http://{a}/debug/pprof/goroutine?seconds=10'");
        println!("text dump: curl 'http://{a}/debug/pprof/goroutine?debug=1'");
        let deadline = exit_after.map(|d| Instant::now() + d);
        if let Some(every) = leakcheck {
            gort::runtime::census::start(every);
            let window = every * gort::runtime::env::LeakCheck::DEFAULT_WINDOW as u32;
            println!("leak census every {every:?}; the finder's report every {window:?}, and at:");
            println!("  curl 'http://{a}/debug/pprof/goroutineleak?debug=1'");
            println!("  go tool pprof -top http://{a}/debug/pprof/goroutineleak");
            // SAFETY: the printer holds `Duration`s and an `Instant` (Send) across its sleeps;
            // stdout and stderr are locked and released inside each `println!`/`eprintln!`, and
            // the profiler's own locks inside `write_to`, which never parks.
            unsafe { gort::go!(move || print_leaks(window, deadline)) };
        }
        http_pprof_goroutine(interval, deadline);
        srv.close();
    };
    // SAFETY: the main goroutine holds `Send` values (the server handle, a channel, `Duration`s)
    // across its sleeps; stdout and stderr are locked and released inside each `println!` and
    // `eprintln!`, and it touches no thread-local.
    unsafe { gort::run(demo) };
}
