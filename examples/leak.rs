//! The notes' goroutine-leak demo (`http_pprof_goroutine`) with gort's `net/http/pprof`.
//!
//! ```text
//! cargo run --release --example leak -- --addr 127.0.0.1:6060 --interval-ms 2000
//! cargo run --release --example leak -- --interval-ms 200 --exit-after-secs 10
//! ```
//!
//! Serves `/debug/pprof/` on `--addr`, then starts one goroutine per `--interval-ms`, each
//! blocked forever on a channel receive (`<-a`): the leak. Two goroutine profiles taken some
//! seconds apart and diffed with `go tool pprof -top -base` show the leaked goroutines, parked
//! in `Receiver::recv` under `leak::http_pprof_goroutine::{{closure}}` (Go: `runtime.gopark`
//! under `main.http_pprof_goroutine.func1`). Runs until Ctrl-C, or `--exit-after-secs N`.

use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number: {v}")))
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
            eprintln!("leak: {leaked} goroutines blocked on <-a (num_goroutine = {})", gort::num_goroutine());
        }
    }
}

fn main() {
    let addr = arg("--addr").unwrap_or_else(|| "127.0.0.1:6060".into());
    let interval = Duration::from_millis(num("--interval-ms", 2000).max(1));
    let exit_after = arg("--exit-after-secs").map(|_| Duration::from_secs(num("--exit-after-secs", 0)));
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
        http_pprof_goroutine(interval, exit_after.map(|d| Instant::now() + d));
        srv.close();
    };
    // SAFETY: the main goroutine holds `Send` values (the server handle, a channel, `Duration`s)
    // across its sleeps; stdout and stderr are locked and released inside each `println!` and
    // `eprintln!`, and it touches no thread-local.
    unsafe { gort::run(demo) };
}
