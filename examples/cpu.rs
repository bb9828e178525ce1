//! Go's CPU-profile demo (`pprof_cpu`): a goroutine in a busy loop, profiled from inside.
//!
//! ```text
//! cargo run --release --example cpu -- --out cpu.prof --seconds 5
//! go tool pprof -top cpu.prof
//! cargo run --release --example cpu -- --addr 127.0.0.1:6060
//! go tool pprof -top 'http://127.0.0.1:6060/debug/pprof/profile?seconds=5'
//! ```
//!
//! `busy_loop` increments a counter forever (through `black_box`, so the optimizer keeps it).
//! With `--out` (the default, `cpu.prof`) the program profiles itself for `--seconds` and exits;
//! `go tool pprof -top` then shows nearly every sample in `busy_loop`. With `--addr` it serves
//! `/debug/pprof/` instead, until Ctrl-C or `--exit-after-secs`.

use std::net::ToSocketAddrs;
use std::time::Duration;

use lexopt::prelude::*;

const USAGE: &str = "\
usage: cpu [--rate HZ] [--out PATH] [--seconds N] | [--addr ADDR] [--exit-after-secs N]

Runs busy_loop on a goroutine and profiles it: into PATH (default cpu.prof) for N seconds
(default 5), or, with --addr, serves /debug/pprof/ for go tool pprof.

  --rate HZ              samples per second of CPU time (default 100, Go's)
  --out PATH             write the CPU profile here (default cpu.prof)
  --seconds N            profile for N seconds (default 5)
  --addr ADDR            serve /debug/pprof/ on ADDR instead of writing a file
  --exit-after-secs N    with --addr: exit after N seconds (default: run until Ctrl-C)
  -h, --help             print this help
";

struct Args {
    out: String,
    seconds: u64,
    rate: u32,
    addr: Option<String>,
    exit_after_secs: Option<u64>,
}

/// The command line. `--help` prints the usage and exits.
fn parse_args() -> Result<Args, lexopt::Error> {
    let mut args = Args { out: "cpu.prof".into(), seconds: 5, rate: 100, addr: None, exit_after_secs: None };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("out") => args.out = parser.value()?.string()?,
            Long("rate") => args.rate = number(&mut parser, "--rate")?.clamp(1, 10_000) as u32,
            Long("seconds") => args.seconds = number(&mut parser, "--seconds")?.max(1),
            Long("addr") => {
                let v = parser.value()?.string()?;
                // Resolved now, so that a typo is a usage error, not a failed bind.
                if let Err(e) = v.to_socket_addrs() {
                    return Err(format!("--addr {v}: {e}").into());
                }
                args.addr = Some(v);
            }
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

fn number(parser: &mut lexopt::Parser, opt: &str) -> Result<u64, lexopt::Error> {
    let v = parser.value()?.string()?;
    v.parse().map_err(|e| format!("{opt} {v}: {e}").into())
}

/// Go's `busy_loop`: `for { i++ }`.
#[inline(never)]
fn busy_loop() {
    let mut i = 0u64;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("cpu: {e}");
        std::process::exit(2);
    });
    gort::profiler::set_cpu_profile_rate(args.rate);
    // SAFETY: the goroutine computes on a local and touches no thread-local.
    unsafe { gort::go!(busy_loop) };
    match args.addr {
        None => {
            let f = std::fs::File::create(&args.out).unwrap_or_else(|e| {
                eprintln!("cpu: {}: {e}", args.out);
                std::process::exit(1);
            });
            if let Err(e) = gort::profiler::start_cpu_profile(f) {
                eprintln!("cpu: {e}");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_secs(args.seconds));
            if let Err(e) = gort::profiler::stop_cpu_profile() {
                eprintln!("cpu: writing {}: {e}", args.out);
                std::process::exit(1);
            }
            let (n, ns) = gort::runtime::cpuprof::handler_cost();
            println!(
                "wrote {} ({} s of busy_loop; {n} samples, {} ns each in the handler); now:",
                args.out,
                args.seconds,
                ns / n.max(1)
            );
            println!("  go tool pprof -top {}", args.out);
        }
        Some(addr) => {
            let srv = gort::profiler::serve(&addr).unwrap_or_else(|e| {
                eprintln!("cpu: serve {addr}: {e}");
                std::process::exit(1);
            });
            let a = srv.local_addr();
            println!("pprof on http://{a}/debug/pprof/");
            println!("  go tool pprof -top 'http://{a}/debug/pprof/profile?seconds=5'");
            match args.exit_after_secs {
                Some(s) => std::thread::sleep(Duration::from_secs(s)),
                None => loop {
                    std::thread::sleep(Duration::from_secs(3600));
                },
            }
        }
    }
}
